"""Record the live run to a directory (File > Record run to directory…), to replay it later.

    window.features.run_recording.toggle(directory=None)   # start (a chooser when None), or stop

Every snapshot the window receives from the worker is written with RecordingWriter on a helper
thread (the GUI never waits for the disk), in the format `python -m explorer run` writes
(explorer.schema.recording). A recording holds one run (one segment): a cold change or a reset ends
it, with a message. At the end the worker's trained state is saved beside it (state.safetensors),
so the directory can also be exported as a PEFT adapter. A recording cannot start during a replay.
"""

from __future__ import annotations

import collections
import json
import threading
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from explorer.gui.services import WindowServices
from explorer.schema.files import atomic_write_text
from explorer.schema.format import one_line
from explorer.schema.model_files import fingerprint
from explorer.schema.recording import RecordingWriter


def base_note(settings: dict) -> dict | None:
    """The recording's note of the user's model directory and its hash (config.json + weights index,
    as the engine hashes it), so a replay can tell when that directory has changed; None on the
    shipped base, and no hash when the directory cannot be hashed now."""
    model = settings.get("model") if isinstance(settings, dict) else None
    if not model or not isinstance(model, str):
        return None
    path = Path(model).resolve()
    note = {"model_dir": str(path)}
    try:
        note["model_hash"] = fingerprint(path)
    except (OSError, ValueError):
        pass
    return note


class RunRecorder(QtCore.QObject):
    """Writes the snapshots the window receives from its worker into a recording directory, on a
    helper thread. One run: a new segment (cold change, reset) ends it."""

    ended = QtCore.Signal(str)  # why it ended ("" when stopped by the user)

    FAULT_POLL_MS = 100  # the writer thread never emits (gui/jobs.py says why): the GUI thread looks

    def __init__(self, window: WindowServices, directory, overwrite: bool = False, max_queue: int = 64):
        super().__init__(window.widget)
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
        self._fault_timer = QtCore.QTimer(self)
        self._fault_timer.setInterval(self.FAULT_POLL_MS)
        self._fault_timer.timeout.connect(self._check_writer)

    def _check_writer(self) -> None:
        if self.active and self.error is not None:
            self.stop("the disk refused a record")

    def start(self) -> None:
        snap = self.window.last_snapshot
        settings = (snap.settings if snap is not None else None) or self.window.settings.to_dict()
        config = {
            "settings": settings,
            "source": "peft-explorer app (File > Record run to directory)",
            "device": getattr(snap, "device", ""),
            "display_size": settings.get("display_size"),
        }
        base = base_note(settings)
        if base is not None:
            config["base"] = base
        self.writer = RecordingWriter(self.dir, config, overwrite=self.overwrite)  # ValueError: say so
        self.active = True
        self._thread = threading.Thread(target=self._run, name="explorer-record-run", daemon=False)
        self._thread.start()
        self._fault_timer.start()
        self.window.snapshot_delivered.connect(self._on_snapshot)
        if snap is not None and not self.window.replaying:
            self._on_snapshot(snap)

    def _on_snapshot(self, snap) -> None:
        if not self.active or self.window.replaying or snap.state == "replay":
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
                self.error = one_line(exc) or type(exc).__name__
                with self._cond:
                    self._queue.clear()
                    self._closing = True
                return

    def _settings_from(self, snap) -> None:
        """config.json names the settings of the run it holds (the first record's, which may differ
        from the panel's when the recording started before the first snapshot of a new run)."""
        self.writer.config.update(settings=snap.settings, device=snap.device)
        atomic_write_text(self.dir / "config.json", json.dumps(self.writer.config, indent=2))

    def stop(self, reason: str = "") -> None:
        if not self.active:
            return
        self.active = False
        self._fault_timer.stop()
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
        worker = self.window.worker
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


class RunRecordingFeature:
    """Recording the run as a part of the window: at most one recorder at a time."""

    def __init__(self, window: WindowServices):
        self.window = window
        self.recorder: RunRecorder | None = None  # the last one started

    @property
    def active(self) -> RunRecorder | None:
        """The recorder writing now, or None."""
        return self.recorder if self.recorder is not None and self.recorder.active else None

    def toggle(self, directory=None, overwrite: bool = False) -> RunRecorder | None:
        """Start writing the live run to `directory` (a chooser when None), or stop the recording."""
        win = self.window
        rec = self.active
        if rec is not None:
            rec.stop()
            return rec
        if win.replaying:
            win.status.error("Recording the run: go back to live first (this is a replay).")
            return None
        if directory is None:
            directory = QtWidgets.QFileDialog.getExistingDirectory(
                win.widget, "Record run to directory (new or empty)", str(Path.home())
            )
            if not directory:
                return None
        rec = RunRecorder(win, directory, overwrite=overwrite)
        rec.ended.connect(lambda reason, r=rec: self._ended(r, reason))  # before start: see RunRecorder
        try:
            rec.start()
        except Exception as exc:  # noqa: BLE001 - the entry point's boundary
            win.report_failure("record the run", exc)
            return None
        self.recorder = rec
        self._sync_action()
        win.status.info(f"Recording the run to {rec.dir} (File > Stop recording the run to end it).")
        return rec

    def _ended(self, rec: RunRecorder, reason: str) -> None:
        self._sync_action()
        status = self.window.status
        span = f"steps {rec.first_step} to {rec.last_step}" if rec.first_step is not None else "no steps"
        if rec.error:
            status.error(f"Run recording in {rec.dir} stopped: {rec.error} ({rec.records} records kept)")
        elif reason:
            status.info(f"Run recording stopped: {reason}. {rec.records} records ({span}) in {rec.dir}", 20_000)
        else:
            status.info(
                f"Run recorded to {rec.dir}: {rec.records} records ({span}); File > Open recording… replays it.", 20_000
            )

    def _sync_action(self) -> None:
        act = self.window.actions_by_name["record_run"]
        act.setText("Stop recording the run" if self.active is not None else "Record run to directory…")

    def window_closing(self) -> None:
        """The recording ends with the run (the worker's state is saved before the worker stops)."""
        if self.active is not None:
            self.active.stop()
