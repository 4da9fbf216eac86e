// The one seeded random stream of the project: mulberry32, small and fast, whose whole state is one
// 32-bit number, so a checkpoint can store it and a resumed run continues the same stream. The same
// seed gives the same numbers on every machine.

export class Rng {
  constructor(public state: number) {}

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A whole number in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  /** Fisher–Yates, in place. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }
}

/** The stream of `seed` as a function returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  const r = new Rng(seed >>> 0);
  return () => r.next();
}
