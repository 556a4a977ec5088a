"""The main window's comparison: a CompareWorker behind the compare view.

The compare view asks for a comparison (`compareRequested(specs)`, from its run-spec field and
Compare button); talk mode's scenes with `runs` ask for one too (`start(base, specs)`). The host

- makes the CompareWorker (the engine module, and with it torch, is imported on a helper thread
  the first time, so the window never waits on it), replacing the one before;
- drains its newest CompareSnapshot on its own timer (latest value wins, as for the single run)
  and hands it to the compare view, which then belongs to the comparison: the window stops feeding
  it the single run (`owns("compare")`);
- never lets both train at once: they share the machine's cores (both set torch's threads), so a
  comparison that plays pauses the single run, and the window's Play / Step pause the comparison;
- reports errors where the specs were typed: a spec that does not fit the scenario (ValueError
  from the worker) or runs that could not be built (a fault snapshot without runs) go to
  `show_spec_error`;
- closes workers off the GUI thread (a round of several language-model runs must finish first),
  and joins every one of them in `close()`, which the window calls when it closes.
"""

from __future__ import annotations

import importlib
import sys
import threading
import traceback

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from explorer.schema.settings import format_pattern

COMPARE_MODULE = "explorer.engine.compare"
DRAIN_MS = 33  # ~30 Hz, as the worker posts at most snapshot_hz (30) anyway
CLOSE_TIMEOUT_S = 10.0


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
    started = Signal(object)  # the CompareWorker, once it runs
    failed = Signal(str)  # why a comparison could not start
    snapshot_delivered = Signal(object)  # every CompareSnapshot handed to the view
    _module_loaded = Signal(object, str, int)

    def __init__(self, window, view=None, worker_kwargs: dict | None = None):
        super().__init__(window)
        self.window = window
        self.view = view if view is not None else getattr(window, "views", {}).get("compare")
        self.worker = None
        self.last = None
        self.delivered = 0
        self.error = ""
        self.worker_kwargs = dict(worker_kwargs or {})  # tests: base_model, threads
        self._playing = False
        self._generation = 0
        self._loading = False
        self._pending = None
        self._closed = False
        self._closers: list[threading.Thread] = []
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(DRAIN_MS)
        self.timer.timeout.connect(self.drain)
        self._module_loaded.connect(self._on_module_loaded)
        signal = getattr(self.view, "compareRequested", None)
        if signal is not None:
            signal.connect(self.compare_specs)

    # ------------------------------------------------------------------ state
    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def active(self) -> bool:
        """A comparison is running or starting."""
        return self.worker is not None or self._loading

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
        self._generation += 1
        gen = self._generation
        self._retire()
        self.error = ""
        if self.view is not None:
            self.view.clear()
            self.view.show_spec_error("")
        if COMPARE_MODULE in sys.modules:
            self._create(sys.modules[COMPARE_MODULE], base_settings, specs, play)
            return
        self._loading = True
        self._pending = (base_settings, specs, play)

        def load():
            try:
                module = importlib.import_module(COMPARE_MODULE)
                self._module_loaded.emit(module, "", gen)
            except BaseException as exc:  # noqa: BLE001 - reported in the view
                self._module_loaded.emit(None, f"{type(exc).__name__}: {exc}", gen)

        threading.Thread(target=load, name="explorer-import-compare", daemon=True).start()

    def _on_module_loaded(self, module, error: str, gen: int) -> None:
        if gen != self._generation or self._closed:
            return
        self._loading = False
        base, specs, play = self._pending
        self._pending = None
        if module is None:
            self._fail(f"The comparison engine could not be loaded: {error}")
            return
        self._create(module, base, specs, play)

    def _create(self, module, base, specs, play: bool) -> None:
        try:
            if specs and all(
                hasattr(s, "label") and hasattr(s, "settings") and not callable(s.settings) for s in specs
            ):
                specs = specs_from_runs(base, specs)
            worker = module.CompareWorker(base, specs, **self.worker_kwargs)
            worker.start()
        except ValueError as exc:  # a spec that does not fit the scenario, a bad base setting
            self._fail(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a broken engine must not take the window down
            traceback.print_exc()
            self._fail(f"The comparison could not start: {type(exc).__name__}: {exc}")
            return
        self.worker = worker
        self.timer.start()
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
            if self._loading and self._pending is not None:  # play once it has started
                self._pending = (*self._pending[:2], True)
            return
        pause = getattr(self.window, "pause", None)
        if pause is not None:
            pause()  # one training loop at a time on the machine's cores
        self.worker.play()
        self._playing = True

    def pause(self) -> None:
        if self._loading and self._pending is not None:
            self._pending = (*self._pending[:2], False)
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
        worker = self.worker
        if worker is None:
            return
        try:
            snap = worker.latest()
        except Exception as exc:  # noqa: BLE001
            self._fail(f"Reading from the comparison failed: {exc}")
            return
        if snap is None:
            if not worker.alive and self._playing:
                self._playing = False
            return
        self.last = snap
        self.delivered += 1
        if snap.state == "fault":
            if not snap.runs:
                self._fail(snap.fault or "the comparison stopped")
            elif snap.fault and "every run stopped" in snap.fault:
                self._playing = False
        if self.view is not None:
            try:
                self.view.update_snapshot(snap)
            except Exception as exc:  # noqa: BLE001 - one broken view must not stop the host
                traceback.print_exc()
                self._fail(f"The compare view failed to draw: {exc}")
        self.snapshot_delivered.emit(snap)

    # ------------------------------------------------------------------ stopping
    def _retire(self) -> None:
        """Stop the comparison now (no more snapshots) and join its thread off the GUI thread."""
        worker, self.worker = self.worker, None
        self._playing = False
        self._loading = False
        self.last = None
        self.timer.stop()
        if worker is None:
            return
        self._closers = [t for t in self._closers if t.is_alive()]
        closer = threading.Thread(
            target=worker.close, args=(CLOSE_TIMEOUT_S,), name="explorer-compare-close", daemon=True
        )
        closer.start()
        self._closers.append(closer)

    def stop(self) -> None:
        """End the comparison (the compare view goes back to following the single run after its
        next clear)."""
        self._generation += 1
        self._retire()

    def close(self) -> None:
        """End the comparison and join every worker thread this host started. Idempotent."""
        self._generation += 1
        self._retire()
        self._closed = True
        for t in self._closers:
            t.join(CLOSE_TIMEOUT_S + 1.0)
        self._closers = []
