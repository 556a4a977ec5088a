"""The synchronous training API: one scenario, one set of adapters, one optimizer, step by step.

Why one file of ~750 lines: the Trainer is one state machine (segments, faults, snapshots, saved
state) whose parts share its invariants; the scenario-specific work lives in engine/scenarios/, the
saved-state checks in engine/state_checks.py and the thread choice in engine/thread_tuner.py.

    t = Trainer(TrainSettings(scenario="matrix", rank=4))
    t.train_step()            # -> the loss of this step's batch at the current weights, then one update
    t.apply(lr=1e-3)          # {"lr": "hot"}: applies at once
    t.apply(rank=8)           # {"rank": "cold"}: new adapters from the frozen base, a new segment
    snap = t.snapshot(128)    # plain data for the views (explorer.schema.snapshot.Snapshot)

Conventions
- `step` counts updates applied in the current segment. The loss history point (s, L) is the loss of
  batch s at the weights after s updates; `Snapshot.loss` is the latest such loss (at step 0 it is
  measured without an update, so a zero-init adapter shows the base model's loss there).
- Gate, spectrum and held-out histories are points (step, value at the weights after `step` updates).
- A segment starts at every cold change and every reset: fresh adapters from the frozen base (each
  segment works on its own deep copy of the pristine base), a fresh optimizer (AdamW, weight decay 0
  for adapters, 0.01 for full fine-tuning), step 0, empty histories. A cold change that fails leaves
  the running segment untouched.
- Faults: a non-finite loss at step s restores the weights of step s - 1 (the last ones whose loss
  was finite; they are kept aside before every update) and raises `NonFiniteLoss`; an exception
  inside a step leaves the weights of that step (restoring them if the update was half done) and
  propagates. The optimizer restarts after a restore. `snapshot` first checks that the weights are
  finite: an update that left a NaN or infinity (a diverging run) is the same fault
  (`NonFiniteWeights`, a NonFiniteLoss), with the same restore, before any analysis sees it.
"""

from __future__ import annotations

import collections
import json
import math
import time

import numpy as np
import torch

from explorer.core import device as devices
from explorer.core.analysis import (
    dora_effective_update,
    pool_matrix,
    pooled_delta,
    spectrum_figures,
    spectrum_from_factors,
    to_host,
    update_spectrum,
)
from explorer.core.history import (
    EVAL_HISTORY,
    GATE_HISTORY,
    LOSS_HISTORY,
    SPECTRUM_HISTORY,
    SPECTRUM_HISTORY_VALUES,
    SpectrumHistory,
    ThinningBuffer,
)
from explorer.core.lora import set_dropout_generator
from explorer.engine.scenarios import build_scenario, derive_seed
from explorer.engine.slowdown import SlowWatch
from explorer.engine.state_checks import finite_number, optimizer_entry_problem, resumed_histories
from explorer.engine.thread_tuner import ThreadTuner
from explorer.schema.attention_choice import attention_cells
from explorer.schema.faults import FAULT_KINDS, Fault
from explorer.schema.heatmap_choice import heatmap_names
from explorer.schema.settings import COLD, SCENARIO_SETTINGS, TrainSettings, changed_kinds, validate
from explorer.schema.snapshot import History, MatrixSnapshot, PrefixSnapshot, Snapshot

RATE_WINDOW_S = 2.0
# Full fine-tuning has no factors (and DoRA's effective update W_eff - W0 is full rank): their spectra
# come from an SVD of the dense update, exact up to this size (28 ms at 512 on one CPU core, 275 ms at
# 1024), above it the leading LIVE_LOWRANK_Q values by a randomized SVD (about 60-95 ms at 1024 on one
# core), so live snapshots stay cheap. Such a spectrum is partial: the snapshot says so, and its
# Frobenius norm (and so the stable rank) is computed exactly from the dense update.
LIVE_EXACT_MAX = 512
LIVE_LOWRANK_Q = 64
# The settings that live outside the trainer's numbers (device placement and the live display):
# loading a state file keeps the running ones.
PLACEMENT = ("device", "dtype", "speed", "snapshot_hz", "display_size")


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, lr: float, value: float, restored: int | None):
        self.step, self.lr, self.value, self.restored = step, lr, value, restored
        back = (
            f"restored the weights of step {restored}"
            if restored is not None
            else "the starting weights already give it"
        )
        super().__init__(f"non-finite loss at step {step} (lr={lr:g}): loss={value}; {back}")


class NonFiniteWeights(NonFiniteLoss):
    """An update left a trained weight NaN or infinite (found before any analysis touches it)."""

    def __init__(self, step: int, lr: float, restored: int | None, good: bool):
        self.step, self.lr, self.value, self.restored, self.good = step, lr, float("nan"), restored, good
        back = (
            f"restored the weights of step {restored}"
            if restored is not None
            else "the last good weights were not kept"
        )
        RuntimeError.__init__(self, f"non-finite weights at step {step} (lr={lr:g}); {back}")


class InjectedFault(RuntimeError):
    """Raised by `inject_fault('exception')` (tests and demos)."""


class SegmentClock:
    """Seconds of running time in a segment; paused time does not count. Also the CPU seconds the
    thread that drives it spent while running (`cpu_total`, updated at each pause), which a busy
    machine does not inflate. Drive it from one thread (the worker's, or a headless run's)."""

    def __init__(self, running: bool = True):
        self._total = 0.0
        self.cpu_total = 0.0
        self._since = self._cpu_since = None
        if running:
            self.resume()

    @property
    def running(self) -> bool:
        return self._since is not None

    def pause(self) -> None:
        if self._since is not None:
            self._total += time.perf_counter() - self._since
            self.cpu_total += time.thread_time() - self._cpu_since
            self._since = self._cpu_since = None

    def resume(self) -> None:
        if self._since is None:
            self._since, self._cpu_since = time.perf_counter(), time.thread_time()

    def elapsed(self) -> float:
        return self._total + (time.perf_counter() - self._since if self._since is not None else 0.0)


def dense_spectrum_length(shape) -> int:
    """How many singular values a snapshot of a dense (full fine-tuning) update holds."""
    n = min(shape)
    return n if n <= LIVE_EXACT_MAX else LIVE_LOWRANK_Q


def _json_clean(d):
    """What a dict becomes after a JSON round trip (tuples -> lists), so live and replayed
    snapshots hold equal values."""
    return None if d is None else json.loads(json.dumps(d))


def _live_dense_spectrum(d: torch.Tensor) -> tuple[torch.Tensor, str, bool]:
    """(values, method, partial) of a dense update for a live snapshot (see LIVE_EXACT_MAX)."""
    return update_spectrum(d, LIVE_EXACT_MAX, LIVE_LOWRANK_Q)


class _Segment:
    """Everything that a cold change or a reset replaces."""

    def __init__(self, trainer: Trainer, settings: TrainSettings, scenario, running_clock: bool):
        self.settings = settings
        self.scenario = scenario
        self.model = scenario.build(settings)
        self.named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]
        if not self.params:
            raise ValueError(f"method={settings.method!r} leaves nothing to train")
        self.optimizer = trainer._make_optimizer(self.params, settings)
        # LoRA dropout draws from a generator of this segment's own, reseeded from (seed, step) before
        # each step's forward: the masks of step k depend on the seed and k alone (not on other runs in
        # the process, nor on how often the run was reset, rewound or resumed from a file).
        self.dropout_generator = None
        if set_dropout_generator(self.model, None):
            device = next(iter(self.params)).device
            self.dropout_generator = torch.Generator(device=device) if device.type == "cuda" else torch.Generator()
            set_dropout_generator(self.model, self.dropout_generator)
        self.backup = [p.detach().clone() for p in self.params]
        self.backup_step: int | None = None
        self.step = 0
        self.loss: float | None = None
        self.eval_loss: float | None = None
        self.initial_loss: float | None = None
        self.clock = SegmentClock(running_clock)
        self.rate = collections.deque()
        self.slow = SlowWatch()  # why the rate fell, when it is known (engine/slowdown.py)
        self.settings_dict, self.settings_dict_of = settings.to_dict(), settings
        self.budget = _json_clean(scenario.budget(settings, self.model))
        self.sources = scenario.matrix_sources(self.model, settings)
        self.prefixes = scenario.prefix_layers(self.model)
        lengths = {}
        for src in self.sources:
            lengths[src.name] = src.A.shape[0] if src.A is not None else dense_spectrum_length(src.shape)
        self.loss_hist = ThinningBuffer(LOSS_HISTORY)
        self.eval_hist = ThinningBuffer(EVAL_HISTORY)
        heads = next(iter(self.prefixes.values())).gate.shape[0] if self.prefixes else 0
        n_heads = getattr(getattr(scenario, "config", None), "num_attention_heads", heads)
        self.gate_hist = ThinningBuffer(GATE_HISTORY, (len(self.prefixes), n_heads)) if self.prefixes else None
        self.spectrum_hist = SpectrumHistory(lengths, SPECTRUM_HISTORY, SPECTRUM_HISTORY_VALUES)
        self.last_eval_step = -1
        self.last_view_step = -1  # step of the last gate/spectrum history point
        self.host_cache: dict = {}  # constant pooled arrays (W0, target) per display size
        self.source_names = [src.name for src in self.sources]
        # (heatmap choice, display size) whose W0 / target the last live snapshot sent; None: send them
        self.held_sent = None
        # the probe's attention maps on the host, {layer: (heads, T, K + T)}, and the step they were
        # measured at: snapshots between two probes carry these (see Trainer.probe_attention)
        self.attention: dict[int, np.ndarray] = {}
        self.attention_step: int | None = None
        self.attention_cells: tuple = ((), ())  # (layers, heads) those maps are of


class Trainer:
    def __init__(self, settings: TrainSettings | None = None, *, base_model=None, clock_running: bool = True):
        settings = settings if settings is not None else TrainSettings()
        validate(settings)
        self._base_override = base_model
        self.device = devices.resolve_device(settings.device)
        self.autocast = devices.resolve_dtype(settings.dtype, self.device)
        scenario = build_scenario(settings, self.device, self.autocast, base_model)
        self._seg = _Segment(self, settings, scenario, clock_running)
        self.segment = 0
        self._fault: str | None = None
        self.threads: ThreadTuner | None = None  # set by use_threads; fed each step's duration

    # --- read-only views ------------------------------------------------------------------------
    @property
    def settings(self) -> TrainSettings:
        return self._seg.settings

    @property
    def scenario(self):
        return self._seg.scenario

    @property
    def model(self) -> torch.nn.Module:
        return self._seg.model

    @property
    def step(self) -> int:
        return self._seg.step

    @property
    def loss(self) -> float | None:
        return self._seg.loss

    @property
    def last_eval_loss(self) -> float | None:
        return self._seg.eval_loss

    @property
    def clock(self) -> SegmentClock:
        return self._seg.clock

    @property
    def steps_per_second(self) -> float:
        """Updates per second over the last RATE_WINDOW_S seconds of stepping."""
        r = self._seg.rate
        if len(r) < 2:
            return 0.0
        (t0, s0), (t1, s1) = r[0], r[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def slow_reason(self) -> str | None:
        """Why steps run far slower than a moment ago, when it can be known (engine/slowdown.py)."""
        return self._seg.slow.reason

    def matmul_flops(self) -> float:
        """A typical matrix product's cost in one step: what decides how many CPU threads pay."""
        return float(self._seg.scenario.matmul_flops(self._seg.settings))

    def use_threads(self, requested: int | None = 0, *, beside_gui: bool = False) -> ThreadTuner:
        """Torch's CPU threads for this trainer's steps, from the thread that calls train_step (OpenMP
        keeps a count per thread): `requested` (1 .. 4 x cores) as it is, or by default a count that
        engine/thread_tuner.py settles by timing the steps (core/device.thread_plan says which)."""
        start, candidates = devices.thread_plan(requested, self.matmul_flops(), self.device, beside_gui=beside_gui)
        self.threads = ThreadTuner(candidates, start, torch.set_num_threads)
        return self.threads

    def device_label(self) -> str:
        return devices.device_name(self.device)

    # --- optimisation ---------------------------------------------------------------------------
    @staticmethod
    def _make_optimizer(params, settings: TrainSettings):
        wd = 0.01 if settings.method == "full" else 0.0
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=wd)

    def inject_fault(self, kind: str) -> None:
        """Make the next step fail: 'exception', 'nan' (a non-finite loss) or 'oom' (CUDA out of memory)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault={kind!r} is unknown: allowed {', '.join(FAULT_KINDS)}")
        self._fault = kind

    def _restore(self, seg: _Segment) -> None:
        with torch.no_grad():
            for p, b in zip(seg.params, seg.backup):
                p.copy_(b)
        seg.optimizer = self._make_optimizer(seg.params, seg.settings)

    @staticmethod
    def _seed_dropout(seg: _Segment, step: int) -> None:
        if seg.dropout_generator is not None:
            seg.dropout_generator.manual_seed(derive_seed(seg.settings.seed, "dropout", step))

    def _rewind_to_backup(self, seg: _Segment) -> int | None:
        """After a fault at step s: the weights of step s - 1 (the last ones whose loss was finite)
        and the histories up to them, when they were kept; returns s - 1, or None when they were not."""
        s = seg.step
        if seg.backup_step is None or seg.backup_step != s - 1:
            return None
        self._restore(seg)
        seg.step = s - 1
        seg.loss_hist.rewind(s - 1)
        seg.eval_hist.rewind(s)
        if seg.gate_hist is not None:
            seg.gate_hist.rewind(s)
        seg.spectrum_hist.rewind(s)
        seg.last_view_step = min(seg.last_view_step, s - 1)
        seg.last_eval_step = min(seg.last_eval_step, s - 1)
        seg.backup_step = None
        return s - 1

    def weights_finite(self) -> bool:
        """Whether every trained tensor is finite (one device sync for all of them)."""
        params = self._seg.params
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all().item())

    def check_finite_weights(self) -> None:
        """Raise NonFiniteWeights (after going back to the last good weights, when they were kept) if an
        update left a weight NaN or infinite: analyses never see such values."""
        if self.weights_finite():
            return
        seg = self._seg
        s = seg.step
        restored = self._rewind_to_backup(seg)
        raise NonFiniteWeights(s, seg.settings.lr, restored, restored is not None and self.weights_finite())

    @torch.enable_grad()  # grad mode is thread-local: callers (scripts, other threads) may have it off
    def train_step(self) -> float:
        """Loss of this step's batch at the current weights, then one update. See the module doc for faults."""
        seg = self._seg
        s = seg.step
        started = time.perf_counter()
        fault, self._fault = self._fault, None
        if fault == "exception":
            raise InjectedFault(f"injected exception at step {s}")
        if fault == "oom":
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected at step {s})")
        try:
            batch = seg.scenario.batch(s, seg.settings.batch_size)
            self._seed_dropout(seg, s)
            loss = seg.scenario.loss(seg.model, batch)
            if fault == "nan":
                loss = loss * float("nan")
            value = loss.item()
            if not math.isfinite(value):
                raise NonFiniteLoss(s, seg.settings.lr, value, self._rewind_to_backup(seg))
            seg.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        except BaseException:
            seg.optimizer.zero_grad(set_to_none=True)
            raise
        with torch.no_grad():
            if hasattr(torch, "_foreach_copy_"):
                torch._foreach_copy_(seg.backup, [p.detach() for p in seg.params])
            else:  # pragma: no cover - older torch
                for b, p in zip(seg.backup, seg.params):
                    b.copy_(p)
        seg.backup_step = s
        try:
            seg.optimizer.step()
        except BaseException:
            self._restore(seg)
            seg.optimizer.zero_grad(set_to_none=True)
            raise
        seg.optimizer.zero_grad(set_to_none=True)
        seg.step = s + 1
        seg.loss = value
        if not (s == 0 and len(seg.loss_hist)):  # step 0 may already hold the measured initial loss
            seg.loss_hist.append(s, value)
        now = time.perf_counter()
        seg.slow.step_done(now - started)
        if self.threads is not None:
            self.threads.step_done(now - started)
        rate = seg.rate
        rate.append((now, s + 1))
        while len(rate) > 2 and now - rate[1][0] >= RATE_WINDOW_S:
            rate.popleft()
        return value

    @torch.no_grad()
    def initial_loss(self) -> float:
        """The loss of batch 0 at the starting weights, measured without an update (once per segment)."""
        seg = self._seg
        if seg.initial_loss is None:
            self._seed_dropout(seg, 0)  # the same masks as step 0's update will use
            seg.initial_loss = seg.scenario.loss(seg.model, seg.scenario.batch(0, seg.settings.batch_size)).item()
        return seg.initial_loss

    @torch.no_grad()
    def eval_loss(self) -> float:
        """Held-out loss at the current weights; kept in the history."""
        seg = self._seg
        value = seg.scenario.eval_loss(seg.model).item()
        seg.eval_loss = value
        if seg.last_eval_step != seg.step:
            seg.last_eval_step = seg.step
            seg.eval_hist.append(seg.step, value)
        return value

    # --- settings -------------------------------------------------------------------------------
    def apply(self, **changes) -> dict[str, str]:
        """Change settings. Hot ones apply at once; any cold one rebuilds the adapters from the frozen
        base and starts a new segment. All-or-nothing: on an error nothing changes."""
        new = self.settings.with_changes(**changes)
        kinds = changed_kinds(self.settings, new)
        if not kinds:
            return {}
        if COLD in kinds.values():
            self._new_segment(new, rebuild_scenario=any(k in SCENARIO_SETTINGS for k in kinds))
        else:
            seg = self._seg
            for group in seg.optimizer.param_groups:
                group["lr"] = new.lr
            if new.batch_size != seg.settings.batch_size:
                seg.slow.reset()  # other work: the earlier rates say nothing about the new one
            seg.settings = new
        return kinds

    def reset(self) -> None:
        """Adapters back to their initial values, step 0, a new segment (same settings, same data)."""
        self._new_segment(self.settings, rebuild_scenario=False)

    def _new_segment(self, settings: TrainSettings, rebuild_scenario: bool) -> None:
        old = self._seg
        device, autocast, scenario = self.device, self.autocast, old.scenario
        if rebuild_scenario:
            device = devices.resolve_device(settings.device)
            autocast = devices.resolve_dtype(settings.dtype, device)
            scenario = build_scenario(settings, device, autocast, self._base_override)
        seg = _Segment(self, settings, scenario, old.clock.running)
        self._seg, self.device, self.autocast = seg, device, autocast
        self.segment += 1
        self._fault = None

    # --- trained state --------------------------------------------------------------------------
    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """What trains, under the model's parameter names (adapter factors, prompts, gates; for full
        fine-tuning every weight)."""
        return {name: p.detach() for name, p in self._seg.named}

    def save_state(self, path) -> None:
        """The trained tensors and every setting, plus what resuming needs to go on exactly as if
        never stopped (the optimizer's moments, the loss histories). Atomic (core/files)."""
        from explorer.core.state_file import save_state

        seg = self._seg
        save_state(
            path,
            self.trained_tensors(),
            seg.settings.to_dict(),
            seg.step,
            extra={
                "scenario": seg.settings.scenario,
                "segment": self.segment,
                "loss": seg.loss,
                "eval_loss": seg.eval_loss,
            },
            resume=self._resume_tensors(),
        )

    def _resume_tensors(self) -> dict[str, torch.Tensor]:
        seg = self._seg
        out: dict[str, torch.Tensor] = {}
        for name, p in seg.named:
            for key, value in seg.optimizer.state.get(p, {}).items():
                if torch.is_tensor(value):
                    out[f"optimizer/{name}/{key}"] = value.detach()
        for key, buf in (("loss", seg.loss_hist), ("eval", seg.eval_hist)):
            steps, values = buf.arrays()
            out[f"history/{key}_steps"] = torch.from_numpy(steps)
            out[f"history/{key}_values"] = torch.from_numpy(values)
        return out

    def load_state(self, path) -> None:
        """Start a segment from a trained-state file: its settings (keeping this trainer's device and
        display settings), its tensors, its step, and (when the file has them) the optimizer's moments
        and the loss histories, so training goes on as it would have. Refuses a file whose tensors do
        not fit, and then changes nothing."""
        from explorer.core.state_file import load_state

        st = load_state(path)
        try:
            settings = TrainSettings.from_dict({**st.settings, **{k: getattr(self.settings, k) for k in PLACEMENT}})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: the settings in the file are not valid ({exc})") from None
        rebuild = any(getattr(settings, k) != getattr(self.settings, k) for k in SCENARIO_SETTINGS)
        old = (self._seg, self.segment, self.device, self.autocast)
        try:
            # Everything is checked against the new segment before anything is copied into it; on
            # any failure (a check, or applying what passed them) the running segment comes back.
            self._new_segment(settings, rebuild_scenario=rebuild)
            seg = self._seg
            names = dict(seg.named)
            missing = sorted(set(names) - set(st.tensors))
            unexpected = sorted(set(st.tensors) - set(names))
            if missing or unexpected:
                raise ValueError(
                    f"{path}: tensors do not match the settings in the file "
                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
            for name, t in st.tensors.items():
                if tuple(t.shape) != tuple(names[name].shape):
                    raise ValueError(
                        f"{path}: tensor {name} has shape {tuple(t.shape)}, "
                        f"the model expects {tuple(names[name].shape)}"
                    )
                if not t.is_floating_point():
                    raise ValueError(f"{path}: tensor {name} has dtype {t.dtype}, expected floating point")
            optimizer = self._resumed_optimizer_state(st.resume, path)
            histories = resumed_histories(st.resume, path, st.step)
            with torch.no_grad():
                for name, t in st.tensors.items():
                    names[name].copy_(t.to(device=names[name].device, dtype=names[name].dtype))
            if optimizer is not None:
                seg.optimizer.load_state_dict(optimizer)
        except BaseException:
            self._seg, self.segment, self.device, self.autocast = old
            raise
        seg.step = st.step
        extra = st.extra if isinstance(st.extra, dict) else {}
        loss, eval_loss = extra.get("loss"), extra.get("eval_loss")
        seg.loss = float(loss) if finite_number(loss) else None
        seg.eval_loss = float(eval_loss) if finite_number(eval_loss) else None
        for key, buf in (("loss", seg.loss_hist), ("eval", seg.eval_hist)):
            steps, values = histories.get(key, ((), ()))
            for s_, v in zip(steps, values):
                buf.append(int(s_), float(v))
        if len(seg.eval_hist):
            seg.last_eval_step = int(seg.eval_hist.arrays()[0][-1])

    def _resumed_optimizer_state(self, resume: dict, path) -> dict | None:
        """The optimizer's state_dict rebuilt from a file's "optimizer/<name>/<key>" tensors (None when
        the file has none; a parameter without any starts fresh); ValueError when they do not fit."""
        seg = self._seg
        entries: dict[str, dict] = {}
        for k, v in resume.items():
            if k.startswith("optimizer/"):
                name, _, key = k[len("optimizer/") :].rpartition("/")
                entries.setdefault(name, {})[key] = v
        if not entries:
            return None
        params = dict(seg.named)
        unknown = sorted(set(entries) - set(params))
        if unknown:
            raise ValueError(f"{path}: the optimizer state names a parameter the model does not have ({unknown[0]})")
        state = {}
        for i, (name, p) in enumerate(seg.named):
            keys = entries.get(name)
            if keys is None:
                continue
            problem = optimizer_entry_problem(keys, p)
            if problem:
                raise ValueError(f"{path}: the optimizer state does not fit parameter {name}: {problem}")
            state[i] = keys
        sd = seg.optimizer.state_dict()
        sd["state"] = state
        return sd

    # --- snapshots --------------------------------------------------------------------------------
    def _constant(self, key, make):
        cache = self._seg.host_cache
        ds = key[-1]
        if cache.get("display_size") != ds:  # keep one display size only: memory stays flat
            cache.clear()
            cache["display_size"] = ds
        if key not in cache:
            cache[key] = make()
        return cache[key]

    @torch.no_grad()
    def probe_attention(self) -> None:
        """Measure the probe's attention maps at the current weights (a forward over the probe text, the
        costliest part of an lm snapshot) and keep them on the host for the snapshots that follow."""
        self.check_finite_weights()
        self._probe_attention()

    def _attention_cells(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(layers, heads) of the maps the views asked for (settings attention_layers / _heads)."""
        seg = self._seg
        n_heads = seg.gate_hist.shape[1]
        layers, heads = attention_cells(
            seg.settings.attention_layers, seg.settings.attention_heads, list(seg.prefixes), n_heads
        )
        return tuple(layers), tuple(heads)

    def _probe_attention(self) -> None:
        seg = self._seg
        scenario = seg.scenario
        if not seg.prefixes or not hasattr(scenario, "probe"):
            return
        attention = scenario.probe(seg.model)
        # only the maps the views asked for go to the host: all 32 x 32 of a 7B model are 19 MB a
        # snapshot, all 80 x 64 of a 70B one 97 MB; the default 8 x 8 are 1.2 MB
        cells = sent_layers, sent_heads = self._attention_cells()
        layers = [layer for layer in seg.prefixes if layer in attention and layer in sent_layers]
        maps = []
        head_index = None
        for layer in layers:
            m = attention[layer]
            if len(sent_heads) != m.shape[0]:
                if head_index is None:
                    head_index = torch.tensor(sent_heads, dtype=torch.long, device=m.device)
                m = m.index_select(0, head_index)
            maps.append(m)
        seg.attention = dict(zip(layers, to_host(maps) if maps else [], strict=True))
        seg.attention_cells = cells
        seg.attention_step = seg.step

    @torch.no_grad()
    def snapshot(
        self,
        display_size: int | None = None,
        with_samples: bool = False,
        with_token_delta: bool = False,
        fresh_attention: bool = True,
        *,
        live: bool = False,
    ) -> Snapshot:
        """Everything the views draw, reduced on the device and copied to the host in one transfer.
        Samples and the token view's differences cost more: asked for, they come along. The attention
        maps are measured now (`fresh_attention`) or, when False, are the last ones measured
        (probe_attention; their `attention_step` says when), so a live run pays for the probe on a
        slower cadence than for the rest.

        `live` (the worker's snapshots for the window): pooled heatmaps only of the matrices the
        setting heatmap_matrices names, and their pooled W0 / target only when the segment, that
        choice or the display size changed since the last one (explorer.schema.heatmap_choice).
        Otherwise (headless runs, recordings): every matrix's, whole."""
        self.check_finite_weights()  # before any SVD: linalg fails on non-finite input
        seg = self._seg
        settings = seg.settings
        ds = int(display_size or settings.display_size)
        heat = held_key = None
        if live:
            heat = frozenset(heatmap_names(settings.heatmap_matrices, seg.source_names))
            held_key = (heat, ds)
        send_held = held_key is None or held_key != seg.held_sent
        scenario = seg.scenario
        loss = seg.loss
        if seg.step == 0 and loss is None:
            loss = self.initial_loss()
            if not len(seg.loss_hist):
                seg.loss_hist.append(0, loss)

        # 1. reduce on the device
        parts: list[torch.Tensor] = []
        plan = []
        for src in seg.sources:
            i = len(parts)
            exact_fro = dora = None
            # pooled maps of the chosen matrices only (an empty placeholder keeps the plan's offsets)
            pooled = heat is None or src.name in heat
            if src.A is not None:
                values = spectrum_from_factors(src.A, src.B, src.scaling).values
                delta = pooled_delta(src.A, src.B, src.scaling, ds, ds) if pooled else values.new_zeros(0)
                method, partial = "exact: QR of the factors + SVD of the r x r core", False
                parts += [values, delta]
                if src.magnitude is not None:  # DoRA: the full-rank effective update beside B·A
                    eff = dora_effective_update(src.base, src.A, src.B, src.scaling, src.magnitude)
                    e_values, e_method, e_partial = _live_dense_spectrum(eff)
                    dora = (e_method, e_partial, len(parts))
                    e_map = pool_matrix(eff, ds, ds) if pooled else e_values.new_zeros(0)
                    parts += [e_values, e_map, torch.linalg.matrix_norm(eff).reshape(1)]
            else:
                d = src.weight.detach().float() - src.base.float()
                values, method, partial = _live_dense_spectrum(d)
                exact_fro = i + 2
                d_map = pool_matrix(d, ds, ds) if pooled else values.new_zeros(0)
                parts += [values, d_map, torch.linalg.matrix_norm(d).reshape(1)]
            plan.append((src, method, partial, i, exact_fro, dora, pooled))
        prefix_plan = []
        if seg.prefixes:
            stale = seg.attention_step is None or seg.attention_step > seg.step
            if fresh_attention or stale or seg.attention_cells != self._attention_cells():
                self._probe_attention()
            n_heads = seg.gate_hist.shape[1]
            for layer, adapter in seg.prefixes.items():
                gates = adapter.gate_values().detach().float().reshape(-1)
                if gates.numel() != n_heads:
                    gates = gates.expand(n_heads)
                prefix_plan.append((layer, len(parts)))
                parts += [gates, adapter.prompt.detach().float().norm().reshape(1)]

        # 2. one copy to the host
        host = to_host(parts)

        # 3. plain data
        matrices = {}
        spectra_now = {}
        for src, method, partial, i, exact_fro, dora, pooled in plan:
            values, delta = host[i], (host[i + 1] if pooled else None)
            fro, eff, stable = spectrum_figures(values, None if exact_fro is None else float(host[exact_fro][0]))
            base = target = target_values = None
            if pooled and send_held:
                base = self._constant(
                    ("base", src.name, ds), lambda src=src: to_host([pool_matrix(src.base, ds, ds)])[0]
                )
            if hasattr(scenario, "target") and scenario.name == "matrix":
                target, target_values = self._constant(
                    ("target", ds),
                    lambda: tuple(to_host([pool_matrix(scenario.target, ds, ds), scenario.target_values])),
                )
                target = target if pooled and send_held else None
            effective = {}
            if dora is not None:
                e_method, e_partial, j = dora
                e_fro, e_eff, e_stable = spectrum_figures(host[j], float(host[j + 2][0]))
                effective = dict(
                    effective_update=host[j + 1] if pooled else None,
                    effective_update_spectrum=host[j],
                    effective_update_fro_norm=e_fro,
                    effective_update_effective_rank=e_eff,
                    effective_update_stable_rank=e_stable,
                    effective_update_method=e_method,
                    effective_update_partial=e_partial,
                )
            matrices[src.name] = MatrixSnapshot(
                name=src.name,
                shape=tuple(int(x) for x in src.shape),
                delta=delta,
                base=base,
                spectrum=values,
                fro_norm=fro,
                effective_rank=eff,
                stable_rank=stable,
                target=target,
                target_spectrum=target_values,
                spectrum_method=method,
                spectrum_partial=partial,
                **effective,
            )
            spectra_now[src.name] = values
        prefixes = []
        gate_rows = []
        for layer, i in prefix_plan:
            gates = host[i]
            attention = seg.attention.get(layer)
            prefixes.append(
                PrefixSnapshot(
                    layer=int(layer),
                    gates=gates,
                    attention=attention,
                    prompt_norm=float(host[i + 1][0]),
                    heads=None if attention is None else np.array(seg.attention_cells[1], np.int64),
                    attention_step=None if attention is None else seg.attention_step,
                )
            )
            gate_rows.append(gates)

        seg.held_sent = held_key  # None after a whole (headless) one: the next live one sends W0 again
        # 4. histories (one gate / spectrum point per step)
        if seg.step != seg.last_view_step:
            seg.last_view_step = seg.step
            if gate_rows:
                seg.gate_hist.append(seg.step, np.stack(gate_rows))
            if spectra_now:
                seg.spectrum_hist.append(seg.step, spectra_now)
        history = self._history()

        samples = self.samples() if with_samples else None
        token_delta = self.token_delta() if with_token_delta else None
        return Snapshot(
            step=seg.step,
            time=seg.clock.elapsed(),
            segment=self.segment,
            loss=loss,
            eval_loss=seg.eval_loss,
            lr=float(settings.lr),
            steps_per_second=self.steps_per_second,
            device=self.device_label(),
            memory_bytes=devices.memory_bytes(self.device),
            settings=self._settings_dict(),
            matrices=matrices,
            prefixes=prefixes,
            history=history,
            budget=seg.budget,
            samples=samples,
            token_delta=token_delta,
            probe_tokens=list(getattr(scenario, "probe_tokens", [])) if seg.prefixes else [],
            state="paused",
            fault=None,
            slow_reason=seg.slow.reason,
        )

    def _settings_dict(self) -> dict:
        seg = self._seg
        if seg.settings_dict.get("lr") != seg.settings.lr or seg.settings_dict_of is not seg.settings:
            seg.settings_dict, seg.settings_dict_of = seg.settings.to_dict(), seg.settings
        return dict(seg.settings_dict)

    def samples(self) -> dict | None:
        """Text from the adapted and the base model for the scenario's fixed prompt (lm only)."""
        seg = self._seg
        if not hasattr(seg.scenario, "samples"):
            return None
        return seg.scenario.samples(seg.model, seg.step)

    @torch.no_grad()
    def token_delta(self) -> dict | None:
        """The token view's data (lm only): the fixed held-out text's tokens and, for each but the
        first, log p_adapted - log p_base at the current weights, computed on the device."""
        seg = self._seg
        delta = seg.scenario.token_delta(seg.model) if hasattr(seg.scenario, "token_delta") else None
        if delta is None:  # the matrix scenario, or a user's data set: no fixed text to score
            return None
        delta = to_host([delta])[0]
        pieces = seg.scenario.token_pieces
        return {"context": pieces[0], "tokens": list(pieces[1:]), "delta": delta, "step": int(seg.step)}

    def _history(self) -> History:
        seg = self._seg
        h = History()
        h.steps, h.loss = seg.loss_hist.arrays()
        h.eval_steps, h.eval_loss = seg.eval_hist.arrays()
        if seg.gate_hist is not None:
            h.gate_steps, h.gates = seg.gate_hist.arrays()
        h.spectrum_steps, h.spectra = seg.spectrum_hist.arrays()
        return h

    def bare_snapshot(self, state: str = "fault", fault: Fault | None = None) -> Snapshot:
        """A snapshot without analyses (used when a snapshot itself failed)."""
        seg = self._seg
        seg.held_sent = None  # it may replace the one that carried W0 in a mailbox: send W0 again
        return Snapshot(
            step=seg.step,
            time=seg.clock.elapsed(),
            segment=self.segment,
            loss=seg.loss,
            eval_loss=seg.eval_loss,
            lr=float(seg.settings.lr),
            steps_per_second=self.steps_per_second,
            device=self.device_label(),
            memory_bytes=devices.memory_bytes(self.device),
            settings=seg.settings.to_dict(),
            history=self._history(),
            budget=seg.budget,
            state=state,
            fault=fault,
            slow_reason=seg.slow.reason,
        )
