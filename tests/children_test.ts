// A task stopped with SIGTERM takes its tracked children with it.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const CHILDREN = fileURLToPath(new URL("../lib/children.ts", import.meta.url));

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

Deno.test("trackChild: SIGTERM to the parent sends SIGTERM to a tracked child, and the parent exits with 143", async () => {
  const script = `
    import { trackChild } from ${JSON.stringify(CHILDREN)};
    const child = new Deno.Command("sleep", { args: ["60"] }).spawn();
    trackChild(child);
    console.log(child.pid);
    await child.status;
  `;
  const parent = new Deno.Command(Deno.execPath(), { args: ["eval", script], stdout: "piped" }).spawn();
  const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  const childPid = Number(value!.trim());
  assert.ok(alive(childPid), "the child runs before the signal");
  parent.kill("SIGTERM");
  const status = await parent.status;
  reader.releaseLock();
  await parent.stdout.cancel().catch(() => {});
  assert.equal(status.code, 143);
  for (let i = 0; i < 50 && alive(childPid); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(!alive(childPid), `sleep (pid ${childPid}) outlived its parent`);
});
