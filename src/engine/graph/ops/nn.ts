// Composite building blocks of Llama-family models, written in the primitive ops above so that
// autodiff needs no extra rules.
import type { Tensor } from '../graph';
import { add, cast, div, mul, neg, sqrt } from './elementwise';
import { reduceMean } from './reduce';
import { concat, slice } from './shape';

/**
 * RMSNorm over the last axis, computed in at least float32 whatever the input dtype (as Hugging
 * Face does): x / sqrt(mean(x²) + eps) · weight.
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  const x32 = x.dtype === 'float64' ? x : cast(x, 'float32'); // [..., D]
  const ms = reduceMean(mul(x32, x32), [-1], true); // [..., 1]
  const normed = div(x32, sqrt(add(ms, eps))); // [..., D]
  return mul(cast(normed, x.dtype), weight);
}

/** Hugging Face's rotate_half: [-x2, x1] where x = [x1, x2] along the last axis. */
export function rotateHalf(x: Tensor): Tensor {
  const d = x.shape[x.rank - 1];
  if (typeof d !== 'number' || d % 2) throw new Error(`rotateHalf: the last dimension must be even and known (${d})`);
  const x1 = slice(x, [0], [d / 2], [-1]);
  const x2 = slice(x, [d / 2], [d], [-1]);
  return concat([neg(x2), x1], -1);
}

/** Rotary position embedding: x·cos + rotate_half(x)·sin, cos/sin broadcast over heads. */
export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  return add(mul(x, cos), mul(rotateHalf(x), sin));
}
