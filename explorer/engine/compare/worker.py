"""A CompareRunner in a background thread: the worker loop (engine/worker_loop.py) of the training
run, specialised for a comparison.

The caller (the GUI thread, or the relay in a child process) calls start / play / pause / step /
reset / set_runs / close, which only queue a command and wake the thread, and `latest()` for the
newest CompareSnapshot (or None). Snapshots are posted at most `snapshot_hz` per second and
SNAPSHOT_SHARE of the time, held-out losses every EVAL_INTERVAL_S, analyses every
ANALYSIS_INTERVAL_S (and on pause, step, reset). A run that diverges stops with its fault in its
RunSummary.fault; the others go on; when every run has stopped the snapshot's fault (kind
"all-stopped") says so. If the runs cannot be built at all, a snapshot with state "fault" (kind
"start") and no runs says why.
"""

from __future__ import annotations

from explorer.engine.compare.runner import CompareRunner
from explorer.engine.requests import RunsRequests
from explorer.engine.worker_loop import Cadence, WorkerLoop
from explorer.schema.compare import CompareSnapshot
from explorer.schema.faults import ALL_STOPPED, START, Fault
from explorer.schema.settings import TrainSettings

EVAL_INTERVAL_S = 1.0
EVAL_SHARE = 0.02
ANALYSIS_INTERVAL_S = 2.0
ANALYSIS_SHARE = 0.05
ALL_STOPPED_HINT = "every run has stopped: reset to go on"


class CompareWorker(RunsRequests, WorkerLoop):
    thread_name = "peft-explorer-compare"
    what = "the comparison"
    FULL = {"eval_": True, "analysis": True}

    def __init__(self, base_settings: TrainSettings, specs: list, *, base_model=None, threads: int | None = None):
        self._init_runs(base_settings, specs)
        super().__init__(snapshot_hz=base_settings.snapshot_hz, threads=threads)
        self._base_model = base_model
        self._runner: CompareRunner | None = None  # touched only in the worker thread
        self._segment = 0  # of the next build
        self._eval = Cadence(EVAL_INTERVAL_S, EVAL_SHARE)
        self._analysis = Cadence(ANALYSIS_INTERVAL_S, ANALYSIS_SHARE)

    # --- the hooks (in the worker thread) -------------------------------------------------------
    def _ready(self) -> bool:
        return self._runner is not None

    def _step(self) -> int:
        return self._runner.step if self._runner is not None else 0

    def _build(self) -> None:
        with self._lock:
            base, specs = self._base, list(self._specs)
        self._playing, self._steps_left = False, 0
        if self._runner is not None:
            self._segment = self._runner.segment + 1
        self._runner = None
        try:
            runner = CompareRunner(base, specs, base_model=self._base_model)
        except Exception as exc:  # a bad device, a missing base model, a spec that does not fit the scenario
            self._stop_on(Fault(START, f"could not start the comparison: {type(exc).__name__}: {exc}"))
            self._segment += 1
            return
        runner.segment = self._segment
        # In this thread (OpenMP keeps a count per thread), for these runs: beside the window.
        runner.use_threads(self._threads, beside_gui=True)
        self._runner = runner
        self._fault = None
        self._snap.interval = 1.0 / base.snapshot_hz
        self._post_full()

    def _advance(self) -> bool:
        r = self._runner
        if not r.active():
            self._stop_on(self._fault or Fault(ALL_STOPPED, ALL_STOPPED_HINT))
            return False
        faults = r.step_round()
        if faults and not r.active():
            self._stop_on(Fault(ALL_STOPPED, "every run stopped: " + faults[-1]))
            return False
        return True

    def _on_play(self) -> None:
        if not self._runner.active():
            return self._stop_on(self._fault or Fault(ALL_STOPPED, ALL_STOPPED_HINT))
        super()._on_play()

    def _on_reset(self) -> None:
        self._runner.reset()
        self._playing, self._steps_left, self._fault = False, 0, None
        self._post_full()

    def _on_snapshot(self, analysis: bool = False) -> None:
        self._post(analysis=analysis)

    def _handle_other(self, cmd) -> None:
        if cmd[0] == "set_runs":  # the new runs are in _base / _specs already
            self._build()
        else:
            super()._handle_other(cmd)

    def _post_fault(self) -> None:
        self._post_full(state="fault")

    def _due_parts(self, now: float) -> dict:
        return {"eval_": self._eval.due(now), "analysis": self._analysis.due(now)}

    def _make_snapshot(self, eval_: bool = False, analysis: bool = False) -> CompareSnapshot:
        r = self._runner
        if eval_:
            self._eval.timed(r.evaluate)
        for run in r.runs:  # the step-0 loss (a forward pass per run, once per segment) is not
            if run.fault is None:  # a snapshot's cost: counted in, it put the next one 40x further off
                r.initial_loss(run)
        snap = self._snap.timed(r.snapshot)
        if analysis:
            snap.analysis = self._analysis.timed(r.analyses)
        return snap

    def _empty_snapshot(self, fault: Fault | None) -> CompareSnapshot:
        r = self._runner
        with self._lock:
            scenario = self._base.scenario
        return CompareSnapshot(
            step=0 if r is None else r.step,
            segment=self._segment if r is None else r.segment,
            time=0.0,
            runs=[],
            scenario=scenario,
            state="fault",
            fault=fault,
        )

    def _teardown(self) -> None:
        self._runner = None
