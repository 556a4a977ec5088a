"""The background training thread: commands in, snapshots out, nobody waits for anybody.

The caller (the GUI thread) calls `play`, `pause`, `step`, `reset`, `configure`, ... which only record
a command and wake the worker; `latest()` takes the newest snapshot from a one-slot mailbox. The
worker owns the Trainer: it is built in the thread, steps in the thread, and is only touched there.
The lifecycle (thread, commands, mailbox, cadence, calls, shutdown) is engine/worker_loop.py's,
shared with the comparison; this module says what a training run does at each hook.

Instrumentation is bounded by time and by a share of the wall time, measured as it goes:
- snapshots at most `snapshot_hz` per second, and never more than LIVE_SNAPSHOT_SHARE of the time
  (a snapshot that cost c seconds is followed by at least c / LIVE_SNAPSHOT_SHARE seconds of training);
- the held-out loss at most every EVAL_INTERVAL_S seconds and EVAL_SHARE of the time;
- samples (generated text, lm scenario) at most every SAMPLE_INTERVAL_S seconds and SAMPLE_SHARE of
  the time, and at once after a reset, a cold change, a pause, the end of a step and `sample_now()`;
  the newest samples ride along in every snapshot (their "step" says when they were made), so a
  consumer that missed one snapshot misses no samples;
- the attention maps of the prefix layers (a forward over the probe text, most of what an lm snapshot
  cost) at most every ATTENTION_INTERVAL_S seconds and ATTENTION_SHARE of the time, and in every
  complete snapshot (pause, end of a step, reset); the snapshots between carry the last maps, whose
  `attention_step` says when they were measured, so the cheap parts follow every step;
- the token view's per-token log-probability differences (lm scenario) at most every
  TOKEN_DELTA_INTERVAL_S seconds and TOKEN_DELTA_SHARE of the time, and whenever samples are made,
  riding along like the samples.
Together that caps instrumentation at about 16 % of the training time; in practice a snapshot per step
costs 1-4 % of it (bench/bench_engine.py measures it).
"""

from __future__ import annotations

import dataclasses
import re
import time

import torch

from explorer.core.cpu_threads import work_threads
from explorer.engine.requests import SettingsRequests
from explorer.engine.trainer import NonFiniteLoss, Trainer
from explorer.engine.worker_loop import CALL_TIMEOUT_S, SNAPSHOT_SHARE, Cadence, WorkerLoop
from explorer.schema.faults import DIVERGED, ERROR, MEMORY, SETTING, START, Fault
from explorer.schema.settings import TrainSettings
from explorer.schema.snapshot import Snapshot, fault_snapshot

__all__ = ["CALL_TIMEOUT_S", "SNAPSHOT_SHARE", "TrainingWorker"]

# A live snapshot's cheap parts (loss, gates, ΔW, spectra; the attention maps, samples and token
# differences have cadences of their own, below) cost 1.5-4 ms beside an lm step of 70-170 ms, and
# 0.3-1 ms in the matrix scenario: 5 % of the time lets the views follow every lm step and the matrix
# scenario at snapshot_hz (30 Hz), where 2.5 % held them to ~3 and ~10 a second. The app trains in a
# child process, so this costs the training loop, not the GUI.
LIVE_SNAPSHOT_SHARE = 0.05
EVAL_INTERVAL_S = 2.0
EVAL_SHARE = 0.008
# Samples are the story on a small model: every few seconds of training, even though one costs a
# few hundred milliseconds on a shared CPU core.
SAMPLE_INTERVAL_S = 3.0
SAMPLE_SHARE = 0.06
# The probe's attention maps: a forward pass, 3-4x the rest of an lm snapshot. Measured in every
# snapshot, they held the live views to ~3 snapshots a second at ~10 steps a second; on their own
# cadence the rest (loss, gates, ΔW, spectra: 1.5-2 ms) follows every step.
ATTENTION_INTERVAL_S = 0.25
ATTENTION_SHARE = 0.03
TOKEN_DELTA_INTERVAL_S = 1.0  # one forward over a fixed text (the base's side is computed once)
TOKEN_DELTA_SHARE = 0.01

OOM_HINT = "lower batch_size, seq_len or the matrix size, or use dtype bf16 or the cpu"


def refused_setting(changes: dict, message: str) -> str | None:
    """Which of the changed settings a refusal is about: the one its message names, else the only one."""
    for name in changes:
        if re.search(rf"\b{re.escape(name)}\b", message):
            return name
    return next(iter(changes)) if len(changes) == 1 else None


class TrainingWorker(SettingsRequests, WorkerLoop):
    FULL = {"eval_": True, "samples": True, "attention": True}
    snapshot_share = LIVE_SNAPSHOT_SHARE

    def __init__(
        self,
        settings: TrainSettings | None = None,
        *,
        base_model=None,
        threads: int | None = None,
        instrument: bool = True,
    ):
        """`base_model`: a model to adapt instead of the shipped one (tests); `threads`: torch threads
        in the worker (1 .. 4 x cores; default: tuned on the steps among the counts that
        core/device.thread_plan allows, a core left to the window); `instrument=False`: no snapshots
        while playing (benchmarks measure what the live snapshots cost against it)."""
        settings = self._init_settings(settings)
        super().__init__(snapshot_hz=settings.snapshot_hz, threads=threads, instrument=instrument)
        self._base_model = base_model
        self._trainer: Trainer | None = None  # touched only in the worker thread
        self._samples: dict | None = None
        self._token_delta: dict | None = None
        self._eval = Cadence(EVAL_INTERVAL_S, EVAL_SHARE)
        self._sample = Cadence(SAMPLE_INTERVAL_S, SAMPLE_SHARE)
        self._token = Cadence(TOKEN_DELTA_INTERVAL_S, TOKEN_DELTA_SHARE)
        self._attention = Cadence(ATTENTION_INTERVAL_S, ATTENTION_SHARE)
        self._next_step_at = 0.0
        self._threads_for = None  # (device type, threads the work can use) the counts were planned for

    # --- the caller's side --------------------------------------------------------------------
    def relay_info(self) -> dict:
        with self._lock:  # the settings asked for are reset when a change fails
            settings, requested = self._running_settings, self._requested
        return {**super().relay_info(), "settings": settings, "requested": requested}

    def _queue_configure(self, changes: dict):
        self._commands.append(("configure", changes))
        return self._wake.set

    def save_state(self, path, timeout: float = CALL_TIMEOUT_S) -> None:
        """Write the trained state (every setting, the trained tensors, the optimizer's moments) to
        `path`, atomically, from the worker thread between two steps; returns when it is written.
        ValueError (one line) when it cannot be: no engine, no trainer, a disk error."""
        path = str(path)

        self._call("save the state", lambda: self._built("nothing to save").save_state(path), timeout)

    def load_state(self, path, timeout: float = CALL_TIMEOUT_S) -> TrainSettings:
        """Restore a saved state in the worker thread: its settings (this machine's device and display
        settings kept) and tensors; training pauses there and a snapshot follows. Returns the settings
        now in force. A damaged, foreign or unknown-version file raises ValueError (one line) and
        changes nothing."""
        path = str(path)

        def load():
            t = self._built("cannot open a state")
            t.load_state(path)
            with self._lock:
                self._running_settings = self._requested = t.settings
            self._playing = False
            self._steps_left = 0
            self._fault = None
            t.clock.pause()
            self._snap.interval = 1.0 / t.settings.snapshot_hz
            self._post_full()
            return t.settings

        return self._call("open the state", load, timeout)

    def sample_now(self) -> None:
        """Generate samples (and the token view's differences) at the current step, whatever the cadence."""
        self._command("sample")

    def _built(self, refusal: str) -> Trainer:
        """The trainer, or ValueError: `refusal` and why there is none."""
        if self._trainer is None:
            raise ValueError(f"{refusal}: {self._fault or 'the training engine has no model yet'}")
        return self._trainer

    # --- the hooks (in the worker thread) -------------------------------------------------------
    def _ready(self) -> bool:
        return self._trainer is not None

    def _step(self) -> int:
        return self._trainer.step if self._trainer is not None else 0

    def _build(self) -> None:
        try:
            self._trainer = Trainer(self._running_settings, base_model=self._base_model, clock_running=False)
        except Exception as exc:  # a bad device, a missing base model, ...
            self._trainer = None
            self._stop_on(Fault(START, f"could not start training: {type(exc).__name__}: {exc}"))
            return
        self._use_threads(self._trainer)  # before the first snapshot, whose device label names the count
        self._fault = None
        self._post_full()

    def _pace(self) -> float:
        now = time.perf_counter()
        speed = self._trainer.settings.speed
        if self._playing and speed > 0 and now < self._next_step_at:
            return self._next_step_at - now
        self._next_step_at = now + (1.0 / speed if speed > 0 else 0.0)
        return 0.0

    @property
    def threads(self) -> int:
        """Torch threads the training thread uses now (0 before the trainer is built)."""
        t = self._trainer
        return t.threads.current if t is not None and t.threads is not None else 0

    def _use_threads(self, t: Trainer) -> None:
        """Plan the training thread's torch threads for the trainer's work, beside the window. Planned
        again only when the threads the work can use change (a cold change, a batch size, a loaded
        state), since looking at the machine takes cpu_threads.SAMPLE_S; the tuner follows the load."""
        key = (t.device.type, work_threads(t.matmul_flops()))
        if key != self._threads_for or t.threads is None:
            self._threads_for = key
            t.use_threads(self._threads, beside_gui=True)

    def _advance(self) -> bool:
        t = self._trainer
        try:
            self._use_threads(t)
            t.train_step()
            return True
        except NonFiniteLoss as exc:
            fault = Fault(DIVERGED, f"{exc}; paused; lower the learning rate or reset")
        except torch.OutOfMemoryError as exc:
            if t.device.type == "cuda":
                torch.cuda.empty_cache()
            first = str(exc).splitlines()[0] if str(exc) else ""
            fault = Fault(MEMORY, f"out of memory at step {t.step}: {first}; paused; {OOM_HINT}")
        except Exception as exc:
            fault = Fault(
                ERROR, f"{type(exc).__name__} at step {t.step}: {exc}; paused; reset or change settings to go on"
            )
        self._stop_on(fault)
        return False

    def _on_play(self) -> None:
        t = self._trainer
        self._fault = None
        self._playing = True
        self._steps_left = 0
        t.clock.resume()
        now = time.perf_counter()
        # keep the schedule across pause / play: a costly snapshot still buys its quiet time
        self._snap.next = max(self._snap.next, now + 1.0 / t.settings.snapshot_hz)
        last = self._mailbox.peek()
        if last is not None and last.step == t.step and last.segment == t.segment:
            # nothing changed since the last snapshot but the state: say so without recomputing it
            self._put(dataclasses.replace(last, state="running", fault=None))
        else:
            self._post()

    def _on_pause(self) -> None:
        self._trainer.clock.pause()
        self._post_full()

    def _on_step(self) -> None:
        self._trainer.clock.resume()

    def _on_steps_done(self) -> None:
        self._trainer.clock.pause()
        self._post_full()

    def _on_reset(self) -> None:
        self._trainer.reset()
        self._fault = None
        self._steps_left = 0
        self._post_full()

    def _handle_other(self, cmd) -> None:
        if cmd[0] == "inject_fault":
            if self._trainer is not None:
                self._trainer.inject_fault(cmd[1])
        elif cmd[0] == "configure":
            self._configure(cmd[1])
        elif cmd[0] == "sample":
            if self._trainer is None:
                return self._repost_fault()
            self._post(samples=True)
        else:
            super()._handle_other(cmd)

    def _configure(self, changes: dict) -> None:
        t = self._trainer
        if t is None:
            with self._lock:
                self._running_settings = self._running_settings.with_changes(**changes)
            return self._build()
        try:
            kinds = t.apply(**changes)
        except Exception as exc:
            with self._lock:
                self._requested = self._running_settings
            names = ", ".join(f"{k}={v!r}" for k, v in changes.items())
            message = f"could not apply {names}: {exc}; the previous settings stay in force"
            self._stop_on(Fault(SETTING, message, refused_setting(changes, str(exc))))
            return
        with self._lock:
            self._running_settings = t.settings
        if "snapshot_hz" in kinds:
            self._snap.interval = 1.0 / t.settings.snapshot_hz
        cold = "cold" in kinds.values()
        if cold:
            self._steps_left = 0
        self._fault = None
        self._post(eval_=cold, samples=cold)

    def _post_fault(self) -> None:
        self._trainer.clock.pause()
        self._post(state="fault")

    def _due_parts(self, now: float) -> dict:
        return {
            "eval_": self._eval.due(now),
            "samples": self._sample.due(now),
            "tokens": self._token.due(now),
            "attention": self._attention.due(now),
        }

    def _make_snapshot(
        self, eval_: bool = False, samples: bool = False, tokens: bool = False, attention: bool = False
    ) -> Snapshot:
        """`samples` asks for fresh samples (after this snapshot) and token differences, `tokens` for
        the differences alone, `attention` for fresh attention maps (else the last ones ride along)."""
        t = self._trainer
        if samples or tokens:
            self._refresh_token_delta()
        if eval_:
            self._eval.timed(t.eval_loss)
        if attention:
            self._attention.timed(t.probe_attention)
        if t.step == 0:
            # a forward pass, once per segment: measured inside the snapshot it made the snapshot look
            # 30x dearer than it is and held the next ones back for seconds (see Cadence)
            t.initial_loss()
        # live: pooled heatmaps of the matrices on view only, W0 once (explorer.schema.heatmap_choice);
        # the attention maps measured above ride along
        snap = self._snap.timed(lambda: t.snapshot(t.settings.display_size, fresh_attention=False, live=True))
        self._attach_samples(snap)
        return snap

    def _after_put(self, snap: Snapshot, eval_: bool = False, samples: bool = False, **_parts) -> None:
        """Fresh samples, if asked for, follow in a second snapshot: generation takes a while and the
        views should not wait for it."""
        t = self._trainer
        fresh = (
            samples
            and hasattr(t.scenario, "samples")
            and (
                self._samples is None
                or self._samples.get("step") != t.step
                or self._samples.get("segment") != t.segment
            )
        )
        if not fresh:
            return
        try:
            self._samples = {**self._sample.timed(t.samples), "segment": t.segment}
        except Exception as exc:
            return self._stop_on(Fault(ERROR, f"sampling failed at step {t.step}: {type(exc).__name__}: {exc}; paused"))
        snap = dataclasses.replace(snap)
        self._attach_samples(snap)
        self._put(snap)

    def _attach_samples(self, snap: Snapshot) -> None:
        t = self._trainer
        if self._samples is not None and self._samples.get("segment") == t.segment:
            snap.samples = {k: v for k, v in self._samples.items() if k != "segment"}
        else:
            snap.samples = None
        if self._token_delta is not None and self._token_delta.get("segment") == t.segment:
            snap.token_delta = {k: v for k, v in self._token_delta.items() if k != "segment"}
        else:
            snap.token_delta = None

    def _refresh_token_delta(self) -> None:
        """The token view's differences at the current step (lm only), unless they are fresh. A
        failure leaves the view without them; training goes on."""
        t = self._trainer
        old = self._token_delta
        if old is not None and old.get("step") == t.step and old.get("segment") == t.segment:
            return
        try:
            delta = self._token.timed(t.token_delta)
        except Exception:  # noqa: BLE001 - a view's extra, not worth stopping training for
            delta = None
        self._token_delta = None if delta is None else {**delta, "segment": t.segment}

    def _empty_snapshot(self, fault: Fault | None) -> Snapshot:
        t = self._trainer
        return (
            t.bare_snapshot("fault", fault)
            if t is not None
            else fault_snapshot(self._running_settings.to_dict(), fault)
        )

    def _teardown(self) -> None:
        if self._trainer is not None:
            self._trainer.clock.pause()
        self._trainer = None
