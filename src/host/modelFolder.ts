// A quick check of a model folder before the worker is started, without running anything from
// it: the files the engine needs and a supported architecture. The worker does the full check.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const SUPPORTED = ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM', 'MistralForCausalLM'];

/** undefined when the folder looks usable, else what is wrong. */
export function checkModelFolder(dir: string): string | undefined {
  try {
    if (!statSync(dir).isDirectory()) return `${dir} is not a folder`;
  } catch {
    return `model folder ${dir} does not exist`;
  }
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) return `${dir} has no config.json; a Hugging Face model folder is needed`;
  let cfg: { architectures?: unknown };
  try {
    cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as { architectures?: unknown };
  } catch (e) {
    return `${cfgPath} is not valid JSON (${(e as Error).message})`;
  }
  const arch = Array.isArray(cfg.architectures) ? String(cfg.architectures[0]) : undefined;
  if (!arch || !SUPPORTED.includes(arch))
    return `${dir}: architecture ${arch ?? '(none)'} is not supported; supported: ${SUPPORTED.join(', ')}`;
  if (!existsSync(join(dir, 'model.safetensors')) && !existsSync(join(dir, 'model.safetensors.index.json'))) {
    return `${dir} has no model.safetensors or model.safetensors.index.json${existsSync(join(dir, 'pytorch_model.bin')) ? ' (pytorch_model.bin is a pickle file and is never loaded; convert it to safetensors)' : ''}`;
  }
  if (!existsSync(join(dir, 'tokenizer.json'))) return `${dir} has no tokenizer.json`;
  return undefined;
}
