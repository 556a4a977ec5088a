"""Dropout determinism and DoRA's effective update on a GPU: `python -m pytest gpu_checks/test_fidelity_cuda.py`
(needs CUDA; not in the default suite). The dropout generator lives on the run's device; the effective
update and the partial spectra are reduced there."""

import numpy as np
import torch

from explorer.engine.trainer import LIVE_LOWRANK_Q, Trainer
from explorer.schema.settings import TrainSettings


def _matrix(**changes) -> TrainSettings:
    base = dict(scenario="matrix", size_in=1024, size_out=768, rank=8, batch_size=64, device="cuda", lr=1e-3)
    return TrainSettings(**{**base, **changes})


def test_dropout_on_cuda_is_bit_identical_run_to_run():
    settings = _matrix(dropout=0.2)
    a = Trainer(settings)
    assert a._seg.dropout_generator.device.type == "cuda"
    la = [a.train_step() for _ in range(10)]
    torch.cuda.manual_seed_all(123)  # the global CUDA generator moves: the masks do not
    torch.rand(10, device="cuda")
    b = Trainer(settings)
    assert [b.train_step() for _ in range(10)] == la
    a.reset()
    assert [a.train_step() for _ in range(10)] == la
    plain = Trainer(settings.with_changes(dropout=0.0))
    assert [plain.train_step() for _ in range(10)] != la


def test_dora_effective_update_and_partial_spectra_on_cuda():
    t = Trainer(_matrix(use_dora=True, display_size=64))
    for _ in range(10):
        t.train_step()
    m = t.snapshot().matrices["W"]
    layer = t.model.W
    update = (layer.effective_weight() - layer.base_layer.weight).detach().double()
    assert m.effective_update.shape == (64, 64) and m.effective_update_partial
    assert m.effective_update_spectrum.shape == (LIVE_LOWRANK_Q,)
    assert (
        abs(m.effective_update_fro_norm - torch.linalg.matrix_norm(update).item()) < 1e-4 * m.effective_update_fro_norm
    )
    exact = torch.linalg.svdvals(update)[:LIVE_LOWRANK_Q].cpu().numpy()
    assert np.all(m.effective_update_spectrum <= exact * (1 + 1e-5))
    full = Trainer(_matrix(method="full"))
    for _ in range(10):
        full.train_step()
    f = full.snapshot().matrices["W"]
    d = (full.model.W.weight - full.scenario.W0).detach().double()
    assert f.spectrum_partial and abs(f.fro_norm - torch.linalg.matrix_norm(d).item()) < 1e-4 * f.fro_norm
