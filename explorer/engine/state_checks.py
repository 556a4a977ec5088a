"""Checks of what a trained-state file asks the trainer to resume (explorer/engine/trainer.py
`load_state`): every optimizer moment and history point is checked before anything changes, so a
file that does not fit is refused with one line instead of failing at the next step."""

from __future__ import annotations

import math

import torch

_ADAM_KEYS = {"exp_avg", "exp_avg_sq", "step"}


def optimizer_entry_problem(keys: dict, p: torch.Tensor) -> str | None:
    """What is wrong with one parameter's saved AdamW state (None when it fits): the moments must
    be floating point of the parameter's shape (the second one >= 0), the step a whole number >= 0."""
    if set(keys) != _ADAM_KEYS:
        return f"expected {', '.join(sorted(_ADAM_KEYS))}, found {', '.join(sorted(keys))[:120]}"
    for k in ("exp_avg", "exp_avg_sq"):
        v = keys[k]
        if not v.is_floating_point() or tuple(v.shape) != tuple(p.shape):
            return f"{k} is {v.dtype} {tuple(v.shape)}, expected floating point {tuple(p.shape)}"
    if bool((keys["exp_avg_sq"] < 0).any()):
        return "exp_avg_sq has negative values"
    step = keys["step"]
    if step.numel() != 1 or step.dim() > 1 or step.dtype == torch.bool or step.is_complex():
        return f"step is {step.dtype} {tuple(step.shape)}, expected one number"
    value = float(step.reshape(()).item())
    if not (math.isfinite(value) and value >= 0 and value == int(value) and value < 2**53):
        return f"step is {value}, expected a whole number >= 0"
    keys["step"] = torch.tensor(value, dtype=torch.float32)  # as torch's AdamW keeps it
    return None


def finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def resumed_histories(resume: dict, path, step: int) -> dict:
    """The loss histories of a state file's resume tensors, checked: {key: (steps, values)}."""
    out = {}
    for key in ("loss", "eval"):
        steps, values = resume.get(f"history/{key}_steps"), resume.get(f"history/{key}_values")
        if steps is None or values is None:
            continue
        if (
            steps.dim() != 1
            or values.shape != steps.shape
            or steps.is_floating_point()
            or steps.dtype == torch.bool
            or not values.is_floating_point()
        ):
            raise ValueError(f"{path}: the {key} history is damaged (wrong shape or dtype)")
        steps_list = steps.tolist()
        if any(a > b for a, b in zip(steps_list, steps_list[1:])) or (
            steps_list and (steps_list[0] < 0 or steps_list[-1] > step + 1)
        ):
            raise ValueError(f"{path}: the {key} history is damaged (its steps are out of order or range)")
        out[key] = (steps_list, values.tolist())
    return out
