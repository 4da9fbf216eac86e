// Sessions from built graphs, on a verified provider, cached by graph hash.
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Graph } from '../graph/graph';
import { bytesOf } from '../graph/dtype';
import { graphHash, serializeModel, writeModel } from '../graph/onnx';
import { createOrtSession, runOrt, type HostTensor, type OrtSession } from './ort';
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

export class Session {
  constructor(
    private readonly ort: OrtSession,
    readonly hash: string,
    readonly provider: Provider,
  ) {}

  get inputNames(): readonly string[] {
    return this.ort.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.ort.outputNames;
  }

  /** Runs the graph. Inputs are passed without copying; every output is copied into a new buffer. */
  run(feeds: Record<string, HostTensor>, fetches?: readonly string[]): Promise<Record<string, HostTensor>> {
    return runOrt(this.ort, feeds, fetches);
  }

  release(): Promise<void> {
    return this.ort.release();
  }
}

export class Backend {
  private readonly cache = new Map<string, Promise<Session>>();

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

  /** A session for the graph, shared with any earlier graph of the same hash. */
  session(graph: Graph): Promise<Session> {
    const hash = graphHash(graph);
    let s = this.cache.get(hash);
    if (!s) {
      s = this.createSession(graph, hash);
      this.cache.set(hash, s);
      s.catch(() => this.cache.delete(hash));
    }
    return s;
  }

  private async createSession(graph: Graph, hash: string): Promise<Session> {
    const weightBytes = graph.initializers.reduce((n, i) => n + bytesOf(i.data).byteLength, 0);
    const base = { provider: this.provider, deviceId: this.opts.deviceId, intraOpThreads: this.opts.threads ?? 0, optimization: this.opts.optimization };
    let ortSession: OrtSession;
    try {
      if (weightBytes > (this.opts.fileThreshold ?? 16 * 2 ** 20)) {
        // Through a file with external data: ONNX Runtime maps the weights instead of copying a buffer.
        const dir = this.opts.cacheDir ?? join(tmpdir(), `docdistill-graphs-${process.getuid?.() ?? 'user'}`);
        mkdirSync(dir, { recursive: true });
        const path = join(dir, `${hash}.onnx`);
        if (!existsSync(path)) writeModel(graph, path);
        ortSession = await createOrtSession(path, base);
      } else {
        ortSession = await createOrtSession(serializeModel(graph).model, base);
      }
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new Error(`ONNX Runtime could not load graph '${graph.name}' (${graph.nodes.length} nodes) on ${this.provider}: ${msg}`);
    }
    return new Session(ortSession, hash, this.provider);
  }

  async dispose(): Promise<void> {
    const all = [...this.cache.values()];
    this.cache.clear();
    await Promise.allSettled(all.map(async (p) => (await p).release()));
  }
}
