// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header ({name: {dtype, shape, data_offsets: [begin, end]}},
// offsets relative to the byte after the header, optional "__metadata__": {string: string}),
// then the raw little-endian tensor data.
//
// The reader reads only the header when it opens a file and reads one tensor's bytes on demand
// at its offset, so multi-gigabyte files never sit in memory whole. The writer streams tensors to
// a temporary file in the same folder and renames it into place (atomic on POSIX and Windows).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { writeAll, writeFileAtomicWith } from '../../common/atomicFile';
import { halfToFloat } from '../graph';
import { ModelError } from './config';

export type SafetensorsDType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL'
  | 'F8_E4M3'
  | 'F8_E5M2';

export const SAFETENSORS_DTYPE_SIZE: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
}

interface Entry extends TensorInfo {
  begin: number;
  end: number;
}

/** A corrupt, truncated or unreadable safetensors file. The message names the file. */
export class SafetensorsError extends ModelError {
  override name = 'SafetensorsError';
}

/** The header must fit in this many bytes (the reference implementation's limit). */
const MAX_HEADER = 100_000_000;
/** fs.readSync/writeSync handle at most 2 GiB per call. */
const IO_CHUNK = 1 << 30;

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly entries = new Map<string, Entry>();
  private fd: number | undefined;
  private readonly dataStart: number;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.fd = fd;
    const fail = (msg: string): never => {
      throw new SafetensorsError(`${path}: ${msg}`);
    };
    const size = fstatSync(fd).size;
    if (size < 8) fail(`not a safetensors file: ${size} bytes, shorter than the 8-byte header length (truncated?)`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, path);
    const headerLen = lenBuf.readBigUInt64LE(0);
    if (headerLen > BigInt(MAX_HEADER))
      fail(`header length ${headerLen} is implausible (corrupt file, or not a safetensors file)`);
    const n = Number(headerLen);
    if (8 + n > size)
      fail(`the header says it is ${n} bytes but the file has only ${size - 8} after the length (truncated)`);
    const headerBuf = Buffer.alloc(n);
    readFully(fd, headerBuf, 8, path);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch (e) {
      fail(`the header is not valid JSON (${(e as Error).message}): corrupt file`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header is not a JSON object');
    this.dataStart = 8 + n;
    const dataLen = size - this.dataStart;
    const meta: Record<string, string> = {};
    const spans: Entry[] = [];
    for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (typeof v !== 'object' || v === null) fail('"__metadata__" must be an object of strings');
        for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
          if (typeof s !== 'string') fail(`"__metadata__.${k}" must be a string`);
          meta[k] = s as string;
        }
        continue;
      }
      const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
      if (typeof t !== 'object' || t === null) fail(`tensor "${name}": header entry is not an object`);
      const dtype = t!.dtype;
      if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_SIZE, dtype)) {
        fail(
          `tensor "${name}": dtype ${JSON.stringify(dtype)} is not supported (supported: ${Object.keys(SAFETENSORS_DTYPE_SIZE).join(', ')})`,
        );
      }
      const shape = t!.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
        fail(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of sizes`);
      const off = t!.data_offsets;
      if (
        !Array.isArray(off) ||
        off.length !== 2 ||
        !off.every((d) => Number.isSafeInteger(d) && d >= 0) ||
        off[0] > off[1]
      ) {
        fail(`tensor "${name}": data_offsets ${JSON.stringify(off)} are not [begin, end]`);
      }
      const [begin, end] = off as [number, number];
      const expect = numel(shape as number[]) * SAFETENSORS_DTYPE_SIZE[dtype as SafetensorsDType];
      if (end - begin !== expect)
        fail(
          `tensor "${name}": data_offsets span ${end - begin} bytes but ${dtype}[${(shape as number[]).join(', ')}] needs ${expect}`,
        );
      if (end > dataLen)
        fail(
          `tensor "${name}" ends at byte ${end} of the data but the file has only ${dataLen} data bytes (truncated)`,
        );
      const e: Entry = { dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end };
      this.entries.set(name, e);
      spans.push(e);
    }
    // Tensors must not overlap; the data must end where the last tensor does.
    spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
    let pos = 0;
    for (const s of spans) {
      if (s.begin < pos) fail('tensors overlap in the data section (corrupt header)');
      pos = s.end;
    }
    if (pos !== dataLen)
      fail(`the data section has ${dataLen} bytes but the tensors account for ${pos} (corrupt or truncated file)`);
    this.metadata = meta;
  }

  /** Opens a file and reads its header; the tensor data stays on disk until asked for. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SafetensorsError(
        code === 'ENOENT' ? `${path}: file not found` : `${path}: cannot open (${(e as Error).message})`,
      );
    }
    try {
      return new SafetensorsFile(path, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: [...e.shape] };
  }

  /** The tensor's raw little-endian bytes, read from disk now (a fresh buffer each call). */
  bytes(name: string): Uint8Array {
    const e = this.entry(name);
    const out = new Uint8Array(e.end - e.begin);
    this.readInto(e, out);
    return out;
  }

  /** The tensor's values as float32 (F32 read directly; F16, BF16, F64 and integers converted). */
  float32(name: string): Float32Array {
    const e = this.entry(name);
    const n = numel(e.shape);
    switch (e.dtype) {
      case 'F32': {
        const out = new Float32Array(n);
        this.readInto(e, new Uint8Array(out.buffer));
        return out;
      }
      case 'F16':
      case 'BF16': {
        const raw = new Uint16Array(n);
        this.readInto(e, new Uint8Array(raw.buffer));
        const out = new Float32Array(n);
        if (e.dtype === 'BF16') {
          // bf16 is the top half of a float32: widen by shifting the bits.
          const bits = new Uint32Array(out.buffer);
          for (let i = 0; i < n; i++) bits[i] = raw[i]! << 16;
        } else {
          for (let i = 0; i < n; i++) out[i] = halfToFloat(raw[i]!);
        }
        return out;
      }
      case 'F64':
      case 'I64':
      case 'I32':
      case 'I16':
      case 'I8':
      case 'U32':
      case 'U16':
      case 'U8':
      case 'BOOL': {
        const b = this.bytes(name);
        const src = {
          F64: () => new Float64Array(b.buffer),
          I64: () => Float64Array.from(new BigInt64Array(b.buffer), Number),
          I32: () => new Int32Array(b.buffer),
          I16: () => new Int16Array(b.buffer),
          I8: () => new Int8Array(b.buffer),
          U32: () => new Uint32Array(b.buffer),
          U16: () => new Uint16Array(b.buffer),
          U8: () => b,
          BOOL: () => b,
        }[e.dtype]();
        return Float32Array.from(src);
      }
      default:
        throw new SafetensorsError(
          `${this.path}: tensor "${name}" has dtype ${e.dtype}, which cannot be converted to float32`,
        );
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new SafetensorsError(`${this.path}: no tensor named "${name}"`);
    return e;
  }

  private readInto(e: Entry, out: Uint8Array): void {
    if (this.fd === undefined) throw new SafetensorsError(`${this.path}: file is closed`);
    readFully(this.fd, out, this.dataStart + e.begin, this.path);
  }
}

function readFully(fd: number, out: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < out.length) {
    const n = readSync(fd, out, done, Math.min(IO_CHUNK, out.length - done), position + done);
    if (n === 0)
      throw new SafetensorsError(
        `${path}: unexpected end of file at byte ${position + done} (truncated; was it modified while open?)`,
      );
    done += n;
  }
}

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  /** The little-endian bytes (any typed array or view), or a function producing them when written. */
  data: ArrayBufferView | (() => ArrayBufferView);
}

/** The JSON header (padded with spaces to 8-byte alignment) for a list of tensors. */
function buildHeader(
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): { header: Buffer; sizes: number[] } {
  const obj: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) obj.__metadata__ = metadata;
  const sizes: number[] = [];
  let off = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || t.name in obj)
      throw new SafetensorsError(`duplicate or reserved tensor name "${t.name}"`);
    if (!Object.hasOwn(SAFETENSORS_DTYPE_SIZE, t.dtype))
      throw new SafetensorsError(`tensor "${t.name}": unknown dtype ${t.dtype}`);
    const size = numel(t.shape) * SAFETENSORS_DTYPE_SIZE[t.dtype];
    obj[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [off, off + size] };
    sizes.push(size);
    off += size;
  }
  let header = Buffer.from(JSON.stringify(obj), 'utf8');
  const pad = (8 - (header.length % 8)) % 8;
  if (pad) header = Buffer.concat([header, Buffer.alloc(pad, 0x20)]);
  return { header, sizes };
}

/** Bytes a file with these tensors takes, without writing it. */
export function safetensorsSize(
  tensors: readonly Omit<TensorToWrite, 'data'>[],
  metadata?: Record<string, string>,
): number {
  const { header, sizes } = buildHeader(
    tensors.map((t) => ({ ...t, data: new Uint8Array(0) })),
    metadata,
  );
  return 8 + header.length + sizes.reduce((a, b) => a + b, 0);
}

/**
 * Writes a safetensors file atomically: into a temporary file in the same folder, flushed to
 * disk, then renamed over `path`. Tensors are written in the order given, one at a time.
 */
export function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): void {
  const { header, sizes } = buildHeader(tensors, metadata);
  writeFileAtomicWith(path, (fd) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    writeAll(fd, len);
    writeAll(fd, header);
    tensors.forEach((t, i) => {
      const v = typeof t.data === 'function' ? t.data() : t.data;
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      if (bytes.length !== sizes[i]) {
        throw new SafetensorsError(
          `tensor "${t.name}": ${bytes.length} bytes of data for ${t.dtype}[${t.shape.join(', ')}], which needs ${sizes[i]}`,
        );
      }
      writeAll(fd, bytes);
    });
  });
}
