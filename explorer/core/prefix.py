"""Zero-init gated prefix attention (LLaMA-Adapter, arXiv 2303.16199).

Each adapted layer (the top L) learns K prompt vectors P (K, C). Their keys and values come from the
layer's own FROZEN k_proj / v_proj (no RoPE, no causal mask). Queries attend to them with a softmax
of their own, scaled by gate(g) with g = 0 at the start, and the result is added to the ordinary
attention output, so at step 0 the model is exactly the frozen one:

    attn = [ gate(g) * softmax(q Kp^T / sqrt(d)) ; softmax(q Kt^T / sqrt(d) + mask) ]

The references differ in gate shape and function (docs/reference.md); both are settings here. The maths
runs inside `LlamaAttention.forward` through `PrefixAdapter.attend`, the one code path used both for
training and for the attention maps shown in the app.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from explorer.core.lora import adapter_dtype

GATE_SHAPES = ("head", "layer")
GATE_FUNCTIONS = ("tanh", "identity")
PROMPT_INITS = ("normal", "tokens")


@dataclass
class PrefixSettings:
    length: int = 10  # K, prompt vectors per adapted layer
    layers: int = 2  # L, the top L layers are adapted
    gate_shape: str = "head"  # one gate per head (paper, official code) or one per layer (HF PEFT)
    gate_fn: str = "tanh"  # tanh (official training code) or identity (paper, PEFT, lit-llama)
    init: str = "normal"  # N(0, 1) as PEFT and the official code; or embeddings of random tokens


class PrefixAdapter(nn.Module):
    def __init__(
        self, length: int, hidden_size: int, num_heads: int, gate_shape: str, gate_fn: str, device=None, dtype=None
    ):
        super().__init__()
        self.length, self.gate_shape, self.gate_fn = length, gate_shape, gate_fn
        self.prompt = nn.Parameter(torch.zeros(length, hidden_size, device=device, dtype=dtype))
        n_gates = num_heads if gate_shape == "head" else 1
        self.gate = nn.Parameter(torch.zeros(n_gates, device=device, dtype=dtype))

    def gate_values(self) -> torch.Tensor:
        """gate(g) per head, or a single value per layer: what multiplies the prompt attention."""
        return torch.tanh(self.gate) if self.gate_fn == "tanh" else self.gate

    def attend(self, q: torch.Tensor, k_proj: nn.Module, v_proj: nn.Module, n_rep: int):
        """Gated prompt probabilities (B, H, T, K) and prompt values (1, H, K, d) for queries q (B, H, T, d)."""
        _, h, _, d = q.shape
        prompt = self.prompt.to(q.dtype)  # fp32 prompt on a half-precision base: computed in the base's dtype
        k = k_proj(prompt).view(self.length, h // n_rep, d).transpose(0, 1)
        v = v_proj(prompt).view(self.length, h // n_rep, d).transpose(0, 1)
        # Grouped-query attention: each kv head serves n_rep consecutive query heads (as repeat_kv).
        k, v = k.repeat_interleave(n_rep, dim=0), v.repeat_interleave(n_rep, dim=0)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        gate = self.gate_values().view(1, -1, 1, 1)
        return gate * probs, v.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"K={self.length}, gate={self.gate_shape}/{self.gate_fn}"


def validate_prefix(settings: PrefixSettings, num_layers: int) -> None:
    if not isinstance(settings.length, int) or settings.length < 1:
        raise ValueError(f"prefix length K={settings.length!r} is out of range: allowed 1 or more")
    if not isinstance(settings.layers, int) or not (1 <= settings.layers <= num_layers):
        raise ValueError(
            f"prefix layers L={settings.layers!r} is out of range: allowed 1 to {num_layers} (the model's layers)"
        )
    if settings.gate_shape not in GATE_SHAPES:
        raise ValueError(f"gate shape={settings.gate_shape!r} is unknown: allowed {', '.join(GATE_SHAPES)}")
    if settings.gate_fn not in GATE_FUNCTIONS:
        raise ValueError(f"gate function={settings.gate_fn!r} is unknown: allowed {', '.join(GATE_FUNCTIONS)}")
    if settings.init not in PROMPT_INITS:
        raise ValueError(f"prompt init={settings.init!r} is unknown: allowed {', '.join(PROMPT_INITS)}")


def prefix_layer_indices(num_layers: int, n_adapted: int) -> list[int]:
    return list(range(num_layers - n_adapted, num_layers))


def inject_prefix(model: nn.Module, settings: PrefixSettings, generator: torch.Generator | None = None) -> list[int]:
    """Attach a PrefixAdapter to the top L layers; returns their indices. All-or-nothing."""
    config = model.config
    validate_prefix(settings, config.num_hidden_layers)
    layers = model.model.layers
    indices = prefix_layer_indices(config.num_hidden_layers, settings.layers)
    if any(layers[i].self_attn.prefix is not None for i in indices):
        raise ValueError("this model already carries prefix adapters: remove them first")
    embed = model.model.embed_tokens.weight
    adapters = []
    for _ in indices:
        adapter = PrefixAdapter(
            settings.length,
            config.hidden_size,
            config.num_attention_heads,
            settings.gate_shape,
            settings.gate_fn,
            embed.device,
            adapter_dtype(embed.dtype),
        )
        with torch.no_grad():
            if settings.init == "normal":
                adapter.prompt.normal_(0.0, 1.0, generator=generator)
            else:
                rows = torch.randint(0, embed.shape[0], (settings.length,), generator=generator)
                adapter.prompt.copy_(embed[rows.to(embed.device)])
        adapters.append(adapter)
    for i, adapter in zip(indices, adapters):
        layers[i].self_attn.prefix = adapter
    return indices


def prefix_adapters(model: nn.Module) -> dict[int, PrefixAdapter]:
    return {
        i: layer.self_attn.prefix for i, layer in enumerate(model.model.layers) if layer.self_attn.prefix is not None
    }


def remove_prefix(model: nn.Module) -> None:
    for layer in model.model.layers:
        layer.self_attn.prefix = None
