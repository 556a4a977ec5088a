"""What trains: a scenario owns the frozen base, the data, the loss and the held-out set.

Two generators never mix: data (batches, held-out set, the planted problem) come from generators
seeded from the seed alone, so runs of every method see the same batches step for step; adapter
initialisation has generators of its own (`init_generator`). Batches are random access: batch k
is drawn from a generator seeded from (seed, k), so a reset, a rewind after a fault, or a run of
another method draws exactly the same batch k.

Interface (duck-typed; see matrix.py and lm.py):
    name, device, autocast (None or a dtype), base (the pristine frozen model; never modified)
    build(settings) -> model           a copy of the base with adapters, trainables marked (frozen
                                       weights may be shared with the base: lm.shared_copy)
    batch(step, batch_size) -> tuple   the training batch of that step
    loss(model, batch) -> tensor
    eval_loss(model) -> tensor         on the fixed held-out set
    matrix_sources(model, settings) -> list[MatrixSource]
    prefix_layers(model) -> dict[int, PrefixAdapter]
    budget(settings, model) -> dict
    info() -> dict                     what the base is (for config.json and the status bar)
    matmul_flops(settings) -> float    a typical matrix product's cost in one step (for the CPU threads)
    optional: probe(model) -> (list of layer attentions, token labels); samples(model) -> dict
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass

import torch

_MASK = (1 << 63) - 1


def derive_seed(seed: int, tag: str, step: int = 0) -> int:
    """A 63-bit seed for one purpose ('data', 'init-lora', ...) and one step, from the user's seed."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + zlib.crc32(tag.encode()) * 0xBF58476D1CE4E5B9 + int(step)) & _MASK
    # splitmix64 finaliser: nearby (seed, step) pairs give unrelated seeds
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    return x


def cpu_generator(seed: int, tag: str, step: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, tag, step))


def init_generator(seed: int, tag: str) -> torch.Generator:
    """The generator an adapter is initialised from: its own stream, never the data's."""
    return cpu_generator(seed, "init-" + tag)


@dataclass
class MatrixSource:
    """One adapted matrix, as the snapshot code reads it (tensors on the device, no copies)."""

    name: str
    shape: tuple[int, int]
    base: torch.Tensor  # W0 (for PiSSA: the residual the adapter is added to)
    A: torch.Tensor | None = None  # LoRA factors (r, in), (out, r) and scaling
    B: torch.Tensor | None = None
    scaling: float = 1.0
    weight: torch.Tensor | None = None  # full fine-tuning: the trained W (ΔW = W - W0)
    magnitude: torch.Tensor | None = None  # DoRA's magnitude vector m (out,)


def build_scenario(settings, device: torch.device, autocast, base_model=None):
    if settings.scenario == "matrix":
        from explorer.engine.scenarios.matrix import MatrixScenario

        return MatrixScenario(settings, device, autocast)
    from explorer.engine.scenarios.lm import LmScenario

    return LmScenario(settings, device, autocast, base_model=base_model)


def autocast_ctx(device: torch.device, dtype):
    """bf16 mixed precision on a GPU (fp32 weights), or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
