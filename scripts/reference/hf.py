"""Independent PyTorch reference of Hugging Face transformers (v4.4x) causal LMs:
LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM.

Only the stdlib and torch are used (no transformers / safetensors packages). The maths follows
transformers' modeling_llama.py / modeling_qwen2.py / modeling_qwen3.py / modeling_mistral.py
(eager attention). Two deliberate differences, both documented in README.md:
  * HF computes RMSNorm, the attention softmax and the rotary cos/sin in float32 whatever the model
    dtype. Here they are computed in max(float32, model dtype): identical for float32/bf16/f16
    models, and full float64 when the whole model is cast to float64 (reference fixtures).
  * position ids default to cumsum(attention_mask) - 1 clamped at 0 (what `generate` does for
    the real tokens) instead of HF forward's 0..T-1, so left-padded rows equal unpadded ones.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

import safetensors_io

ARCHS = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "MistralForCausalLM": "mistral",
}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


# ----------------------------------------------------------------------------------------------
# loading

def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def load_state_dict(model_dir):
    """{name: tensor} in stored dtypes, from model.safetensors or a sharded index."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        shards = {}
        for name, shard in weight_map.items():
            shards.setdefault(shard, []).append(name)
        out = {}
        for shard, names in sorted(shards.items()):
            out.update(safetensors_io.read(os.path.join(model_dir, shard), names))
        missing = set(weight_map) - set(out)
        if missing:
            raise ValueError(f"sharded checkpoint: tensors listed in index but absent: {sorted(missing)[:5]}")
        return out
    if os.path.exists(single):
        return safetensors_io.read(single)
    raise FileNotFoundError(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")


def model_type(config):
    archs = config.get("architectures") or []
    for a in archs:
        if a in ARCHS:
            return ARCHS[a]
    mt = config.get("model_type")
    if mt in ARCHS.values():
        return mt
    raise ValueError(f"unsupported architecture {archs} / model_type {mt}")


# ----------------------------------------------------------------------------------------------
# rotary embedding (transformers modeling_rope_utils.py)

def rope_inv_freq(config, dtype):
    """inv_freq (length head_dim/2) and attention scaling, incl. rope_scaling default/linear/llama3."""
    head_dim = head_dim_of(config)
    base = float(config.get("rope_theta", 10000.0))
    dim = int(head_dim * config.get("partial_rotary_factor", 1.0))
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype) / dim))
    scaling = config.get("rope_scaling") or None
    attention_factor = 1.0
    if scaling:
        rtype = scaling.get("rope_type", scaling.get("type", "default"))
        if rtype == "default":
            pass
        elif rtype == "linear":
            inv_freq = inv_freq / float(scaling["factor"])
        elif rtype == "llama3":
            factor = float(scaling["factor"])
            low_freq_factor = float(scaling["low_freq_factor"])
            high_freq_factor = float(scaling["high_freq_factor"])
            old_context_len = float(scaling["original_max_position_embeddings"])
            low_freq_wavelen = old_context_len / low_freq_factor
            high_freq_wavelen = old_context_len / high_freq_factor
            wavelen = 2 * math.pi / inv_freq
            inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
            smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
            is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
            inv_freq = torch.where(is_medium, smoothed, inv_freq_llama)
        else:
            raise NotImplementedError(f"rope_scaling type {rtype!r} not implemented in the reference")
    return inv_freq, attention_factor


def head_dim_of(config):
    hd = config.get("head_dim")
    return int(hd) if hd else config["hidden_size"] // config["num_attention_heads"]


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


# ----------------------------------------------------------------------------------------------
# LoRA

class LoRA:
    """LoRA adapter: for module path p (e.g. 'model.layers.0.self_attn.q_proj' or 'lm_head'),
    y = base(x) + scale * (x @ A.T) @ B.T with A [r, in], B [out, r], scale = alpha / r
    (alpha / sqrt(r) with use_rslora). Dropout is not applied (inference / dropout 0)."""

    def __init__(self, r, alpha, weights, use_rslora=False, config=None):
        self.r = int(r)
        self.alpha = float(alpha)
        self.use_rslora = bool(use_rslora)
        self.scale = self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)
        self.weights = weights  # {path: {"A": tensor, "B": tensor}}
        self.config = config or {}
        self.scales = {}  # per-path override (rank_pattern / alpha_pattern)

    def get(self, path):
        w = self.weights.get(path)
        if w is None:
            return None
        return w["A"], w["B"], self.scales.get(path, self.scale)

    def parameters(self):
        return [t for p in sorted(self.weights) for t in (self.weights[p]["A"], self.weights[p]["B"])]

    def named_parameters(self):
        """PEFT key names -> tensors, in a fixed order."""
        out = []
        for p in sorted(self.weights, key=_path_sort_key):
            out.append((peft_key(p, "A"), self.weights[p]["A"]))
            out.append((peft_key(p, "B"), self.weights[p]["B"]))
        return out

    @staticmethod
    def init_random(config, r, alpha, targets=LORA_TARGETS, seed=0, dtype=torch.float32, b_std=0.02):
        """A ~ U(-1/sqrt(in), 1/sqrt(in)), B ~ N(0, b_std), both from torch.Generator(seed)."""
        g = torch.Generator().manual_seed(seed)
        weights = {}
        for path, (fan_in, fan_out) in module_shapes(config).items():
            if path.rsplit(".", 1)[-1] not in targets:
                continue
            bound = 1.0 / math.sqrt(fan_in)
            a = (torch.rand(r, fan_in, generator=g, dtype=torch.float64) * 2 - 1) * bound
            b = torch.randn(fan_out, r, generator=g, dtype=torch.float64) * b_std
            weights[path] = {"A": a.to(dtype), "B": b.to(dtype)}
        cfg = {"r": r, "lora_alpha": alpha, "target_modules": list(targets)}
        return LoRA(r, alpha, weights, config=cfg)

    def to(self, dtype):
        w = {p: {"A": v["A"].detach().to(dtype).clone(), "B": v["B"].detach().to(dtype).clone()}
             for p, v in self.weights.items()}
        out = LoRA(self.r, self.alpha, w, self.use_rslora, self.config)
        out.scales = dict(self.scales)
        return out

    def requires_grad_(self, flag=True):
        for t in self.parameters():
            t.requires_grad_(flag)
        return self

    # PEFT layout ---------------------------------------------------------------------------
    @staticmethod
    def load_peft(adapter_dir, dtype=torch.float32):
        with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
            cfg = json.load(f)
        if cfg.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"not a LoRA adapter: {cfg.get('peft_type')}")
        if cfg.get("fan_in_fan_out"):
            raise NotImplementedError("fan_in_fan_out adapters")
        tensors = safetensors_io.read(os.path.join(adapter_dir, "adapter_model.safetensors"))
        weights = {}
        for key, t in tensors.items():
            path, which = parse_peft_key(key)
            weights.setdefault(path, {})[which] = t.to(dtype)
        for p, w in weights.items():
            if set(w) != {"A", "B"}:
                raise ValueError(f"adapter module {p} lacks lora_A or lora_B")
        lora = LoRA(cfg["r"], cfg.get("lora_alpha", cfg["r"]), weights, cfg.get("use_rslora", False), cfg)
        rank_pattern = cfg.get("rank_pattern") or {}
        alpha_pattern = cfg.get("alpha_pattern") or {}
        if rank_pattern or alpha_pattern:
            for p in weights:
                r = lora.r
                a = lora.alpha
                for k, v in rank_pattern.items():
                    if p == k or p.endswith("." + k):
                        r = v
                for k, v in alpha_pattern.items():
                    if p == k or p.endswith("." + k):
                        a = v
                lora.scales[p] = a / (math.sqrt(r) if lora.use_rslora else r)
        return lora

    def save_peft(self, adapter_dir, base_model_name_or_path=None, dtype=torch.float32):
        os.makedirs(adapter_dir, exist_ok=True)
        targets = sorted({p.rsplit(".", 1)[-1] for p in self.weights})
        cfg = {
            "alpha_pattern": {},
            "auto_mapping": None,
            "base_model_name_or_path": base_model_name_or_path,
            "bias": "none",
            "fan_in_fan_out": False,
            "inference_mode": True,
            "init_lora_weights": True,
            "layers_pattern": None,
            "layers_to_transform": None,
            "lora_alpha": self.alpha,
            "lora_dropout": 0.0,
            "modules_to_save": None,
            "peft_type": "LORA",
            "r": self.r,
            "rank_pattern": {},
            "revision": None,
            "target_modules": targets,
            "task_type": "CAUSAL_LM",
            "use_dora": False,
            "use_rslora": self.use_rslora,
        }
        with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        tensors = {k: v.detach().to(dtype) for k, v in self.named_parameters()}
        safetensors_io.write(os.path.join(adapter_dir, "adapter_model.safetensors"), tensors)


def peft_key(path, which):
    return f"base_model.model.{path}.lora_{which}.weight"


def parse_peft_key(key):
    k = key
    if k.startswith("base_model.model."):
        k = k[len("base_model.model."):]
    for which in ("A", "B"):
        for suffix in (f".lora_{which}.weight", f".lora_{which}.default.weight"):
            if k.endswith(suffix):
                return k[: -len(suffix)], which
    raise ValueError(f"unrecognised adapter key {key}")


def _path_sort_key(path):
    parts = path.split(".")
    return [(0, int(p)) if p.isdigit() else (1, p) for p in parts]


def module_shapes(config):
    """{module path: (in_features, out_features)} for every LoRA-targetable Linear."""
    h = config["hidden_size"]
    hd = head_dim_of(config)
    nh = config["num_attention_heads"]
    nkv = config.get("num_key_value_heads") or nh
    inter = config["intermediate_size"]
    out = {}
    for i in range(config["num_hidden_layers"]):
        a = f"model.layers.{i}.self_attn."
        m = f"model.layers.{i}.mlp."
        out[a + "q_proj"] = (h, nh * hd)
        out[a + "k_proj"] = (h, nkv * hd)
        out[a + "v_proj"] = (h, nkv * hd)
        out[a + "o_proj"] = (nh * hd, h)
        out[m + "gate_proj"] = (h, inter)
        out[m + "up_proj"] = (h, inter)
        out[m + "down_proj"] = (inter, h)
    out["lm_head"] = (h, config["vocab_size"])
    return out


# ----------------------------------------------------------------------------------------------
# the model

def _compute_dtype(dtype):
    return torch.promote_types(dtype, torch.float32)


class CausalLM:
    def __init__(self, config, state_dict, dtype=torch.float32):
        self.config = config
        self.arch = model_type(config)
        self.dtype = dtype
        c = config
        self.hidden = c["hidden_size"]
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads") or self.n_heads
        self.head_dim = head_dim_of(c)
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.vocab = c["vocab_size"]
        act = c.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise NotImplementedError(f"hidden_act {act}")
        if c.get("use_sliding_window"):
            raise NotImplementedError("use_sliding_window=true (Qwen sliding window) not implemented")
        # MistralConfig defaults sliding_window to 4096 when the key is absent; null disables it
        self.sliding_window = c.get("sliding_window", 4096) if self.arch == "mistral" else None
        self.tie = bool(c.get("tie_word_embeddings", False))
        if self.arch == "qwen2":
            qkv_bias, o_bias = True, False
        else:
            qkv_bias = o_bias = bool(c.get("attention_bias", False))
        mlp_bias = bool(c.get("mlp_bias", False)) if self.arch == "llama" else False
        self.qk_norm = self.arch == "qwen3"

        sd = state_dict
        used = set()

        def take(name, required=True):
            if name not in sd:
                if required:
                    raise KeyError(f"missing weight {name}")
                return None
            used.add(name)
            return sd[name].to(dtype)

        self.w = {}
        self.w["embed"] = take("model.embed_tokens.weight")
        self.layers = []
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            L = {
                "in_norm": take(p + "input_layernorm.weight"),
                "post_norm": take(p + "post_attention_layernorm.weight"),
            }
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                L[n] = take(p + f"self_attn.{n}.weight")
                has_bias = qkv_bias if n != "o_proj" else o_bias
                L[n + ".bias"] = take(p + f"self_attn.{n}.bias") if has_bias else None
            for n in ("gate_proj", "up_proj", "down_proj"):
                L[n] = take(p + f"mlp.{n}.weight")
                L[n + ".bias"] = take(p + f"mlp.{n}.bias") if mlp_bias else None
            if self.qk_norm:
                L["q_norm"] = take(p + "self_attn.q_norm.weight")
                L["k_norm"] = take(p + "self_attn.k_norm.weight")
            self.layers.append(L)
        self.w["norm"] = take("model.norm.weight")
        if self.tie:
            self.w["lm_head"] = self.w["embed"]
            used.add("lm_head.weight")  # HF ignores a stored copy when tied
        else:
            self.w["lm_head"] = take("lm_head.weight")
        self.unused = sorted(set(sd) - used)  # HF would warn about these and ignore them
        self.inv_freq, self.attention_factor = rope_inv_freq(c, _compute_dtype(dtype))

    @staticmethod
    def from_pretrained(model_dir, dtype=torch.float32):
        return CausalLM(load_config(model_dir), load_state_dict(model_dir), dtype)

    # building blocks ---------------------------------------------------------------------------
    def rms_norm(self, x, weight):
        input_dtype = x.dtype
        h = x.to(_compute_dtype(input_dtype))
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.eps)
        return weight * h.to(input_dtype)

    @staticmethod
    def linear(x, weight, bias, lora, path):
        y = F.linear(x, weight, bias)
        if lora is not None:
            ab = lora.get(path)
            if ab is not None:
                a, b, scale = ab
                y = y + F.linear(F.linear(x, a), b) * scale
        return y

    def rotary(self, position_ids, dtype):
        # position_ids [B, T] -> cos, sin [B, T, head_dim]
        freqs = position_ids.to(self.inv_freq.dtype)[:, :, None] * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_factor
        sin = emb.sin() * self.attention_factor
        return cos.to(dtype), sin.to(dtype)

    # forward -----------------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask=None, position_ids=None, lora=None, cache=None,
                logits_index=None, return_hidden=False):
        """input_ids [B, T] (long). attention_mask [B, past+T] (1 = token, 0 = pad) or None.
        position_ids [B, T] or None (-> from the mask: cumsum-1 clamped at 0; with a cache the
        positions continue from the mask over past+T). cache: list of (k, v) per layer with shape
        [B, n_kv, past, head_dim] or None; a new cache is returned when cache is not None
        (pass [] to start one). logits_index: optional LongTensor [B, K] selecting positions
        whose logits are computed (saves the lm_head on the rest). Returns (logits, cache)."""
        B, T = input_ids.shape
        past = cache[0][0].shape[2] if cache else 0
        S = past + T
        if attention_mask is None:
            attention_mask = torch.ones(B, S, dtype=torch.long)
        attention_mask = attention_mask.to(torch.long)
        assert attention_mask.shape == (B, S), (attention_mask.shape, B, S)
        if position_ids is None:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
        dtype = self.dtype
        x = self.w["embed"][input_ids]
        cos, sin = self.rotary(position_ids, dtype)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, d]

        # mask: key j visible to query at cache position c = past + t iff j <= c, mask[b, j] = 1
        # (and j > c - sliding_window for Mistral). Masked scores are set to finfo.min as HF does.
        q_pos = torch.arange(past, S)[:, None]
        k_pos = torch.arange(S)[None, :]
        allowed = k_pos <= q_pos
        if self.sliding_window:
            allowed = allowed & (k_pos > q_pos - int(self.sliding_window))
        allowed = allowed[None, None] & (attention_mask[:, None, None, :] != 0)  # [B,1,T,S]
        sdt = _compute_dtype(dtype)
        min_value = torch.finfo(sdt).min

        new_cache = [] if cache is not None else None
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        rep = nh // nkv
        for i, L in enumerate(self.layers):
            pa = f"model.layers.{i}.self_attn."
            pm = f"model.layers.{i}.mlp."
            residual = x
            h = self.rms_norm(x, L["in_norm"])
            q = self.linear(h, L["q_proj"], L["q_proj.bias"], lora, pa + "q_proj").view(B, T, nh, hd)
            k = self.linear(h, L["k_proj"], L["k_proj.bias"], lora, pa + "k_proj").view(B, T, nkv, hd)
            v = self.linear(h, L["v_proj"], L["v_proj.bias"], lora, pa + "v_proj").view(B, T, nkv, hd)
            if self.qk_norm:
                q = self.rms_norm(q, L["q_norm"])
                k = self.rms_norm(k, L["k_norm"])
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, hd]
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache:
                k = torch.cat([cache[i][0], k], dim=2)
                v = torch.cat([cache[i][1], v], dim=2)
            if new_cache is not None:
                new_cache.append((k, v))
            if rep > 1:  # repeat_kv: kv head g serves query heads g*rep .. g*rep+rep-1
                k = k[:, :, None].expand(B, nkv, rep, S, hd).reshape(B, nh, S, hd)
                v = v[:, :, None].expand(B, nkv, rep, S, hd).reshape(B, nh, S, hd)
            scores = torch.matmul(q, k.transpose(2, 3)) * (hd ** -0.5)
            scores = scores.to(sdt).masked_fill(~allowed, min_value)
            probs = torch.softmax(scores, dim=-1).to(dtype)
            attn = torch.matmul(probs, v)  # [B, nh, T, hd]
            attn = attn.transpose(1, 2).reshape(B, T, nh * hd)
            x = residual + self.linear(attn, L["o_proj"], L["o_proj.bias"], lora, pa + "o_proj")
            residual = x
            h = self.rms_norm(x, L["post_norm"])
            g = self.linear(h, L["gate_proj"], L["gate_proj.bias"], lora, pm + "gate_proj")
            u = self.linear(h, L["up_proj"], L["up_proj.bias"], lora, pm + "up_proj")
            x = residual + self.linear(F.silu(g) * u, L["down_proj"], L["down_proj.bias"], lora, pm + "down_proj")
        if logits_index is not None:
            x = torch.gather(x, 1, logits_index[:, :, None].expand(-1, -1, x.shape[-1]))
        h = self.rms_norm(x, self.w["norm"])
        if return_hidden:
            return h, new_cache
        logits = self.linear(h, self.w["lm_head"], None, lora, "lm_head")
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # HF: logits.float()
        return logits, new_cache

    __call__ = forward

    @torch.no_grad()
    def generate_greedy(self, input_ids, max_new_tokens, attention_mask=None, lora=None):
        """Greedy decoding with the KV cache (prefill, then one token per step).
        Returns (new tokens [B, max_new_tokens], list of per-step logits [B, V])."""
        B, T = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long)
        logits, cache = self.forward(input_ids, attention_mask, lora=lora, cache=[])
        step_logits = [logits[:, -1]]
        nxt = logits[:, -1].argmax(-1)
        out = [nxt]
        mask = attention_mask
        for _ in range(max_new_tokens - 1):
            mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype)], dim=1)
            logits, cache = self.forward(nxt[:, None], mask, lora=lora, cache=cache)
            step_logits.append(logits[:, -1])
            nxt = logits[:, -1].argmax(-1)
            out.append(nxt)
        return torch.stack(out, 1), step_logits


def load_model(model_dir, dtype=torch.float32):
    return CausalLM.from_pretrained(model_dir, dtype)
