// Execution-provider choice with verified fallback: a provider counts only after a probe graph
// returns the right numbers on it.
import { Graph, op } from '../graph';
import { serializeModel } from '../graph/onnx';
import { createOrtSession, listedProviders, missingNativeLibrary, runOrt } from './ort';

export const PROVIDERS = ['cpu', 'webgpu', 'cuda', 'dml', 'coreml'] as const;
export type Provider = (typeof PROVIDERS)[number];
export type ProviderChoice = Provider | 'auto';

/**
 * Order tried by `auto`: dedicated GPU runtimes first, then WebGPU, then the CPU. Each accelerator
 * must also beat the CPU on the speed probe (resolveProvider).
 */
export function autoOrder(platform: NodeJS.Platform = process.platform): Provider[] {
  if (platform === 'win32') return ['cuda', 'dml', 'webgpu', 'cpu'];
  if (platform === 'darwin') return ['coreml', 'webgpu', 'cpu'];
  return ['cuda', 'webgpu', 'cpu'];
}

export interface ProbeResult {
  provider: Provider;
  ok: boolean;
  /** Why it was not chosen (or cannot be used). */
  reason?: string;
  maxError?: number;
  /** `auto` only: the speed probe's median time on this provider and on the CPU (ms). */
  probeMs?: number;
  cpuProbeMs?: number;
  /** `auto` only: why it was fast enough to choose. */
  speed?: string;
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
    return {
      provider,
      ok: false,
      reason: 'not included in this onnxruntime-node build for ' + `${process.platform}-${process.arch}`,
    };
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
      if (!(maxError < 1e-3))
        return { provider, ok: false, reason: `probe returned wrong numbers (max error ${maxError})`, maxError };
      return { provider, ok: true, maxError };
    } finally {
      await s.release();
    }
  } catch (e) {
    return { provider, ok: false, reason: firstLine(e) };
  }
}

const firstLine = (e: unknown): string =>
  String(e instanceof Error ? e.message : e)
    .split('\n')[0]!
    .slice(0, 300);

/**
 * The speed probe: a MatMul of the shape of a small model's projection over a short batch of
 * tokens, x [64, 1024] @ w [1024, 1024] (134 MFLOP), the weight resident as an initializer as
 * model weights are. A real GPU does it in well under a millisecond, 2 CPU cores in 1–3 ms, a
 * software adapter (llvmpipe, WARP, SwiftShader) in tens of milliseconds.
 */
export const SPEED_PROBE = { M: 64, K: 1024, N: 1024 } as const;

function speedProbeProblem() {
  const { M, K, N } = SPEED_PROBE;
  const g = new Graph('speed_probe');
  const x = g.input('x', 'float32', [M, K]);
  const w = g.initializer(
    'w',
    'float32',
    [K, N],
    Float32Array.from({ length: K * N }, (_, i) => Math.sin(i * 0.37) * 0.03),
  );
  g.output(op.matmul(x, w), 'y');
  const xs = Float32Array.from({ length: M * K }, (_, i) => Math.cos(i * 0.11));
  return { model: serializeModel(g).model, x: xs };
}

/** Median wall time (ms) of the speed probe on a provider, after warm-up runs (shader compilation). */
export async function timeSpeedProbe(provider: Provider, deviceId?: number, runs = 5): Promise<number> {
  const p = speedProbeProblem();
  const s = await createOrtSession(p.model, { provider, deviceId, intraOpThreads: 0 });
  try {
    const feeds = { x: { dtype: 'float32' as const, dims: [SPEED_PROBE.M, SPEED_PROBE.K], data: p.x } };
    for (let i = 0; i < 2; i++) await runOrt(s, feeds);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await runOrt(s, feeds);
      times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
  } finally {
    await s.release();
  }
}

/**
 * `auto` takes an accelerator only when it beats the CPU on the speed probe. A software adapter
 * (Mesa's llvmpipe/lavapipe, Windows' WARP / Microsoft Basic Render Driver, SwiftShader) passes the
 * correctness probe, so names and correctness alone would pick it and make everything 3–20× slower.
 * ONNX Runtime's Node binding exposes no adapter name or type, so the decision rests on the timing.
 */
export function judgeSpeed(provider: Provider, ms: number, cpuMs: number): { ok: boolean; reason?: string } {
  const ratio = ms / cpuMs;
  const figures = `${fmtMs(ms)} against ${fmtMs(cpuMs)} for a ${SPEED_PROBE.M}×${SPEED_PROBE.K} @ ${SPEED_PROBE.K}×${SPEED_PROBE.N} MatMul`;
  if (ratio <= 1)
    return { ok: true, reason: `${(1 / ratio).toFixed(1)}× faster than the CPU on the probe (${figures})` };
  return {
    ok: false,
    reason:
      `${ratio.toFixed(1)}× slower than the CPU on the probe (${figures}): a software adapter ` +
      `(llvmpipe, WARP, SwiftShader) or a GPU too weak to help; set the device to "${provider}" to use it anyway`,
  };
}

const fmtMs = (ms: number): string => (ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`);

export interface ProviderResolution {
  provider: Provider;
  tried: ProbeResult[];
}

/** One line for the log: the device chosen and why each other candidate was not. */
export function describeResolution(choice: ProviderChoice, r: ProviderResolution): string {
  const why = r.tried.find((t) => t.provider === r.provider)?.speed;
  const others = r.tried
    .filter((t) => t.provider !== r.provider)
    .map((t) => `${t.provider}: ${t.reason ?? 'not tried'}`);
  return `device ${r.provider} (setting: ${choice}${why ? `; ${why}` : ''})${others.length ? `; not chosen: ${others.join('; ')}` : ''}`;
}

const chosen = new Map<string, Promise<ProviderResolution>>();

/**
 * Resolves a device setting to a working provider: `auto` tries autoOrder() in turn and takes the
 * first accelerator that passes its probe and is faster than the CPU on the speed probe, else the
 * CPU; a named provider must pass its probe, however slow it is. Cached per choice for the life of
 * the process.
 */
export function resolveProvider(choice: ProviderChoice, deviceId?: number): Promise<ProviderResolution> {
  const key = `${choice}:${deviceId ?? 0}`;
  let p = chosen.get(key);
  if (!p) {
    p = (async () => {
      const order = choice === 'auto' ? autoOrder() : [choice];
      const tried: ProbeResult[] = [];
      let cpuMs: number | undefined;
      for (const prov of order) {
        const r = await probeProvider(prov, deviceId);
        tried.push(r);
        if (!r.ok) continue;
        if (choice === 'auto' && prov !== 'cpu') {
          try {
            cpuMs ??= await timeSpeedProbe('cpu');
            r.probeMs = await timeSpeedProbe(prov, deviceId);
            r.cpuProbeMs = cpuMs;
            const v = judgeSpeed(prov, r.probeMs, cpuMs);
            if (!v.ok) {
              r.ok = false;
              r.reason = v.reason;
              continue;
            }
            r.speed = v.reason;
          } catch (e) {
            r.ok = false;
            r.reason = `speed probe failed: ${firstLine(e)}`;
            continue;
          }
        }
        return { provider: prov, tried };
      }
      throw new NoProviderError(tried);
    })();
    chosen.set(key, p);
    p.catch(() => chosen.delete(key));
  }
  return p;
}
