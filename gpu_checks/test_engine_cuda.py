"""The training engine on a GPU: `python -m pytest gpu_checks/test_engine_cuda.py` (needs CUDA; not in
the default suite). Together with `python bench/bench_engine.py` (which adds the 4096 x 4096 case on
CUDA), this is the device check of the engine."""

import numpy as np
import pytest
import torch
from engine_helpers import no_engine_threads, tiny_lm

from explorer.engine.trainer import Trainer
from explorer.engine.worker import TrainingWorker
from explorer.schema.settings import TrainSettings


def test_matrix_4096_on_cuda_reduces_on_the_device_and_copies_small_arrays():
    t = Trainer(
        TrainSettings(
            scenario="matrix",
            size_in=4096,
            size_out=4096,
            rank=8,
            target_rank=16,
            batch_size=256,
            device="cuda",
            display_size=128,
        )
    )
    assert t.device.type == "cuda" and t.device_label().startswith("cuda:")
    assert t.model.W.lora_A.weight.is_cuda and t.scenario.W0.is_cuda
    for _ in range(20):
        assert np.isfinite(t.train_step())
    snap = t.snapshot()
    m = snap.matrices["W"]
    assert m.delta.shape == (128, 128) and m.base.shape == (128, 128) and m.target.shape == (128, 128)
    assert m.spectrum.shape == (8,) and m.target_spectrum.shape == (16,)
    assert snap.memory_bytes > 4096 * 4096 * 4  # CUDA allocated bytes, not the host's RSS
    full = Trainer(
        TrainSettings(
            scenario="matrix", method="full", size_in=4096, size_out=4096, batch_size=256, device="cuda", lr=1e-3
        )
    )
    full.train_step()
    fm = full.snapshot(64).matrices["W"]
    assert fm.delta.shape == (64, 64) and fm.spectrum.shape == (64,) and "randomized" in fm.spectrum_method


def test_bf16_mixed_precision_trains():
    t = Trainer(TrainSettings(scenario="matrix", size_in=512, size_out=512, device="cuda", dtype="bf16"))
    first = t.train_step()
    for _ in range(200):
        last = t.train_step()
    assert np.isfinite(last) and last < first
    assert t.model.W.lora_A.weight.dtype == torch.float32  # fp32 weights, bf16 autocast


def test_zero_init_on_cuda_with_the_shipped_model():
    for method in ("lora", "prefix", "lora+prefix", "full"):
        t = Trainer(tiny_lm(method=method, device="cuda"))
        sc = t.scenario
        base = sc.loss(sc.base, sc.batch(0, t.settings.batch_size)).item()
        # bit-identical on the CPU (tests/test_engine_trainer.py); here CUDA may pick another kernel
        assert abs(t.train_step() - base) <= 1e-5 * abs(base), method


def test_worker_on_cuda_trains_snapshots_and_reports_oom():
    w = TrainingWorker(TrainSettings(scenario="matrix", size_in=2048, size_out=2048, device="cuda", batch_size=256))
    try:
        w.start()
        assert w.wait_for(timeout=120).state == "paused"
        w.play()
        s = w.wait_for(lambda s: s.step >= 200, 120)
        assert s.device.startswith("cuda:") and s.steps_per_second > 0
        w.inject_fault("oom")
        s = w.wait_for(lambda s: s.state == "fault", 60)
        assert "out of memory" in s.fault.message and "bf16" in s.fault.message and s.fault.kind == "memory"
        w.reset()
        w.play()
        w.wait_for(lambda s: s.step >= 10 and s.state == "running", 60)
    finally:
        w.close()
    assert no_engine_threads()


@pytest.mark.parametrize("method", ["lora", "prefix"])
def test_lm_worker_on_cuda_posts_samples(method):
    w = TrainingWorker(TrainSettings(method=method, device="cuda"))
    try:
        w.start()
        s = w.wait_for(lambda s: s.samples is not None, 120)
        assert s.samples["adapted"] == s.samples["base"]
        w.step(5)
        s = w.wait_for(lambda s: s.step == 5 and s.samples["step"] == 5, 120)
    finally:
        w.close()
