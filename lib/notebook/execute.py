"""Executes one Jupyter notebook with nbclient and reports progress.

Run by lib/notebook/runner.ts with the Python interpreter that can import
nbclient. Progress goes to stdout as lines that start with EVENT_PREFIX
followed by one JSON object; anything else on stdout or stderr (the kernel's
own output, Python warnings) is passed through by the caller.

Exit status: 0 success, 1 the notebook failed (an "error" event says why),
2 bad usage or a missing dependency.
"""

import argparse
import json
import os
import queue
import signal
import sys
import tempfile
import time

EVENT_PREFIX = "@@attnlab "

# Cell metadata keys that change on every run and only add noise to diffs.
VOLATILE_CELL_METADATA = ("execution", "ExecuteTime")


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(EVENT_PREFIX + json.dumps(fields) + "\n")
    sys.stdout.flush()


def first_line(source):
    for line in source.splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, help="notebook to execute")
    parser.add_argument("--output", help="where to save the executed notebook (atomic replace)")
    parser.add_argument("--partial-output", help="where to save the notebook when execution fails")
    parser.add_argument("--cwd", required=True, help="the kernel's working directory")
    parser.add_argument("--kernel", default="deno", help="kernelspec name")
    parser.add_argument("--cell-timeout", type=float, default=1200, help="seconds per cell")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the whole notebook")
    parser.add_argument("--output-grace", type=float, default=0.1,
                        help="seconds to wait for output that arrives after a cell finished")
    parser.add_argument("--startup-timeout", type=float, default=120, help="seconds for the kernel to start")
    return parser.parse_args(argv)


def write_atomic(nb, path, nbformat):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            nbformat.write(nb, handle)
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def strip_volatile(nb):
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)


async def drain_late_output(client, parent_msg_id, cell, cell_index, grace):
    """Collects output the kernel sends after it reported idle.

    The Deno kernel forwards console output on its own path, so a cell's last
    stream message can arrive just after its idle status; nbclient would drop it.
    """
    from nbclient.exceptions import CellExecutionComplete

    while grace > 0:
        try:
            msg = await client.kc.iopub_channel.get_msg(timeout=grace)
        except queue.Empty:
            return
        if msg["parent_header"].get("msg_id") != parent_msg_id:
            continue
        try:
            client.process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            pass


def error_fields(exc, nbclient_exceptions):
    if isinstance(exc, nbclient_exceptions.CellTimeoutError):
        return {"kind": "timeout", "ename": "CellTimeoutError", "evalue": first_line(str(exc))}
    if isinstance(exc, nbclient_exceptions.DeadKernelError):
        return {"kind": "kernel", "ename": "DeadKernelError", "evalue": str(exc)}
    if isinstance(exc, nbclient_exceptions.CellExecutionError):
        return {"kind": "cell", "ename": exc.ename, "evalue": exc.evalue}
    return {"kind": "runner", "ename": type(exc).__name__, "evalue": str(exc)}


def main(argv):
    args = parse_args(argv)
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient import exceptions as nbclient_exceptions
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError as exc:
        emit("error", kind="setup", ename="ImportError", evalue=str(exc))
        return 2

    try:
        KernelSpecManager().get_kernel_spec(args.kernel)
    except NoSuchKernel:
        emit("error", kind="setup", ename="NoSuchKernel",
             evalue=f"no Jupyter kernelspec named '{args.kernel}'; run `deno task setup`")
        return 2

    nb = nbformat.read(args.input, as_version=4)
    started = time.monotonic()
    deadline = started + args.timeout
    state = {"cell": None, "cell_started": started}

    def cell_timeout(cell):
        remaining = deadline - time.monotonic()
        return max(1, int(min(args.cell_timeout, remaining)))

    def on_notebook_start(notebook):
        emit("kernel_started", seconds=round(time.monotonic() - started, 3), cells=len(nb.cells))

    def on_cell_execute(cell, cell_index):
        state["cell"] = cell_index
        state["cell_started"] = time.monotonic()
        emit("cell_start", index=cell_index, first_line=first_line(cell.source))

    def on_cell_executed(cell, cell_index, execute_reply):
        status = (execute_reply or {}).get("content", {}).get("status", "ok")
        finished = state.pop("cell_finished", None) or time.monotonic()
        emit("cell_done", index=cell_index, status=status, seconds=round(finished - state["cell_started"], 3))

    class Client(NotebookClient):
        async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
            await super()._async_poll_output_msg(parent_msg_id, cell, cell_index)
            state["cell_finished"] = time.monotonic()
            await drain_late_output(self, parent_msg_id, cell, cell_index, args.output_grace)

    client = Client(
        nb,
        kernel_name=args.kernel,
        timeout_func=cell_timeout,
        startup_timeout=int(args.startup_timeout),
        record_timing=False,
        resources={"metadata": {"path": args.cwd}},
        on_notebook_start=on_notebook_start,
        on_cell_execute=on_cell_execute,
        on_cell_executed=on_cell_executed,
    )

    failure = None
    try:
        client.execute()
    except Exception as exc:  # noqa: BLE001 - every failure is reported as an event
        failure = exc

    strip_volatile(nb)
    seconds = round(time.monotonic() - started, 3)
    if failure is not None:
        fields = error_fields(failure, nbclient_exceptions)
        if fields["kind"] == "timeout" and time.monotonic() >= deadline:
            fields["evalue"] = f"the notebook ran past its whole-notebook timeout of {args.timeout:g} s"
        if state["cell"] is not None:
            for output in nb.cells[state["cell"]].get("outputs", []):
                if output.get("output_type") == "error":
                    fields["traceback"] = output.get("traceback", [])
        partial = None
        if args.partial_output:
            write_atomic(nb, args.partial_output, nbformat)
            partial = args.partial_output
        emit("error", index=state["cell"], seconds=seconds, partial_output=partial, **fields)
        return 1

    if args.output:
        write_atomic(nb, args.output, nbformat)
    emit("done", seconds=seconds, executed=client.code_cells_executed)
    return 0


if __name__ == "__main__":
    # SIGTERM (the runner stopping) becomes SystemExit, so nbclient shuts the kernel down on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    sys.exit(main(sys.argv[1:]))
