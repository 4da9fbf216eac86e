// Logits of every supported architecture on the WebGPU provider against the PyTorch reference
// (the fixtures of test/unit/models/reference.test.ts): float32 within 1e-4 as on the CPU, and
// float16 compute within a bound set by float16's precision (see the note at the assertion).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Graph } from '../../src/engine/graph';
import { loadModelFolder } from '../../src/engine/models/folder';
import { LlamaGraphs } from '../../src/engine/models/llama';
import { PreparedWeights, type ComputeDtype } from '../../src/engine/models/weights';
import { fixtures, gpuBackend } from './gpu';

const MODELS = ['tiny-llama', 'tiny-llama-untied', 'tiny-llama3', 'tiny-qwen2', 'tiny-qwen3', 'tiny-mistral'];

interface Fixture {
  ids: number[][];
  attention_mask: number[][];
  positions: number[][];
  logits: (number[] | null)[][];
}

async function logits(name: string, dtype: ComputeDtype, fx: Fixture): Promise<Float32Array> {
  const folder = loadModelFolder(join(fixtures, 'models', name), { requireTokenizer: false });
  const graphs = new LlamaGraphs(
    folder.config,
    new PreparedWeights(folder.config, dtype, `gpu-ref-${name}`, folder.weights),
  );
  const g = new Graph(`gpu_ref_${name}_${dtype}`);
  const ids = g.input('ids', 'int64', ['B', 'T']);
  const mask = g.input('mask', 'int64', ['B', 'T']);
  const positions = g.input('positions', 'int64', ['B', 'T']);
  g.output(graphs.logits(g, graphs.decoder(g, { ids, mask, positions }).hidden), 'logits');
  const B = fx.ids.length;
  const T = fx.ids[0]!.length;
  const i64 = (a: number[][]) => ({
    dtype: 'int64' as const,
    dims: [B, T],
    data: BigInt64Array.from(a.flat(), (v) => BigInt(v)),
  });
  const out = await (
    await (await gpuBackend()).session(g)
  ).run({ ids: i64(fx.ids), mask: i64(fx.attention_mask), positions: i64(fx.positions) });
  folder.weights.close();
  return out.logits!.data as Float32Array;
}

for (const name of MODELS) {
  test(`WebGPU logits match the PyTorch reference: ${name}`, async () => {
    const fx = JSON.parse(readFileSync(join(fixtures, 'reference', `${name}.logits.json`), 'utf8')) as Fixture;
    const V = fx.logits[0]!.find((r) => r)!.length;
    const T = fx.ids[0]!.length;
    const worst: Record<string, number> = {};
    let scale = 0;
    for (const dtype of ['float32', 'float16'] as const) {
      const got = await logits(name, dtype, fx);
      let w = 0;
      fx.logits.forEach((row, b) =>
        row.forEach((ref, t) => {
          if (!ref) return; // padding
          for (let v = 0; v < V; v++) {
            w = Math.max(w, Math.abs(got[(b * T + t) * V + v]! - ref[v]!));
            scale = Math.max(scale, Math.abs(ref[v]!));
          }
        }),
      );
      worst[dtype] = w;
    }
    console.log(
      `${name} on webgpu: max |logit − reference| float32 ${worst.float32!.toExponential(2)}, float16 ${worst.float16!.toExponential(2)} (max |logit| ${scale.toFixed(2)})`,
    );
    assert.ok(worst.float32! < 1e-4, `float32 ${worst.float32}`);
    // float16 keeps 11 significant bits: a logit of 16 is stored to ±0.008 (half a unit in the last
    // place), and weights, activations and matmul outputs are rounded so through every layer (norms,
    // softmax and the rotary tables in float32). Measured here: 0.07–0.12, 0.5–0.7 % of the largest
    // logit. The bound, 2 % of it, leaves 2× headroom; a wrong rotary table, mask or head order
    // errs by the size of the logits themselves.
    assert.ok(worst.float16! < 2e-2 * Math.max(1, scale), `float16 ${worst.float16} (max |logit| ${scale})`);
  });
}
