"""Record any PEFT model's training, from the user's own loop, in the explorer's recording format.

    with Recorder(model, "runs/mine", optimizer=optimizer) as rec:   # after DDP / FSDP / prepare()
        for step, batch in enumerate(loader, 1):
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()              # the recorder's pre-step hook takes the gradient norms
            optimizer.zero_grad()
            rec.step(step, loss=loss, lr=scheduler.get_last_lr()[0])

Every rank constructs the Recorder and calls `step` and `close` (or leaves the `with`) at the same
points; only global rank 0 writes (explorer.integrations.distributed). The directory then holds what
`python -m explorer run` writes (explorer.schema.recording): `--replay DIR` and the analyses read it.

Cadence: like the engine's snapshots, records are spaced by time and by their measured cost: at least
`every` steps and `interval_s` seconds apart, and far enough apart that recording (on the training
thread and on the writer thread together) takes at most `share` of the wall time. Rank 0 picks the
next recorded step at each record and sends it along with that record's reduction, so all ranks know
it without talking between records. The first state (at construction) and the last (at close) are
always recorded. Pass every=N, interval_s=0, share=None for exactly every N-th step.

Per record: the step; the loss (the value passed to `step`, a tensor kept on the device until the
record, averaged over the ranks); the learning rate; each adapted module's gradient norm, taken before
the optimizer step (the `optimizer=` pre-step hook, or `pre_optimizer_step()` called by hand; in the
metrics line as "grad_norm"); every LoRA module's exact spectrum; pooled ΔW heatmaps for at most
`max_heatmaps` modules matching `heatmaps` (fnmatch globs; default: the first and last layer's
attention projections); AdaptionPrompt gates; the parameter budget. At close the adapter is written
with PEFT's own `save_pretrained` into DIR/adapter (DIR/adapter/adapter_model.safetensors alone for a
model that is not a PeftModel).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from explorer.core import device as devices
from explorer.integrations.adapters import choose_heatmaps, find_adapters, peft_name
from explorer.integrations.background import BackgroundWriter
from explorer.integrations.describe import _unwrap, budget_for, peft_config, settings_for
from explorer.integrations.distributed import Layout
from explorer.integrations.snapshots import SnapshotBuilder
from explorer.schema.format import one_line
from explorer.schema.recording import RecordingWriter

DEFAULT_INTERVAL_S = 1.0
# 1.5 % for the records themselves leaves room, under the 2 % target, for the per-step bookkeeping
DEFAULT_SHARE = 0.015
DEFAULT_HEATMAP_SIZE = 128
MAX_HEATMAPS = 8
MAX_WRITE_RATE = 1_000_000  # bytes per second, on average: a long run's recording stays a few GB at most
FOLD_AT = 512  # pending per-step losses are stacked into one tensor beyond this many


class Cadence:
    """When rank 0 records next: at least `every` steps and `interval_s` seconds apart, and recording
    at most `share` of the wall time (by its measured cost, smoothed) and MAX_WRITE_RATE of the disk."""

    def __init__(self, every: int, interval_s: float, share: float):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be a whole number of steps, at least 1")
        if not (isinstance(interval_s, (int, float)) and math.isfinite(interval_s) and interval_s >= 0):
            raise ValueError(f"interval_s={interval_s!r} must be a number of seconds, 0 or more")
        if share is not None and not (isinstance(share, (int, float)) and 0 < share <= 1):
            raise ValueError(f"share={share!r} must be a fraction of the wall time in (0, 1], or None")
        self.every, self.interval_s = every, float(interval_s)
        self.share = None if share is None else float(share)
        self.step_seconds = 0.0  # smoothed wall time of a training step, records excluded
        self.cost = 0.0  # smoothed seconds of one record (training thread + writer thread)

    def observe_step(self, seconds: float) -> None:
        if seconds > 0:
            self.step_seconds = seconds if self.step_seconds == 0.0 else 0.8 * self.step_seconds + 0.2 * seconds

    def observe_record(self, seconds: float) -> None:
        self.cost = seconds if self.cost == 0.0 else 0.7 * self.cost + 0.3 * seconds

    def next_after(self, step: int, record_bytes: int) -> int:
        gap_s = self.interval_s
        if self.share is not None:  # None: no budget (every N steps exactly, with interval_s=0)
            gap_s = max(gap_s, self.cost / self.share, record_bytes / MAX_WRITE_RATE)
        steps = self.every
        if self.step_seconds > 0 and gap_s > 0:
            steps = max(steps, math.ceil(gap_s / self.step_seconds))
        return step + steps


def _say(text: str) -> None:
    print(f"explorer: {text}", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Recorder:
    def __init__(
        self,
        model: torch.nn.Module,
        out_dir: str | os.PathLike,
        *,
        every: int = 1,
        interval_s: float = DEFAULT_INTERVAL_S,
        share: float | None = DEFAULT_SHARE,
        heatmaps=None,
        heatmap_size: int = DEFAULT_HEATMAP_SIZE,
        max_heatmaps: int = MAX_HEATMAPS,
        optimizer: torch.optim.Optimizer | None = None,
        adapter: str | None = None,
        overwrite: bool = False,
        save_adapter: bool = True,
        start_step: int = 0,
        lr: float | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
        run_info: dict | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.model = model
        self.active = False
        self.cadence = Cadence(every, interval_s, share)
        if isinstance(heatmap_size, bool) or not isinstance(heatmap_size, int) or not 8 <= heatmap_size <= 1024:
            raise ValueError(f"heatmap_size={heatmap_size!r} must be a whole number from 8 to 1024")
        self._writer = self._background = None
        self._hook = None
        self._record_seconds = 0.0
        self._started = time.perf_counter()
        self.layout = Layout.unsupported_wrapping(model)
        if self.layout is not None:
            if self.layout.is_writer:
                _say(f"not recording this run: {self.layout.unsupported}; training goes on")
            return
        self.adapters = find_adapters(model, adapter)
        if not self.adapters:
            why = f" ({'; '.join(self.adapters.skipped)})" if self.adapters.skipped else ""
            raise ValueError(
                f"{type(model).__name__} has no LoRA or AdaptionPrompt adapter to record{why}: "
                "wrap it with peft.get_peft_model first"
            )
        self.layout = Layout.detect(model, self.adapters.params())
        if self.layout.unsupported:
            if self.layout.is_writer:
                _say(f"not recording this run: {self.layout.unsupported}; training goes on")
            return
        self.names = [e.name for e in self.adapters.lora] + [p.name for p in self.adapters.prompts]
        self.heatmaps = choose_heatmaps([e.name for e in self.adapters.lora], heatmaps, max_heatmaps)
        self._groups = [e.params for e in self.adapters.lora] + [p.params for p in self.adapters.prompts]
        # DoRA heatmap modules also get their effective update W_eff - W0, which needs W0 whole: kept on
        # rank 0 (a reference in one process or DDP; a gathered copy, bounded by max_heatmaps, when sharded)
        self._dora = [
            e
            for e in self.adapters.lora
            if e.name in self.heatmaps and e.magnitude is not None and e.base is not None and e.kind != "embedding"
        ]
        self._dora_w0: dict[str, torch.Tensor] = {}
        first = self.adapters.params()[0]
        device = first.device if first.device.type != "meta" else torch.device("cpu")
        self._device = device
        label = devices.device_name(device)
        trainable = [p for p in model.parameters() if p.requires_grad]
        budget = budget_for(
            _method(self.adapters), self.layout.count(trainable), self.layout.count(list(model.parameters()))
        )
        if lr is None and optimizer is not None:
            lr = float(optimizer.param_groups[0]["lr"])
        cfg = peft_config(model, adapter)
        settings, approximate = settings_for(
            self.adapters,
            cfg,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            device=device.type,
            dtype="bf16" if first.dtype == torch.bfloat16 else ("fp32" if first.dtype == torch.float32 else "other"),
            heatmap_size=heatmap_size,
            interval_s=interval_s,
        )
        config = {
            "settings": settings,
            "device": label,
            "base_model": _base_name(model),
            "source": "explorer.integrations",
            "recorder": {
                "model_class": type(_unwrap(model)).__name__,
                "peft_config": cfg,
                "adapter": adapter,
                "modules": self.names,
                "heatmap_modules": self.heatmaps,
                "skipped_modules": self.adapters.skipped,
                "settings_approximate": approximate,
                "world_size": self.layout.world,
                "layout": self.layout.kind,
                "cadence": {"every": every, "interval_s": interval_s, "share": share},
                "loss": "the value given to Recorder.step, averaged over the ranks",
                "grad_norm": "L2 norm of each module's adapter gradients before the optimizer step",
                **(run_info or {}),
            },
        }
        error = None
        if self.layout.is_writer:
            try:
                self._writer = RecordingWriter(self.out_dir, config, overwrite=overwrite)
            except ValueError as exc:  # not empty, not ours, in use (explorer.schema.outdir, .dirlock)
                error = one_line(exc)
            except OSError as exc:  # cannot be created or written
                error = f"{self.out_dir}: cannot be written ({exc.strerror or one_line(exc)})"
        error = self.layout.agree(error)
        if error is not None:
            raise ValueError(error)
        if self.layout.is_writer:
            self._background = BackgroundWriter(self._writer)
            self._builder = SnapshotBuilder(self.adapters, self.heatmaps, heatmap_size, settings, budget, label)
        self.save_adapter = save_adapter
        self.active = True
        self._closed = False
        self._optimizer = optimizer
        if optimizer is not None:
            inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps one
            self._hook = inner.register_step_pre_hook(lambda *_: self.pre_optimizer_step())
        self._losses: list[tuple[int, torch.Tensor | float | None]] = []
        self._folded: list[tuple[list[int], torch.Tensor]] = []
        self._lr = float(lr) if lr is not None else float("nan")
        self._eval: tuple[int, float] | None = None
        self._eval_new = False
        self._grads: torch.Tensor | None = None
        self._grads_for = -1
        self._bases_done = False
        self._last_step = self._last_recorded = int(start_step)
        self._next = int(start_step)
        self._started = time.perf_counter()
        self._t_last = self._started
        self._rate: list[tuple[float, int]] = []
        try:
            self._record(int(start_step), "running")
        except BaseException as exc:
            self.fail(exc)  # let go of the directory's lock and the writer thread
            raise
        self._t_last = time.perf_counter()

    # --- the user's calls -------------------------------------------------------------------------
    def pre_optimizer_step(self) -> None:
        """Take the gradient norms, if the step about to finish is recorded (every rank calls this)."""
        if not self.active or self._closed:
            return
        upcoming = self._last_step + 1
        if upcoming >= self._next and self._grads_for != upcoming:
            t0 = time.perf_counter()
            self._grads = self.layout.grad_sumsq(self._groups)
            self._grads_for = upcoming
            self._record_seconds += time.perf_counter() - t0

    def step(self, step: int | None = None, *, loss=None, lr: float | None = None, eval_loss: float | None = None):
        """After an optimizer step: `step` (default: one more than the last), this rank's `loss` (a
        tensor stays on the device until the record), the learning rate used, a held-out loss."""
        if not self.active or self._closed:
            return
        now = time.perf_counter()
        step = self._last_step + 1 if step is None else int(step)
        if step <= self._last_step:
            raise ValueError(f"step={step} does not come after the last step {self._last_step}")
        self.cadence.observe_step((now - self._t_last) / (step - self._last_step))
        self._rate.append((now, step))
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().reshape(()).float()
        elif loss is not None:
            loss = float(loss)
        self._losses.append((step, loss))
        if len(self._losses) >= FOLD_AT:
            self._fold()
        if lr is not None:
            self._lr = float(lr)
        elif self._optimizer is not None:
            self._lr = float(self._optimizer.param_groups[0]["lr"])
        if eval_loss is not None:
            self.eval_loss(float(eval_loss), step)
        self._last_step = step
        if step >= self._next:
            self._record(step, "running")
        self._t_last = time.perf_counter()

    def eval_loss(self, value: float, step: int | None = None) -> None:
        """A held-out loss (shown with the next record)."""
        if self.active:
            self._eval = (self._last_step if step is None else int(step), float(value))
            self._eval_new = True

    def close(self) -> None:
        """Record the last step, write the adapter, mark the recording finished. Every rank calls it."""
        if not self.active or self._closed:
            self._remove_hook()
            return
        self._closed = True
        self._remove_hook()
        if self._last_step > self._last_recorded:
            self._record(self._last_step, "paused")
        adapter_dir = self._save_adapter() if self.save_adapter else None
        if self.layout.is_writer:
            self._background.drain()
            info = {"final_step": self._last_step, "completed": True, "records": self._writer.records}
            if adapter_dir is not None:
                info["adapter"] = adapter_dir
            if self._background.dropped:
                info["dropped_records"] = self._background.dropped
            if self._background.error is None:
                self._writer.finish(**info)
            else:
                self._writer.close()

    def fail(self, exc: BaseException) -> None:
        """The run stopped on an exception: no more collectives; rank 0 notes it and lets go."""
        if not self.active or self._closed:
            return
        self._closed = True
        self._remove_hook()
        if self.layout.is_writer:
            self._background.drain()
            if self._background.error is None:
                self._writer.event("failed", step=self._last_step, message=_one_line(exc))
            self._writer.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            self.fail(exc)

    @property
    def records(self) -> int:
        return self._writer.records if self._writer is not None else 0

    def cost(self) -> dict:
        """What recording took on this rank: seconds in the training thread (records, collectives) and,
        on rank 0, in the writer thread, against the wall time since the recorder started."""
        written = self._background.total_seconds if self._background is not None else 0.0
        return {
            "records": self.records,
            "record_seconds": self._record_seconds,
            "write_seconds": written,
            "elapsed_seconds": time.perf_counter() - self._started,
        }

    # --- recording --------------------------------------------------------------------------------
    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _fold(self) -> None:
        """Stack pending device scalars into one tensor (no host sync), keeping the list short."""
        if not self._losses:
            return
        steps = [s for s, _ in self._losses]
        vals = [_as_tensor(v, self._device) for _, v in self._losses]
        self._folded.append((steps, torch.stack(vals)))
        self._losses = []

    def _pending_losses(self) -> tuple[list[int], torch.Tensor]:
        self._fold()
        steps = [s for chunk, _ in self._folded for s in chunk]
        if not steps:
            return [], torch.zeros(0, device=self.layout.comm_device)
        values = torch.cat([v.to(self.layout.comm_device) for _, v in self._folded])
        self._folded = []
        return steps, values

    @torch.no_grad()
    def _record(self, step: int, state: str) -> None:
        t0 = time.perf_counter()
        lay = self.layout
        entries = self.adapters
        params = [t for e in entries.lora for t in (e.A, e.B)] + [
            t for p in entries.prompts for t in (p.gate, p.prompt)
        ]
        params += [e.magnitude for e in self._dora]
        bases = []
        if not self._bases_done:  # W0 is frozen: gathered once (pooled for the heatmaps; whole for DoRA's)
            bases = [e for e in entries.lora if e.name in self.heatmaps and e.base is not None]
        whole = lay.gather(params + [e.base for e in bases])  # collective under FSDP / ZeRO-3
        self._bases_done = True
        steps, losses = self._pending_losses()
        grads = self._grads if self._grads_for == step else None
        n_grads = 0 if grads is None else grads.numel()
        plan = 0.0
        if lay.is_writer:
            plan = float(self.cadence.next_after(step, self._background.last_bytes if self._background else 0))
        parts = [losses.float(), torch.tensor([plan], device=lay.comm_device)]
        if grads is not None:
            parts.insert(1, grads.to(lay.comm_device))
        vec = lay.reduce_sum(torch.cat(parts))  # one collective: losses, gradient norms, the plan
        self._next = int(vec[-1].item())
        self._grads, self._grads_for = None, -1
        self._last_recorded = step
        if not lay.is_writer:
            self._record_seconds += time.perf_counter() - t0
            return
        host = vec.cpu().numpy()
        loss_values = host[: len(steps)] / lay.world
        sums = host[len(steps) : len(steps) + n_grads].reshape(-1, 2) if n_grads else None
        b = self._builder
        b.add_losses(steps, [None if not math.isfinite(v) else float(v) for v in loss_values])
        if self._eval_new:
            b.add_eval(*self._eval)
            self._eval_new = False
        gathered_bases = dict(zip([e.name for e in bases], whole[len(params) :]))
        for e in self._dora:
            if e.name in gathered_bases:
                self._dora_w0[e.name] = gathered_bases[e.name]
        m_at = len(params) - len(self._dora)
        dora = {e.name: (self._dora_w0[e.name], whole[m_at + i]) for i, e in enumerate(self._dora)}
        lora = [(whole[2 * i], whole[2 * i + 1]) for i in range(len(entries.lora))]
        k = 2 * len(entries.lora)
        prompts = [(whole[k + 2 * i], whole[k + 2 * i + 1]) for i in range(len(entries.prompts))]
        loss = float(loss_values[-1]) if len(steps) and steps[-1] == step and math.isfinite(loss_values[-1]) else None
        with _one_cpu_thread(self._device):
            if bases:
                b.pool_bases(bases, whole[len(params) :])
            snap = b.build(
                step,
                lora,
                prompts,
                loss=loss,
                eval_loss=self._eval[1] if self._eval is not None else None,
                lr=self._lr,
                elapsed=time.perf_counter() - self._started,
                steps_per_second=self._steps_per_second(),
                memory_bytes=devices.memory_bytes(self._device),
                state=state,
                dora=dora,
            )
        extra = {"wall_time": time.time()}
        if sums is not None:
            extra["grad_norm"] = {
                name: (math.sqrt(max(s, 0.0)) if n > 0 else None) for name, (s, n) in zip(self.names, sums)
            }
        self._background.submit(snap, extra)
        spent = time.perf_counter() - t0
        self._record_seconds += spent
        self.cadence.observe_record(spent + self._background.write_seconds)

    def _steps_per_second(self) -> float:
        now = time.perf_counter()
        self._rate = [(t, s) for t, s in self._rate if now - t <= 2.0] or self._rate[-1:]
        if len(self._rate) < 2:
            return 0.0
        (t_a, s_a), (t_b, s_b) = self._rate[0], self._rate[-1]
        return (s_b - s_a) / (t_b - t_a) if t_b > t_a else 0.0

    def _save_adapter(self) -> str | None:
        """PEFT's save_pretrained of the whole trainable state into DIR/adapter (written beside, then
        renamed, so DIR/adapter is complete or absent). Every rank takes part in the gather."""
        peft_model = _unwrap(self.model)
        # names as the PeftModel sees them: PEFT picks its entries by walking its own modules, which under
        # FSDP1 still hold the nested units' "_fsdp_wrapped_module" segments (taken out of the file below)
        named = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
        whole = self.layout.gather([p for _, p in named])
        if not self.layout.is_writer:
            return None
        state = {n: t.to(p.dtype).detach().cpu().contiguous() for (n, p), t in zip(named, whole)}
        target = self.out_dir / "adapter"
        partial = self.out_dir / "adapter.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            if hasattr(peft_model, "peft_config") and hasattr(peft_model, "save_pretrained"):
                peft_model.save_pretrained(str(partial), state_dict=state)
                _clean_adapter_keys(partial / "adapter_model.safetensors")
            else:
                from safetensors.torch import save_file

                partial.mkdir(parents=True)
                save_file({peft_name(n): t for n, t in state.items()}, str(partial / "adapter_model.safetensors"))
            os.replace(partial, target)
        except Exception as exc:  # noqa: BLE001 - the recording stays good without the adapter
            _say(f"could not write the adapter to {target}: {_one_line(exc)}")
            shutil.rmtree(partial, ignore_errors=True)
            return None
        return "adapter"


def _clean_adapter_keys(path: Path) -> None:
    """Rewrite an adapter file whose keys carry wrapper segments with the names an unwrapped model loads."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if not path.is_file():
        return
    with safe_open(str(path), framework="pt") as fh:
        keys = list(fh.keys())
        if all(peft_name(k) == k for k in keys):
            return
        tensors = {peft_name(k): fh.get_tensor(k) for k in keys}
        metadata = fh.metadata()
    save_file(tensors, str(path), metadata=metadata)


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """Run a record's small CPU linear algebra (QR and SVD of n x r factors) on one thread: split over
    several it gains nothing, and on a busy machine each op waits at a barrier for a descheduled
    thread (measured: 9 ms instead of 30 µs for a 512 x 16 QR at load 10 on 2 cores). The record runs
    in the training thread, between two steps, so nothing else in this process is using torch."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _as_tensor(v, device) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    return torch.tensor(float("nan") if v is None else float(v), device=device)


def _method(adapters) -> str:
    if adapters.lora and adapters.prompts:
        return "lora+prefix"
    return "lora" if adapters.lora else "prefix"


def _base_name(model) -> str | None:
    inner = _unwrap(model)
    for obj in (inner, getattr(inner, "base_model", None), getattr(getattr(inner, "base_model", None), "model", None)):
        cfg = getattr(obj, "config", None)
        name = getattr(cfg, "_name_or_path", None) or getattr(cfg, "name_or_path", None)
        if isinstance(name, str) and name:
            return name
    return None
