// A quantized frozen base (MatMulNBits int8/int4) and the weight pack in the cache folder: the
// quantizer against its own dequantization and ONNX Runtime's kernel, the log-probs of real text
// against float32, a LoRA gradient through the quantized base against finite differences, and the
// pack and graph cache's reuse and invalidation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend, type HostTensor } from '../../../src/engine/backend';
import { Graph, op } from '../../../src/engine/graph';
import { CausalLM } from '../../../src/engine/models/model';
import { modelCacheDir } from '../../../src/engine/models/pack';
import { loraInputs, type LoraSpec } from '../../../src/engine/models/llama';
import {
  dequantizeRows,
  quantizeRows,
  type BaseQuantization,
  type QuantizedWeight,
} from '../../../src/engine/models/quantize';
import type { QuantizedMatrix } from '../../../src/engine/graph/ops/quant';
import { buildTrainGraph, trainableNames } from '../../../src/engine/train/graph';
import { LoraTrainer, type DistillSample } from '../../../src/engine/train/trainer';
import { writeExampleDocs } from '../../../src/demo/examples';
import { makeModel } from '../../../src/tools/makeModel';
import { HEAD_QUANTIZE_MIN } from '../../../src/engine/models/weights';
import { writeSafetensors } from '../../../src/engine/models/safetensors';
import { hfConfigJson } from '../../../src/engine/models/save';
import { resolveSettings } from '../../../src/pipeline/settings';
import { rng } from '../helpers/random';
import { randomWeights, tinyConfig } from '../helpers/tinyModel';

const root = mkdtempSync(join(tmpdir(), 'dd-quant-'));
test.after(() => rmSync(root, { recursive: true, force: true }));
let beP: Promise<Backend> | undefined;
const backend = () => (beP ??= Backend.create({ device: 'cpu', threads: 1 }));

/** A copy of a model folder in a temp dir (the pack's cache folder is named after the model folder). */
function copyModel(src: string, name: string): string {
  const dir = join(root, name);
  cpSync(src, dir, { recursive: true, filter: (p) => !p.includes('.docdistill-cache') });
  return dir;
}

/** A quantized weight's blocks as initializers of `g`, for MatMulNBits and friends (accuracy level 4). */
function blocksIn(g: Graph, q: QuantizedWeight, accuracyLevel = 4): QuantizedMatrix {
  return {
    b: g.initializer('b', 'uint8', [q.n, Math.ceil(q.k / 32), (32 * q.bits) / 8], q.b),
    scales: g.initializer('s', 'float32', [q.n, Math.ceil(q.k / 32)], q.scales),
    k: q.k,
    n: q.n,
    bits: q.bits,
    blockSize: 32,
    accuracyLevel,
  };
}

test('quantizer: int8 and int4 blocks round-trip within half a step, and MatMulNBits computes with them', async () => {
  const r = rng(3);
  const [N, K, M] = [40, 80, 5]; // K not a multiple of the block: the last block is padded
  const w = Float32Array.from({ length: N * K }, () => (r() - 0.5) * (r() < 0.05 ? 4 : 1));
  const x = Float32Array.from({ length: M * K }, () => r() - 0.5);
  for (const bits of [8, 4] as const) {
    const q = quantizeRows(w, N, K, bits);
    const dq = dequantizeRows(q);
    const blocks = Math.ceil(K / 32);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const s = (q.scales as Float32Array)[n * blocks + Math.floor(k / 32)]!;
        assert.ok(
          Math.abs(dq[n * K + k]! - w[n * K + k]!) <= s / 2 + 1e-7,
          `bits ${bits}: w[${n},${k}] off by more than half a step`,
        );
      }
    }
    // ONNX Runtime's MatMulNBits against x · dequantized(W)ᵀ in float64, at accuracy levels 0 and 4.
    const ref = new Float64Array(M * N);
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) ref[m * N + n]! += x[m * K + k]! * dq[n * K + k]!;
    for (const level of [0, 4]) {
      const g = new Graph(`mmnb_${bits}_${level}`);
      g.output(op.matmulNBits(g.input('x', 'float32', [M, K]), blocksIn(g, q, level)), 'y');
      const y = (await (await (await backend()).session(g)).run({ x: { dtype: 'float32', dims: [M, K], data: x } })).y!
        .data as Float32Array;
      const scale = Math.max(...ref.map(Math.abs));
      const err = Math.max(...y.map((v, i) => Math.abs(v - ref[i]!))) / scale;
      assert.ok(err < (level === 0 ? 1e-5 : 2e-2), `bits ${bits} level ${level}: relative error ${err}`);
    }
    // GatherBlockQuantized on the same bytes seen as [N, blocks · block · bits/8]: exactly the
    // dequantized rows (the padded tail of the last block cut off), repeated ids included.
    const ids = [7, 0, 39, 7, 12];
    const g = new Graph(`gbq_${bits}`);
    const qm = blocksIn(g, q);
    const rows = g.initializer('rows', 'uint8', [N, (blocks * 32 * bits) / 8], q.b);
    g.output(op.gatherBlockQuantized(qm, rows, g.input('ids', 'int64', [1, ids.length])), 'e');
    const e = (
      await (
        await (await backend()).session(g)
      ).run({
        ids: { dtype: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids.map(BigInt)) },
      })
    ).e!;
    assert.deepEqual(e.dims, [1, ids.length, K]);
    ids.forEach((id, i) => {
      for (let k = 0; k < K; k++)
        assert.ok(
          Math.abs((e.data as Float32Array)[i * K + k]! - dq[id * K + k]!) < 1e-6,
          `bits ${bits}: row ${id}[${k}] gathered ${(e.data as Float32Array)[i * K + k]} ≠ ${dq[id * K + k]}`,
        );
    });
  }
});

test('quantized base, large vocabulary: the head as int8 blocks, the embedding looked up from int8 blocks (no float table in the pack)', async () => {
  // V · D = 8 M values (HEAD_QUANTIZE_MIN): a vocabulary as large as a real model's relative to its width.
  for (const tie of [true, false]) {
    const cfg = tinyConfig({
      vocabSize: 32768,
      hiddenSize: 256,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 64,
      intermediateSize: 64,
      numLayers: 1,
      tieWordEmbeddings: tie,
    });
    assert.ok(cfg.vocabSize * cfg.hiddenSize >= HEAD_QUANTIZE_MIN);
    const src = randomWeights(cfg, 9);
    // Embedding and head rows of a real model's scale (RMS ≈ 0.02–0.05): the helper's 0.5 gives
    // logits so sharp that log-probs run to −50.
    for (const n of ['model.embed_tokens.weight', 'lm_head.weight'])
      src.tensors.get(n)?.data.forEach((v, i, a) => (a[i] = v * 0.08));
    const dir = join(root, `bigvocab-${tie}`);
    mkdirSync(dir, { recursive: true });
    writeSafetensors(
      join(dir, 'model.safetensors'),
      [...src.tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })),
    );
    writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfigJson(cfg)));
    const tokDir = made('tiny-llama', `bigvocab-tok-${tie}`);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) cpSync(join(tokDir, f), join(dir, f));
    const be = await backend();
    const ids = [[3, 32767, 17, 20000, 17, 5, 31000, 8]];
    const f32 = await (await CausalLM.load(dir, be)).score(ids);
    const m = await CausalLM.load(dir, be, { quantize: 'int8' });
    const q8 = await m.score(ids);
    const pack = m.graphs.weights.pack([])!;
    assert.ok(pack.has('lm_head.qb'), 'the head as int8 blocks');
    assert.ok(!pack.has('embed') && !pack.has('lm_head'), 'no float table in the pack');
    assert.equal(pack.has('embed.qb'), !tie, 'an untied embedding has int8 blocks of its own');
    // The same graph without a pack (weights held in memory) computes the same log-probs.
    const mem = await CausalLM.fromWeights(cfg, src, be, { id: `${dir}-mem`, quantize: 'int8' }).score(ids);
    assert.deepEqual(mem, q8);
    let sum = 0,
      n = 0;
    f32[0]!.forEach((v, j) => {
      if (v === null) return;
      sum += Math.abs(v - q8[0]![j]!);
      n++;
    });
    console.log(`V 32768 × D 256, tied ${tie}: int8 mean |Δ log-prob| ${(sum / n).toFixed(4)} over ${n} tokens`);
    assert.ok(sum / n < 0.05, `mean |Δ log-prob| ${sum / n}`);
  }
});

test('quantized backward: dy · W′ dequantized in pieces of rows equals the whole product (int8, int4)', async () => {
  const r = rng(5);
  const [N, K, M] = [40, 80, 6];
  const w = Float32Array.from({ length: N * K }, () => r() - 0.5);
  const dy = Float32Array.from({ length: M * N }, () => r() - 0.5);
  for (const bits of [8, 4] as const) {
    const q = quantizeRows(w, N, K, bits);
    const dq = dequantizeRows(q);
    const ref = new Float64Array(M * K);
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) ref[m * K + k]! += dy[m * N + n]! * dq[n * K + k]!;
    for (const rows of [N, 7]) {
      const g = new Graph(`deqT_${bits}_${rows}`);
      const wq = blocksIn(g, q);
      g.output(op.matmulDequantizedT(g.input('dy', 'float32', [M, N]), wq, rows * K * 4), 'dx');
      // Pieces of 7 rows: 6 products (the last of 5 rows), summed.
      assert.equal(g.nodes.filter((n) => n.op === 'MatMul').length, Math.ceil(N / rows));
      const s = await (await backend()).session(g);
      const dx = (await s.run({ dy: { dtype: 'float32', dims: [M, N], data: dy } })).dx!.data as Float32Array;
      const err = Math.max(...dx.map((v, i) => Math.abs(v - ref[i]!))) / Math.max(...ref.map(Math.abs));
      assert.ok(err < 1e-5, `bits ${bits}, ${rows} rows at a time: relative error ${err}`);
    }
  }
});

/** Mean and largest |Δ log-prob| of quantized against float32 over the tokens of `texts`. */
async function fidelity(
  dir: string,
  texts: string[],
  q: BaseQuantization,
): Promise<{ mean: number; max: number; tokens: number }> {
  const be = await backend();
  const f32 = await CausalLM.load(dir, be);
  const qm = await CausalLM.load(dir, be, { quantize: q });
  const ids = texts.map((t) => f32.tokenizer.encode(t).slice(0, 200));
  const [a, b] = [await f32.score(ids), await qm.score(ids)];
  let sum = 0,
    max = 0,
    n = 0;
  a.forEach((row, i) =>
    row.forEach((v, j) => {
      if (v === null) return;
      const d = Math.abs(v - b[i]![j]!);
      sum += d;
      max = Math.max(max, d);
      n++;
    }),
  );
  return { mean: sum / n, max, tokens: n };
}

const docsDir = join(root, 'docs');
const realText = (): string[] => {
  if (!existsSync(docsDir)) writeExampleDocs(docsDir, 6, 11);
  return readdirSync(docsDir)
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => readFileSync(join(docsDir, f), 'utf8'));
};

// Bounds: 2–4× what was measured when this was written (the test prints the figures): on the
// random tiny-qwen2 0.0008 (int8) and 0.011 (int4).
// The demo model is far more sensitive than a random one: its weights have outliers ≈ 40× their
// RMS, and a block holding one has coarse steps for the rest. The mix-1 model measured 0.095 at
// int8 and 0.65 at int4; fine-tuned on mix 7 from it 0.069 and 1.15 on the same texts; the built-in
// one (that, then mixes 20, 22 and 23) 0.075 and 0.82.
const bounds: Record<string, Record<'int8' | 'int4', number>> = {
  demo: { int8: 0.2, int4: 2.3 },
  'tiny-qwen2': { int8: 0.003, int4: 0.03 },
};

const made = (shape: string, name: string) => makeModel({ shape, seed: 5, out: join(root, name) }).dir;

for (const [label, src] of [
  ['demo', () => copyModel(join(__dirname, '../../../media/demo-model'), 'fid-demo')],
  ['tiny-qwen2', () => made('tiny-qwen2', 'fid-qwen2')],
] as const) {
  test(`quantized base: log-probs of real text stay close to float32 (${label} model)`, async () => {
    const dir = src();
    const texts = realText();
    for (const q of ['int8', 'int4'] as const) {
      const f = await fidelity(dir, texts, q);
      console.log(
        `${label} ${q}: mean |Δ log-prob| ${f.mean.toFixed(4)}, max ${f.max.toFixed(3)} over ${f.tokens} tokens`,
      );
      assert.ok(f.mean < bounds[label]![q], `${q}: mean |Δ log-prob| ${f.mean}`);
    }
  });
}

test('quantized base: the LoRA gradient flows through MatMulNBits (finite differences, KL distillation)', async () => {
  const cfg = tinyConfig({ hiddenSize: 64, intermediateSize: 96, headDim: 16, numLayers: 2, vocabSize: 53 });
  const be = await backend();
  for (const q of ['int8', 'int4'] as const) {
    const model = CausalLM.fromWeights(cfg, randomWeights(cfg, 4), be, { id: `grad-${q}`, quantize: q });
    // Level 0 computes the product in float (level 4 rounds the input to int8, a step function that
    // finite differences cannot see through); the backward is the same at every level.
    model.graphs.accuracyLevel = 0;
    const spec: LoraSpec = { rank: 2, alpha: 4, targets: ['q', 'v', 'up', 'down', 'lm_head'] };
    const o = { loss: 'kl' as const, lora: spec, temperature: 2 };
    const g = buildTrainGraph(model.graphs, o);
    assert.ok(
      g.nodes.some((n) => n.op === 'MatMulNBits'),
      'the base is read through MatMulNBits',
    );
    const floats = g.initializers
      .filter((w) => /^layers\.\d+\.(q|k|v|o|gate|up|down)$/.test(w.tensor.name))
      .map((w) => w.tensor.name);
    assert.deepEqual(floats, [], 'no float copy of a decoder linear weight');
    // With an int4 base the head is quantized too (int8 blocks).
    assert.equal(
      g.initializers.filter((w) => w.tensor.name.endsWith('.qb')).length,
      cfg.numLayers * 7 + (q === 'int4' ? 1 : 0),
    );
    const s = await be.session(g);
    const r = rng(8);
    const tok = () => 2 + Math.floor(r() * (cfg.vocabSize - 2));
    const i64 = (dims: number[], v: number[]): HostTensor => ({
      dtype: 'int64',
      dims,
      data: BigInt64Array.from(v, BigInt),
    });
    const f32 = (dims: number[], v: number[]): HostTensor => ({ dtype: 'float32', dims, data: Float32Array.from(v) });
    const student = Array.from({ length: 12 }, tok);
    const teacher = [...Array.from({ length: 5 }, tok), ...student.slice(0, 6)];
    const feeds: Record<string, HostTensor> = {
      ids: i64([2, 6], student),
      mask: i64([2, 6], Array(12).fill(1)),
      positions: i64([2, 6], [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]),
      student_idx: i64([2, 3], [2, 3, 4, 1, 2, 3]),
      answer_mask: f32([2, 3], [1, 1, 1, 1, 1, 0]),
      sample_weights: f32([2], [1, 0.5]),
      teacher_ids: i64([2, 11], [...teacher, ...teacher]),
      teacher_mask: i64([2, 11], Array(22).fill(1)),
      teacher_positions: i64([2, 11], [...Array(11).keys(), ...Array(11).keys()]),
      teacher_idx: i64([2, 3], [7, 8, 9, 6, 7, 8]),
    };
    for (const i of loraInputs(cfg, spec))
      feeds[i.name] = f32(
        i.shape,
        Array.from({ length: i.shape[0] * i.shape[1] }, () => (r() - 0.5) * 0.8),
      );
    const out = await s.run(feeds);
    let worst = 0;
    const h = 3e-3;
    for (const n of trainableNames(model.graphs, o)) {
      const x = feeds[n]!.data as Float32Array;
      const grad = out[`grad.${n}`]!.data as Float32Array;
      // The largest gradient of each tensor, where float32 differences are well above rounding.
      let j = 0;
      grad.forEach((v, k) => (Math.abs(v) > Math.abs(grad[j]!) ? (j = k) : 0));
      const orig = x[j]!;
      x[j] = orig + h;
      const lp = (await s.run(feeds, ['loss'])).loss!.data[0] as number;
      x[j] = orig - h;
      const lm = (await s.run(feeds, ['loss'])).loss!.data[0] as number;
      x[j] = orig;
      const num = (lp - lm) / (2 * h);
      const rel = Math.abs(grad[j]! - num) / Math.max(Math.abs(num), Math.abs(grad[j]!), 1e-4);
      worst = Math.max(worst, rel);
    }
    console.log(
      `${q}: loss ${(out.loss!.data[0] as number).toFixed(5)}, worst relative LoRA gradient error ${worst.toExponential(2)}`,
    );
    assert.ok(worst < 2e-2, `${q}: relative error ${worst}`);
  }
});

test('weight pack and graphs in the model cache folder: reused by the next load, rebuilt when the model or setting changes', async () => {
  const dir = made('tiny-llama', 'cache');
  const cache = modelCacheDir(dir);
  const ids = [[1, 5, 9, 13, 17, 21, 25]];
  const load = async (q: BaseQuantization = 'none') => {
    const be = await Backend.create({ device: 'cpu', threads: 1 });
    const m = await CausalLM.load(dir, be, { quantize: q });
    const lp = await m.score(ids);
    await be.dispose();
    return { lp, pack: m.graphs.weights.pack([])! };
  };
  const files = () => readdirSync(cache).sort();
  const first = await load();
  assert.ok(first.pack.built, 'the first load builds the pack');
  const onnx = files().filter((f) => f.endsWith('.onnx') && !f.includes('.opt-'));
  assert.equal(onnx.length, 1, `one graph file: ${files().join(', ')}`);
  const graphMtime = statSync(join(cache, onnx[0]!)).mtimeMs;
  assert.ok(!existsSync(join(dir, '.docdistill-cache')), 'nothing is written into the model folder');
  // ONNX Runtime's optimized copy of the graph, with its pre-packed weights, beside it.
  const stem = onnx[0]!.replace(/\.onnx$/, '');
  const opt = files().filter((f) => f.startsWith(`${stem}.opt-`));
  assert.deepEqual(
    opt.map((f) => f.replace(/^.*\.opt-[0-9a-f]+/, '')),
    ['.data', '.json', '.onnx'],
    `the optimized copy: ${files().join(', ')}`,
  );
  const optMtime = () => opt.map((f) => statSync(join(cache, f)).mtimeMs);
  const optBefore = optMtime();
  // It computes what the graph computes: a plain session on the same graph, from bytes, agrees.
  const plain = async () => {
    const be = await Backend.create({ device: 'cpu', threads: 1 });
    const lp = await (await CausalLM.load(dir, be, { cacheDir: false })).score(ids);
    await be.dispose();
    return lp;
  };
  const ref = await plain();
  for (let i = 0; i < ref[0]!.length; i++)
    assert.ok(Math.abs(ref[0]![i]! - first.lp[0]![i]!) < 1e-5, `log-prob ${i}: ${first.lp[0]![i]} vs ${ref[0]![i]}`);

  const second = await load();
  assert.equal(second.pack.built, false, 'the second load reuses the pack');
  assert.equal(second.pack.id, first.pack.id);
  assert.equal(statSync(join(cache, onnx[0]!)).mtimeMs, graphMtime, 'and the graph file');
  assert.deepEqual(optMtime(), optBefore, 'and the optimized copy');
  assert.deepEqual(second.lp, first.lp);

  // A damaged optimized copy (truncated data, a manifest that does not match) is written again.
  truncateSync(
    join(
      cache,
      opt.find((f) => f.endsWith('.data'))!,
    ),
    1000,
  );
  const rewritten = await load();
  assert.deepEqual(rewritten.lp, first.lp);
  assert.ok(
    statSync(
      join(
        cache,
        opt.find((f) => f.endsWith('.data'))!,
      ),
    ).size > 1000,
    'rewritten',
  );

  // Another setting: its own pack, the float one stays.
  const q8 = await load('int8');
  assert.ok(q8.pack.built && q8.pack.id !== first.pack.id);
  assert.ok(
    !files().some((f) => f.startsWith(`${q8.pack.id}.`) && f.includes('.opt-')),
    'no optimized copy of a quantized graph (ONNX Runtime 1.30 cannot load MatMulNBits pre-packed weights back)',
  );
  assert.ok(existsSync(first.pack.path));

  // Weights held once: the sessions map the pack; JavaScript kept no prepared copy (without a pack it does).
  const be = await backend();
  const held = async (cacheDir?: false) => {
    const m = await CausalLM.load(dir, be, { cacheDir, quantize: 'int8' });
    await m.score(ids);
    return m.graphs.weights.heldBytes;
  };
  assert.equal(await held(), 0);
  assert.ok((await held(false)) > 0);

  // A damaged pack (truncated, or its manifest unreadable) is rebuilt, with the same results.
  truncateSync(first.pack.path, 100);
  const repaired = await load();
  assert.ok(repaired.pack.built);
  assert.deepEqual(repaired.lp, first.lp);
  writeFileSync(join(cache, `${first.pack.id}.json`), '{not json');
  assert.ok((await load()).pack.built);

  // This process marks the packs it reads; a process that read it and has exited leaves no marker
  // behind once the pack is read again.
  assert.ok(existsSync(join(cache, `${first.pack.id}.pid-${process.pid}`)));
  const reader = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((res) => reader.on('exit', res));
  writeFileSync(join(cache, `${first.pack.id}.pid-${reader.pid}`), '');
  rmSync(join(cache, `${first.pack.id}.pid-${process.pid}`));
  await load();
  assert.deepEqual(
    files().filter((f) => f.startsWith(`${first.pack.id}.pid-`)),
    [`${first.pack.id}.pid-${process.pid}`],
  );

  // Changed weights (a new modification time): a new pack; the old version's packs are deleted.
  const st = join(dir, 'model.safetensors');
  utimesSync(st, new Date(), new Date(Date.now() + 5000));
  const changed = await load();
  assert.ok(changed.pack.built && changed.pack.id !== first.pack.id);
  assert.ok(!existsSync(first.pack.path) && !existsSync(q8.pack.path), `stale packs left: ${files().join(', ')}`);
  assert.ok(!existsSync(join(cache, onnx[0]!)), 'and their graphs');
  assert.ok(!opt.some((f) => existsSync(join(cache, f))), "and the graphs' optimized copies");
  assert.ok(
    files().some((f) => f.startsWith(`${changed.pack.id}.`) && f.endsWith('.onnx')),
    'the new graph is there',
  );
  assert.ok(!files().some((f) => f.startsWith(`${first.pack.id}.pid-`)), 'and their markers');

  // A pack another running process reads (a child that waits, marked as reading the int8 pack)
  // is kept when the weights change again; a marker of a process that has exited protects nothing.
  const q8b = await load('int8');
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  writeFileSync(join(cache, `${q8b.pack.id}.pid-${other.pid}`), '');
  const gone = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((res) => gone.on('exit', res));
  writeFileSync(join(cache, `${changed.pack.id}.pid-${gone.pid}`), '');
  utimesSync(st, new Date(), new Date(Date.now() + 10000));
  const again = await load();
  assert.ok(again.pack.built);
  assert.ok(!existsSync(changed.pack.path), `stale pack left: ${files().join(', ')}`);
  assert.ok(existsSync(q8b.pack.path), 'the pack another running process reads is kept');
  other.kill();
  await new Promise((res) => other.on('exit', res));
  utimesSync(st, new Date(), new Date(Date.now() + 15000));
  assert.ok((await load()).pack.built);
  assert.ok(!files().some((f) => f.startsWith(`${q8b.pack.id}.`)), `once it has exited, gone: ${files().join(', ')}`);
  assert.ok(!files().some((f) => f.includes('.tmp-')), 'no temporary files left');
});

test('quantized base: LoRA distillation trains (the KL falls) with teacher and student on the same int4 base', async () => {
  const cfg = tinyConfig({ hiddenSize: 64, intermediateSize: 96, headDim: 16, numLayers: 2, vocabSize: 53 });
  const model = CausalLM.fromWeights(cfg, randomWeights(cfg, 6), await backend(), {
    id: 'train-int4',
    quantize: 'int4',
  });
  const r = rng(2);
  const tok = () => 2 + Math.floor(r() * (cfg.vocabSize - 2));
  const samples: DistillSample[] = Array.from({ length: 4 }, () => {
    const doc = Array.from({ length: 8 }, tok);
    const qa = Array.from({ length: 6 }, tok);
    return { teacher: [...doc, ...qa], student: qa, answerLength: 3 };
  });
  const t = new LoraTrainer(model, {
    loss: 'kl',
    lora: { rank: 4, alpha: 8, targets: ['q', 'v', 'up', 'down'] },
    dropout: 0,
    temperature: 1,
    lr: 2e-2,
    weightDecay: 0,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    schedule: 'constant',
    warmupSteps: 0,
    totalSteps: 12,
    microBatch: 4,
    gradAccum: 1,
    maxGradNorm: 1,
    seed: 0,
  });
  const losses: number[] = [];
  for (let i = 0; i < 12; i++) losses.push((await t.trainStep(samples)).loss);
  console.log(`int4 base, KL: ${losses.map((l) => l.toFixed(4)).join(' ')}`);
  assert.ok(losses.every(Number.isFinite));
  assert.ok(losses.at(-1)! < 0.5 * losses[0]!, `the KL fell from ${losses[0]} to ${losses.at(-1)}`);
});

test('baseQuantization: validated as a setting; withQuantization gives one model per setting, sharing the weights source', async () => {
  assert.equal(resolveSettings({}).baseQuantization, 'none');
  assert.equal(resolveSettings({ baseQuantization: 'int4' }).baseQuantization, 'int4');
  assert.throws(
    () => resolveSettings({ baseQuantization: 'int3' as never }),
    /baseQuantization must be none, int8, int4 \(got int3\)/,
  );
  const cfg = tinyConfig();
  const m = CausalLM.fromWeights(cfg, randomWeights(cfg, 1), await backend(), { id: 'variants' });
  const q8 = m.withQuantization('int8');
  assert.equal(q8.quantization, 'int8');
  assert.equal(m.withQuantization('int8'), q8);
  assert.equal(q8.withQuantization('none'), m);
  assert.equal(m.withQuantization('none'), m);
  assert.throws(
    () =>
      CausalLM.fromWeights(cfg, randomWeights(cfg, 1), m.backend, { id: 'f64', dtype: 'float64', quantize: 'int8' }),
    /needs a float32 or float16 compute dtype/,
  );
});
