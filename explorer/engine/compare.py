"""Compare settings live: several runs on the same data and seed, stepped round-robin in one thread,
and the LoRA paper's analyses between them (the seed paper's RQ4 on the small model).

    specs = [parse_run_spec(t) for t in ("lora:r=4", "lora:r=16", "prefix:K=10", "full")]
    runner = CompareRunner(TrainSettings(scenario="lm"), specs)
    for _ in range(300):
        runner.step_round()              # one train_step of every run, in turn
    runner.evaluate()                    # held-out loss of every run at the same step
    snap = runner.snapshot(analysis=True)   # plain data (CompareSnapshot) for the compare view
    rows = snap.table_rows()             # the Table IX-style rows (TABLE_COLUMNS)

    worker = CompareWorker(TrainSettings(scenario="lm"), specs)   # the same in a background thread
    worker.start(); worker.play(); ...; snap = worker.latest(); worker.close()

Run specs, the plain data the view draws (`CompareSnapshot`, `RunSummary`, `CompareAnalysis`) and
reading a comparison back from disk live in `explorer/schema/compare.py`.

## Timing
Every run owns its Trainer; a run's `steps_per_second` counts only its own train_step time (its
SegmentClock runs only during its steps), so round-robin does not divide it by the number of runs.

## Analyses (LoRA paper, Hu et al. 2021, Section 7; docs/reference.md)
- `subspace_similarity_between(a, b, module)`: phi(i, j) between the two runs' A matrices (Fig. 3).
- `seed_similarity(a, b, module)`: the same for two seeds at one rank, with A against a random
  Gaussian matrix of the same shape as the control (what chance overlap looks like).
- `amplification_table(trainer)`: per LoRA module, ||ΔW||_F / ||U^T W0 V||_F and the projection of
  W0 onto ΔW's k = rank(ΔW) <= r directions, onto W0's own top-k and onto a random basis (Table 7);
  PiSSA runs marked (their W0 is the residual).
- `intrinsic_rank(lora, full, module)`: LoRA's ΔW spectrum against the full fine-tuning update's
  spectrum on the same module, with the method used for each stated.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import weakref

import numpy as np
import torch

from explorer.core import device as devices
from explorer.core.analysis import (
    DENSE_EXACT_MAX,
    amplification,
    amplification_reference,
    lowrank_description,
    randomized_svd,
    spectrum_from_factors,
    subspace_similarity,
)
from explorer.core.cpu_threads import check_threads
from explorer.core.history import ThinningBuffer
from explorer.engine.mailbox import Mailbox
from explorer.engine.thread_tuner import ThreadTuner
from explorer.schema.compare import (
    FINAL_WINDOW_MAX,
    FINAL_WINDOW_SHARE,
    CompareAnalysis,
    CompareSnapshot,
    RunSpec,
    RunSummary,
    parse_run_spec,
    price_on_llama,
    unique_labels,
)
from explorer.schema.settings import TrainSettings, validate

# ---- the analyses, on trainers ---------------------------------------------------------------------


def _sources(trainer) -> dict:
    return {s.name: s for s in trainer.scenario.matrix_sources(trainer.model, trainer.settings)}


def _lora_source(trainer, module: str):
    src = _sources(trainer).get(module)
    if src is None:
        raise ValueError(
            f"module {module!r} is not adapted in the {trainer.settings.method} run "
            f"(adapted: {', '.join(_sources(trainer)) or 'none'})"
        )
    if src.A is None:
        raise ValueError(f"module {module!r} has no LoRA factors in the {trainer.settings.method} run")
    return src


def lora_module_names(trainer) -> list[str]:
    return [name for name, s in _sources(trainer).items() if s.A is not None]


@torch.no_grad()
def subspace_similarity_between(trainer_a, trainer_b, module: str) -> np.ndarray:
    """phi(i, j) between the A matrices of one module in two LoRA runs (paper Fig. 3): (r_a, r_b),
    entry [i-1, j-1] = ||U_a[:, :i]^T U_b[:, :j]||_F^2 / min(i, j)."""
    a = _lora_source(trainer_a, module).A
    b = _lora_source(trainer_b, module).A
    return subspace_similarity(a, b.to(a.device)).cpu().numpy()


def _random_like(A: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(rows, A.shape[1], generator=g).to(A.device)


@torch.no_grad()
def random_control(trainer_a, module: str, rows: int, seed: int = 0) -> np.ndarray:
    """phi between run a's A and a random Gaussian (rows, in) matrix: the overlap chance gives
    (about j / in on the diagonal for a random j-dimensional subspace)."""
    a = _lora_source(trainer_a, module).A
    return subspace_similarity(a, _random_like(a, rows, seed)).cpu().numpy()


def seed_similarity(trainer_a, trainer_b, module: str, control_seed: int = 0) -> dict:
    """phi between two runs at the same rank that differ in seed, and the random-basis control."""
    ra, rb = (_lora_source(t, module).A.shape[0] for t in (trainer_a, trainer_b))
    if ra != rb:
        raise ValueError(f"seed similarity compares one rank: the runs have rank {ra} and {rb}")
    if trainer_a.settings.seed == trainer_b.settings.seed:
        raise ValueError(f"seed similarity compares two seeds: both runs have seed {trainer_a.settings.seed}")
    return {
        "rank": ra,
        "seeds": [trainer_a.settings.seed, trainer_b.settings.seed],
        "phi": subspace_similarity_between(trainer_a, trainer_b, module),
        "control": random_control(trainer_a, module, rb, control_seed),
    }


def amplification_table(trainer, seed: int = 0, cache: dict | None = None) -> list[dict]:
    """Per LoRA module: the amplification figures of docs/reference.md (paper Table 7) as floats:
    rank (of ΔW: the directions used), adapter_rank, delta_fro, w0_fro, proj_delta (||U^T W0 V||_F,
    U, V ΔW's singular vectors of its non-zero values), proj_w0_top (onto W0's own top-k),
    proj_random (onto a random k-dim basis), factor (||ΔW||_F / proj_delta), and w0: "pretrained",
    or "residual" for a PiSSA run, whose W0 is the residual W - s·B₀A₀ (its top-r directions moved
    into the adapter), so its factor is not Table 7's. `cache` (optional) keeps W0's constant
    figures (amplification_reference) between calls."""
    rows = []
    w0 = "residual" if getattr(trainer.settings, "init", "") == "pissa" else "pretrained"
    for name, src in _sources(trainer).items():
        if src.A is None:
            continue
        g = torch.Generator(device=src.base.device).manual_seed(int(seed))
        k = min(src.A.shape[0], *src.base.shape)
        reference = None
        if cache is not None:
            key = (name, k, src.base.data_ptr())
            if key not in cache:
                cache[key] = amplification_reference(src.base, k, g)
            reference = cache[key]
        row = amplification(src.base, src.A, src.B, src.scaling, generator=g, reference=reference)
        rows.append({"module": name, **row, "w0": w0})
    return rows


def _energy_top(values: np.ndarray, k: int) -> float:
    s2 = np.asarray(values, np.float64) ** 2
    total = s2.sum()
    return float(s2[:k].sum() / total) if total > 0 else 0.0


def _ranks(values: np.ndarray) -> tuple[float, float]:
    s = np.abs(np.asarray(values, np.float64))
    if s.sum() <= 0:
        return 0.0, 0.0
    p = s[s > 0] / s.sum()
    return float(math.exp(-(p * np.log(p)).sum())), float((s**2).sum() / (s**2).max())


@torch.no_grad()
def full_update(full_trainer, module: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ΔW = W - W0, W0) of one matrix in a full fine-tuning run."""
    src = _sources(full_trainer).get(module)
    if src is None or src.weight is None:
        raise ValueError(
            f"module {module!r} is not a fully fine-tuned matrix in the {full_trainer.settings.method} run"
        )
    return src.weight.detach().float() - src.base.detach().float(), src.base


@torch.no_grad()
def intrinsic_rank(lora_trainer, full_trainer, module: str, _full_cache: dict | None = None) -> dict:
    """LoRA's ΔW spectrum against the full fine-tuning update's on the same module ("intrinsic rank").

    Returns lora_values (r values, exact from the factors), full_values (all of them up to
    analysis.DENSE_EXACT_MAX, else the top ones by randomized SVD) and `*_method` strings saying how
    each was computed; rank r; effective and stable ranks of both; full_energy_top_r (the share of
    the full update's energy in its top r directions, what a rank-r LoRA could at best capture);
    overlap_left / overlap_right: ||U_lora^T U_full_r||_F^2 / r, how much of LoRA's top-r
    output (input) subspace lies in the full update's top-r one (1: the same directions)."""
    src = _lora_source(lora_trainer, module)
    spec = spectrum_from_factors(src.A, src.B, src.scaling, vectors=True)
    k = spec.U.shape[1]
    cached = None if _full_cache is None else _full_cache.get(module)
    if cached is None:
        delta, _ = full_update(full_trainer, module)
        n = min(delta.shape)
        if n <= DENSE_EXACT_MAX:
            U, s, Vh = torch.linalg.svd(delta, full_matrices=False)
            V = Vh.T
            method = f"exact svd, all {n} values"
        else:
            q = max(64, k)
            U, s, V = randomized_svd(delta, q)
            method = lowrank_description(q, n)
        cached = (U, s, V, method)
        if _full_cache is not None:
            _full_cache[module] = cached
    U, s, V, method = cached
    kk = min(k, U.shape[1])
    overlap_l = float((spec.U.T @ U[:, :kk]).square().sum() / max(kk, 1))
    overlap_r = float((spec.V.T @ V[:, :kk]).square().sum() / max(kk, 1))
    lora_values = spec.values.cpu().numpy().astype(np.float32)
    full_values = s.cpu().numpy().astype(np.float32)
    le, ls = _ranks(lora_values)
    fe, fs = _ranks(full_values)
    return {
        "module": module,
        "rank": int(src.A.shape[0]),
        "lora_values": lora_values,
        "lora_method": "exact: QR of the factors + SVD of the r x r core",
        "full_values": full_values,
        "full_method": method,
        "lora_effective_rank": le,
        "lora_stable_rank": ls,
        "full_effective_rank": fe,
        "full_stable_rank": fs,
        "full_energy_top_r": _energy_top(full_values, int(src.A.shape[0])),
        "lora_fro": float(np.sqrt((lora_values.astype(np.float64) ** 2).sum())),
        "full_fro": float(np.sqrt((full_values.astype(np.float64) ** 2).sum())),
        "overlap_left": overlap_l,
        "overlap_right": overlap_r,
    }


# ---- the runner ------------------------------------------------------------------------------------


class _Run:
    """One run of a comparison (touched only by the thread that owns the runner)."""

    def __init__(self, index: int, spec: RunSpec, settings: TrainSettings, trainer):
        self.index, self.spec, self.settings, self.trainer = index, spec, settings, trainer
        self.label = spec.label
        self.fault: str | None = None
        self._fresh_segment()

    def _fresh_segment(self) -> None:
        t = self.trainer
        self.loss_hist = ThinningBuffer(2048)
        self.eval_hist = ThinningBuffer(512)
        self.recent = collections.deque(maxlen=FINAL_WINDOW_MAX)
        self.fault = None
        self.budget = t.scenario.budget(t.settings, t.model)
        self.llama = price_on_llama(t.settings)
        self.matrices = list(_sources(t))
        self.last_eval_step = -1

    def reset(self) -> None:
        self.trainer.reset()
        self._fresh_segment()

    def summary(self) -> RunSummary:
        t = self.trainer
        steps, losses = self.loss_hist.arrays()
        eval_steps, eval_losses = self.eval_hist.arrays()
        elapsed = t.clock.elapsed()
        final = None
        if self.recent and t.step > 0:
            n = max(1, min(len(self.recent), int(round(FINAL_WINDOW_SHARE * t.step))))
            final = float(np.mean(list(self.recent)[-n:]))
        b = self.budget
        return RunSummary(
            label=self.label,
            spec=self.spec.text or self.spec.method,
            method=t.settings.method,
            colour=self.index,
            settings=t.settings.to_dict(),
            step=t.step,
            loss=t.loss if t.loss is not None else (float(losses[-1]) if losses.size else None),
            eval_loss=t.last_eval_loss,
            steps=steps,
            losses=losses,
            eval_steps=eval_steps,
            eval_losses=eval_losses,
            trainable_params=int(b["trainable_params"]),
            share=float(b["share"]),
            storage_bytes=int(b["storage_bytes_fp16"]),
            steps_per_second=t.step / elapsed if elapsed > 0 and t.step else 0.0,
            llama7b_trainable_params=None if self.llama is None else int(self.llama["trainable_params"]),
            llama7b_storage_bytes=None if self.llama is None else int(self.llama["storage_bytes_fp16"]),
            final_loss=final,
            final_eval_loss=t.last_eval_loss,
            measured_trainable_params=int(b.get("measured_trainable_params", b["trainable_params"])),
            matrices=list(self.matrices),
            fault=self.fault,
        )


class CompareRunner:
    """Several Trainers on the same data and seed, stepped round-robin in the calling thread.

    `base_settings` holds what every run shares (scenario, data, device) and the defaults each spec
    changes. Every run is built with its clock paused and counts only its own step time."""

    def __init__(self, base_settings: TrainSettings, specs: list[RunSpec], *, base_model=None):
        from explorer.engine.trainer import Trainer

        if not specs:
            raise ValueError("no runs to compare: give at least one run spec (e.g. lora:r=8)")
        validate(base_settings)
        specs = unique_labels([parse_run_spec(s) if isinstance(s, str) else s for s in specs])
        settings = [s.settings(base_settings) for s in specs]  # every spec is checked before any work
        self.base_settings = base_settings
        self.specs = specs
        self.runs: list[_Run] = []
        for i, (spec, st) in enumerate(zip(specs, settings)):
            try:
                trainer = Trainer(st, base_model=base_model, clock_running=False)
            except ValueError as exc:
                raise ValueError(f"run {spec.label!r} ({spec.text or spec.method}): {exc}") from None
            self.runs.append(_Run(i, spec, st, trainer))
        self.segment = 0
        self.rounds = 0
        self.threads: ThreadTuner | None = None  # set by use_threads; fed each round's step time
        self._amp_cache: dict = {}
        self._analysis: CompareAnalysis | None = None

    def matmul_flops(self) -> float:
        """The largest run's typical matrix product per step: what decides how many CPU threads pay
        (the runs take turns on one thread, so the biggest one's products set the need)."""
        return max(r.trainer.matmul_flops() for r in self.runs)

    @property
    def device(self):
        return self.runs[0].trainer.device

    def use_threads(self, requested: int | None = 0, *, beside_gui: bool = False) -> ThreadTuner:
        """Torch's CPU threads for the rounds, from the thread that steps them (see Trainer.use_threads);
        the tuner times whole rounds, since the runs take turns on that one thread."""
        start, candidates = devices.thread_plan(requested, self.matmul_flops(), self.device, beside_gui=beside_gui)
        self.threads = ThreadTuner(candidates, start, torch.set_num_threads)
        return self.threads

    # --- stepping -------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]

    def run(self, label: str) -> _Run:
        for r in self.runs:
            if r.label == label:
                return r
        raise KeyError(f"no run {label!r}: runs are {', '.join(self.labels)}")

    def trainer(self, label: str):
        return self.run(label).trainer

    def active(self) -> list[_Run]:
        return [r for r in self.runs if r.fault is None]

    def _initial(self, r: _Run) -> None:
        if r.trainer.step == 0 and not len(r.loss_hist):
            r.loss_hist.append(0, r.trainer.initial_loss())

    def step_round(self) -> list[str]:
        """One train_step of every run that has not faulted, in run order. Returns the faults of this
        round (a run whose loss went non-finite, or whose step raised, stops; the others go on)."""
        from explorer.engine.trainer import NonFiniteLoss

        faults = []
        started = time.perf_counter()
        for r in self.runs:
            if r.fault is not None:
                continue
            t = r.trainer
            s = t.step
            t.clock.resume()
            try:
                value = t.train_step()
            except NonFiniteLoss as exc:
                r.fault = f"{exc}; this run stopped"
            except torch.OutOfMemoryError as exc:
                if t.device.type == "cuda":
                    torch.cuda.empty_cache()
                r.fault = f"out of memory at step {s}: {str(exc).splitlines()[0] if str(exc) else ''}; this run stopped"
            except Exception as exc:
                r.fault = f"{type(exc).__name__} at step {s}: {exc}; this run stopped"
            else:
                if not (s == 0 and len(r.loss_hist)):
                    r.loss_hist.append(s, value)
                r.recent.append(value)
            finally:
                t.clock.pause()
            if r.fault is not None:
                faults.append(f"{r.label}: {r.fault}")
        self.rounds += 1
        if self.threads is not None:
            self.threads.step_done(time.perf_counter() - started)
        return faults

    def evaluate(self) -> None:
        """Held-out loss of every run at its current weights (all at the same step unless one faulted)."""
        for r in self.runs:
            t = r.trainer
            if r.last_eval_step == t.step:
                continue
            value = t.eval_loss()
            r.eval_hist.append(t.step, value)
            r.last_eval_step = t.step

    def reset(self) -> None:
        """Every run back to its initial adapters, step 0 (same settings, same data)."""
        for r in self.runs:
            r.reset()
        self.segment += 1
        self.rounds = 0
        self._analysis = None
        self._amp_cache.clear()

    @property
    def step(self) -> int:
        return self.rounds

    # --- analyses ---------------------------------------------------------------------------------
    def lora_runs(self) -> list[_Run]:
        return [r for r in self.runs if r.trainer.settings.uses_lora()]

    def full_runs(self) -> list[_Run]:
        return [r for r in self.runs if r.trainer.settings.method == "full"]

    def analyses(self, control_seed: int = 0) -> CompareAnalysis:
        """phi between every pair of LoRA runs on each module they share (with the random-basis control),
        amplification per module of every LoRA run, and LoRA against full fine-tuning per module."""
        t0 = time.perf_counter()
        lora = self.lora_runs()
        names = {r.label: lora_module_names(r.trainer) for r in lora}
        order = names[lora[0].label] if lora else []
        shared = [m for m in order if all(m in names[r.label] for r in lora)]
        pairs, similarity, control = [], {}, {}
        for i, a in enumerate(lora):
            for b in lora[i + 1 :]:
                common = [m for m in names[a.label] if m in names[b.label]]
                if not common:
                    continue
                pairs.append((a.label, b.label))
                similarity[(a.label, b.label)] = {
                    m: subspace_similarity_between(a.trainer, b.trainer, m) for m in common
                }
                # b's own rank of each module (a rank_pattern can give modules different ranks)
                control[(a.label, b.label)] = {
                    m: random_control(a.trainer, m, _lora_source(b.trainer, m).A.shape[0], control_seed) for m in common
                }
        amp = {r.label: amplification_table(r.trainer, control_seed, self._amp_cache) for r in lora}
        intrinsic = {}
        for f in self.full_runs():
            full_cache: dict = {}
            full_modules = set(_sources(f.trainer))
            for r in lora:
                per = {}
                for m in names[r.label]:
                    if m in full_modules:
                        per[m] = intrinsic_rank(r.trainer, f.trainer, m, full_cache)
                if per:
                    intrinsic[(r.label, f.label)] = per
        self._analysis = CompareAnalysis(
            step=self.rounds,
            modules=shared,
            pairs=pairs,
            similarity=similarity,
            control=control,
            amplification=amp,
            intrinsic=intrinsic,
            seconds=time.perf_counter() - t0,
        )
        return self._analysis

    # --- snapshots ----------------------------------------------------------------------------------
    def snapshot(self, analysis: bool = False, state: str = "paused", fault: str | None = None) -> CompareSnapshot:
        """Plain data for the view. `analysis=True` recomputes the analyses; else the last ones ride along."""
        for r in self.runs:
            if r.fault is None:
                self._initial(r)
        if analysis:
            self.analyses()
        first = self.runs[0].trainer
        return CompareSnapshot(
            step=self.rounds,
            segment=self.segment,
            time=sum(r.trainer.clock.elapsed() for r in self.runs),
            runs=[r.summary() for r in self.runs],
            analysis=self._analysis,
            scenario=first.settings.scenario,
            device=first.device_label(),
            state=state,
            fault=fault,
        )


# ---- the background worker -------------------------------------------------------------------------

SNAPSHOT_SHARE = 0.025
EVAL_INTERVAL_S = 1.0
EVAL_SHARE = 0.02
ANALYSIS_INTERVAL_S = 2.0
ANALYSIS_SHARE = 0.05


class _Cadence:
    """At least `interval` apart and at most `share` of the wall time (by the measured cost)."""

    def __init__(self, interval: float, share: float):
        self.interval, self.share, self.cost, self.next = interval, share, 0.0, 0.0

    def due(self, now: float) -> bool:
        return now >= self.next

    def done(self, started: float, cost: float) -> None:
        self.cost = cost if self.cost == 0.0 else 0.7 * self.cost + 0.3 * cost
        self.next = max(self.next, started + cost + max(self.interval, self.cost / self.share))


class CompareWorker:
    """A CompareRunner in a background thread, with TrainingWorker's one-slot mailbox pattern.

    The caller (the GUI thread) calls start / play / pause / step / reset / set_runs / close, which
    only queue a command and wake the thread, and `latest()` for the newest CompareSnapshot (or None).
    Snapshots are posted at most `snapshot_hz` per second and SNAPSHOT_SHARE of the time, held-out
    losses every EVAL_INTERVAL_S, analyses every ANALYSIS_INTERVAL_S (and on pause, step, reset).
    A run that diverges stops with its message in its RunSummary.fault; the others go on. If the
    runs cannot be built at all, a snapshot with state "fault" and no runs says why."""

    thread_name = "peft-explorer-compare"

    def __init__(self, base_settings: TrainSettings, specs: list, *, base_model=None, threads: int | None = None):
        validate(base_settings)
        specs = unique_labels([parse_run_spec(s) if isinstance(s, str) else s for s in specs])
        for s in specs:  # a bad spec is the caller's error, raised here, not in the thread
            s.settings(base_settings)
        check_threads(threads)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._mailbox: Mailbox[CompareSnapshot] = Mailbox()
        self._commands: collections.deque = collections.deque()
        self._base, self._specs = base_settings, specs
        self._base_model = base_model
        self._threads = threads
        self._thread: threading.Thread | None = None
        self._closing = False
        self._playing = False
        self._runner: CompareRunner | None = None  # touched only in the worker thread
        self._fault: str | None = None
        self.snapshots_posted = 0

    # --- the caller's side ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._playing

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def labels(self) -> list[str]:
        with self._lock:
            return [s.label for s in self._specs]

    def start(self) -> None:
        """Start the thread (paused). It builds the runs and posts a first snapshot at step 0."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=False)
        self._thread.start()
        ref = weakref.ref(self)
        try:  # close before the interpreter joins non-daemon threads
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
        """Pause (if playing), do `n` rounds (one step of every run each), then post a snapshot."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"step n={n!r} must be a whole number of at least 1")
        self._command("step", n)

    def reset(self) -> None:
        self._command("reset")

    def request_snapshot(self, analysis: bool = False) -> None:
        self._command("snapshot", analysis)

    def set_runs(self, base_settings: TrainSettings | None = None, specs: list | None = None) -> None:
        """Replace the comparison (validated here; rebuilt in the thread, paused, at step 0)."""
        base = base_settings if base_settings is not None else self._base
        validate(base)
        new = unique_labels(
            [parse_run_spec(s) if isinstance(s, str) else s for s in (specs if specs is not None else self._specs)]
        )
        for s in new:
            s.settings(base)
        with self._lock:
            self._base, self._specs = base, new
        self._command("rebuild")

    def latest(self) -> CompareSnapshot | None:
        """The newest snapshot not yet taken, or None. Never blocks."""
        return self._mailbox.take()

    def wait_for(self, predicate=lambda s: True, timeout: float = 30.0) -> CompareSnapshot:
        """Take snapshots until one satisfies `predicate` (tests, scripts; blocks the caller only)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            snap = self._mailbox.wait(left) if left > 0 else None
            if snap is None:
                raise TimeoutError(f"no matching compare snapshot within {timeout:g} s")
            if predicate(snap):
                return snap

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

    # --- the worker thread --------------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(True)
        self._snap = _Cadence(1.0 / self._base.snapshot_hz, SNAPSHOT_SHARE)
        self._eval = _Cadence(EVAL_INTERVAL_S, EVAL_SHARE)
        self._analysis = _Cadence(ANALYSIS_INTERVAL_S, ANALYSIS_SHARE)
        self._steps_left = 0
        self._build()
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
                if self._runner is None or not (self._playing or self._steps_left):
                    self._wake.wait()
                    continue
                faults = self._runner.step_round()
                if faults and not self._runner.active():
                    self._playing, self._steps_left = False, 0
                    self._post(eval_=True, analysis=True, state="fault", fault="every run stopped: " + faults[-1])
                    continue
                if self._steps_left:
                    self._steps_left -= 1
                    if not self._steps_left and not self._playing:
                        self._post(eval_=True, analysis=True)
                        continue
                if self._playing:
                    now = time.perf_counter()
                    if self._snap.due(now):
                        self._post(eval_=self._eval.due(now), analysis=self._analysis.due(now))
        finally:
            self._runner = None

    def _build(self) -> None:
        with self._lock:
            base, specs = self._base, list(self._specs)
        self._playing, self._steps_left = False, 0
        old_segment = -1 if self._runner is None else self._runner.segment
        self._runner = None
        try:
            runner = CompareRunner(base, specs, base_model=self._base_model)
        except Exception as exc:  # a bad device, a missing base model, a spec that does not fit the scenario
            self._fault = f"could not start the comparison: {type(exc).__name__}: {exc}"
            self._put(
                CompareSnapshot(
                    step=0,
                    segment=old_segment + 1,
                    time=0.0,
                    runs=[],
                    scenario=base.scenario,
                    state="fault",
                    fault=self._fault,
                )
            )
            return
        runner.segment = old_segment + 1
        # In this thread (OpenMP keeps a count per thread), for these runs: beside the window.
        runner.use_threads(self._threads, beside_gui=True)
        self._runner = runner
        self._fault = None
        self._snap.interval = 1.0 / base.snapshot_hz
        self._post(eval_=True, analysis=True)

    def _handle(self, cmd) -> None:
        kind = cmd[0]
        if kind == "rebuild":
            return self._build()
        if self._runner is None:
            if kind in ("reset", "play", "step"):
                return self._build() if kind == "reset" else self._repost_fault()
            return self._repost_fault()
        if kind == "play":
            if not self._runner.active():
                return self._post(state="fault", fault=self._fault or "every run has stopped: reset to go on")
            self._playing, self._steps_left = True, 0
            self._post()
        elif kind == "pause":
            if self._playing:
                self._playing = False
                self._post(eval_=True, analysis=True)
        elif kind == "step":
            self._playing = False
            self._steps_left += cmd[1]
        elif kind == "reset":
            self._runner.reset()
            self._playing, self._steps_left = False, 0
            self._post(eval_=True, analysis=True)
        elif kind == "snapshot":
            self._post(analysis=bool(cmd[1]))

    def _repost_fault(self) -> None:
        if self._fault is not None:
            with self._lock:
                scenario = self._base.scenario
            self._put(
                CompareSnapshot(
                    step=0, segment=0, time=0.0, runs=[], scenario=scenario, state="fault", fault=self._fault
                )
            )

    def _post(
        self, eval_: bool = False, analysis: bool = False, state: str | None = None, fault: str | None = None
    ) -> None:
        r = self._runner
        try:
            if eval_:
                t0 = time.perf_counter()
                r.evaluate()
                self._eval.done(t0, time.perf_counter() - t0)
            for run in r.runs:  # the step-0 loss (a forward pass per run, once per segment) is not
                if run.fault is None:  # a snapshot's cost: counted in, it put the next one 40x further off
                    r._initial(run)
            t0 = time.perf_counter()
            snap = r.snapshot(analysis=False)
            self._snap.done(t0, time.perf_counter() - t0)
            if analysis:
                t0 = time.perf_counter()
                snap.analysis = r.analyses()
                self._analysis.done(t0, time.perf_counter() - t0)
        except Exception as exc:
            self._playing, self._steps_left = False, 0
            self._fault = f"snapshot failed at step {r.step}: {type(exc).__name__}: {exc}; paused"
            self._put(
                CompareSnapshot(step=r.step, segment=r.segment, time=0.0, runs=[], state="fault", fault=self._fault)
            )
            return
        snap.state = state or ("running" if self._playing else "paused")
        snap.fault = fault if snap.state == "fault" else None
        self._put(snap)

    def _put(self, snap: CompareSnapshot) -> None:
        self.snapshots_posted += 1
        self._mailbox.put(snap)
