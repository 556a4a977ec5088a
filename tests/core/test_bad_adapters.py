"""Property test: malformed adapter directories never crash or hang the reader.

Hypothesis starts from a valid LoRA or AdaptionPrompt directory and damages it: configs replaced by
random bytes or JSON, fields set to random values or removed, weight files truncated, bytes
overwritten, header lengths and header entries rewritten, tensors with wrong shapes, NaN or
infinity, a pickle instead of safetensors. Every outcome must be a report, or a ValueError /
FileNotFoundError whose message is one line naming a file in the directory.
"""

import json
import math
import struct
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.core.inspect_adapter import inspect_adapter

PREFIX = "base_model.model.model.layers"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
LORA_FIELDS = [
    "peft_type",
    "r",
    "lora_alpha",
    "use_rslora",
    "use_dora",
    "fan_in_fan_out",
    "rank_pattern",
    "alpha_pattern",
    "target_modules",
    "layers_to_transform",
]
AP_FIELDS = ["peft_type", "adapter_len", "adapter_layers", "target_modules"]
DTYPES = {"F32": np.float32, "F16": np.float16}


def _valid(kind: str, rng: np.random.Generator):
    """(config dict, {name: numpy array}) of a small valid adapter."""
    if kind == "lora":
        config = {
            "peft_type": "LORA",
            "r": 2,
            "lora_alpha": 4,
            "use_rslora": False,
            "use_dora": True,
            "target_modules": ["q_proj", "v_proj"],
            "rank_pattern": {"v_proj": 1},
            "alpha_pattern": {},
        }
        tensors = {}
        for layer in (0, 1):
            for mod, r in (("q_proj", 2), ("v_proj", 1)):
                key = f"{PREFIX}.{layer}.self_attn.{mod}"
                tensors[f"{key}.lora_A.weight"] = rng.standard_normal((r, 8)).astype(np.float32)
                tensors[f"{key}.lora_B.weight"] = rng.standard_normal((6, r)).astype(np.float32)
                tensors[f"{key}.lora_magnitude_vector"] = rng.random(6).astype(np.float32)
        return config, tensors
    config = {"peft_type": "ADAPTION_PROMPT", "adapter_len": 3, "adapter_layers": 2, "target_modules": "self_attn"}
    tensors = {}
    for layer in (2, 3):
        tensors[f"{PREFIX}.{layer}.self_attn.adaption_prompt"] = rng.standard_normal((1, 3, 8)).astype(np.float32)
        tensors[f"{PREFIX}.{layer}.self_attn.adaption_gate"] = rng.standard_normal(1).astype(np.float32)
    return config, tensors


def _header(tensors: dict) -> tuple[dict, bytes]:
    header, chunks, pos = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr).tobytes()
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}[arr.dtype]
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [pos, pos + len(data)]}
        chunks.append(data)
        pos += len(data)
    return header, b"".join(chunks)


def _pack(header, data: bytes, length: int | None = None) -> bytes:
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(h) if length is None else length) + h + data


# Each mutation takes (config, tensors, header, data) as a mutable dict `s` and changes it.
config_field = st.tuples(st.just("config_field"), st.sampled_from(LORA_FIELDS + AP_FIELDS + ["extra"]), JSON)
config_drop = st.tuples(st.just("config_drop"), st.sampled_from(LORA_FIELDS + AP_FIELDS))
config_bytes = st.tuples(st.just("config_bytes"), st.binary(max_size=64))
config_json = st.tuples(st.just("config_json"), JSON)
config_nested = st.tuples(st.just("config_nested"), st.integers(1, 100_000))
truncate = st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True))
flip = st.tuples(
    st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8)
)
header_len = st.tuples(st.just("header_len"), st.integers(0, 2**64 - 1))
header_entry = st.tuples(
    st.just("header_entry"), st.integers(0, 20), st.sampled_from(["dtype", "shape", "data_offsets", "all"]), JSON
)
header_json = st.tuples(st.just("header_json"), JSON)
append = st.tuples(st.just("append"), st.binary(min_size=1, max_size=32))
reshape = st.tuples(st.just("reshape"), st.integers(0, 20), st.lists(st.integers(0, 9), min_size=0, max_size=4))
drop_tensor = st.tuples(st.just("drop_tensor"), st.integers(0, 20))
rename_tensor = st.tuples(st.just("rename_tensor"), st.integers(0, 20), st.text(max_size=30))
bad_value = st.tuples(
    st.just("bad_value"), st.integers(0, 20), st.sampled_from([math.nan, math.inf, -math.inf, 3e38, 6e4])
)
to_f16 = st.tuples(st.just("to_f16"), st.integers(0, 20))
pickle_only = st.tuples(st.just("pickle_only"), st.binary(max_size=32))
delete = st.tuples(st.just("delete"), st.sampled_from(["adapter_config.json", "adapter_model.safetensors"]))
MUTATION = st.one_of(
    config_field,
    config_drop,
    config_bytes,
    config_json,
    config_nested,
    truncate,
    flip,
    header_len,
    header_entry,
    header_json,
    append,
    reshape,
    drop_tensor,
    rename_tensor,
    bad_value,
    to_f16,
    pickle_only,
    delete,
)


def _nth(d: dict, i: int):
    keys = list(d)
    return keys[i % len(keys)] if keys else None


def _build(directory: Path, kind: str, mutations, seed: int) -> None:
    config, tensors = _valid(kind, np.random.default_rng(seed))
    config_text: bytes | None = None
    raw_header = None  # replaces the header JSON entirely
    entry_edits = []  # (tensor index, field, value) applied to the computed header
    header_length = None
    byte_edits = []  # applied to the final weights file, in order
    removed = set()
    for m in mutations:
        op = m[0]
        if op == "config_field":
            config[m[1]] = m[2]
        elif op == "config_drop":
            config.pop(m[1], None)
        elif op == "config_bytes":
            config_text = m[1]
        elif op == "config_json":
            config_text = json.dumps(m[1]).encode()
        elif op == "config_nested":
            config_text = b"[" * m[1] + b"]" * m[1]
        elif op in ("truncate", "flip", "append"):
            byte_edits.append(m)
        elif op == "header_len":
            header_length = m[1]
        elif op == "header_entry":
            entry_edits.append(m[1:])
        elif op == "header_json":
            raw_header = json.dumps(m[1]).encode()
        elif op == "reshape" and tensors:
            name = _nth(tensors, m[1])
            n = int(np.prod(m[2])) if m[2] else 1
            tensors[name] = np.resize(tensors[name].ravel(), n).reshape(m[2]).astype(tensors[name].dtype)
        elif op == "drop_tensor" and tensors:
            tensors.pop(_nth(tensors, m[1]))
        elif op == "rename_tensor" and tensors:
            name = _nth(tensors, m[1])
            tensors[m[2] or "x"] = tensors.pop(name)
        elif op == "bad_value" and tensors:
            name = _nth(tensors, m[1])
            arr = tensors[name].copy()
            if arr.size:
                with np.errstate(over="ignore"):
                    arr.flat[0] = m[2]
            tensors[name] = arr
        elif op == "to_f16" and tensors:
            name = _nth(tensors, m[1])
            tensors[name] = tensors[name].astype(np.float16)
        elif op == "pickle_only":
            removed.add("adapter_model.safetensors")
            (directory / "adapter_model.bin").write_bytes(b"\x80\x04" + m[1])
        elif op == "delete":
            removed.add(m[1])
    header, data = _header(tensors)
    for index, field, value in entry_edits:
        name = _nth(header, index)
        if name is not None:
            if field == "all":
                header[name] = value
            else:
                header[name][field] = value
    blob = _pack(raw_header if raw_header is not None else header, data, header_length)
    for m in byte_edits:
        if m[0] == "truncate":
            blob = blob[: int(m[1] * len(blob))]
        elif m[0] == "append":
            blob += m[1]
        else:
            arr = bytearray(blob)
            for where, value in m[1]:
                if arr:
                    arr[int(where * len(arr))] = value
            blob = bytes(arr)
    if "adapter_config.json" not in removed:
        if config_text is None:
            try:
                config_text = json.dumps(config).encode()
            except ValueError:
                config_text = b"{"
        (directory / "adapter_config.json").write_bytes(config_text)
    if "adapter_model.safetensors" not in removed:
        (directory / "adapter_model.safetensors").write_bytes(blob)


@settings(
    max_examples=250, deadline=timedelta(seconds=3), suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    kind=st.sampled_from(["lora", "prompt"]),
    mutations=st.lists(MUTATION, min_size=1, max_size=3),
    seed=st.integers(0, 3),
)
def test_malformed_directories_give_one_line_errors(kind, mutations, seed):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "adapter"
        directory.mkdir()
        _build(directory, kind, mutations, seed)
        try:
            report = inspect_adapter(directory)
        except (ValueError, FileNotFoundError) as exc:
            message = str(exc)
            assert "\n" not in message and message.strip() == message
            assert message.startswith(str(directory)), message
            assert len(message) < 600
            return
        # Whatever was accepted must give a complete, strict-JSON report.
        json.dumps(report.to_json_dict(), allow_nan=False)


def test_the_unmutated_directories_are_valid():
    for kind in ("lora", "prompt"):
        with tempfile.TemporaryDirectory() as tmp:
            _build(Path(tmp), kind, [], 0)
            report = inspect_adapter(tmp)
            assert len(report.modules) == (4 if kind == "lora" else 0)
