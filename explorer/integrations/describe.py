"""What a recording says about a run it did not set up: settings, budget, PEFT config.

A recording's config.json carries the explorer's own settings (so replay, the controls panel and the
views know the method, rank, alpha, ...). A user's run is described by PEFT's config instead; the
settings here are the nearest explorer settings, and `approximate` names the fields that are only
stand-ins (the explorer has no such setting for this run, or its value lies outside the explorer's
range). The PEFT config itself is kept beside them, verbatim.
"""

from __future__ import annotations

import json
from collections import Counter

from explorer.integrations.adapters import Adapters, layer_index
from explorer.schema.settings import SETTINGS_SPEC, TrainSettings

OPTIMIZER_BYTES_PER_PARAM = 12  # two fp32 Adam moments and an fp32 gradient, as explorer.core.budget


def _clip(name: str, value, approximate: list[str]):
    spec = SETTINGS_SPEC[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        approximate.append(name)
        return getattr(TrainSettings(), name)
    low, high = spec.low, spec.high
    clipped = min(max(value, low), high)
    if clipped != value:
        approximate.append(name)
    return int(clipped) if isinstance(getattr(TrainSettings(), name), int) else float(clipped)


def json_clean(obj):
    """A JSON-safe copy (sets and tuples become lists, enums and other objects their str())."""

    def default(o):
        if isinstance(o, (set, frozenset, tuple)):
            return sorted(o, key=str) if isinstance(o, (set, frozenset)) else list(o)
        if hasattr(o, "value") and isinstance(o.value, (str, int, float)):
            return o.value
        return str(o)

    return json.loads(json.dumps(obj, default=default))


def peft_config(model, adapter: str | None) -> dict | None:
    """PEFT's config of the recorded adapter, as a JSON-safe dict (None for a model without one)."""
    configs = getattr(_unwrap(model), "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        return None
    cfg = configs.get(adapter) if adapter is not None else next(iter(configs.values()))
    if cfg is None:
        return None
    raw = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    return json_clean(raw)


def _unwrap(model):
    for _ in range(8):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None or inner is model:
            return model
        model = inner
    return model


def settings_for(
    adapters: Adapters,
    config: dict | None,
    *,
    lr: float | None,
    batch_size: int | None,
    seed: int | None,
    device: str,
    dtype: str,
    heatmap_size: int,
    interval_s: float,
) -> tuple[dict, list[str]]:
    """(TrainSettings dict, names of the fields that are stand-ins)."""
    config = config or {}
    approximate: list[str] = ["seq_len"]  # the recorder never sees the user's sequence length
    s: dict = {"scenario": "lm"}
    if adapters.lora and adapters.prompts:
        s["method"] = "lora+prefix"
    else:
        s["method"] = "lora" if adapters.lora else "prefix"
    if adapters.lora:
        ranks = Counter(e.rank for e in adapters.lora)
        s["rank"] = _clip("rank", ranks.most_common(1)[0][0], approximate)
        if len(ranks) > 1:
            approximate.append("rank")  # rank_pattern: the most common rank stands for all
        s["alpha"] = _clip("alpha", config.get("lora_alpha", 2 * s["rank"]), approximate)
        s["use_rslora"] = bool(config.get("use_rslora", False))
        s["use_dora"] = any(e.magnitude is not None for e in adapters.lora)
        init = config.get("init_lora_weights", True)
        if init is True or init == "True":
            s["init"] = "kaiming"
        elif isinstance(init, str) and init.lower() == "gaussian":
            s["init"] = "gaussian"
        elif isinstance(init, str) and init.lower().startswith("pissa"):
            s["init"] = "pissa"
        else:
            s["init"] = "kaiming"
            approximate.append("init")
        s["dropout"] = _clip("dropout", float(config.get("lora_dropout", 0.0) or 0.0), approximate)
        choices = SETTINGS_SPEC["targets"].choices
        leaves = {e.name.split(":")[0].rsplit(".", 1)[-1] for e in adapters.lora}
        targets = [t for t in choices if t in leaves]
        if not targets or leaves - set(choices):
            approximate.append("targets")  # e.g. GPT-2's c_attn: the explorer knows Llama's names only
        s["targets"] = targets or list(TrainSettings().targets)
        layers = [layer_index(e.name) for e in adapters.lora]
        s["layers"] = sorted(set(layers)) if all(i is not None for i in layers) else None
    if adapters.prompts:
        s["prefix_len"] = _clip("prefix_len", int(adapters.prompts[0].prompt.shape[-2]), approximate)
        s["prefix_layers"] = _clip("prefix_layers", len(adapters.prompts), approximate)
        s["gate_shape"] = "layer"  # PEFT's AdaptionPrompt: one gate per layer
        s["gate_fn"] = "identity"  # applied as is, no tanh
        s["prompt_init"] = "normal"
    if lr is not None:
        s["lr"] = _clip("lr", float(lr), approximate)
    else:
        approximate.append("lr")
    if batch_size is not None:
        s["batch_size"] = _clip("batch_size", int(batch_size), approximate)
    else:
        approximate.append("batch_size")
    if seed is not None:
        s["seed"] = _clip("seed", int(seed), approximate)
    else:
        approximate.append("seed")
    s["device"] = device if device in SETTINGS_SPEC["device"].choices else "auto"
    if dtype in SETTINGS_SPEC["dtype"].choices:
        s["dtype"] = dtype
    else:
        s["dtype"] = "fp32"
        approximate.append("dtype")
    s["snapshot_hz"] = _clip("snapshot_hz", 1.0 / interval_s if interval_s > 0 else 120.0, approximate)
    s["display_size"] = _clip("display_size", int(heatmap_size), approximate)
    settings = TrainSettings.from_dict(s)  # a ValueError here is a bug in this mapping: let it show
    return settings.to_dict(), sorted(set(approximate))


def budget_for(method: str, trainable: int, total: int) -> dict:
    """The budget view's figures for a measured model (no preset table: the presets price Llama shapes)."""
    base = max(total - trainable, 1)
    return {
        "method": method,
        "trainable_params": int(trainable),
        "base_params": int(total - trainable),
        "total_params": int(total),
        "share": trainable / base,
        "storage_bytes_fp16": 2 * int(trainable),
        "storage_bytes_fp32": 4 * int(trainable),
        "optimizer_bytes": OPTIMIZER_BYTES_PER_PARAM * int(trainable),
        "measured_trainable_params": int(trainable),
        "presets": {},
    }
