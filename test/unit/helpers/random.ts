// Seeded random numbers for tests: the same seed gives the same inputs on every machine.

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform in ±[lo, hi]: never zero, so no gradient check is fooled by a vanishing input. */
export function nonZero(n: number, r: () => number, lo = 0.1, hi = 1): Float64Array {
  return Float64Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (lo + (hi - lo) * r()));
}
