import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { backendName, initBackend } from "../lib/backend.ts";

async function runWithEnv(env: Record<string, string>): Promise<{ code: number; output: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["eval", "import { initBackend } from './lib/backend.ts'; console.log('chose', await initBackend());"],
    env: { ...env, NO_COLOR: "1" },
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await command.output();
  return { code, output: new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr) };
}

Deno.test("the default backend is the best that loads, and is announced once", async () => {
  const { code, output } = await runWithEnv({});
  assert.equal(code, 0, output);
  // wasm always loads, so the choice is wasm unless tfjs-node is installed.
  const match = output.match(/attnlab: backend (\w+)\nchose (\w+)/);
  assert.ok(match, output);
  assert.equal(match[1], match[2]);
  assert.ok(["tensorflow", "wasm"].includes(match[2]), output);
});

Deno.test("ATTNLAB_BACKEND forces a backend", async () => {
  const { code, output } = await runWithEnv({ ATTNLAB_BACKEND: "cpu" });
  assert.equal(code, 0, output);
  assert.match(output, /chose cpu/);
});

Deno.test("an unknown ATTNLAB_BACKEND is a clear error", async () => {
  const { code, output } = await runWithEnv({ ATTNLAB_BACKEND: "gpu" });
  assert.notEqual(code, 0);
  assert.match(output, /ATTNLAB_BACKEND must be one of tensorflow, wasm, cpu, got "gpu"/);
});

Deno.test("a forced backend that cannot load says how to install it", async () => {
  const before = await initBackend({ quiet: true });
  await assert.rejects(
    () => initBackend({ backend: "tensorflow", quiet: true }),
    /backend "tensorflow" could not load .*deno install --allow-scripts=npm:@tensorflow\/tfjs-node/,
  );
  assert.equal(backendName(), before, "a failed switch leaves the backend in place");
  await assert.rejects(() => initBackend({ backend: "cuda" as "cpu" }), /options.backend must be one of/);
  await assert.rejects(() => initBackend({ backed: "cpu" } as never), /unknown option "backed"/);
});

Deno.test("explicit switches work and compute the same numbers on wasm and cpu", async () => {
  const original = await initBackend({ quiet: true });
  const values: Float32Array[] = [];
  for (const name of ["wasm", "cpu"] as const) {
    assert.equal(await initBackend({ backend: name, quiet: true }), name);
    assert.equal(tf.getBackend(), name);
    values.push(
      tf.tidy(() =>
        tf.matMul(tf.range(0, 6).reshape([2, 3]), tf.range(0, 6).reshape([3, 2])).dataSync() as Float32Array
      ),
    );
  }
  assert.deepEqual(Array.from(values[0]), Array.from(values[1]));
  assert.deepEqual(Array.from(values[0]), [10, 13, 28, 40]);
  await initBackend({ backend: original, quiet: true });
});
