// ONNX ModelProto writer. Field numbers follow onnx/onnx.proto (IR version 10, opset 18+).
// Large initializers can go to an external-data file beside the model, each tensor starting on a
// page boundary so ONNX Runtime can map it without copying.
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { bytesOf, onnxTypeCode } from './dtype';
import type { Attr, Graph, Initializer, Node, Tensor } from './graph';
import { ProtoWriter } from './protobuf';
import { writeAll, writeFileAtomicWith } from '../../common/atomicFile';

export const IR_VERSION = 10;
export const DEFAULT_OPSET = 18;
const PAGE = 4096;

export interface SerializeOptions {
  opset?: number;
  /** Put initializers of at least `threshold` bytes into a separate file named `fileName`. */
  externalData?: { fileName: string; threshold?: number };
  /**
   * Operators to write as an equivalent of simpler ones, for a provider that lacks a kernel for
   * them (see LOWERINGS). Gradients are unaffected: this happens after autodiff, in the file only.
   */
  lower?: readonly string[];
}

type NodeOut = (name: string, op: string, inputs: string[], outputs: string[], attrs?: Record<string, Attr>) => void;

/**
 * Equivalents of operators in others. LogSoftmax: the WebGPU provider of onnxruntime 1.30 has no
 * kernel, and a CPU LogSoftmax over [B, T, V] logits in the middle of a GPU graph copies
 * them to the host and back every run. y = (x − max x) − log Σ exp(x − max x), in five kernels
 * that it has.
 */
const LOWERINGS: Record<string, (n: Node, out: NodeOut) => void> = {
  LogSoftmax: (n, out) => {
    const x = n.inputs[0]!.name;
    const y = n.outputs[0]!.name;
    const a = n.attrs.axis;
    const axis = a?.kind === 'int' ? a.value : -1;
    const p = `${n.name}__lower`;
    out(`${p}_axes`, 'Constant', [], [`${p}_axes`], {
      value: { kind: 'tensor', dtype: 'int64', shape: [1], data: BigInt64Array.of(BigInt(axis)) },
    });
    out(`${p}_max`, 'ReduceMax', [x, `${p}_axes`], [`${p}_max`], { keepdims: { kind: 'int', value: 1 } });
    out(`${p}_shift`, 'Sub', [x, `${p}_max`], [`${p}_shift`]);
    out(`${p}_exp`, 'Exp', [`${p}_shift`], [`${p}_exp`]);
    out(`${p}_sum`, 'ReduceSum', [`${p}_exp`, `${p}_axes`], [`${p}_sum`], { keepdims: { kind: 'int', value: 1 } });
    out(`${p}_lse`, 'Log', [`${p}_sum`], [`${p}_lse`]);
    out(n.name, 'Sub', [`${p}_shift`, `${p}_lse`], [y]);
  },
  // ConstantOfShape (the zeros that gradients are scattered into, [B, T, D]-sized) has no WebGPU
  // kernel: made on the CPU, it is copied to the device every step. Expand of the one value does
  // the same on the device.
  ConstantOfShape: (n, out) => {
    const v = n.attrs.value;
    const value =
      v?.kind === 'tensor'
        ? v
        : { kind: 'tensor' as const, dtype: 'float32' as const, shape: [1], data: Float32Array.of(0) };
    const p = `${n.name}__lower`;
    out(`${p}_value`, 'Constant', [], [`${p}_value`], { value: { ...value, shape: [1] } });
    out(n.name, 'Expand', [`${p}_value`, n.inputs[0]!.name], [n.outputs[0]!.name]);
  },
};

export interface ExternalPiece {
  offset: number;
  data: Uint8Array;
}

export interface SerializedModel {
  model: Uint8Array;
  /** Initializer bytes for the external-data file, at page-aligned offsets. */
  external: ExternalPiece[];
  externalSize: number;
}

function typeProto(t: Tensor): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of t.shape) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().int(1, onnxTypeCode[t.dtype]).message(2, shape);
  return new ProtoWriter().message(1, tensorType);
}

function valueInfo(t: Tensor): ProtoWriter {
  return new ProtoWriter().string(1, t.name).message(2, typeProto(t));
}

function tensorProto(
  name: string,
  dtype: Initializer['tensor']['dtype'],
  dims: readonly number[],
  raw: Uint8Array | undefined,
  ext?: { location: string; offset: number; length: number },
): ProtoWriter {
  const w = new ProtoWriter();
  if (dims.length) w.packedInts(1, dims);
  w.int(2, onnxTypeCode[dtype]);
  w.string(8, name);
  if (ext) {
    for (const [k, v] of [
      ['location', ext.location],
      ['offset', String(ext.offset)],
      ['length', String(ext.length)],
    ] as const) {
      w.message(13, new ProtoWriter().string(1, k).string(2, v));
    }
    w.int(14, 1);
  } else {
    w.bytes(9, raw ?? new Uint8Array(0));
  }
  return w;
}

function attribute(name: string, a: Attr): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  switch (a.kind) {
    case 'int':
      return w.int(3, a.value).int(20, 2);
    case 'float':
      return w.float(2, a.value).int(20, 1);
    case 'string':
      return w.string(4, a.value).int(20, 3);
    case 'ints':
      return w.packedInts(8, a.value).int(20, 7);
    case 'floats':
      return w.packedFloats(7, a.value).int(20, 6);
    case 'tensor':
      return w.message(5, tensorProto('', a.dtype, a.shape, bytesOf(a.data))).int(20, 4);
  }
}

export function serializeModel(graph: Graph, opts: SerializeOptions = {}): SerializedModel {
  const g = new ProtoWriter();
  const emit: NodeOut = (name, op, inputs, outputs, attrs = {}) => {
    const nw = new ProtoWriter();
    for (const i of inputs) nw.string(1, i);
    for (const o of outputs) nw.string(2, o);
    nw.string(3, name).string(4, op);
    for (const [k, a] of Object.entries(attrs)) nw.message(5, attribute(k, a));
    g.message(1, nw);
  };
  for (const n of graph.nodes) {
    const lowering = opts.lower?.includes(n.op) && !n.domain ? LOWERINGS[n.op] : undefined;
    if (lowering) {
      lowering(n, emit);
      continue;
    }
    const nw = new ProtoWriter();
    for (const i of n.inputs) nw.string(1, i ? i.name : '');
    for (const o of n.outputs) nw.string(2, o.name);
    nw.string(3, n.name).string(4, n.op);
    for (const [k, a] of Object.entries(n.attrs)) nw.message(5, attribute(k, a));
    if (n.domain) nw.string(7, n.domain);
    g.message(1, nw);
  }
  g.string(2, graph.name);
  const external: ExternalPiece[] = [];
  let externalSize = 0;
  const threshold = opts.externalData?.threshold ?? 1024;
  for (const init of graph.initializers) {
    const raw = bytesOf(init.data);
    const t = init.tensor;
    const dims = t.shape as number[];
    if (init.external) {
      // In a weight pack beside the model file (ONNX Runtime resolves the location against the model's folder).
      g.message(
        5,
        tensorProto(t.name, t.dtype, dims, undefined, {
          location: basename(init.external.path),
          offset: init.external.offset,
          length: init.external.length,
        }),
      );
    } else if (opts.externalData && raw.byteLength >= threshold) {
      const offset = Math.ceil(externalSize / PAGE) * PAGE;
      external.push({ offset, data: raw });
      externalSize = offset + raw.byteLength;
      g.message(
        5,
        tensorProto(t.name, t.dtype, dims, undefined, {
          location: opts.externalData.fileName,
          offset,
          length: raw.byteLength,
        }),
      );
    } else {
      g.message(5, tensorProto(t.name, t.dtype, dims, raw));
    }
  }
  for (const t of graph.inputs) g.message(11, valueInfo(t));
  for (const t of graph.outputs) g.message(12, valueInfo(t));

  const m = new ProtoWriter()
    .int(1, IR_VERSION)
    .string(2, 'docdistill')
    .string(3, '0.1')
    .message(7, g)
    .message(8, new ProtoWriter().string(1, '').int(2, opts.opset ?? DEFAULT_OPSET));
  // Contrib operators (com.microsoft MatMulNBits) need their domain imported too.
  for (const d of new Set(graph.nodes.map((n) => n.domain).filter((d): d is string => !!d)))
    m.message(8, new ProtoWriter().string(1, d).int(2, 1));
  return { model: m.finish(), external, externalSize };
}

/**
 * A content hash of a graph: its structure, and each initializer by its key (or its bytes when it
 * has none). Two graphs with the same hash run the same computation.
 */
export function graphHash(graph: Graph, opset = DEFAULT_OPSET, lower?: readonly string[]): string {
  const h = createHash('sha256');
  const { model } = serializeModel(graph, { opset, lower, externalData: { fileName: 'x', threshold: 256 } });
  h.update(model);
  for (const init of graph.initializers) {
    if (init.external) {
      h.update(`ext:${init.external.path}:${init.key ?? ''}`);
      continue;
    }
    const raw = bytesOf(init.data);
    if (raw.byteLength < 256) continue;
    h.update(init.key !== undefined ? `key:${init.key}` : createHash('sha256').update(raw).digest('hex'));
  }
  return h.digest('hex').slice(0, 32);
}

/**
 * Writes `<path>` and, if any initializer is large, `<path>.data` beside it, each through a
 * temporary file and a rename, so a crash never leaves a half-written model behind.
 */
export function writeModel(
  graph: Graph,
  path: string,
  opts: { opset?: number; threshold?: number; lower?: readonly string[] } = {},
): { modelBytes: number; dataBytes: number } {
  const dataPath = `${path}.data`;
  for (const i of graph.initializers) {
    if (i.external && resolve(dirname(i.external.path)) !== resolve(dirname(path))) {
      throw new Error(
        `writeModel: ${basename(path)} must be written in ${dirname(i.external.path)}, beside the weight file its initializer ${i.tensor.name} refers to`,
      );
    }
  }
  const s = serializeModel(graph, {
    opset: opts.opset,
    lower: opts.lower,
    externalData: { fileName: basename(dataPath), threshold: opts.threshold ?? 1024 },
  });
  if (s.external.length) {
    writeFileAtomicWith(dataPath, (fd) => {
      for (const p of s.external) writeAll(fd, p.data, p.offset);
    });
  } else {
    rmSync(dataPath, { force: true });
  }
  writeFileAtomicWith(path, (fd) => writeAll(fd, s.model, 0));
  return { modelBytes: s.model.byteLength, dataBytes: s.externalSize };
}
