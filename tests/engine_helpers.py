"""Shared by the engine tests: tiny settings, a tiny byte-level model, snapshot comparison."""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest
import torch

from explorer.core.llama import LlamaConfig, LlamaForCausalLM
from explorer.schema.settings import TrainSettings


def tiny_matrix(**changes) -> TrainSettings:
    base = dict(
        scenario="matrix",
        method="lora",
        rank=4,
        size_in=32,
        size_out=24,
        target_rank=3,
        batch_size=8,
        lr=1e-2,
        device="cpu",
    )
    base.update(changes)
    return TrainSettings(**base)


# The tiny matrix scenario as a deck scene's [scene.settings] lines (talk-mode tests write decks).
MATRIX_SCENE_SETTINGS = (
    'scenario = "matrix"\nmethod = "lora"\nsize_in = 32\nsize_out = 24\ntarget_rank = 3\nbatch_size = 8\n'
    'device = "cpu"\n'
)


def tiny_lm(**changes) -> TrainSettings:
    base = dict(
        scenario="lm",
        method="lora",
        rank=2,
        seq_len=16,
        batch_size=2,
        prefix_len=3,
        prefix_layers=1,
        device="cpu",
        lr=1e-2,
    )
    base.update(changes)
    return TrainSettings(**base)


_TINY = {}


def tiny_byte_model() -> LlamaForCausalLM:
    """A random 2-layer byte-level Llama (vocab 256), for engine tests that need speed, not skill."""
    if "m" not in _TINY:
        cfg = LlamaConfig(
            vocab_size=256,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
        m = LlamaForCausalLM(cfg)
        m.init_weights(torch.Generator().manual_seed(0))
        _TINY["m"] = m.eval()
    return _TINY["m"]


def _eq(a, b, where):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a.dtype, b.dtype, a.shape, b.shape)
        assert np.array_equal(a, b, equal_nan=True), where
    elif dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _eq(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), (where, list(a), b)
        for k in a:
            _eq(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            _eq(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b and type(a) is type(b), (where, a, b)


def assert_snapshots_equal(a, b) -> None:
    _eq(a, b, "snapshot")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Engine tests use one torch thread: the tiny models gain nothing from more, and on a busy
    2-core machine spinning OpenMP threads make every small matmul orders of magnitude slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def no_engine_threads() -> bool:
    return not any(t.name == "peft-explorer-training" and t.is_alive() for t in threading.enumerate())


def thread_worker(settings):
    """The real TrainingWorker on one thread (the lm scenario on the tiny random byte-level model): what
    the window tests train with."""
    from explorer.engine.worker import TrainingWorker

    return TrainingWorker(settings, base_model=tiny_byte_model(), threads=1)
