// Ingest: Markdown → chunks that each fit the model's context with room for the prompt.
// Documents are split at headings (never inside a fenced code block); a section that is still too
// long is split at blank lines, then at line ends, then at sentence ends. Front matter and HTML
// comments are dropped; code blocks are kept. Each chunk carries the heading path it sits under
// and a hash of its content, which is what adapters record and the watcher compares.
import { createHash } from 'node:crypto';
import { headingsOf, sentencesOf } from './markdownBlocks';

export interface Chunk {
  /** Stable within a run: `<source>#<n>`. */
  id: string;
  /** The document's path as given (relative to the workspace in the extension). */
  source: string;
  /** Heading texts from the top level down to this chunk's section. */
  headings: string[];
  /** The chunk's Markdown, headings included. */
  text: string;
  /** sha256 of the source path and text: what an adapter knows. */
  hash: string;
  tokens: number;
  /** 1-based line in the original file where the chunk starts. */
  line: number;
}

export interface IngestOptions {
  /** Most tokens in one chunk. */
  maxTokens: number;
  /** Counts tokens as the model does. */
  countTokens: (text: string) => number;
  /**
   * Sections smaller than this many tokens are merged with their neighbours under the same parent
   * (default maxTokens / 4; 0: every section is its own chunk).
   */
  minTokens?: number;
}

// Reading a document (bounded, regular files only, confined to the workspace) lives in docFiles.
import { IngestError } from './docFiles';
export { IngestError, MAX_DOC_BYTES, readMarkdown } from './docFiles';

interface Line {
  text: string;
  n: number; // 1-based line number
}

/** Drops YAML/TOML front matter and HTML comments (outside code), keeping line numbers. */
export function cleanLines(md: string): Line[] {
  const raw = md.replace(/\r\n?/g, '\n').split('\n');
  const lines: Line[] = raw.map((text, i) => ({ text, n: i + 1 }));
  let start = 0;
  const fm = lines[0]?.text.trim();
  if (fm === '---' || fm === '+++') {
    const end = lines.findIndex((l, i) => i > 0 && l.text.trim() === fm);
    if (end > 0) start = end + 1;
  }
  const out: Line[] = [];
  let fence: string | undefined;
  let inComment = false;
  for (const l of lines.slice(start)) {
    const t = l.text;
    if (!inComment) {
      const f = /^\s{0,3}(`{3,}|~{3,})/.exec(t);
      if (f) {
        if (!fence) fence = f[1]!;
        else if (f[1]!.startsWith(fence[0]!) && f[1]!.length >= fence.length && t.trim() === f[1]) fence = undefined;
        out.push(l);
        continue;
      }
      if (fence) {
        out.push(l);
        continue;
      }
    }
    // Outside code: remove <!-- ... --> (possibly spanning lines).
    let s = t;
    let kept = '';
    while (s.length) {
      if (inComment) {
        const e = s.indexOf('-->');
        if (e < 0) {
          s = '';
          break;
        }
        s = s.slice(e + 3);
        inComment = false;
      } else {
        const b = s.indexOf('<!--');
        if (b < 0) {
          kept += s;
          s = '';
        } else {
          kept += s.slice(0, b);
          s = s.slice(b + 4);
          inComment = true;
        }
      }
    }
    if (kept.trim() === '' && t.trim() !== '') continue; // a line that was only a comment
    out.push({ text: kept, n: l.n });
  }
  return out;
}

interface Section {
  level: number;
  headings: string[];
  lines: Line[];
  /** Lines the section's own heading takes at its start (0: none, 1: ATX, 2: setext). */
  headingLines?: number;
}

function sections(lines: Line[]): Section[] {
  const out: Section[] = [];
  let path: { level: number; text: string }[] = [];
  let cur: Section = { level: 0, headings: [], lines: [] };
  // Headings as CommonMark sees them (ATX and setext), by index into `lines`.
  const heads = new Map(headingsOf(lines.map((l) => l.text).join('\n')).map((h) => [h.line, h]));
  lines.forEach((l, i) => {
    const h = heads.get(i);
    if (h) {
      if (cur.lines.some((x) => x.text.trim())) out.push(cur);
      path = [...path.filter((p) => p.level < h.level), { level: h.level, text: h.text }];
      cur = { level: h.level, headings: path.map((p) => p.text), lines: [l], headingLines: h.lines };
    } else {
      cur.lines.push(l);
    }
  });
  if (cur.lines.some((x) => x.text.trim())) out.push(cur);
  return out;
}

const trimBlank = (ls: Line[]): Line[] => {
  let a = 0;
  let b = ls.length;
  while (a < b && !ls[a]!.text.trim()) a++;
  while (b > a && !ls[b - 1]!.text.trim()) b--;
  return ls.slice(a, b);
};

/** Splits text that is too long: blank lines, then lines, then sentences, then words. */
function splitToFit(ls: Line[], o: IngestOptions, prefix: string): Line[][] {
  const fits = (x: Line[]) => o.countTokens(prefix + x.map((l) => l.text).join('\n')) <= o.maxTokens;
  if (fits(ls)) return [ls];
  // Group into paragraphs (blank-line separated), keeping code fences whole.
  const paras: Line[][] = [];
  let cur: Line[] = [];
  let fence = false;
  for (const l of ls) {
    if (/^\s{0,3}(`{3,}|~{3,})/.test(l.text)) fence = !fence;
    if (!fence && !l.text.trim()) {
      if (cur.length) paras.push(cur);
      cur = [];
    } else cur.push(l);
  }
  if (cur.length) paras.push(cur);
  const units: Line[][] = paras.length > 1 ? paras : ls.length > 1 ? ls.map((l) => [l]) : splitLine(ls[0]!);
  if (units.length === 1) return [units[0]!]; // one word longer than a chunk: nothing more to split
  // Pack units greedily; units that alone do not fit are split further.
  const out: Line[][] = [];
  let pack: Line[] = [];
  for (const u of units) {
    const withBlank = pack.length ? [...pack, { text: '', n: u[0]!.n }, ...u] : u;
    if (fits(withBlank)) {
      pack = withBlank;
      continue;
    }
    if (pack.length) out.push(pack);
    pack = [];
    if (fits(u)) pack = u;
    else out.push(...splitToFit(u, o, prefix));
  }
  if (pack.length) out.push(pack);
  return out;
}

function splitLine(l: Line): Line[][] {
  const sentences = sentencesOf(l.text);
  if (sentences.length > 1) return sentences.map((s) => [{ text: s.trim(), n: l.n }]);
  const words = l.text.split(/(?<=\s)/);
  const half = Math.ceil(words.length / 2);
  if (words.length < 2) return [[l]];
  return [
    [{ text: words.slice(0, half).join('').trim(), n: l.n }],
    [{ text: words.slice(half).join('').trim(), n: l.n }],
  ];
}

export function chunkHash(source: string, text: string): string {
  return createHash('sha256').update(source).update('\0').update(text.normalize('NFC')).digest('hex');
}

/** Splits one document into chunks. An empty document gives no chunks. */
export function chunkMarkdown(source: string, md: string, o: IngestOptions): Chunk[] {
  if (!(o.maxTokens > 0)) throw new IngestError(`maxTokens must be positive (got ${o.maxTokens})`);
  const minTokens = o.minTokens ?? Math.floor(o.maxTokens / 4);
  const secs = sections(cleanLines(md));
  type Piece = { headings: string[]; lines: Line[]; level: number; startsWithHeading: boolean };
  const pieces: Piece[] = [];
  for (const s of secs) {
    const body = trimBlank(s.lines);
    if (!body.length) continue;
    // Parent headings give a split section its context.
    const parents = s.headings.length > 1 ? `${s.headings.join(' › ')}\n\n` : '';
    const headLine = s.headingLines ? s.lines[0]!.n : -1;
    for (const part of splitToFit(body, o, parents)) {
      const ls = trimBlank(part);
      pieces.push({ headings: s.headings, lines: ls, level: s.level, startsWithHeading: ls[0]?.n === headLine });
    }
  }
  // Merge small neighbours that share a parent, while they fit.
  const merged: Piece[] = [];
  const textOf = (p: Piece) => p.lines.map((l) => l.text).join('\n');
  for (const p of pieces) {
    const last = merged[merged.length - 1];
    const parentOfP = p.headings.slice(0, -1).join('\0');
    const related =
      last && (last.headings.slice(0, -1).join('\0') === parentOfP || last.headings.join('\0') === parentOfP);
    if (last && related && o.countTokens(textOf(last)) < minTokens) {
      const joined: Piece = {
        headings: last.headings,
        level: last.level,
        startsWithHeading: last.startsWithHeading,
        lines: [...last.lines, { text: '', n: p.lines[0]!.n }, ...p.lines],
      };
      if (o.countTokens(textOf(joined)) <= o.maxTokens) {
        merged[merged.length - 1] = joined;
        continue;
      }
    }
    merged.push(p);
  }
  return merged.map((p, i) => {
    const own = textOf(p);
    // A chunk that does not start with its own heading gets its heading path as context.
    const ctx = p.startsWithHeading ? p.headings.slice(0, -1) : p.headings;
    const text = (ctx.length ? `${ctx.join(' › ')}\n\n` : '') + own;
    return {
      id: `${source}#${i}`,
      source,
      headings: p.headings,
      text,
      hash: chunkHash(source, text),
      tokens: o.countTokens(text),
      line: p.lines[0]!.n,
    };
  });
}
