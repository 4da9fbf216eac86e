// The part of markdown-it's API the webviews use (the package ships no types).
declare module 'markdown-it' {
  export default class MarkdownIt {
    constructor(options?: { html?: boolean; linkify?: boolean; typographer?: boolean; breaks?: boolean });
    disable(rules: string[]): this;
    render(src: string): string;
  }
}
