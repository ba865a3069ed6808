/**
 * startNotebookServer (lib/notebook/server.ts), which `deno task notebook`
 * and the browser tests use: its argument checks, and the real server
 * starting, answering with its token, refusing a busy port and stopping.
 * Here with the browser tests because it needs the Jupyter Notebook server.
 */

import assert from "node:assert/strict";
import { flagValue, freePort, randomToken, startNotebookServer } from "../../lib/notebook/server.ts";

Deno.test("server: flagValue reads --name VALUE and --name=VALUE, the last one winning", () => {
  assert.equal(flagValue(["--port", "8899"], "--port"), "8899");
  assert.equal(flagValue(["--port=9000"], "--port"), "9000");
  assert.equal(flagValue(["--port", "1", "--port=2"], "--port"), "2");
  assert.equal(flagValue(["--ip", "0.0.0.0"], "--port"), undefined);
  // A flag that only starts with the name is another flag.
  assert.equal(flagValue(["--port-retries=0"], "--port"), undefined);
  assert.equal(flagValue(["--port"], "--port"), undefined);
});

Deno.test("server: freePort gives the preferred port when free, another one when taken", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const taken = (listener.addr as Deno.NetAddr).port;
  try {
    const other = freePort(taken);
    assert.notEqual(other, taken);
    assert.ok(other > 0 && other < 65536);
  } finally {
    listener.close();
  }
  assert.equal(freePort(taken), taken);
  assert.throws(() => freePort(0), RangeError, "got 0");
  assert.throws(() => freePort(70000), RangeError, "1..65535, got 70000");
  assert.match(randomToken(), /^[0-9a-f]{48}$/);
  assert.notEqual(randomToken(), randomToken());
});

Deno.test("server: bad options are refused before anything starts", async () => {
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    startNotebookServer({ notebookDir: "/tmp" } as any),
    (err: Error) => err instanceof TypeError && err.message.includes('unknown option "notebookDir"'),
  );
  await assert.rejects(
    startNotebookServer({ dir: "/nonexistent/attnlab" }),
    /dir \/nonexistent\/attnlab is not an existing folder/,
  );
  await assert.rejects(
    startNotebookServer({ kernelDir: "" }),
    (err: Error) => err instanceof TypeError && err.message.includes("kernelDir must be a folder path"),
  );
  await assert.rejects(
    startNotebookServer({ startupTimeoutSeconds: 0 }),
    (err: Error) => err instanceof RangeError && err.message.includes("startupTimeoutSeconds must be a positive"),
  );
  await assert.rejects(
    startNotebookServer({ extra: ["--port", "http"] }),
    (err: Error) => err instanceof RangeError && err.message.includes("integer in 1..65535, got http"),
  );
});

Deno.test({
  name: "server: starts, answers with its token only, fails clearly on a busy port, and stops",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "attnlab_server_" });
    const runtime = await Deno.makeTempDir({ prefix: "attnlab_server_runtime_" });
    const env = { JUPYTER_RUNTIME_DIR: runtime };
    const server = await startNotebookServer({ dir, env, startupTimeoutSeconds: 300 });
    try {
      assert.equal(server.url, `http://127.0.0.1:${server.port}/?token=${server.token}`);
      const withToken = await fetch(`${server.baseUrl}api/contents?token=${server.token}`);
      assert.equal(withToken.status, 200);
      assert.deepEqual((await withToken.json()).content, []);
      const without = await fetch(`${server.baseUrl}api/contents`);
      await without.body?.cancel();
      assert.equal(without.status, 403);

      // The same port again: Jupyter must not wander to another port (the URL would be wrong); it fails.
      const busy = await startNotebookServer({ dir, env, port: server.port }).then(
        async (second) => {
          await second.stop();
          assert.fail("a second server started on a busy port");
        },
        (err: Error) => err,
      );
      assert.match(busy.message, new RegExp(`--port=${server.port} .*exited with code 1 before answering`, "s"));
      assert.match(busy.message, /already in use/);
    } finally {
      const status = await server.stop();
      assert.equal(status.success, true, server.output());
      assert.equal(await server.stop(), status, "a second stop returns the same status");
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(runtime, { recursive: true });
    }
    // Stopped means the port is free again.
    assert.equal(freePort(server.port), server.port);
  },
});
