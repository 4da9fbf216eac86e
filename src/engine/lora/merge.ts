// Merges a LoRA adapter into its base model: W' = W + scale · (A·B)ᵀ for every target, written as a
// full Hugging Face model folder (float32). An adapter on lm_head of a model with tied embeddings
// unties them (the input embedding must stay as it was). Non-finite results are refused.
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadModelFolder } from '../models/folder';
import { writeSafetensors, type TensorToWrite } from '../models/safetensors';
import { writeJsonAtomic } from '../../common/atomicFile';
import { loraInputs } from '../models/llama';
import { hfModulePath, type LinearModule } from '../models/weights';
import { readAdapter } from './peft';
import { hasNonFinite } from '../models/finite';

const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'chat_template.json',
  'generation_config.json',
];

export function mergeAdapter(
  modelDir: string,
  adapterDir: string,
  outDir: string,
): { tensors: number; merged: number } {
  if (existsSync(outDir)) throw new Error(`${outDir} exists; choose a new folder for the merged model`);
  const folder = loadModelFolder(modelDir, { requireTokenizer: false });
  const cfg = folder.config;
  let adapter: ReturnType<typeof readAdapter>;
  try {
    adapter = readAdapter(adapterDir, cfg);
  } catch (e) {
    folder.weights.close();
    throw e;
  }
  const scale = adapter.spec.alpha / adapter.spec.rank;
  // delta[hfName] = scale · (a·b)ᵀ, shape [out, in]
  const deltas = new Map<string, { a: Float32Array; b: Float32Array; inD: number; outD: number }>();
  const inputs = loraInputs(cfg, adapter.spec);
  for (const i of inputs) {
    if (i.which !== 'a') continue;
    const name = i.layer === 'lm_head' ? 'lm_head.weight' : `${hfModulePath(i.layer, i.module as LinearModule)}.weight`;
    const bName = i.name.replace(/\.a$/, '.b');
    deltas.set(name, {
      a: adapter.tensors.get(i.name)!,
      b: adapter.tensors.get(bName)!,
      inD: i.shape[0],
      outD: inputs.find((x) => x.name === bName)!.shape[1],
    });
  }
  const untie = cfg.tieWordEmbeddings && deltas.has('lm_head.weight');
  const names = folder.weights.names().filter((n) => !(untie && n === 'lm_head.weight'));
  const tensors: TensorToWrite[] = [];
  const merged = (name: string, src: string): TensorToWrite => ({
    name,
    dtype: 'F32',
    shape: [...folder.weights.info(src).shape],
    data: () => {
      const w = folder.weights.float32(src).slice();
      const d = deltas.get(name);
      if (d) {
        const r = adapter.spec.rank;
        for (let o = 0; o < d.outD; o++) {
          for (let k = 0; k < d.inD; k++) {
            let s = 0;
            for (let j = 0; j < r; j++) s += d.a[k * r + j]! * d.b[j * d.outD + o]!;
            w[o * d.inD + k]! += scale * s;
          }
        }
      }
      for (let i = 0; i < w.length; i++) {
        if (Number.isFinite(w[i]!)) continue;
        const cause = hasNonFinite(folder.weights.float32(src))
          ? `the model's ${src} already holds NaN or infinite values (${modelDir} is corrupt)`
          : `the adapter's update overflows (${adapterDir})`;
        throw new Error(`refusing to merge: ${name} would have a non-finite value: ${cause}; nothing was written`);
      }
      return w;
    },
  });
  for (const n of names) tensors.push(merged(n, n));
  if (untie) tensors.push(merged('lm_head.weight', 'model.embed_tokens.weight'));
  // Everything goes into a temporary sibling folder, renamed into place only when complete; a
  // refusal or failure on the way removes it, so nothing is left behind.
  const tmp = `${outDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  let done = false;
  try {
    writeSafetensors(join(tmp, 'model.safetensors'), tensors, { format: 'pt' });
    const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeJsonAtomic(join(tmp, 'config.json'), {
      ...config,
      torch_dtype: 'float32',
      tie_word_embeddings: untie ? false : config.tie_word_embeddings,
    });
    for (const f of TOKENIZER_FILES) if (existsSync(join(modelDir, f))) copyFileSync(join(modelDir, f), join(tmp, f));
    renameSync(tmp, outDir);
    done = true;
  } finally {
    folder.weights.close();
    if (!done) rmSync(tmp, { recursive: true, force: true });
  }
  return { tensors: tensors.length, merged: deltas.size };
}
