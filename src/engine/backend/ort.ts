// The one place that imports onnxruntime-node. Everything else in the engine talks to ONNX
// Runtime through the types and functions here.
import * as ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { DType, TypedData } from '../graph/dtype';

export type OrtTensor = ort.Tensor;
export type OrtSession = ort.InferenceSession;

export interface HostTensor {
  dtype: DType;
  dims: readonly number[];
  data: TypedData;
}

const ortType: Record<DType, ort.Tensor.Type> = {
  float32: 'float32', float64: 'float64', float16: 'float16', bfloat16: 'bfloat16' as ort.Tensor.Type, int64: 'int64', int32: 'int32', bool: 'bool', uint8: 'uint8',
};

/** Wraps host memory as an ORT tensor without copying. */
export function toOrt(t: HostTensor): ort.Tensor {
  return new ort.Tensor(ortType[t.dtype], t.data as never, t.dims as number[]);
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
}

function ortProvider(name: string, deviceId?: number): ort.InferenceSession.ExecutionProviderConfig {
  switch (name) {
    case 'cpu': return 'cpu';
    case 'cuda': return { name: 'cuda', deviceId: deviceId ?? 0 };
    case 'dml': return { name: 'dml', deviceId: deviceId ?? 0 } as ort.InferenceSession.ExecutionProviderConfig;
    case 'coreml': return { name: 'coreml' } as ort.InferenceSession.ExecutionProviderConfig;
    case 'webgpu': return { name: 'webgpu' } as ort.InferenceSession.ExecutionProviderConfig;
    default: throw new Error(`unknown execution provider '${name}'`);
  }
}

/**
 * Creates a session on exactly one execution provider. ONNX Runtime does not fall back when a
 * provider's library is missing (create throws), so fallback is the caller's job.
 */
export async function createOrtSession(model: string | Uint8Array, o: SessionCreateOptions): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [ortProvider(o.provider, o.deviceId)],
    graphOptimizationLevel: o.optimization ?? 'all',
    intraOpNumThreads: o.intraOpThreads ?? 0,
    interOpNumThreads: o.interOpThreads ?? 1,
    executionMode: 'sequential',
    logSeverityLevel: ({ verbose: 0, info: 1, warning: 2, error: 3, fatal: 4 } as const)[o.logLevel ?? 'error'],
  };
  return typeof model === 'string' ? ort.InferenceSession.create(model, options) : ort.InferenceSession.create(model, options);
}

export async function runOrt(session: ort.InferenceSession, feeds: Record<string, HostTensor>, fetches?: readonly string[]): Promise<Record<string, HostTensor>> {
  const f: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(feeds)) f[k] = toOrt(v);
  const out = fetches ? await session.run(f, fetches as string[]) : await session.run(f);
  const res: Record<string, HostTensor> = {};
  for (const [k, v] of Object.entries(out)) res[k] = fromOrt(v);
  return res;
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
    const libDirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', '/usr/local/lib'];
    if (!libDirs.some((d) => existsSync(join(d, 'libvulkan.so.1')))) return 'no Vulkan loader (libvulkan.so.1) found; install it (e.g. apt install libvulkan1) and a GPU driver';
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

export const ortVersion = (): string => (ort.env as unknown as { versions?: { node?: string } }).versions?.node ?? 'unknown';
