// Seeded random numbers for tests: the same seed gives the same inputs on every machine.
import { mulberry32 } from '../../../src/common/rng';

export const rng = (seed: number): (() => number) => mulberry32(seed);

/** Uniform in ±[lo, hi]: never zero, so no gradient check is fooled by a vanishing input. */
export function nonZero(n: number, r: () => number, lo = 0.1, hi = 1): Float64Array {
  return Float64Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (lo + (hi - lo) * r()));
}
