// Execution-provider choice with verified fallback: a provider counts only after a probe graph
// returns the right numbers on it.
import { Graph, op } from '../graph';
import { serializeModel } from '../graph/onnx';
import { createOrtSession, listedProviders, missingNativeLibrary, runOrt } from './ort';

export const PROVIDERS = ['cpu', 'webgpu', 'cuda', 'dml', 'coreml'] as const;
export type Provider = (typeof PROVIDERS)[number];
export type ProviderChoice = Provider | 'auto';

/** Order tried by `auto`: dedicated GPU runtimes first, then WebGPU, then the CPU. */
export function autoOrder(platform: NodeJS.Platform = process.platform): Provider[] {
  if (platform === 'win32') return ['cuda', 'dml', 'webgpu', 'cpu'];
  if (platform === 'darwin') return ['coreml', 'webgpu', 'cpu'];
  return ['cuda', 'webgpu', 'cpu'];
}

export interface ProbeResult {
  provider: Provider;
  ok: boolean;
  reason?: string;
  maxError?: number;
}

export class NoProviderError extends Error {
  override name = 'NoProviderError';
  constructor(readonly tried: ProbeResult[]) {
    super(
      `no execution provider works: ${tried.map((t) => `${t.provider}: ${t.reason}`).join('; ')}. ` +
        `Set the device to "cpu", or install the GPU runtime (see README, "GPU").`,
    );
  }
}

/** y = softmax(x @ w + b) on a fixed 4×8 @ 8×4 problem, with the answer computed in float64. */
function probeProblem() {
  const x = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i * 0.7) * 0.9);
  const w = Float32Array.from({ length: 32 }, (_, i) => Math.cos(i * 1.3) * 0.5);
  const b = Float32Array.from({ length: 4 }, (_, i) => 0.1 * (i - 1.5));
  const expected = new Float64Array(16);
  for (let r = 0; r < 4; r++) {
    const z: number[] = [];
    for (let c = 0; c < 4; c++) {
      let s = b[c]!;
      for (let k = 0; k < 8; k++) s += x[r * 8 + k]! * w[k * 4 + c]!;
      z.push(s);
    }
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const sum = e.reduce((p, q) => p + q, 0);
    e.forEach((v, c) => (expected[r * 4 + c] = v / sum));
  }
  const g = new Graph('probe');
  const xi = g.input('x', 'float32', [4, 8]);
  const wi = g.input('w', 'float32', [8, 4]);
  const bi = g.input('b', 'float32', [4]);
  g.output(op.softmax(op.add(op.matmul(xi, wi), bi), -1), 'y');
  return { model: serializeModel(g).model, x, w, b, expected };
}

export async function probeProvider(provider: Provider, deviceId?: number): Promise<ProbeResult> {
  if (!listedProviders().includes(provider)) {
    return { provider, ok: false, reason: 'not included in this onnxruntime-node build for ' + `${process.platform}-${process.arch}` };
  }
  const missing = missingNativeLibrary(provider);
  if (missing) return { provider, ok: false, reason: missing };
  try {
    const p = probeProblem();
    const s = await createOrtSession(p.model, { provider, deviceId, intraOpThreads: 1 });
    try {
      const out = await runOrt(s, {
        x: { dtype: 'float32', dims: [4, 8], data: p.x },
        w: { dtype: 'float32', dims: [8, 4], data: p.w },
        b: { dtype: 'float32', dims: [4], data: p.b },
      });
      const y = out.y!.data as Float32Array;
      let maxError = 0;
      for (let i = 0; i < 16; i++) maxError = Math.max(maxError, Math.abs(y[i]! - p.expected[i]!));
      if (!(maxError < 1e-3)) return { provider, ok: false, reason: `probe returned wrong numbers (max error ${maxError})`, maxError };
      return { provider, ok: true, maxError };
    } finally {
      await s.release();
    }
  } catch (e) {
    return { provider, ok: false, reason: firstLine(e) };
  }
}

const firstLine = (e: unknown): string => String(e instanceof Error ? e.message : e).split('\n')[0]!.slice(0, 300);

const chosen = new Map<string, Promise<{ provider: Provider; tried: ProbeResult[] }>>();

/**
 * Resolves a device setting to a working provider: `auto` tries autoOrder() in turn; a named
 * provider must pass its probe. Cached per choice for the life of the process.
 */
export function resolveProvider(choice: ProviderChoice, deviceId?: number): Promise<{ provider: Provider; tried: ProbeResult[] }> {
  const key = `${choice}:${deviceId ?? 0}`;
  let p = chosen.get(key);
  if (!p) {
    p = (async () => {
      const order = choice === 'auto' ? autoOrder() : [choice];
      const tried: ProbeResult[] = [];
      for (const prov of order) {
        const r = await probeProvider(prov, deviceId);
        tried.push(r);
        if (r.ok) return { provider: prov, tried };
      }
      throw new NoProviderError(tried);
    })();
    chosen.set(key, p);
    p.catch(() => chosen.delete(key));
  }
  return p;
}
