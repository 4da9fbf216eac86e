#!/usr/bin/python3
"""Reference logits (float64) for Hugging Face model folders.

usage: make_logits_fixtures.py MODEL_DIR [MODEL_DIR ...] --out test/fixtures/reference/
       [--seed 1234] [--length 12] [--pad 3] [--new-tokens 8] [--name NAME]

Writes <out>/<name>.logits.json per model (name = folder basename unless --name, single model).
See README.md next to this file for the exact format.
"""
import argparse
import json
import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf  # noqa: E402


def r9(x):
    return float(f"{x:.9g}")


def nested(t):
    if t.dim() == 0:
        return r9(t.item())
    return [nested(s) for s in t]


def make_batch(vocab, length, pad, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, length), generator=g)  # ids 0..2 kept for pad/bos/eos
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, :pad] = 0
    ids[1, :pad] = 0  # pad id 0 (any id gives the same logits on the real tokens)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def fixture(model_dir, name, seed, length, pad, new_tokens):
    model = hf.load_model(model_dir, torch.float64)
    ids, mask, positions = make_batch(model.vocab, length, pad, seed)
    with torch.no_grad():
        logits, _ = model(ids, mask, positions)
        logp = torch.log_softmax(logits, -1)

        # self-check 1: the padded row equals the same tokens without padding
        alone, _ = model(ids[1:, pad:])
        err_pad = (alone[0] - logits[1, pad:]).abs().max().item()
        # self-check 2: prefill + decode with the KV cache equals the full forward
        split = length - 4
        lg1, cache = model(ids[:, :split], mask[:, :split], cache=[])
        steps = [lg1]
        for t in range(split, length):
            lgt, cache = model(ids[:, t:t + 1], mask[:, :t + 1], cache=cache)
            steps.append(lgt)
        cached = torch.cat(steps, 1)
        real = mask.bool()
        err_cache = (cached - logits)[real].abs().max().item()
        assert err_pad < 1e-10 and err_cache < 1e-10, (name, err_pad, err_cache)

        greedy, step_logits = model.generate_greedy(ids, new_tokens, mask)
        margins = []
        for sl in step_logits:
            top2 = sl.topk(2, -1).values
            margins.append((top2[:, 0] - top2[:, 1]).min().item())

    B, T = ids.shape
    out_logits = []
    out_lp = []
    for b in range(B):
        rows, lps = [], []
        for i in range(T):
            rows.append(nested(logits[b, i]) if mask[b, i] else None)
            if i == 0 or not mask[b, i] or not mask[b, i - 1]:
                lps.append(None)
            else:
                lps.append(r9(logp[b, i - 1, ids[b, i]].item()))
        out_logits.append(rows)
        out_lp.append(lps)
    cfg = model.config
    return {
        "model": name,
        "architecture": cfg.get("architectures", [None])[0],
        "dtype": "float64",
        "seed": seed,
        "vocab_size": model.vocab,
        "ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "positions": positions.tolist(),
        "logits": out_logits,
        "logprobs": out_lp,
        "greedy": {
            "new_tokens": greedy.tolist(),
            "min_top2_margin": r9(min(margins)),
        },
        "checks": {"padded_vs_unpadded_max_abs": err_pad, "kv_cache_vs_full_max_abs": err_cache},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--length", type=int, default=12)
    ap.add_argument("--pad", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--name")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for d in a.models:
        name = a.name if (a.name and len(a.models) == 1) else os.path.basename(os.path.normpath(d))
        fx = fixture(d, name, a.seed, a.length, a.pad, a.new_tokens)
        path = os.path.join(a.out, f"{name}.logits.json")
        with open(path, "w") as f:
            json.dump(fx, f, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: {os.path.getsize(path)} bytes; checks {fx['checks']}; greedy margin {fx['greedy']['min_top2_margin']}")


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads() or 1))
    main()
