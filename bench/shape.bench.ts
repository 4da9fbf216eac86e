// Real-model shapes (`npm run bench -- --shape qwen2.5-0.5b`): on a random-weight model of that
// shape (make-model, float32) — prefill and decode at batch 1 and 16, a LoRA KL train step with a
// realistic teacher length, the peak RSS of each, the machine's weight-streaming bandwidth measured
// in the same run, and PyTorch eager (bench/torch) side by side, with a line per phase.
//
// Each workload runs in its own child process, so its peak RSS is its own. Each phase can be run
// alone (`--phase=bandwidth|generate|train|train-cached|torch-generate|torch-train`, comma-separated;
// train-cached is the train step against the teacher's cached top-64) so that a run under the shared
// heavy-work lock stays short; results are merged into
// bench/out/shape-<name>.json and the table shows the latest of each phase.
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { Backend } from '../src/engine/backend';
import { CausalLM } from '../src/engine/models/model';
import { Tokenizer } from '../src/engine/tokenizer';
import { Stepper } from '../src/engine/generate';
import { Graph, op } from '../src/engine/graph';
import { LoraTrainer, defaultTrainerConfig, type DistillSample } from '../src/engine/train/trainer';
import { LORA_TARGETS } from '../src/engine/models/llama';
import { makeModel, MODEL_SHAPES } from '../src/tools/makeModel';
import type { ModelConfig } from '../src/engine/models/config';
import { now, peakRssMb, saveResult, table, threadsArg, timeIt, torchBaseline } from './common';
import { leanMallocEnv } from '../src/common/leanMalloc';

const threads = threadsArg();
const arg = (name: string): string | undefined =>
  process.argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1] ??
  (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : undefined);
const shapeName = arg('shape');
const quantize = arg('quantize') ?? 'none';
const PROMPT = 350; // a passage of ≈300 tokens + instructions, as the teacher sees it
const NEW = 64;
const BATCHES = [1, 16];
// Train step: batch 8, teacher = passage + question + answer, student = question + answer.
const TB = 8,
  TS = 384,
  SS = 64,
  TA = 32,
  RANK = 16,
  STEPS = 2;

const ALL_PHASES = ['bandwidth', 'generate', 'train', 'train-cached', 'torch-generate', 'torch-train'] as const;
/** The teacher cache of the train-cached phase (the pipeline's default teacherTopK). */
const TOPK = 64;
type Phase = (typeof ALL_PHASES)[number];

/** Float32 bytes read by one decode step at batch 1: every linear weight and the LM head once. */
function decodeBytes(c: ModelConfig): number {
  const D = c.hiddenSize,
    L = c.numLayers,
    I = c.intermediateSize,
    H = c.numHeads,
    K = c.numKvHeads,
    E = c.headDim,
    V = c.vocabSize;
  return 4 * (L * (D * H * E + 2 * D * K * E + H * E * D + 3 * D * I) + V * D);
}

function modelDir(shape: string): string {
  const dir = `bench/out/models/${shape}`;
  if (!existsSync(`${dir}/config.json`)) {
    console.log(`making ${dir} (random weights, float32)…`);
    makeModel({ shape, seed: 0, out: dir, dtype: 'float32', force: true });
  }
  return dir;
}

/**
 * Weight-streaming bandwidth as a MatMul sees it: a chain of 72 float32 MatMuls at M = 1 with the
 * model's MLP shapes ([D, I] then [I, D], distinct weights, ≥ 1 GB: far beyond the caches).
 */
async function bandwidth(c: ModelConfig) {
  const be = await Backend.create({ device: 'cpu', threads });
  const D = c.hiddenSize,
    I = c.intermediateSize,
    N = 72;
  const g = new Graph(`bandwidth_${D}_${I}_${N}`);
  let x = g.input('x', 'float32', [1, D]);
  let seed = 12345;
  const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.02;
  for (let i = 0; i < N; i++) {
    const [k, n] = i % 2 ? [I, D] : [D, I];
    const w = new Float32Array(k * n);
    for (let j = 0; j < w.length; j++) w[j] = rnd();
    x = op.matmul(x, g.initializer(`w${i}`, 'float32', [k, n], w));
  }
  g.output(x, 'y');
  const s = await be.session(g);
  const feed = { x: { dtype: 'float32' as const, dims: [1, D], data: new Float32Array(D).fill(0.1) } };
  const ms = await timeIt(() => s.run(feed), 15, 3);
  await be.dispose();
  const bytes = 4 * N * D * I;
  return { chainMs: ms, bytes, gbPerS: bytes / ms / 1e6 };
}

function randomIds(V: number, seed0: number) {
  let seed = seed0;
  return () => ((seed = (seed * 16807) % 2147483647) % (V - 3)) + 3;
}

async function generateChild(dir: string) {
  const be = await Backend.create({ device: 'cpu', threads });
  // The tokenizer apart: PyTorch's load (bench/torch) reads the model alone.
  const tt = now();
  const tokenizer = await Tokenizer.fromFolder(dir);
  const tokenizerS = (now() - tt) / 1000;
  const t0 = now();
  const model = await CausalLM.load(dir, be, {
    dtype: 'float32',
    tokenizer,
    ...(quantize !== 'none' ? { quantize } : {}),
  } as never);
  const t1 = now();
  const graph = model.graphs.stepGraph({});
  const t2 = now();
  const session = await model.session('step');
  const t3 = now();
  const rssLoaded = peakRssMb();
  const V = model.config.vocabSize;
  const results = [];
  for (const B of BATCHES) {
    const rnd = randomIds(V, B);
    const prompts = Array.from({ length: B }, () => Array.from({ length: PROMPT }, rnd));
    const w = new Stepper(session, model.config, 'float32', B, 8, {});
    await w.prefill(prompts.map((p) => p.slice(0, 4)));
    await w.decode(prompts.map(() => 5));
    const st = new Stepper(session, model.config, 'float32', B, PROMPT + NEW + 1, {});
    const a = now();
    let logits = await st.prefill(prompts);
    const b = now();
    for (let i = 0; i < NEW; i++) {
      const next = prompts.map((_, r) => {
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[r * V + v]! > logits[r * V + best]!) best = v;
        return best;
      });
      logits = await st.decode(next);
    }
    const c = now();
    results.push({
      batch: B,
      prefillS: (b - a) / 1000,
      decodeS: (c - b) / 1000,
      prefillTokS: (B * PROMPT) / ((b - a) / 1000),
      decodeTokS: (B * NEW) / ((c - b) / 1000),
      decodeMsPerStep: (c - b) / NEW,
      peakRssMb: peakRssMb(),
    });
  }
  await be.dispose();
  return {
    tokenizerS,
    folderS: (t1 - t0) / 1000,
    graphS: (t2 - t1) / 1000,
    sessionS: (t3 - t2) / 1000,
    nodes: graph.nodes.length,
    rssLoadedMb: rssLoaded,
    results,
    peakRssMb: peakRssMb(),
  };
}

/** A LoRA KL train step; with `topK`, against the teacher's cached top-k (computed first, timed apart). */
async function trainChild(dir: string, topK = 0) {
  const be = await Backend.create({ device: 'cpu', threads });
  const model = await CausalLM.load(dir, be, {
    dtype: 'float32',
    ...(quantize !== 'none' ? { quantize } : {}),
  } as never);
  const rnd = randomIds(model.config.vocabSize, 7);
  const batch: DistillSample[] = Array.from({ length: TB }, () => {
    const ans = Array.from({ length: TA }, rnd);
    return {
      student: [...Array.from({ length: SS - TA }, rnd), ...ans],
      teacher: [...Array.from({ length: TS - TA }, rnd), ...ans],
      answerLength: TA,
    };
  });
  const t = new LoraTrainer(model, {
    ...defaultTrainerConfig({ rank: RANK, alpha: 2 * RANK, targets: [...LORA_TARGETS] }, 100),
    microBatch: TB,
    lr: 1e-4,
    warmupSteps: 0,
    teacherTopK: topK,
  });
  const tk = now();
  await t.cacheTeacher(batch); // the teacher graph + session + one pass (topK only)
  await t.releaseTeacher(); // as the pipeline does once every sample is cached
  const cacheS = (now() - tk) / 1000;
  const tc = now();
  await t.trainStep(batch); // graph + session creation + a step
  const firstS = (now() - tc) / 1000;
  const times: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    const a = now();
    await t.trainStep(batch);
    times.push((now() - a) / 1000);
  }
  await be.dispose();
  return {
    firstStepS: firstS,
    stepS: times.reduce((x, y) => x + y, 0) / times.length,
    peakRssMb: peakRssMb(),
    cacheS,
  };
}

function child<T>(kind: string): T {
  const r = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      __filename,
      `--child=${kind}`,
      `--shape=${shapeName}`,
      `--threads=${threads}`,
      `--quantize=${quantize}`,
    ],
    // As the worker and the CLI run: DocDistill's malloc settings (src/common/leanMalloc.ts).
    { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'inherit'], env: leanMallocEnv(process.env) },
  );
  if (r.status !== 0) throw new Error(`${kind} child failed (status ${r.status}, signal ${r.signal})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

type Results = Partial<Record<Phase, { date: string; data: unknown }>>;

const f = (x: number | undefined, d = 1) => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));
const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}×` : 'n/a');

function report(shape: string, cfg: ModelConfig, res: Results) {
  type Gen = Awaited<ReturnType<typeof generateChild>>;
  type TGen = {
    load_s: number;
    results: { batch: number; prefill_tok_s: number; decode_tok_s: number }[];
    peak_rss_mb: number;
  };
  type Tr = Awaited<ReturnType<typeof trainChild>>;
  type TTr = { mean_step_s: number; peak_rss_mb: number };
  const bw = res.bandwidth?.data as Awaited<ReturnType<typeof bandwidth>> | undefined;
  const gen = res.generate?.data as Gen | undefined;
  const tg = res['torch-generate']?.data as TGen | undefined;
  const tr = res.train?.data as Tr | undefined;
  const trc = res['train-cached']?.data as Tr | undefined;
  const tt = res['torch-train']?.data as TTr | undefined;
  const bytes = decodeBytes(cfg);
  const limitMs = bw ? bytes / (bw.gbPerS * 1e6) : undefined;
  console.log(
    `\n${shape}, ${quantize === 'none' ? 'float32' : quantize}, ${threads} threads; prompt ${PROMPT}, ${NEW} new tokens; train b${TB}, teacher ${TS} / student ${SS} / answer ${TA}, r${RANK}`,
  );
  for (const p of ALL_PHASES)
    console.log(`  ${p.padEnd(15)} ${res[p] ? `measured ${res[p]!.date}` : 'not measured (--phase=' + p + ')'}`);
  if (bw)
    console.log(
      `memory bandwidth (72 float32 MatMuls, M = 1, ${(bw.bytes / 1e9).toFixed(2)} GB): ${bw.gbPerS.toFixed(1)} GB/s; decode b1 reads ${(bytes / 1e9).toFixed(2)} GB float32 → limit ${f(limitMs, 0)} ms/token = ${f(limitMs ? 1000 / limitMs : undefined)} tok/s`,
    );
  const rows: Record<string, string | number>[] = [];
  const add = (what: string, ours?: number, torch?: number, unit = '', higherBetter = true) =>
    rows.push({
      what,
      DocDistill: `${f(ours)}${unit}`,
      PyTorch: `${f(torch)}${unit}`,
      'vs PyTorch (>1 better)': higherBetter ? ratio(ours, torch) : ratio(torch, ours),
    });
  add('load + session s', gen ? gen.folderS + gen.graphS + gen.sessionS : undefined, tg?.load_s, '', false);
  for (const B of BATCHES) {
    const o = gen?.results.find((x) => x.batch === B);
    const t = tg?.results.find((x) => x.batch === B);
    add(`prefill b${B} tok/s`, o?.prefillTokS, t?.prefill_tok_s);
    add(`decode b${B} tok/s`, o?.decodeTokS, t?.decode_tok_s);
  }
  add('peak RSS generate MB', gen?.peakRssMb, tg?.peak_rss_mb, '', false);
  add('train step s', tr?.stepS, tt?.mean_step_s, '', false);
  add('peak RSS train MB', tr?.peakRssMb, tt?.peak_rss_mb, '', false);
  add(`train step s, teacher top-${TOPK} cached`, trc?.stepS, tt?.mean_step_s, '', false);
  add('peak RSS train cached MB', trc?.peakRssMb, tt?.peak_rss_mb, '', false);
  table(rows);
  const b1 = gen?.results.find((x) => x.batch === 1);
  if (b1 && limitMs)
    console.log(
      `decode b1: ${b1.decodeMsPerStep.toFixed(0)} ms/token = ${(b1.decodeMsPerStep / limitMs).toFixed(2)}× the float32 bandwidth limit (${limitMs.toFixed(0)} ms)`,
    );
  console.log('phases (DocDistill):');
  if (gen) {
    if (gen.tokenizerS !== undefined)
      console.log(
        `  tokenizer                 ${gen.tokenizerS.toFixed(2)} s (not in load + session: PyTorch's load reads the model alone)`,
      );
    console.log(`  read folder               ${gen.folderS.toFixed(2)} s`);
    console.log(
      `  build step graph          ${gen.graphS.toFixed(2)} s (${gen.nodes} nodes; reads + transposes the weights)`,
    );
    console.log(
      `  step session              ${gen.sessionS.toFixed(2)} s (writes the .onnx when new + ORT session create; peak RSS so far ${gen.rssLoadedMb.toFixed(0)} MB)`,
    );
    for (const r of gen.results)
      console.log(
        `  b${String(r.batch).padEnd(2)} prefill ${r.prefillS.toFixed(2)} s, decode ${r.decodeS.toFixed(2)} s (${r.decodeMsPerStep.toFixed(0)} ms/step); peak RSS ${r.peakRssMb.toFixed(0)} MB`,
      );
  }
  if (tr)
    console.log(
      `  train: first step (graph + session + step) ${tr.firstStepS.toFixed(1)} s, then ${tr.stepS.toFixed(1)} s/step`,
    );
  if (trc)
    console.log(
      `  train, teacher top-${TOPK} cached: the cache for ${TB} samples (teacher graph + session + pass) ${trc.cacheS.toFixed(1)} s; first step ${trc.firstStepS.toFixed(1)} s, then ${trc.stepS.toFixed(1)} s/step`,
    );
}

async function main() {
  if (!shapeName) {
    console.log(
      `shape: skipped (pass --shape NAME: ${Object.keys(MODEL_SHAPES)
        .filter((s) => !s.startsWith('tiny'))
        .join(', ')})`,
    );
    return;
  }
  if (!MODEL_SHAPES[shapeName])
    throw new Error(`unknown --shape '${shapeName}' (one of ${Object.keys(MODEL_SHAPES).join(', ')})`);
  const dir = modelDir(shapeName);
  const kind = arg('child');
  if (kind) {
    const model = await CausalLM.load(dir, await Backend.create({ device: 'cpu', threads: 1 }));
    const cfg = model.config;
    const out =
      kind === 'bandwidth'
        ? await bandwidth(cfg)
        : kind === 'generate'
          ? await generateChild(dir)
          : await trainChild(dir, kind === 'train-cached' ? TOPK : 0);
    console.log(JSON.stringify(out));
    return;
  }
  const phases = (arg('phase') ?? ALL_PHASES.join(',')).split(',') as Phase[];
  for (const p of phases)
    if (!ALL_PHASES.includes(p)) throw new Error(`unknown --phase ${p} (${ALL_PHASES.join(', ')})`);
  const name = `shape-${shapeName}${quantize === 'none' ? '' : `-${quantize}`}`;
  const file = `bench/out/${name}.json`;
  const res: Results = existsSync(file)
    ? ((JSON.parse(readFileSync(file, 'utf8')) as { results?: Results }).results ?? {})
    : {};
  // The PyTorch phases are float32 whatever --quantize says: the baseline.
  const torchFile = `bench/out/shape-${shapeName}.json`;
  if (quantize !== 'none' && existsSync(torchFile)) {
    const t = (JSON.parse(readFileSync(torchFile, 'utf8')) as { results?: Results }).results ?? {};
    for (const p of ['torch-generate', 'torch-train', 'bandwidth'] as const) if (!res[p] && t[p]) res[p] = t[p];
  }
  const date = new Date().toISOString();
  for (const p of phases) {
    const t0 = now();
    let data: unknown;
    if (p === 'torch-generate')
      data = torchBaseline('generate_bench.py', [
        dir,
        '--threads',
        String(threads),
        '--prompt',
        String(PROMPT),
        '--new-tokens',
        String(NEW),
        '--batches',
        BATCHES.join(','),
      ]);
    else if (p === 'torch-train')
      data = torchBaseline('train_bench.py', [
        dir,
        '--threads',
        String(threads),
        '--batch',
        String(TB),
        '--seq',
        String(SS),
        '--teacher-seq',
        String(TS),
        '--answer',
        String(TA),
        '--rank',
        String(RANK),
        '--steps',
        '1',
      ]);
    else data = child(p);
    if (data) res[p] = { date, data };
    console.log(`phase ${p}: ${((now() - t0) / 1000).toFixed(0)} s`);
  }
  const cfg = (await CausalLM.load(dir, await Backend.create({ device: 'cpu', threads: 1 }))).config;
  report(shapeName, cfg, res);
  saveResult(name, { shape: shapeName, threads, quantize, results: res });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
