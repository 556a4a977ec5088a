"""DoRA's effective update W_eff - W0 (what a merge writes, full rank) beside the low-rank B·A, and
full fine-tuning's exact ||ΔW||_F with partial spectra labelled as such."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import assert_snapshots_equal, one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401

from explorer.core.analysis import dora_effective_update, pool_matrix
from explorer.core.lora import LoraLinear
from explorer.engine.trainer import LIVE_LOWRANK_Q, Trainer
from explorer.schema.recording import RecordingReader, RecordingWriter


def test_effective_update_is_what_peft_merges():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    model = get_peft_model(
        LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], use_dora=True)
    )
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
            p.copy_(0.3 * torch.randn_like(p))
        m = layer.lora_magnitude_vector["default"].weight
        m.mul_(1 + 0.2 * torch.randn_like(m))
    W0 = layer.base_layer.weight.detach().clone()
    ours = dora_effective_update(
        W0, layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.scaling["default"], m
    )
    merged = model.merge_and_unload().model.layers[0].self_attn.q_proj.weight.detach()
    torch.testing.assert_close(W0 + ours, merged, atol=2e-6, rtol=1e-5)
    # Full rank, unlike B·A (rank 4).
    assert torch.linalg.matrix_rank(ours).item() == 32


def _trained(settings, steps=6):
    t = Trainer(settings, base_model=tiny_byte_model() if settings.scenario == "lm" else None)
    for _ in range(steps):
        t.train_step()
    return t


@pytest.mark.parametrize("settings", [tiny_matrix(use_dora=True, display_size=8), tiny_lm(use_dora=True)])
def test_dora_snapshot_holds_the_effective_update_beside_BA(settings):
    t = _trained(settings)
    snap = t.snapshot()
    for name, m in snap.matrices.items():
        layer: LoraLinear = t.model.get_submodule(name)
        W0 = layer.base_layer.weight.detach()
        merged = layer.effective_weight().detach()  # what merge() writes
        update = merged - W0
        ds = t.settings.display_size
        np.testing.assert_allclose(m.effective_update, pool_matrix(update, ds, ds).numpy(), atol=2e-6)
        np.testing.assert_allclose(m.base + m.effective_update, pool_matrix(merged, ds, ds).numpy(), atol=2e-6)
        exact = torch.linalg.svdvals(update.double()).numpy()
        np.testing.assert_allclose(m.effective_update_spectrum, exact, rtol=1e-4, atol=1e-6)
        assert m.effective_update_fro_norm == pytest.approx(torch.linalg.matrix_norm(update.double()).item(), rel=1e-5)
        assert m.effective_update_stable_rank == pytest.approx(m.effective_update_fro_norm**2 / exact[0] ** 2, rel=1e-4)
        assert m.effective_update_partial is False and "exact" in m.effective_update_method
        # The low-rank part stays what it was: r values of s·B·A.
        assert m.spectrum.shape == (t.settings.rank,)
        assert np.count_nonzero(exact > exact[0] * 1e-5) > t.settings.rank  # the real update has more directions
    plain = Trainer(settings.with_changes(use_dora=False), base_model=t._base_override).snapshot()
    for m in plain.matrices.values():
        assert (
            m.effective_update is None and m.effective_update_spectrum is None and m.effective_update_fro_norm is None
        )


def test_a_large_dora_update_has_a_partial_spectrum_and_an_exact_norm():
    t = _trained(tiny_matrix(use_dora=True, size_in=640, size_out=576, rank=4, display_size=16), steps=3)
    m = t.snapshot().matrices["W"]
    layer = t.model.W
    update = (layer.effective_weight() - layer.base_layer.weight).detach()
    assert m.effective_update_partial is True and "partial" in m.effective_update_method
    assert m.effective_update_spectrum.shape == (LIVE_LOWRANK_Q,)
    assert m.effective_update_fro_norm == pytest.approx(torch.linalg.matrix_norm(update).item(), rel=1e-5)


def test_full_fine_tuning_above_512_states_exact_norm_and_partial_ranks():
    """At 576 x 640 the live spectrum is the top 64 of 576 values: ||ΔW||_F and the stable rank are
    exact (from the dense update and σ₁), the effective rank is that of the 64 values, and the
    snapshot says the spectrum is partial."""
    t = _trained(tiny_matrix(method="full", size_in=640, size_out=576, display_size=16), steps=4)
    m = t.snapshot().matrices["W"]
    W = t.model.W.weight.detach()
    d = (W - t.scenario.W0).double()
    exact = torch.linalg.svdvals(d)
    assert m.spectrum.shape == (LIVE_LOWRANK_Q,) and m.spectrum_partial is True and "partial" in m.spectrum_method
    assert m.fro_norm == pytest.approx(torch.linalg.matrix_norm(d).item(), rel=1e-5)  # not of 64 values
    assert m.fro_norm > np.sqrt((m.spectrum.astype(np.float64) ** 2).sum()) * 1.01
    assert m.stable_rank == pytest.approx((exact.square().sum() / exact[0] ** 2).item(), rel=1e-3)
    s = m.spectrum.astype(np.float64)
    p = s / s.sum()
    assert m.effective_rank == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)
    small = _trained(tiny_matrix(method="full", size_in=64, size_out=48), steps=2).snapshot().matrices["W"]
    assert small.spectrum_partial is False and small.spectrum.shape == (48,)


def test_dora_and_partial_fields_survive_a_recording(tmp_path):
    for k, settings in enumerate(
        (tiny_matrix(use_dora=True, display_size=8), tiny_matrix(method="full", size_in=600, size_out=520))
    ):
        t = _trained(settings, steps=2)
        snap = t.snapshot()
        writer = RecordingWriter(tmp_path / str(k), {"settings": t.settings.to_dict()})
        writer.write(snap)
        writer.close()
        back = RecordingReader(tmp_path / str(k)).snapshot(snap.step)
        assert_snapshots_equal(back, snap)
