"""The views draw what the engine measured, labelled for what it is: DoRA's effective update beside
B·A (and W0 + ΔW as a merge writes it), partial spectra of large full fine-tuning updates, DoRA's
magnitude vectors in the budget. Snapshots come from real Trainers on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401 (autouse fixture)

from explorer.engine.trainer import Trainer
from explorer.gui.views import VIEW_CLASSES


def make(qtbot, view_id: str, w: int = 560, h: int = 460):
    view = VIEW_CLASSES[view_id]()
    qtbot.addWidget(view)
    view.resize(w, h)
    view.show()
    qtbot.waitExposed(view)
    return view


def _snapshot(settings, steps=4):
    t = Trainer(settings, base_model=tiny_byte_model() if settings.scenario == "lm" else None)
    for _ in range(steps):
        t.train_step()
    return t, t.snapshot()


def test_delta_view_shows_doras_effective_update_and_the_merged_weight(qtbot):
    t, snap = _snapshot(tiny_matrix(use_dora=True, display_size=32))  # 24 x 32: drawn unpooled
    m = snap.matrices["W"]
    view = make(qtbot, "delta")
    view.update_snapshot(snap)
    assert view._buttons["effective"].isVisibleTo(view)
    view.set_mode("effective")
    np.testing.assert_array_equal(view.image_data(), m.effective_update)
    assert "W_eff − W₀ (DoRA)" in view.caption_text() and "‖W_eff − W₀‖" in view.caption_text()
    view.set_mode("merged")
    merged = t.model.W.effective_weight().detach()  # what a merge writes
    np.testing.assert_allclose(view.image_data(), merged.numpy(), atol=2e-6)
    assert "what a merge writes" in view.caption_text()
    view.set_mode("delta")
    np.testing.assert_array_equal(view.image_data(), m.delta)
    assert "low-rank part" in view.caption_text()
    # Without DoRA the mode is not offered, and W0 + ΔW is W0 + s·B·A.
    _, plain = _snapshot(tiny_matrix(display_size=32))
    view.set_mode("effective")
    view.update_snapshot(plain)
    assert not view._buttons["effective"].isVisibleTo(view)
    pm = plain.matrices["W"]
    np.testing.assert_array_equal(view.image_data(), pm.delta)  # fell back to ΔW
    view.set_mode("merged")
    np.testing.assert_array_equal(view.image_data(), pm.base + pm.delta)


def test_spectrum_view_draws_and_labels_the_effective_update(qtbot):
    _, snap = _snapshot(tiny_lm(use_dora=True))
    view = make(qtbot, "spectrum")
    view.update_snapshot(snap)
    name = view.current_matrix()
    m = snap.matrices[name]
    _, y = view.effective_curve.getData()  # log10 σ: the plot's y axis is logarithmic
    np.testing.assert_allclose(10**y, m.effective_update_spectrum[m.effective_update_spectrum > 0], rtol=1e-6)
    assert view.effective_curve.isVisible()
    labels = [item.text for _, item in view.legend.items]
    assert "σᵢ of W_eff − W₀ (DoRA)" in labels and "σᵢ of ΔW = s·B·A" in labels
    assert "DoRA W_eff − W₀" in view.ranks_text() and f"{m.effective_update_fro_norm:.4g}" in view.ranks_text()
    assert view.spectrum_values().size == snap.settings["rank"]  # the B·A curve: r values
    _, plain = _snapshot(tiny_lm())
    view.update_snapshot(plain)
    assert not view.effective_curve.isVisible() and "DoRA" not in view.ranks_text()


def test_spectrum_view_labels_a_partial_spectrum_and_its_exact_energy(qtbot):
    _, snap = _snapshot(tiny_matrix(method="full", size_in=600, size_out=520, display_size=16), steps=3)
    m = snap.matrices["W"]
    view = make(qtbot, "spectrum")
    view.update_snapshot(snap)
    text = view.ranks_text()
    assert "top <b>64</b> of 520 σ (randomized, partial)" in text and "effective rank of these 64" in text
    assert "partial" in view.caption.text()
    _, energy = view.energy_curve.getData()
    # cumulative energy as a share of the whole (exact) ||ΔW||_F²: the top 64 hold less than all of it
    s = m.spectrum.astype(np.float64)
    assert energy[-1] == pytest.approx((s**2).sum() / m.fro_norm**2, rel=1e-5) and energy[-1] < 0.99


def test_budget_view_counts_doras_magnitudes_from_the_snapshot(qtbot):
    t, snap = _snapshot(tiny_lm(use_dora=True, rank=8), steps=1)
    view = make(qtbot, "budget")
    view.update_snapshot(snap)
    trainable = sum(v.numel() for v in t.trained_tensors().values())
    assert view.values()["trainable"] == f"{trainable:,}"
    rows = {r[0]: r for r in view.preset_rows()}
    assert rows["LLaMA-7B"][1] == "4,456,448"  # PEFT's count for r=8 on q_proj, v_proj with DoRA
    # A budget that arrives without prices (an older recording) is priced from the settings, DoRA too.
    snap.budget = {k: v for k, v in snap.budget.items() if k != "presets"}
    snap.segment += 1
    view.update_snapshot(snap)
    rows = {r[0]: r for r in view.preset_rows()}
    assert rows["LLaMA-7B"][1] == "4,456,448"
    assert torch.is_tensor(next(iter(t.trained_tensors().values())))
