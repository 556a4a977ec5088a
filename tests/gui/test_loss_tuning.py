"""Tuning by eye on the loss view: earlier settings stay as labelled ghost curves, hot changes are marked
on the step axis, the held-out line runs through its own points, log y and step axes read as a person
expects (issue 16). Judged by what is drawn: plot items, their data, labels and tick strings, pixels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import snapshot_factory as sf
from PySide6 import QtGui, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui.views import VIEW_CLASSES
from explorer.gui.views.loss_view import ema_debiased
from explorer.schema.snapshot import History


@pytest.fixture(autouse=True)
def _no_app_style_sheet(qapp):
    sheet = qapp.styleSheet()
    qapp.setStyleSheet("")
    yield
    qapp.setStyleSheet(sheet)


def make(qtbot, view_id: str, w: int = 640, h: int = 420):
    view = VIEW_CLASSES[view_id]()
    qtbot.addWidget(view)
    view.resize(w, h)
    view.show()
    qtbot.waitExposed(view)
    return view


def pixels(widget) -> np.ndarray:
    QtWidgets.QApplication.processEvents()
    img = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
    return buf.reshape(img.height(), img.bytesPerLine() // 4, 4)[:, : img.width(), :3].copy()


def tick_strings(axis) -> list[str]:
    """The tick labels an axis draws now (non-empty ones)."""
    QtWidgets.QApplication.processEvents()
    img = QtGui.QImage(16, 16, QtGui.QImage.Format.Format_RGB32)
    painter = QtGui.QPainter(img)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [text for _rect, _flags, text in specs[2] if text] if specs else []


def new_segment(view, snap):
    """What the window does when a snapshot of a new segment arrives: clear, then draw it."""
    view.clear()
    view.update_snapshot(snap)


# ---- ghosts ----------------------------------------------------------------------------------------


def test_a_cold_change_keeps_the_old_curve_as_a_labelled_ghost_until_cleared(qtbot):
    view = make(qtbot, "loss")
    old = sf.lora_snapshot(120, rank=4, segment=0)
    view.update_snapshot(old)
    before = pixels(view.glw)
    new_segment(view, sf.lora_snapshot(6, rank=8, segment=1))
    assert view.ghost_labels() == ["r=4 → r=8"]
    ghost = view.ghosts.ghosts[0]
    assert ghost.curve in view.plot.items and ghost.curve.isVisible()
    x, y = ghost.curve.getData()
    np.testing.assert_array_equal(x, old.history.steps)
    np.testing.assert_allclose(y, ema_debiased(old.history.loss, view.smoothing()))
    assert ghost.text.isVisible() and ghost.text.toPlainText() == "r=4 → r=8"
    assert ghost.text.pos().x() == pytest.approx(float(old.history.steps[-1]))
    assert view.clear_ghosts_button.isVisible()
    assert "earlier settings" in [label.text for _sample, label in view.legend.items]
    # the live curve is the new segment's, the old one is still drawn: the x range reaches step 120
    assert view.plot.vb.viewRange()[0][1] >= 120
    after = pixels(view.glw)
    assert before.shape == after.shape
    # drawn faded: pixels of the ghost are paler than the live training colour but present
    assert np.any(np.abs(after.astype(int) - before.astype(int)).sum(axis=2) > 30)
    # a second cold change: a second ghost, the first stays; the label names both settings that changed
    new_segment(view, dataclasses.replace(sf.lora_snapshot(4, rank=8, alpha=32.0, segment=2)))
    assert view.ghost_labels() == ["r=4 → r=8", "α=8 → α=32"]
    # smoothing applies to the ghosts as to the live curve
    view.set_smoothing(0.9)
    np.testing.assert_allclose(view.ghosts.ghosts[0].curve.getData()[1], ema_debiased(old.history.loss, 0.9))
    view.clear_ghosts_button.click()
    assert view.ghost_labels() == []
    assert ghost.curve not in view.plot.items
    assert not view.clear_ghosts_button.isVisible()
    assert "earlier settings" not in [label.text for _sample, label in view.legend.items]


def test_a_reset_keeps_no_ghost_and_a_replay_hides_them(qtbot):
    view = make(qtbot, "loss")
    view.update_snapshot(sf.lora_snapshot(80, rank=4, segment=0))
    new_segment(view, sf.lora_snapshot(5, rank=4, segment=1))  # Reset: same settings
    assert view.ghost_labels() == []
    new_segment(view, sf.lora_snapshot(5, rank=16, segment=2))
    assert view.ghost_labels() == ["r=4 → r=16"]
    ghost = view.ghosts.ghosts[0]
    # a replay shows its recording alone: no ghost drawn, none made of it
    replay = dataclasses.replace(sf.lora_snapshot(60, rank=2, segment=0), state="replay")
    new_segment(view, replay)
    assert not ghost.curve.isVisible() and not ghost.text.isVisible()
    assert view.ghost_labels() == ["r=4 → r=16"]
    new_segment(view, sf.lora_snapshot(7, rank=16, segment=2))  # back to the live run
    assert ghost.curve.isVisible() and view.ghost_labels() == ["r=4 → r=16"]


def test_ghost_labels_do_not_cover_each_other(qtbot):
    view = make(qtbot, "loss")
    for segment, rank in enumerate((4, 8, 16, 32)):  # every segment ends at the same step and loss
        view.clear()
        view.update_snapshot(sf.lora_snapshot(100, rank=rank, segment=segment))
    assert view.ghost_labels() == ["r=4 → r=8", "r=8 → r=16", "r=16 → r=32"]
    pixels(view.glw)  # drawing settles the range; the labels are placed again after it
    qtbot.waitUntil(lambda: not view.ghosts._place_timer.isActive(), timeout=5000)
    rects = [g.text.sceneBoundingRect() for g in view.ghosts.ghosts]
    assert all(r.width() > 20 for r in rects)
    assert not any(r.intersects(view.legend.sceneBoundingRect()) for r in rects)
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert not a.intersects(b), (a, b)
    # and they are drawn over the curves, each on its own background
    assert all(g.text.zValue() > view.train_curve.zValue() for g in view.ghosts.ghosts)
    assert all(g.text.fill.style() != Qt.BrushStyle.NoBrush for g in view.ghosts.ghosts)


def test_a_ghost_label_under_the_legend_moves_clear_of_it_inside_the_plot(qtbot):
    view = make(qtbot, "loss", 370, 330)
    view.set_log_y(True)

    def segment(number, rank, last, loss):
        steps = np.arange(last + 1)
        snap = dataclasses.replace(
            sf.matrix_snapshot(last), segment=number, history=History(steps=steps, loss=loss(steps).astype(np.float32))
        )
        snap.settings = dict(snap.settings, rank=rank)
        return snap

    view.update_snapshot(segment(0, 2, 3300, lambda s: 1e-2 + 0 * s))  # a plateau ending under the legend
    new_segment(view, segment(1, 4, 2500, lambda s: 0.1 * np.exp(-s / 100) + 1e-5))
    new_segment(view, segment(2, 8, 100, lambda s: 0.1 * np.exp(-s / 100) + 1e-5))
    pixels(view.glw)
    qtbot.waitUntil(lambda: not view.ghosts._place_timer.isActive(), timeout=5000)
    box, legend = view.plot.vb.sceneBoundingRect(), view.legend.sceneBoundingRect()
    for ghost in view.ghosts.ghosts:
        rect = ghost.text.sceneBoundingRect()
        assert box.contains(rect), (ghost.label, rect, box)  # not clipped away
        assert not rect.intersects(legend), ghost.label


def test_the_plot_menu_clears_the_ghosts(qtbot):
    view = make(qtbot, "loss")
    view.update_snapshot(sf.lora_snapshot(80, rank=4, segment=0))
    new_segment(view, sf.lora_snapshot(5, rank=8, segment=1))
    actions = {a.text(): a for a in view.plot.vb.menu.actions()}
    assert actions["Clear ghost curves"].isEnabled()
    actions["Clear ghost curves"].trigger()
    assert view.ghost_labels() == [] and not actions["Clear ghost curves"].isEnabled()


def test_a_hot_change_is_marked_on_the_step_axis(qtbot):
    view = make(qtbot, "loss")
    snap = sf.lora_snapshot(40, segment=0)
    view.update_snapshot(snap)
    changed = dataclasses.replace(sf.lora_snapshot(52, segment=0), lr=3e-3)
    changed.settings["lr"] = 3e-3
    view.update_snapshot(changed)
    assert view.marker_labels() == [(52.0, "lr 0.01 → 0.003")]
    marker = view.ghosts.markers[0]
    assert marker in view.plot.items and marker.isVisible() and marker.angle == 90
    assert marker.label.isVisible() and marker.label.toPlainText() == "lr 0.01 → 0.003"
    pixels(view.glw)
    qtbot.waitUntil(lambda: not view.ghosts._place_timer.isActive(), timeout=5000)
    label = marker.label.sceneBoundingRect()  # at the newest step, under the legend's corner: moved clear of it
    assert view.plot.vb.sceneBoundingRect().contains(label)
    assert not label.intersects(view.legend.sceneBoundingRect())
    assert view.clear_ghosts_button.isVisible()
    # no marker for a snapshot with the same rate; a display setting (speed) is never marked
    again = dataclasses.replace(changed, step=60)
    again.settings = dict(changed.settings, speed=30.0)
    view.update_snapshot(again)
    assert len(view.marker_labels()) == 1
    # the markers belong to their segment
    new_segment(view, sf.lora_snapshot(3, rank=8, segment=1))
    assert view.marker_labels() == [] and marker not in view.plot.items


def test_change_labels_name_what_changed():
    from explorer.gui.cold_edits import change_label

    base = sf.lora_snapshot(1).settings
    assert change_label(base, dict(base, rank=16)) == "r=4 → r=16"
    assert change_label(base, dict(base, targets=["q_proj", "k_proj", "v_proj", "o_proj"])) == (
        "targets=q,v → targets=q,k,v,o"
    )
    assert change_label(base, dict(base, method="full", lr=1e-3)) == "LoRA → full, lr 0.01 → 0.001"
    three = dict(base, rank=16, alpha=32.0, dropout=0.1)
    assert change_label(base, three) == "r=4 → r=16, α=8 → α=32 +1 more"
    assert change_label(base, dict(base, speed=10.0)) == "reset"


# ---- held-out line, log y, step axes ----------------------------------------------------------------


def matrix_like_snapshot(step: int = 400) -> sf.Snapshot:
    """The matrix scenario's shape of curves (issue 16): the loss falls by six decades, held-out is
    measured every 25 steps and ends at 3.4e-7."""
    steps = np.arange(step + 1, dtype=np.int64)
    loss = (0.06 * np.exp(-steps / 20.0) + 2e-7).astype(np.float32)
    eval_steps = steps[::25]
    eval_loss = (0.06 * np.exp(-eval_steps / 20.0) + 3.4e-7).astype(np.float32)
    snap = sf.matrix_snapshot(step)
    return dataclasses.replace(
        snap,
        history=History(steps=steps, loss=loss, eval_steps=eval_steps, eval_loss=eval_loss),
        loss=float(loss[-1]),
        eval_loss=float(eval_loss[-1]),
    )


@pytest.mark.parametrize("smoothing", [0.6, 0.99])
def test_the_held_out_line_runs_through_its_own_points(qtbot, smoothing):
    view = make(qtbot, "loss")
    view.set_smoothing(smoothing)
    view.set_log_y(True)
    snap = matrix_like_snapshot()
    view.update_snapshot(snap)
    px, py = view.eval_raw.getData()  # the measured points as drawn (log10 on a log axis)
    lx, ly = view.eval_curve.getData()  # the bold line as drawn
    np.testing.assert_array_equal(lx, px)
    assert 10 ** py[-1] == pytest.approx(3.4e-7, rel=1e-3)
    assert np.all(ly <= py + 1e-9), "the held-out line sits above its own points"
    assert 10 ** ly[-1] < 1e-6  # not 0.004


def test_log_y_within_one_decade_shows_several_labelled_ticks(qtbot):
    view = make(qtbot, "loss")
    steps = np.arange(201, dtype=np.int64)
    loss = (1.2 + 0.4 * np.exp(-steps / 50.0)).astype(np.float32)  # 1.2 to 1.6, late in a run: within a decade
    snap = sf.lora_snapshot(200)
    view.update_snapshot(dataclasses.replace(snap, history=History(steps=steps, loss=loss)))
    view.set_log_y(True)
    view.plot.vb.autoRange()
    labels = tick_strings(view.plot.getAxis("left"))
    assert len(labels) >= 2, labels
    values = [float(t) for t in labels]
    lo, hi = (10**v for v in view.plot.vb.viewRange()[1])
    assert all(lo <= v <= hi for v in values), (labels, lo, hi)


def _assert_whole_steps(labels: list[str], where: str) -> None:
    assert labels, f"{where}: no step labels"
    for text in labels:
        assert text.lstrip("-").isdigit(), f"{where}: fractional step {text!r} in {labels}"
        assert int(text) >= 0, f"{where}: negative step {text!r} in {labels}"


def test_step_axes_read_whole_non_negative_steps(qtbot):
    early = sf.lora_prefix_snapshot(3)  # four points, steps 0..3: pyqtgraph would write 0.5, 1.5 and -0.5
    loss = make(qtbot, "loss")
    loss.update_snapshot(early)
    loss.plot.vb.autoRange()
    _assert_whole_steps(tick_strings(loss.plot.getAxis("bottom")), "loss")
    gates = make(qtbot, "gates", 700, 420)
    gates.update_snapshot(early)
    for plot, where in ((gates.plot, "gates"), (gates.heat_plot, "gate heatmap")):
        plot.vb.autoRange()
        _assert_whole_steps(tick_strings(plot.getAxis("bottom")), where)
    spectrum = make(qtbot, "spectrum", 560, 640)
    spectrum.update_snapshot(sf.lora_snapshot(3))
    assert spectrum.has_waterfall()
    _assert_whole_steps(tick_strings(spectrum.waterfall_plot.getAxis("left")), "spectrum waterfall")


def test_the_compare_curves_step_axis_reads_whole_steps(qtbot):
    import compare_factory as cf

    view = make(qtbot, "compare", 900, 600)
    view.update_snapshot(cf.compare_snapshot(step=3))
    plot = view.curves.plot
    plot.vb.setXRange(-0.4, 3.4, padding=0)
    _assert_whole_steps(tick_strings(plot.getAxis("bottom")), "compare")


def test_a_note_says_why_train_loss_sits_above_held_out(qtbot):
    from explorer.gui.views.loss_view import TRAIN_ABOVE_NOTE

    view = make(qtbot, "loss")
    snap = sf.lora_snapshot(200)  # the factory's held-out runs 0.15 above the training loss
    view.update_snapshot(snap)
    assert TRAIN_ABOVE_NOTE not in view.caption.text()
    h = snap.history
    above = dataclasses.replace(
        snap, history=dataclasses.replace(h, eval_loss=(h.eval_loss - 0.5).astype(np.float32)), step=201
    )
    view.update_snapshot(above)
    assert TRAIN_ABOVE_NOTE in view.caption.text()
    for where in (view.toolTip(), view.caption.toolTip()):
        assert "before the update" in where and "dropout" in where and "held-out split" in where


def test_step_labels_never_run_into_each_other_on_a_narrow_plot(qtbot):
    """Steps 0..13 on a 260 px loss plot (a 1280 x 720 window) read '10111213' before."""
    loss = make(qtbot, "loss", 260, 240)
    loss.update_snapshot(sf.lora_snapshot(13))
    loss.plot.vb.autoRange()
    QtWidgets.QApplication.processEvents()
    axis = loss.plot.getAxis("bottom")
    img = QtGui.QImage(16, 16, QtGui.QImage.Format.Format_RGB32)
    painter = QtGui.QPainter(img)
    try:
        rects = sorted((r for r, _flags, text in axis.generateDrawSpecs(painter)[2] if text), key=lambda r: r.left())
    finally:
        painter.end()
    assert len(rects) >= 2
    for a, b in zip(rects, rects[1:]):
        assert a.right() + 4 <= b.left(), (a, b)  # a gap a reader sees between two numbers
