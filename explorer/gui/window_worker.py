"""The window's worker hosting: start the worker, play, pause, step, reset, and what the window does
with what the worker sends (snapshots, a failed start, a death).

A block of MainWindow kept whole in a file of its own (MainWindow inherits it). The worker itself is
made, drained and closed by the GUI-side WorkerHost (explorer/gui/worker_host.py), the same one that
runs the compare view's comparison: its module is imported on a helper thread, a timer takes the
newest snapshot, a death nobody explained is reported once. It uses the window's own state (status,
show_fault, deliver, ...): it is part of the window, not a feature.
"""

from __future__ import annotations

from PySide6.QtWidgets import QStyle

from explorer.gui.worker_host import WorkerHost
from explorer.schema.heatmap_choice import HeldHeatmaps, heatmap_names


class WorkerHosting:
    """Mixed into MainWindow (see the module docstring)."""

    def _make_worker_host(self, factory) -> WorkerHost:
        """The host of the training run's worker (called once, by MainWindow.__init__)."""
        host = WorkerHost(factory, should_drain=lambda: self.replay is None, parent=self)
        host.attached.connect(self._on_worker_attached)
        host.failed.connect(self._on_worker_failed)
        host.snapshot.connect(self._deliver_live)
        host.died.connect(self._on_worker_died)
        # the pooled W0 the worker sends once a segment, put back into every later snapshot
        self.held_heatmaps = HeldHeatmaps()
        return host

    def _deliver_live(self, snap) -> None:
        """A snapshot from the live worker: whole again (its held W0), then to the views; and when the
        ΔW view shows a matrix the worker does not send heatmaps of (it was picked during a replay, or
        in a view that was hidden), ask for it."""
        snap = self.held_heatmaps.fill(snap)
        self.deliver(snap)
        delta_view = self.views.get("delta")
        name = delta_view.current_matrix() if hasattr(delta_view, "current_matrix") else ""
        m = (snap.matrices or {}).get(name) if name else None
        if m is not None and m.delta is None and snap.state != "fault":
            self.choose_heatmaps(name)

    # ------------------------------------------------------------------ worker
    @property
    def worker(self):
        """The training run's worker (None before it starts and after the window closes)."""
        return self.worker_host.worker

    @property
    def drain_timer(self):
        return self.worker_host.timer

    def start_worker(self, play: bool = False) -> None:
        """Make the worker and start it. Its module (torch, for a thread worker) is imported on a helper
        thread, so this returns at once; `worker_attached` fires when it runs."""
        self._want_play = self._want_play or play
        if self.worker is not None or self.worker_host.loading or self._closed:
            return
        self.status.set_state("starting")
        if isinstance(self.worker_factory, str):
            self.status.info("Loading the training engine…")
        self.worker_host.start(self.settings)

    def _on_worker_failed(self, message: str, _settings_error: bool) -> None:
        if not self._closed:
            what = "Training could not start" if self.worker is None else "The training engine failed"
            self.show_fault(f"{what}: {message}")

    def choose_heatmaps(self, name: str) -> None:
        """The ΔW view shows `name`: the engine sends its pooled heatmaps from its next snapshot on (the
        hot display setting heatmap_matrices); a replay shows what its recording holds."""
        asked = self.settings.heatmap_matrices
        if not name or self.replaying or asked == (name,):
            return
        snap = self.last_snapshot
        if asked is None and snap is not None and heatmap_names(None, list(snap.matrices or {})) == (name,):
            return  # the engine's default: the settings stay as they are
        self.controls.request({"heatmap_matrices": (name,)})

    def _on_worker_attached(self, worker) -> None:
        self.held_heatmaps.clear()  # a new run: segment numbers start again
        if self._want_play:
            worker.play()
            self._playing = True
        while self._pending_steps > 0:
            worker.step(self._pending_steps)
            self._pending_steps = 0
        self._want_play = False
        self._sync_play_action()
        self.status.set_state("running" if self._playing else "paused")
        self.status.info("Training engine ready." + ("" if self._playing else " Space plays."))
        self.worker_attached.emit(worker)

    def _on_worker_died(self) -> None:
        if self._closing:
            return
        self._playing = False
        self._sync_play_action()
        self.status.set_state("stopped")
        self.show_fault("The training engine has stopped. Press Reset (R) to start a new one.")

    def toggle_play(self) -> None:
        self.pause() if self._playing else self.play()

    def play(self) -> None:
        self.compare_host.pause()  # the single run and a comparison never train at once
        self._playing = True
        if self.worker is None:
            self.start_worker(play=True)
        elif not self.worker_host.alive:
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
        elif self.worker_host.alive:
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
        if self.worker is not None and not self.worker_host.alive:
            self.worker_host.stop()
        if self.worker is None:
            self.start_worker()
        else:
            self.worker.reset()
        self.status.info("Reset: adapters restarted from the frozen base.")
        self._sync_play_action()

    def _sync_play_action(self) -> None:
        act = self.actions_by_name["play_pause"]
        if self._playing:
            act.setText("Pause")
            act.setIcon(self._icon(QStyle.SP_MediaPause))
        else:
            act.setText("Play")
            act.setIcon(self._icon(QStyle.SP_MediaPlay))

    def drain(self) -> None:
        """Take the newest snapshot (never waits) and draw it (the host's timer does this ~40 times a
        second); while a recording is replayed the live run waits in its mailbox."""
        if self.replay is None:
            self.worker_host.drain()
