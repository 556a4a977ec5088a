"""Replay a recording in the window (File > Open recording…, `python -m explorer --replay DIR`).

    window.features.replay.open(path=None)     # a directory chooser when path is None
    window.features.replay.open(path, follow=True)   # follow a run still being written (--follow DIR)
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
- generated samples are recorded only when fresh; each step shown gets the samples generated nearest
  to it (before or after; the earlier on a tie), of those recorded and those riding along with the
  record, and the samples view says how far ("40 steps old", "10 steps ahead").
A recording cut off mid-write (a killed run) opens with the records that are complete. Recording
the live run is explorer.gui.run_recording's.

Recordings are read off the GUI thread with bounded memory (explorer.schema.recording_index: the byte
offset of each record's line, read again when it is shown; a thinned whole-run loss); `open` returns
at once and the window enters replay mode when the index is ready (`ReplayController.ready`), or says
why not (`failed`) and stays usable. A bad line is skipped and counted, never drawn. Following a run
(explorer.gui.replay_follow) polls the file and indexes what was appended; the views stay at the head
unless the scrubber went back; the status bar says following / finished / stalled.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui.jobs import Job
from explorer.gui.replay_bar import SPEEDS, ReplayBar  # noqa: F401 (SPEEDS: part of this module's API)
from explorer.gui.replay_follow import POLL_MS, STALL_S, FollowWatch, scan_job
from explorer.gui.services import WindowServices
from explorer.gui.shortcuts import SHORTCUTS
from explorer.schema.format import one_line
from explorer.schema.recording_index import RecordingIndex

FALLBACK_RECORDS_PER_S = 10.0  # 1x for a recording without usable time stamps
FRAME_MS = 33  # playback timer: at most ~30 snapshots drawn per second


def nearer_samples(step: int, *candidates: dict | None) -> dict | None:
    """Of these samples (riding along with the record shown, recorded nearest to it), those generated
    nearer to `step`, the earlier on a tie; samples without a whole-number "step" count as made at `step`."""

    def made(samples: dict) -> int:
        at = samples.get("step")
        return at if isinstance(at, int) and not isinstance(at, bool) else int(step)

    found = [c for c in candidates if isinstance(c, dict)]
    return min(found, key=lambda c: (abs(made(c) - step), made(c))) if found else None


# ---------------------------------------------------------------------------------------- replay
class ReplayController(QtCore.QObject):
    """The window in replay mode: an index, a position, the replay bar and a playback timer."""

    position_changed = QtCore.Signal(int)  # the step now shown
    back_requested = QtCore.Signal()  # the bar's Back to live
    ready = QtCore.Signal()  # the first records are indexed: replay mode can start
    failed = QtCore.Signal(str)  # the recording cannot be shown (one line)
    loaded = QtCore.Signal()  # a scan ended: every record written so far is indexed

    def __init__(
        self,
        window: WindowServices,
        index: RecordingIndex,
        follow: bool = False,
        stall_s: float = STALL_S,
        poll_ms: int = POLL_MS,
    ):
        super().__init__(window.widget)
        self.window = window
        self.reader = index
        self.steps = index.steps  # grows while a scan runs: only the first `count` are ours yet
        self.count = 0
        self.follow = follow
        # one line when the recording's model directory now holds another model (said with the
        # recording's summary; the replay shows the recording's own data all the same)
        self.model_note = ""
        self.entered = False
        self.index = 0
        self.speed = 1.0
        self.playing = False
        self.shown_step: int | None = None
        self.shown: object | None = None  # the snapshot last drawn
        self.errors = 0
        self._pos = 0.0  # playback position, in training steps
        self._last_tick = 0.0
        self._pending: int | None = None
        self._disabled: list[tuple[QtGui.QAction | QtWidgets.QWidget, bool]] = []
        self._actions: list[QtGui.QAction] = []
        self.rate = FALLBACK_RECORDS_PER_S  # training steps per second at 1x
        self._live_settings = None
        self._job: Job | None = None
        self._said: set[str] = set()  # the follow messages given once (finished, failed, stalled)
        self.watch = FollowWatch(index, stall_s) if follow else None
        self.follow_label: QtWidgets.QLabel | None = None
        self.poll = QtCore.QTimer(self)
        self.poll.setInterval(int(poll_ms))
        self.poll.timeout.connect(self._poll)
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self._tick)
        self.bar: ReplayBar | None = None

    # ---- reading -------------------------------------------------------------------------------
    def load(self) -> None:
        """Index the recording on a helper thread; `ready` or `failed` follows on the GUI thread."""
        if self.follow:
            self.watch.grown()
            self.poll.start()
        self._scan(final=not self.follow)

    def _scan(self, final: bool) -> None:
        job = scan_job(self, self.reader, final)
        job.progress.connect(lambda records, _total: self._progress(records))
        job.done.connect(lambda new: self._scanned(new, ""))
        job.failed.connect(lambda error: self._scanned(0, error))
        self._job = job
        job.start()

    @property
    def reading(self) -> bool:
        """A scan of the recording is under way."""
        return self._job is not None

    def cancel(self) -> None:
        """Stop reading and polling (the window closes, or another recording is opened)."""
        self.poll.stop()
        if self._job is not None:
            self._job.cancel()
            self._job = None

    @QtCore.Slot(int)
    def _progress(self, _records: int) -> None:
        if self._job is not None:
            self._grew(done=False)

    @QtCore.Slot(int, str)
    def _scanned(self, _new: int, error: str) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.deleteLater()
        if error:
            if not self.entered:
                self.cancel()
                self.failed.emit(error)
            else:
                self.poll.stop()
                self.window.status.error(f"Reading {self.reader.dir.name} stopped: {error}")
            return
        self._grew(done=True)

    def _grew(self, done: bool) -> None:
        """More records are indexed (a long recording being read, a followed run that grew)."""
        old, self.count = self.count, len(self.steps)
        if self.count > old:
            self.rate = recorded_rate(self.reader, self.count)
            if self.watch is not None:
                self.watch.records_arrived()
        if not self.entered:
            if self.count:
                self.ready.emit()
                if done:
                    self.loaded.emit()
            elif done and not self.follow:
                why = f" ({self.reader.problems[0]})" if self.reader.problems else ""
                self.failed.emit(f"{self.reader.dir}: no complete record in this recording yet{why}")
            return
        if self.count > old:
            self.bar.update_range()
            if self.follow and self.index >= old - 1 and not self.playing:  # at the head: follow the run
                self.show_index(self.count - 1)
            else:
                self.bar.sync()
        if done:
            self.loaded.emit()
            self._follow_news()

    def _poll(self) -> None:
        if self._job is None and self.watch.grown():
            self._scan(final=False)
        elif self.watch.check_stalled() and "stalled" not in self._said and self.entered:
            self._said.add("stalled")
            self.window.status.error(
                f"The run in {self.reader.dir.name} looks stalled: no new record for "
                f"{self.watch.quiet_for():.0f} s and its writer is gone; keeping the {self.count} records read.",
                60_000,
            )
        self._update_follow_label()

    def _follow_news(self) -> None:
        """Say once that the followed run finished or failed; polling ends then."""
        if not self.follow:
            return
        status = self.window.status
        if self.reader.finished and "finished" not in self._said:
            self._said.add("finished")
            self.poll.stop()
            status.info(
                f"The run in {self.reader.dir.name} finished: {self.count} records, up to step "
                f"{self.steps[self.count - 1]:,}.",
                60_000,
            )
        elif self.reader.failed is not None and "failed" not in self._said:
            self._said.add("failed")
            self.poll.stop()
            status.error(f"The run in {self.reader.dir.name} failed: {self.reader.failed.get('message', '')}", 60_000)
        self._update_follow_label()

    def _update_follow_label(self) -> None:
        if self.follow_label is not None and self.count:
            ended = next((e for e in ("finished", "failed") if e in self._said), None)
            self.follow_label.setText(self.watch.describe(self.steps[self.count - 1], ended))

    # ---- entering and leaving ------------------------------------------------------------------
    def enter(self) -> None:
        win = self.window
        self.entered = True
        if win.playing:
            win.pause()
        for target in win.live_controls():
            self._disabled.append((target, target.isEnabled()))
            target.setEnabled(False)
        self._add_keys()
        # the panel shows (greyed) the settings the recording was made with
        self._live_settings = win.settings
        win.show_settings(self.reader.settings)
        self.bar = ReplayBar(self)
        win.widget.addToolBar(Qt.ToolBarArea.BottomToolBarArea, self.bar)
        self.bar.show()
        if self.follow:
            self.follow_label = QtWidgets.QLabel()
            self.follow_label.setObjectName("status_follow")
            self.follow_label.setToolTip("The run followed: its newest step and how long ago its last record came")
            win.status.addPermanentWidget(self.follow_label)
            self._update_follow_label()
        win.clear_views()
        self.show_index(self.count - 1 if self.follow else 0)
        self.bar.slider.setFocus()
        if not self.reading:  # else the scan's end says it, with every record before its last line
            self._follow_news()

    def leave(self) -> None:
        win = self.window
        self.cancel()
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
        if self.follow_label is not None:
            win.status.removeWidget(self.follow_label)
            self.follow_label.deleteLater()
            self.follow_label = None
        if self.bar is not None:
            win.widget.removeToolBar(self.bar)
            self.bar.deleteLater()
        if "loss" in win.views:
            win.call_view(win.views["loss"], "set_cursor", None)
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
        slots = {
            "replay_play": (self.toggle_play,),
            "replay_step": (lambda: self.step_by(-1), lambda: self.step_by(1)),
            "replay_ends": (lambda: self.show_index(0), self.go_to_head),
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
        index = max(0, min(self.count - 1, int(index)))
        step = self.steps[index]
        try:
            snap = self.reader.snapshot(index)
            samples = nearer_samples(step, snap.samples, self.reader.samples_near(step))
        except (KeyError, ValueError, OSError) as exc:
            self.errors += 1
            self.window.status.error(f"Replay: step {step} cannot be read: {one_line(exc)}")
            self.bar.sync()
            return False
        self.index = index
        self.shown_step = step
        if not self.playing or self._pos < step or self._pos >= self._next_step(index):
            self._pos = float(step)
        fault = snap.fault.message if snap.state == "fault" and snap.fault is not None else None
        self.shown = dataclasses.replace(snap, state="replay", fault=None, samples=samples)
        self.window.deliver(self.shown)
        if "loss" in self.window.views:  # the whole run, with a cursor at the step shown
            self.window.call_view(self.window.views["loss"], "set_cursor", step, self.reader.loss_history())
        self.bar.sync(fault)
        self._update_follow_label()
        self.position_changed.emit(step)
        return True

    def show_step(self, step: int) -> bool:
        """Draw the last record at or before training step `step`."""
        return self.show_index(min(self.count - 1, self.reader.index_of(step)))

    def step_by(self, n: int) -> None:
        self.pause()
        self.show_index(self.index + n)

    def go_to_head(self) -> None:
        """The newest record (End); a followed run's new records are then shown as they come."""
        self.pause()
        self.show_index(self.count - 1)

    def request_index(self, index: int) -> None:
        """The slider moved: draw that record when the event loop next runs (a drag that sends many
        values reads one file per loop slice, not one per value)."""
        if self._pending is None:
            QtCore.QTimer.singleShot(0, self, self._show_pending)
        self._pending = int(index)

    @property
    def pending_index(self) -> int | None:
        """The slider's position waiting to be drawn (request_index), if any."""
        return self._pending

    def _show_pending(self) -> None:
        index, self._pending = self._pending, None
        if index is not None and index != self.index:
            self.show_index(index)

    def _next_step(self, index: int) -> float:
        return float(self.steps[index + 1]) if index + 1 < self.count else float("inf")

    # ---- playback ------------------------------------------------------------------------------
    def play(self) -> None:
        if self.count < 2:
            return
        if self.index >= self.count - 1:  # at the end: from the start again
            self.show_index(0)
        self._pos = float(self.steps[self.index])
        self.playing = True
        self._last_tick = time.perf_counter()
        self.timer.start()
        self.bar.sync()

    def pause(self) -> None:
        self.playing = False
        self.timer.stop()
        if self.bar is not None:
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
        i = min(self.count - 1, self.reader.index_of(int(self._pos)))
        last = self.count - 1
        if i >= last:
            self.show_index(last)
            self.pause()
            return
        if i > self.index and not self.show_index(i):
            self.index = i  # an unreadable record: play on past it


def recorded_rate(index: RecordingIndex, count: int) -> float:
    """The training steps per second of the recording (1x), from its time stamps; if they are
    missing, FALLBACK_RECORDS_PER_S records per second."""
    if count >= 2:
        s0, s1 = index.steps[0], index.steps[count - 1]
        span = index.time_span()
        if span is not None and span[1] > span[0] and s1 > s0:
            return (s1 - s0) / (span[1] - span[0])
        if s1 > s0:
            return (s1 - s0) / (count - 1) * FALLBACK_RECORDS_PER_S
    return FALLBACK_RECORDS_PER_S


class ReplayFeature:
    """Replay as a part of the window: at most one recording shown (or being read) at a time."""

    def __init__(self, window: WindowServices):
        self.window = window
        self.controller: ReplayController | None = None  # while a recording is shown
        self.pending: ReplayController | None = None  # while a recording is being read

    def open(
        self,
        path=None,
        follow: bool = False,
        live_on_failure: bool = False,
        stall_s: float = STALL_S,
        poll_ms: int = POLL_MS,
        model_note: str = "",
    ) -> ReplayController | None:
        """Read the recording in `path` (a directory chooser when None) on a helper thread and switch
        the window to replay mode when its first records are indexed (`ReplayController.ready`).
        `follow`: the recording is still being written; keep up with it. A directory that is not a
        readable recording gives one line in the status bar and changes nothing (None at once when
        its config.json says so; `failed` later when its records do); `live_on_failure` then starts
        the live engine, so a window opened for a replay is never left without one. `model_note`: a
        line said with the recording's summary (its model directory changed since)."""
        win = self.window
        if path is None:
            title = "Follow a run (its recording directory)" if follow else "Open recording"
            path = QtWidgets.QFileDialog.getExistingDirectory(win.widget, title, str(Path.home()))
            if not path:
                return None
        path = Path(path)
        try:
            index = RecordingIndex(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._failed(None, f"{one_line(exc)}", live_on_failure)
            return None
        self.cancel_pending()
        ctl = ReplayController(win, index, follow=follow, stall_s=stall_s, poll_ms=poll_ms)
        ctl.model_note = model_note
        ctl.ready.connect(lambda c=ctl: self._ready(c))
        ctl.failed.connect(lambda message, c=ctl: self._failed(c, message, live_on_failure))
        self.pending = ctl
        ctl.load()
        if follow:
            win.status.info(f"Following {path.name}: waiting for its records…", 60_000)
        else:
            win.status.info(f"Reading the recording {path.name}…", 60_000)
        return ctl

    def cancel_pending(self) -> None:
        ctl, self.pending = self.pending, None
        if ctl is not None:
            ctl.cancel()
            ctl.deleteLater()

    def _failed(self, ctl: ReplayController | None, message: str, live_on_failure: bool) -> None:
        if ctl is not None:
            if self.pending is ctl:
                self.pending = None
            ctl.deleteLater()
        win = self.window
        win.status.error(f"Could not open the recording: {message}")
        if live_on_failure and win.worker is None and not win.closed:
            win.start_worker()

    def _ready(self, ctl: ReplayController) -> None:
        if self.pending is not ctl:
            return
        self.pending = None
        if self.controller is not None:
            old, self.controller = self.controller, None
            old.leave()
            old.deleteLater()
        ctl.back_requested.connect(self.back_to_live)
        self.controller = ctl
        ctl.enter()
        ctl.loaded.connect(lambda c=ctl: self._loaded(c))
        if ctl.reading:
            self.window.status.info(
                f"Reading the recording {ctl.reader.dir.name}: {ctl.count:,} records so far…", 60_000
            )
        else:
            self._loaded(ctl)

    def _loaded(self, ctl: ReplayController) -> None:
        """Say what the recording holds, once it is read (a followed run: once, at the start)."""
        if ctl is not self.controller or "loaded" in ctl._said:
            return
        ctl._said.add("loaded")
        index = ctl.reader
        note, ms = (f" Note: {ctl.model_note}.", 60_000) if ctl.model_note else ("", 15_000)
        if ctl.follow:
            if not index.finished:
                self.window.status.info(
                    f"Following {index.dir.name}: {ctl.count:,} records so far, up to step "
                    f"{ctl.steps[ctl.count - 1]:,}. New records show as they come; End returns to the head.{note}",
                    ms,
                )
            return
        skipped = f"; {index.skipped_lines} torn line(s) skipped" if index.skipped_lines else ""
        state = "" if index.finished else " (cut off before the end)"
        self.window.status.info(
            f"Replaying {index.dir.name}{state}: {ctl.count} recorded steps, {ctl.steps[0]} to "
            f"{ctl.steps[ctl.count - 1]}{skipped}. Space plays; Back to live returns.{note}",
            ms,
        )

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
        self.cancel_pending()
        if self.controller is not None:
            self.controller.cancel()
            self.controller.pause()
            self.controller.restore_live_settings()
