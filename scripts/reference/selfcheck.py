#!/usr/bin/python3
"""Self-checks of the reference implementation. usage: selfcheck.py MODEL_DIR [MODEL_DIR ...]

1. safetensors write/read round trip (F32, F16, BF16, F64, I64) and sharded == single-file loading.
2. hf.py forward == a second, deliberately naive implementation (python loops over heads and
   positions, math-module rotary, no repeat_kv), float64.
3. left-padded rows == unpadded rows; KV-cache prefill + decode == full forward (float64 and float32).
4. LoRA: unmerged forward == forward with merged weights W + scale * B @ A (incl. lm_head);
   PEFT save/load round trip.
5. torch.optim.AdamW + LambdaLR(cosine with warmup) + clip_grad_norm_ == the formulas in README.md.
6. autograd gradients of the KL loss == central finite differences (float64), several elements.
"""
import math
import os
import sys
import tempfile

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf  # noqa: E402
import make_tiny_model  # noqa: E402
import make_train_fixtures as mtf  # noqa: E402
import safetensors_io  # noqa: E402

FAILS = []


def check(name, value, tol):
    ok = value <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {value:.3e} (tol {tol:.0e})")
    if not ok:
        FAILS.append(name)


def naive_forward(model, ids):
    """One unpadded sequence, positions 0..T-1, written independently of hf.CausalLM.forward."""
    c = model.config
    T = len(ids)
    nh, nkv, hd = model.n_heads, model.n_kv, model.head_dim
    eps = model.eps

    def rms(v, w):
        return w * (v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps))

    # rotary angles with the math module
    base = float(c.get("rope_theta", 10000.0))
    inv = [base ** (-(2 * i) / hd) for i in range(hd // 2)]
    sc = c.get("rope_scaling") or {}
    rt = sc.get("rope_type", sc.get("type"))
    if rt == "linear":
        inv = [f / sc["factor"] for f in inv]
    elif rt == "llama3":
        lo = sc["original_max_position_embeddings"] / sc["low_freq_factor"]
        hi = sc["original_max_position_embeddings"] / sc["high_freq_factor"]
        new = []
        for f in inv:
            wl = 2 * math.pi / f
            if wl < hi:
                new.append(f)
            elif wl > lo:
                new.append(f / sc["factor"])
            else:
                s = (sc["original_max_position_embeddings"] / wl - sc["low_freq_factor"]) / (
                    sc["high_freq_factor"] - sc["low_freq_factor"])
                new.append((1 - s) * f / sc["factor"] + s * f)
        inv = new

    def rope(v, pos):  # v [hd]; pairs (i, i + hd/2)
        out = v.clone()
        half = hd // 2
        for i in range(half):
            a = pos * inv[i]
            x1, x2 = v[i].item(), v[i + half].item()
            out[i] = x1 * math.cos(a) - x2 * math.sin(a)
            out[i + half] = x2 * math.cos(a) + x1 * math.sin(a)
        return out

    x = model.w["embed"][torch.tensor(ids)]
    for L in model.layers:
        h = rms(x, L["in_norm"])

        def proj(n):
            y = h @ L[n].T
            return y + L[n + ".bias"] if L[n + ".bias"] is not None else y

        q, k, v = proj("q_proj"), proj("k_proj"), proj("v_proj")
        heads = []
        for head in range(nh):
            g = head // (nh // nkv)
            qs, ks, vs = q[:, head * hd:(head + 1) * hd], k[:, g * hd:(g + 1) * hd], v[:, g * hd:(g + 1) * hd]
            if model.qk_norm:
                qs, ks = rms(qs, L["q_norm"]), rms(ks, L["k_norm"])
            qs = torch.stack([rope(qs[t], t) for t in range(T)])
            ks = torch.stack([rope(ks[t], t) for t in range(T)])
            o = torch.zeros(T, hd, dtype=x.dtype)
            for t in range(T):
                lo_t = 0
                if model.sliding_window:
                    lo_t = max(0, t - model.sliding_window + 1)
                s = torch.stack([qs[t] @ ks[j] / math.sqrt(hd) for j in range(lo_t, t + 1)])
                p = torch.exp(s - s.max())
                p = p / p.sum()
                o[t] = (p[:, None] * vs[lo_t:t + 1]).sum(0)
            heads.append(o)
        attn = torch.cat(heads, -1)
        o = attn @ L["o_proj"].T
        if L["o_proj.bias"] is not None:
            o = o + L["o_proj.bias"]
        x = x + o
        h = rms(x, L["post_norm"])
        gate = h @ L["gate_proj"].T
        up = h @ L["up_proj"].T
        x = x + (gate * torch.sigmoid(gate) * up) @ L["down_proj"].T
    return rms(x, model.w["norm"]) @ model.w["lm_head"].T


def merged_model(model, lora):
    import copy
    m = copy.copy(model)
    m.layers = [dict(L) for L in model.layers]
    m.w = dict(model.w)
    for path in lora.weights:
        a, b, scale = lora.get(path)
        delta = scale * (b @ a)
        if path == "lm_head":
            m.w["lm_head"] = model.w["lm_head"] + delta
            continue
        i = int(path.split(".")[2])
        m.layers[i][path.rsplit(".", 1)[-1]] = model.layers[i][path.rsplit(".", 1)[-1]] + delta
    return m


def check_safetensors(tmp):
    g = torch.Generator().manual_seed(0)
    ts = {"a": torch.randn(3, 5, generator=g), "b.h": torch.randn(7, generator=g).half(),
          "c": torch.randn(2, 2, 2, generator=g).bfloat16(), "d": torch.randn(4, generator=g).double(),
          "e": torch.arange(6).reshape(2, 3), "empty": torch.zeros(0, 3)}
    p = os.path.join(tmp, "x.safetensors")
    safetensors_io.write(p, ts, {"format": "pt"})
    back = safetensors_io.read(p)
    err = max((back[k].double() - ts[k].double()).abs().max().item() if ts[k].numel() else 0.0 for k in ts)
    same_dtypes = all(back[k].dtype == ts[k].dtype and back[k].shape == ts[k].shape for k in ts)
    check("safetensors round trip", err + (0 if same_dtypes else 1), 0)


def main(dirs):
    torch.set_num_threads(min(2, torch.get_num_threads() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        check_safetensors(tmp)
        cfg = make_tiny_model.full_config(make_tiny_model.PRESETS["tiny-qwen3"])
        make_tiny_model.write_model(os.path.join(tmp, "one"), cfg, seed=3, shards=1)
        make_tiny_model.write_model(os.path.join(tmp, "sharded"), cfg, seed=3, shards=3)
        a = hf.load_state_dict(os.path.join(tmp, "one"))
        b = hf.load_state_dict(os.path.join(tmp, "sharded"))
        check("sharded == single file", 0 if a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) else 1, 0)
        # Mistral sliding window actually in effect (window 3 < sequence length 9)
        spec = dict(make_tiny_model.PRESETS["tiny-mistral"], sliding_window=3, torch_dtype="float32")
        make_tiny_model.write_model(os.path.join(tmp, "sw"), make_tiny_model.full_config(spec), seed=4)
        msw = hf.load_model(os.path.join(tmp, "sw"), torch.float64)
        ids = torch.randint(3, msw.vocab, (1, 9), generator=torch.Generator().manual_seed(2))
        out, _ = msw(ids)
        check("mistral sliding_window=3: forward == naive loops", (out[0] - naive_forward(msw, ids[0].tolist())).abs().max().item(), 1e-10)
        msw.sliding_window = None
        nosw, _ = msw(ids)
        print(f"     (sliding window changes logits by {(nosw - out).abs().max().item():.3f})")
        msw2 = hf.load_model(os.path.join(tmp, "sw"), torch.float64)
        steps = [msw2(ids[:, :4], cache=[])[0]]
        cache = msw2(ids[:, :4], cache=[])[1]
        for t in range(4, 9):
            lg, cache = msw2(ids[:, t:t + 1], cache=cache)
            steps.append(lg)
        check("mistral sliding_window=3: kv-cache == full", (torch.cat(steps, 1) - out).abs().max().item(), 1e-10)

    for d in dirs:
        name = os.path.basename(os.path.normpath(d))
        m = hf.load_model(d, torch.float64)
        g = torch.Generator().manual_seed(11)
        ids = torch.randint(3, m.vocab, (2, 9), generator=g)
        ref = torch.stack([naive_forward(m, r.tolist()) for r in ids])
        out, _ = m(ids)
        check(f"{name}: forward == naive loops (f64)", (out - ref).abs().max().item(), 1e-10)

        pad = 4
        mask = torch.ones(2, 9, dtype=torch.long)
        mask[0, :pad] = 0
        padded = ids.clone()
        padded[0, :pad] = 7
        outp, _ = m(padded, mask)
        alone, _ = m(ids[:1, pad:])
        check(f"{name}: padded row == unpadded (f64)", (outp[0, pad:] - alone[0]).abs().max().item(), 1e-10)

        for dt, tol in ((torch.float64, 1e-10), (torch.float32, 2e-4)):
            md = hf.load_model(d, dt)
            full, _ = md(padded, mask)
            lg, cache = md(padded[:, :5], mask[:, :5], cache=[])
            steps = [lg]
            for t in range(5, 9):
                lg, cache = md(padded[:, t:t + 1], mask[:, :t + 1], cache=cache)
                steps.append(lg)
            inc = torch.cat(steps, 1)
            err = (inc - full)[mask.bool()].abs().max().item()
            check(f"{name}: kv-cache decode == full forward ({str(dt)[6:]})", err, tol)

        lora = hf.LoRA.init_random(m.config, 4, 8.0, seed=5, dtype=torch.float64, b_std=0.05)
        with_lora, _ = m(ids, lora=lora)
        merged, _ = merged_model(m, lora)(ids)
        check(f"{name}: lora unmerged == merged weights", (with_lora - merged).abs().max().item(), 1e-10)
        zero = lora.to(torch.float64)
        for w in zero.weights.values():
            w["B"].zero_()
        z, _ = m(ids, lora=zero)
        check(f"{name}: lora with B=0 == base", (z - out).abs().max().item(), 0)
        with tempfile.TemporaryDirectory() as tmp:
            lora.save_peft(tmp, dtype=torch.float64)
            back = hf.LoRA.load_peft(tmp, torch.float64)
            diff = max((back.weights[p][w] - lora.weights[p][w]).abs().max().item() for p in lora.weights for w in "AB")
            check(f"{name}: PEFT save/load round trip", diff + abs(back.scale - lora.scale), 0)

    check_optimizer()
    check_fd(dirs[0])
    print(f"{len(FAILS)} failed" if FAILS else "all checks passed")
    return 1 if FAILS else 0


def check_optimizer():
    """torch AdamW/LambdaLR/clip vs the README formulas, on random quadratic losses."""
    g = torch.Generator().manual_seed(0)
    p_t = [torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_(True),
           torch.randn(5, generator=g, dtype=torch.float64).requires_grad_(True)]
    targets = [torch.randn_like(p) * 3 for p in p_t]
    p_m = [p.detach().clone() for p in p_t]
    lr0, b1, b2, eps, wd, warm, total = 1e-2, 0.9, 0.999, 1e-8, 0.1, 2, 10
    opt = torch.optim.AdamW(p_t, lr=lr0, betas=(b1, b2), eps=eps, weight_decay=wd)
    sch = torch.optim.lr_scheduler.LambdaLR(opt, mtf.cosine_with_warmup(warm, total))
    m1 = [torch.zeros_like(p) for p in p_m]
    v1 = [torch.zeros_like(p) for p in p_m]
    err = 0.0
    for step in range(total):
        opt.zero_grad()
        loss = sum(((p - t) ** 4).sum() for p, t in zip(p_t, targets))
        loss.backward()
        tn = torch.nn.utils.clip_grad_norm_(p_t, 1.0)
        opt.step()
        sch.step()
        # manual
        grads = [4 * (p - t) ** 3 for p, t in zip(p_m, targets)]
        norm = math.sqrt(sum(float((gr * gr).sum()) for gr in grads))
        coef = min(1.0, 1.0 / (norm + 1e-6))
        grads = [gr * coef for gr in grads]
        lr = lr0 * (step / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm))))
        t = step + 1
        for i, p in enumerate(p_m):
            p.mul_(1 - lr * wd)
            m1[i] = b1 * m1[i] + (1 - b1) * grads[i]
            v1[i] = b2 * v1[i] + (1 - b2) * grads[i] ** 2
            mhat = m1[i] / (1 - b1 ** t)
            denom = (v1[i] / (1 - b2 ** t)).sqrt() + eps
            p.sub_(lr * mhat / denom)
        err = max(err, abs(tn.item() - norm) / norm, *[(a - b).abs().max().item() for a, b in zip(p_t, p_m)])
    check("AdamW + cosine warmup + clip == README formulas", err, 1e-12)


def check_fd(d):
    cfg = hf.load_config(d)
    m = hf.load_model(d, torch.float64)
    samples = mtf.make_samples(m.vocab, 3)
    lora = hf.LoRA.init_random(cfg, 2, 4.0, seed=9, dtype=torch.float64).requires_grad_(True)
    teacher = mtf.teacher_logits_all(m, samples)
    named = lora.named_parameters()
    for kind in ("kl", "ce"):
        loss = mtf.batch_loss(m, samples, lora, kind, 2.0, teacher)
        grads = dict(zip([k for k, _ in named], torch.autograd.grad(loss, [t for _, t in named])))
        worst = 0.0
        gg = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for k, t in named[::5] + named[-2:]:
                flat = t.view(-1)
                j = int(torch.randint(0, flat.numel(), (1,), generator=gg))
                old = flat[j].item()
                flat[j] = old + 1e-6
                lp = mtf.batch_loss(m, samples, lora, kind, 2.0, teacher).item()
                flat[j] = old - 1e-6
                lm = mtf.batch_loss(m, samples, lora, kind, 2.0, teacher).item()
                flat[j] = old
                fd = (lp - lm) / 2e-6
                ag = grads[k].view(-1)[j].item()
                worst = max(worst, abs(fd - ag) / max(abs(ag), 1e-4))
        check(f"{os.path.basename(os.path.normpath(d))}: {kind} grads == finite differences ({len(named[::5]) + 2} elems)",
              worst, 1e-5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
