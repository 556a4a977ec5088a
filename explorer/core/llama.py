"""A LLaMA-architecture decoder in one readable file, numerically equal to transformers' Llama,
Mistral (sliding-window attention) and Qwen2 (biases on q, k, v), with RoPE's `linear` and `llama3`
scaling.

Parameter names follow `LlamaForCausalLM` (model.embed_tokens, model.layers.{i}.self_attn.q_proj, ...),
so an HF checkpoint's safetensors load unchanged (explorer.core.checkpoint reads the directories). Each attention layer may carry a zero-init gated
prefix (see `prefix.py`); the attention computes it in the same pass that trains, and hands out its
probabilities over [prompt | tokens] when asked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from explorer.schema.llama_config import LlamaConfig  # noqa: F401 - re-exported: the model's config


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rope_inv_freq(config: LlamaConfig, device=None) -> torch.Tensor:
    """RoPE's inverse frequencies (head_dim / 2,), with `linear` or `llama3` scaling computed as
    transformers' modeling_rope_utils does (same float32 operations, so the same bits)."""
    d = config.head_dim
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64, device=device).float() / d))
    scaling = config.rope_scaling
    if scaling is None:
        return inv
    factor = scaling["factor"]
    if scaling["rope_type"] == "linear":  # positions divided by the factor, folded into the frequencies
        return inv / factor
    # llama3: long wavelengths slowed by the factor, short ones kept, a smooth ramp between
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    wavelen = 2 * math.pi / inv
    inv_llama = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_llama / factor + smooth * inv_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_llama)


class RotaryEmbedding(nn.Module):
    def __init__(self, config: LlamaConfig, device=None):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(config, device), persistent=False)

    def forward(self, seq_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(seq_len, device=self.inv_freq.device, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq.float())
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


def attention_blocked(q_len: int, k_len: int, window: int | None, device) -> torch.Tensor:
    """(q_len, k_len) True where a query may not look: later positions, and (with a sliding
    window, as transformers' sliding_window_overlay) keys `window` or more positions back. The
    queries are the last q_len of the k_len positions."""
    q = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    k = torch.arange(k_len, device=device)[None, :]
    blocked = k > q
    if window is not None:
        blocked |= k <= q - window
    return blocked


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, Hkv, T, d) -> (B, Hkv * n_rep, T, d), each kv head serving n_rep query heads in turn."""
    if n_rep == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


class LlamaAttention(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.window = config.window_of(layer_idx)
        c, h, hkv, d = config.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim
        qkv_bias = config.attention_bias or config.qkv_bias
        self.q_proj = nn.Linear(c, h * d, bias=qkv_bias)
        self.k_proj = nn.Linear(c, hkv * d, bias=qkv_bias)
        self.v_proj = nn.Linear(c, hkv * d, bias=qkv_bias)
        self.o_proj = nn.Linear(h * d, c, bias=config.attention_bias)
        # A zero-init gated prefix (explorer.core.prefix.PrefixAdapter), attached by inject_prefix.
        self.prefix: nn.Module | None = None

    def forward(self, x, cos, sin, probs_out: list | None = None):
        b, t, _ = x.shape
        h, hkv, d = self.num_heads, self.num_kv_heads, self.head_dim
        q = apply_rope(self.q_proj(x).view(b, t, h, d).transpose(1, 2), cos, sin)
        k = apply_rope(self.k_proj(x).view(b, t, hkv, d).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(b, t, hkv, d).transpose(1, 2)
        k, v = repeat_kv(k, h // hkv), repeat_kv(v, h // hkv)
        sliding = self.window is not None and t > self.window
        if probs_out is None and not sliding:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif probs_out is None:
            allowed = ~attention_blocked(t, t, self.window, x.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
            scores = scores.masked_fill(attention_blocked(t, t, self.window, x.device), float("-inf"))
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            out = probs @ v
        if self.prefix is not None:
            gated, prompt_v = self.prefix.attend(q, self.k_proj, self.v_proj, h // hkv)
            out = out + gated @ prompt_v
        if probs_out is not None:
            probs_out.append((torch.cat([gated, probs], dim=-1) if self.prefix is not None else probs).detach())
        return self.o_proj(out.transpose(1, 2).reshape(b, t, h * d))


class LlamaMLP(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        c, i = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(c, i, bias=config.mlp_bias)
        self.up_proj = nn.Linear(c, i, bias=config.mlp_bias)
        self.down_proj = nn.Linear(i, c, bias=config.mlp_bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, layer_idx: int):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, probs_out=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, probs_out)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)

    def forward(self, input_ids, probs_out=None):
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(input_ids.shape[1], x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, probs_out)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, probs_out: list | None = None) -> torch.Tensor:
        """Logits (B, T, V). Pass a list as `probs_out` to receive each layer's attention
        probabilities, (B, H, T, K + T) for a layer with a K-token prefix (gate applied), else (B, H, T, T)."""
        return self.lm_head(self.model(input_ids, probs_out))

    def init_weights(self, generator: torch.Generator, std: float = 0.02) -> None:
        """HF Llama's initialisation (normal(0, 0.02), norms at 1), from an explicit generator."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    module.weight.normal_(0.0, std, generator=generator)
                    if getattr(module, "bias", None) is not None:
                        module.bias.zero_()
                elif isinstance(module, RMSNorm):
                    module.weight.fill_(1.0)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Next token ids (B, 1) from last-position logits (B, V): greedy at temperature 0, else top-k sampling."""
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    scaled = logits / temperature
    if top_k:
        kth = torch.topk(scaled, min(top_k, scaled.shape[-1])).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, -1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).to(logits.device)


@torch.no_grad()
def generate(
    model: LlamaForCausalLM,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 40,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample continuations of `prompt_ids` (B, T). Greedy when temperature is 0."""
    ids = prompt_ids
    window = model.config.max_position_embeddings
    for _ in range(max_new_tokens):
        logits = model(ids[:, -window:])[:, -1, :].float()
        ids = torch.cat([ids, sample_next(logits, temperature, top_k, generator)], dim=1)
    return ids


# --- HF directories (config.json + model.safetensors; reading them is explorer.core.checkpoint) ---------------------------------


def base_state_dict(model: LlamaForCausalLM) -> dict[str, torch.Tensor]:
    """The frozen base weights under HF names, looking through any LoRA wrappers (which keep the
    original Linear as `base_layer`) and leaving adapters and prefixes out."""
    out = {}
    for name, tensor in model.state_dict().items():
        if "lora_" in name or ".prefix." in name or name.endswith("original_weight"):
            continue
        out[name.replace(".base_layer.", ".")] = tensor
    if model.config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


def save_pretrained(model: LlamaForCausalLM, directory: str | Path) -> None:
    from safetensors.torch import save_file

    from explorer.schema.files import atomic_replace, atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in base_state_dict(model).items()}
    with atomic_replace(directory / "model.safetensors") as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt"})
    atomic_write_text(directory / "config.json", json.dumps(model.config.to_hf_dict(), indent=2))
