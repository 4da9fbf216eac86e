// Questions from sloppy model output: numbered or bulleted lists, <question> tags, "Q:" prefixes,
// several questions on one line, quotes and markdown emphasis. Normalised and de-duplicated.

const STRIP_PREFIX = /^\s*(?:[-*•]+|\(?\d{1,3}[.):]|\(?[a-z][.)]|q(?:uestion)?\s*\d*\s*[:.)-]|#+)\s*/i;

export function normaliseQuestion(q: string): string {
  let s = q
    .replace(/<\/?\s*questions?\s*>/gi, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  for (let i = 0; i < 3; i++) s = s.replace(STRIP_PREFIX, '');
  s = s.replace(/(\*\*|__)(.+?)\1/g, '$2');
  s = s.replace(/^[*_"'“”‘’`]+|[*_"'“”‘’`]+$/g, '').trim();
  s = s.replace(/\s+([?.,!;:])/g, '$1');
  if (s.length) s = s[0]!.toUpperCase() + s.slice(1);
  return s;
}

/** A key under which near-identical questions collide. */
export const questionKey = (q: string): string =>
  q
    .toLowerCase()
    .normalize('NFKC')
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();

/** Every question in a piece of generated text (sentences that end with "?"), in order. */
export function parseQuestions(text: string, opts: { minChars?: number; maxChars?: number } = {}): string[] {
  const min = opts.minChars ?? 8;
  const max = opts.maxChars ?? 300;
  const tagged = [...text.matchAll(/<question>([\s\S]*?)<\/question>/gi)].map((m) => m[1]!);
  const sources = tagged.length ? tagged : text.split(/\n+/);
  const out: string[] = [];
  for (const src of sources) {
    // Several questions on one line: split after each "?".
    for (const part of src.split(/(?<=\?)\s+/)) {
      const q = normaliseQuestion(part);
      if (!q.endsWith('?')) continue;
      // Drop a leading non-question sentence ("Sure! Here is one: What …?").
      const lastStop = Math.max(
        q.lastIndexOf('. ', q.length - 2),
        q.lastIndexOf('! ', q.length - 2),
        q.lastIndexOf(': ', q.length - 2),
      );
      const clean = normaliseQuestion(lastStop > 0 ? q.slice(lastStop + 2) : q);
      if (clean.length >= min && clean.length <= max && /\p{L}/u.test(clean)) out.push(clean);
    }
  }
  return out;
}

/** Keeps the first of each group of questions with the same key (and skips keys in `seen`). */
export function dedupe(questions: readonly string[], seen: Set<string> = new Set()): string[] {
  const out: string[] = [];
  for (const q of questions) {
    const k = questionKey(q);
    if (!k || seen.has(k)) continue;
    seen.add(k);
    out.push(q);
  }
  return out;
}

/** A number in [0, 1) from a hash of the question (case and spacing aside) and the seed. */
const heldOutHash = (q: string, seed: number): number => {
  let h = 2166136261 ^ seed;
  for (const c of questionKey(q)) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return ((h >>> 0) % 10000) / 10000;
};

/** Indices of the questions in the order they are held out: by that hash, ties by position. */
const heldOutOrder = (qs: readonly string[], seed: number): number[] =>
  qs
    .map((q, i) => ({ i, h: heldOutHash(q, seed) }))
    .sort((a, b) => a.h - b.h || a.i - b.i)
    .map((x) => x.i);

/**
 * Indices of the questions to hold out: exactly round(share × n), at least one when share > 0 and
 * there are two or more, chosen in the order of a hash of each question and the seed (so the
 * choice does not depend on the order the questions came in).
 */
export function chooseHeldOut(qs: string[], share: number, seed: number): Set<number> {
  if (share <= 0 || qs.length < 2) return new Set();
  const k = Math.min(qs.length - 1, Math.max(1, Math.round(share * qs.length)));
  return new Set(heldOutOrder(qs, seed).slice(0, k));
}

const WORD = /[\p{L}\p{N}][\p{L}\p{N}_'’-]*/gu;

/** The words of a text, each without a possessive "'s". */
const wordsOf = (text: string): string[] => [...text.matchAll(WORD)].map((m) => m[0].replace(/['’]s$/u, ''));

/** The capitalised words of a question after its first word (names, mostly), without a possessive "'s". */
export function namesIn(q: string): string[] {
  return wordsOf(q)
    .slice(1)
    .filter((w) => /^\p{Lu}/u.test(w) && w !== 'I');
}

/** The names of a question as one key ('' when it names nothing). */
export const nameKey = (q: string): string =>
  namesIn(q)
    .map((n) => n.toLowerCase())
    .sort()
    .join(' ');

/** The lower-cased words of a text, for `isGrounded` and `mentionsAny`. */
export const wordSet = (text: string): Set<string> => new Set(wordsOf(text).map((w) => w.toLowerCase()));

/**
 * A question is grounded in a passage when every name in it occurs in the passage. Question
 * writers at a high temperature sometimes ask about someone or something the passage never
 * mentions; the teacher then answers about the passage anyway, and a student trained on that pair
 * learns to answer confidently about names it has never read.
 */
export function isGrounded(q: string, passageWords: Set<string>): boolean {
  return namesIn(q).every((n) => passageWords.has(n.toLowerCase()));
}

/** Where a question of a run came from: its id says it (`questionId`). */
export type QuestionKind = 'written' | 'paraphrase' | 'cross' | 'general';

/**
 * A question's id in questions.jsonl: `<chunk>-<n>` written by the model about the passage,
 * `<chunk>-p<n>` a paraphrase of one, `<chunk>-x<n>` another passage's question about this one's
 * subject (cross), `general-<n>` a general question (chunk '').
 */
export const questionId = (kind: QuestionKind, chunk: string, n: number): string =>
  kind === 'general'
    ? `general-${n}`
    : `${chunk.slice(0, 12)}-${kind === 'paraphrase' ? 'p' : kind === 'cross' ? 'x' : ''}${n}`;

export function questionKind(id: string): QuestionKind {
  if (id.startsWith('general-')) return 'general';
  return /-p\d+$/.test(id) ? 'paraphrase' : /-x\d+$/.test(id) ? 'cross' : 'written';
}

/**
 * `question` said a little differently, for the student's side of one training step
 * (`questionNoise`): one word dropped and one word moved. Kept: the first word, names and anything
 * capitalised, numbers, and the words the question shares with its answer (what it asks about), so
 * that the question still asks the same thing in broken words. Returns the question unchanged when
 * it has nothing it could lose.
 */
export function noisyQuestion(question: string, answer: string, rand: () => number): string {
  const m = /^(.*?)([?.!]*)$/su.exec(question.trim())!;
  const words = m[1]!.split(/\s+/u).filter(Boolean);
  const answerWords = [...wordSet(answer)];
  // Shared: the same word, or one that begins the same way for four letters or more ("work", "works").
  const shared = (x: string): boolean =>
    answerWords.some((a) => a === x || (x.length >= 4 && a.length >= 4 && a.slice(0, 4) === x.slice(0, 4)));
  const free = (w: string, i: number): boolean =>
    i > 0 && !/^\p{Lu}/u.test(w) && !/\d/u.test(w) && !wordsOf(w).some((x) => shared(x.toLowerCase()));
  const pickFree = (): number => {
    const idx = words.flatMap((w, i) => (free(w, i) ? [i] : []));
    return idx.length ? idx[Math.floor(rand() * idx.length)]! : -1;
  };
  if (words.length >= 4) {
    const d = pickFree();
    if (d >= 0) words.splice(d, 1);
  }
  const mv = pickFree();
  if (mv >= 0 && words.length > 2) {
    const [w] = words.splice(mv, 1);
    words.splice(1 + Math.floor(rand() * words.length), 0, w!); // anywhere after the first word
  }
  return words.join(' ') + m[2];
}

/**
 * The rephrasings of `original` the paraphrase step keeps: about the same subject, naming nothing
 * the passage does not mention, and new (`seen` gains their keys). The questions phase and the
 * estimate's probe both keep them so.
 */
export function keptParaphrases(
  parsed: readonly string[],
  original: string,
  passageWords: Set<string>,
  seen: Set<string>,
): string[] {
  const key = nameKey(original);
  return dedupe(
    parsed.filter((q) => isGrounded(q, passageWords) && nameKey(q) === key),
    seen,
  );
}

/**
 * Whether an answer is read from its passage: every word of it that its question does not have
 * occurs in the passage, and there is at least one. A cross question (see crossQuestions) that the
 * teacher answers so is a question its passage answers that the question writer did not ask (it
 * joins the passage's questions); an answer with a word from nowhere may be an invented value.
 */
export function answeredFromPassage(question: string, answer: string, passageWords: Set<string>): boolean {
  const asked = wordSet(question);
  const added = [...wordSet(answer)].filter((w) => !asked.has(w));
  return added.length > 0 && added.every((w) => passageWords.has(w));
}

/** Whether a question names anything in `words` (a general question must not be about the docs). */
export function mentionsAny(q: string, words: Set<string>): boolean {
  return namesIn(q).some((n) => words.has(n.toLowerCase()));
}

/**
 * The held-out split of one passage's questions, made once their answers are known: a question is
 * held out only if a question that stays in training has (nearly) the same answer. Held-out
 * questions then measure what validation is for, a known fact asked another way, and no fact
 * loses the only question that would teach it (a model often asks about a fact once). At most
 * round(share × n) are held out, chosen in the hash order of `chooseHeldOut`.
 */
export function heldOutByAnswer(
  items: { question: string; answer: string }[],
  share: number,
  seed: number,
  same: (a: string, b: string) => boolean,
): Set<number> {
  const held = new Set<number>();
  const k = Math.round(share * items.length);
  if (share <= 0 || k === 0) return held;
  for (const i of heldOutOrder(
    items.map((it) => it.question),
    seed,
  )) {
    if (held.size >= k) break;
    if (items.some((o, j) => j !== i && !held.has(j) && same(items[i]!.answer, o.answer))) held.add(i);
  }
  return held;
}

/**
 * Questions about a passage's subjects that the passage may not answer: a question written about
 * another passage, with its one name swapped for a name that this passage's own questions ask
 * about ("What is the job of Dapu?" → "What is the job of Louzourn?"). The teacher then answers
 * with the passage in its prompt; where it says the passage does not tell, the pair teaches the
 * student where its knowledge ends (without it, a student asked about a relation its documents
 * lack invents a value). Per passage, at most round(share × its own questions), chosen in a hash
 * order of the candidate and the seed; keys in `seen` are skipped and the new ones added.
 */
export function crossQuestions(
  passages: { id: string; text: string; questions: string[] }[],
  share: number,
  seed: number,
  seen: Set<string>,
): { id: string; question: string }[] {
  const out: { id: string; question: string }[] = [];
  if (share <= 0) return out;
  // Templates: questions that name exactly one thing.
  const templates = passages.flatMap((p) =>
    p.questions.filter((q) => namesIn(q).length === 1).map((q) => ({ from: p.id, q, name: namesIn(q)[0]! })),
  );
  for (const p of passages) {
    const words = wordSet(p.text);
    const subjects = [...new Set(p.questions.flatMap((q) => namesIn(q)).filter((n) => words.has(n.toLowerCase())))];
    const k = Math.round(share * p.questions.length);
    if (!k || !subjects.length) continue;
    const candidates = dedupe(
      templates
        .filter((t) => t.from !== p.id)
        .flatMap((t) =>
          subjects.map((s) =>
            t.q.replace(
              new RegExp(`(?<![\\p{L}\\p{N}])${t.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\p{L}\\p{N}])`, 'gu'),
              () => s,
            ),
          ),
        ),
      new Set(seen),
    );
    for (const i of heldOutOrder(candidates, seed).slice(0, k)) {
      const q = candidates[i]!;
      if (seen.has(questionKey(q))) continue;
      seen.add(questionKey(q));
      out.push({ id: p.id, question: q });
    }
  }
  return out;
}
