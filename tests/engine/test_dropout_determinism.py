"""LoRA dropout draws from a generator of the run's own, reseeded from (seed, step): runs with
dropout > 0 are bit-identical in one process, after reset(), across processes, and beside other runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_helpers import one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401 (autouse fixture)
from torch import nn

from explorer.core.lora import LoraDropout, LoraLinear, set_dropout_generator
from explorer.engine.compare import CompareRunner
from explorer.engine.trainer import Trainer
from explorer.schema.compare import parse_run_spec

ROOT = Path(__file__).resolve().parents[2]


def _losses(trainer, n):
    return [trainer.train_step() for _ in range(n)]


def test_dropout_with_a_generator_is_nn_dropout_with_its_own_stream():
    x = torch.randn(64, 32)
    d = LoraDropout(0.25).train()
    d.generator = torch.Generator().manual_seed(5)
    y = d(x)
    kept = y != 0
    assert 0.6 < kept.float().mean().item() < 0.9
    assert torch.allclose(y[kept], x[kept] / 0.75)  # inverted dropout, as nn.Dropout
    torch.manual_seed(0)
    torch.rand(10)  # the global generator moves: the masks do not
    d.generator.manual_seed(5)
    assert torch.equal(d(x), y)
    assert torch.equal(d.eval()(x), x)  # off in eval mode
    # Without a generator it is nn.Dropout exactly (the global generator, same masks).
    d.generator = None
    d.train()
    torch.manual_seed(3)
    a = d(x)
    torch.manual_seed(3)
    assert torch.equal(a, nn.Dropout(0.25).train()(x))


def test_set_dropout_generator_reaches_every_lora_dropout():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    model[0] = LoraLinear(model[0], 2, 4.0, dropout=0.1)
    model[1] = LoraLinear(model[1], 2, 4.0, dropout=0.0)  # no dropout module at all
    g = torch.Generator()
    assert set_dropout_generator(model, g) == 1
    assert model[0].lora_dropout.generator is g


@pytest.mark.parametrize("make", [lambda: (tiny_matrix(dropout=0.3), None), lambda: (tiny_lm(dropout=0.2), "tiny")])
def test_two_runs_in_one_process_are_bit_identical_and_dropout_matters(make):
    settings, base = make()
    model = tiny_byte_model() if base else None
    a = Trainer(settings, base_model=model)
    la = _losses(a, 6)
    torch.rand(100)  # anything else drawing from the global generator in between changes nothing
    b = Trainer(settings, base_model=model)
    torch.manual_seed(1234)
    assert _losses(b, 6) == la  # bit for bit
    ta, tb = a.trained_tensors(), b.trained_tensors()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    # Dropout is really on, and its masks follow the seed.
    assert _losses(Trainer(settings.with_changes(dropout=0.0), base_model=model), 6) != la
    assert _losses(Trainer(settings.with_changes(seed=1), base_model=model), 6) != la


def test_reset_and_interleaved_runs_replay_the_same_masks():
    settings = tiny_matrix(dropout=0.3)
    t = Trainer(settings)
    first = _losses(t, 5)
    t.reset()
    other = Trainer(settings.with_changes(rank=2))
    mixed = []
    for _ in range(5):  # interleaved with another run with dropout, as the compare runner steps them
        mixed.append(t.train_step())
        other.train_step()
    assert mixed == first


def test_step_zero_loss_shown_before_training_is_the_loss_step_zero_trains_on():
    t = Trainer(tiny_matrix(dropout=0.3))
    shown = t.snapshot().loss
    assert t.train_step() == shown


def test_a_restored_state_goes_on_with_the_same_masks(tmp_path):
    settings = tiny_matrix(dropout=0.3)
    t = Trainer(settings)
    _losses(t, 3)
    t.save_state(tmp_path / "s.safetensors")
    rest = _losses(t, 3)
    u = Trainer(settings)
    u.load_state(tmp_path / "s.safetensors")
    assert _losses(u, 3) == rest


def test_a_compare_run_does_not_depend_on_the_runs_beside_it():
    def losses(*specs):
        r = CompareRunner(tiny_matrix(dropout=0.3), [parse_run_spec(s) for s in specs])
        for _ in range(5):
            r.step_round()
        return r.snapshot().runs[0].losses

    alone = losses("lora:r=2")
    assert np.array_equal(losses("lora:r=2", "lora:r=4,dropout=0.5", "full"), alone)
    single = Trainer(tiny_matrix(dropout=0.3, rank=2))
    assert np.array_equal(np.asarray(_losses(single, 5), dtype=alone.dtype), alone)


_CHILD = """
import json, torch
torch.set_num_threads(1)
torch.rand(7)  # a different global-generator history than the parent's
from tests.engine_helpers import tiny_matrix
from explorer.engine.trainer import Trainer
from explorer.schema.compare import parse_run_spec
t = Trainer(tiny_matrix(dropout=0.3))
print(json.dumps([t.train_step() for _ in range(5)]))
"""


def test_runs_in_two_processes_are_bit_identical():
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    here = _losses(Trainer(tiny_matrix(dropout=0.3)), 5)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here  # JSON floats round-trip exactly
