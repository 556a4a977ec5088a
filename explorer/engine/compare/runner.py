"""Several Trainers on the same data and seed, stepped round-robin in the calling thread (`CompareRunner`),
and the plain data it hands out (`RunSummary` per run, `CompareSnapshot`, explorer/schema/compare.py).

Every run owns its Trainer; a run's `steps_per_second` counts only its own train_step time (its
SegmentClock runs only during its steps), so round-robin does not divide it by the number of runs.
"""

from __future__ import annotations

import collections
import time

import numpy as np
import torch

from explorer.core import device as devices
from explorer.core.history import ThinningBuffer
from explorer.engine.compare.analyses import (
    amplification_table,
    intrinsic_rank,
    lora_module_names,
    lora_source,
    random_control,
    sources_of,
    subspace_similarity_between,
)
from explorer.engine.thread_tuner import ThreadTuner
from explorer.schema.compare import (
    FINAL_WINDOW_MAX,
    FINAL_WINDOW_SHARE,
    CompareAnalysis,
    CompareSnapshot,
    RunSpec,
    RunSummary,
    checked_specs,
    price_on_llama,
)
from explorer.schema.faults import DIVERGED, ERROR, MEMORY, Fault
from explorer.schema.settings import TrainSettings


class _Run:
    """One run of a comparison (touched only by the thread that owns the runner)."""

    def __init__(self, index: int, spec: RunSpec, settings: TrainSettings, trainer):
        self.index, self.spec, self.settings, self.trainer = index, spec, settings, trainer
        self.label = spec.label
        self.fault: Fault | None = None
        self._fresh_segment()

    def _fresh_segment(self) -> None:
        t = self.trainer
        self.loss_hist = ThinningBuffer(2048)
        self.eval_hist = ThinningBuffer(512)
        self.recent = collections.deque(maxlen=FINAL_WINDOW_MAX)
        self.fault = None
        self.budget = t.scenario.budget(t.settings, t.model)
        self.llama = price_on_llama(t.settings)
        self.matrices = list(sources_of(t))
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

        specs = checked_specs(base_settings, specs)  # every spec is checked before any work
        settings = [s.settings(base_settings) for s in specs]
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

    def initial_loss(self, r: _Run) -> None:
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
                r.fault = Fault(DIVERGED, f"{exc}; this run stopped")
            except torch.OutOfMemoryError as exc:
                if t.device.type == "cuda":
                    torch.cuda.empty_cache()
                first = str(exc).splitlines()[0] if str(exc) else ""
                r.fault = Fault(MEMORY, f"out of memory at step {s}: {first}; this run stopped")
            except Exception as exc:
                r.fault = Fault(ERROR, f"{type(exc).__name__} at step {s}: {exc}; this run stopped")
            else:
                if not (s == 0 and len(r.loss_hist)):
                    r.loss_hist.append(s, value)
                r.recent.append(value)
            finally:
                t.clock.pause()
            if r.fault is not None:
                faults.append(f"{r.label}: {r.fault.message}")
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
                    m: random_control(a.trainer, m, lora_source(b.trainer, m).A.shape[0], control_seed) for m in common
                }
        amp = {r.label: amplification_table(r.trainer, control_seed, self._amp_cache) for r in lora}
        intrinsic = {}
        for f in self.full_runs():
            full_cache: dict = {}
            full_modules = set(sources_of(f.trainer))
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
    def snapshot(self, analysis: bool = False, state: str = "paused", fault: Fault | None = None) -> CompareSnapshot:
        """Plain data for the view. `analysis=True` recomputes the analyses; else the last ones ride along."""
        for r in self.runs:
            if r.fault is None:
                self.initial_loss(r)
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
