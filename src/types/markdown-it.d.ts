// The part of markdown-it's API that DocDistill uses (the package ships no types): the chat
// webview renders answers with it, the pipeline reads the block structure of a document.
declare module 'markdown-it' {
  export interface Token {
    type: string;
    tag: string;
    /** [first line, line after the last] of a block token, 0-based. */
    map: [number, number] | null;
    content: string;
    level: number;
    children: Token[] | null;
  }
  export default class MarkdownIt {
    constructor(options?: { html?: boolean; linkify?: boolean; typographer?: boolean; breaks?: boolean });
    disable(rules: string[]): this;
    render(src: string): string;
    parse(src: string, env: object): Token[];
  }
}
