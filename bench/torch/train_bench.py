#!/usr/bin/python3
"""PyTorch eager LoRA prompt-distillation training-step baseline: tokens/s and peak RSS.

usage: train_bench.py MODEL_DIR [--threads 2] [--batch 4] [--seq 256] [--teacher-seq 256]
       [--answer 64] [--rank 16] [--steps 3] [--warmup 1]

One step = teacher forward (base model, torch.no_grad, B x teacher-seq tokens, logits only at the
answer positions) + student forward with LoRA (rank r, alpha 2r, targets q,k,v,o,gate,up,down,
lm_head; B x seq tokens, logits only at the answer positions) + KL(teacher || student) at tau 2 over
the last `answer` tokens + backward + clip_grad_norm_(1.0) + AdamW step. float32.
tokens/s = B*seq / mean step time (student tokens); the teacher's tokens are reported separately.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2, help="BLAS (OpenBLAS pthreads) threads")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (see _common.py)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--teacher-seq", type=int, default=256)
    ap.add_argument("--answer", type=int, default=64)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--tau", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.torch_threads)
    model = hf.load_model(a.model, torch.float32)
    rss_loaded = _common.peak_rss_mb()
    cfg = model.config
    lora = hf.LoRA.init_random(cfg, a.rank, 2.0 * a.rank, seed=a.seed, dtype=torch.float32).requires_grad_(True)
    params = lora.parameters()
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    g = torch.Generator().manual_seed(a.seed)
    B, S, TS, A = a.batch, a.seq, a.teacher_seq, a.answer
    answer = torch.randint(3, model.vocab, (B, A), generator=g)
    student = torch.cat([torch.randint(3, model.vocab, (B, S - A), generator=g), answer], 1)
    teacher = torch.cat([torch.randint(3, model.vocab, (B, TS - A), generator=g), answer], 1)
    s_idx = torch.arange(S - A - 1, S - 1)[None].expand(B, -1)
    t_idx = torch.arange(TS - A - 1, TS - 1)[None].expand(B, -1)
    tau = a.tau

    times, losses = [], []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        with torch.no_grad():
            tl, _ = model(teacher, logits_index=t_idx)
            lt = torch.log_softmax(tl / tau, -1)
        sl, _ = model(student, lora=lora, logits_index=s_idx)
        ls = torch.log_softmax(sl / tau, -1)
        tok = tau * tau * (lt.exp() * (lt - ls)).sum(-1)  # [B, A]
        loss = tok.mean(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            times.append(dt)
        losses.append(round(loss.item(), 5))
    mean = sum(times) / len(times)
    print(json.dumps({
        "bench": "torch-train-lora-kl",
        "model": os.path.basename(os.path.normpath(a.model)),
        "architecture": model.arch,
        "torch": torch.__version__,
        "blas": _common.blas_library(),
        "threads": a.threads,
        "torch_threads": a.torch_threads,
        "dtype": "float32",
        "batch": B, "seq": S, "teacher_seq": TS, "answer_tokens": A, "rank": a.rank, "alpha": 2.0 * a.rank,
        "targets": list(hf.LORA_TARGETS), "tau": tau,
        "lora_params": sum(p.numel() for p in params),
        "step_s": [round(t, 3) for t in times],
        "mean_step_s": round(mean, 3),
        "tokens_per_s": round(B * S / mean, 1),
        "teacher_tokens_per_s": round(B * TS / mean, 1),
        "losses": losses,
        "rss_after_load_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(_common.peak_rss_mb(), 1),
    }))


if __name__ == "__main__":
    main()
