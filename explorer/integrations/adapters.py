"""Find what a PEFT model trains: its LoRA modules and its gated adaption prompts.

Works from PEFT's own module attributes, so any architecture PEFT adapts is covered:
- LoRA (`peft.tuners.lora.LoraLayer`): `lora_A[name]` / `lora_B[name]` (Linear, or Conv with a 1x1
  `lora_B`), `scaling[name]` (alpha / r, or alpha / sqrt(r) for rsLoRA, per module with rank_pattern /
  alpha_pattern), `fan_in_fan_out` (GPT-2's Conv1D keeps its weight as (in, out)), DoRA's
  `lora_magnitude_vector[name]`; embeddings through `lora_embedding_A` / `lora_embedding_B`.
- AdaptionPrompt (LLaMA-Adapter): modules holding `adaption_prompt` and `adaption_gate`.

Every update is described as the map it applies, ΔW = scaling · B @ A of shape (out, in): for
`fan_in_fan_out` layers that is the transpose of what PEFT's `get_delta_weight` returns (same singular
values), for embeddings the transpose of the embedding-weight layout, for convolutions the kernel
flattened to (out, in · kh · kw).

Names are the module names PEFT's `target_modules` and `rank_pattern` use, relative to the wrapped
transformers model ("model.layers.0.self_attn.q_proj"); wrapper segments (PeftModel's
"base_model.model.", DDP's "module.", FSDP's "_fsdp_wrapped_module.", activation checkpointing,
torch.compile) are taken out. This module imports neither peft nor transformers.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

WRAPPER_SEGMENTS = ("_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod")
PEFT_PREFIX = "base_model.model."
# leaf or parent names of attention projections in the architectures PEFT supports
_ATTENTION_WORDS = ("attn", "attention")
_LAYER_INDEX = re.compile(r"(?:^|\.)(\d+)(?=\.)")


def clean_name(name: str) -> str:
    """A parameter or module name without wrapper segments and PeftModel's prefix."""
    parts = [p for p in name.split(".") if p not in WRAPPER_SEGMENTS]
    if parts and parts[0] == "module":  # DistributedDataParallel
        parts = parts[1:]
    out = ".".join(parts)
    return out[len(PEFT_PREFIX) :] if out.startswith(PEFT_PREFIX) else out


def peft_name(name: str) -> str:
    """The name PeftModel.state_dict() uses (wrappers out, PeftModel's prefix kept)."""
    parts = [p for p in name.split(".") if p not in WRAPPER_SEGMENTS]
    if parts and parts[0] == "module":
        parts = parts[1:]
    return ".".join(parts)


def layer_index(name: str) -> int | None:
    """The last integer path segment: model.layers.3.self_attn -> 3, transformer.h.11.attn -> 11."""
    found = _LAYER_INDEX.findall(name + ".")
    return int(found[-1]) if found else None


@dataclass
class LoraEntry:
    name: str  # clean module name
    adapter: str  # PEFT adapter name ("default")
    kind: str  # "linear" | "conv" | "embedding"
    A: nn.Parameter  # lora_A weight as PEFT holds it
    B: nn.Parameter
    module: nn.Module  # the LoraLayer (scaling is read from it at every record: set_scale changes it)
    base: torch.Tensor | None  # the base layer's weight (None where it is not a float tensor)
    fan_in_fan_out: bool
    magnitude: nn.Parameter | None = None  # DoRA's m, one value per output
    rank: int = 0

    @property
    def scaling(self) -> float:
        return float(self.module.scaling[self.adapter])

    @property
    def params(self) -> list[nn.Parameter]:
        return [self.A, self.B] + ([self.magnitude] if self.magnitude is not None else [])


@dataclass
class PromptEntry:
    name: str
    layer: int
    gate: nn.Parameter  # (1,) in PEFT: one gate per layer, applied as is (no tanh)
    prompt: nn.Parameter  # (1, K, hidden)
    heads: int

    @property
    def params(self) -> list[nn.Parameter]:
        return [self.gate, self.prompt]


@dataclass
class Adapters:
    lora: list[LoraEntry] = field(default_factory=list)
    prompts: list[PromptEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name: why" for adapted modules not recorded

    def __bool__(self) -> bool:
        return bool(self.lora or self.prompts)

    def params(self) -> list[nn.Parameter]:
        out = []
        for e in self.lora:
            out += e.params
        for p in self.prompts:
            out += p.params
        return out


def _weight(module: nn.Module) -> torch.Tensor | None:
    w = getattr(module, "weight", None)
    return w if isinstance(w, torch.Tensor) else None


def _active(module: nn.Module, model: nn.Module) -> list[str]:
    names = getattr(module, "active_adapters", None)
    if names is None:
        names = getattr(model, "active_adapters", None)
    if callable(names):
        names = names()
    if isinstance(names, str):
        names = [names]
    return list(names or [])


def _lora_entry(name: str, module: nn.Module, adapter: str) -> LoraEntry | str:
    """A LoraEntry, or the reason the module's adapter cannot be recorded."""
    base_layer = module.get_base_layer() if hasattr(module, "get_base_layer") else None
    base = _weight(base_layer) if base_layer is not None else None
    if base is not None and not base.is_floating_point():
        base = None  # quantized (4/8-bit) base weights: no W0 heatmap
    magnitude = None
    mags = getattr(module, "lora_magnitude_vector", None)
    if mags is not None and adapter in mags:
        magnitude = getattr(mags[adapter], "weight", None)
    fifo = bool(getattr(module, "fan_in_fan_out", False))
    rank = int(module.r[adapter]) if isinstance(getattr(module, "r", None), dict) and adapter in module.r else None
    if adapter in getattr(module, "lora_A", {}):
        a, b = module.lora_A[adapter], module.lora_B[adapter]
        A, B = _weight(a), _weight(b)
        # kinds by module type: under FSDP1 the weights themselves are flat local shards
        if isinstance(a, nn.Linear) and isinstance(b, nn.Linear):
            kind = "linear"
        elif isinstance(a, _ConvNd) and isinstance(b, _ConvNd) and all(k == 1 for k in b.kernel_size):
            kind = "conv"
        else:
            return (
                f"{name}: lora_A {type(a).__name__} / lora_B {type(b).__name__} are not a product this recorder reads"
            )
        rank = rank if rank is not None else int(a.out_channels if kind == "conv" else a.out_features)
        return LoraEntry(name, adapter, kind, A, B, module, base, fifo, magnitude, rank=rank)
    emb_a = getattr(module, "lora_embedding_A", {})
    if adapter in emb_a:
        A, B = module.lora_embedding_A[adapter], module.lora_embedding_B[adapter]
        rank = rank if rank is not None else int(A.shape[0])
        return LoraEntry(name, adapter, "embedding", A, B, module, base, True, magnitude, rank=rank)
    return f"{name}: adapter {adapter!r} is not on this module"


def _lora_layer_class():
    """peft's LoraLayer when peft is already imported (a PEFT model implies it is); never imports it."""
    import sys

    mod = sys.modules.get("peft.tuners.lora.layer")
    return getattr(mod, "LoraLayer", None) if mod is not None else None


def _is_lora_layer(module: nn.Module, cls) -> bool:
    if cls is not None:
        return isinstance(module, cls)
    # no peft loaded: PEFT's attribute layout (a model built on PEFT's conventions without PEFT itself)
    return isinstance(getattr(module, "lora_A", None), nn.ModuleDict) and isinstance(
        getattr(module, "scaling", None), dict
    )


def find_adapters(model: nn.Module, adapter: str | None = None) -> Adapters:
    """The LoRA modules and adaption prompts of `model` (any wrapper around a PEFT model), in module
    order, for the active adapter(s) or the one named."""
    found = Adapters()
    cls = _lora_layer_class()
    for raw, module in model.named_modules():
        if _is_lora_layer(module, cls):
            names = [adapter] if adapter is not None else _active(module, model)
            for a in names:
                entry = _lora_entry(clean_name(raw), module, a)
                if isinstance(entry, str):
                    found.skipped.append(entry)
                else:
                    found.lora.append(entry)
        gate, prompt = getattr(module, "adaption_gate", None), getattr(module, "adaption_prompt", None)
        if isinstance(gate, nn.Parameter) and isinstance(prompt, nn.Parameter):
            name = clean_name(raw)
            heads = int(getattr(module, "num_heads", 0) or getattr(getattr(module, "model", None), "num_heads", 1) or 1)
            found.prompts.append(PromptEntry(name, layer_index(name) or 0, gate, prompt, heads))
    if len({e.name for e in found.lora}) < len(found.lora):  # several active adapters on one module
        for e in found.lora:
            e.name = f"{e.name}:{e.adapter}"
    return found


def _is_attention(name: str, layer: int) -> bool:
    """Whether the module lies inside an attention block ("...3.self_attn.q_proj", "...3.attn.c_attn",
    "...3.attention.self.query")."""
    inner = name.lower().split(f".{layer}.", 1)[-1]
    return any(w in inner for w in _ATTENTION_WORDS)


def choose_heatmaps(names: list[str], patterns, limit: int) -> list[str]:
    """The modules that get a pooled ΔW heatmap: those matching `patterns` (fnmatch globs on the
    clean names, in module order), or by default the first and the last layer's attention
    projections; at most `limit`."""
    if patterns is None:
        by_layer = [(layer_index(n), n) for n in names]
        layers = [i for i, _ in by_layer if i is not None]
        if not layers:
            picked = names[:1] + names[-1:] if len(names) > 1 else list(names)
        else:
            ends = {min(layers), max(layers)}
            picked = [n for i, n in by_layer if i in ends and _is_attention(n, i)]
            if not picked:  # no attention module adapted: the first and last layers' modules
                picked = [n for i, n in by_layer if i in ends]
    else:
        if isinstance(patterns, str):
            patterns = [patterns]
        picked = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    return picked[: max(0, int(limit))]
