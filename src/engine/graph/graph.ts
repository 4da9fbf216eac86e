// The tensor IR: a graph of ONNX nodes over typed, symbolically shaped tensors.
// Op constructors (ops/*.ts) check shapes when the graph is built, so a wrong model definition
// fails here with the op and shapes named, not inside ONNX Runtime.
import { type DType, type TypedData, byteSize, isFloat } from './dtype';
import { type Dim, type Shape, fmtShape } from './shape';

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'tensor'; dtype: DType; shape: readonly number[]; data: TypedData };

export const attr = {
  int: (value: number): Attr => ({ kind: 'int', value }),
  float: (value: number): Attr => ({ kind: 'float', value }),
  string: (value: string): Attr => ({ kind: 'string', value }),
  ints: (value: readonly number[]): Attr => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): Attr => ({ kind: 'floats', value }),
  tensor: (dtype: DType, shape: readonly number[], data: TypedData): Attr => ({ kind: 'tensor', dtype, shape, data }),
};

export type Attrs = Record<string, Attr>;

export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly name: string,
    /** The node computing this tensor; undefined for inputs and initializers. */
    readonly producer?: Node,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  toString(): string {
    return `${this.name}: ${this.dtype}${fmtShape(this.shape)}`;
  }
}

export interface Node {
  readonly op: string;
  readonly inputs: readonly (Tensor | undefined)[];
  readonly outputs: readonly Tensor[];
  readonly attrs: Attrs;
  readonly name: string;
  readonly domain?: string;
}

export interface Initializer {
  readonly tensor: Tensor;
  readonly data: TypedData;
  /** Identifies the data for graph hashing without reading it (e.g. "model path + tensor name"). */
  readonly key?: string;
  /** The bytes live in a file (a weight pack) that the model refers to; `data` is then empty. */
  readonly external?: ExternalData;
}

/** Where an initializer's bytes are: an absolute file path, a byte offset (page-aligned) and length. */
export interface ExternalData {
  path: string;
  offset: number;
  length: number;
}

export interface OutputSpec {
  dtype: DType;
  shape: Shape;
}

export class GraphError extends Error {
  override name = 'GraphError';
}

export class Graph {
  readonly inputs: Tensor[] = [];
  readonly outputs: Tensor[] = [];
  readonly nodes: Node[] = [];
  readonly initializers: Initializer[] = [];
  private nextId = 0;
  private readonly names = new Set<string>();
  /** Where each symbolic dimension can be read at run time: a tensor that has it, and the axis. */
  private readonly dimSources = new Map<string, { tensor: Tensor; axis: number }>();
  private readonly constCache = new Map<string, Tensor>();
  private readonly dimCache = new Map<string, Tensor>();

  constructor(readonly name = 'docdistill') {}

  private uniqueName(base: string): string {
    let n = base;
    for (let i = 1; this.names.has(n); i++) n = `${base}_${i}`;
    this.names.add(n);
    return n;
  }

  private make(dtype: DType, shape: Shape, name: string, producer?: Node): Tensor {
    const t = new Tensor(this, this.nextId++, dtype, [...shape], name, producer);
    shape.forEach((d, axis) => {
      if (typeof d === 'string' && !this.dimSources.has(d)) this.dimSources.set(d, { tensor: t, axis });
    });
    return t;
  }

  input(name: string, dtype: DType, shape: Shape): Tensor {
    if (this.names.has(name)) throw new GraphError(`graph input '${name}' is defined twice`);
    const t = this.make(dtype, shape, this.uniqueName(name));
    this.inputs.push(t);
    return t;
  }

  /** A constant tensor stored in the model (weights). */
  initializer(name: string, dtype: DType, shape: readonly number[], data: TypedData, key?: string): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new GraphError(`initializer '${name}': ${data.length} values for shape ${fmtShape(shape)} (${n} expected)`);
    }
    const t = this.make(dtype, shape, this.uniqueName(name));
    this.initializers.push({ tensor: t, data, key });
    return t;
  }

  /**
   * A constant whose bytes stay in a file (ONNX external data): the graph never holds them, and
   * ONNX Runtime maps them from the file. A model that uses it must be written beside that file.
   */
  externalInitializer(
    name: string,
    dtype: DType,
    shape: readonly number[],
    external: ExternalData,
    key: string,
  ): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (external.length !== n * byteSize[dtype]) {
      throw new GraphError(
        `initializer '${name}': ${external.length} bytes in ${external.path} for ${dtype}${fmtShape(shape)} (${n * byteSize[dtype]} expected)`,
      );
    }
    const t = this.make(dtype, shape, this.uniqueName(name));
    this.initializers.push({ tensor: t, data: toTyped(dtype, []), key, external });
    return t;
  }

  /** A small constant, shared between uses of equal value. */
  constant(dtype: DType, shape: readonly number[], values: readonly number[] | TypedData): Tensor {
    const arr = toTyped(dtype, values);
    const key = `${dtype}|${shape.join(',')}|${Array.from(arr as ArrayLike<number | bigint>).join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const t = this.initializer(`const_${this.constCache.size}`, dtype, shape, arr);
    this.constCache.set(key, t);
    return t;
  }

  scalar(value: number, dtype: DType): Tensor {
    return this.constant(dtype, [], [value]);
  }

  /** Appends a node; its outputs' shapes were inferred by the op constructor. */
  node(
    op: string,
    inputs: readonly (Tensor | undefined)[],
    attrs: Attrs,
    outs: readonly OutputSpec[],
    opts: { names?: readonly string[]; domain?: string } = {},
  ): Tensor[] {
    for (const x of inputs) {
      if (x && x.graph !== this) throw new GraphError(`${op}: input ${x.name} belongs to another graph`);
    }
    const name = this.uniqueName(`${op}_${this.nodes.length}`);
    const outputs: Tensor[] = [];
    const node: Node = { op, inputs: [...inputs], outputs, attrs, name, domain: opts.domain };
    for (let i = 0; i < outs.length; i++) {
      const wanted = opts.names?.[i];
      if (wanted !== undefined && this.names.has(wanted))
        throw new GraphError(`tensor name '${wanted}' is already used in the graph`);
      const tname = wanted ?? this.uniqueName(`${name}_out${i}`);
      if (wanted !== undefined) this.names.add(wanted);
      outputs.push(this.make(outs[i]!.dtype, outs[i]!.shape, tname, node));
    }
    this.nodes.push(node);
    return outputs;
  }

  /** Marks a tensor as a graph output under a name (through an Identity node). */
  output(t: Tensor, name: string): Tensor {
    const [out] = this.node('Identity', [t], {}, [{ dtype: t.dtype, shape: t.shape }], { names: [name] });
    this.outputs.push(out!);
    return out!;
  }

  /** Whether a symbolic dimension can be read at run time from some tensor of this graph. */
  hasDim(d: Dim): boolean {
    return typeof d === 'number' || this.dimSources.has(d);
  }

  /** An int64 [1] tensor holding a dimension's value (a constant, or read from a tensor's shape). */
  dim(d: Dim): Tensor {
    if (typeof d === 'number') return this.constant('int64', [1], [d]);
    const hit = this.dimCache.get(d);
    if (hit) return hit;
    const src = this.dimSources.get(d);
    if (!src) throw new GraphError(`symbolic dimension '${d}' has no tensor that carries it`);
    const [t] = this.node('Shape', [src.tensor], { start: attr.int(src.axis), end: attr.int(src.axis + 1) }, [
      { dtype: 'int64', shape: [1] },
    ]);
    this.dimCache.set(d, t!);
    return t!;
  }

  /** An int64 [rank] tensor holding a shape, for Reshape, Expand and ConstantOfShape. */
  shapeOf(dims: Shape): Tensor {
    if (dims.every((d) => typeof d === 'number')) return this.constant('int64', [dims.length], dims as number[]);
    const parts = dims.map((d) => this.dim(d));
    const [t] = this.node('Concat', parts, { axis: attr.int(0) }, [{ dtype: 'int64', shape: [dims.length] }]);
    return t!;
  }

  /** Tensors that are float and computed (or fed) — the candidates for gradients. */
  isDifferentiable(t: Tensor): boolean {
    return isFloat(t.dtype);
  }
}

export function toTyped(dtype: DType, values: readonly number[] | TypedData): TypedData {
  if (!Array.isArray(values)) return values as TypedData;
  const v = values as readonly number[];
  switch (dtype) {
    case 'float32':
      return Float32Array.from(v);
    case 'float64':
      return Float64Array.from(v);
    case 'float16':
      return Uint16Array.from(v, floatToHalf);
    case 'bfloat16':
      return Uint16Array.from(v, floatToBfloat16);
    case 'int64':
      return BigInt64Array.from(v, (x) => BigInt(Math.trunc(x)));
    case 'int32':
      return Int32Array.from(v);
    case 'bool':
    case 'uint8':
      return Uint8Array.from(v, (x) => (dtype === 'bool' ? (x ? 1 : 0) : x));
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float → IEEE half, round to nearest even. */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half >>> 10;
  return sign | half;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function floatToBfloat16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  const rounding = 0x7fff + ((x >>> 16) & 1);
  return ((x + rounding) >>> 16) & 0xffff;
}

export function bfloat16ToFloat(b: number): number {
  u32[0] = b << 16;
  return f32[0]!;
}
