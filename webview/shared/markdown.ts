// Model answers as Markdown, safely: markdown-it with raw HTML off (it is escaped, never parsed),
// and no links, images or autolinks, so an answer can neither run code nor load remote content.
import MarkdownIt from 'markdown-it';

const md = new MarkdownIt({ html: false, linkify: false, typographer: false, breaks: true });
md.disable(['image', 'link', 'autolink', 'html_inline', 'html_block']);

export function renderMarkdown(text: string): string {
  return md.render(text);
}
