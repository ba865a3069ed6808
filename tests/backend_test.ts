import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { backendName, initBackend, loadableBackends } from "../lib/backend.ts";
import { openBlas } from "../lib/blas/mod.ts";

function blasLoads(): boolean {
  try {
    openBlas();
    return true;
  } catch {
    return false;
  }
}

async function runWithEnv(env: Record<string, string>): Promise<{ code: number; output: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["eval", "import { initBackend } from './lib/backend.ts'; console.log('chose', await initBackend());"],
    // ATTNLAB_BACKEND "" (unset) unless given: helpers.ts sets it in this process, and a child inherits it.
    env: { ATTNLAB_BACKEND: "", ...env, NO_COLOR: "1" },
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
  const match = output.match(/attnlab: backend (\w+)\nchose (\w+)/);
  assert.ok(match, output);
  assert.equal(match[1], match[2]);
  // blas wins whenever OpenBLAS loads, unless tfjs-node is installed or webgpu finds a GPU (never a software
  // adapter such as lavapipe); wasm always loads.
  const expected = blasLoads() ? ["tensorflow", "webgpu", "blas"] : ["tensorflow", "webgpu", "wasm"];
  assert.ok(expected.includes(match[2]), output);
});

Deno.test("without a BLAS library the default falls back to wasm and says how to install OpenBLAS", async () => {
  const { code, output } = await runWithEnv({ ATTNLAB_BLAS: "/nonexistent/libopenblas.so" });
  assert.equal(code, 0, output);
  assert.match(output, /attnlab: blas backend unavailable .*apt-get install libopenblas0/);
  assert.match(output, /chose (wasm|tensorflow|webgpu)/);
});

Deno.test("a forced blas backend without a BLAS library is an error with the install hint", async () => {
  const { code, output } = await runWithEnv({ ATTNLAB_BLAS: "/nonexistent/libopenblas.so", ATTNLAB_BACKEND: "blas" });
  assert.notEqual(code, 0);
  assert.match(output, /backend "blas" could not load .*\/nonexistent\/libopenblas.so.*apt-get install libopenblas0/);
});

Deno.test("ATTNLAB_BACKEND forces a backend", async () => {
  const { code, output } = await runWithEnv({ ATTNLAB_BACKEND: "cpu" });
  assert.equal(code, 0, output);
  assert.match(output, /chose cpu/);
});

Deno.test("an unknown ATTNLAB_BACKEND is a clear error", async () => {
  const { code, output } = await runWithEnv({ ATTNLAB_BACKEND: "gpu" });
  assert.notEqual(code, 0);
  assert.match(output, /ATTNLAB_BACKEND must be one of tensorflow, webgpu, blas, wasm, cpu, got "gpu"/);
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
  await assert.rejects(() => loadableBackends({ software: true } as never), /unknown option "software"/);
  await assert.rejects(() => loadableBackends({ softwareWebgpu: 1 as never }), /softwareWebgpu must be true or false/);
});

Deno.test("explicit switches work and compute the same numbers on every loadable backend", async () => {
  const original = await initBackend({ quiet: true });
  const names = await loadableBackends();
  assert.equal(backendName(), original, "loadableBackends leaves the backend in place");
  assert.ok(names.includes("wasm") && names.includes("cpu"), `${names}`);
  assert.equal(names.includes("blas"), blasLoads());
  const values: Float32Array[] = [];
  for (const name of names) {
    assert.equal(await initBackend({ backend: name, quiet: true }), name);
    assert.equal(tf.getBackend(), name);
    // Read asynchronously: webgpu (listed on a machine with a GPU) cannot read synchronously.
    const product = tf.tidy(() => tf.matMul(tf.range(0, 6).reshape([2, 3]), tf.range(0, 6).reshape([3, 2])));
    values.push(await product.data() as Float32Array);
    product.dispose();
  }
  for (const v of values) assert.deepEqual(Array.from(v), [10, 13, 28, 40]);
  await initBackend({ backend: original, quiet: true });
});
