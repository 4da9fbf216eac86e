// LoRA adapters in the Hugging Face PEFT layout: adapter_config.json + adapter_model.safetensors
// with PEFT's key names (base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [r, in],
// …lora_B.weight [out, r]; base_model.model.lm_head.lora_A.weight). Our graphs take A as [in, r]
// and B as [r, out], so both are transposed on the way in and out.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../models/safetensors';
import type { ModelConfig } from '../models/config';
import { LINEAR_MODULES, hfModulePath, transpose2d, type LinearModule } from '../models/weights';
import { LORA_TARGETS, linearDims, loraInputName, loraInputs, type LoraSpec, type LoraTarget } from '../models/llama';
import type { AdapterWeights } from '../models/model';
import { writeJsonAtomic } from '../../common/atomicFile';

export class AdapterError extends Error {
  override name = 'AdapterError';
}

const hfModuleName: Record<LoraTarget, string> = {
  q: 'q_proj',
  k: 'k_proj',
  v: 'v_proj',
  o: 'o_proj',
  gate: 'gate_proj',
  up: 'up_proj',
  down: 'down_proj',
  lm_head: 'lm_head',
};

const peftKey = (layer: number | 'lm_head', which: 'a' | 'b', m?: LinearModule): string =>
  layer === 'lm_head'
    ? `base_model.model.lm_head.lora_${which.toUpperCase()}.weight`
    : `base_model.model.${hfModulePath(layer, m!)}.lora_${which.toUpperCase()}.weight`;

export interface AdapterMeta {
  baseModel?: string;
  dropout?: number;
  /** Anything else to record in adapter_config.json (e.g. DocDistill's chunk hashes go in docdistill.json instead). */
  extra?: Record<string, unknown>;
}

/** Limits beyond which an adapter cannot be a trained LoRA (its update would swamp the weights). */
const MAX_RANK = 4096;
const MAX_SCALE = 1000;
const MAX_DELTA = 1e4;

/** Reads a PEFT LoRA adapter for a model with this config. Unsupported variants are refused by name. */
export function readAdapter(dir: string, cfg: ModelConfig): AdapterWeights {
  const cfgPath = join(dir, 'adapter_config.json');
  if (!existsSync(cfgPath))
    throw new AdapterError(`${dir}: no adapter_config.json; is this a PEFT LoRA adapter folder?`);
  let ac: Record<string, unknown>;
  try {
    ac = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new AdapterError(`${cfgPath}: not valid JSON (${(e as Error).message})`);
  }
  const bad = (m: string): never => {
    throw new AdapterError(`${cfgPath}: ${m}`);
  };
  if ((ac.peft_type ?? 'LORA') !== 'LORA') bad(`peft_type ${String(ac.peft_type)} is not supported (only LORA)`);
  if (ac.use_dora === true) bad('DoRA adapters are not supported');
  if (ac.fan_in_fan_out === true) bad('fan_in_fan_out adapters (GPT-2 style Conv1D) are not supported');
  for (const k of ['rank_pattern', 'alpha_pattern'])
    if (ac[k] && Object.keys(ac[k] as object).length) bad(`per-module ${k} is not supported`);
  if (ac.layers_to_transform !== null && ac.layers_to_transform !== undefined)
    bad('layers_to_transform is not supported');
  const r = ac.r;
  const alpha = ac.lora_alpha ?? r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1) bad('"r" must be a positive whole number');
  if (typeof alpha !== 'number' || !(alpha > 0) || !Number.isFinite(alpha))
    bad(`"lora_alpha" must be a positive number, got ${JSON.stringify(alpha)}`);
  if ((r as number) > MAX_RANK) bad(`"r" is ${r as number}; more than ${MAX_RANK} is not a LoRA adapter`);
  const tm = ac.target_modules;
  let names: string[];
  if (Array.isArray(tm)) names = tm.map(String);
  else if (typeof tm === 'string')
    names = Object.values(hfModuleName).filter((n) => new RegExp(`(^|\\.)${tm}$`).test(n) || n === tm);
  else names = bad('"target_modules" is missing');
  const targets: LoraTarget[] = [];
  for (const n of names) {
    const t = (Object.keys(hfModuleName) as LoraTarget[]).find((k) => hfModuleName[k] === n.split('.').pop());
    if (!t) bad(`target module "${n}" is not supported; supported: ${Object.values(hfModuleName).join(', ')}`);
    if (!targets.includes(t!)) targets.push(t!);
  }
  // rsLoRA scales by alpha/√r; express it as an equivalent alpha for scale = alpha/r.
  const effAlpha = ac.use_rslora === true ? (alpha as number) * Math.sqrt(r as number) : (alpha as number);
  const spec: LoraSpec = {
    rank: r as number,
    alpha: effAlpha,
    targets: LORA_TARGETS.filter((t) => targets.includes(t)),
  };
  const scale = effAlpha / (r as number);
  if (!(scale <= MAX_SCALE))
    bad(
      `lora_alpha ${alpha as number} with r ${r as number} scales the update by ${scale.toPrecision(3)}, which is absurd (LoRA uses about 0.5 to 4; at most ${MAX_SCALE} is accepted): the adapter's config is corrupt`,
    );

  const file = ['adapter_model.safetensors'].map((f) => join(dir, f)).find(existsSync);
  if (!file)
    throw new AdapterError(`${dir}: no adapter_model.safetensors (adapter_model.bin is a pickle and is never loaded)`);
  const st = SafetensorsFile.open(file);
  try {
    const tensors = new Map<string, Float32Array>();
    const maxAbs = new Map<string, { max: number; key: string }>();
    for (const i of loraInputs(cfg, spec)) {
      const key = peftKey(i.layer, i.which, i.module === 'lm_head' ? undefined : (i.module as LinearModule));
      const alt = key.replace(/\.weight$/, '.default.weight');
      const name = st.has(key) ? key : st.has(alt) ? alt : undefined;
      if (!name) throw new AdapterError(`${file}: missing tensor ${key} (is the adapter for a different model?)`);
      const shape = st.info(name).shape;
      const [inD, outD] = linearDims(cfg, i.module);
      const expected = i.which === 'a' ? [spec.rank, inD] : [outD, spec.rank];
      if (shape.length !== 2 || shape[0] !== expected[0] || shape[1] !== expected[1]) {
        throw new AdapterError(
          `${file}: ${name} has shape [${shape.join(', ')}], expected [${expected.join(', ')}] for this model`,
        );
      }
      const v = st.float32(name);
      let max = 0;
      for (let k = 0; k < v.length; k++) {
        const x = Math.abs(v[k]!);
        if (!Number.isFinite(x))
          throw new AdapterError(
            `${file}: ${name} holds NaN or infinite values: the adapter is corrupt (train it again)`,
          );
        if (x > max) max = x;
      }
      maxAbs.set(i.name, { max, key: name });
      tensors.set(i.name, transpose2d(v, expected[0]!, expected[1]!));
    }
    // No entry of scale·B·A can exceed scale·r·max|A|·max|B|; a real adapter's bound is far below
    // the limit, while one that would add ~1e30 to a weight makes only meaningless output.
    for (const [a, { max: maxA, key }] of maxAbs) {
      if (!a.endsWith('.a')) continue;
      const maxB = maxAbs.get(a.replace(/\.a$/, '.b'))!.max;
      const bound = scale * spec.rank * maxA * maxB;
      if (bound > MAX_DELTA) {
        throw new AdapterError(
          `${file}: the update of ${key.replace(/^base_model\.model\./, '').replace(/\.lora_A.*$/, '')} could reach ${bound.toPrecision(3)} (scale ${scale.toPrecision(3)} × r ${spec.rank} × max|A| ${maxA.toPrecision(3)} × max|B| ${maxB.toPrecision(3)}), far beyond any model weight: the adapter is corrupt or diverged (train it again)`,
        );
      }
    }
    return { spec, tensors };
  } finally {
    st.close();
  }
}

/**
 * Writes an adapter in the PEFT layout, atomically as a whole: into a temporary sibling folder,
 * then renamed over `dir` (an existing adapter there is replaced only once the new one is complete).
 */
export function writeAdapter(
  dir: string,
  cfg: ModelConfig,
  adapter: AdapterWeights,
  meta: AdapterMeta = {},
  extraFiles: Record<string, unknown> = {},
): void {
  const { spec } = adapter;
  const tmp = `${dir}.tmp-${process.pid}`;
  const tensors: TensorToWrite[] = [];
  for (const i of loraInputs(cfg, spec)) {
    const t = adapter.tensors.get(i.name);
    if (!t) throw new AdapterError(`adapter is missing ${i.name}`);
    for (let k = 0; k < t.length; k++)
      if (!Number.isFinite(t[k]!)) throw new AdapterError(`refusing to save: ${i.name} has a non-finite value`);
    const [rows, cols] = i.shape; // a: [in, r], b: [r, out]
    tensors.push({
      name: peftKey(i.layer, i.which, i.module === 'lm_head' ? undefined : (i.module as LinearModule)),
      dtype: 'F32',
      shape: [cols, rows],
      data: transpose2d(t, rows, cols),
    });
  }
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeSafetensors(join(tmp, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    writeJsonAtomic(join(tmp, 'adapter_config.json'), {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      base_model_name_or_path: meta.baseModel ?? null,
      r: spec.rank,
      lora_alpha: spec.alpha,
      lora_dropout: meta.dropout ?? 0,
      target_modules: spec.targets.map((t) => hfModuleName[t]),
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      modules_to_save: null,
      layers_to_transform: null,
      layers_pattern: null,
      rank_pattern: {},
      alpha_pattern: {},
      use_rslora: false,
      use_dora: false,
      revision: null,
      ...meta.extra,
    });
    for (const [name, value] of Object.entries(extraFiles)) writeJsonAtomic(join(tmp, name), value);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const old = `${dir}.old-${process.pid}`;
  const had = existsSync(dir);
  if (had) renameSync(dir, old);
  try {
    renameSync(tmp, dir);
  } catch (e) {
    if (had) renameSync(old, dir);
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  rmSync(old, { recursive: true, force: true });
}

export { LINEAR_MODULES, loraInputName };
