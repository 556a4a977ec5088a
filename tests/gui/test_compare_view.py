"""The compare view, judged by what a person sees: pixels that are drawn and change with the data, one
curve and one table row per run, the φ heatmap of the chosen pair and module, amplification and the
intrinsic-rank spectra; and a live CompareWorker drawn into it with no thread left behind."""

from __future__ import annotations

import threading

import compare_factory as cf
import numpy as np
import pytest
import snapshot_factory as sf
from engine_helpers import tiny_matrix
from PySide6 import QtGui, QtWidgets

from explorer.engine.compare import CompareWorker
from explorer.gui.views.compare_view import RUN_COLOURS, CompareView

M1 = "model.layers.1.self_attn.v_proj"


def make(qtbot, w: int = 760, h: int = 820) -> CompareView:
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(w, h)
    view.show()
    qtbot.waitExposed(view)
    return view


def pixels(widget: QtWidgets.QWidget) -> np.ndarray:
    """The widget as a person would see it, (height, width, 3) uint8 RGB."""
    QtWidgets.QApplication.processEvents()
    img = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
    # Format_RGB32 is 0xffRRGGBB: bytes B, G, R, 255 in memory on a little-endian machine
    return buf.reshape(img.height(), img.bytesPerLine() // 4, 4)[:, : img.width(), 2::-1].copy()


def colours(arr: np.ndarray) -> int:
    flat = arr.reshape(-1, 3).astype(np.int64)
    return int(np.unique(flat[:, 0] | (flat[:, 1] << 8) | (flat[:, 2] << 16)).size)


def changed(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 if a.shape != b.shape else float(np.any(a != b, axis=2).mean())


def test_registered_under_compare():
    from explorer.gui.views import VIEW_CLASSES

    assert VIEW_CLASSES.get("compare") is CompareView


def test_the_view_is_drawn_and_changes_with_the_data(qtbot):
    view = make(qtbot)
    blank = pixels(view.curves.glw)
    view.update_snapshot(cf.compare_snapshot(20))
    a = pixels(view.curves.glw)
    assert colours(a) > 16 and changed(blank, a) > 0.01
    phi_a = pixels(view.analyses.similarity.glw)
    assert colours(phi_a) > 16
    view.update_snapshot(cf.compare_snapshot(200, seed=1))
    b = pixels(view.curves.glw)
    assert changed(a, b) > 0.005, "new losses did not change the curves"
    assert changed(phi_a, pixels(view.analyses.similarity.glw)) > 0.005, "a new φ did not change the heatmap"
    # every run's colour is on screen
    for colour in RUN_COLOURS[:4]:
        c = QtGui.QColor(colour)
        rgb = np.array([c.red(), c.green(), c.blue()])
        assert (np.abs(b.astype(int) - rgb).sum(axis=2) < 30).any(), colour


@pytest.mark.parametrize(
    "runs",
    [
        ("lora:r=8",),
        ("lora:r=4", "lora:r=8", "full"),
        (
            "lora:r=2",
            "lora:r=4",
            "lora:r=8",
            "lora:r=16",
            "prefix:K=10",
            "full",
            "lora+prefix:r=8",
            "lora:r=32",
            "lora:r=64",
        ),
    ],
)
def test_one_curve_and_one_table_row_per_run(qtbot, runs):
    view = make(qtbot)
    snap = cf.compare_snapshot(60, runs=runs)
    view.update_snapshot(snap)
    assert view.curve_count() == len(runs)
    assert view.labels() == [r.label for r in snap.runs]
    assert view.table_rows() == len(runs)
    assert [view.table_text(i, "run") for i in range(len(runs))] == view.labels()
    first = snap.runs[0]
    assert view.table_text(0, "trainable params") == f"{first.trainable_params:,}"
    assert view.table_text(0, "held-out loss") == f"{first.final_eval_loss:.4g}"
    assert view.curve_colour(view.labels()[0]).upper() == RUN_COLOURS[0].upper()
    assert len({view.curve_colour(label) for label in view.labels()}) == min(len(runs), len(RUN_COLOURS))
    # fewer runs next time: the extra curves and rows go
    view.update_snapshot(cf.compare_snapshot(70, runs=runs[:1], segment=1))
    assert view.curve_count() == 1 and view.table_rows() == 1


def test_phi_heatmap_follows_the_chosen_pair_and_module(qtbot):
    view = make(qtbot)
    snap = cf.compare_snapshot(50, runs=("lora:r=4", "lora:r=8", "lora:r=16", "full"))
    view.update_snapshot(snap)
    a = snap.analysis
    assert view.tab() == "similarity"
    assert view.pair() == ("lora-r4", "lora-r8")
    assert view.module() == cf.MODULES[0]
    np.testing.assert_array_equal(view.phi(), a.similarity[("lora-r4", "lora-r8")][cf.MODULES[0]])
    assert view.analyses.similarity.phi_image.image.shape == (4, 8)
    with qtbot.waitSignal(view.pairChanged, timeout=2000) as sig:
        assert view.set_pair("lora-r16", "lora-r4")
    assert sig.args == ["lora-r16", "lora-r4"]
    np.testing.assert_array_equal(view.phi(), a.similarity[("lora-r4", "lora-r16")][cf.MODULES[0]].T)
    with qtbot.waitSignal(view.moduleChanged, timeout=2000):
        assert view.set_module(M1)
    np.testing.assert_array_equal(view.phi(), a.similarity[("lora-r4", "lora-r16")][M1].T)
    assert "φ(1,1) = <b>" in view.analyses.similarity.caption.text()
    assert not view.set_pair("full", "lora-r4") and not view.set_module("nope")
    # the choice survives the next snapshot
    view.update_snapshot(cf.compare_snapshot(60, runs=("lora:r=4", "lora:r=8", "lora:r=16", "full")))
    assert view.pair() == ("lora-r16", "lora-r4") and view.module() == M1


def test_amplification_and_intrinsic_rank_tabs(qtbot):
    view = make(qtbot)
    snap = cf.compare_snapshot(50, runs=("lora:r=4", "lora:r=8", "full"))
    view.update_snapshot(snap)
    view.set_tab("amplification")
    before = pixels(view.analyses.amplification.glw)
    assert view.analyses.amplification.table.rowCount() == 2 * len(cf.MODULES)
    assert (
        view.analyses.amplification.table.item(0, 7).text()
        == f"{snap.analysis.amplification['lora-r4'][0]['factor']:.3g}"
    )
    assert len(view.analyses.amplification.bars) == 2 and colours(before) > 8
    view.set_tab("intrinsic")
    assert len(view.analyses.intrinsic.items) == 3  # the full update and two LoRA runs
    assert "exact svd, all 64 values" in view.analyses.intrinsic.caption.text()
    assert colours(pixels(view.analyses.intrinsic.glw)) > 8
    # without a full run the tab says what to add
    view.update_snapshot(cf.compare_snapshot(50, runs=("lora:r=4", "lora:r=8"), segment=1))
    assert "--runs full" in view.analyses.intrinsic.caption.text()


def test_an_ordinary_snapshot_is_a_one_run_comparison_until_a_comparison_arrives(qtbot):
    view = make(qtbot)
    view.update_snapshot(sf.lora_snapshot(40))
    assert view.curve_count() == 1 and view.table_rows() == 1 and view.labels() == ["lora-r4"]
    assert view.table_text(0, "LLaMA-7B params") != "–"
    view.update_snapshot(cf.compare_snapshot(40))
    assert view.table_rows() == 4
    view.update_snapshot(sf.lora_snapshot(80))  # a live run's snapshot no longer replaces it
    assert view.table_rows() == 4
    view.clear()
    assert view.table_rows() == 0
    for snap in (
        sf.blank_snapshot(),
        sf.prefix_snapshot(0),
        sf.full_snapshot(30),
        sf.matrix_snapshot(30),
        cf.compare_snapshot(0),
        cf.compare_snapshot(30, analysis=False),
    ):
        view.clear()
        view.update_snapshot(snap)
        assert pixels(view).size


def test_talk_mode_and_theme_keep_the_picture(qtbot):
    view = make(qtbot)
    view.update_snapshot(cf.compare_snapshot(40))
    dark = pixels(view)
    view.set_theme(False)
    view.set_talk_mode(1.6, True)
    light = pixels(view)
    assert changed(dark, light) > 0.3 and colours(light) > 16
    assert view.table_rows() == 4 and view.curve_count() == 4


def test_a_live_compare_worker_drawn_into_the_view(qtbot):
    view = make(qtbot)
    worker = CompareWorker(tiny_matrix(), ["lora:r=2", "lora:r=4", "full"], threads=1)
    shown = []

    def drain() -> bool:
        snap = worker.latest()
        if snap is not None:
            view.update_snapshot(snap)
            shown.append(snap)
        return bool(shown) and shown[-1].step == 8 and shown[-1].analysis is not None

    try:
        worker.start()
        qtbot.waitUntil(lambda: drain() or bool(shown), timeout=60000)
        first = pixels(view.curves.glw)
        worker.step(8)
        qtbot.waitUntil(drain, timeout=60000)
    finally:
        worker.close()
    assert not worker.alive
    assert not any(t.name == CompareWorker.thread_name and t.is_alive() for t in threading.enumerate())
    assert view.curve_count() == 3 and view.table_rows() == 3
    assert view.phi() is not None and view.phi().shape == (2, 4)
    assert changed(first, pixels(view.curves.glw)) > 0.005


def test_typed_run_specs_are_checked_and_requested(qtbot):
    view = make(qtbot)
    view.set_specs_text("lora:r=4  lora:r=16; full")
    with qtbot.waitSignal(view.compareRequested, timeout=2000) as sig:
        view.compare_button.click()
    assert sig.args == [["lora:r=4", "lora:r=16", "full"]] and view.spec_error_text() == ""
    view.set_specs_text("lora:r=4 prefix:r=8")
    with qtbot.assertNotEmitted(view.compareRequested):
        assert view.request_compare() is None
    assert "r=8 does not apply to method 'prefix'" in view.spec_error_text()
    view.set_specs_text("")
    assert view.request_compare() is None and "no runs" in view.spec_error_text()
    # a comparison that arrives shows its own specs in the field
    view.update_snapshot(cf.compare_snapshot(10, runs=("lora:r=4", "full")))
    assert view.specs_text() == "lora:r=4  full"
