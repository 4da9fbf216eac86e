// Distillation settings: defaults that suit 0.1–1.5 B models on a laptop, with every published
// setting of the method (RECIPE.md) reachable. `PUBLISHED` lists the authors' values.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LoraTarget } from '../engine/models/llama';
import { LORA_TARGETS } from '../engine/models/llama';
import { BASE_QUANTIZATIONS, type BaseQuantization } from '../engine/models/quantize';
import { DEFAULT_PROMPTS, type PromptSettings } from './prompts';

export interface DistillSettings {
  /** Question rounds per chunk, and questions asked for per round (one generation each). */
  rounds: number;
  questionsPerRound: number;
  questionTemperature: number;
  questionTopK: number;
  questionMaxTokens: number;
  /**
   * Drop questions that name something their passage never mentions, and general questions that
   * name something in the docs.
   */
  groundQuestions: boolean;
  /** Share of each chunk's questions kept out of training for evaluation. */
  heldOutShare: number;
  /**
   * Drop questions about the docs whose teacher answer says the passage does not tell (see
   * `saysDontKnow`): they are not answerable from it, and teach nothing of what it says.
   */
  answerableOnly: boolean;
  answerTemperature: number;
  answerTopK: number;
  answerMaxTokens: number;
  /**
   * The general-data guard: questions the docs do not answer, per distilled QA pair, with the base
   * model's own answers as target.
   */
  generalShare: number;
  generalWeight: number;
  /**
   * Sampling of the general questions: the model's own distribution (temperature 1, no top-k).
   * They are asked without a passage, so every one starts the same way; a top-k cut then keeps
   * the same few names and topics, and the guard would teach only those.
   */
  generalTemperature: number;
  generalTopK: number;
  /**
   * General questions written per one trained on in an epoch: each epoch takes the next slice of
   * the pool, so the guard covers more names and topics at the same training cost (1 = every
   * general question in every epoch).
   */
  generalPool: number;
  loss: 'kl' | 'ce';
  distillTemperature: number;
  loraRank: number;
  loraAlpha: number;
  loraTargets: LoraTarget[];
  loraDropout: number;
  learningRate: number;
  weightDecay: number;
  warmupRatio: number;
  schedule: 'cosine' | 'linear' | 'constant';
  epochs: number;
  batchSize: number;
  gradAccum: number;
  maxGradNorm: number;
  /**
   * The teacher's log-probs at the answer positions never change (it has no adapter), so they can
   * be computed once per QA pair and reused in every epoch instead of running the teacher (passage
   * and all) in every step. 'exact': the whole distribution (4 bytes per vocabulary entry and
   * answer position); 'topk': its teacherTopK most likely tokens and the rest of the mass
   * as one outcome (the KL over those k + 1 never exceeds the full one); 'off': the teacher in
   * every step; 'auto': with more than one epoch, exact when that fits in 256 MB, else top-k at
   * distillTemperature ≤ 1 (above it the top-k + tail loses a large share of the KL: see
   * teacherCacheK) and the teacher in every step otherwise.
   */
  teacherCache: 'auto' | 'off' | 'topk' | 'exact';
  /** The k of teacherCache 'topk' (and of 'auto' at τ ≤ 1 when exact does not fit). */
  teacherTopK: number;
  /** Stop when the validation KL has not improved for this many epochs (0 = never). */
  earlyStopPatience: number;
  /**
   * Questions about a passage's subjects that it may not answer (another passage's question about
   * this passage's subject), per question written; those the teacher says the passage does not
   * answer are trained, so the student learns to say so too. 0 = off.
   */
  absentShare: number;
  /** Rephrasings the model writes of each of its questions (the paraphrase step). 0 = off. */
  paraphrases: number;
  /**
   * Share of the student's training questions said a little differently in each epoch (a word
   * dropped, a word moved; names, numbers and the words the question shares with its answer kept):
   * the teacher's answer stays, so the student learns to answer from what is asked about, not from
   * the exact words. 0 = off.
   */
  questionNoise: number;
  /** Incremental runs: QA pairs of unchanged chunks replayed per new pair, to keep what the adapter knew. */
  replayShare: number;
  seed: number;
  /** Tokens a chunk may have (0 = from the model's context, leaving room for the prompt and answer). */
  chunkTokens: number;
  /**
   * Every section (heading) its own passage: small sections are not merged with their neighbours.
   * For files about several subjects under headings (people, products, services) and a model that
   * reads one subject at a time better than several (the demo model); off, small sections are
   * merged up to a quarter of the chunk size, which keeps passages large enough to ask about.
   */
  sectionPassages: boolean;
  /**
   * The frozen base's linear weights as 8- or 4-bit blocks (MatMulNBits) for every phase, teacher
   * and student alike; the LoRA, norms, softmax and loss stay float32 (as QLoRA). Fewer bytes per
   * token: faster decoding and less memory, at some fidelity (see README).
   */
  baseQuantization: BaseQuantization;
  prompts: PromptSettings;
}

export const DEFAULT_SETTINGS: DistillSettings = {
  rounds: 3,
  questionsPerRound: 5,
  questionTemperature: 1.5,
  questionTopK: 50,
  questionMaxTokens: 64,
  groundQuestions: true,
  heldOutShare: 0.2,
  answerableOnly: true,
  answerTemperature: 1.0,
  answerTopK: 50,
  answerMaxTokens: 128,
  generalShare: 0.5,
  generalWeight: 1,
  generalTemperature: 1,
  generalTopK: 0,
  generalPool: 1,
  absentShare: 0.5,
  paraphrases: 1,
  questionNoise: 0,
  loss: 'kl',
  distillTemperature: 2,
  loraRank: 16,
  loraAlpha: 32,
  loraTargets: [...LORA_TARGETS],
  loraDropout: 0,
  learningRate: 1e-3,
  weightDecay: 0.1,
  warmupRatio: 0.1,
  schedule: 'cosine',
  epochs: 5,
  batchSize: 8,
  gradAccum: 1,
  maxGradNorm: 1,
  teacherCache: 'auto',
  teacherTopK: 64,
  earlyStopPatience: 2,
  replayShare: 1,
  seed: 0,
  chunkTokens: 0,
  sectionPassages: false,
  baseQuantization: 'none',
  prompts: DEFAULT_PROMPTS,
};

/** The authors' published settings (RECIPE.md), for large models and GPUs. */
export const PUBLISHED: Partial<DistillSettings> = {
  rounds: 6,
  questionsPerRound: 5,
  questionTemperature: 1.5,
  questionTopK: 50,
  answerTemperature: 1.5,
  answerTopK: 50,
  answerMaxTokens: 500,
  distillTemperature: 2,
  loraRank: 1024,
  loraAlpha: 2048,
  loraDropout: 0.05,
  learningRate: 1e-5,
  batchSize: 4,
  epochs: 10,
  weightDecay: 0.1,
  warmupRatio: 0.1,
  maxGradNorm: 1,
};

export class SettingsError extends Error {
  override name = 'SettingsError';
}

/** The settings that are given (undefined ones dropped), so that merging them keeps what is below. */
export function definedSettings(over: Partial<DistillSettings> = {}): Partial<DistillSettings> {
  return Object.fromEntries(Object.entries(over).filter(([, v]) => v !== undefined)) as Partial<DistillSettings>;
}

/** The default of a plain setting by name (undefined for a name that is not one; `prompts` is not plain). */
export function settingDefault(key: string): unknown {
  return key === 'prompts' ? undefined : (DEFAULT_SETTINGS as unknown as Record<string, unknown>)[key];
}

/** Merges and validates settings; every problem is reported by name. */
export function resolveSettings(over: Partial<DistillSettings> = {}): DistillSettings {
  const s: DistillSettings = { ...DEFAULT_SETTINGS, ...definedSettings(over) } as DistillSettings;
  const errs: string[] = [];
  const int = (k: keyof DistillSettings, min: number) => {
    const v = s[k] as number;
    if (!Number.isInteger(v) || v < min) errs.push(`${k} must be a whole number ≥ ${min} (got ${v})`);
  };
  const num = (k: keyof DistillSettings, lo: number, hi: number) => {
    const v = s[k] as number;
    if (typeof v !== 'number' || !(v >= lo && v <= hi)) errs.push(`${k} must be between ${lo} and ${hi} (got ${v})`);
  };
  int('rounds', 1);
  int('questionsPerRound', 1);
  int('questionTopK', 0);
  int('questionMaxTokens', 4);
  int('answerTopK', 0);
  int('generalTopK', 0);
  int('answerMaxTokens', 1);
  int('loraRank', 1);
  int('epochs', 1);
  int('batchSize', 1);
  int('gradAccum', 1);
  int('earlyStopPatience', 0);
  int('seed', 0);
  int('chunkTokens', 0);
  num('heldOutShare', 0, 0.9);
  num('questionTemperature', 0, 5);
  num('answerTemperature', 0, 5);
  num('generalShare', 0, 10);
  num('generalWeight', 0, 100);
  num('generalTemperature', 0, 5);
  num('generalPool', 1, 100);
  num('absentShare', 0, 10);
  int('paraphrases', 0);
  num('questionNoise', 0, 1);
  num('distillTemperature', 0.05, 20);
  num('loraAlpha', 1e-6, 1e6);
  num('loraDropout', 0, 0.9);
  num('learningRate', 1e-9, 1);
  num('weightDecay', 0, 10);
  num('warmupRatio', 0, 1);
  num('maxGradNorm', 1e-6, 1e6);
  int('teacherTopK', 1);
  if (!['auto', 'off', 'topk', 'exact'].includes(s.teacherCache))
    errs.push(`teacherCache must be auto, off, topk or exact (got ${String(s.teacherCache)})`);
  num('replayShare', 0, 100);
  for (const k of ['groundQuestions', 'answerableOnly', 'sectionPassages'] as const)
    if (typeof s[k] !== 'boolean') errs.push(`${k} must be true or false (got ${String(s[k])})`);
  if (s.loss !== 'kl' && s.loss !== 'ce') errs.push(`loss must be "kl" or "ce" (got ${String(s.loss)})`);
  if (!(BASE_QUANTIZATIONS as readonly string[]).includes(s.baseQuantization))
    errs.push(`baseQuantization must be ${BASE_QUANTIZATIONS.join(', ')} (got ${String(s.baseQuantization)})`);
  if (!['cosine', 'linear', 'constant'].includes(s.schedule))
    errs.push(`schedule must be cosine, linear or constant (got ${String(s.schedule)})`);
  const badT = s.loraTargets.filter((t) => !(LORA_TARGETS as readonly string[]).includes(t));
  if (badT.length || s.loraTargets.length === 0)
    errs.push(`loraTargets must be a non-empty subset of ${LORA_TARGETS.join(', ')} (got ${s.loraTargets.join(', ')})`);
  if (errs.length) throw new SettingsError(`invalid distillation settings: ${errs.join('; ')}`);
  return s;
}

/**
 * Distillation defaults that a model folder recommends: `distillDefaults` in its `training.json`
 * (written by `docdistill demo-model train`, so the built-in demo model carries the settings it
 * was measured with). Plain values only; keys that are not settings, or of the wrong type, are
 * ignored; the result is validated with everything else by `resolveSettings`. Settings the user
 * chose explicitly override these.
 */
export function modelDefaults(dir: string | undefined): Partial<DistillSettings> {
  const f = dir && join(dir, 'training.json');
  if (!f || !existsSync(f)) return {};
  let d: unknown;
  try {
    d = (JSON.parse(readFileSync(f, 'utf8')) as { distillDefaults?: unknown }).distillDefaults;
  } catch {
    return {};
  }
  if (!d || typeof d !== 'object') return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d)) {
    const def = settingDefault(k);
    if (def !== undefined && typeof v === typeof def && Array.isArray(v) === Array.isArray(def)) out[k] = v;
  }
  return out as Partial<DistillSettings>;
}
