// The runtime side of the engine: provider choice with verified fallback, the session cache,
// external-data files, and float16 graphs on the CPU provider against float32.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Backend,
  NoProviderError,
  describeResolution,
  judgeSpeed,
  probeProvider,
  resolveProvider,
} from '../../../src/engine/backend';
import { Graph, op, serializeModel, writeModel, floatToHalf, halfToFloat } from '../../../src/engine/graph';
import { attentionBias, decoderLayer, ropeTables, type LayerWeights } from '../../../src/engine/models/layers';
import { rng } from '../helpers/random';

test('cpu passes its probe; a provider that cannot load is reported with the reason', async () => {
  const cpu = await probeProvider('cpu');
  assert.equal(cpu.ok, true);
  assert.ok(cpu.maxError! < 1e-5, `cpu probe error ${cpu.maxError}`);
  const cuda = await probeProvider('cuda');
  assert.equal(cuda.ok, false);
  assert.match(cuda.reason!, /\S/);
  console.log(`probe: cpu max error ${cpu.maxError!.toExponential(2)}; cuda: ${cuda.reason}`);
});

test('asking for a missing provider fails with an error that lists what was tried', async () => {
  await assert.rejects(resolveProvider('cuda'), (e: unknown) => {
    assert.ok(e instanceof NoProviderError);
    assert.equal(e.tried.length, 1);
    assert.equal(e.tried[0]!.provider, 'cuda');
    assert.match(e.message, /cuda: .+/);
    assert.match(e.message, /Set the device to "cpu"/);
    return true;
  });
});

test('auto falls back through the providers to one that works', async () => {
  const { provider, tried } = await resolveProvider('auto');
  assert.equal(tried.at(-1)!.provider, provider);
  assert.equal(tried.at(-1)!.ok, true);
  for (const t of tried.slice(0, -1)) assert.equal(t.ok, false, `${t.provider} passed but was not chosen`);
  for (const t of tried.slice(0, -1)) assert.match(t.reason!, /\S/, `${t.provider} was passed over without a reason`);
  assert.ok(
    tried.some((t) => t.provider === 'cuda'),
    'cuda is tried first on Linux',
  );
  console.log(`auto: ${describeResolution('auto', { provider, tried })}`);
});

test('auto keeps an accelerator only when it beats the CPU on the timed probe, and says by how much', () => {
  const slow = judgeSpeed('webgpu', 45, 1.5);
  assert.equal(slow.ok, false);
  assert.match(slow.reason!, /30\.0× slower than the CPU/);
  assert.match(slow.reason!, /set the device to "webgpu"/);
  const fast = judgeSpeed('cuda', 0.2, 1.5);
  assert.equal(fast.ok, true);
  assert.match(fast.reason!, /7\.5× faster than the CPU/);
  assert.equal(judgeSpeed('dml', 1.6, 1.5).ok, false, 'slower at all is not chosen: auto must never slow users down');
});

// With Mesa's software Vulkan driver installed (CI installs it; see .ci/run), WebGPU has an adapter
// that computes right numbers but is a CPU pretending to be a GPU.
test('auto does not choose WebGPU on a software adapter (lavapipe); an explicit webgpu setting still uses it', async (t) => {
  const probe = await probeProvider('webgpu');
  if (!probe.ok) {
    t.skip(`no WebGPU adapter here (${probe.reason}); install the lavapipe driver as .ci/run does`);
    return;
  }
  const auto = await resolveProvider('auto');
  assert.equal(auto.provider, 'cpu');
  const webgpu = auto.tried.find((r) => r.provider === 'webgpu')!;
  assert.equal(webgpu.ok, false);
  assert.ok(
    webgpu.probeMs! > webgpu.cpuProbeMs!,
    `timed probe: webgpu ${webgpu.probeMs} ms, cpu ${webgpu.cpuProbeMs} ms`,
  );
  assert.match(webgpu.reason!, /× slower than the CPU on the probe/);
  const line = describeResolution('auto', auto);
  assert.match(line, /^device cpu \(setting: auto\); not chosen: .*webgpu: \d+\.\d× slower than the CPU/);
  console.log(line);
  const explicit = await resolveProvider('webgpu');
  assert.equal(explicit.provider, 'webgpu');
});

function mlpGraph(name: string, weights: Float32Array, n: number): Graph {
  const g = new Graph(name);
  const x = g.input('x', 'float32', ['B', n]);
  const w = g.initializer('w', 'float32', [n, n], weights);
  g.output(op.reduceSum(op.matmul(x, w), [-1], false), 'y');
  return g;
}

test('external data: each large tensor starts on a page boundary and ONNX Runtime loads it', async () => {
  const n = 300; // 360 KB per weight
  const r = rng(7);
  const w1 = Float32Array.from({ length: n * n }, () => r() - 0.5);
  const w2 = Float32Array.from({ length: n * n }, () => r() - 0.5);
  const g = new Graph('ext');
  const x = g.input('x', 'float32', [1, n]);
  const small = g.initializer('small', 'float32', [3], Float32Array.of(1, 2, 3));
  const a = g.initializer('w1', 'float32', [n, n], w1);
  const b = g.initializer('w2', 'float32', [n, n], w2);
  g.output(op.add(op.reduceSum(op.matmul(op.matmul(x, a), b), [-1], false), op.reduceSum(small, [0], false)), 'y');

  const s = serializeModel(g, { externalData: { fileName: 'ext.onnx.data', threshold: 1024 } });
  assert.equal(s.external.length, 2, 'the two large weights go outside, the small one stays inline');
  for (const p of s.external) assert.equal(p.offset % 4096, 0, `offset ${p.offset} is not page-aligned`);

  const dir = mkdtempSync(join(tmpdir(), 'dd-ext-'));
  try {
    const path = join(dir, 'ext.onnx');
    const sizes = writeModel(g, path);
    assert.equal(statSync(`${path}.data`).size, sizes.dataBytes);
    assert.ok(statSync(path).size < 64 * 1024, 'the model file itself stays small');
    // The bytes at each offset are the tensor's.
    const data = readFileSync(`${path}.data`);
    const second = s.external[1]!;
    assert.deepEqual(new Uint8Array(data.buffer, data.byteOffset + second.offset, 64), second.data.subarray(0, 64));

    const be = await Backend.create({ device: 'cpu', threads: 1, cacheDir: dir, fileThreshold: 1024 });
    const xs = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    const out = (await (await be.session(g)).run({ x: { dtype: 'float32', dims: [1, n], data: xs } })).y!
      .data as Float32Array;
    // Reference in float64.
    const h = new Float64Array(n);
    for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) h[j]! += xs[k]! * w1[k * n + j]!;
    let expected = 6;
    for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) expected += h[k]! * w2[k * n + j]!;
    assert.ok(Math.abs(out[0]! - expected) / Math.abs(expected) < 1e-4, `${out[0]} vs ${expected}`);
    await be.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the session cache returns one session per graph content, whatever the graph object', async () => {
  const be = await Backend.create({ device: 'cpu', threads: 1 });
  const w = Float32Array.from({ length: 16 }, (_, i) => i / 16);
  const s1 = await be.session(mlpGraph('a', w, 4));
  const s2 = await be.session(mlpGraph('a', w, 4));
  const s3 = await be.session(
    mlpGraph(
      'a',
      Float32Array.from(w, (v) => v + 1),
      4,
    ),
  );
  assert.equal(s1, s2);
  assert.notEqual(s1, s3);
  await be.dispose();
});

test('a float16 decoder layer on the CPU provider matches float32 within 5e-3', async () => {
  const B = 2,
    T = 7,
    D = 64,
    H = 4,
    K = 2,
    E = 16,
    I = 128;
  const r = rng(99);
  const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);
  const data = {
    x: rand(B * T * D, 1),
    n1: Float32Array.from({ length: D }, () => 0.8 + 0.4 * r()),
    n2: Float32Array.from({ length: D }, () => 0.8 + 0.4 * r()),
    wq: rand(D * H * E, 0.15),
    wk: rand(D * K * E, 0.15),
    wv: rand(D * K * E, 0.15),
    wo: rand(H * E * D, 0.15),
    wg: rand(D * I, 0.15),
    wu: rand(D * I, 0.15),
    wd: rand(I * D, 0.1),
  };
  const mask = BigInt64Array.from({ length: B * T }, (_, i) => (i < 2 ? 0n : 1n));
  const pos = BigInt64Array.from({ length: B * T }, (_, i) => BigInt(i < T ? Math.max(0, i - 2) : i - T));

  const build = (dtype: 'float32' | 'float16') => {
    const g = new Graph(`layer_${dtype}`);
    const conv = (a: Float32Array) => (dtype === 'float32' ? a : Uint16Array.from(a, floatToHalf));
    const init = (name: keyof typeof data, shape: number[]) => g.initializer(name, dtype, shape, conv(data[name]));
    const x = g.input('x', dtype, ['B', 'T', D]);
    const m = g.input('mask', 'int64', ['B', 'T']);
    const p = g.input('pos', 'int64', ['B', 'T']);
    const w: LayerWeights = {
      inputNorm: init('n1', [D]),
      postNorm: init('n2', [D]),
      q: { weight: init('wq', [D, H * E]) },
      k: { weight: init('wk', [D, K * E]) },
      v: { weight: init('wv', [D, K * E]) },
      o: { weight: init('wo', [H * E, D]) },
      gate: { weight: init('wg', [D, I]) },
      up: { weight: init('wu', [D, I]) },
      down: { weight: init('wd', [I, D]) },
    };
    const invFreq = g.constant(
      'float32',
      [E / 2],
      Array.from({ length: E / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / E)),
    );
    const out = decoderLayer(
      x,
      w,
      { numHeads: H, numKvHeads: K, headDim: E, eps: 1e-5 },
      ropeTables(p, invFreq, dtype),
      attentionBias(m, 'T', 'T'),
    );
    g.output(op.cast(out.out, 'float32'), 'y');
    return g;
  };
  const be = await Backend.create({ device: 'cpu', threads: 1 });
  const feeds = (dtype: 'float32' | 'float16') => ({
    x: { dtype, dims: [B, T, D], data: dtype === 'float32' ? data.x : Uint16Array.from(data.x, floatToHalf) },
    mask: { dtype: 'int64' as const, dims: [B, T], data: mask },
    pos: { dtype: 'int64' as const, dims: [B, T], data: pos },
  });
  const y32 = (await (await be.session(build('float32'))).run(feeds('float32'))).y!.data as Float32Array;
  const y16 = (await (await be.session(build('float16'))).run(feeds('float16'))).y!.data as Float32Array;
  let maxDiff = 0,
    maxRef = 0;
  for (let i = 0; i < y32.length; i++) {
    if (i % (T * D) < 2 * D && i < T * D) continue; // padded queries of row 0 carry no meaning
    maxDiff = Math.max(maxDiff, Math.abs(y32[i]! - y16[i]!));
    maxRef = Math.max(maxRef, Math.abs(y32[i]!));
  }
  const rel = maxDiff / maxRef;
  console.log(
    `float16 vs float32 decoder layer: max abs diff ${maxDiff.toExponential(2)}, relative to max |y| ${rel.toExponential(2)}`,
  );
  assert.ok(rel < 5e-3, `relative error ${rel}`);
  assert.ok(rel > 0, 'the float16 graph really ran in float16');
  assert.equal(halfToFloat(floatToHalf(1.5)), 1.5);
  await be.dispose();
});
