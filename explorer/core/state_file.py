"""The trained-state file: what was trained (adapter factors, prompts, gates; for full fine-tuning the
changed weights) plus every setting that produced it, in one safetensors file.

    tensors:  our model's parameter names, e.g. "model.layers.0.self_attn.q_proj.lora_A.weight",
              "model.layers.3.self_attn.prefix.prompt", "model.layers.3.self_attn.prefix.gate"
              (matrix scenario: "W.lora_A.weight", "W.lora_B.weight", or "W.weight" for full)
    metadata: {"format": "peft-explorer-state", "version": "1", "settings": JSON of TrainSettings,
               "step": "N", "extra": JSON}
    optional: "resume/..." tensors that let training go on exactly where it stopped (the optimizer's
              moments "resume/optimizer/<name>/exp_avg|exp_avg_sq|step", the loss histories
              "resume/history/loss_steps|loss|eval_steps|eval_loss"); `load_state` hands them apart
              (`TrainedState.resume`), so `tensors` is only what was trained

A recording keeps it as DIR/state.safetensors; the app saves it wherever the user chooses. Written
atomically, read without pickle, and every damaged or foreign file is refused with one clear line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from explorer.schema.files import atomic_write_bytes
from explorer.schema.jsonio import parse_json

FORMAT = "peft-explorer-state"
VERSION = "1"
RESUME = "resume/"


@dataclass
class TrainedState:
    tensors: dict[str, torch.Tensor]
    settings: dict
    step: int
    extra: dict
    resume: dict[str, torch.Tensor] = field(default_factory=dict)  # names without the "resume/" prefix


def save_state(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    settings: dict,
    step: int,
    extra: dict | None = None,
    resume: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write atomically: a failure at any point (a full disk, a kill) leaves the previous file as it was."""
    from safetensors.torch import save

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "settings": json.dumps(settings),
        "step": str(int(step)),
        "extra": json.dumps(extra or {}),
    }
    clash = [k for k in tensors if k.startswith(RESUME)]
    if clash:
        raise ValueError(f"tensor name {clash[0]!r} uses the reserved prefix {RESUME!r}")
    host = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    host.update({RESUME + k: v.detach().to("cpu").contiguous() for k, v in (resume or {}).items()})
    # Serialised to bytes and written by our atomic path: no temporary file of the library's own
    # (a kill mid-save used to leave one, never cleaned), and the user's ordinary file mode.
    atomic_write_bytes(path, save(host, metadata=meta))


def load_state(path: str | Path) -> TrainedState:
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / "state.safetensors"
    if not path.is_file():  # a FIFO or a device is not a file either: never opened
        raise FileNotFoundError(f"{path}: no such trained-state file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    except Exception as exc:  # safetensors raises its own types for truncated or garbled files
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a peft-explorer state file (format={_short(meta.get('format'))})")
    if meta.get("version") != VERSION:
        raise ValueError(
            f"{path}: state file version {_short(meta.get('version'))} is not supported "
            f"(this peft-explorer reads version {VERSION})"
        )
    settings = _meta_json(meta, "settings", path)
    extra = _meta_json(meta, "extra", path, default="{}")
    step_text = meta.get("step", "0")
    if not isinstance(step_text, str) or not step_text.isascii() or not step_text.isdecimal() or len(step_text) > 16:
        raise ValueError(f"{path}: damaged state metadata (step is {step_text[:40]!r}, expected a whole number >= 0)")
    step = int(step_text)
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{path}: tensor {name} contains NaN or infinite values")
    resume = {k[len(RESUME) :]: tensors.pop(k) for k in [k for k in tensors if k.startswith(RESUME)]}
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise ValueError(f"{path}: tensor {name} has dtype {t.dtype}; trained tensors are floating point")
    return TrainedState(tensors, settings, step, extra, resume)


def _meta_json(meta: dict, key: str, path: Path, default: str | None = None) -> dict:
    """A JSON object stored as text in the metadata, read with the size and depth limits of every
    JSON reader; ValueError naming the file and the field otherwise."""
    text = meta.get(key, default)
    if text is None:
        raise ValueError(f"{path}: damaged state metadata (no {key})")
    # our own writer may store a NaN loss in `extra`: non-finite constants are read, as numbers
    return parse_json(text, f"{path}: damaged state metadata: {key}", expect=dict, allow_nonfinite=True)


def _short(value) -> str:
    """A metadata value as a message shows it: quoted, at most 40 characters of it."""
    return repr(value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "...")
