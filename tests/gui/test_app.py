"""The main window end to end (pytest-qt, offscreen): it starts, trains, redraws, survives faults,
obeys the keyboard and remembers its layout, theme and settings.

Every test closes its window (and so its worker) and checks that no training thread is left.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import tiny_lm
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QMessageBox

from explorer.gui.persistence import Persistence
from explorer.gui.shortcuts import SHORTCUTS, native_text
from explorer.gui.theme import apply_theme
from explorer.gui.window_layout import view_applies
from explorer.schema.settings import SETTINGS_SPEC, TrainSettings

WAIT_MS = 60_000


# ---------------------------------------------------------------------------------------- helpers
def wait_snapshot(qtbot, win, pred, timeout=WAIT_MS):
    """Wait until a delivered snapshot satisfies pred; return it."""
    got = {}

    def check():
        snap = win.last_snapshot
        assert snap is not None and pred(snap)
        got["snap"] = snap

    qtbot.waitUntil(check, timeout=timeout)
    return got["snap"]


def activate(qtbot, win):
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=WAIT_MS)


# ---------------------------------------------------------------------------------------- tests
def test_window_starts_with_every_part(make_window):
    win = make_window()
    assert win.isVisible()
    docks = win.findChildren(QDockWidget)
    assert win.controls_dock in docks
    for view_id, dock in win.view_docks.items():
        # the views that apply to the method and scenario are shown (test_layout: the others give way)
        assert dock.isVisible() == view_applies(view_id, win.settings), view_id
        assert dock.toolTip(), f"{view_id} has no formula tooltip"
    assert win.statusBar().isVisible()
    names = {a.objectName() for a in win.actions()}
    for needed in (
        "action_play_pause",
        "action_step",
        "action_reset",
        "action_save_state",
        "action_open",
        "action_export_view",
        "action_quit",
        "action_full_screen",
        "action_help",
    ):
        assert needed in names
    assert not win.view_errors, win.view_errors


# Views drawn from the settings rather than the step (the budget): they change when a snapshot first
# arrives and on a cold change, not while training.
SETTINGS_VIEWS = {"budget"}


def test_play_trains_and_every_view_redraws(qtbot, make_window):
    win = make_window(tiny_lm(method="lora+prefix", prefix_layers=2), start=False)
    for view_id in win.views:  # views tabbed away by default: bring them out
        if view_id not in win.visible_view_ids():
            win.splitDockWidget(win.view_docks["loss"], win.view_docks[view_id], Qt.Horizontal)
    qtbot.waitUntil(lambda: win.visible_view_ids() == list(win.views), timeout=WAIT_MS)
    blank = {v: win.views[v].grab().toImage() for v in win.views}
    with qtbot.waitSignal(win.worker_attached, timeout=WAIT_MS):
        win.start_worker()
    first = wait_snapshot(qtbot, win, lambda s: s.step == 0)
    qtbot.waitUntil(
        lambda: all(win.views[v].grab().toImage() != blank[v] for v in SETTINGS_VIEWS & set(win.views)), timeout=WAIT_MS
    )
    before = {v: win.views[v].grab().toImage() for v in win.views}
    win.play()
    wait_snapshot(qtbot, win, lambda s: s.step >= 20 and s.state == "running")
    win.pause()  # a pause posts a full snapshot: held-out loss and a fresh sample
    paused = wait_snapshot(qtbot, win, lambda s: s.state == "paused")
    changed = {}

    def all_changed():
        for v, view in win.views.items():
            if v not in SETTINGS_VIEWS:
                changed[v] = view.grab().toImage() != before[v]
        assert all(changed.values()), changed

    qtbot.waitUntil(all_changed, timeout=WAIT_MS)
    assert paused.step < 1000  # a bounded number of steps
    assert win.status.step.text() == f"step {paused.step:,}"
    assert first.segment == paused.segment
    assert not win.view_errors, win.view_errors


def test_sample_now_brings_samples_of_the_current_step(qtbot, make_window, monkeypatch):
    from explorer.engine import worker

    monkeypatch.setattr(worker, "SAMPLE_INTERVAL_S", 1e6)  # no samples by the cadence: only on request
    win = make_window(tiny_lm(speed=5.0))
    wait_snapshot(qtbot, win, lambda s: s.samples is not None and s.samples["step"] == 0)
    win.play()
    snap = wait_snapshot(qtbot, win, lambda s: s.step >= 2 and s.state == "running")
    assert snap.samples["step"] == 0
    view = win.views["samples"]
    qtbot.waitUntil(lambda: view.sample_button.isEnabled(), timeout=WAIT_MS)
    qtbot.mouseClick(view.sample_button, Qt.MouseButton.LeftButton)  # the view's signal, the window, the worker
    fresh = wait_snapshot(qtbot, win, lambda s: s.samples is not None and s.samples["step"] >= snap.step)
    assert fresh.state == "running" and fresh.token_delta is not None and fresh.token_delta["step"] >= snap.step
    qtbot.waitUntil(lambda: view.sample_step() is not None and view.sample_step() >= snap.step, timeout=WAIT_MS)


def test_rank_change_restarts_adapters_and_spectrum_has_rank_values(qtbot, make_window):
    win = make_window()
    win.play()
    old = wait_snapshot(qtbot, win, lambda s: s.step >= 5)
    row = win.controls.rows["rank"]
    assert row.tag.text() == "cold"
    row.editor.setValue(3)  # what the spin box does on Enter or an arrow click
    # a cold edit applies once no other follows within a moment (several make one restart)
    qtbot.waitUntil(lambda: win.settings.rank == 3, timeout=WAIT_MS)
    snap = wait_snapshot(qtbot, win, lambda s: s.segment > old.segment and s.step >= 3)
    assert snap.settings["rank"] == 3
    for m in snap.matrices.values():
        assert len(m.spectrum) == 3
    if "spectrum" in win.views:
        qtbot.waitUntil(
            lambda: (
                win.views["spectrum"].snapshot is not None
                and all(len(m.spectrum) == 3 for m in win.views["spectrum"].snapshot.matrices.values())
            ),
            timeout=WAIT_MS,
        )
    assert "cold" in win.status.currentMessage() or "restarted" in win.status.currentMessage()


def test_switching_to_prefix_shows_gates_from_zero_then_moving(qtbot, make_window):
    win = make_window(tiny_lm(prefix_layers=2))
    win.play()
    old = wait_snapshot(qtbot, win, lambda s: s.step >= 2)
    combo = win.controls.rows["method"].editor
    combo.setCurrentIndex(combo.findData("prefix"))
    combo.activated.emit(combo.currentIndex())  # what a user's pick emits
    qtbot.waitUntil(lambda: win.settings.method == "prefix", timeout=WAIT_MS)  # cold: after a moment
    assert win.controls.rows["prefix_len"].isVisibleTo(win.controls)
    assert not win.controls.rows["rank"].isVisibleTo(win.controls)
    first = wait_snapshot(qtbot, win, lambda s: s.segment > old.segment and s.prefixes)
    if first.step == 0:
        assert all(np.all(p.gates == 0) for p in first.prefixes)
    else:  # the first snapshot of the segment came after some steps: its history starts at 0
        assert np.all(first.history.gates[0] == 0)
    wait_snapshot(
        qtbot,
        win,
        lambda s: (
            s.segment == first.segment and s.prefixes and max(float(np.abs(p.gates).max()) for p in s.prefixes) > 0
        ),
    )
    if "gates" in win.views:
        qtbot.waitUntil(
            lambda: win.views["gates"].snapshot is not None and win.views["gates"].snapshot.segment == first.segment,
            timeout=WAIT_MS,
        )


@pytest.mark.parametrize("kind", ["nan", "exception", "oom"])
def test_fault_shows_message_and_window_stays_usable(qtbot, make_window, kind):
    win = make_window()
    win.controls.request({"lr": 0.02})
    settings_before = win.settings
    win.play()
    wait_snapshot(qtbot, win, lambda s: s.step >= 3)
    win.worker.inject_fault(kind)
    snap = wait_snapshot(qtbot, win, lambda s: s.state == "fault")
    qtbot.waitUntil(lambda: win.fault_dialog is not None and win.fault_dialog.isVisible(), timeout=WAIT_MS)
    dialog = win.fault_dialog
    assert isinstance(dialog, QMessageBox)
    assert dialog.windowModality() == Qt.NonModal
    assert snap.fault.message in dialog.text()
    assert snap.fault.message in win.status.currentMessage()
    assert win.status.state.property("state") == "fault"
    assert win.drain_timer.isActive()  # the window keeps draining while the dialog is open
    assert win.settings == settings_before
    assert win.worker.settings == settings_before
    assert win.controls.isEnabled()
    # Reset, then Play trains again, with the same settings.
    activate(qtbot, win)
    qtbot.keyClick(win, Qt.Key_R)
    wait_snapshot(qtbot, win, lambda s: s.state != "fault" and s.segment > snap.segment)
    assert win.fault_dialog is None
    win.play()
    after = wait_snapshot(qtbot, win, lambda s: s.state == "running" and s.step >= 3)
    assert after.settings["lr"] == 0.02


def test_rank_is_capped_by_the_model_and_engine_rejections_keep_settings(qtbot, make_window):
    win = make_window(tiny_lm())
    wait_snapshot(qtbot, win, lambda s: bool(s.matrices))
    cap = min(min(m.shape) for m in win.last_snapshot.matrices.values())
    row = win.controls.rows["rank"]
    assert row.editor.maximum() == cap
    row.editor.setValue(cap + 50)  # a spin box cannot go past the model's min(in, out)
    qtbot.waitUntil(lambda: win.settings.rank == cap, timeout=WAIT_MS)
    wait_snapshot(qtbot, win, lambda s: s.settings["rank"] == cap)
    before = win.settings
    # A change the engine refuses when it applies it (here: past the cap, sent without the widget).
    win.controls.request({"rank": cap + 50})
    qtbot.waitUntil(lambda: win.fault_dialog is not None and win.fault_dialog.isVisible(), timeout=WAIT_MS)
    assert f"rank={cap + 50}" in win.fault_dialog.text()
    assert win.settings == before and win.worker.settings == before
    assert row.editor.value() == cap
    assert row.error.isVisibleTo(win.controls) and f"rank={cap + 50}" in row.error.text()
    assert f"rank={cap + 50}" in win.status.currentMessage()
    row.editor.setValue(2)
    qtbot.waitUntil(lambda: win.settings.rank == 2, timeout=WAIT_MS)
    assert not row.error.isVisibleTo(win.controls)
    win.play()
    wait_snapshot(qtbot, win, lambda s: s.state == "running" and s.settings["rank"] == 2 and s.step >= 2)


def test_worker_thread_dying_is_reported_and_reset_replaces_it(qtbot, make_window):
    win = make_window()
    dead = win.worker
    dead.close()
    qtbot.waitUntil(lambda: win.fault_dialog is not None and win.fault_dialog.isVisible(), timeout=WAIT_MS)
    assert "stopped" in win.status.currentMessage()
    win.reset()
    assert win.worker is not None and win.worker is not dead and win.worker.alive
    win.play()
    wait_snapshot(qtbot, win, lambda s: s.state == "running" and s.step >= 2)


def test_shortcuts_trigger_their_actions(qtbot, make_window, tmp_path, monkeypatch):
    win = make_window()
    activate(qtbot, win)
    qtbot.keyClick(win, Qt.Key_Space)
    assert win.playing
    wait_snapshot(qtbot, win, lambda s: s.state == "running")
    qtbot.keyClick(win, Qt.Key_Space)
    paused = wait_snapshot(qtbot, win, lambda s: s.state == "paused")
    for key in (Qt.Key_N, Qt.Key_Right):
        step = win.last_snapshot.step
        qtbot.keyClick(win, key)
        wait_snapshot(qtbot, win, lambda s, step=step: s.step == step + 1)
    seg = paused.segment
    qtbot.keyClick(win, Qt.Key_R)
    wait_snapshot(qtbot, win, lambda s: s.segment > seg and s.step == 0)
    qtbot.keyClick(win, Qt.Key_BracketLeft)
    assert win.settings.speed == 1000
    wait_snapshot(qtbot, win, lambda s: s.settings["speed"] == 1000)
    assert win.speed_box.currentData() == 1000
    qtbot.keyClick(win, Qt.Key_BracketRight)
    assert win.settings.speed == 0 and win.speed_box.currentText() == "max"
    # F1: the overlay lists every shortcut; Esc closes it
    qtbot.keyClick(win, Qt.Key_F1)
    assert win.help_overlay.isVisible()
    text = win.help_overlay.label.text()
    for needed in ("Space", "N / Right", ">R<", "F11", "F1", "Ctrl+S", "Ctrl+O", "Ctrl+E", "Ctrl+Q"):
        assert needed in text, needed
    for sc in SHORTCUTS:
        assert native_text(sc.keys) in text and sc.text in text
    qtbot.keyClick(win.help_overlay, Qt.Key_Escape)
    assert not win.help_overlay.isVisible()
    # F11
    qtbot.keyClick(win, Qt.Key_F11)
    qtbot.waitUntil(lambda: win.isFullScreen(), timeout=WAIT_MS)
    qtbot.keyClick(win, Qt.Key_F11)
    qtbot.waitUntil(lambda: not win.isFullScreen(), timeout=WAIT_MS)
    # Ctrl+S / Ctrl+O / Ctrl+E through their dialogs (answered by the test)
    saved_lr = win.settings.lr
    settings_file = tmp_path / "settings.json"
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(settings_file), ""))
    qtbot.keyClick(win, Qt.Key_S, Qt.ControlModifier)
    assert settings_file.is_file()
    win.controls.request({"lr": 0.05})
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getOpenFileName", lambda *a, **k: (str(settings_file), ""))
    qtbot.keyClick(win, Qt.Key_O, Qt.ControlModifier)
    qtbot.waitUntil(lambda: win.settings.lr == saved_lr, timeout=WAIT_MS)  # read on a helper thread
    wait_snapshot(qtbot, win, lambda s: s.settings["lr"] == saved_lr)
    if win.views:
        png = tmp_path / "view.png"
        monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(png), ""))
        qtbot.keyClick(win, Qt.Key_E, Qt.ControlModifier)
        assert png.is_file() and png.stat().st_size > 0
    qtbot.keyClick(win, Qt.Key_Q, Qt.ControlModifier)
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=WAIT_MS)
    assert win.worker is None


def test_space_in_a_text_field_types_instead_of_playing(qtbot, make_window):
    win = make_window(tiny_lm())
    layers = win.controls.rows["layers"].editor
    win.activateWindow()
    layers.setFocus()
    qtbot.waitUntil(lambda: layers.hasFocus(), timeout=WAIT_MS)
    qtbot.keyClicks(layers, "0, 1")
    assert not win.playing
    assert layers.text() == "0, 1"


def test_layout_theme_and_settings_persist_across_two_windows(qtbot, make_window, tmp_path):
    store = Persistence(path=str(tmp_path / "persist.ini"))
    win = make_window(store=store, start=False, restore=True)
    win.set_theme("light")
    win.controls.request({"rank": 5, "lr": 0.02})
    some = next(iter(win.view_docks.values()), None)
    win.removeDockWidget(win.controls_dock)
    win.addDockWidget(Qt.RightDockWidgetArea, win.controls_dock)
    if some is not None:
        some.hide()
    win.resize(win.width(), 505)  # the offscreen screen is 800 px wide: change the height
    size = win.size()
    win.close()
    del store

    store2 = Persistence(path=str(tmp_path / "persist.ini"))
    assert store2.theme() == "light"
    win2 = make_window(store2.load_settings(), store=store2, theme=store2.theme(), start=False, restore=True)
    assert win2.settings.rank == 5 and win2.settings.lr == 0.02
    assert win2.dockWidgetArea(win2.controls_dock) == Qt.RightDockWidgetArea
    if some is not None:
        assert not win2.view_docks[some.objectName()[len("dock_") :]].isVisible()
    assert win2.height() == size.height()  # (the width is clamped to the 800 px offscreen screen)
    assert win2.theme == "light"
    win2.reset_layout()
    assert win2.dockWidgetArea(win2.controls_dock) == Qt.LeftDockWidgetArea
    apply_theme("dark")


def test_corrupt_stored_values_are_ignored(qtbot, make_window, tmp_path):
    path = tmp_path / "bad.ini"
    q = QSettings(str(path), QSettings.IniFormat)
    q.setValue("window/geometry", "not a geometry")
    q.setValue("window/state", b"\x00garbage")
    q.setValue("window/state_version", "x")
    q.setValue("ui/theme", "purple")
    q.setValue("training/settings", '{"rank": -3, "bogus": 1')
    q.sync()
    store = Persistence(path=str(path))
    assert store.theme() == "dark"
    assert store.load_settings() is None
    q.setValue("training/settings", '{"rank": -3}')
    assert store.load_settings() is None
    q.setValue("training/settings", "[1, 2]")
    assert store.load_settings() is None
    win = make_window(store.load_settings(), store=store, start=False, restore=True)
    assert win.settings == TrainSettings()
    assert win.dockWidgetArea(win.controls_dock) == Qt.LeftDockWidgetArea


def test_features_are_made_on_first_use_and_owned_by_the_window(qtbot, make_window):
    from explorer.gui.services import WindowServices

    win = make_window(start=False)
    assert isinstance(win, WindowServices)  # every member the features may use is there
    assert win.features.made("talk") is None and win.replay is None
    talk = win.features.talk
    assert win.features.made("talk") is talk and win.features.talk is talk
    assert talk.active is None and not win.replaying


def test_theme_switch_restyles_plots(qtbot, make_window):
    win = make_window(start=False)
    win.set_theme("light")
    assert QApplication.instance().palette().window().color().lightness() > 200
    win.set_theme("dark")
    assert QApplication.instance().palette().window().color().lightness() < 60
    assert set(SETTINGS_SPEC)  # the controls were generated from the spec


def test_command_line_opens_the_window_and_paints_before_torch(tmp_path):
    """`python -m explorer` paints its first frame without having imported torch; --talk is accepted."""
    import os
    import subprocess
    import sys

    from explorer.commands.app import talk_mode_available

    code = (
        "import sys\n"
        "from explorer.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('torch-imported' if 'torch' in sys.modules else 'no-torch')\n"
        "sys.exit(rc)\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--first-frame-exit",
            "--talk",
            "--scenario",
            "matrix",
            "--settings-path",
            str(tmp_path / "s.ini"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "first frame" in out.stdout
    assert "no-torch" in out.stdout  # the window painted before any model code loaded
    if not talk_mode_available():
        assert "talk mode is not built yet" in out.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "explorer", "--method", "nope"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr


def test_command_line_overrides_win_over_remembered_settings():
    from explorer.gui.main_window import apply_overrides

    remembered = TrainSettings(method="prefix", rank=64)
    s = apply_overrides(remembered, {"scenario": "matrix"})
    assert s.scenario == "matrix" and s.method == "lora"
    s = apply_overrides(remembered, {"device": "cpu", "method": None})
    assert s.device == "cpu" and s.method == "prefix"
    assert apply_overrides(remembered, {}) is remembered


def test_only_visible_views_draw_and_a_view_brought_forward_catches_up(qtbot, make_window):
    win = make_window()
    loss, spectrum = win.view_docks["loss"], win.view_docks["spectrum"]
    win.tabifyDockWidget(loss, spectrum)
    loss.raise_()
    qtbot.waitUntil(
        lambda: "spectrum" not in win.visible_view_ids() and "loss" in win.visible_view_ids(), timeout=WAIT_MS
    )
    drawn = win.views["spectrum"].draw_count
    win.play()
    wait_snapshot(qtbot, win, lambda s: s.step >= 20)
    win.pause()
    last = wait_snapshot(qtbot, win, lambda s: s.state == "paused")
    assert win.views["spectrum"].draw_count == drawn  # hidden behind a tab: not drawn
    spectrum.raise_()
    qtbot.waitUntil(
        lambda: win.views["spectrum"].snapshot is not None and win.views["spectrum"].snapshot.step == last.step,
        timeout=WAIT_MS,
    )
    assert win.views["spectrum"].draw_count > drawn
