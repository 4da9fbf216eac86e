// Options shared by every command that loads a model: where it is, which device, threads, dtype.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { existsSync } from 'node:fs';
import { Backend, PROVIDERS, type ProviderChoice } from '../engine/backend';
import { CausalLM } from '../engine/models/model';
import type { ComputeDtype } from '../engine/models/weights';
import { BASE_QUANTIZATIONS, type BaseQuantization } from '../engine/models/quantize';
import { readAdapter } from '../engine/lora/peft';
import type { AdapterWeights } from '../engine/models/model';
import { UsageError } from './command';

export const modelOptions = {
  model: { type: 'string' },
  adapter: { type: 'string' },
  device: { type: 'string', default: 'auto' },
  threads: { type: 'string' },
  dtype: { type: 'string' },
  quantize: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export const modelUsage = `  --model DIR        a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)
  --adapter DIR      a LoRA adapter in the PEFT layout (adapter_config.json, adapter_model.safetensors)
  --device D         auto (default), cpu, webgpu, cuda, dml or coreml
  --threads N        CPU threads (default: one per physical core)
  --dtype T          float32 or float16 (default: float32 on the CPU, float16 on a GPU)
  --quantize Q       none (default), int8 or int4: the base's linear weights as 8/4-bit blocks
                     (less memory, faster decoding; LoRA and the rest stay float), a copy cached
                     in the user's cache folder (DOCDISTILL_CACHE_DIR moves it)`;

export function parse<O extends ParseArgsConfig['options']>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function intOption(v: string | undefined, name: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be a whole number ≥ ${min} (got '${v}')`);
  return n;
}

export function numOption(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number (got '${v}')`);
  return n;
}

export function quantizeOption(v: string | undefined): BaseQuantization | undefined {
  if (v === undefined) return undefined;
  if (!(BASE_QUANTIZATIONS as readonly string[]).includes(v))
    throw new UsageError(`--quantize must be ${BASE_QUANTIZATIONS.join(', ')} (got '${v}')`);
  return v as BaseQuantization;
}

export interface LoadedModel {
  backend: Backend;
  model: CausalLM;
  adapter?: AdapterWeights;
}

/** `log` gets one line saying which device was chosen and why the others were not. */
export async function loadFromArgs(
  v: { model?: string; adapter?: string; device?: string; threads?: string; dtype?: string; quantize?: string },
  log?: (text: string) => void,
): Promise<LoadedModel> {
  if (!v.model) throw new UsageError('--model DIR is required');
  if (!existsSync(v.model)) throw new UsageError(`--model: no such folder '${v.model}'`);
  const device = (v.device ?? 'auto') as ProviderChoice;
  if (device !== 'auto' && !(PROVIDERS as readonly string[]).includes(device))
    throw new UsageError(`--device must be auto, ${PROVIDERS.join(', ')} (got '${device}')`);
  if (v.dtype !== undefined && v.dtype !== 'float32' && v.dtype !== 'float16')
    throw new UsageError(`--dtype must be float32 or float16 (got '${v.dtype}')`);
  const quantize = quantizeOption(v.quantize);
  const backend = await Backend.create({ device, threads: intOption(v.threads, 'threads', 0) });
  log?.(`${backend.describeDevice()}\n`);
  const model = await CausalLM.load(v.model, backend, { dtype: v.dtype as ComputeDtype | undefined, quantize });
  const adapter = v.adapter ? readAdapter(v.adapter, model.config) : undefined;
  return { backend, model, adapter };
}
