// What to say when a model's output is NaN or ±Inf. A forward pass turns one non-finite weight
// into non-finite logits everywhere, which would otherwise come out as null log-probabilities or
// empty text with a success exit: name the file (and tensor) responsible when there is one.
import { join } from 'node:path';
import { ModelError } from './config';
import { WeightStore } from './folder';

/** The model's output (logits or log-probabilities) is not finite. The message names the likely file. */
export class NonFiniteError extends ModelError {
  override name = 'NonFiniteError';
}

/** True if any value of `a` is NaN or ±Inf. */
export function hasNonFinite(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return true;
  return false;
}

/**
 * The first tensor of a model folder holding NaN or ±Inf, with the file it is in and how many of
 * its values are bad; undefined when every weight is finite. Reads every tensor: only call it once
 * something has already gone wrong.
 */
export function findNonFiniteWeight(
  dir: string,
): { file: string; tensor: string; bad: number; total: number } | undefined {
  const store = WeightStore.open(dir);
  try {
    for (const f of store.files) {
      for (const name of f.names()) {
        const v = f.float32(name);
        let bad = 0;
        for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) bad++;
        if (bad) return { file: f.path, tensor: name, bad, total: v.length };
      }
    }
    return undefined;
  } finally {
    store.close();
  }
}

/**
 * Explains non-finite output of `what` ('score', 'generate') for a model loaded from `modelDir`,
 * computing in `dtype`, with an adapter (its folder, when known) or without.
 */
export function nonFiniteError(
  what: string,
  model: { dir?: string; dtype: string },
  adapter?: { dir?: string },
): NonFiniteError {
  const head = `the model's output (${what}) is NaN or infinite`;
  const found = model.dir ? findNonFiniteWeight(model.dir) : undefined;
  if (found) {
    return new NonFiniteError(
      `${head} because ${found.file} holds non-finite weights (${found.tensor}: ${found.bad} of ${found.total} values are NaN or ±Inf): the file is corrupt; download or export the model again`,
    );
  }
  if (adapter) {
    const where = adapter.dir ? join(adapter.dir, 'adapter_model.safetensors') : 'the adapter';
    return new NonFiniteError(
      `${head} with the adapter, though every weight of the model is finite: ${where} (or its lora_alpha in adapter_config.json) makes the values overflow; retrain it with a lower learning rate, or run without it`,
    );
  }
  const hint =
    model.dtype === 'float16'
      ? ' in float16: run with --dtype float32'
      : ': the weights may be too large for this architecture (was the model exported correctly?)';
  return new NonFiniteError(
    `${head} though every weight${model.dir ? ` in ${model.dir}` : ''} is finite; the values overflow${hint}`,
  );
}
