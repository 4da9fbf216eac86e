#!/usr/bin/python3
"""LoRA prompt-distillation reference: KL loss, its gradients (float64), and AdamW trajectories
(float32) for the KL and the cross-entropy (SFT) loss.

usage: make_train_fixtures.py MODEL_DIR --out test/fixtures/reference/ [--name NAME] [--seed 7]
       [--rank 4] [--alpha 8] [--tau 2.0] [--steps 10] [--warmup 2] [--lr 1e-3]

Writes <out>/<name>.train.json and the initial adapter <out>/<name>-lora/ (PEFT layout, float32).
Semantics and format: README.md next to this file.
"""
import argparse
import json
import math
import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf  # noqa: E402

# (doc length, question length, answer length) per sample
SAMPLE_SHAPES = [(7, 4, 5), (10, 3, 3), (5, 5, 6)]


def r9(x):
    return float(f"{x:.9g}")


def make_samples(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for d, q, a in SAMPLE_SHAPES:
        doc = torch.randint(3, vocab, (d,), generator=g).tolist()
        question = torch.randint(3, vocab, (q,), generator=g).tolist()
        answer = torch.randint(3, vocab, (a,), generator=g).tolist()
        out.append({
            "teacher_ids": doc + question + answer,
            "student_ids": question + answer,
            "teacher_answer_start": d + q,
            "student_answer_start": q,
            "answer_length": a,
        })
    return out


def answer_logits(model, ids, start, n, lora):
    """Logits at positions start-1 .. start+n-2, i.e. those predicting the n answer tokens."""
    x = torch.tensor([ids])
    idx = torch.arange(start - 1, start - 1 + n)[None]
    logits, _ = model(x, lora=lora, logits_index=idx)
    return logits[0]  # [n, V]


def kl_token_losses(teacher_logits, student_logits, tau):
    """tau^2 * sum_v p_T (log p_T - log p_S), p = softmax(logits / tau); one value per token."""
    lt = torch.log_softmax(teacher_logits / tau, -1)
    ls = torch.log_softmax(student_logits / tau, -1)
    return tau * tau * (lt.exp() * (lt - ls)).sum(-1)


def ce_token_losses(student_logits, targets):
    return -torch.log_softmax(student_logits, -1).gather(-1, targets[:, None])[:, 0]


def teacher_logits_all(model, samples):
    with torch.no_grad():
        return [answer_logits(model, s["teacher_ids"], s["teacher_answer_start"], s["answer_length"], None)
                for s in samples]


def batch_loss(model, samples, lora, kind, tau, teacher=None, per_token=False):
    sample_losses = []
    tokens = []
    for i, s in enumerate(samples):
        sl = answer_logits(model, s["student_ids"], s["student_answer_start"], s["answer_length"], lora)
        if kind == "kl":
            tl = kl_token_losses(teacher[i], sl, tau)
        else:
            tgt = torch.tensor(s["student_ids"][s["student_answer_start"]:])
            tl = ce_token_losses(sl, tgt)
        tokens.append(tl)
        sample_losses.append(tl.mean())
    loss = torch.stack(sample_losses).mean()
    if per_token:
        return loss, tokens, sample_losses
    return loss


def cosine_with_warmup(warmup, total):
    """transformers.get_cosine_schedule_with_warmup(num_cycles=0.5) lr_lambda."""
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    return f


def trajectory(model, samples, lora0, kind, tau, a):
    lora = lora0.to(torch.float32).requires_grad_(True)
    params = [t for _, t in lora.named_parameters()]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(a.warmup, a.steps))
    teacher = teacher_logits_all(model, samples) if kind == "kl" else None
    steps = []
    for step in range(a.steps):
        opt.zero_grad(set_to_none=True)
        loss = batch_loss(model, samples, lora, kind, tau, teacher)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        steps.append({"step": step, "loss": r9(loss.item()), "grad_norm": r9(gn.item()), "lr": r9(lr)})
    with torch.no_grad():
        final_loss = batch_loss(model, samples, lora, kind, tau, teacher).item()
    final_l2 = {k: r9(t.detach().double().norm().item()) for k, t in lora.named_parameters()}
    return {"steps": steps, "final_loss": r9(final_loss), "final_param_l2": final_l2}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--tau", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    a = ap.parse_args()
    name = a.name or os.path.basename(os.path.normpath(a.model))
    os.makedirs(a.out, exist_ok=True)

    cfg = hf.load_config(a.model)
    sd = hf.load_state_dict(a.model)
    m64 = hf.CausalLM(cfg, sd, torch.float64)
    m32 = hf.CausalLM(cfg, sd, torch.float32)
    samples = make_samples(m64.vocab, a.seed)

    # adapter: generated in float64, rounded to float32 (the saved values are the exact start point)
    lora = hf.LoRA.init_random(cfg, a.rank, a.alpha, hf.LORA_TARGETS, seed=a.seed, dtype=torch.float32)
    adapter_dir = os.path.join(a.out, f"{name}-lora")
    lora.save_peft(adapter_dir, base_model_name_or_path=f"{name}")
    lora = hf.LoRA.load_peft(adapter_dir, torch.float32)  # round trip through the PEFT files

    # float64 loss and gradients
    l64 = lora.to(torch.float64).requires_grad_(True)
    teacher = teacher_logits_all(m64, samples)
    loss, tok, per_sample = batch_loss(m64, samples, l64, "kl", a.tau, teacher, per_token=True)
    named = l64.named_parameters()
    grads = torch.autograd.grad(loss, [t for _, t in named])
    with torch.no_grad():
        ce, ce_tok, ce_per = batch_loss(m64, samples, l64, "ce", a.tau, None, per_token=True)
        base_kl = batch_loss(m64, samples, None, "kl", a.tau, teacher).item()
    grad_norm = math.sqrt(sum(float((g * g).sum()) for g in grads))

    # finite-difference check of a few gradient elements (central differences, float64)
    checks = []
    gmap = {k: g for (k, _), g in zip(named, grads)}
    pick = [k for k, _ in named if ("layers.0.self_attn.q_proj.lora_A" in k or "layers.1.mlp.down_proj.lora_B" in k
                                    or "lm_head.lora_B" in k or "layers.0.self_attn.k_proj.lora_B" in k)]
    h = 1e-6
    with torch.no_grad():
        for k in pick:
            t = dict(named)[k]
            idx = tuple(int(i) for i in torch.nonzero(gmap[k].abs() == gmap[k].abs().max())[0])
            old = t[idx].item()
            t[idx] = old + h
            lp = batch_loss(m64, samples, l64, "kl", a.tau, teacher).item()
            t[idx] = old - h
            lm = batch_loss(m64, samples, l64, "kl", a.tau, teacher).item()
            t[idx] = old
            fd = (lp - lm) / (2 * h)
            ag = gmap[k][idx].item()
            checks.append({"param": k, "index": list(idx), "autograd": ag, "finite_difference": fd,
                           "rel_err": abs(fd - ag) / max(abs(ag), 1e-30)})
    worst = max(c["rel_err"] for c in checks)
    assert worst < 1e-6, checks

    out = {
        "model": name,
        "adapter": f"{name}-lora",
        "lora": {"r": a.rank, "alpha": a.alpha, "scale": a.alpha / a.rank, "targets": list(hf.LORA_TARGETS),
                 "dropout": 0.0, "init": "A ~ U(-1/sqrt(in), 1/sqrt(in)), B ~ N(0, 0.02); stored float32"},
        "tau": a.tau,
        "samples": samples,
        "kl": {
            "dtype": "float64",
            "loss": r9(loss.item()),
            "sample_losses": [r9(x.item()) for x in per_sample],
            "token_losses": [[r9(x) for x in t.tolist()] for t in tok],
            "loss_without_lora": r9(base_kl),
            "grad_norm": r9(grad_norm),
            "grads": {k: {"shape": list(g.shape), "values": [r9(x) for x in g.reshape(-1).tolist()]}
                      for (k, _), g in zip(named, grads)},
        },
        "ce": {
            "dtype": "float64",
            "loss": r9(ce.item()),
            "sample_losses": [r9(x.item()) for x in ce_per],
            "token_losses": [[r9(x) for x in t.tolist()] for t in ce_tok],
        },
        "optimizer": {"type": "AdamW", "lr": a.lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1,
                      "schedule": "cosine_with_warmup", "warmup_steps": a.warmup, "total_steps": a.steps,
                      "max_grad_norm": 1.0, "dtype": "float32"},
        "trajectory": {
            "kl": trajectory(m32, samples, lora, "kl", a.tau, a),
            "ce": trajectory(m32, samples, lora, "ce", a.tau, a),
        },
        "checks": {"finite_differences": checks},
    }
    path = os.path.join(a.out, f"{name}.train.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {os.path.getsize(path)} bytes; kl {out['kl']['loss']} (no lora {out['kl']['loss_without_lora']}), "
          f"ce {out['ce']['loss']}, grad norm {out['kl']['grad_norm']}, fd worst rel err {worst:.2e}")
    for kind in ("kl", "ce"):
        t = out["trajectory"][kind]
        print(kind, [(s["loss"], s["grad_norm"], s["lr"]) for s in t["steps"]], "final", t["final_loss"])


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads() or 1))
    main()
