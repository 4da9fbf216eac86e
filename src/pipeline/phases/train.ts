// Phase 4, train: the LoRA adapter learns to answer without the passage as the teacher answers with
// it (KL over the answer tokens, or cross-entropy for the SFT baseline), with the general questions
// holding it to the base model elsewhere. Checkpoints every 25 steps and every epoch; validation on
// the held-out questions keeps the best epoch and stops early. The adapter is written once, into
// the run folder (runs/<id>/adapter/), from where publishing moves it into place.
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AdapterWeights } from '../../engine/models/model';
import { readAdapter, writeAdapter } from '../../engine/lora/peft';
import { SafetensorsFile, writeSafetensors } from '../../engine/models/safetensors';
import { LoraTrainer, type DistillSample, type TrainerState } from '../../engine/train/trainer';
import { ADAPTER_QA_FILE } from '../adapters';
import { readJson, readJsonl, writeJson, writeJsonl } from '../runFolder';
import {
  check,
  chunks,
  log,
  qaRows,
  sample,
  withQuestion,
  CancelledError,
  type QaRow,
  type RunContext,
} from './context';
import { noisyQuestion } from '../questions';
import { mulberry32 } from '../../common/rng';
import type { DistillSettings } from '../settings';

/** The most that teacherCache 'auto' keeps of exact teacher distributions (else it keeps the top-k). */
export const EXACT_TEACHER_CACHE_BYTES = 256 * 2 ** 20;

/**
 * The k of the teacher cache (LoraTrainer's teacherTopK) for these settings: 0 = the teacher in
 * every step, the vocabulary = exact. Worth it only with more than one epoch: the cache costs one
 * teacher forward per QA pair, as one epoch without it does. Stored per answer position: the
 * exact distribution 4 bytes per vocabulary entry (float32 log-probs in vocabulary order), the
 * top-k 12 bytes per token kept (an int64 id and a float32 log-prob). 'auto' takes the top-k only at τ ≤ 1: on
 * the demo model and the example documents the top-64 + tail KL is within 0.8 % of the exact one
 * at τ = 1, but 19–39 % below it at τ = 2, where the flattened teacher puts much of the KL in the
 * long tail (test/unit/train/teacherCache.test.ts); there the teacher runs in every step instead.
 */
export function teacherCacheK(
  s: Pick<DistillSettings, 'loss' | 'epochs' | 'teacherCache' | 'teacherTopK' | 'distillTemperature'>,
  vocabSize: number,
  answerTokens: number,
): number {
  if (s.loss !== 'kl' || s.teacherCache === 'off') return 0;
  const topK = Math.min(s.teacherTopK, vocabSize);
  if (s.teacherCache === 'exact') return vocabSize;
  if (s.teacherCache === 'topk') return topK;
  if (s.epochs < 2) return 0;
  if (answerTokens * vocabSize * 4 <= EXACT_TEACHER_CACHE_BYTES) return vocabSize;
  return s.distillTemperature <= 1 ? topK : 0;
}

export async function train(run: RunContext): Promise<void> {
  const s = run.s;
  const current = new Set(chunks(run).map((c) => c.hash));
  const fresh = [...qaRows(run, 'train'), ...qaRows(run, 'absent')];
  const general = qaRows(run, 'general');
  // Incremental: replay QA pairs of chunks that are unchanged, so the adapter keeps them.
  let replay: QaRow[] = [];
  if (run.state.baseAdapter) {
    const old = readJsonl<QaRow>(join(run.state.baseAdapter, ADAPTER_QA_FILE)).filter(
      (r) => r.general || current.has(r.chunk),
    );
    const rng = mulberry32(s.seed + 17);
    replay = old
      .filter((r) => !r.general)
      .sort(() => rng() - 0.5)
      .slice(0, Math.max(Math.round(s.replayShare * fresh.length), Math.min(old.length, 8)));
    log(run, `incremental: ${fresh.length} new QA pairs, ${replay.length} replayed from unchanged chunks`);
  }
  // The general questions: all of them in every epoch, or with a pool (generalPool > 1) the next
  // slice of it in each epoch, so that over the run the student sees every one.
  const docRows = [...fresh, ...replay];
  const docSamples = docRows.map((r) => sample(run, r));
  const pool = general.map((r) => sample(run, r));
  const perEpoch = Math.min(pool.length, Math.ceil(pool.length / s.generalPool));
  const poolOrder = shuffled(pool.length, s.seed * 31 + 5);
  // questionNoise: this epoch's share of the questions about the docs said a little differently on
  // the student's side; the teacher's answer (and its cached distribution) stays the same.
  const docEpoch = (epoch: number, say = false): DistillSample[] => {
    if (!s.questionNoise) return docSamples;
    const rand = mulberry32(s.seed * 7919 + epoch * 104729 + 3);
    let example = '';
    const out = docSamples.map((x, i) => {
      if (rand() >= s.questionNoise) return x;
      const q = docRows[i]!.question;
      const n = noisyQuestion(q, docRows[i]!.answer, rand);
      if (n === q) return x;
      example ||= `, e.g. "${q}" → "${n}"`;
      return withQuestion(run, x, n);
    });
    if (say) {
      // Counted on what the student is given, not on what was meant to change.
      const n = out.filter((y, i) => y.student.join() !== docSamples[i]!.student.join()).length;
      log(
        run,
        `question noise: ${n} of ${docSamples.length} questions said differently in epoch ${epoch + 1}${example}`,
      );
    }
    return out;
  };
  const epochSamples = (epoch: number, say = false): DistillSample[] =>
    perEpoch === pool.length
      ? [...docEpoch(epoch, say), ...pool]
      : [
          ...docEpoch(epoch, say),
          ...Array.from({ length: perEpoch }, (_, i) => pool[poolOrder[(epoch * perEpoch + i) % pool.length]!]!),
        ];
  if (!docSamples.length && !pool.length) {
    log(run, 'nothing new to learn: the adapter is up to date');
    return;
  }
  // Validation: held-out questions about the docs (the student should match the teacher) and
  // held-out general ones (it should still match the base model), weighted as in training.
  const valDocs = qaRows(run, 'heldout').map((r) => sample(run, r));
  const valGeneral = qaRows(run, 'general-heldout').map((r) => sample(run, r));
  const stepsPerEpoch = Math.ceil((docSamples.length + perEpoch) / (s.batchSize * s.gradAccum));
  const totalSteps = stepsPerEpoch * s.epochs;
  const lora = { rank: s.loraRank, alpha: s.loraAlpha, targets: s.loraTargets };
  const trainerState = loadCheckpoint(run);
  let start: TrainerState | undefined = trainerState?.state;
  if (!start && run.state.baseAdapter) {
    // Continue from the existing adapter (fresh optimizer state).
    const prev = readAdapter(run.state.baseAdapter, run.model.config);
    const same =
      prev.spec.rank === lora.rank &&
      prev.spec.alpha === lora.alpha &&
      prev.spec.targets.join() === lora.targets.join();
    if (same) start = { step: 0, params: prev.tensors, m: new Map(), v: new Map(), rng: s.seed };
    else log(run, 'the existing adapter has other LoRA settings; training a new one', 'warn');
  }
  const trainer = new LoraTrainer(
    run.model,
    {
      loss: s.loss,
      lora,
      dropout: s.loraDropout,
      temperature: s.distillTemperature,
      lr: s.learningRate,
      weightDecay: s.weightDecay,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      schedule: s.schedule,
      warmupSteps: Math.round(s.warmupRatio * totalSteps),
      totalSteps,
      microBatch: s.batchSize,
      gradAccum: s.gradAccum,
      maxGradNorm: s.maxGradNorm,
      seed: s.seed,
      teacherTopK: teacherCacheK(
        s,
        run.model.config.vocabSize,
        [...docSamples, ...pool, ...valDocs, ...valGeneral].reduce((n, x) => n + x.answerLength, 0),
      ),
    },
    start ? { ...start, step: trainerState ? start.step : 0 } : undefined,
  );
  const metrics: Record<string, unknown>[] = trainerState?.metrics ?? [];
  let best = trainerState?.best ?? {
    loss: Infinity,
    epoch: -1,
    params: undefined as Map<string, Float32Array> | undefined,
  };
  let bad = trainerState?.bad ?? 0;
  if (trainer.teacherK) {
    // Once, in a fixed order (a resumed run computes the same values), before the first step.
    const all = [...docSamples, ...pool, ...valDocs, ...valGeneral];
    const t = performance.now();
    await trainer.cacheTeacher(all);
    await trainer.releaseTeacher();
    check(run);
    const answerTokens = all.reduce((n, x) => n + x.answerLength, 0);
    const what = trainer.teacherK === run.model.config.vocabSize ? 'all' : `top-${trainer.teacherK}`;
    log(
      run,
      `teacher: ${what} log-probs of ${all.length} QA pairs (${answerTokens} answer tokens, ${((answerTokens * trainer.teacherK * (what === 'all' ? 4 : 12)) / 2 ** 20).toFixed(1)} MB) computed once in ${((performance.now() - t) / 1000).toFixed(1)} s, for ${s.epochs} epochs`,
    );
  }
  const stepsDone = trainer.step;
  const t0 = performance.now();
  let tokens = 0;
  const firstEpoch = Math.floor(stepsDone / stepsPerEpoch);
  for (let epoch = firstEpoch; epoch < s.epochs; epoch++) {
    const samples = epochSamples(epoch, epoch === firstEpoch);
    const order = shuffled(samples.length, s.seed * 1009 + epoch);
    const from = epoch === firstEpoch ? stepsDone - epoch * stepsPerEpoch : 0;
    for (let k = from; k < stepsPerEpoch; k++) {
      if (run.signal?.aborted) {
        // Stop at a step boundary with everything saved: the next run continues from this step.
        if (trainer.step > stepsDone) {
          await trainer.sync();
          saveCheckpoint(run, trainer, metrics, best, bad);
        }
        throw new CancelledError();
      }
      const per = s.batchSize * s.gradAccum;
      const batch = order.slice(k * per, (k + 1) * per).map((i) => samples[i]!);
      const r = await trainer.trainStep(batch);
      tokens += r.tokens;
      const secs = (performance.now() - t0) / 1000;
      const done = r.step - stepsDone;
      const ev = {
        type: 'train' as const,
        step: r.step,
        totalSteps,
        epoch: epoch + (k + 1) / stepsPerEpoch,
        loss: r.loss,
        lr: r.lr,
        tokensPerSec: tokens / secs,
        etaSec: (secs / done) * (totalSteps - r.step),
      };
      metrics.push({
        step: r.step,
        epoch: ev.epoch,
        loss: r.loss,
        lr: r.lr,
        gradNorm: r.gradNorm,
        tokensPerSec: ev.tokensPerSec,
      });
      run.emit(ev);
      if (r.step % 25 === 0 && k < stepsPerEpoch - 1) {
        await trainer.sync();
        saveCheckpoint(run, trainer, metrics, best, bad);
      }
    }
    await trainer.sync(); // the adapter from device memory (GPU providers), for the best copy and the checkpoint
    // Validation KL on held-out questions; keep the best adapter; stop when it stops improving.
    if (valDocs.length || valGeneral.length) {
      check(run);
      const vDocs = valDocs.length ? await trainer.evalLoss(valDocs) : undefined;
      const vGeneral = valGeneral.length ? await trainer.evalLoss(valGeneral) : undefined;
      const wDocs = valDocs.reduce((a, x) => a + (x.weight ?? 1), 0);
      const wGeneral = valGeneral.reduce((a, x) => a + (x.weight ?? 1), 0);
      const v = ((vDocs ?? 0) * wDocs + (vGeneral ?? 0) * wGeneral) / (wDocs + wGeneral || 1);
      metrics.push({
        step: trainer.step,
        epoch: epoch + 1,
        validationLoss: v,
        validationDocs: vDocs,
        validationGeneral: vGeneral,
      });
      run.emit({ type: 'validation', epoch: epoch + 1, step: trainer.step, loss: v });
      if (v < best.loss - 1e-6) {
        best = { loss: v, epoch: epoch + 1, params: new Map([...trainer.params].map(([k2, t]) => [k2, t.slice()])) };
        bad = 0;
      } else bad++;
    }
    saveCheckpoint(run, trainer, metrics, best, bad);
    if (s.earlyStopPatience && bad >= s.earlyStopPatience) {
      log(
        run,
        `early stop after epoch ${epoch + 1}: validation loss has not improved for ${bad} epochs (best ${best.loss.toFixed(4)} at epoch ${best.epoch})`,
      );
      break;
    }
  }
  await trainer.release(); // device memory (GPU providers) back now, not when the trainer is collected
  const final: AdapterWeights = { spec: lora, tensors: best.params ?? trainer.params };
  // The trained adapter goes into the run folder, with the QA pairs it learnt (replayed by the next
  // incremental run); publishAdapter() moves the folder into place at the end, as it is.
  writeAdapter(run.paths.adapter, run.model.config, final, { baseModel: run.modelId, dropout: s.loraDropout });
  writeJsonl(join(run.paths.adapter, ADAPTER_QA_FILE), [
    ...fresh,
    ...replay.filter((r) => current.has(r.chunk)),
    ...general,
  ]);
  run.trained = final;
}

function saveCheckpoint(
  run: RunContext,
  t: LoraTrainer,
  metrics: Record<string, unknown>[],
  best: { loss: number; epoch: number; params?: Map<string, Float32Array> },
  bad: number,
): void {
  const dir = run.paths.checkpoint;
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  const st = t.state();
  const tensors = [...st.params].flatMap(([k, p]) => [
    { name: `p.${k}`, dtype: 'F32' as const, shape: [p.length], data: p },
    { name: `m.${k}`, dtype: 'F32' as const, shape: [p.length], data: st.m.get(k) ?? new Float32Array(p.length) },
    { name: `v.${k}`, dtype: 'F32' as const, shape: [p.length], data: st.v.get(k) ?? new Float32Array(p.length) },
    ...(best.params
      ? [{ name: `best.${k}`, dtype: 'F32' as const, shape: [p.length], data: best.params.get(k)! }]
      : []),
  ]);
  mkdirSync(tmp, { recursive: true });
  writeSafetensors(join(tmp, 'state.safetensors'), tensors);
  writeJson(join(tmp, 'trainer.json'), {
    step: st.step,
    rng: st.rng,
    best: { loss: best.loss, epoch: best.epoch, has: !!best.params },
    bad,
  });
  writeJsonl(run.paths.metrics, metrics);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
}

function loadCheckpoint(run: RunContext):
  | {
      state: TrainerState;
      metrics: Record<string, unknown>[];
      best: { loss: number; epoch: number; params?: Map<string, Float32Array> };
      bad: number;
    }
  | undefined {
  const dir = run.paths.checkpoint;
  const meta = readJson<{
    step: number;
    rng: number;
    best: { loss: number | null; epoch: number; has: boolean };
    bad: number;
  }>(join(dir, 'trainer.json'));
  if (!meta) return undefined;
  const f = SafetensorsFile.open(join(dir, 'state.safetensors'));
  try {
    const params = new Map<string, Float32Array>();
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    const bestP = new Map<string, Float32Array>();
    for (const n of f.names()) {
      const [kind, ...rest] = n.split('.');
      const key = rest.join('.');
      const data = f.float32(n);
      if (kind === 'p') params.set(key, data);
      else if (kind === 'm') m.set(key, data);
      else if (kind === 'v') v.set(key, data);
      else if (kind === 'best') bestP.set(key, data);
    }
    log(run, `resuming training at step ${meta.step}`);
    return {
      state: { step: meta.step, params, m, v, rng: meta.rng },
      metrics: readJsonl<Record<string, unknown>>(run.paths.metrics),
      best: { loss: meta.best.loss ?? Infinity, epoch: meta.best.epoch, params: meta.best.has ? bestP : undefined },
      bad: meta.bad,
    };
  } finally {
    f.close();
  }
}

/** 0 … n−1 in the seeded order of the sample shuffle (the project's one RNG). */
function shuffled(n: number, seed: number): number[] {
  const r = mulberry32(seed);
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
