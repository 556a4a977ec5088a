"""Tuning by eye, the controls' side (issue 16): several cold edits make one restart, a new method brings
its own learning rate, Space after Enter plays, the ΔW and spectrum views show one matrix, the chosen
ΔW / W₀ / W₀+ΔW button shows in the dark theme, ΔW and ΔW* share a colour scale, and the status bar's
rate and speed menu say what the run really does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import snapshot_factory as sf
from engine_helpers import tiny_lm
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from explorer.gui.controls import ControlsPanel
from explorer.schema.settings import SETTINGS_SPEC, TrainSettings

WAIT_MS = 60_000


def counting_panel(qtbot, settings=None, delay_ms=400):
    calls = []

    def configure(**changes):
        calls.append(changes)
        return {k: SETTINGS_SPEC[k].kind for k in changes}

    panel = ControlsPanel(settings or TrainSettings(), configure=configure, cold_delay_ms=delay_ms)
    panel.calls = calls
    qtbot.addWidget(panel)
    panel.resize(380, 900)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


# ---- several cold edits, one restart ---------------------------------------------------------------


def test_ticking_four_target_boxes_makes_one_restart(qtbot):
    panel = counting_panel(qtbot)
    checks = panel.rows["targets"]._checks
    for name in ("k_proj", "o_proj", "up_proj", "down_proj"):
        box = checks[name]  # a click on its tick box: a QCheckBox ignores clicks past its short label
        qtbot.mouseClick(box, Qt.LeftButton, pos=QPoint(6, box.height() // 2))
    # nothing restarted yet, and every box shows what the user ticked
    assert panel.calls == []
    assert all(checks[n].isChecked() for n in ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"))
    qtbot.waitUntil(lambda: panel.calls != [], timeout=WAIT_MS)
    assert panel.calls == [{"targets": ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")}]
    assert panel.settings.targets == ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")
    assert not panel.edits.pending


def test_a_hot_edit_applies_at_once_while_cold_ones_wait(qtbot):
    panel = counting_panel(qtbot)
    panel.rows["rank"].editor.setValue(16)  # cold: waits
    panel.rows["lr"].editor.setValue(0.02)
    panel.rows["lr"].editor.editingFinished.emit()  # hot: now
    assert panel.calls == [{"lr": 0.02}]
    assert panel.rows["rank"].editor.value() == 16  # the pending edit stays shown through the refresh
    qtbot.waitUntil(lambda: len(panel.calls) == 2, timeout=WAIT_MS)
    assert panel.calls[1] == {"rank": 16}
    # an edit taken back before it applies restarts nothing
    panel.rows["rank"].editor.setValue(12)
    panel.rows["rank"].editor.setValue(16)
    panel.edits.flush()
    assert len(panel.calls) == 2


# ---- each method's learning rate ---------------------------------------------------------------------


def pick(panel, name, value):
    combo = panel.rows[name].editor
    combo.setCurrentIndex(combo.findData(value))
    combo.activated.emit(combo.currentIndex())
    panel.edits.flush()


def test_a_new_method_brings_its_learning_rate_unless_the_user_set_one(qtbot):
    from explorer.schema.settings import default_lr

    panel = counting_panel(qtbot, delay_ms=0)
    assert panel.settings.lr == default_lr("lm", "lora")
    pick(panel, "method", "full")
    assert panel.settings.lr == default_lr("lm", "full") < 1e-2
    assert panel.rows["lr"].editor.text() == f"{default_lr('lm', 'full'):.4g}"  # what the field shows
    pick(panel, "method", "lora")
    assert panel.settings.lr == default_lr("lm", "lora")
    # a rate set by hand stays through a change of method
    lr = panel.rows["lr"].editor
    lr.setValue(5e-3)
    lr.editingFinished.emit()
    pick(panel, "method", "full")
    assert panel.settings.method == "full" and panel.settings.lr == 5e-3


# ---- Space after Enter -------------------------------------------------------------------------------


def test_space_after_enter_in_a_number_field_plays(qtbot, make_window):
    win = make_window(tiny_lm(), start=False)
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=WAIT_MS)
    box = win.controls.rows["batch_size"].editor
    box.setFocus()
    qtbot.waitUntil(box.hasFocus, timeout=WAIT_MS)
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "3")
    qtbot.keyClick(box.lineEdit(), Qt.Key_Return)
    assert win.settings.batch_size == 3
    qtbot.waitUntil(lambda: not box.hasFocus(), timeout=WAIT_MS)  # the keyboard is the window's again
    qtbot.keyClick(QApplication.focusWidget() or win, Qt.Key_Space)
    assert box.text() == "3"  # not blanked
    assert win.playing
    # Space while typing in a number field is not typed either
    box.setFocus()
    qtbot.waitUntil(box.hasFocus, timeout=WAIT_MS)
    qtbot.keyClick(box.lineEdit(), Qt.Key_Space)
    assert box.text() == "3" and not win.playing


# ---- the window: one restart, a ghost, a marker --------------------------------------------------------


def test_the_window_makes_one_restart_of_several_cold_edits_and_keeps_a_ghost(qtbot, make_window):
    win = make_window(tiny_lm(), size=(1600, 1000))
    loss = win.views["loss"]
    configured = []
    real = win.worker.configure

    def counting(**changes):
        configured.append(changes)
        return real(**changes)

    win.worker.configure = counting
    win.play()
    qtbot.waitUntil(lambda: loss.snapshot is not None and loss.snapshot.step >= 6, timeout=WAIT_MS)
    old_segment = loss.snapshot.segment
    for name in ("k_proj", "o_proj"):
        win.controls.rows["targets"]._checks[name].click()
    qtbot.waitUntil(
        lambda: loss.snapshot is not None and loss.snapshot.segment > old_segment and loss.snapshot.step >= 2,
        timeout=WAIT_MS,
    )
    assert configured == [{"targets": ("q_proj", "k_proj", "v_proj", "o_proj")}]
    assert loss.snapshot.segment == old_segment + 1
    assert loss.ghost_labels() == ["targets=q,v → targets=q,k,v,o"]
    assert loss.ghosts.ghosts[0].curve.isVisible()
    # a hot change is marked on the step axis where it took effect
    win.controls.request({"lr": 3e-3})
    qtbot.waitUntil(lambda: loss.marker_labels() != [], timeout=WAIT_MS)
    ((step, label),) = loss.marker_labels()
    assert label == "lr 0.01 → 0.003" and step >= 2
    win.pause()


# ---- ΔW and spectrum: one matrix ---------------------------------------------------------------------


def views_linked(qtbot):
    from explorer.gui.matrix_link import link_matrix_views
    from explorer.gui.views import VIEW_CLASSES

    views = {}
    for view_id in ("delta", "spectrum"):
        view = VIEW_CLASSES[view_id]()
        qtbot.addWidget(view)
        view.resize(560, 520)
        view.show()
        qtbot.waitExposed(view)
        views[view_id] = view
    selection = link_matrix_views(views)
    return views["delta"], views["spectrum"], selection


def test_the_delta_and_spectrum_views_show_the_same_matrix(qtbot):
    delta, spectrum, _ = views_linked(qtbot)
    snap = sf.lora_snapshot(40)
    delta.update_snapshot(snap)
    spectrum.update_snapshot(snap)
    assert delta.current_matrix() == spectrum.current_matrix()
    # the user picks layer 1, v_proj in the ΔW view's pickers
    delta.picker.layer_box.setCurrentText("1")
    delta.picker.module_box.setCurrentText("v_proj")
    chosen = "model.layers.1.self_attn.v_proj"
    assert delta.current_matrix() == chosen
    assert spectrum.current_matrix() == chosen
    assert spectrum.picker.layer_box.currentText() == "1" and spectrum.picker.module_box.currentText() == "v_proj"
    assert chosen in spectrum.caption.text()
    # and the other way round
    spectrum.picker.module_box.setCurrentText("q_proj")
    assert delta.current_matrix() == "model.layers.1.self_attn.q_proj"
    assert "model.layers.1.self_attn.q_proj" in delta.caption_text()
    # unlinked, each picks its own; the two boxes say so
    spectrum.picker.link_box.click()
    assert not delta.picker.link_box.isChecked()
    delta.picker.layer_box.setCurrentText("0")
    assert delta.current_matrix().startswith("model.layers.0.")
    assert spectrum.current_matrix() == "model.layers.1.self_attn.q_proj"
    # linked again: the other follows the view whose box was ticked
    delta.picker.link_box.click()
    assert spectrum.picker.link_box.isChecked()
    assert spectrum.current_matrix() == delta.current_matrix()


def test_a_view_drawn_later_opens_on_the_linked_matrix(qtbot):
    delta, spectrum, _ = views_linked(qtbot)
    snap = sf.lora_snapshot(40)
    delta.update_snapshot(snap)
    assert delta.set_matrix("model.layers.1.self_attn.q_proj")
    spectrum.update_snapshot(snap)  # its first snapshot
    assert spectrum.current_matrix() == "model.layers.1.self_attn.q_proj"


def test_the_window_links_them(make_window):
    win = make_window(start=False)
    assert win.matrix_selection is not None
    assert win.views["delta"].picker.link_box.isChecked()
    assert win.views["spectrum"].picker.link_box.isChecked()


# ---- ΔW view: the chosen mode, ΔW*'s norm, one colour scale -----------------------------------------------


def mean_colour(widget) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
    arr = buf.reshape(img.height(), img.bytesPerLine() // 4, 4)[:, : img.width(), 2::-1]  # B, G, R in memory
    h, w = arr.shape[:2]
    return arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_chosen_mode_button_stands_out(qtbot, qapp, theme):
    from explorer.gui.theme import apply_theme, theme_by_name
    from explorer.gui.views import VIEW_CLASSES

    before = (qapp.styleSheet(), qapp.palette(), qapp.property("explorer_theme"))
    apply_theme(theme)
    try:
        view = VIEW_CLASSES["delta"]()
        qtbot.addWidget(view)
        view.resize(700, 500)
        view.show()
        qtbot.waitExposed(view)
        view.update_snapshot(sf.matrix_snapshot(40))
        view.set_mode("merged")
        chosen = mean_colour(view._buttons["merged"])
        others = [mean_colour(view._buttons[m]) for m in ("delta", "base")]
        highlight = np.array([int(theme_by_name(theme).highlight[i : i + 2], 16) for i in (1, 3, 5)])
        for other in others:
            assert np.abs(chosen - other).sum() > 90, (chosen, other)  # plainly different
        assert np.abs(chosen - highlight).sum() < np.abs(others[0] - highlight).sum()
    finally:
        qapp.setStyleSheet(before[0])
        qapp.setPalette(before[1])
        qapp.setProperty("explorer_theme", before[2])


def test_target_mode_shows_the_targets_norm_and_the_same_colour_scale(qtbot):
    from explorer.gui.views import VIEW_CLASSES

    view = VIEW_CLASSES["delta"]()
    qtbot.addWidget(view)
    view.resize(600, 500)
    view.show()
    qtbot.waitExposed(view)
    snap = sf.matrix_snapshot(20)  # early: ΔW still much smaller than ΔW*
    m = snap.matrices["W"]
    assert np.abs(m.delta).max() < 0.8 * np.abs(m.target).max()
    view.update_snapshot(snap)
    delta_levels = view.levels()
    view.set_mode("target")
    target_levels = view.levels()
    assert delta_levels == pytest.approx(target_levels)
    assert target_levels[1] == pytest.approx(float(np.abs(m.target).max()), rel=1e-6)
    caption = view.caption_text()
    target_norm = float(np.sqrt((m.target_spectrum.astype(np.float64) ** 2).sum()))
    assert f"‖ΔW*‖<sub>F</sub> = {target_norm:.4g}" in caption
    assert f"{m.fro_norm:.4g}" not in caption
    view.set_mode("delta")
    assert f"‖ΔW‖<sub>F</sub> = {m.fro_norm:.4g}" in view.caption_text()


# ---- the status bar and the speed menu -------------------------------------------------------------------


def test_steps_per_second_reads_zero_while_paused_and_nothing_in_replay(qtbot):
    from explorer.gui.status_bar import StatusBar

    bar = StatusBar()
    qtbot.addWidget(bar)
    snap = sf.lora_snapshot(40)  # the engine's figure: 25 steps/s
    bar.update_from(dataclasses.replace(snap, state="running"))
    assert bar.rate.text() == "25.0 steps/s"
    bar.update_from(dataclasses.replace(snap, state="paused"))
    assert bar.rate.text() == "0 steps/s"
    bar.update_from(dataclasses.replace(snap, state="replay"))
    assert bar.rate.text() == ""


def test_the_speed_menu_offers_only_rates_the_run_reaches(qtbot):
    from explorer.gui.window_actions import SpeedBox

    box = SpeedBox()
    qtbot.addWidget(box)
    box.show_speed(0.0)
    enabled = {box.itemData(i): box.model().item(i).isEnabled() for i in range(box.count())}
    assert all(enabled.values())  # not measured yet: every rate is offered
    running = dataclasses.replace(sf.lora_snapshot(40), state="running", steps_per_second=9.0)
    running.settings["speed"] = 0.0
    box.note_snapshot(running)
    enabled = {box.itemData(i): box.model().item(i).isEnabled() for i in range(box.count())}
    assert enabled == {
        0.0: True,
        1000.0: False,
        300.0: False,
        100.0: False,
        30.0: False,
        10.0: False,
        3.0: True,
        1.0: True,
    }
    assert box.itemText(box.findData(0.0)) == "max (≈9.00 /s)"
    # ] from 3/s goes to max, not to an unreachable 10/s; [ from max to 3/s
    assert box.next_speed(3.0, +1) == 0.0
    assert box.next_speed(0.0, -1) == 3.0
    # a cap in force above the reachable rate says the run is at its maximum
    box.show_speed(100.0)
    assert "at its maximum" in box.currentText()
    # another segment measures again
    box.note_snapshot(dataclasses.replace(running, segment=running.segment + 1, state="paused"))
    assert all(box.model().item(i).isEnabled() for i in range(box.count()))


def test_the_command_lines_method_brings_its_learning_rate():
    from explorer.gui.main_window import apply_overrides
    from explorer.schema.settings import default_lr

    assert apply_overrides(TrainSettings(), {"method": "full"}).lr == default_lr("lm", "full")
    assert apply_overrides(TrainSettings(lr=5e-3), {"method": "full"}).lr == 5e-3  # the user's own rate stays
