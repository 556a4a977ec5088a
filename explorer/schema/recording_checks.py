"""The field checks of a recording's files (explorer/schema/recording.py): every field's type and
range before use, so nothing a hostile file holds reaches the views.

    check_config(config, where)        -> TrainSettings; JsonFileError naming the field otherwise
    check_metrics_line(line, where)    -> the record, normalised; JsonFileError when it is to be skipped
    snapshot_from(meta, tensors, ...)  -> Snapshot; ValueError naming the file and the field otherwise
"""

from __future__ import annotations

import re

import numpy as np

from explorer.schema.faults import Fault
from explorer.schema.jsonio import (
    JsonFileError,
    is_number,
    need_bool,
    need_dict,
    need_int,
    need_list,
    need_number,
    need_str,
    shown,
)
from explorer.schema.jsonio import _one_line as one_line  # noqa: F401 (re-exported for recording.py)
from explorer.schema.snapshot import History, MatrixSnapshot, PrefixSnapshot, Snapshot

STATES = ("running", "paused", "fault")
MAX_STEP = 2**53
MAX_NAME = 1000  # a module path
MAX_TEXT = 1_000_000  # a generated sample, a fault message
SNAPSHOT_PATH = re.compile(r"^snapshots/\d{6,}\.safetensors$")
_OPTIONAL_CONFIG = {
    "steps": lambda v, w, n: need_int(v, w, n, 0, MAX_STEP),
    "record_every": lambda v, w, n: need_int(v, w, n, 1, MAX_STEP),
    "sample_every": lambda v, w, n: need_int(v, w, n, 0, MAX_STEP),
    "display_size": lambda v, w, n: need_int(v, w, n, 1, 1 << 16),
    "final_step": lambda v, w, n: need_int(v, w, n, 0, MAX_STEP),
    "wall_seconds": lambda v, w, n: need_number(v, w, n, 0.0, None),
    "completed": need_bool,
    "device": lambda v, w, n: need_str(v, w, n, MAX_NAME),
    "device_type": lambda v, w, n: need_str(v, w, n, MAX_NAME),
    "command": lambda v, w, n: need_str(v, w, n, MAX_TEXT),
    "base": lambda v, w, n: need_dict(v, w, n, none_ok=True),
    "compare": lambda v, w, n: need_dict(v, w, n),
}


def check_config(config: dict, where: str):
    """The recording's TrainSettings, after checking every field a reader uses."""
    from explorer.schema.settings import TrainSettings

    settings = need_dict(config.get("settings"), where, "settings")
    try:
        parsed = TrainSettings.from_dict(settings)
    except (TypeError, ValueError) as exc:
        raise JsonFileError(f"{where}: settings: {one_line(exc)}") from None
    for name, check in _OPTIONAL_CONFIG.items():
        if name in config:
            check(config[name], where, name)
    cmp = config.get("compare")
    if cmp is not None:
        need_str(cmp.get("label"), where, "compare.label", 200)
        need_str(cmp.get("spec", ""), where, "compare.spec", MAX_TEXT)
        need_int(cmp.get("index", 0), where, "compare.index", 0, 10_000)
        runs = need_list(cmp.get("runs", []), where, "compare.runs", 10_000)
        for i, label in enumerate(runs):
            need_str(label, where, f"compare.runs[{i}]", 200)
    return parsed


def _numbers(value, where: str, name: str, depth: int) -> None:
    """A list (of lists, `depth` deep) of numbers or nulls (NaN is recorded as null)."""
    need_list(value, where, name)
    for i, v in enumerate(value):
        if depth > 1:
            _numbers(v, where, f"{name}[{i}]", depth - 1)
        elif v is not None and not is_number(v):
            raise JsonFileError(f"{where}: {name}[{i}] is {shown(v)}, expected a finite number or null")


def check_metrics_line(line, where: str) -> dict:
    """A metrics.jsonl record with every field of the right type (JsonFileError: skip the line)."""
    if not isinstance(line, dict):
        raise JsonFileError(f"{where}: a record must be a JSON object")
    if "step" not in line:
        raise JsonFileError(f"{where}: the record has no step")
    step = need_int(line["step"], where, "step", 0, MAX_STEP)
    for name in ("loss", "eval_loss", "lr"):
        need_number(line.get(name), where, name, none_ok=True)
    for name in ("time", "steps_per_second"):
        need_number(line.get(name), where, name, 0.0, None, none_ok=True)
    if line.get("segment") is not None:
        need_int(line["segment"], where, "segment", 0, MAX_STEP)
    if line.get("memory_bytes") is not None:
        need_int(line["memory_bytes"], where, "memory_bytes", 0, 2**63)
    state = line.get("state", "paused")
    if state not in STATES:
        raise JsonFileError(f"{where}: state is {shown(state)}, expected one of {', '.join(STATES)}")
    fault_from(line, where)
    snapshot = line.get("snapshot", f"snapshots/{step:06d}.safetensors")
    if not isinstance(snapshot, str) or not SNAPSHOT_PATH.match(snapshot):
        raise JsonFileError(f"{where}: snapshot is {shown(snapshot)}, expected snapshots/NNNNNN.safetensors")
    if "spectra" in line:
        for name, values in need_dict(line["spectra"], where, "spectra").items():
            need_str(name, where, "a spectra name", MAX_NAME)
            _numbers(values, where, f"spectra[{shown(name)}]", 1)
    if "gates" in line:
        _numbers(line["gates"], where, "gates", 2)
    if "samples" in line:
        _check_samples(line["samples"], where, "samples")
    if "wall_time" in line:
        need_number(line["wall_time"], where, "wall_time", 0.0, None)
    if "grad_norm" in line:  # a user run's (explorer.integrations): per module, None without a gradient
        for name, value in need_dict(line["grad_norm"], where, "grad_norm").items():
            need_str(name, where, "a grad_norm name", MAX_NAME)
            need_number(value, where, f"grad_norm[{shown(name)}]", 0.0, None, none_ok=True)
    return {**line, "snapshot": snapshot, "state": state}


def check_event_line(line: dict, where: str, events: tuple[str, ...]) -> dict:
    """An event line of metrics.jsonl ("finished", "failed") with its fields' types checked."""
    if line.get("event") not in events:
        raise JsonFileError(f"{where}: event is {shown(line.get('event'))}, expected one of {', '.join(events)}")
    need_number(line.get("wall_time"), where, "wall_time", 0.0, None, none_ok=True)
    for name in ("final_step", "step"):
        if line.get(name) is not None:
            need_int(line[name], where, name, 0, MAX_STEP)
    if "completed" in line:
        need_bool(line["completed"], where, "completed")
    need_str(line.get("message"), where, "message", MAX_TEXT, none_ok=True)
    return line


def _check_samples(samples, where: str, name: str) -> None:
    if samples is None:
        return
    need_dict(samples, where, name)
    for key in ("prompt", "adapted", "base"):
        if key in samples:
            need_str(samples[key], where, f"{name}.{key}", MAX_TEXT, none_ok=True)
    if "step" in samples:
        need_int(samples["step"], where, f"{name}.step", 0, MAX_STEP)


# --- snapshot files -----------------------------------------------------------------------------


def _array(tensors: dict, key: str, where: str, ndim: int) -> np.ndarray:
    if key not in tensors:
        raise ValueError(f"{where}: array {key} is missing")
    arr = tensors[key]
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu" or arr.ndim != ndim:
        raise ValueError(
            f"{where}: array {key} is {getattr(arr, 'dtype', '?')} with shape {list(getattr(arr, 'shape', []))}, "
            f"expected {ndim} dimensions of numbers"
        )
    return arr


MATRIX_ARRAY_DIMS = {
    "delta": 2,
    "base": 2,
    "spectrum": 1,
    "target": 2,
    "target_spectrum": 1,
    "effective_update": 2,
    "effective_update_spectrum": 1,
}
# delta and base may be absent: a recording of a user's own run keeps heatmaps for a few modules only, one
# made in the app those of the matrices that were on view (explorer.schema.heatmap_choice)
REQUIRED_ARRAYS = ("spectrum",)


def _matrix(m, tensors, const_ref, where: str, optional: dict) -> MatrixSnapshot:
    need_dict(m, where, "a matrices entry")
    name = need_str(m.get("name"), where, "matrices[].name", MAX_NAME)
    shape = need_list(m.get("shape"), where, f"matrix {name}: shape", 8)
    if len(shape) != 2:
        raise JsonFileError(f"{where}: matrix {name}: shape is {shown(shape)}, expected [rows, columns]")
    shape = tuple(need_int(x, where, f"matrix {name}: shape", 1, 1 << 31) for x in shape)
    figures = {
        k: need_number(m.get(k), where, f"matrix {name}: {k}", finite=False)
        for k in ("fro_norm", "effective_rank", "stable_rank")
    }
    method = need_str(m.get("spectrum_method", "exact"), where, f"matrix {name}: spectrum_method", MAX_NAME)
    extra = {}
    for key, (types, default) in optional.items():  # absent from older recordings: their defaults
        value = m.get(key, default)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise JsonFileError(f"{where}: matrix {name}: {key} is {shown(value)}, which has the wrong type")
        extra[key] = value
    where_arrays = need_dict(m.get("arrays"), where, f"matrix {name}: arrays")
    unknown = sorted(set(where_arrays) - set(MATRIX_ARRAY_DIMS), key=str)
    if unknown:
        raise JsonFileError(f"{where}: matrix {name} has an unknown array {shown(unknown[0])}")
    arrays = {}
    for field, ndim in MATRIX_ARRAY_DIMS.items():
        ref = where_arrays.get(field)
        key = f"m/{name}/{field}"
        if ref is None:
            if field in REQUIRED_ARRAYS:
                raise ValueError(f"{where}: matrix {name} has no {field} array")
            arrays[field] = None
            continue
        arr = _array(tensors, key, where, ndim) if ref == "" else const_ref(ref, key, where)
        if not isinstance(arr, np.ndarray) or arr.ndim != ndim or arr.dtype.kind not in "fiu":
            raise ValueError(f"{where}: array {key} has the wrong shape or type")
        arrays[field] = arr
    return MatrixSnapshot(name=name, shape=shape, spectrum_method=method, **figures, **extra, **arrays)


def _prefix(i: int, p, tensors, where: str) -> PrefixSnapshot:
    need_dict(p, where, f"prefixes[{i}]")
    layer = need_int(p.get("layer"), where, f"prefixes[{i}].layer", 0, 1 << 20)
    norm = need_number(p.get("prompt_norm", 0.0), where, f"prefixes[{i}].prompt_norm", finite=False)
    has_attention = need_bool(p.get("attention", False), where, f"prefixes[{i}].attention")
    gates = _array(tensors, f"p/{i}/gates", where, 1)
    attention = _array(tensors, f"p/{i}/attention", where, 3) if has_attention else None
    heads = None
    if attention is not None and p.get("heads") is not None:
        listed = need_list(p["heads"], where, f"prefixes[{i}].heads", 1 << 16)
        heads = np.array([need_int(h, where, f"prefixes[{i}].heads[]", 0, 1 << 16) for h in listed], np.int64)
        if len(heads) != attention.shape[0] or len(set(heads.tolist())) != len(heads):
            raise ValueError(
                f"{where}: prefixes[{i}].heads names {len(heads)} heads (each once) for {attention.shape[0]} maps"
            )
    measured = None
    if attention is not None and p.get("attention_step") is not None:
        measured = need_int(p["attention_step"], where, f"prefixes[{i}].attention_step", 0, 2**53)
    return PrefixSnapshot(
        layer=layer, gates=gates, attention=attention, prompt_norm=float(norm), heads=heads, attention_step=measured
    )


def _history(d, tensors, where: str, fields) -> History:
    names = need_list(d.get("spectra_names", []), where, "spectra_names", 100_000)
    arrays = {f: _array(tensors, f"h/{f}", where, 3 if f == "gates" else 1) for f in fields}
    spectra = {}
    for name in names:
        need_str(name, where, "a spectra_names entry", MAX_NAME)
        spectra[name] = _array(tensors, f"h/spectra/{name}", where, 2)
    for steps, values in (("steps", "loss"), ("eval_steps", "eval_loss"), ("gate_steps", "gates")):
        if len(arrays[steps]) != len(arrays[values]) and not (values == "gates" and arrays[values].size == 0):
            raise ValueError(
                f"{where}: history {values} has {len(arrays[values])} points but {steps} has {len(arrays[steps])}"
            )
    for name, arr in spectra.items():
        if len(arr) != len(arrays["spectrum_steps"]):
            raise ValueError(f"{where}: history spectra of {name} do not match spectrum_steps")
    return History(**arrays, spectra=spectra)


def fault_from(d: dict, where: str) -> Fault | None:
    """The Fault a record holds: its message in `fault` (all a recording from before structured faults
    has: kind "error"), its kind and setting in `fault_kind` / `fault_setting`."""
    message = need_str(d.get("fault"), where, "fault", MAX_TEXT, none_ok=True)
    setting = need_str(d.get("fault_setting"), where, "fault_setting", MAX_NAME, none_ok=True)
    try:
        return Fault.read(message, d.get("fault_kind"), setting)
    except ValueError as exc:
        raise JsonFileError(f"{where}: {exc}") from None


def snapshot_from(
    d: dict, tensors: dict, const_ref, where: str, scalars, history_fields, matrix_optional: dict
) -> Snapshot:
    """The Snapshot of one snapshot file's metadata `d` and arrays, every field checked."""
    missing = [k for k in scalars if k not in d]
    if missing:
        raise JsonFileError(f"{where}: the snapshot metadata has no {missing[0]}")
    v = {
        "step": need_int(d["step"], where, "step", 0, MAX_STEP),
        "time": need_number(d["time"], where, "time", finite=False),
        "segment": need_int(d["segment"], where, "segment", 0, MAX_STEP),
        "loss": need_number(d["loss"], where, "loss", finite=False, none_ok=True),
        "eval_loss": need_number(d["eval_loss"], where, "eval_loss", finite=False, none_ok=True),
        "lr": need_number(d["lr"], where, "lr", finite=False),
        "steps_per_second": need_number(d["steps_per_second"], where, "steps_per_second", finite=False),
        "device": need_str(d["device"], where, "device", MAX_NAME),
        "memory_bytes": need_int(d["memory_bytes"], where, "memory_bytes", 0, 2**63),
        "settings": need_dict(d["settings"], where, "settings"),
        "budget": need_dict(d["budget"], where, "budget"),
        "samples": d["samples"],
        "probe_tokens": need_list(d["probe_tokens"], where, "probe_tokens", 100_000),
        "state": d["state"],
        "fault": fault_from(d, where),
        # optional: recordings made before it was added have none
        "slow_reason": need_str(d.get("slow_reason"), where, "slow_reason", MAX_TEXT, none_ok=True),
    }
    _check_samples(v["samples"], where, "samples")
    for i, t in enumerate(v["probe_tokens"]):
        need_str(t, where, f"probe_tokens[{i}]", MAX_NAME)
    if v["state"] not in STATES:
        raise JsonFileError(f"{where}: state is {shown(v['state'])}, expected one of {', '.join(STATES)}")
    matrices = {}
    for m in need_list(d.get("matrices", []), where, "matrices", 100_000):
        snap = _matrix(m, tensors, const_ref, where, matrix_optional)
        matrices[snap.name] = snap
    prefixes = [
        _prefix(i, p, tensors, where)
        for i, p in enumerate(need_list(d.get("prefixes", []), where, "prefixes", 100_000))
    ]
    history = _history(d, tensors, where, history_fields)
    token_delta = _token_delta(d.get("token_delta"), tensors, where)
    return Snapshot(**v, matrices=matrices, prefixes=prefixes, history=history, token_delta=token_delta)


def _token_delta(meta, tensors: dict, where: str) -> dict | None:
    """The token view's data (absent from older recordings: None): its text and one float32
    difference per token, array "t/delta"."""
    if meta is None:
        return None
    need_dict(meta, where, "token_delta")
    if set(meta) != {"context", "tokens", "step"}:
        raise JsonFileError(f"{where}: token_delta holds {shown(sorted(meta))}, expected context, tokens and step")
    context = need_str(meta["context"], where, "token_delta.context", MAX_TEXT)
    tokens = need_list(meta["tokens"], where, "token_delta.tokens", 100_000)
    for i, t in enumerate(tokens):
        need_str(t, where, f"token_delta.tokens[{i}]", MAX_TEXT)
    step = need_int(meta["step"], where, "token_delta.step", 0, MAX_STEP)
    delta = _array(tensors, "t/delta", where, 1)
    if delta.dtype != np.float32 or delta.shape != (len(tokens),):
        raise JsonFileError(
            f"{where}: token_delta: array t/delta is {delta.dtype} with shape {list(delta.shape)}, "
            f"expected {len(tokens)} float32 values, one per token"
        )
    return {"context": context, "tokens": list(tokens), "delta": delta, "step": step}
