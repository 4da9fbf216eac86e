// The worker's framing: `Content-Length: N\r\n\r\n` + N bytes of JSON, as LSP frames it, read with
// a reader of our own instead of vscode-jsonrpc's StreamMessageReader, which on a frame without a
// Content-Length, with a non-numeric one or with a body that is not JSON fires an error and keeps
// going out of step (every request after it unanswered), and which buffers whatever length a header
// announces. Here every bad frame gets a JSON-RPC answer (id null: it has no readable id), a line on
// stderr, and the requests after it are served:
//  - a header block without a usable Content-Length (missing, not a number, more than
//    MAX_MESSAGE_BYTES) is answered with Invalid Request (-32600) and the reader skips to the next
//    "Content-Length:" after the start of that block (what follows a header it cannot use cannot
//    be measured, and a header cut short runs into the next one);
//  - a header block longer than MAX_HEADER_BYTES without its blank line: the same;
//  - a body that is not UTF-8 JSON: Parse error (-32700); the frame's length was right, so the next
//    frame is read where it starts;
//  - JSON that is not a JSON-RPC message (an array, a number, an object with no method, id, result
//    or error): Invalid Request (-32600), with the message's id when it has a usable one;
//  - a body that stops arriving half-way (nothing more for partialTimeoutMs): Parse error, and the
//    reader skips to the next header.
// At most MAX_MESSAGE_BYTES (plus one read's chunk) are ever held.
import type { Readable, Writable } from 'node:stream';
import {
  AbstractMessageReader,
  StreamMessageWriter,
  createMessageConnection,
  type DataCallback,
  type Disposable,
  type Message,
  type MessageConnection,
  type MessageWriter,
} from 'vscode-jsonrpc/node';

export const MAX_MESSAGE_BYTES = 64 * 2 ** 20;
export const MAX_HEADER_BYTES = 8192;
const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
const HEADER_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = 'content-length:';
// A complete header line, and the start of one (RFC 7230 token, colon, printable value).
const HEADER_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*$/;
const HEADER_PREFIX = /^[!#$%&'*+.^_`|~0-9A-Za-z-]*(?::[\t\x20-\x7e]*)?\r?$/;

export interface FramingOptions {
  /** Most bytes in one message's body (default MAX_MESSAGE_BYTES). */
  maxMessageBytes?: number;
  /** A body that gets no more bytes for this long is dropped (default 10 s; 0: never). */
  partialTimeoutMs?: number;
  /** Where bad frames are reported (default: stderr). */
  log?: (line: string) => void;
}

/** Up to 120 bytes of a bad frame, printable, for the log. */
const preview = (b: Buffer): string =>
  JSON.stringify(b.subarray(0, 120).toString('latin1')) + (b.length > 120 ? `… (${b.length} bytes)` : '');

const isId = (x: unknown): x is string | number =>
  typeof x === 'string' || (typeof x === 'number' && Number.isFinite(x));

/** Why `m` is not a JSON-RPC 2.0 message, or undefined. */
function notAMessage(m: unknown): string | undefined {
  if (Array.isArray(m)) return 'batches (a JSON array) are not supported; send one message per frame';
  if (typeof m !== 'object' || m === null)
    return `the body is JSON but not an object (${m === null ? 'null' : typeof m})`;
  const o = m as Record<string, unknown>;
  if (o.jsonrpc !== '2.0') return 'the message has no "jsonrpc": "2.0"';
  if (typeof o.method === 'string')
    return o.id === undefined || isId(o.id) ? undefined : '"id" must be a string or a number';
  if (isId(o.id) && ('result' in o || 'error' in o)) return undefined;
  return 'the message has neither a "method" (a request or notification) nor an "id" with a "result" or "error" (a response)';
}

export class FramedMessageReader extends AbstractMessageReader {
  private readonly max: number;
  private readonly timeoutMs: number;
  private readonly log: (line: string) => void;
  private callback?: DataCallback;
  private state: 'header' | 'body' | 'skip' = 'header';
  /** Header bytes so far (header state), or the tail kept while skipping (skip state). */
  private head = Buffer.alloc(0);
  private body: Buffer[] = [];
  private have = 0;
  private need = 0;
  private skipped = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly input: Readable,
    private readonly answer: (m: Message) => void,
    o: FramingOptions = {},
  ) {
    super();
    this.max = o.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.timeoutMs = o.partialTimeoutMs ?? 10_000;
    this.log = o.log ?? ((l) => process.stderr.write(l + '\n'));
  }

  /** Bytes held right now (tests check that it stays bounded). */
  get buffered(): number {
    return this.head.length + this.have;
  }

  listen(callback: DataCallback): Disposable {
    this.callback = callback;
    const onData = (d: Buffer | string) => this.onData(typeof d === 'string' ? Buffer.from(d, 'utf8') : d);
    const onError = (e: Error) => this.fireError(e);
    const onClose = () => {
      clearTimeout(this.timer);
      this.fireClose();
    };
    this.input.on('data', onData).on('error', onError).on('close', onClose);
    return { dispose: () => void this.input.off('data', onData).off('error', onError).off('close', onClose) };
  }

  override dispose(): void {
    clearTimeout(this.timer);
    super.dispose();
  }

  private bad(code: number, message: string, frame: Buffer, id: string | number | null = null): void {
    this.log(`worker: bad frame (${message}): ${preview(frame)}`);
    try {
      this.answer({ jsonrpc: '2.0', id, error: { code, message } } as Message);
    } catch (e) {
      this.log(`worker: cannot answer a bad frame: ${String(e)}`);
    }
  }

  private onData(data: Buffer): void {
    let rest: Buffer | undefined = data;
    while (rest && rest.length)
      rest =
        this.state === 'header' ? this.readHeader(rest) : this.state === 'body' ? this.readBody(rest) : this.skip(rest);
  }

  /** Returns the bytes left over after this step (undefined: all consumed, wait for more). */
  private readHeader(data: Buffer): Buffer | undefined {
    const all = this.head.length ? Buffer.concat([this.head, data]) : data;
    // Blank lines between frames are tolerated, as vscode-jsonrpc does.
    let start = 0;
    while (start + 1 < all.length && all[start] === 0x0d && all[start + 1] === 0x0a) start += 2;
    const end = all.indexOf(HEADER_END, start);
    const text = all.subarray(start, end < 0 ? all.length : end).toString('latin1');
    if (text.length > MAX_HEADER_BYTES) {
      this.head = Buffer.alloc(0);
      this.bad(
        INVALID_REQUEST,
        `Invalid Request: a header longer than ${MAX_HEADER_BYTES} bytes (a header ends at its first blank line)`,
        all.subarray(start),
      );
      return this.resync(all, start, text, all.subarray(start + 1));
    }
    // Every line must be "Name: value", checked as it arrives: random bytes or a frame's body taken
    // for a header are refused at once, not after the next frame has been swallowed into them.
    const lines = text.split('\r\n');
    for (let k = 0, at = 0; k < lines.length; at += lines[k]!.length + 2, k++) {
      if ((end >= 0 || k < lines.length - 1 ? HEADER_LINE : HEADER_PREFIX).test(lines[k]!)) continue;
      this.head = Buffer.alloc(0);
      this.bad(
        INVALID_REQUEST,
        `Invalid Request: ${JSON.stringify(lines[k]!.slice(0, 40))} is not a header line ("Name: value")`,
        all.subarray(start),
      );
      return this.resync(all, start, text, all.subarray(start + at + 1));
    }
    if (end < 0) {
      this.head = Buffer.from(all.subarray(start));
      return undefined;
    }
    this.head = Buffer.alloc(0);
    const after = all.subarray(end + HEADER_END.length);
    const lengths = new Set<string>();
    for (const line of lines) {
      const colon = line.indexOf(':');
      if (line.slice(0, colon).toLowerCase() === 'content-length') lengths.add(line.slice(colon + 1).trim());
    }
    const length = lengths.size === 1 ? [...lengths][0]! : undefined;
    const problem =
      lengths.size > 1
        ? `the frame has ${lengths.size} different Content-Length headers`
        : length === undefined
          ? 'the frame has no Content-Length header'
          : !/^\d+$/.test(length)
            ? `Content-Length ${JSON.stringify(length)} is not a number`
            : Number(length) > this.max
              ? `Content-Length ${length} is more than the ${this.max} bytes a message may have`
              : undefined;
    if (problem) {
      this.bad(INVALID_REQUEST, `Invalid Request: ${problem}`, all.subarray(start, end));
      // What follows a header that cannot be used cannot be measured: skip to the next header.
      return this.resync(all, start, text, after);
    }
    this.need = Number(length);
    this.have = 0;
    this.body = [];
    if (!this.need) {
      this.deliver(Buffer.alloc(0));
      return after;
    }
    this.state = 'body';
    this.armTimer(); // even if no byte of the body ever comes
    return after;
  }

  /**
   * Where reading starts again after a bad header (`text`, from `start` in `all`). A header cut
   * short runs into the next one ("Content-Length: 4Content-Length: 43", or a body's end followed
   * by a header): a "Content-Length:" inside a line is where the next frame starts; otherwise the
   * next one found in `rest`.
   */
  private resync(all: Buffer, start: number, text: string, rest: Buffer): Buffer | undefined {
    const lower = text.toLowerCase();
    for (let i = lower.indexOf(CONTENT_LENGTH, 1); i > 0; i = lower.indexOf(CONTENT_LENGTH, i + 1)) {
      if (lower.slice(i - 2, i) !== '\r\n') {
        this.state = 'header';
        return all.subarray(start + i);
      }
    }
    return this.startSkip(rest);
  }

  private readBody(data: Buffer): Buffer | undefined {
    const take = Math.min(this.need - this.have, data.length);
    if (take) this.body.push(data.subarray(0, take));
    this.have += take;
    if (this.have < this.need) {
      this.armTimer();
      return undefined;
    }
    clearTimeout(this.timer);
    const body = Buffer.concat(this.body, this.have);
    this.body = [];
    this.have = 0;
    this.state = 'header';
    this.deliver(body);
    return data.subarray(take);
  }

  private deliver(body: Buffer): void {
    let m: unknown;
    try {
      m = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
    } catch (e) {
      this.bad(
        PARSE_ERROR,
        `Parse error: the body is not ${e instanceof SyntaxError ? 'JSON' : 'UTF-8'} (${(e as Error).message})`,
        body,
      );
      return;
    }
    const problem = notAMessage(m);
    if (problem) {
      const id = (m as { id?: unknown } | null)?.id;
      this.bad(INVALID_REQUEST, `Invalid Request: ${problem}`, body, isId(id) ? id : null);
      return;
    }
    try {
      this.callback?.(m as Message);
    } catch (e) {
      this.log(`worker: a message's handler threw: ${(e as Error).stack ?? String(e)}`);
    }
  }

  private armTimer(): void {
    if (!this.timeoutMs) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.state !== 'body') return;
      const got = Buffer.concat(this.body, this.have);
      this.bad(
        PARSE_ERROR,
        `Parse error: ${this.have} of ${this.need} bytes of a message arrived, then nothing for ${this.timeoutMs / 1000} s`,
        got,
      );
      this.body = [];
      this.have = 0;
      this.startSkip(Buffer.alloc(0));
    }, this.timeoutMs);
    this.timer.unref?.();
  }

  private startSkip(rest: Buffer): Buffer | undefined {
    this.state = 'skip';
    this.skipped = 0;
    this.head = Buffer.alloc(0);
    return rest.length ? rest : undefined;
  }

  /** Drops bytes up to the next "Content-Length:" (any case), where reading frames starts again. */
  private skip(data: Buffer): Buffer | undefined {
    const all = this.head.length ? Buffer.concat([this.head, data]) : data;
    const at = all.toString('latin1').toLowerCase().indexOf(CONTENT_LENGTH);
    if (at < 0) {
      // Keep what could be the start of a "Content-Length:" cut by the read.
      const keep = Math.min(all.length, CONTENT_LENGTH.length - 1);
      this.skipped += all.length - keep;
      this.head = Buffer.from(all.subarray(all.length - keep));
      return undefined;
    }
    this.skipped += at;
    if (this.skipped) this.log(`worker: skipped ${this.skipped} bytes to the next Content-Length header`);
    this.head = Buffer.alloc(0);
    this.state = 'header';
    return all.subarray(at);
  }
}

/**
 * A JSON-RPC connection over a pair of streams that answers bad frames instead of going silent
 * (see the top of this file).
 */
export function framedConnection(input: Readable, output: Writable, o: FramingOptions = {}): MessageConnection {
  const writer: MessageWriter = new StreamMessageWriter(output);
  const reader = new FramedMessageReader(input, (m) => void writer.write(m).catch(() => {}), o);
  return createMessageConnection(reader, writer);
}
