"""What a training run will need in memory, estimated before anything is loaded, against what the
device has; a run that will not fit is refused with the estimate, what is available, and which of
bf16, a smaller batch, shorter sequences or fewer LoRA targets would fit.

The estimate counts the frozen weights in the run's dtype, the adapters (fp32), their gradients,
Adam's two moments and the trainer's fault backup of every trainable tensor, and the activations
autograd keeps for batch x sequence (layers from the lowest adapted one up, the logits in fp32 for
the loss). It is an estimate ("about"): allocator slack and the CUDA context come on top, so a run
counts as fitting when it needs at most FIT_SHARE of what is available.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch

from explorer.schema.budget import compute_budget, count_model_params, format_bytes
from explorer.schema.llama_config import LlamaConfig

FIT_SHARE = 0.9
ADAPTER_BYTES = 4  # adapters, their gradients and moments stay fp32 whatever the base's dtype


def dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def available_memory(device: torch.device) -> tuple[int | None, str]:
    """(bytes free for the run, what they are), or (None, why unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
            return int(free), f"{device} has {format_bytes(free)} free"
        except Exception as exc:  # a broken driver: no estimate is better than no run
            return None, f"{device}'s free memory is unknown ({exc})"
    if device.type == "cpu":
        free = _mem_available()
        if free is not None:
            return free, f"the machine has {format_bytes(free)} of RAM available"
    return None, f"{device}'s free memory is unknown"


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class RunShape:
    """What of a run's settings the memory depends on (plain values, no engine import)."""

    method: str = "lora"
    rank: int = 8
    use_dora: bool = False
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    layers: tuple[int, ...] | None = None
    prefix_len: int = 10
    prefix_layers: int = 2
    gate_shape: str = "head"
    batch_size: int = 16
    seq_len: int = 64

    @classmethod
    def of(cls, settings) -> RunShape:
        """From anything with these attributes (TrainSettings)."""
        names = cls.__dataclass_fields__
        values = {n: getattr(settings, n) for n in names if hasattr(settings, n)}
        values["targets"] = tuple(values.get("targets", cls.targets))
        if values.get("layers") is not None:
            values["layers"] = tuple(values["layers"])
        return cls(**values)


@dataclass
class MemoryEstimate:
    parts: dict[str, int]
    weight_dtype: str

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        shown = ", ".join(f"{name} {format_bytes(n)}" for name, n in self.parts.items() if n)
        return f"about {format_bytes(self.total)} ({shown})"


def _lowest_trained_layer(config: LlamaConfig, run: RunShape) -> int:
    """Gradients flow down to the lowest layer with something to train; activations below it are not kept."""
    n = config.num_hidden_layers
    lowest = n
    if run.method == "full":
        return 0
    if run.method in ("lora", "lora+prefix"):
        lowest = min(lowest, min(run.layers) if run.layers else 0)
    if run.method in ("prefix", "lora+prefix"):
        lowest = min(lowest, n - min(max(run.prefix_layers, 1), n))
    return max(0, lowest)


def estimate_training_memory(
    config: LlamaConfig, run: RunShape, weight_dtype: torch.dtype, compute_dtype: torch.dtype, device_type: str
) -> MemoryEstimate:
    """Bytes a run needs, by part. `weight_dtype`: the frozen base's; `compute_dtype`: activations'."""
    wb, cb = dtype_bytes(weight_dtype), dtype_bytes(compute_dtype)
    base = count_model_params(config)
    parts = {"weights": base * wb}
    if run.method == "full":
        trained, tb = base, wb  # the trained copy of every weight, in the weights' dtype
        parts["trained copy"] = base * wb
    else:
        trained = compute_budget(
            config,
            run.method,
            rank=run.rank,
            use_dora=run.use_dora,
            targets=tuple(run.targets),
            layers=None if run.layers is None else list(run.layers),
            prefix_len=run.prefix_len,
            prefix_layers=run.prefix_layers,
            gate_shape=run.gate_shape,
        ).trainable_params
        tb = ADAPTER_BYTES
        parts["adapters"] = trained * tb
    parts["gradients"] = trained * tb
    parts["optimizer moments"] = 2 * trained * tb
    parts["fault backup"] = trained * tb
    b, s = run.batch_size, run.seq_len
    c, i, d = config.hidden_size, config.intermediate_size, config.head_dim
    h, hkv = config.num_attention_heads, config.num_key_value_heads
    # Saved per layer: residual in, two norm outputs, q, k, v before and after RoPE, attention
    # output, gate, up, silu(gate) and their product (elements per token).
    per_token = 3 * c + 2 * h * d + 4 * hkv * d + h * d + 4 * i
    per_layer = b * s * per_token * cb
    if device_type != "cuda":  # no flash attention: the probabilities are kept too
        per_layer += b * h * s * s * cb
    layers = config.num_hidden_layers - _lowest_trained_layer(config, run)
    parts["activations"] = layers * per_layer + b * s * c * cb
    parts["logits"] = b * s * config.vocab_size * (cb + 4 + 4)  # logits, their fp32 copy, its gradient
    return MemoryEstimate(parts, str(weight_dtype).replace("torch.", ""))


def check_run_fits(
    config: LlamaConfig,
    run: RunShape,
    weight_dtype: torch.dtype,
    compute_dtype: torch.dtype,
    device: torch.device,
    what: str = "the run",
    available: int | None = None,
) -> MemoryEstimate:
    """The estimate when it fits (or when the free memory is unknown); else ValueError, one line."""
    device = torch.device(device)
    estimate = estimate_training_memory(config, run, weight_dtype, compute_dtype, device.type)
    if available is None:
        available, where = available_memory(device)
    else:  # given by the caller (tests, a user's cap)
        where = f"{format_bytes(available)} is available"
    if available is None or estimate.total <= FIT_SHARE * available:
        return estimate
    ideas = _what_would_fit(config, run, weight_dtype, compute_dtype, device, FIT_SHARE * available)
    raise ValueError(f"{what} needs {estimate.describe()} but {where}; {ideas}")


def _what_would_fit(config, run, weight_dtype, compute_dtype, device, budget) -> str:
    """The mildest combination, trying in turn: bf16 (on a GPU), a smaller batch, shorter
    sequences, fewer LoRA targets; each pushed only as far as needed."""

    def fits(r, wd) -> bool:
        return (
            estimate_training_memory(config, r, wd, wd if wd != weight_dtype else compute_dtype, device.type).total
            <= budget
        )

    changes, r, wd = [], run, weight_dtype
    if device.type != "cpu" and wd != torch.bfloat16:
        wd = torch.bfloat16
        changes.append("dtype bf16")
    for name, low in (("batch_size", 1), ("seq_len", 8)):
        if fits(r, wd):
            break
        value = getattr(r, name)
        while value // 2 >= low and not fits(r, wd):
            value //= 2
            r = replace(r, **{name: value})
        if value != getattr(run, name):
            changes.append(f"{name} {value}")
    if not fits(r, wd) and r.method in ("lora", "lora+prefix"):
        fewer = tuple(t for t in r.targets if t in ("q_proj", "v_proj")) or r.targets[:1]
        if fewer != r.targets:
            r = replace(r, targets=fewer)
            changes.append(f"targets {','.join(fewer)}")
    if not fits(r, wd) and r.method == "full":
        r = replace(r, method="lora", targets=("q_proj", "v_proj"), rank=8)
        changes.append("method lora")
    if fits(r, wd):
        return "it would fit with " + ", ".join(changes)
    weights = count_model_params(config) * dtype_bytes(wd)
    return (
        f"not even with {', '.join(changes) or 'these settings'} would it fit: the weights alone need "
        f"{format_bytes(weights)}"
    )
