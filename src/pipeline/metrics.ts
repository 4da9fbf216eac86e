// Answer grading: SQuAD-style normalisation, exact match, substring match and token F1.

export function normaliseAnswer(s: string): string {
  return s
    .toLowerCase()
    .normalize('NFKC')
    .replace(/[^\p{L}\p{N}\s]/gu, ' ')
    .replace(/\b(a|an|the)\b/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

export const exactMatch = (pred: string, ref: string): boolean => normaliseAnswer(pred) === normaliseAnswer(ref);

/** The reference (normalised) appears in the prediction (normalised). */
export function containsAnswer(pred: string, ref: string): boolean {
  const r = normaliseAnswer(ref);
  return r.length > 0 && ` ${normaliseAnswer(pred)} `.includes(` ${r} `);
}

export function tokenF1(pred: string, ref: string): number {
  const p = normaliseAnswer(pred).split(' ').filter(Boolean);
  const r = normaliseAnswer(ref).split(' ').filter(Boolean);
  if (!p.length || !r.length) return p.length === r.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of r) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of p) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      common++;
      counts.set(t, c - 1);
    }
  }
  if (!common) return 0;
  const prec = common / p.length;
  const rec = common / r.length;
  return (2 * prec * rec) / (prec + rec);
}
