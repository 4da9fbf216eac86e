// A stand-in for the `vscode` module with the few classes the chat participant touches, installed
// into Node's module loader. Import it before any module that imports 'vscode'.
import Module from 'node:module';

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly fsPath: string,
  ) {}
  static file(p: string): Uri {
    return new Uri('file', p);
  }
  toString(): string {
    return `${this.scheme}://${this.fsPath}`;
  }
}
export class MarkdownString {
  constructor(readonly value = '') {}
}
export class ChatRequestTurn {
  constructor(
    readonly prompt: string,
    readonly command?: string,
  ) {}
}
export class ChatResponseMarkdownPart {
  readonly value: MarkdownString;
  constructor(v: string) {
    this.value = new MarkdownString(v);
  }
}
export class ChatResponseTurn {
  constructor(readonly response: ChatResponseMarkdownPart[]) {}
}
export class Disposable {
  constructor(private readonly fn: () => void) {}
  dispose(): void {
    this.fn();
  }
}
const fmt = (s: string, ...a: unknown[]) => s.replace(/\{(\d+)\}/g, (_, i: string) => String(a[Number(i)]));
export const fake = {
  Uri,
  MarkdownString,
  ChatRequestTurn,
  ChatResponseTurn,
  ChatResponseMarkdownPart,
  Disposable,
  l10n: { t: fmt },
};

const M = Module as unknown as { _load: (req: string, ...rest: unknown[]) => unknown };
const load = M._load;
M._load = function (req: string, ...rest: unknown[]) {
  return req === 'vscode' ? fake : load.call(this, req, ...rest);
};
