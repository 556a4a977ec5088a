"""What trains: freezing the base, listing the adapter parameters, stripping adapters off again."""

from __future__ import annotations

from torch import nn

from explorer.core.lora import remove_lora
from explorer.core.prefix import remove_prefix

# Parameter-name fragments that belong to adapters, never to the frozen base.
ADAPTER_KEYS = ("lora_A", "lora_B", "lora_magnitude_vector", ".prefix.")


def is_adapter_parameter(name: str) -> bool:
    return any(key in name for key in ADAPTER_KEYS)


def mark_only_adapters_trainable(model: nn.Module) -> list[str]:
    """Freeze everything but the adapters; returns the names of the parameters that train."""
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter_parameter(name))
        if p.requires_grad:
            trainable.append(name)
    return trainable


def mark_all_trainable(model: nn.Module) -> list[str]:
    """Full fine-tuning: every parameter trains (the baseline the adapters are compared with)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return [n for n, _ in model.named_parameters()]


def count_trainable(model: nn.Module) -> int:
    # Tied weights appear once in .parameters(), so nothing is counted twice.
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def remove_adapters(model: nn.Module) -> None:
    remove_lora(model)
    remove_prefix(model)
