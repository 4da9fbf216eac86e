// Sessions from built graphs, on a verified provider, cached by graph hash.
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { arch, cpus, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Graph } from '../graph/graph';
import { bytesOf } from '../graph/dtype';
import { graphHash, serializeModel, writeModel } from '../graph/onnx';
import {
  createOrtSession,
  endOrtProfiling,
  runOrtMixed,
  type DeviceTensor,
  type Feed,
  type HostTensor,
  type OrtSession,
  type TransferStats,
  ortVersion,
} from './ort';
import { placementFromProfile, type Placement } from './placement';
import { describeResolution, resolveProvider, type ProbeResult, type Provider, type ProviderChoice } from './providers';

export interface BackendOptions {
  device?: ProviderChoice;
  deviceId?: number;
  /** Intra-op threads (0 = ONNX Runtime's default: one per physical core). */
  threads?: number;
  /** Where graphs with large weights are written as .onnx + .onnx.data (content-addressed). */
  cacheDir?: string;
  /** Graphs whose initializers total more than this many bytes go through a file (default 16 MB). */
  fileThreshold?: number;
  /**
   * ONNX Runtime's graph optimisation level. 'all' fuses patterns into contrib ops; some of those
   * (e.g. QuickGelu from x·sigmoid(x)) have float32 kernels only, so float64 and some float16
   * graphs need 'basic'.
   */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

export interface SessionOptions {
  /**
   * On the CPU, for a graph reading a weight pack: keep ONNX Runtime's optimized graph and its
   * pre-packed weights on disk beside the pack (see optimizedSession), so that the next process
   * maps them instead of optimizing and packing again. For long-lived inference graphs (the
   * score and step graphs); a train graph changes with every LoRA shape and is not worth the disk.
   */
  reuseOptimized?: boolean;
  /**
   * Outputs to leave in device memory on a GPU provider (the KV cache, the adapter), returned by
   * runMixed() as DeviceTensors for the next run; on the CPU they stay where they are anyway.
   */
  deviceOutputs?: readonly string[];
  /**
   * For graphs run on many rows at once (train steps, the teacher's passes over whole passages):
   * on the CPU, the MatMul/Gemm weights are read from the mapped pack as they are stored, with no
   * pre-packed copy on the heap, and memory goes back to the system after each run (no arena).
   * Over hundreds of rows a product repacks its weight panels as it goes at a cost of a few per
   * cent; a pre-packed copy would double the weights in memory (the forward MatMul and the
   * backward Gemm each pack their own) and take tens of seconds to build. Measured at the
   * qwen2.5-0.5b shape, a LoRA KL step (b8, teacher 384 / student 64): peak RSS 10.1 → 6.9 GB,
   * first step 60 → 44 s, later steps unchanged (26–28 s). With a quantized base MatMulNBits is
   * then not pre-packed either, which costs speed: int8 at that shape, 25.4 s/step and 6.5 GB
   * against 18.4 s and 7.6 GB pre-packed (more than float32's 7.2 GB, since the float head is packed
   * too); a quantized base is chosen for its memory, so it stays lean.
   */
  manyRows?: boolean;
}

export class Session {
  private readonly keep: ReadonlySet<string>;

  constructor(
    private readonly ort: OrtSession,
    readonly hash: string,
    readonly provider: Provider,
    /** Host↔device traffic, counted on GPU providers only (on the CPU nothing crosses). */
    private readonly stats: TransferStats | undefined,
    deviceOutputs: readonly string[] = [],
  ) {
    this.keep = new Set(deviceOutputs);
  }

  get inputNames(): readonly string[] {
    return this.ort.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.ort.outputNames;
  }

  /** Runs the graph. Inputs are passed without copying; every output is copied into a new buffer. */
  async run(feeds: Record<string, Feed>, fetches?: readonly string[]): Promise<Record<string, HostTensor>> {
    const r = await runOrtMixed(this.ort, feeds, fetches, new Set(), this.stats);
    for (const t of Object.values(r.device)) t.dispose();
    if (Object.keys(r.device).length)
      throw new Error('Session.run: this session keeps outputs on the device; use runMixed()');
    return r.host;
  }

  /** Runs the graph; the session's deviceOutputs come back as DeviceTensors, the rest as host tensors. */
  runMixed(
    feeds: Record<string, Feed>,
    fetches?: readonly string[],
  ): Promise<{ host: Record<string, HostTensor>; device: Record<string, DeviceTensor> }> {
    return runOrtMixed(this.ort, feeds, fetches, this.keep, this.stats);
  }

  release(): Promise<void> {
    return this.ort.release();
  }
}

/**
 * Operators each provider lacks a kernel for, written as simpler ones for it (graph/onnx.ts
 * LOWERINGS), so that they do not fall back to the CPU in the middle of a device graph.
 */
const LOWER: Partial<Record<Provider, readonly string[]>> = { webgpu: ['LogSoftmax', 'ConstantOfShape'] };

export class Backend {
  private readonly cache = new Map<string, Promise<Session>>();
  /** Bytes that crossed host↔device through session inputs and outputs (GPU providers only). */
  readonly transfers: TransferStats = { toDevice: 0, toHost: 0, runs: 0 };

  private constructor(
    readonly provider: Provider,
    readonly tried: readonly ProbeResult[],
    private readonly opts: BackendOptions,
  ) {}

  static async create(opts: BackendOptions = {}): Promise<Backend> {
    const { provider, tried } = await resolveProvider(opts.device ?? 'auto', opts.deviceId);
    return new Backend(provider, tried, opts);
  }

  /** For the log: the device chosen and why each other candidate was not. */
  describeDevice(): string {
    return describeResolution(this.opts.device ?? 'auto', { provider: this.provider, tried: [...this.tried] });
  }

  /** A session for the graph, shared with any earlier graph of the same hash (and options). */
  session(graph: Graph, o: SessionOptions = {}): Promise<Session> {
    const hash = graphHash(graph, undefined, LOWER[this.provider]);
    const key = `${hash}${o.deviceOutputs?.length ? `|dev:${o.deviceOutputs.join(',')}` : ''}${o.manyRows ? '|rows' : ''}`;
    let s = this.cache.get(key);
    if (!s) {
      s = this.createSession(graph, hash, o);
      this.cache.set(key, s);
      s.catch(() => this.cache.delete(key));
    }
    return s;
  }

  private modelPathOrBytes(graph: Graph, hash: string): string | Uint8Array {
    const weightBytes = graph.initializers.reduce((n, i) => n + bytesOf(i.data).byteLength, 0);
    const lower = LOWER[this.provider];
    // A graph reading a weight pack is written beside it (external data is found relative to the
    // model file), where the next process finds it by its hash and skips building the file.
    const packed = graph.initializers.find((i) => i.external)?.external;
    if (!packed && weightBytes <= (this.opts.fileThreshold ?? 16 * 2 ** 20))
      return serializeModel(graph, { lower }).model;
    // Through a file with external data: ONNX Runtime maps the weights instead of copying a buffer.
    const dir = packed
      ? dirname(packed.path)
      : (this.opts.cacheDir ?? join(tmpdir(), `docdistill-graphs-${process.getuid?.() ?? 'user'}`));
    mkdirSync(dir, { recursive: true });
    // Named after the pack too, so that the pack's pruning takes its graphs along.
    const path = join(dir, packed ? `${basename(packed.path).replace(/\.weights$/, '')}.${hash}.onnx` : `${hash}.onnx`);
    if (!existsSync(path)) writeModel(graph, path, { lower });
    return path;
  }

  private baseOptions() {
    return {
      provider: this.provider,
      deviceId: this.opts.deviceId,
      intraOpThreads: this.opts.threads ?? 0,
      optimization: this.opts.optimization,
    };
  }

  private async createSession(graph: Graph, hash: string, o: SessionOptions): Promise<Session> {
    let ortSession: OrtSession;
    try {
      const model = this.modelPathOrBytes(graph, hash);
      const packed = typeof model === 'string' && graph.initializers.some((i) => i.external);
      // Not for quantized graphs: ONNX Runtime 1.30 crashes (SIGSEGV) creating a session from a
      // saved graph with MatMulNBits' pre-packed weights.
      const reusable =
        packed &&
        this.provider === 'cpu' &&
        process.env.DOCDISTILL_OPTIMIZED_CACHE !== '0' &&
        !graph.nodes.some((n) => n.op === 'MatMulNBits');
      ortSession =
        (o.reuseOptimized && reusable && (await this.optimizedSession(model))) ||
        (await createOrtSession(model, {
          ...this.baseOptions(),
          deviceOutputs: o.deviceOutputs,
          ...(o.manyRows && this.provider === 'cpu' ? { prepack: false, arena: false } : {}),
        }));
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(
        `ONNX Runtime could not load graph '${graph.name}' (${graph.nodes.length} nodes) on ${this.provider}: ${msg}`,
      );
    }
    return new Session(
      ortSession,
      hash,
      this.provider,
      this.provider === 'cpu' ? undefined : this.transfers,
      o.deviceOutputs,
    );
  }

  /**
   * A CPU session from ONNX Runtime's own optimized copy of the graph at `path`, kept beside it:
   * `<graph>.opt-<key>.onnx`, `.data` (every initializer, plus the pre-packed MatMul weights
   * that ORT otherwise rebuilds on the heap at every session creation: seconds of work and a second
   * copy of the weights in memory). The first time, the session is created once to write them (in
   * a temporary folder, then renamed into place: a killed process leaves no half-written copy);
   * every time, the session is created from the copy with optimizations off and the packed weights
   * mapped from the file. The key covers what the optimized graph depends on: the ONNX Runtime
   * version and the CPU (its optimizer may pick kernels for this CPU's instruction set). Without
   * room for the copy (twice the graph's weights, and 1 GiB to spare), returns undefined and the
   * caller creates a plain session.
   */
  private async optimizedSession(path: string): Promise<OrtSession | undefined> {
    const key = createHash('sha256')
      .update(`${ortVersion()}|${cpus()[0]?.model ?? ''}|${arch()}|${this.opts.optimization ?? 'all'}|1`)
      .digest('hex')
      .slice(0, 10);
    const stem = path.replace(/\.onnx$/, '');
    const opt = `${stem}.opt-${key}.onnx`;
    const data = `${stem}.opt-${key}.data`;
    // Written last, with the sizes: a copy whose files do not match it is not mapped (ONNX Runtime
    // would read past the end of a truncated data file).
    const manifest = `${stem}.opt-${key}.json`;
    const sizes = () => ({ onnx: statSync(opt).size, data: statSync(data).size });
    const load = () => createOrtSession(opt, { ...this.baseOptions(), optimization: 'disabled' });
    if (existsSync(manifest) && existsSync(opt) && existsSync(data)) {
      try {
        const want = JSON.parse(readFileSync(manifest, 'utf8')) as { onnx: number; data: number };
        const got = sizes();
        if (want.onnx === got.onnx && want.data === got.data) return await load();
      } catch {
        // Unreadable or refused by ONNX Runtime: written again below.
      }
    }
    for (const f of [manifest, opt, data]) rmSync(f, { force: true });
    const dir = dirname(path);
    const weightBytes = externalBytes(path);
    try {
      const { bavail, bsize } = statfsSync(dir);
      if (bavail * bsize < 2 * weightBytes + 2 ** 30) return undefined;
    } catch {
      return undefined;
    }
    // Older keys of this graph (another ONNX Runtime version, another CPU) go first.
    for (const f of readdirSync(dir))
      if (f.startsWith(`${basename(stem)}.opt-`) && !f.startsWith(basename(`${stem}.opt-${key}.`)))
        rmSync(join(dir, f), { force: true });
    const tmp = mkdtempSync(join(dir, '.tmp-opt-'));
    try {
      const first = await createOrtSession(path, { ...this.baseOptions(), saveOptimizedTo: join(tmp, basename(opt)) });
      await first.release();
      renameSync(join(tmp, basename(data)), data);
      renameSync(join(tmp, basename(opt)), opt);
      writeFileSync(join(tmp, 'manifest'), JSON.stringify(sizes()));
      renameSync(join(tmp, 'manifest'), manifest);
    } catch {
      // Out of room while writing, or this graph cannot be serialized: a plain session will do.
      return undefined;
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    return load();
  }

  /**
   * Copies host tensors to the device once, for feeding to many runs (on the CPU they are wrapped
   * as they are). Through an Identity graph whose outputs stay on the device.
   */
  async upload(tensors: Record<string, HostTensor>): Promise<Record<string, DeviceTensor>> {
    const names = Object.keys(tensors).sort();
    if (names.length === 0) return {};
    const s = await this.session(identityGraph('upload', names, tensors), {
      deviceOutputs: names.map((_, i) => `out${i}`),
    });
    const r = await s.runMixed(Object.fromEntries(names.map((n, i) => [`in${i}`, tensors[n]!])));
    return Object.fromEntries(names.map((n, i) => [n, r.device[`out${i}`]!]));
  }

  /**
   * Copies device tensors to host memory (the other way from upload(); onnxruntime-node cannot read
   * a GPU buffer itself), through an Identity graph whose outputs come back to the host.
   */
  async download(tensors: Record<string, DeviceTensor>): Promise<Record<string, HostTensor>> {
    const names = Object.keys(tensors).sort();
    if (names.length === 0) return {};
    const s = await this.session(identityGraph('download', names, tensors));
    const r = await s.run(Object.fromEntries(names.map((n, i) => [`in${i}`, tensors[n]!])));
    return Object.fromEntries(names.map((n, i) => [n, r[`out${i}`]!]));
  }

  /**
   * Where each node of a graph runs on this backend: one profiled run with the given feeds (a
   * separate, uncached session), nodes grouped by provider and operator.
   */
  async placement(graph: Graph, feeds: Record<string, Feed>, o: SessionOptions = {}): Promise<Placement> {
    const dir = mkdtempSync(join(tmpdir(), 'docdistill-profile-'));
    try {
      const s = await createOrtSession(
        this.modelPathOrBytes(graph, graphHash(graph, undefined, LOWER[this.provider])),
        { ...this.baseOptions(), deviceOutputs: o.deviceOutputs, profilePrefix: join(dir, 'p') },
      );
      try {
        const r = await runOrtMixed(s, feeds, undefined, new Set(o.deviceOutputs ?? []));
        for (const t of Object.values(r.device)) t.dispose();
        endOrtProfiling(s);
      } finally {
        await s.release();
      }
      const file = readdirSync(dir).find((f) => f.endsWith('.json'));
      if (!file) throw new Error(`ONNX Runtime wrote no profile into ${dir}`);
      return placementFromProfile(graph.name, JSON.parse(readFileSync(join(dir, file), 'utf8')) as unknown[]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Releases one session now (its memory: weights pre-packed for it, its arena) and forgets it. */
  async release(session: Session): Promise<void> {
    for (const [key, p] of this.cache) {
      if ((await p.catch(() => undefined)) !== session) continue;
      this.cache.delete(key);
      await session.release();
      return;
    }
  }

  async dispose(): Promise<void> {
    const all = [...this.cache.values()];
    this.cache.clear();
    await Promise.allSettled(all.map(async (p) => (await p).release()));
  }
}

/** in<i> → out<i> for each of `names` (sorted), with the tensors' dtypes and symbolic dims. */
function identityGraph(
  name: string,
  names: readonly string[],
  tensors: Record<string, { dtype: HostTensor['dtype']; dims: readonly number[] }>,
): Graph {
  const g = new Graph(name);
  names.forEach((n, i) => {
    const t = tensors[n]!;
    g.output(
      g.input(
        `in${i}`,
        t.dtype,
        t.dims.map((_, d) => `d${i}_${d}`),
      ),
      `out${i}`,
    );
  });
  return g;
}

/** Bytes of the files a graph's external data lives in (its weight pack): what its optimized copy will hold. */
function externalBytes(onnxPath: string): number {
  const dir = dirname(onnxPath);
  const pack = join(dir, `${basename(onnxPath).split('.')[0]}.weights`);
  return existsSync(pack) ? statSync(pack).size : statSync(onnxPath).size;
}
