#!/usr/bin/python3
"""PyTorch eager generation baseline: prefill and KV-cache decode tokens/s, peak RSS.

usage: generate_bench.py MODEL_DIR [--threads 2] [--prompt 128] [--new-tokens 64] [--batches 1,16]

float32 weights, torch.inference_mode, greedy. Prefill = one forward over B x prompt tokens that
fills the KV cache and computes logits for the last position only; prefill tok/s = B*prompt/time.
Decode = new-tokens single-token forwards with the cache (greedy argmax fed back);
decode tok/s = B*new_tokens/time. One warm-up (short prefill + 2 decode steps) per batch size.
Prints one JSON line.
"""
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the repo
import _common  # noqa: E402

THREADS = _common.set_threads_from_argv()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

import hf  # noqa: E402


def run(model, batch, prompt, new_tokens, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.vocab, (batch, prompt), generator=g)
    last = torch.full((batch, 1), prompt - 1, dtype=torch.long)
    # warm-up
    _, cache = model(ids[:, :16], cache=[], logits_index=torch.full((batch, 1), 15, dtype=torch.long))
    for t in range(2):
        _, cache = model(ids[:, 16 + t:17 + t], cache=cache)
    del cache
    t0 = time.perf_counter()
    logits, cache = model(ids, cache=[], logits_index=last)
    nxt = logits[:, -1].argmax(-1)
    t1 = time.perf_counter()
    mask = torch.ones(batch, prompt, dtype=torch.long)
    for _ in range(new_tokens):
        mask = torch.cat([mask, torch.ones(batch, 1, dtype=torch.long)], 1)
        logits, cache = model(nxt[:, None], mask, cache=cache)
        nxt = logits[:, -1].argmax(-1)
    t2 = time.perf_counter()
    return {
        "batch": batch,
        "prefill_s": round(t1 - t0, 4),
        "prefill_tok_s": round(batch * prompt / (t1 - t0), 1),
        "decode_s": round(t2 - t1, 4),
        "decode_tok_s": round(batch * new_tokens / (t2 - t1), 1),
        "decode_ms_per_step": round(1000 * (t2 - t1) / new_tokens, 2),
        "peak_rss_mb_so_far": round(_common.peak_rss_mb(), 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2, help="BLAS (OpenBLAS pthreads) threads")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (see _common.py)")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.torch_threads)
    t0 = time.perf_counter()
    model = hf.load_model(a.model, torch.float32)
    load_s = time.perf_counter() - t0
    rss_loaded = _common.peak_rss_mb()
    results = []
    with torch.inference_mode():
        for b in [int(x) for x in a.batches.split(",")]:
            results.append(run(model, b, a.prompt, a.new_tokens, a.seed))
    print(json.dumps({
        "bench": "torch-generate",
        "model": os.path.basename(os.path.normpath(a.model)),
        "architecture": model.arch,
        "torch": torch.__version__,
        "blas": _common.blas_library(),
        "threads": a.threads,
        "torch_threads": a.torch_threads,
        "dtype": "float32",
        "prompt": a.prompt,
        "new_tokens": a.new_tokens,
        "load_s": round(load_s, 2),
        "rss_after_load_mb": round(rss_loaded, 1),
        "results": results,
        "peak_rss_mb": round(_common.peak_rss_mb(), 1),
    }))


if __name__ == "__main__":
    main()
