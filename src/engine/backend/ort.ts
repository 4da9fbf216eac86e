// The one place that imports onnxruntime-node. Everything else in the engine talks to ONNX
// Runtime through the types and functions here.
import './noTelemetry';
import * as ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { byteSize, type DType, type TypedData } from '../graph/dtype';

export type OrtTensor = ort.Tensor;
export type OrtSession = ort.InferenceSession;

export interface HostTensor {
  dtype: DType;
  dims: readonly number[];
  data: TypedData;
}

const ortType: Record<DType, ort.Tensor.Type> = {
  float32: 'float32',
  float64: 'float64',
  float16: 'float16',
  bfloat16: 'bfloat16' as ort.Tensor.Type,
  int64: 'int64',
  int32: 'int32',
  bool: 'bool',
  uint8: 'uint8',
};

/** Wraps host memory as an ORT tensor without copying. */
export function toOrt(t: HostTensor): ort.Tensor {
  return new ort.Tensor(ortType[t.dtype], t.data as never, t.dims as number[]);
}

/**
 * A tensor that ONNX Runtime holds: in device memory on the WebGPU provider (ORT's 'gpu-buffer'
 * location), in host memory elsewhere. Fed back to a session it does not cross to the host, which
 * is how the KV cache and the adapter stay on the device between steps. Its values cannot be read
 * from JavaScript (onnxruntime-node 1.30 does not implement downloading a GPU buffer): a graph that
 * needs to show them outputs a host copy. dispose() frees the device memory now rather than at GC.
 */
export class DeviceTensor {
  constructor(
    /** @internal */ readonly ort: ort.Tensor,
    readonly dtype: DType,
  ) {}

  get dims(): readonly number[] {
    return this.ort.dims;
  }

  get onDevice(): boolean {
    return this.ort.location === 'gpu-buffer';
  }

  get byteLength(): number {
    return this.ort.dims.reduce((n, d) => n * d, 1) * byteSize[this.dtype];
  }

  dispose(): void {
    if (this.onDevice) this.ort.dispose();
  }
}

export type Feed = HostTensor | DeviceTensor;

/** Bytes that crossed between host and device memory through session inputs and outputs. */
export interface TransferStats {
  toDevice: number;
  toHost: number;
  runs: number;
}

export function fromOrt(t: ort.Tensor): HostTensor {
  const dtype = (Object.keys(ortType) as DType[]).find((k) => ortType[k] === t.type);
  if (!dtype) throw new Error(`ONNX Runtime returned a tensor of unsupported type ${t.type}`);
  let data = t.data as unknown as TypedData;
  // float16 may come back as a Float16Array on newer runtimes; keep raw 16-bit words.
  if (dtype === 'float16' && !(data instanceof Uint16Array)) {
    const d = data as unknown as { buffer: ArrayBuffer; byteOffset: number; length: number };
    data = new Uint16Array(d.buffer, d.byteOffset, d.length);
  }
  return { dtype, dims: t.dims, data };
}

export interface SessionCreateOptions {
  provider: string;
  deviceId?: number;
  intraOpThreads?: number;
  interOpThreads?: number;
  logLevel?: 'verbose' | 'info' | 'warning' | 'error' | 'fatal';
  /** ONNX Runtime's graph optimisation level (default 'all'). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Outputs left in device memory on a GPU provider (ignored on the CPU). */
  deviceOutputs?: readonly string[];
  /** Records a profile (every node run, with its provider) to files starting with this path. */
  profilePrefix?: string;
  /**
   * Writes the optimized graph to this .onnx path, its initializers and ONNX Runtime's pre-packed
   * weights (the MatMul layouts it builds at session creation) to `<name>.data` beside it, so that
   * a later session loads it with optimizations off and maps the packed weights instead of packing
   * them again on the heap (CPU only).
   */
  saveOptimizedTo?: string;
  /** false: weights are not pre-packed into a second copy at session creation (CPU). */
  prepack?: boolean;
  /** false: no CPU memory arena (memory is freed after each run instead of kept for the next). */
  arena?: boolean;
}

/** Whether a provider can keep outputs in device memory through onnxruntime-node (its 'gpu-buffer' location). */
export const keepsOutputsOnDevice = (provider: string): boolean => provider === 'webgpu';

function ortProvider(name: string, deviceId?: number): ort.InferenceSession.ExecutionProviderConfig {
  switch (name) {
    case 'cpu':
      return 'cpu';
    case 'cuda':
      return { name: 'cuda', deviceId: deviceId ?? 0 };
    case 'dml':
      return { name: 'dml', deviceId: deviceId ?? 0 } as ort.InferenceSession.ExecutionProviderConfig;
    case 'coreml':
      return { name: 'coreml' } as ort.InferenceSession.ExecutionProviderConfig;
    case 'webgpu':
      return { name: 'webgpu' } as ort.InferenceSession.ExecutionProviderConfig;
    default:
      throw new Error(`unknown execution provider '${name}'`);
  }
}

/**
 * Creates a session on exactly one execution provider. ONNX Runtime does not fall back when a
 * provider's library is missing (create throws), so fallback is the caller's job.
 */
export async function createOrtSession(
  model: string | Uint8Array,
  o: SessionCreateOptions,
): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [ortProvider(o.provider, o.deviceId)],
    graphOptimizationLevel: o.optimization ?? 'all',
    intraOpNumThreads: o.intraOpThreads ?? 0,
    interOpNumThreads: o.interOpThreads ?? 1,
    executionMode: 'sequential',
    logSeverityLevel: ({ verbose: 0, info: 1, warning: 2, error: 3, fatal: 4 } as const)[o.logLevel ?? 'error'],
  };
  if (o.deviceOutputs?.length && keepsOutputsOnDevice(o.provider)) {
    options.preferredOutputLocation = Object.fromEntries(o.deviceOutputs.map((n) => [n, 'gpu-buffer' as const]));
  }
  const session: Record<string, string> = {};
  if (o.prepack === false) session.disable_prepacking = '1';
  if (o.arena === false) options.enableCpuMemArena = false;
  if (o.saveOptimizedTo) {
    options.optimizedModelFilePath = o.saveOptimizedTo;
    session.optimized_model_external_initializers_file_name = `${basename(o.saveOptimizedTo, '.onnx')}.data`;
    session.optimized_model_external_initializers_min_size_in_bytes = '1024';
    session.save_external_prepacked_constant_initializers = '1';
  }
  if (Object.keys(session).length) options.extra = { session };
  // DOCDISTILL_ORT_PROFILE=DIR: every session writes ONNX Runtime's profile (a Chrome trace of each
  // node's time) into DIR, for finding where a step's time goes.
  const profilePrefix =
    o.profilePrefix ?? (process.env.DOCDISTILL_ORT_PROFILE && join(process.env.DOCDISTILL_ORT_PROFILE, 'ort'));
  if (profilePrefix) {
    options.enableProfiling = true;
    options.profileFilePrefix = profilePrefix;
  }
  return typeof model === 'string'
    ? ort.InferenceSession.create(model, options)
    : ort.InferenceSession.create(model, options);
}

export async function runOrt(
  session: ort.InferenceSession,
  feeds: Record<string, HostTensor>,
  fetches?: readonly string[],
): Promise<Record<string, HostTensor>> {
  return (await runOrtMixed(session, feeds, fetches)).host;
}

/**
 * Runs a session. Outputs named in `keep` come back as DeviceTensors (in device memory when the
 * session was created with them as deviceOutputs on a GPU provider), the others as host tensors.
 * `stats` counts the bytes of host inputs (uploaded) and of host outputs (downloaded).
 */
export async function runOrtMixed(
  session: ort.InferenceSession,
  feeds: Record<string, Feed>,
  fetches?: readonly string[],
  keep: ReadonlySet<string> = new Set(),
  stats?: TransferStats,
): Promise<{ host: Record<string, HostTensor>; device: Record<string, DeviceTensor> }> {
  const f: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(feeds)) {
    if (v instanceof DeviceTensor) {
      f[k] = v.ort;
      if (stats && !v.onDevice) stats.toDevice += v.byteLength;
    } else {
      f[k] = toOrt(v);
      if (stats) stats.toDevice += v.data.byteLength;
    }
  }
  const out = fetches ? await session.run(f, fetches as string[]) : await session.run(f);
  const host: Record<string, HostTensor> = {};
  const device: Record<string, DeviceTensor> = {};
  for (const [k, v] of Object.entries(out)) {
    if (v.location === 'gpu-buffer' || keep.has(k)) {
      const t = new DeviceTensor(v, dtypeOf(v));
      device[k] = t;
      if (stats && !t.onDevice) stats.toHost += t.byteLength;
    } else {
      host[k] = fromOrt(v);
      if (stats) stats.toHost += host[k].data.byteLength;
    }
  }
  if (stats) stats.runs++;
  return { host, device };
}

function dtypeOf(t: ort.Tensor): DType {
  const dtype = (Object.keys(ortType) as DType[]).find((k) => ortType[k] === t.type);
  if (!dtype) throw new Error(`ONNX Runtime returned a tensor of unsupported type ${t.type}`);
  return dtype;
}

/** Ends a profiling session's recording; the profile is the newest file starting with its prefix. */
export function endOrtProfiling(session: ort.InferenceSession): void {
  (session as unknown as { endProfiling(): void }).endProfiling();
}

/**
 * A reason why a provider cannot load here, found without trying it (trying prints native errors to
 * stderr): the CUDA provider library not installed next to the binding, or no Vulkan loader for
 * WebGPU on Linux. undefined = go ahead and probe.
 */
export function missingNativeLibrary(provider: string): string | undefined {
  if (process.platform !== 'linux') return undefined;
  if (provider === 'cuda') {
    let dir: string;
    try {
      dir = join(dirname(require.resolve('onnxruntime-node/package.json')), 'bin', 'napi-v6', 'linux', process.arch);
    } catch {
      return undefined;
    }
    if (!existsSync(join(dir, 'libonnxruntime_providers_cuda.so'))) {
      return 'the CUDA provider is not installed (reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12; needs CUDA 12 and cuDNN 9)';
    }
  }
  if (provider === 'webgpu') {
    const libDirs = [
      '/usr/lib/x86_64-linux-gnu',
      '/usr/lib/aarch64-linux-gnu',
      '/usr/lib64',
      '/usr/lib',
      '/lib/x86_64-linux-gnu',
      '/usr/local/lib',
    ];
    if (!libDirs.some((d) => existsSync(join(d, 'libvulkan.so.1'))))
      return 'no Vulkan loader (libvulkan.so.1) found; install it (e.g. apt install libvulkan1) and a GPU driver';
  }
  return undefined;
}

/** Providers this build of onnxruntime-node can load on this platform (not yet probed). */
export function listedProviders(): string[] {
  const names = new Set<string>(['cpu']);
  const list = (ort as unknown as { listSupportedBackends?: () => { name: string }[] }).listSupportedBackends?.() ?? [];
  for (const b of list) names.add(b.name === 'dml' ? 'dml' : b.name);
  return [...names];
}

export const ortVersion = (): string =>
  (ort.env as unknown as { versions?: { node?: string } }).versions?.node ?? 'unknown';
