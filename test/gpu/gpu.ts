// Shared by the GPU suite: the WebGPU backend (fails with what to install when there is no adapter)
// and the CPU backend it is compared with.
import { resolve } from 'node:path';
import { Backend, probeProvider } from '../../src/engine/backend';
import { Rng } from '../../src/common/rng';
import type { DistillSample } from '../../src/engine/train/trainer';

export const repo = resolve(__dirname, '..', '..');
export const fixtures = resolve(repo, 'test', 'fixtures');

let gpuP: Promise<Backend> | undefined;
let cpuP: Promise<Backend> | undefined;

/** The WebGPU backend, as a user who sets the device to "webgpu" gets it. */
export function gpuBackend(): Promise<Backend> {
  return (gpuP ??= (async () => {
    const probe = await probeProvider('webgpu');
    if (!probe.ok) {
      throw new Error(
        `no WebGPU adapter (${probe.reason}). The GPU suite runs on any WebGPU adapter; without a GPU, install ` +
          `Mesa's software Vulkan driver as .ci/run does (libvulkan1, mesa-vulkan-drivers from bookworm-backports) and ` +
          `set VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json`,
      );
    }
    return Backend.create({ device: 'webgpu' });
  })());
}

export const cpuBackend = (): Promise<Backend> => (cpuP ??= Backend.create({ device: 'cpu', threads: 2 }));

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** max |a − b| / max |b|: an error relative to the scale of the reference. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(b[i]!));
  return maxAbsDiff(a, b) / (m || 1);
}

/** `n` distillation samples of random tokens (a document, a question, an answer) over a vocabulary of V. */
export function samples(V: number, n: number, seed: number): DistillSample[] {
  const r = new Rng(seed);
  const tok = () => 4 + Math.floor(r.next() * (V - 4));
  return Array.from({ length: n }, () => {
    const doc = Array.from({ length: 12 + Math.floor(r.next() * 8) }, tok);
    const q = Array.from({ length: 5 + Math.floor(r.next() * 4) }, tok);
    const a = Array.from({ length: 3 + Math.floor(r.next() * 4) }, tok);
    return { teacher: [...doc, ...q, ...a], student: [...q, ...a], answerLength: a.length };
  });
}
