"""The background training thread: commands in, snapshots out, nobody waits for anybody.

The caller (the GUI thread) calls `play`, `pause`, `step`, `reset`, `configure`, ... which only record
a command and wake the worker; `latest()` takes the newest snapshot from a one-slot mailbox. The
worker owns the Trainer: it is built in the thread, steps in the thread, and is only touched there.

Instrumentation is bounded by time and by a share of the wall time, measured as it goes:
- snapshots at most `snapshot_hz` per second, and never more than SNAPSHOT_SHARE of the time
  (a snapshot that cost c seconds is followed by at least c / SNAPSHOT_SHARE seconds of training);
- the held-out loss at most every EVAL_INTERVAL_S seconds and EVAL_SHARE of the time;
- samples (generated text, lm scenario) at most every SAMPLE_INTERVAL_S seconds and SAMPLE_SHARE of
  the time; the newest samples ride along in every snapshot (their "step" says when they were made),
  so a consumer that missed one snapshot misses no samples.
Together that caps instrumentation at 4.5 % of the training time (bench/bench_engine.py measures it).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import weakref
from collections import deque

import torch

from explorer.core.cpu_threads import check_threads, work_threads
from explorer.engine.mailbox import Mailbox
from explorer.engine.trainer import NonFiniteLoss, Trainer
from explorer.schema.faults import FAULT_KINDS
from explorer.schema.settings import TrainSettings, changed_kinds, validate
from explorer.schema.snapshot import Snapshot

# 2.5 %: the lm scenario's views refresh at several Hz (a snapshot costs 1-5 ms beside a step of 70-110 ms:
# every step for LoRA, every 2-3 steps with probe attention); the app trains in a child process, so
# this costs the training loop, not the GUI.
SNAPSHOT_SHARE = 0.025
EVAL_INTERVAL_S = 2.0
EVAL_SHARE = 0.008
SAMPLE_INTERVAL_S = 3.0
SAMPLE_SHARE = 0.012

OOM_HINT = "lower batch_size, seq_len or the matrix size, or use dtype bf16 or the cpu"
CALL_TIMEOUT_S = 60.0  # save_state / load_state: the worker answers between two steps


class _Call:
    """A function to run in the worker thread between two steps; the caller waits for `done`.
    A call the caller gave up on before it started is skipped (it never runs late)."""

    def __init__(self, fn):
        self.fn = fn
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.started = self.cancelled = False
        self.result = None
        self.error: BaseException | None = None

    def run(self) -> None:
        with self.lock:
            if self.cancelled:
                return
            self.started = True
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
        finally:
            self.done.set()

    def abandon(self, message: str) -> None:
        with self.lock:
            if not self.started:
                self.cancelled = True
                self.error = ValueError(message)
                self.done.set()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, (ValueError, OSError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Cadence:
    """When an instrumentation task is next due: at least `interval` apart, and at most `share`
    of the wall time (by its measured cost, smoothed)."""

    def __init__(self, interval: float, share: float):
        self.interval, self.share = interval, share
        self.cost = 0.0
        self.next = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next

    def done(self, started: float, cost: float) -> None:
        self.cost = cost if self.cost == 0.0 else 0.7 * self.cost + 0.3 * cost
        # max: a snapshot posted off-schedule (play, pause, a command) never shortens the quiet time
        self.next = max(self.next, started + cost + max(self.interval, self.cost / self.share))


@functools.cache
def _warm_lazy_imports() -> None:
    """One optimizer step on a throwaway parameter, once, in the caller's thread. torch finishes some
    imports lazily on the first step; done first inside the training thread while the GUI thread runs
    Qt's event loop, that was seen to stall (a window test hung in that import). It costs milliseconds."""
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.ones(1)
    torch.optim.AdamW([p]).step()


class TrainingWorker:
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
        settings = settings if settings is not None else TrainSettings()
        validate(settings)
        check_threads(threads)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._mailbox: Mailbox[Snapshot] = Mailbox()
        self._running_settings = settings  # what the trainer runs
        self._requested = settings  # with the changes not yet applied
        self._commands: deque = deque()
        self._playing = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._base_model = base_model
        self._threads = threads
        self._threads_for = None  # (device type, threads the work can use) the counts were planned for
        self._instrument = instrument
        self._trainer: Trainer | None = None  # touched only in the worker thread
        self._fault: str | None = None
        self._samples: dict | None = None
        self.snapshots_posted = 0
        self.instrument_seconds = 0.0  # time spent on snapshots, evaluation, samples while playing

    # --- the caller's side --------------------------------------------------------------------
    @property
    def settings(self) -> TrainSettings:
        with self._lock:
            return self._running_settings

    @property
    def running(self) -> bool:
        return self._playing

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (paused). It builds the trainer and posts a first snapshot at step 0."""
        if self._thread is not None:
            return
        _warm_lazy_imports()
        self._thread = threading.Thread(target=self._run, name="peft-explorer-training", daemon=False)
        self._thread.start()
        ref = weakref.ref(self)
        try:  # close before the interpreter joins non-daemon threads (what concurrent.futures does)
            threading._register_atexit(lambda: (w := ref()) is not None and w.close(2.0))
        except (AttributeError, RuntimeError):  # pragma: no cover
            pass

    def _command(self, *cmd) -> None:
        with self._lock:
            self._commands.append(cmd)
        self._wake.set()

    def play(self) -> None:
        self._command("play")

    def pause(self) -> None:
        self._command("pause")

    def step(self, n: int = 1) -> None:
        """Pause (if playing), do `n` steps, then post a snapshot."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"step n={n!r} must be a whole number of at least 1")
        self._command("step", n)

    def reset(self) -> None:
        self._command("reset")

    def request_snapshot(self) -> None:
        self._command("snapshot")

    def inject_fault(self, kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault={kind!r} is unknown: allowed {', '.join(FAULT_KINDS)}")
        self._command("fault", kind)

    def configure(self, **changes) -> dict[str, str]:
        """Validate here (ValueError naming the setting), apply in the worker before its next step.
        Returns {setting: 'hot'|'cold'} for the settings that change."""
        with self._lock:
            new = self._requested.with_changes(**changes)
            kinds = changed_kinds(self._requested, new)
            if kinds:
                self._requested = new
                self._commands.append(("configure", {k: getattr(new, k) for k in kinds}))
        if kinds:
            self._wake.set()
        return kinds

    def save_state(self, path, timeout: float = CALL_TIMEOUT_S) -> None:
        """Write the trained state (every setting, the trained tensors, the optimizer's moments) to
        `path`, atomically, from the worker thread between two steps; returns when it is written.
        ValueError (one line) when it cannot be: no engine, no trainer, a disk error."""
        path = str(path)

        def save():
            t = self._trainer
            if t is None:
                raise ValueError(f"nothing to save: {self._fault or 'the training engine has no model yet'}")
            t.save_state(path)

        self._call("save the state", save, timeout)

    def load_state(self, path, timeout: float = CALL_TIMEOUT_S) -> TrainSettings:
        """Restore a saved state in the worker thread: its settings (this machine's device and display
        settings kept) and tensors; training pauses there and a snapshot follows. Returns the settings
        now in force. A damaged, foreign or unknown-version file raises ValueError (one line) and
        changes nothing."""
        path = str(path)

        def load():
            t = self._trainer
            if t is None:
                raise ValueError(f"cannot open a state: {self._fault or 'the training engine has no model yet'}")
            t.load_state(path)
            with self._lock:
                self._running_settings = self._requested = t.settings
            self._playing = False
            self._steps_left = 0
            self._fault = None
            t.clock.pause()
            self._snap.interval = 1.0 / t.settings.snapshot_hz
            self._post(eval_=True, samples=True)
            return t.settings

        return self._call("open the state", load, timeout)

    def _call(self, what: str, fn, timeout: float):
        if self._thread is not None and self._thread is threading.current_thread():
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001
                raise ValueError(_one_line(exc)) from None
        if not self.alive or self._closing:
            raise ValueError(f"cannot {what}: the training engine is not running")
        call = _Call(fn)
        self._command("call", call)
        deadline = time.monotonic() + timeout
        while not call.done.wait(0.05):
            if not self.alive:
                call.abandon(f"cannot {what}: the training engine stopped")
            elif time.monotonic() >= deadline:
                call.abandon(
                    f"cannot {what}: the training engine did not answer within {timeout:g} s (nothing was changed)"
                )
        if call.error is not None:
            raise ValueError(_one_line(call.error)) from None
        return call.result

    def latest(self) -> Snapshot | None:
        """The newest snapshot not yet taken, or None. Never blocks."""
        return self._mailbox.take()

    def wait_for(self, predicate=lambda s: True, timeout: float = 30.0) -> Snapshot:
        """Take snapshots until one satisfies `predicate` (tests, scripts; blocks the caller only)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            snap = self._mailbox.wait(max(0.0, left)) if left > 0 else None
            if snap is not None and predicate(snap):
                return snap
            if snap is None:
                raise TimeoutError(f"no matching snapshot within {timeout:g} s")

    def close(self, timeout: float = 10.0) -> None:
        """Stop and join the thread. Idempotent."""
        with self._lock:
            self._closing = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the worker thread --------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(True)
        self._snap = _Cadence(1.0 / self._running_settings.snapshot_hz, SNAPSHOT_SHARE)
        self._eval = _Cadence(EVAL_INTERVAL_S, EVAL_SHARE)
        self._sample = _Cadence(SAMPLE_INTERVAL_S, SAMPLE_SHARE)
        self._steps_left = 0
        self._next_step_at = 0.0
        self._build(self._running_settings)
        try:
            while True:
                self._wake.clear()
                with self._lock:
                    if self._closing:
                        return
                    commands = list(self._commands)
                    self._commands.clear()
                for cmd in commands:
                    self._handle(cmd)
                if self._trainer is None or not (self._playing or self._steps_left):
                    self._wake.wait()
                    continue
                now = time.perf_counter()
                speed = self._trainer.settings.speed
                if self._playing and speed > 0 and now < self._next_step_at:
                    self._wake.wait(self._next_step_at - now)
                    continue
                self._next_step_at = now + (1.0 / speed if speed > 0 else 0.0)
                if not self._train_one():
                    continue
                if self._steps_left:
                    self._steps_left -= 1
                    if not self._steps_left and not self._playing:
                        self._trainer.clock.pause()
                        self._post(eval_=True, samples=True)
                        continue
                if self._playing and self._instrument:
                    self._post_if_due()
        finally:
            if self._trainer is not None:
                self._trainer.clock.pause()
            self._trainer = None
            with self._lock:
                left = [c[1] for c in self._commands if c[0] == "call"]
            for call in left:
                call.abandon("the training engine stopped")

    def _build(self, settings: TrainSettings) -> None:
        try:
            self._trainer = Trainer(settings, base_model=self._base_model, clock_running=False)
        except Exception as exc:  # a bad device, a missing base model, ...
            self._trainer = None
            self._set_fault(f"could not start training: {type(exc).__name__}: {exc}")
            return
        self._use_threads(self._trainer)  # before the first snapshot, whose device label names the count
        self._fault = None
        self._post(eval_=True, samples=True)

    def _handle(self, cmd) -> None:
        kind = cmd[0]
        t = self._trainer
        if kind == "play":
            if t is None:
                return self._post_fault_again()
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
        elif kind == "pause":
            if self._playing:
                self._playing = False
                if t is not None:
                    t.clock.pause()
                    self._post(eval_=True, samples=True)
        elif kind == "step":
            if t is None:
                return self._post_fault_again()
            if self._playing:
                self._playing = False
            t.clock.resume()
            self._fault = None
            self._steps_left += cmd[1]
        elif kind == "reset":
            if t is None:
                return self._build(self._running_settings)
            t.reset()
            self._fault = None
            self._steps_left = 0
            self._post(eval_=True, samples=True)
        elif kind == "snapshot":
            if t is None:
                return self._post_fault_again()
            self._post()
        elif kind == "fault":
            if t is not None:
                t.inject_fault(cmd[1])
        elif kind == "configure":
            self._configure(cmd[1])
        elif kind == "call":
            cmd[1].run()

    def _configure(self, changes: dict) -> None:
        t = self._trainer
        if t is None:
            with self._lock:
                new = self._running_settings.with_changes(**changes)
                self._running_settings = new
            return self._build(new)
        try:
            kinds = t.apply(**changes)
        except Exception as exc:
            with self._lock:
                self._requested = self._running_settings
            names = ", ".join(f"{k}={v!r}" for k, v in changes.items())
            self._set_fault(f"could not apply {names}: {exc}; the previous settings stay in force")
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

    def _train_one(self) -> bool:
        t = self._trainer
        try:
            self._use_threads(t)
            t.train_step()
            return True
        except NonFiniteLoss as exc:
            msg = f"{exc}; paused; lower the learning rate or reset"
        except torch.OutOfMemoryError as exc:
            if t.device.type == "cuda":
                torch.cuda.empty_cache()
            msg = f"out of memory at step {t.step}: {str(exc).splitlines()[0] if str(exc) else ''}; paused; {OOM_HINT}"
        except Exception as exc:
            msg = f"{type(exc).__name__} at step {t.step}: {exc}; paused; reset or change settings to go on"
        self._set_fault(msg)
        return False

    def _set_fault(self, msg: str) -> None:
        self._playing = False
        self._steps_left = 0
        self._fault = msg
        t = self._trainer
        if t is None:
            s = self._running_settings
            snap = Snapshot(
                step=0,
                time=0.0,
                segment=0,
                loss=None,
                eval_loss=None,
                lr=float(s.lr),
                steps_per_second=0.0,
                device="",
                memory_bytes=0,
                settings=s.to_dict(),
                state="fault",
                fault=msg,
            )
            self._put(snap)
            return
        t.clock.pause()
        self._post(state="fault")

    def _post_fault_again(self) -> None:
        if self._fault is not None:
            self._set_fault(self._fault)

    def _post_if_due(self) -> None:
        now = time.perf_counter()
        if not self._snap.due(now):
            return
        self._post(eval_=self._eval.due(now), samples=self._sample.due(now))

    def _post(self, eval_: bool = False, samples: bool = False, state: str | None = None) -> None:
        started = time.perf_counter()
        try:
            self._post_inner(eval_, samples, state)
        finally:
            if self._playing:
                self.instrument_seconds += time.perf_counter() - started

    def _post_inner(self, eval_: bool, samples: bool, state: str | None) -> None:
        """Snapshot (after the held-out loss, if asked) and post it; if fresh samples are asked for,
        post first without them (generation takes a while: the views should not wait for it), then
        generate and post again with them."""
        t = self._trainer
        try:
            if eval_:
                t0 = time.perf_counter()
                t.eval_loss()
                self._eval.done(t0, time.perf_counter() - t0)
            t0 = time.perf_counter()
            snap = t.snapshot(t.settings.display_size)
            self._snap.done(t0, time.perf_counter() - t0)
        except Exception as exc:
            if state == "fault":
                self._put(t.bare_snapshot("fault", self._fault))
                return
            return self._set_fault(f"snapshot failed at step {t.step}: {type(exc).__name__}: {exc}; paused")
        snap.state = state or ("running" if self._playing else "paused")
        snap.fault = self._fault if snap.state == "fault" else None
        fresh = (
            samples
            and hasattr(t.scenario, "samples")
            and (
                self._samples is None
                or self._samples.get("step") != t.step
                or self._samples.get("segment") != t.segment
            )
        )
        self._attach_samples(snap)
        self._put(snap)
        if not fresh:
            return
        try:
            t0 = time.perf_counter()
            self._samples = {**t.samples(), "segment": t.segment}
            self._sample.done(t0, time.perf_counter() - t0)
        except Exception as exc:
            return self._set_fault(f"sampling failed at step {t.step}: {type(exc).__name__}: {exc}; paused")
        snap = dataclasses.replace(snap)
        self._attach_samples(snap)
        self._put(snap)

    def _attach_samples(self, snap: Snapshot) -> None:
        t = self._trainer
        if self._samples is not None and self._samples.get("segment") == t.segment:
            snap.samples = {k: v for k, v in self._samples.items() if k != "segment"}
        else:
            snap.samples = None

    def _put(self, snap: Snapshot) -> None:
        self.snapshots_posted += 1
        self._mailbox.put(snap)
