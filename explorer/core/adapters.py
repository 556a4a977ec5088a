"""What trains: freezing the base, listing the adapter parameters, stripping adapters off again."""

from __future__ import annotations

from torch import nn

from explorer.core.lora import LoraSettings, inject_lora, remove_lora
from explorer.core.prefix import PrefixSettings, inject_prefix, remove_prefix

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


def inject_adapters(model: nn.Module, settings, lora_generator, prefix_generator) -> None:
    """The adapters a run's settings (`schema.settings.TrainSettings`) ask for, injected into `model`:
    the one translation from settings to LoRA and prefix layers, for training and export alike."""
    if settings.uses_lora():
        inject_lora(
            model,
            LoraSettings(
                rank=settings.rank,
                alpha=settings.alpha,
                targets=tuple(settings.targets),
                layers=None if settings.layers is None else tuple(settings.layers),
                dropout=settings.dropout,
                use_rslora=settings.use_rslora,
                init=settings.init,
                use_dora=settings.use_dora,
                rank_pattern=dict(settings.rank_pattern),
                alpha_pattern=dict(settings.alpha_pattern),
            ),
            generator=lora_generator,
        )
    if settings.uses_prefix():
        inject_prefix(
            model,
            PrefixSettings(
                length=settings.prefix_len,
                layers=settings.prefix_layers,
                gate_shape=settings.gate_shape,
                gate_fn=settings.gate_fn,
                init=settings.prompt_init,
            ),
            generator=prefix_generator,
        )
