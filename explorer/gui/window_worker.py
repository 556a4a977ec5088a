"""The window's worker hosting: start the worker (its module imported on a helper thread), play,
pause, step, reset, and the drain timer's slot that takes the newest snapshot.

A block of MainWindow kept whole in a file of its own (MainWindow inherits it), so that the one
GUI-side worker host (explorer/gui/worker_host.py) can replace it in one piece. It uses the window's
own state (worker, status, show_fault, deliver, ...): it is part of the window, not a feature.
"""

from __future__ import annotations

import importlib
import threading
import traceback

from PySide6.QtWidgets import QStyle


class WorkerHosting:
    """Mixed into MainWindow (see the module docstring)."""

    # ------------------------------------------------------------------ worker
    def start_worker(self, play: bool = False) -> None:
        """Make the worker and start it. With the default factory the worker module (torch) is imported
        on a helper thread, so this returns at once; `worker_attached` fires when it runs."""
        self._want_play = self._want_play or play
        if self.worker is not None or self._loading or self._closed:
            return
        self.status.set_state("starting")
        if not isinstance(self.worker_factory, str):
            self._create_worker(self.worker_factory)
            return
        self._loading = True
        self.status.info("Loading the training engine…")
        module_name, _, attr = self.worker_factory.partition(":")

        def load():
            try:
                factory = getattr(importlib.import_module(module_name), attr)
                self._worker_module_loaded.emit(factory, "")
            except BaseException as exc:  # noqa: BLE001 - reported in the window
                self._worker_module_loaded.emit(None, f"{type(exc).__name__}: {exc}")

        threading.Thread(target=load, name="explorer-import-engine", daemon=True).start()

    def _on_worker_module_loaded(self, factory, error: str) -> None:
        self._loading = False
        if self._closed:
            return
        if factory is None:
            self.show_fault(f"The training engine could not be loaded: {error}")
            return
        self.worker_factory = factory
        self._create_worker(self.worker_factory)

    def _create_worker(self, factory) -> None:
        try:
            worker = factory(self.settings)
            worker.start()
        except Exception as exc:  # noqa: BLE001 - bad settings or a broken engine: say so, live on
            self.show_fault(f"Training could not start: {exc}")
            return
        self.worker = worker
        self._worker_dead_reported = False
        if self._want_play:
            worker.play()
            self._playing = True
        while self._pending_steps > 0:
            worker.step(self._pending_steps)
            self._pending_steps = 0
        self._want_play = False
        self.drain_timer.start()
        self._sync_play_action()
        self.status.set_state("running" if self._playing else "paused")
        self.status.info("Training engine ready." + ("" if self._playing else " Space plays."))
        self.worker_attached.emit(worker)

    def _stop_worker(self) -> None:
        worker, self.worker = self.worker, None
        self.drain_timer.stop()
        if worker is not None:
            try:
                worker.close()
            except Exception:  # noqa: BLE001 - closing must not raise at exit
                traceback.print_exc()

    def toggle_play(self) -> None:
        self.pause() if self._playing else self.play()

    def play(self) -> None:
        self.compare_host.pause()  # the single run and a comparison never train at once
        self._playing = True
        if self.worker is None:
            self.start_worker(play=True)
        elif not self._worker_alive():
            self.show_fault("The training engine has stopped. Press Reset (R) to start a new one.")
            self._playing = False
        else:
            self.worker.play()
        self._sync_play_action()

    def pause(self) -> None:
        self._playing = False
        self._want_play = False
        if self.worker is not None:
            self.worker.pause()
        self._sync_play_action()

    def step_once(self) -> None:
        self.compare_host.pause()
        self._playing = False
        if self.worker is None:
            self._pending_steps += 1
            self.start_worker()
        elif self._worker_alive():
            self.worker.step(1)
        self._sync_play_action()

    def reset(self) -> None:
        """Restart the adapters from the frozen base, paused. A dead worker is replaced by a new one."""
        self._playing = False
        self._fault_seen = None
        self._close_fault_dialog()
        self._frame_queue.clear()
        for view in self._fed_views().values():
            self.call_view(view, "clear")
        if self.worker is not None and not self._worker_alive():
            self._stop_worker()
        if self.worker is None:
            self.start_worker()
        else:
            self.worker.reset()
        self.status.info("Reset: adapters restarted from the frozen base.")
        self._sync_play_action()

    def _worker_alive(self) -> bool:
        try:
            return bool(self.worker is not None and self.worker.alive)
        except Exception:  # noqa: BLE001
            return False

    def _sync_play_action(self) -> None:
        act = self.actions_by_name["play_pause"]
        if self._playing:
            act.setText("Pause")
            act.setIcon(self._icon(QStyle.SP_MediaPause))
        else:
            act.setText("Play")
            act.setIcon(self._icon(QStyle.SP_MediaPlay))

    def drain(self) -> None:
        """Timer slot: take the newest snapshot (never waits) and draw it."""
        worker = self.worker
        if worker is None or self.replay is not None:  # replaying: the live run waits in its mailbox
            return
        try:
            snap = worker.latest()
        except Exception as exc:  # noqa: BLE001
            self.show_fault(f"Reading from the training engine failed: {exc}")
            return
        if snap is None:
            if not self._worker_alive() and not self._worker_dead_reported and not self._closing:
                self._worker_dead_reported = True
                self._playing = False
                self._sync_play_action()
                self.status.set_state("stopped")
                self.show_fault("The training engine has stopped. Press Reset (R) to start a new one.")
            return
        self.deliver(snap)
