// The block structure of a Markdown document from a CommonMark parser (markdown-it), so headings of
// both kinds (ATX `# x` and setext `x\n===`) are found wherever CommonMark finds them, and never
// inside code, lists' continuation lines, tables or HTML blocks.
import MarkdownIt from 'markdown-it';

const md = new MarkdownIt({ html: true });

export interface Heading {
  /** 0-based index of the heading's first line in the text given. */
  line: number;
  /** Lines the heading takes (1 for ATX, 2 for setext). */
  lines: number;
  level: number;
  text: string;
}

/** The headings of a Markdown text, in order. */
export function headingsOf(text: string): Heading[] {
  const tokens = md.parse(text, {});
  const out: Heading[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.type !== 'heading_open' || !t.map) continue;
    const inline = tokens[i + 1];
    out.push({
      line: t.map[0],
      lines: t.map[1] - t.map[0],
      level: Number(t.tag.slice(1)),
      text: (inline?.content ?? '').trim(),
    });
  }
  return out;
}

const segmenter =
  typeof Intl !== 'undefined' && 'Segmenter' in Intl
    ? new Intl.Segmenter('en', { granularity: 'sentence' })
    : undefined;

/** Sentences of a line (Unicode sentence boundaries; "e.g." and "3.5" stay whole). */
export function sentencesOf(text: string): string[] {
  if (!segmenter) return text.match(/[^.!?]+[.!?]+["')\]]*\s*|[^.!?]+$/g) ?? [text];
  return [...segmenter.segment(text)].map((s) => s.segment).filter((s) => s.trim());
}
