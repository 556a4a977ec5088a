"""The main window's comparison: a comparison worker behind the compare view.

The compare view asks for a comparison (`compareRequested(specs)`, from its run-spec field and
Compare button); talk mode's scenes with `runs` ask for one too (`start(base, specs)`). The host

- runs the comparison through a WorkerHost (gui/worker_host.py, as the window runs its training):
  by default in a child process (engine/process_worker.py, ProcessCompareWorker), so its training
  holds neither this process's GIL nor torch; in this process when the window trains here too
  (`--in-process`, and the GUI tests: `compare_worker_for`);
- drains its newest CompareSnapshot (latest value wins, as for the single run) and hands it to the
  compare view, which then belongs to the comparison: the window stops feeding it the single run
  (`owns("compare")`);
- never lets both train at once: they share the machine's cores (both set torch's threads), so a
  comparison that plays pauses the single run, and the window's Play / Step pause the comparison;
- reports errors where the specs were typed: a spec that does not fit the scenario (ValueError
  from the worker) or runs that could not be built (a fault snapshot without runs) go to
  `show_spec_error`; a comparison whose runs all stopped, or whose process died, stops playing;
- closes a replaced worker off the GUI thread (a round of several language-model runs must finish
  first), and joins every one of them in `close()`, which the window calls when it closes.
"""

from __future__ import annotations

import traceback

from PySide6.QtCore import QObject, Signal

from explorer.gui.worker_host import WorkerHost
from explorer.schema.faults import ALL_STOPPED, DIED
from explorer.schema.settings import format_pattern

PROCESS_COMPARE = "explorer.engine.process_worker:ProcessCompareWorker"
THREAD_COMPARE = "explorer.engine.compare.worker:CompareWorker"
DRAIN_MS = 33  # ~30 Hz, as the worker posts at most snapshot_hz (30) anyway


def compare_worker_for(training_factory) -> str:
    """Where a comparison runs: in a child process when the window trains in one (the default), else
    in this process beside the window's own training thread."""
    in_child = isinstance(training_factory, str) and training_factory.startswith("explorer.engine.process_worker:")
    return PROCESS_COMPARE if in_child else THREAD_COMPARE


def spec_text(overrides: dict) -> str:
    """{'method': 'lora', 'rank': 4, 'alpha': 8.0} -> 'lora:r=4,alpha=8' (what the run-spec field shows)."""
    aliases = {"rank": "r", "prefix_len": "K", "prefix_layers": "L"}
    parts = []
    for name, value in overrides.items():
        if name == "method":
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (tuple, list)):
            value = "+".join(str(v) for v in value)
        elif isinstance(value, dict):  # rank_pattern / alpha_pattern
            value = format_pattern(value, "+") or "none"
        elif isinstance(value, float):
            value = f"{value:g}"
        elif value is None:
            value = "all"
        parts.append(f"{aliases.get(name, name)}={value}")
    method = overrides.get("method", "lora")
    return method + (":" + ",".join(parts) if parts else "")


def specs_from_runs(base, runs) -> list:
    """RunSpec objects for a deck scene's runs (`explorer.schema.deck.Run`: a label and full settings):
    each run sets its method and the method's defining settings (LoRA: the rank; prefix: K and L),
    and changes whatever other per-run setting differs from the scene's settings `base`. Imports the
    compare engine (torch)."""
    from explorer.schema.compare import PER_RUN, SHARED, RunSpec

    specs = []
    for run in runs:
        for name in SHARED:
            if getattr(run.settings, name) != getattr(base, name):
                raise ValueError(
                    f"run {run.label!r}: {name} is shared by every run of a comparison; set it in the scene's settings"
                )
        overrides = {"method": run.settings.method}
        if run.settings.uses_lora():
            overrides["rank"] = run.settings.rank
        if run.settings.uses_prefix() and run.settings.scenario == "lm":
            overrides["prefix_len"] = run.settings.prefix_len
            overrides["prefix_layers"] = run.settings.prefix_layers
        for name in PER_RUN:
            if getattr(run.settings, name) != getattr(base, name):
                overrides[name] = getattr(run.settings, name)
        specs.append(RunSpec(label=run.label, overrides=overrides, text=spec_text(overrides), explicit_label=True))
    return specs


class CompareHost(QObject):
    started = Signal(object)  # the comparison's worker, once it runs
    failed = Signal(str)  # why a comparison could not start
    snapshot_delivered = Signal(object)  # every CompareSnapshot handed to the view

    def __init__(self, window, view=None, worker_kwargs: dict | None = None, factory=PROCESS_COMPARE):
        super().__init__(window)
        self.window = window
        self.view = view if view is not None else getattr(window, "views", {}).get("compare")
        self.last = None
        self.delivered = 0
        self.error = ""
        self.worker_kwargs = dict(worker_kwargs or {})  # tests: base_model, threads
        self._playing = False
        self._play_on_start = False
        self._closed = False
        self.host = WorkerHost(factory, drain_ms=DRAIN_MS, name="compare", parent=self)
        self.host.attached.connect(self._on_attached)
        self.host.failed.connect(self._on_failed)
        self.host.snapshot.connect(self._on_snapshot)
        self.host.died.connect(self._on_died)
        signal = getattr(self.view, "compareRequested", None)
        if signal is not None:
            signal.connect(self.compare_specs)

    # ------------------------------------------------------------------ state
    @property
    def worker(self):
        return self.host.worker

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def active(self) -> bool:
        """A comparison is running or starting."""
        return self.worker is not None or self.host.loading

    def owns(self, view_id: str) -> bool:
        """The view belongs to the comparison (the window must not feed it the single run)."""
        return view_id == "compare" and self.active

    # ------------------------------------------------------------------ starting
    def compare_specs(self, specs: list) -> None:
        """The compare view's request: these run specs on the window's current settings."""
        self.start(self.window.settings, list(specs), play=True)

    def start(self, base_settings, specs: list, play: bool = True) -> None:
        """Replace any comparison by `specs` on `base_settings`, at step 0; playing at once if `play`
        (the single run pauses). `specs`: run-spec strings, RunSpec objects, or a deck scene's runs
        (`explorer.schema.deck.Run`)."""
        if self._closed:
            return
        self.stop()
        self.error = ""
        if self.view is not None:
            self.view.clear()
            self.view.show_spec_error("")
        try:
            if specs and all(
                hasattr(s, "label") and hasattr(s, "settings") and not callable(s.settings) for s in specs
            ):
                specs = specs_from_runs(base_settings, specs)
        except ValueError as exc:
            self._fail(str(exc))
            return
        self._play_on_start = play
        self.host.start(base_settings, specs, **self.worker_kwargs)

    def _on_attached(self, worker) -> None:
        play, self._play_on_start = self._play_on_start, False
        if play:
            self.play()
        status = getattr(self.window, "status", None)
        if status is not None:
            n = len(worker.labels)
            status.info(
                f"Comparing {n} run{'s' if n != 1 else ''} on the same data and seed"
                + (" (the single run is paused)." if play else ".")
            )
        self.started.emit(worker)

    def _on_failed(self, message: str, specs_error: bool) -> None:
        self._fail(message if specs_error else f"The comparison could not start: {message}")

    def _fail(self, message: str) -> None:
        self.error = message
        self._playing = False
        if self.view is not None:
            self.view.show_spec_error(message)
        status = getattr(self.window, "status", None)
        if status is not None:
            status.error(message)
        self.failed.emit(message)

    # ------------------------------------------------------------------ commands
    def play(self) -> None:
        if self.worker is None:
            if self.host.loading:  # play once it has started
                self._play_on_start = True
            return
        pause = getattr(self.window, "pause", None)
        if pause is not None:
            pause()  # one training loop at a time on the machine's cores
        self.worker.play()
        self._playing = True

    def pause(self) -> None:
        self._play_on_start = False
        if self.worker is not None and self._playing:
            self.worker.pause()
        self._playing = False

    def toggle_play(self) -> None:
        self.pause() if self._playing else self.play()

    def reset(self) -> None:
        if self.worker is not None:
            self.worker.reset()
            self._playing = False

    # ------------------------------------------------------------------ snapshots
    def drain(self) -> None:
        self.host.drain()

    def _on_snapshot(self, snap) -> None:
        self.last = snap
        self.delivered += 1
        if snap.state == "fault" and snap.fault is not None:
            if not snap.runs:
                self._fail(snap.fault.message)
            elif snap.fault.kind in (ALL_STOPPED, DIED):
                self._playing = False
        if self.view is not None:
            try:
                self.view.update_snapshot(snap)
            except Exception as exc:  # noqa: BLE001 - one broken view must not stop the host
                traceback.print_exc()
                self._fail(f"The compare view failed to draw: {exc}")
        self.snapshot_delivered.emit(snap)

    def _on_died(self) -> None:
        self._playing = False

    # ------------------------------------------------------------------ stopping
    def stop(self) -> None:
        """End the comparison (closed off the GUI thread; the compare view goes back to following the
        single run after its next clear)."""
        self.host.retire()
        self._playing = False
        self._play_on_start = False
        self.last = None

    def close(self) -> None:
        """End the comparison and join every worker this host started. Idempotent."""
        self.stop()
        self._closed = True
        self.host.close()
