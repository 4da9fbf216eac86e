// glibc's malloc settings for the processes that run train sessions (the worker, the CLI's model
// commands, the benchmarks' children).
//
// A train session runs without ONNX Runtime's memory arena, so every tensor of a step is a malloc
// and a free. With glibc's defaults the mmap threshold rises to the largest block freed so far (up
// to 32 MB), after which tensors below it live in the heap, where freed memory between live blocks
// stays resident: the peak of a qwen2.5-0.5b int8 train step came out at 3.5 GB in most runs and
// 4.2–5.1 GB in some, depending on how the blocks happened to fall. A fixed threshold of 256 KB puts
// every tensor above it in its own mapping, returned to the system when freed (peak 2.5 GB, every
// run); transparent huge pages for those mappings (`hugetlb=1`: madvise, where the kernel allows it)
// keep the page faults of fresh mappings from costing more than the heap did (18.7 s a step against
// 20.9 s with the defaults, 37 s with the threshold alone, on a VM whose 4 KB page faults are slow).
// Generation, whose sessions keep their arena, measured the same either way.

/** The tunables DocDistill sets (`GLIBC_TUNABLES` syntax). */
export const LEAN_MALLOC_TUNABLES = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=262144';

/**
 * `env` with DocDistill's malloc tunables added, for a child process about to start. Unchanged off
 * Linux, with `DOCDISTILL_LEAN_MALLOC=0`, or when the user set either tunable themselves (theirs win).
 */
export function leanMallocEnv(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): NodeJS.ProcessEnv {
  if (!needsLeanMalloc(env, platform)) return env;
  const cur = env.GLIBC_TUNABLES;
  return { ...env, GLIBC_TUNABLES: cur ? `${cur}:${LEAN_MALLOC_TUNABLES}` : LEAN_MALLOC_TUNABLES };
}

/** Whether a process started with `env` runs without DocDistill's malloc tunables that it would get. */
export function needsLeanMalloc(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): boolean {
  if (platform !== 'linux' || env.DOCDISTILL_LEAN_MALLOC === '0') return false;
  return !/glibc\.malloc\.(mmap_threshold|hugetlb)=/.test(env.GLIBC_TUNABLES ?? '');
}
