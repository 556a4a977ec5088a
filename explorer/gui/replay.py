"""Replay a recording in the window (File > Open recording…, `python -m explorer --replay DIR`).

    window.features.replay.open(path=None)     # a directory chooser when path is None
    window.features.replay.back_to_live()      # the replay bar's "Back to live"

A recording is a directory written by `python -m explorer run` or by the app itself
(explorer.schema.recording: config.json, metrics.jsonl, snapshots/NNNNNN.safetensors). In replay mode:
- the window stops taking the live worker's snapshots (the worker pauses; nothing of it is lost) and
  every view draws the recording's snapshots through the same path as live ones (`window.deliver`),
  so a view shows step s of a replay exactly as it showed step s live;
- a replay bar at the bottom: play / pause, a slider over the recorded steps, the step, the speed
  (0.5x to 8x the recording's own pace: the steps per second it was trained at, from its time stamps),
  and Back to live. Keys: Space plays / pauses, Left / Right go one record back / on, Home / End;
- the settings panel shows (disabled) the settings the recording was made with; the actions that act
  on the live run (play, step, reset, speed, save and open state, export as adapter, talk mode) are
  disabled; exports and recording a GIF work as usual;
- generated samples are recorded only when fresh; as live, the newest ones so far ride along with
  every step shown.
A recording cut off mid-write (a killed run) opens with the records that are complete. Recording
the live run is explorer.gui.run_recording's.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui.services import WindowServices
from explorer.gui.shortcuts import SHORTCUTS
from explorer.schema.format import format_rate, one_line
from explorer.schema.recording import RecordingReader

SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0)
FALLBACK_RECORDS_PER_S = 10.0  # 1x for a recording without usable time stamps
FRAME_MS = 33  # playback timer: at most ~30 snapshots drawn per second


# ---------------------------------------------------------------------------------------- replay
class ReplayController(QtCore.QObject):
    """The window in replay mode: a reader, a position, the replay bar and a playback timer."""

    position_changed = QtCore.Signal(int)  # the step now shown
    back_requested = QtCore.Signal()  # the bar's Back to live

    def __init__(self, window: WindowServices, reader: RecordingReader):
        super().__init__(window.widget)
        self.window = window
        self.reader = reader
        self.steps: list[int] = list(reader.steps)
        self.index = 0
        self.speed = 1.0
        self.playing = False
        self.shown_step: int | None = None
        self.shown: object | None = None  # the snapshot last drawn
        self.errors = 0
        self._pos = float(self.steps[0])  # playback position, in training steps
        self._last_tick = 0.0
        self._pending: int | None = None
        self._disabled: list[tuple[QtGui.QAction | QtWidgets.QWidget, bool]] = []
        self._actions: list[QtGui.QAction] = []
        self.rate = recorded_rate(reader)  # training steps per second at 1x
        # generated samples are recorded when fresh; live, the newest ones ride along in every snapshot
        self._samples = [(m["step"], m["samples"]) for m in reader.metrics if isinstance(m.get("samples"), dict)]
        self._live_settings = None
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self._tick)
        self.bar = ReplayBar(self)

    # ---- entering and leaving ------------------------------------------------------------------
    def enter(self) -> None:
        win = self.window
        if win.playing:
            win.pause()
        for target in win.live_controls():
            self._disabled.append((target, target.isEnabled()))
            target.setEnabled(False)
        self._add_keys()
        # the panel shows (greyed) the settings the recording was made with
        self._live_settings = win.settings
        win.show_settings(self.reader.settings)
        win.widget.addToolBar(Qt.ToolBarArea.BottomToolBarArea, self.bar)
        self.bar.show()
        win.clear_views()
        self.show_index(0)
        self.bar.slider.setFocus()

    def leave(self) -> None:
        win = self.window
        self.pause()
        self.timer.stop()
        for act in self._actions:
            win.widget.removeAction(act)
            act.deleteLater()
        self._actions.clear()
        for target, enabled in self._disabled:
            target.setEnabled(enabled)
        self._disabled.clear()
        self.restore_live_settings()
        win.widget.removeToolBar(self.bar)
        self.bar.deleteLater()
        win.clear_views()

    def restore_live_settings(self) -> None:
        """The panel shows the live run's settings again (a window closed in replay remembers those)."""
        if self._live_settings is not None:
            self.window.show_settings(self._live_settings)
            self.window.controls.set_model_limit("rank", None)  # the live run's next snapshot sets its own
            self._live_settings = None

    def _add_keys(self) -> None:
        """The Replay group of shortcuts.SHORTCUTS: Space plays / pauses; Left / Right and Home / End
        go back / on (their first key back, their second on). The live actions with those keys are
        disabled meanwhile, so nothing is ambiguous."""
        last = len(self.steps) - 1
        slots = {
            "replay_play": (self.toggle_play,),
            "replay_step": (lambda: self.step_by(-1), lambda: self.step_by(1)),
            "replay_ends": (lambda: self.show_index(0), lambda: self.show_index(last)),
        }
        for sc in SHORTCUTS:
            for i, (key, slot) in enumerate(zip(sc.keys, slots.get(sc.action, ()))):
                act = QtGui.QAction(sc.text, self.window.widget)
                act.setObjectName(f"action_{sc.action}_{i}")
                act.setShortcut(QtGui.QKeySequence(key))
                act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
                act.triggered.connect(lambda *_a, s=slot: s())
                self.window.widget.addAction(act)
                self._actions.append(act)

    # ---- position ------------------------------------------------------------------------------
    def show_index(self, index: int) -> bool:
        """Draw the record at `index` in every view (now). False (and a message) if it cannot be read."""
        index = max(0, min(len(self.steps) - 1, int(index)))
        step = self.steps[index]
        try:
            snap = self.reader.snapshot(step)
        except (KeyError, ValueError, OSError) as exc:
            self.errors += 1
            self.window.status.error(f"Replay: step {step} cannot be read: {one_line(exc)}")
            self.bar.sync()
            return False
        self.index = index
        self.shown_step = step
        if not self.playing or self._pos < step or self._pos >= self._next_step(index):
            self._pos = float(step)
        fault = snap.fault if snap.state == "fault" else None
        samples = snap.samples
        if samples is None and self._samples:
            i = bisect.bisect_right([s for s, _ in self._samples], step) - 1
            samples = dict(self._samples[i][1]) if i >= 0 else None
        self.shown = dataclasses.replace(snap, state="replay", fault=None, samples=samples)
        self.window.deliver(self.shown)
        self.bar.sync(fault)
        self.position_changed.emit(step)
        return True

    def show_step(self, step: int) -> bool:
        """Draw the last record at or before training step `step`."""
        i = bisect.bisect_right(self.steps, int(step)) - 1
        return self.show_index(max(0, i))

    def step_by(self, n: int) -> None:
        self.pause()
        self.show_index(self.index + n)

    def request_index(self, index: int) -> None:
        """The slider moved: draw that record when the event loop next runs (a drag that sends many
        values reads one file per loop slice, not one per value)."""
        if self._pending is None:
            QtCore.QTimer.singleShot(0, self, self._show_pending)
        self._pending = int(index)

    def _show_pending(self) -> None:
        index, self._pending = self._pending, None
        if index is not None and index != self.index:
            self.show_index(index)

    def _next_step(self, index: int) -> float:
        return float(self.steps[index + 1]) if index + 1 < len(self.steps) else float("inf")

    # ---- playback ------------------------------------------------------------------------------
    def play(self) -> None:
        if len(self.steps) < 2:
            return
        if self.index >= len(self.steps) - 1:  # at the end: from the start again
            self.show_index(0)
        self._pos = float(self.steps[self.index])
        self.playing = True
        self._last_tick = time.perf_counter()
        self.timer.start()
        self.bar.sync()

    def pause(self) -> None:
        self.playing = False
        self.timer.stop()
        self.bar.sync()

    def toggle_play(self) -> None:
        self.pause() if self.playing else self.play()

    def set_speed(self, speed: float) -> None:
        self.speed = float(speed)
        self.bar.sync()

    def steps_per_second(self) -> float:
        return self.rate * self.speed

    def _tick(self) -> None:
        now = time.perf_counter()
        dt, self._last_tick = now - self._last_tick, now
        self._pos += dt * self.steps_per_second()
        i = bisect.bisect_right(self.steps, self._pos) - 1
        last = len(self.steps) - 1
        if i >= last:
            self.show_index(last)
            self.pause()
            return
        if i > self.index and not self.show_index(i):
            self.index = i  # an unreadable record: play on past it


def recorded_rate(reader) -> float:
    """The training steps per second of the recording (1x), from its time stamps; if they are
    missing, FALLBACK_RECORDS_PER_S records per second."""
    m = reader.metrics
    if len(m) >= 2:
        t0, t1 = m[0].get("time"), m[-1].get("time")
        s0, s1 = m[0]["step"], m[-1]["step"]
        if isinstance(t0, (int, float)) and isinstance(t1, (int, float)) and t1 > t0 and s1 > s0:
            return (s1 - s0) / (t1 - t0)
        if s1 > s0:
            return (s1 - s0) / (len(m) - 1) * FALLBACK_RECORDS_PER_S
    return FALLBACK_RECORDS_PER_S


class ReplayBar(QtWidgets.QToolBar):
    """Play / pause, the step slider and label, the speed, the recording's name, Back to live."""

    def __init__(self, ctl: ReplayController):
        super().__init__("Replay")
        self.setObjectName("replay_bar")
        self.setMovable(False)
        self.setFloatable(False)
        self.ctl = ctl
        reader = ctl.reader
        name = QtWidgets.QLabel(f"  Replay  {reader.dir.name}  ")
        name.setObjectName("replay_name")
        name.setStyleSheet("font-weight: 600;")
        finished = "finished" if reader.finished else "cut off" if reader.metrics else "empty"
        name.setToolTip(
            f"{reader.dir}\n{len(ctl.steps)} recorded steps, {ctl.steps[0]} to {ctl.steps[-1]} "
            f"({finished}); {reader.settings.scenario} · {reader.settings.method}"
        )
        self.addWidget(name)
        self.play_button = QtWidgets.QToolButton()
        self.play_button.setObjectName("replay_play")
        self.play_button.clicked.connect(ctl.toggle_play)
        self.addWidget(self.play_button)
        self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("replay_slider")
        self.slider.setRange(0, max(0, len(ctl.steps) - 1))
        self.slider.setPageStep(max(1, len(ctl.steps) // 10))
        self.slider.setMinimumWidth(240)
        self.slider.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.slider.setToolTip("The recorded steps (Left / Right: one record; Home / End)")
        self.slider.valueChanged.connect(self._slider_moved)
        self.addWidget(self.slider)
        self.step_label = QtWidgets.QLabel()
        self.step_label.setObjectName("replay_step")
        self.step_label.setMinimumWidth(
            QtGui.QFontMetrics(self.step_label.font()).horizontalAdvance(
                f"step {ctl.steps[-1]:,} of {ctl.steps[-1]:,} ({len(ctl.steps)}/{len(ctl.steps)})"
            )
            + 16
        )
        self.addWidget(self.step_label)
        self.addWidget(QtWidgets.QLabel(" Speed "))
        self.speed_box = QtWidgets.QComboBox()
        self.speed_box.setObjectName("replay_speed")
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}x  ({format_rate(ctl.rate * s)} steps/s)", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.setToolTip(
            f"1x plays the recording at the pace it was trained ({format_rate(ctl.rate)} steps per second)"
        )
        self.speed_box.activated.connect(lambda _i: ctl.set_speed(float(self.speed_box.currentData())))
        self.addWidget(self.speed_box)
        self.fault_label = QtWidgets.QLabel()
        self.fault_label.setObjectName("replay_fault")
        self.fault_label.setProperty("role", "error")
        self.addWidget(self.fault_label)
        self.addSeparator()
        self.live_button = QtWidgets.QPushButton("Back to live")
        self.live_button.setObjectName("replay_back")
        self.live_button.setToolTip("Leave the replay: the views follow the training run again")
        self.live_button.clicked.connect(ctl.back_requested.emit)
        self.addWidget(self.live_button)
        self.sync()

    def _slider_moved(self, value: int) -> None:
        if value != self.ctl.index:
            if self.slider.isSliderDown() or not self.ctl.playing:
                self.ctl.pause()
            self.ctl.request_index(value)

    def sync(self, fault: str | None = None) -> None:
        ctl = self.ctl
        with QtCore.QSignalBlocker(self.slider):
            self.slider.setValue(ctl.index)
        self.play_button.setText("❚❚ Pause" if ctl.playing else "▶ Play")
        self.play_button.setToolTip("Pause the replay (Space)" if ctl.playing else "Play the replay (Space)")
        step = ctl.steps[ctl.index]
        self.step_label.setText(f"step {step:,} of {ctl.steps[-1]:,} ({ctl.index + 1}/{len(ctl.steps)})")
        i = self.speed_box.findData(ctl.speed)
        if i >= 0 and i != self.speed_box.currentIndex():
            self.speed_box.setCurrentIndex(i)
        if fault is not None or ctl.shown_step == step:
            self.fault_label.setText(f"  ▲ {fault}" if fault else "")
            self.fault_label.setToolTip(fault or "")


class ReplayFeature:
    """Replay as a part of the window: at most one recording shown at a time."""

    def __init__(self, window: WindowServices):
        self.window = window
        self.controller: ReplayController | None = None  # while a recording is shown

    def open(self, path=None) -> ReplayController | None:
        """Switch the window to replay mode on the recording in `path` (a directory chooser when None).
        A directory that is not a readable recording gives one line in the status bar and changes nothing."""
        win = self.window
        if path is None:
            path = QtWidgets.QFileDialog.getExistingDirectory(win.widget, "Open recording", str(Path.home()))
            if not path:
                return None
        path = Path(path)
        try:
            reader = RecordingReader(path)
            if not reader.steps:
                raise ValueError(f"{path}: no complete record in this recording yet")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            win.status.error(f"Could not open the recording: {one_line(exc)}")
            return None
        if self.controller is not None:
            self.controller.leave()
        ctl = ReplayController(win, reader)
        ctl.back_requested.connect(self.back_to_live)
        self.controller = ctl
        ctl.enter()
        skipped = f"; {reader.skipped_lines} torn line(s) skipped" if reader.skipped_lines else ""
        state = "" if reader.finished else " (cut off before the end)"
        win.status.info(
            f"Replaying {path.name}{state}: {len(reader.steps)} recorded steps, {reader.steps[0]} to "
            f"{reader.steps[-1]}{skipped}. Space plays; Back to live returns.",
            15_000,
        )
        return ctl

    def back_to_live(self) -> None:
        """Leave replay mode: the views follow the live worker again (started if there is none)."""
        ctl, self.controller = self.controller, None
        if ctl is None:
            return
        ctl.leave()
        ctl.deleteLater()
        win = self.window
        win.status.set_state("paused")
        if win.worker is not None:
            try:
                win.worker.request_snapshot()  # the live state, drawn afresh
            except Exception:  # noqa: BLE001 - a dead worker says so through drain()
                pass
        else:
            win.start_worker()
        win.status.info("Back to live.")

    def window_closing(self) -> None:
        """A window closed in replay remembers the live run's settings, not the recording's."""
        if self.controller is not None:
            self.controller.pause()
            self.controller.restore_live_settings()
