"""Replay a recording in the window, and record the live run to a directory.

    open_recording(window, path=None)      # File > Open recording…  (python -m explorer --replay DIR)
    back_to_live(window)                   # the replay bar's "Back to live"
    toggle_run_recording(window, directory=None)   # File > Record run to directory… / Stop

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
A recording cut off mid-write (a killed run) opens with the records that are complete.

Recording the live run: every snapshot the window receives from the worker is written with
RecordingWriter on a helper thread (the GUI never waits for the disk). A recording holds one run (one
segment): a cold change or a reset ends it, with a message. At the end the worker's trained state is
saved beside it (state.safetensors), so the directory can also be exported as a PEFT adapter.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import threading
import time
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0)
FALLBACK_RECORDS_PER_S = 10.0  # 1x for a recording without usable time stamps
FRAME_MS = 33  # playback timer: at most ~30 snapshots drawn per second
# The actions that act on the live run; disabled while replaying.
LIVE_ACTIONS = ("play_pause", "step", "reset", "faster", "slower", "save_state", "open", "export_adapter", "talk_mode")


# ---------------------------------------------------------------------------------------- replay
class ReplayController(QtCore.QObject):
    """The window in replay mode: a reader, a position, the replay bar and a playback timer."""

    position_changed = QtCore.Signal(int)  # the step now shown

    def __init__(self, window, reader, parent=None):
        super().__init__(parent or window)
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
        self._disabled: dict = {}
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
        w = self.window
        if getattr(w, "_playing", False):
            w.pause()
        for name in LIVE_ACTIONS:
            act = w.actions_by_name.get(name)
            if act is not None:
                self._disabled[name] = act.isEnabled()
                act.setEnabled(False)
        for widget_name in ("controls", "speed_box"):
            widget = getattr(w, widget_name, None)
            if widget is not None:
                self._disabled[widget_name] = widget.isEnabled()
                widget.setEnabled(False)
        self._add_keys()
        controls = getattr(w, "controls", None)
        if controls is not None:  # the panel shows (greyed) the settings the recording was made with
            self._live_settings = controls.settings
            controls.set_settings(self.reader.settings)
            w._update_scenario_label()
        w.installEventFilter(self)
        w.addToolBar(Qt.ToolBarArea.BottomToolBarArea, self.bar)
        self.bar.show()
        self._clear_views()
        self.show_index(0)
        self.bar.slider.setFocus()

    def leave(self) -> None:
        w = self.window
        self.pause()
        self.timer.stop()
        for act in self._actions:
            w.removeAction(act)
            act.deleteLater()
        self._actions.clear()
        for name, enabled in self._disabled.items():
            target = w.actions_by_name.get(name) or getattr(w, name, None)
            if target is not None:
                target.setEnabled(enabled)
        self._disabled.clear()
        w.removeEventFilter(self)
        self._restore_live_settings()
        w.removeToolBar(self.bar)
        self.bar.deleteLater()
        self._clear_views()

    def _restore_live_settings(self) -> None:
        controls = getattr(self.window, "controls", None)
        if controls is not None and self._live_settings is not None:
            controls.set_settings(self._live_settings)
            controls.set_model_limit("rank", None)  # the live run's next snapshot sets its own
            self.window._update_scenario_label()
            self._live_settings = None

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        """A window closed in replay remembers the live run's settings, not the recording's."""
        if obj is self.window and event.type() == QtCore.QEvent.Type.Close:
            self.pause()
            self._restore_live_settings()
        return False

    def _clear_views(self) -> None:
        w = self.window
        w._frame_queue.clear()
        for view in w._fed_views().values():
            w._view_call(view, "clear")
        w._segment = None
        w.last_snapshot = None

    def _add_keys(self) -> None:
        """The Replay group of shortcuts.SHORTCUTS: Space plays / pauses; Left / Right and Home / End
        go back / on (their first key back, their second on). The live actions with those keys are
        disabled meanwhile, so nothing is ambiguous."""
        from explorer.gui.shortcuts import SHORTCUTS

        last = len(self.steps) - 1
        slots = {
            "replay_play": (self.toggle_play,),
            "replay_step": (lambda: self.step_by(-1), lambda: self.step_by(1)),
            "replay_ends": (lambda: self.show_index(0), lambda: self.show_index(last)),
        }
        for sc in SHORTCUTS:
            for i, (key, slot) in enumerate(zip(sc.keys, slots.get(sc.action, ()))):
                act = QtGui.QAction(sc.text, self.window)
                act.setObjectName(f"action_{sc.action}_{i}")
                act.setShortcut(QtGui.QKeySequence(key))
                act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
                act.triggered.connect(lambda *_a, s=slot: s())
                self.window.addAction(act)
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
            self.window.status.error(f"Replay: step {step} cannot be read: {' '.join(str(exc).split())}")
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


def _rate_text(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else (f"{x:.1f}" if x >= 10 else f"{x:.2g}")


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
            self.speed_box.addItem(f"{s:g}x  ({_rate_text(ctl.rate * s)} steps/s)", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.setToolTip(
            f"1x plays the recording at the pace it was trained ({_rate_text(ctl.rate)} steps per second)"
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
        self.live_button.clicked.connect(lambda: back_to_live(ctl.window))
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


def replay_of(window) -> ReplayController | None:
    return getattr(window, "replay", None)


def open_recording(window, path=None) -> ReplayController | None:
    """File > Open recording…: switch the window to replay mode on the recording in `path` (a
    directory chooser when None). A directory that is not a readable recording gives one line in the
    status bar and changes nothing."""
    from explorer.schema.recording import RecordingReader

    if path is None:
        path = QtWidgets.QFileDialog.getExistingDirectory(window, "Open recording", str(Path.home()))
        if not path:
            return None
    path = Path(path)
    try:
        reader = RecordingReader(path)
        if not reader.steps:
            raise ValueError(f"{path}: no complete record in this recording yet")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        window.status.error(f"Could not open the recording: {' '.join(str(exc).split())}")
        return None
    old = replay_of(window)
    if old is not None:
        old.leave()
    ctl = ReplayController(window, reader)
    window.replay = ctl
    ctl.enter()
    skipped = f"; {reader.skipped_lines} torn line(s) skipped" if reader.skipped_lines else ""
    state = "" if reader.finished else " (cut off before the end)"
    window.status.info(
        f"Replaying {path.name}{state}: {len(reader.steps)} recorded steps, {reader.steps[0]} to "
        f"{reader.steps[-1]}{skipped}. Space plays; Back to live returns.",
        15_000,
    )
    return ctl


def back_to_live(window) -> None:
    """Leave replay mode: the views follow the live worker again (started if there is none)."""
    ctl = replay_of(window)
    if ctl is None:
        return
    window.replay = None
    ctl.leave()
    ctl.deleteLater()
    window.status.set_state("paused")
    worker = getattr(window, "worker", None)
    if worker is not None:
        try:
            worker.request_snapshot()  # the live state, drawn afresh
        except Exception:  # noqa: BLE001 - a dead worker says so through drain()
            pass
    else:
        window.start_worker()
    window.status.info("Back to live.")


# ---------------------------------------------------------------------------------------- record the run
class RunRecorder(QtCore.QObject):
    """Writes the snapshots the window receives from its worker into a recording directory, on a
    helper thread. One run: a new segment (cold change, reset) ends it."""

    ended = QtCore.Signal(str)  # why it ended ("" when stopped by the user)
    _written = QtCore.Signal()

    def __init__(self, window, directory, overwrite: bool = False, max_queue: int = 64):
        super().__init__(window)
        from explorer.schema.recording import RecordingWriter  # noqa: F401 - fails early if missing

        self.window = window
        self.dir = Path(directory)
        self.overwrite = overwrite
        self.writer = None
        self.segment: int | None = None
        self.first_step: int | None = None
        self.last_step: int | None = None
        self.records = 0
        self.dropped = 0
        self.error: str | None = None
        self._last_key = None
        self._samples_step = None
        self._queue: collections.deque = collections.deque()
        self._max_queue = max_queue
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.active = False

    def start(self) -> None:
        from explorer.schema.recording import RecordingWriter

        snap = self.window.last_snapshot
        settings = (snap.settings if snap is not None else None) or self.window.settings.to_dict()
        config = {
            "settings": settings,
            "source": "peft-explorer app (File > Record run to directory)",
            "device": getattr(snap, "device", ""),
            "display_size": settings.get("display_size"),
        }
        self.writer = RecordingWriter(self.dir, config, overwrite=self.overwrite)  # ValueError: say so
        self.active = True
        self._thread = threading.Thread(target=self._run, name="explorer-record-run", daemon=False)
        self._thread.start()
        self.window.snapshot_delivered.connect(self._on_snapshot)
        if snap is not None and replay_of(self.window) is None:
            self._on_snapshot(snap)

    def _on_snapshot(self, snap) -> None:
        if not self.active or replay_of(self.window) is not None or snap.state == "replay":
            return
        if self.segment is None:
            self.segment = snap.segment
        elif snap.segment != self.segment:
            self.stop("the settings changed (a cold change or a reset started new adapters); a recording holds one run")
            return
        samples_step = (snap.samples or {}).get("step") if isinstance(snap.samples, dict) else None
        fresh = samples_step is not None and samples_step != self._samples_step
        key = (snap.step, snap.state, fresh)
        if key == self._last_key and not fresh:
            return
        self._last_key = key
        if fresh:
            self._samples_step = samples_step
        with self._cond:
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()  # the disk is slow: the oldest waiting record goes
                self.dropped += 1
            self._queue.append((snap, fresh))
            self._cond.notify()
        if self.first_step is None:
            self.first_step = snap.step
        self.last_step = snap.step

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue and self._closing:
                    return
                snap, fresh = self._queue.popleft()
            try:
                if not self.records and snap.settings and snap.settings != self.writer.config.get("settings"):
                    self._settings_from(snap)
                self.writer.write(snap, fresh_samples=fresh)
                self.records += 1
            except Exception as exc:  # noqa: BLE001 - a full disk: stop, and say so
                self.error = " ".join(str(exc).split()) or type(exc).__name__
                with self._cond:
                    self._queue.clear()
                    self._closing = True
                try:
                    self._written.emit()
                except RuntimeError:
                    pass
                return

    def _settings_from(self, snap) -> None:
        """config.json names the settings of the run it holds (the first record's, which may differ
        from the panel's when the recording started before the first snapshot of a new run)."""
        import json

        from explorer.schema.files import atomic_write_text

        self.writer.config.update(settings=snap.settings, device=snap.device)
        atomic_write_text(self.dir / "config.json", json.dumps(self.writer.config, indent=2))

    def stop(self, reason: str = "") -> None:
        if not self.active:
            return
        self.active = False
        try:
            self.window.snapshot_delivered.disconnect(self._on_snapshot)
        except (RuntimeError, TypeError):
            pass
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        state_saved = False
        worker = getattr(self.window, "worker", None)
        if worker is not None and self.error is None and not reason and self.records:
            try:
                worker.save_state(self.dir / "state.safetensors")
                state_saved = True
            except Exception:  # noqa: BLE001 - the recording stands without it
                state_saved = False
        try:
            self.writer.finish(
                final_step=self.last_step,
                completed=self.error is None,
                state_file=state_saved,
                dropped_records=self.dropped,
            )
        except OSError as exc:
            self.error = self.error or str(exc)
        self.ended.emit(reason)

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True


def run_recorder_of(window) -> RunRecorder | None:
    rec = getattr(window, "_run_recorder", None)
    return rec if rec is not None and rec.active else None


def toggle_run_recording(window, directory=None, overwrite: bool = False) -> RunRecorder | None:
    """File > Record run to directory…: start writing the live run to a directory, or stop."""
    rec = run_recorder_of(window)
    if rec is not None:
        rec.stop()
        return rec
    if replay_of(window) is not None:
        window.status.error("Recording the run: go back to live first (this is a replay).")
        return None
    if directory is None:
        directory = QtWidgets.QFileDialog.getExistingDirectory(
            window, "Record run to directory (new or empty)", str(Path.home())
        )
        if not directory:
            return None
    rec = RunRecorder(window, directory, overwrite=overwrite)
    try:
        rec.start()
    except (OSError, ValueError) as exc:
        window.status.error(f"Could not record the run: {' '.join(str(exc).split())}")
        return None
    window._run_recorder = rec
    rec.ended.connect(lambda reason, w=window, r=rec: _run_ended(w, r, reason))
    rec._written.connect(lambda r=rec: r.stop("the disk refused a record") if r.active else None)
    _watch_close(window)
    _sync_run_action(window)
    window.status.info(f"Recording the run to {rec.dir} (File > Stop recording the run to end it).")
    return rec


def _run_ended(window, rec: RunRecorder, reason: str) -> None:
    _sync_run_action(window)
    span = f"steps {rec.first_step} to {rec.last_step}" if rec.first_step is not None else "no steps"
    if rec.error:
        window.status.error(f"Run recording in {rec.dir} stopped: {rec.error} ({rec.records} records kept)")
    elif reason:
        window.status.info(f"Run recording stopped: {reason}. {rec.records} records ({span}) in {rec.dir}", 20_000)
    else:
        window.status.info(
            f"Run recorded to {rec.dir}: {rec.records} records ({span}); File > Open recording… replays it.", 20_000
        )


def _sync_run_action(window) -> None:
    act = getattr(window, "actions_by_name", {}).get("record_run")
    if act is not None:
        act.setText("Stop recording the run" if run_recorder_of(window) is not None else "Record run to directory…")


class _CloseWatch(QtCore.QObject):
    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if event.type() == QtCore.QEvent.Type.Close:
            rec = run_recorder_of(obj)
            if rec is not None:
                rec.stop()
        return False


def _watch_close(window) -> None:
    if getattr(window, "_run_close_watch", None) is None:
        watch = _CloseWatch(window)
        window.installEventFilter(watch)
        window._run_close_watch = watch
