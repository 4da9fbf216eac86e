// Choosing the next token from logits: greedy, or sampling with temperature, top-k and top-p
// (nucleus), from a seeded random stream.
import { mulberry32 } from '../../common/rng';

export interface SamplingOptions {
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = off). */
  topP?: number;
  /** Seed of the random stream; the same seed gives the same output. */
  seed?: number;
}

/** The sampling stream of `seed`: the project's seeded generator, its seed mixed with a constant. */
export function seededRandom(seed: number): () => number {
  return mulberry32((seed >>> 0) ^ 0x9e3779b9);
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

export function sampleToken(logits: Float32Array | Float64Array, o: SamplingOptions, rand: () => number): number {
  const temp = o.temperature ?? 0;
  if (!(temp > 0)) return argmax(logits);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0))
    throw new RangeError(`topK must be a whole number ≥ 0 (got ${o.topK})`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1))
    throw new RangeError(`topP must be in (0, 1] (got ${o.topP})`);
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  // Tokens more than 40 nats below the best (at this temperature) carry < 1e-17 of the mass each;
  // dropping them keeps the sort small for vocabularies of 150k.
  const floor = max - 40 * temp;
  let cand: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i]! >= floor) cand.push(i);
  cand.sort((a, b) => logits[b]! - logits[a]! || a - b);
  if (o.topK && o.topK < cand.length) cand = cand.slice(0, o.topK);
  const p = cand.map((i) => Math.exp((logits[i]! - max) / temp));
  let total = p.reduce((s, v) => s + v, 0);
  const topP = o.topP ?? 1;
  if (topP < 1) {
    let acc = 0;
    let keep = cand.length;
    for (let j = 0; j < p.length; j++) {
      acc += p[j]! / total;
      if (acc >= topP) {
        keep = j + 1;
        break;
      }
    }
    cand = cand.slice(0, keep);
    p.length = keep;
    total = p.reduce((s, v) => s + v, 0);
  }
  let r = rand() * total;
  for (let j = 0; j < cand.length; j++) {
    r -= p[j]!;
    if (r < 0) return cand[j]!;
  }
  return cand[cand.length - 1]!;
}
