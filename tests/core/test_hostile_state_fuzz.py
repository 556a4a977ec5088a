"""Fuzz tests for the core readers (hypothesis): a saved state's metadata and resume tensors, and the
pattern fields of adapter_config.json. Whatever they hold, the reader (and the trainer loading a state)
gives checked data or one ValueError line naming the file; a refused state changes nothing."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from engine_helpers import one_thread, tiny_matrix  # noqa: F401 (one_thread: autouse fixture)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.core.peft_files import AdapterFileError, validate_config
from explorer.core.state_file import load_state

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
FUZZ = settings(
    max_examples=120, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@pytest.fixture(scope="module")
def trainer_and_state(tmp_path_factory):
    from explorer.engine.trainer import Trainer

    t = Trainer(tiny_matrix())
    for _ in range(3):
        t.train_step()
    path = tmp_path_factory.mktemp("state") / "state.safetensors"
    t.save_state(path)
    return t, path


@FUZZ
@given(
    key=st.sampled_from(["settings", "extra", "step", "format", "version"]),
    value=JSON.map(json.dumps) | st.text(max_size=20),
)
def test_state_metadata(trainer_and_state, key, value):
    from safetensors import safe_open
    from safetensors.torch import load_file
    from safetensors.torch import save_file as write

    _, path = trainer_and_state
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    meta[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "s.safetensors"
        write(load_file(str(path)), str(bad), metadata=meta)
        try:
            state = load_state(bad)
        except ValueError as exc:
            assert "\n" not in str(exc) and str(bad) in str(exc), str(exc)
            return
        assert isinstance(state.settings, dict) and isinstance(state.extra, dict) and state.step >= 0


RESUME_KEYS = [
    "optimizer/W.lora_A.weight/exp_avg",
    "optimizer/W.lora_A.weight/exp_avg_sq",
    "optimizer/W.lora_B.weight/step",
    "history/loss_steps",
    "history/loss_values",
    "history/eval_steps",
]
TENSORS = st.one_of(
    st.tuples(
        st.sampled_from([(), (1,), (3,), (2, 8), (8, 2), (4, 4)]),
        st.sampled_from([torch.float32, torch.float64, torch.int64, torch.int32, torch.bool, torch.float16]),
        st.floats(-1e3, 1e3),
    ),
)


@FUZZ
@given(key=st.sampled_from(RESUME_KEYS), spec=TENSORS)
def test_resume_tensors_are_checked_before_the_trainer_changes(trainer_and_state, key, spec):
    from safetensors import safe_open
    from safetensors.torch import load_file
    from safetensors.torch import save_file as write

    t, path = trainer_and_state
    shape, dtype, fill = spec
    tensors = load_file(str(path))
    tensors["resume/" + key] = torch.full(shape, fill).to(dtype)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    before = {k: v.clone() for k, v in t.trained_tensors().items()}
    seg, step = t._seg, t.step
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "s.safetensors"
        write(tensors, str(bad), metadata=meta)
        try:
            t.load_state(bad)
        except ValueError as exc:
            assert "\n" not in str(exc) and str(bad) in str(exc), str(exc)
            assert t._seg is seg and t.step == step
            assert all(torch.equal(before[k], v) for k, v in t.trained_tensors().items())
            return
    loss = t.train_step()  # what was accepted trains
    assert loss == loss
    t.load_state(path)  # back to the module's state for the next example


PATTERNS = st.text(alphabet="ab.()|*+?{}[]^$\\1,dw", max_size=14)


@FUZZ
@given(
    field=st.sampled_from(["target_modules", "rank_pattern", "alpha_pattern", "layers_pattern"]),
    pattern=PATTERNS,
    value=st.integers(1, 4),
)
def test_adapter_config_patterns_are_bounded(field, pattern, value):
    from explorer.core.peft_files import target_matches
    from explorer.schema.peft_patterns import pattern_key

    cfg = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
    if field in ("rank_pattern", "alpha_pattern"):
        cfg[field] = {pattern: value}
    else:
        cfg[field] = pattern
    if field == "layers_pattern":
        cfg["layers_to_transform"] = [0]
    path = Path("/fuzz/adapter_config.json")
    try:
        checked = validate_config(cfg, path)
    except AdapterFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
        return
    name = "model.layers.0.self_attn." + "a" * 5000 + "q_proj"
    start = time.perf_counter()
    target_matches(checked["target_modules"], name)
    pattern_key(checked["rank_pattern"], name)
    pattern_key(checked["alpha_pattern"], name)
    assert time.perf_counter() - start < 2.0
