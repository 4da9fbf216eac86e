// Node placement from an ONNX Runtime profile: which execution provider ran each node of a graph,
// and the copies (Memcpy nodes) that ONNX Runtime inserted where a CPU node sits between device
// nodes. A node that falls back to the CPU inside a per-token or per-step graph costs a device→host
// and a host→device copy every run, which is what the GPU tests look for.

export interface OpStats {
  count: number;
  /** Kernel time of the profiled run, µs. */
  us: number;
  /** Bytes of the outputs of these nodes in the profiled run. */
  outBytes: number;
}

export interface Placement {
  graph: string;
  nodes: number;
  /** provider (e.g. WebGpuExecutionProvider, CPUExecutionProvider) → operator → stats */
  byProvider: Record<string, Record<string, OpStats>>;
  /** Nodes on the CPU provider, by name (excluding ONNX Runtime's own Memcpy nodes), with their output types. */
  cpuNodes: { name: string; op: string; outBytes: number; inTypes: string[]; types: string[] }[];
  /** ONNX Runtime's Memcpy nodes: host↔device copies inside the graph. */
  copies: { op: string; count: number; bytes: number };
}

interface ProfileEvent {
  cat?: string;
  name?: string;
  dur?: number;
  args?: {
    op_name?: string;
    provider?: string;
    output_size?: string;
    output_type_shape?: Record<string, unknown>[];
    input_type_shape?: Record<string, unknown>[];
  };
}

export function placementFromProfile(graph: string, events: unknown[]): Placement {
  const p: Placement = { graph, nodes: 0, byProvider: {}, cpuNodes: [], copies: { op: 'Memcpy', count: 0, bytes: 0 } };
  for (const raw of events) {
    const e = raw as ProfileEvent;
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !e.args?.provider) continue;
    const op = e.args.op_name ?? '?';
    const provider = e.args.provider;
    const outBytes = Number(e.args.output_size ?? 0);
    p.nodes++;
    const ops = (p.byProvider[provider] ??= {});
    const s = (ops[op] ??= { count: 0, us: 0, outBytes: 0 });
    s.count++;
    s.us += e.dur ?? 0;
    s.outBytes += outBytes;
    if (op.startsWith('Memcpy')) {
      p.copies.count++;
      p.copies.bytes += outBytes;
    } else if (provider === 'CPUExecutionProvider') {
      const types = (e.args.output_type_shape ?? []).flatMap((o) => Object.keys(o));
      const inTypes = (e.args.input_type_shape ?? []).flatMap((o) => Object.keys(o));
      p.cpuNodes.push({ name: e.name.slice(0, -'_kernel_time'.length), op, outBytes, inTypes, types });
    }
  }
  return p;
}

/** A few lines for a report: nodes per provider, the CPU operators, and the copies. */
export function formatPlacement(p: Placement): string {
  const lines = [`${p.graph}: ${p.nodes} nodes run`];
  for (const [prov, ops] of Object.entries(p.byProvider)) {
    const n = Object.values(ops).reduce((a, s) => a + s.count, 0);
    const list = Object.entries(ops)
      .sort((a, b) => b[1].count - a[1].count)
      .map(([op, s]) => `${op}×${s.count}`)
      .join(' ');
    lines.push(`  ${prov}: ${n} nodes (${list})`);
  }
  lines.push(`  copies inside the graph (Memcpy nodes): ${p.copies.count}, ${p.copies.bytes} bytes`);
  return lines.join('\n');
}
