"""The adapter inspector's Resize panel (pytest-qt, offscreen): the energy slider shows the
parameters and energy kept that schema.rank_advice.trade_off gives at that level and each module's
new rank by the same rule as the resize command; "Resize to this…" writes an adapter PEFT's reader
accepts with those ranks, a refusal shows the command's one line, and an AdaptionPrompt adapter's
panel says resizing is for LoRA only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import tiny_lm
from PySide6.QtCore import Qt

from explorer.core.peft_files import read_adapter, write_adaption_prompt_adapter, write_lora_adapter
from explorer.schema.format import format_count
from explorer.schema.rank_advice import ModuleSpectrum, energy_rank, trade_off

WAIT_MS = 120_000
R = 6


def _factors():
    """q_proj / v_proj in two layers at rank 6, each with a spread spectrum (decaying columns of B), so
    the energy rank moves over 50..100 % and differs between modules."""
    g = torch.Generator().manual_seed(3)
    mods = {}
    for i in range(2):
        for name, out_f, decay in (("q_proj", 64, 0.5), ("v_proj", 32, 0.8)):
            scale = torch.tensor([decay ** (j * (i + 1)) for j in range(R)])
            mods[f"model.layers.{i}.self_attn.{name}"] = {
                "A": torch.linalg.qr(torch.randn(64, R, generator=g))[0].T.contiguous(),
                "B": torch.linalg.qr(torch.randn(out_f, R, generator=g))[0] * scale,
            }
    return mods


@pytest.fixture
def lora_dir(tmp_path):
    d = tmp_path / "tiny-lora"
    write_lora_adapter(d, _factors(), r=R, lora_alpha=2.0 * R, target_modules=["q_proj", "v_proj"])
    return d


def _open(qtbot, win, path):
    inspector = win.features.inspector.inspector(create=True)
    with qtbot.waitSignal(inspector.loaded, timeout=WAIT_MS) as blocker:
        assert win.features.inspector.open(str(path)) is inspector
    return inspector, blocker.args[0]


def _spectra(report):
    return [ModuleSpectrum(m.name, m.shape, m.rank, np.array(m.singular_values)) for m in report.modules]


def _shown(panel):
    """(parameters, energy kept %) as the summary line writes them."""
    words = panel.summary.text().split()
    params = words[words.index("parameters") + 1]
    kept = words[words.index("kept") + 1]
    return params, float(kept)


def test_slider_shows_trade_off_and_ranks(qtbot, make_window, lora_dir):
    win = make_window(tiny_lm(), start=False)
    inspector, report = _open(qtbot, win, lora_dir)
    panel = inspector.resize_panel
    assert panel.isVisible() and panel.button.isEnabled()
    assert panel.slider.value() == 95 and panel.energy_label.text() == "95 %"
    spectra = _spectra(report)
    seen = set()
    for percent in (95, 50, 70, 90, 99, 100):
        # the slider moved as a person would: keys from where it is to the level
        while panel.slider.value() != percent:
            key = Qt.Key_Right if panel.slider.value() < percent else Qt.Key_Left
            qtbot.keyClick(panel.slider, key)
        params, kept = trade_off(spectra, [percent / 100])
        assert _shown(panel) == (format_count(int(params[0])), pytest.approx(100 * kept[0], abs=0.006))
        ranks = {m.name: max(1, energy_rank(m.values, percent / 100)) for m in spectra}
        assert panel.shown_ranks() == ranks
        assert sum(k * (m.shape[0] + m.shape[1]) for m, k in zip(spectra, ranks.values(), strict=True)) == params[0]
        # the marker sits on the curve at this level
        mx, my = panel.marker.getData()
        assert (mx[0], my[0]) == pytest.approx((100 * kept[0], params[0]))
        seen.add((int(params[0]), tuple(ranks.values())))
    assert len(seen) >= 4  # the numbers move with the slider
    # the curve is trade_off over the slider's whole range
    cx, cy = panel.curve.getData()
    all_params, all_kept = trade_off(spectra, np.arange(50, 101) / 100)
    assert np.array_equal(cy, all_params) and np.allclose(cx, 100 * all_kept)
    assert panel.shown_ranks() == {m.name: R for m in spectra}  # 100 % keeps every rank


def test_resize_button_writes_the_adapter_with_the_shown_ranks(qtbot, make_window, lora_dir, tmp_path, monkeypatch):
    win = make_window(tiny_lm(), start=False)
    inspector, _ = _open(qtbot, win, lora_dir)
    panel = inspector.resize_panel
    panel.set_energy(0.8)
    expected = panel.shown_ranks()
    assert len(set(expected.values())) > 1
    out = tmp_path / "resized"
    monkeypatch.setattr(panel, "choose_out_dir", lambda: str(out))
    with qtbot.waitSignal(panel.resizeFinished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(panel.button, Qt.LeftButton)
        assert not panel.button.isEnabled()  # one resize at a time
    ok, line = blocker.args
    assert ok, line
    assert line.endswith(f"written to {out}") and line.startswith("total (4 modules)")
    assert panel.result.text() == "Resized: " + line
    qtbot.waitUntil(panel.button.isEnabled, timeout=WAIT_MS)
    resized = read_adapter(out)
    assert {f.name: f.rank for f in resized.lora} == expected

    # the same folder again: the command refuses a non-empty output directory, in one line
    with qtbot.waitSignal(panel.resizeFinished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(panel.button, Qt.LeftButton)
    ok, line = blocker.args
    assert not ok and "\n" not in line and str(out) in line
    assert panel.result.text() == "Not resized: " + line
    assert {f.name: f.rank for f in read_adapter(out).lora} == expected  # left as it was


def test_adaption_prompt_adapter_says_resize_is_for_lora(qtbot, make_window, tmp_path):
    g = torch.Generator().manual_seed(0)
    write_adaption_prompt_adapter(
        tmp_path / "prompt", {i: (torch.randn(5, 64, generator=g), torch.tensor([0.1])) for i in (1, 2)}
    )
    win = make_window(tiny_lm(), start=False)
    inspector, _ = _open(qtbot, win, tmp_path / "prompt")
    panel = inspector.resize_panel
    assert "LoRA" in panel.summary.text() and "only" in panel.summary.text()
    assert not panel.button.isEnabled() and not panel.slider.isEnabled()
    assert panel.table.rowCount() == 0
