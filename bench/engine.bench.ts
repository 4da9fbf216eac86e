// Engine core benchmark:
//  1. a 30-layer stack of Llama decoder blocks (SmolLM2-135M dimensions) built by the engine:
//     graph build, serialisation, session creation and forward run time;
//  2. MatMul GFLOP/s through the engine's Backend, side by side with the same MatMul run on a raw
//     onnxruntime-node session, every figure as a share of the best rate measured in this run.
import * as ort from 'onnxruntime-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../src/engine/backend';
import { Graph, op, serializeModel } from '../src/engine/graph';
import { attentionBias, decoderLayer, ropeTables, type LayerWeights } from '../src/engine/models/layers';
import { now, peakRssMb, saveResult, table, threadsArg, timeIt } from './common';

const threads = threadsArg();

function filler(seed: number) {
  let s = seed >>> 0;
  return (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      a[i] = ((s / 4294967296) * 2 - 1) * scale;
    }
    return a;
  };
}

async function blockStack() {
  const L = 30,
    D = 576,
    H = 9,
    K = 3,
    E = 64,
    I = 1536,
    B = 1,
    T = 128;
  const rand = filler(1);
  const t0 = now();
  const g = new Graph('stack30');
  const xIn = g.input('x', 'float32', ['B', 'T', D]);
  const mask = g.input('mask', 'int64', ['B', 'T']);
  const pos = g.input('pos', 'int64', ['B', 'T']);
  const invFreq = g.constant(
    'float32',
    [E / 2],
    Array.from({ length: E / 2 }, (_, i) => 1 / 100000 ** ((2 * i) / E)),
  );
  const rope = ropeTables(pos, invFreq, 'float32');
  const bias = attentionBias(mask, 'T', 'T');
  let x = xIn;
  for (let l = 0; l < L; l++) {
    const w = (name: string, i: number, o: number) => ({
      weight: g.initializer(`l${l}.${name}`, 'float32', [i, o], rand(i * o, 0.05)),
    });
    const lw: LayerWeights = {
      inputNorm: g.initializer(
        `l${l}.n1`,
        'float32',
        [D],
        rand(D, 1).map((v) => 1 + 0.1 * v),
      ),
      postNorm: g.initializer(
        `l${l}.n2`,
        'float32',
        [D],
        rand(D, 1).map((v) => 1 + 0.1 * v),
      ),
      q: w('q', D, H * E),
      k: w('k', D, K * E),
      v: w('v', D, K * E),
      o: w('o', H * E, D),
      gate: w('g', D, I),
      up: w('u', D, I),
      down: w('d', I, D),
    };
    x = decoderLayer(x, lw, { numHeads: H, numKvHeads: K, headDim: E, eps: 1e-5 }, rope, bias).out;
  }
  g.output(op.reduceMean(x, [-1], false), 'y');
  const buildMs = now() - t0;
  const t1 = now();
  serializeModel(g, { externalData: { fileName: 'x.data' } });
  const serializeMs = now() - t1;

  const cacheDir = mkdtempSync(join(tmpdir(), 'dd-bench-'));
  try {
    const be = await Backend.create({ device: 'cpu', threads, cacheDir });
    const t2 = now();
    const s = await be.session(g);
    const createMs = now() - t2; // includes writing .onnx + .data
    const feeds = {
      x: { dtype: 'float32' as const, dims: [B, T, D], data: rand(B * T * D, 1) },
      mask: { dtype: 'int64' as const, dims: [B, T], data: new BigInt64Array(B * T).fill(1n) },
      pos: {
        dtype: 'int64' as const,
        dims: [B, T],
        data: BigInt64Array.from({ length: B * T }, (_, i) => BigInt(i % T)),
      },
    };
    const runMs = await timeIt(() => s.run(feeds), 5, 1);
    const flops = 2 * B * T * L * (D * H * E + 2 * D * K * E + H * E * D + 3 * D * I) + 2 * B * L * H * T * T * E * 2;
    await be.dispose();
    return {
      layers: L,
      nodes: g.nodes.length,
      weightsMB: g.initializers.reduce((n, i) => n + i.data.length * 4, 0) / 2 ** 20,
      buildMs,
      serializeMs,
      createMs,
      runMs,
      tokensPerS: (B * T) / (runMs / 1000),
      gflops: flops / (runMs / 1000) / 1e9,
    };
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

async function matmuls() {
  const sizes: [number, number, number][] = [
    [128, 576, 1536],
    [512, 576, 1536],
    [1024, 1536, 576],
    [1024, 1024, 1024],
    [2048, 2048, 2048],
  ];
  const rand = filler(2);
  const be = await Backend.create({ device: 'cpu', threads });
  const rows: { size: string; path: string; gflops: number }[] = [];
  for (const [M, Kd, N] of sizes) {
    const flops = 2 * M * Kd * N;
    const reps = Math.max(3, Math.min(30, Math.round(2e10 / flops)));
    const a = rand(M * Kd, 1);
    const b = rand(Kd * N, 1);
    // Engine: weight as an initializer (prepacked by ORT), activation fed.
    const g = new Graph(`mm_${M}_${Kd}_${N}`);
    g.output(op.matmul(g.input('a', 'float32', [M, Kd]), g.initializer('b', 'float32', [Kd, N], b)), 'y');
    const s = await be.session(g);
    const engMs = await timeIt(() => s.run({ a: { dtype: 'float32', dims: [M, Kd], data: a } }), reps, 2);
    rows.push({ size: `${M}×${Kd}×${N}`, path: 'engine (weight initializer)', gflops: flops / engMs / 1e6 });
    // Raw onnxruntime-node, both operands fed: the plain MatMul kernel.
    const g2 = new Graph(`mm2_${M}_${Kd}_${N}`);
    g2.output(op.matmul(g2.input('a', 'float32', [M, Kd]), g2.input('b', 'float32', [Kd, N])), 'y');
    const raw = await ort.InferenceSession.create(serializeModel(g2).model, {
      intraOpNumThreads: threads,
      executionProviders: ['cpu'],
    });
    const ta = new ort.Tensor('float32', a, [M, Kd]);
    const tb = new ort.Tensor('float32', b, [Kd, N]);
    const rawMs = await timeIt(() => raw.run({ a: ta, b: tb }), reps, 2);
    rows.push({ size: `${M}×${Kd}×${N}`, path: 'raw onnxruntime-node (both fed)', gflops: flops / rawMs / 1e6 });
    await raw.release();
  }
  await be.dispose();
  const best = Math.max(...rows.map((r) => r.gflops));
  return rows.map((r) => ({ ...r, ofBest: r.gflops / best }));
}

async function main() {
  console.log(`threads: ${threads}`);
  const mm = await matmuls();
  table(
    mm.map((r) => ({ size: r.size, path: r.path, 'GFLOP/s': r.gflops, 'of best': `${(100 * r.ofBest).toFixed(0)} %` })),
  );
  const st = await blockStack();
  console.log('\n30-layer block stack (SmolLM2-135M dims, B=1, T=128, float32):');
  table([
    {
      nodes: st.nodes,
      'weights MB': st.weightsMB,
      'build ms': st.buildMs,
      'serialize ms': st.serializeMs,
      'session create ms': st.createMs,
      'run ms': st.runMs,
      'tokens/s': st.tokensPerS,
      'GFLOP/s': st.gflops,
    },
  ]);
  console.log(`peak RSS ${peakRssMb().toFixed(0)} MB`);
  saveResult('engine', { threads, matmul: mm, stack: st, peakRssMb: peakRssMb() });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
