#!/usr/bin/python3
"""Write tiny random-weight models in the Hugging Face layout (config.json + model.safetensors).

usage: make_tiny_model.py OUT_ROOT [--only NAME ...] [--seed S]
       make_tiny_model.py OUT_DIR --custom '{"model_type": "llama", "hidden_size": 576, ...}'
           [--dtype float32|bfloat16|float16] [--shards N] [--seed S]

Presets (hidden 64, intermediate 128, 2 layers, 4 heads, 2 kv heads, vocab 512):
  tiny-llama         LlamaForCausalLM, tied embeddings, rope_theta 10000
  tiny-llama-untied  LlamaForCausalLM, separate lm_head, rope_scaling linear (factor 2)
  tiny-llama3        LlamaForCausalLM, rope_scaling llama3 (factor 8, low 1, high 4, original 64)
  tiny-qwen2         Qwen2ForCausalLM, q/k/v bias, tied, stored as bfloat16
  tiny-qwen3         Qwen3ForCausalLM, head_dim 24 (q/o width 96), q_norm/k_norm, tied
  tiny-mistral       MistralForCausalLM, untied, sliding_window 4096, stored as float16

Weights are NOT the HF initialisation (normal(0, 0.02)), which gives near-uniform outputs; they are
scaled so that every part of the network matters: Linear weights ~ N(0, 1/in_features) except
o_proj/down_proj ~ N(0, 16/in_features), embeddings and an untied lm_head ~ N(0, 0.5^2), norm weights
~ 1 + N(0, 0.1^2), biases ~ N(0, 0.1^2). Deterministic from --seed (preset i uses seed + i).
"""
import argparse
import json
import math
import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

TRANSFORMERS_VERSION = "4.46.3"

BASE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 512,
}

PRESETS = {
    "tiny-llama": {"model_type": "llama", "tie_word_embeddings": True},
    "tiny-llama-untied": {"model_type": "llama", "tie_word_embeddings": False,
                          "rope_scaling": {"type": "linear", "rope_type": "linear", "factor": 2.0}},
    "tiny-llama3": {"model_type": "llama", "tie_word_embeddings": True, "rope_theta": 10000.0,
                    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                     "original_max_position_embeddings": 64, "rope_type": "llama3"}},
    "tiny-qwen2": {"model_type": "qwen2", "tie_word_embeddings": True, "torch_dtype": "bfloat16"},
    "tiny-qwen3": {"model_type": "qwen3", "tie_word_embeddings": True, "head_dim": 24},
    "tiny-mistral": {"model_type": "mistral", "tie_word_embeddings": False, "sliding_window": 4096,
                     "torch_dtype": "float16"},
}

# o_proj/down_proj gain: makes the layers' contributions dominate the residual stream, so a tied
# lm_head does not just predict the input token again (gain 1: 58 % of top-1 = input token).
RESIDUAL_GAIN = 4.0

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def full_config(spec):
    """A config.json as transformers' save_pretrained writes it for the architecture."""
    s = dict(BASE)
    s.update(spec)
    mt = s.pop("model_type")
    h, nh = s["hidden_size"], s["num_attention_heads"]
    head_dim = s.pop("head_dim", None) or h // nh
    common = {
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": h,
        "initializer_range": 0.02,
        "intermediate_size": s["intermediate_size"],
        "max_position_embeddings": s["max_position_embeddings"],
        "num_attention_heads": nh,
        "num_hidden_layers": s["num_hidden_layers"],
        "num_key_value_heads": s["num_key_value_heads"],
        "rms_norm_eps": s.get("rms_norm_eps", 1e-6),
        "rope_scaling": s.get("rope_scaling"),
        "rope_theta": s.get("rope_theta", 10000.0),
        "tie_word_embeddings": s.get("tie_word_embeddings", False),
        "torch_dtype": s.get("torch_dtype", "float32"),
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": s["vocab_size"],
    }
    if mt == "llama":
        c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
             "bos_token_id": 1, "eos_token_id": 2, "head_dim": head_dim, "mlp_bias": False, "pretraining_tp": 1}
    elif mt == "qwen2":
        c = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "bos_token_id": 1, "eos_token_id": 2,
             "max_window_layers": s["num_hidden_layers"], "sliding_window": None, "use_sliding_window": False}
        if head_dim != h // nh:
            raise ValueError("qwen2 has no head_dim option")
    elif mt == "qwen3":
        c = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False,
             "bos_token_id": 1, "eos_token_id": 2, "head_dim": head_dim,
             "max_window_layers": s["num_hidden_layers"], "sliding_window": None, "use_sliding_window": False}
    elif mt == "mistral":
        c = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "bos_token_id": 1,
             "eos_token_id": 2, "head_dim": head_dim, "sliding_window": s.get("sliding_window")}
    else:
        raise ValueError(f"unknown model_type {mt}")
    c.update(common)
    for k in ("attention_bias", "mlp_bias"):
        if k in s:
            c[k] = s[k]
    return dict(sorted(c.items()))


def random_weights(config, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    h = config["hidden_size"]
    nh = config["num_attention_heads"]
    nkv = config["num_key_value_heads"]
    hd = config.get("head_dim") or h // nh
    inter = config["intermediate_size"]
    V = config["vocab_size"]
    mt = config["model_type"]

    def lin(out_f, in_f, gain=1.0):
        return torch.randn(out_f, in_f, generator=g) * (gain / math.sqrt(in_f))

    def norm(n):
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    def bias(n):
        return 0.1 * torch.randn(n, generator=g)

    w = {"model.embed_tokens.weight": 0.5 * torch.randn(V, h, generator=g)}
    qkv_bias = mt == "qwen2" or config.get("attention_bias", False)
    o_bias = mt != "qwen2" and config.get("attention_bias", False)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(h)
        w[p + "self_attn.q_proj.weight"] = lin(nh * hd, h)
        w[p + "self_attn.k_proj.weight"] = lin(nkv * hd, h)
        w[p + "self_attn.v_proj.weight"] = lin(nkv * hd, h)
        w[p + "self_attn.o_proj.weight"] = lin(h, nh * hd, RESIDUAL_GAIN)
        if qkv_bias:
            w[p + "self_attn.q_proj.bias"] = bias(nh * hd)
            w[p + "self_attn.k_proj.bias"] = bias(nkv * hd)
            w[p + "self_attn.v_proj.bias"] = bias(nkv * hd)
        if o_bias:
            w[p + "self_attn.o_proj.bias"] = bias(h)
        if mt == "qwen3":
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "post_attention_layernorm.weight"] = norm(h)
        w[p + "mlp.gate_proj.weight"] = lin(inter, h)
        w[p + "mlp.up_proj.weight"] = lin(inter, h)
        w[p + "mlp.down_proj.weight"] = lin(h, inter, RESIDUAL_GAIN)
        if config.get("mlp_bias"):
            w[p + "mlp.gate_proj.bias"] = bias(inter)
            w[p + "mlp.up_proj.bias"] = bias(inter)
            w[p + "mlp.down_proj.bias"] = bias(h)
    w["model.norm.weight"] = norm(h)
    if not config["tie_word_embeddings"]:
        w["lm_head.weight"] = 0.5 * torch.randn(V, h, generator=g)
    return {k: v.to(dtype) for k, v in w.items()}


def write_model(out_dir, config, seed=0, shards=1):
    os.makedirs(out_dir, exist_ok=True)
    dtype = DTYPES[config.get("torch_dtype", "float32")]
    w = random_weights(config, seed, dtype)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for stale in ("model.safetensors", "model.safetensors.index.json"):
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    meta = {"format": "pt"}
    if shards <= 1:
        safetensors_io.write(os.path.join(out_dir, "model.safetensors"), w, meta)
    else:
        names = list(w)  # insertion order: embeddings, layers in order, norm, lm_head
        per = math.ceil(len(names) / shards)
        weight_map = {}
        total = 0
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: w[n] for n in names[s * per:(s + 1) * per]}
            safetensors_io.write(os.path.join(out_dir, fname), part, meta)
            for n, t in part.items():
                weight_map[n] = fname
                total += t.numel() * t.element_size()
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
            f.write("\n")
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": config.get("bos_token_id", 1), "eos_token_id": config.get("eos_token_id", 2),
                   "transformers_version": TRANSFORMERS_VERSION}, f, indent=2)
        f.write("\n")
    n_params = sum(t.numel() for t in w.values())
    print(f"wrote {out_dir}: {config['architectures'][0]} {n_params} params, {config.get('torch_dtype')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--only", nargs="*", help="preset names (default: all)")
    ap.add_argument("--custom", help="JSON spec for a single model written to OUT")
    ap.add_argument("--dtype", choices=sorted(DTYPES), help="storage dtype (overrides the preset)")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.custom:
        spec = json.loads(a.custom)
        if a.dtype:
            spec["torch_dtype"] = a.dtype
        write_model(a.out, full_config(spec), a.seed, a.shards)
        return
    for i, name in enumerate(a.only or PRESETS):
        spec = dict(PRESETS[name])
        if a.dtype:
            spec["torch_dtype"] = a.dtype
        write_model(os.path.join(a.out, name), full_config(spec), a.seed + i, a.shards)


if __name__ == "__main__":
    main()
