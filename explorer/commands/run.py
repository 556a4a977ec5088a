"""`python -m explorer run`: train headless with a progress bar, and record the run.

    python -m explorer run --scenario matrix --method lora --rank 4 --size 256 --steps 2000 --out runs/m4
    python -m explorer run --scenario lm --method prefix --prefix-len 10 --prefix-layers 2 --steps 300 --out runs/p
    python -m explorer run --model ~/models/TinyLlama-1.1B --data reviews.jsonl --device cuda --dtype bf16 \
        --seq-len 512 --batch-size 4 --steps 500 --out runs/tiny

`--model DIR` trains on a Hugging Face checkpoint directory (llama, mistral, qwen2; safetensors and
tokenizer.json), `--data PATH` on a .txt file or folder of them or a .jsonl / .json of "text" or
instruction / input / output records (`--eval-data`, `--loss-on`, `--prompt`); the memory the run
needs is estimated and checked before anything loads, and config.json records the directory and a
hash of its config and weights index.

Every training setting has a flag (generated from explorer/schema/settings.py). Records are taken by
step (`--record-every K`; step 0 and the last step always), so two runs of the same settings record
the same steps. The recording (config.json, metrics.jsonl, snapshots/, state.safetensors) is
described in explorer/schema/recording.py and replays in the app.

A run whose training diverges (a non-finite loss, or an update that leaves a weight NaN or infinite)
stops with one line and exit code 3: the recording keeps the fault's record at the last good
weights, and state.safetensors holds those weights. Bad flags and unusable paths exit 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

# Import only the settings table here (no torch), so `--help` stays instant.
from explorer.commands import exit_codes
from explorer.schema.faults import DIVERGED, Fault
from explorer.schema.format import format_clock, format_fixed
from explorer.schema.settings import (
    PATTERNS,
    SETTINGS_SPEC,
    TrainSettings,
    format_pattern,
    parse_pattern,
    with_method_defaults,
)

MAX_AUTO_RECORDS = 100
# settings of the live app only: a headless run records by step, every matrix's heatmaps
LIVE_ONLY = ("speed", "snapshot_hz", "heatmap_matrices")
MIN_AUTO_RECORDS = 10
AUTO_RECORDING_BYTES = 25_000_000  # the automatic --record-every aims at a recording about this size
_TYPES = {"int": int, "float": float, "str": str}


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _layers(text: str):
    if text.strip().lower() in ("", "all"):
        return None
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'all' or a comma-separated list of layer indices") from None


def _indices(text: str):
    """'24-31' or '0,5,9' -> a tuple of indices; '' -> None (the default subset)."""
    if not text.strip():
        return None
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        a, dash, b = part.partition("-")
        if not a.isdigit() or (dash and not b.isdigit()) or (dash and int(b) - int(a) > 4096):
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of indices and ranges, e.g. 0-3,30,31")
        out.extend(range(int(a), int(b if dash else a) + 1))
    return tuple(sorted(set(out)))


def pattern_type(name: str):
    """An argparse type for rank_pattern / alpha_pattern: PATTERN=VALUE pairs or a JSON object."""

    def parse(text: str) -> dict:
        try:
            return parse_pattern(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def _shown(default) -> str:
    if isinstance(default, tuple):
        return ",".join(default)
    if isinstance(default, dict):
        return format_pattern(default, ",") or "none"
    return str(default)


def _allowed(spec) -> str:
    if spec.choices is not None:
        return "; one of " + ", ".join(map(str, spec.choices))
    if spec.low is not None:
        return f"; {spec.low:g} to {spec.high:g}"
    return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainSettings()
    field_types = {name: f.type for name, f in TrainSettings.__dataclass_fields__.items()}
    group = parser.add_argument_group("training settings (explorer/schema/settings.py)")
    for name, spec in SETTINGS_SPEC.items():
        if name in LIVE_ONLY:
            continue
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        note = f" [{spec.kind}; default {_shown(default)}{_allowed(spec) if name != 'targets' else ''}]"
        if name in PATTERNS:
            group.add_argument(
                flag,
                type=pattern_type(name),
                default=None,
                metavar="PATTERN=VALUE,...",
                help=spec.help + " (or a JSON object)" + note,
            )
            continue
        if name == "targets":
            group.add_argument(
                flag,
                type=_csv,
                default=None,
                metavar="T1,T2",
                help=spec.help + " (comma-separated: " + ",".join(spec.choices) + ")" + note,
            )
        elif name == "layers":
            group.add_argument(flag, type=_layers, default=None, metavar="I,J|all", help=spec.help + note)
        elif name in ("attention_layers", "attention_heads"):
            group.add_argument(flag, type=_indices, default=None, metavar="I,J-K", help=spec.help + note)
        elif field_types[name] == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=spec.help + note)
        elif spec.choices is not None:
            group.add_argument(flag, choices=spec.choices, default=None, help=spec.help + note)
        else:
            group.add_argument(
                flag, type=_TYPES[field_types[name]], default=None, metavar=name.upper(), help=spec.help + note
            )
    group.add_argument(
        "--size", type=int, default=None, metavar="D", help="matrix scenario: sets both --size-in and --size-out"
    )
    run = parser.add_argument_group("the run")
    run.add_argument("--steps", type=int, default=300, help="updates to train (default 300)")
    run.add_argument("--out", required=True, metavar="DIR", help="directory for the recording (new or empty)")
    run.add_argument(
        "--record-every",
        type=int,
        default=0,
        metavar="K",
        help=f"record every K steps (default: about {MAX_AUTO_RECORDS} records per run); "
        "step 0 and the last step are always recorded",
    )
    run.add_argument(
        "--sample-every",
        type=int,
        default=0,
        metavar="K",
        help="lm scenario: also generate samples every K steps (default: at step 0 and the last step only)",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch, 1 to 4 x the cores (default 0: the fastest of 1 .. the cores the "
        "model can use, timed on the steps; see explorer/core/cpu_threads.py)",
    )
    run.add_argument("--overwrite", action="store_true", help="replace a recording already in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    changes = {}
    for name in SETTINGS_SPEC:
        if name in LIVE_ONLY:
            continue
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if args.size is not None:
        for name in ("size_in", "size_out"):
            if name in changes and changes[name] != args.size:
                raise ValueError(f"--size {args.size} contradicts --{name.replace('_', '-')} {changes[name]}")
            changes[name] = args.size
    # --method full without --lr trains at full fine-tuning's own rate, not LoRA's
    return TrainSettings().with_changes(**with_method_defaults(TrainSettings(), changes))


def record_every(steps: int, every: int, record_bytes: int = 0) -> int:
    """K: `every` if given, else chosen so that the recording holds at most MAX_AUTO_RECORDS records
    and about AUTO_RECORDING_BYTES (but at least MIN_AUTO_RECORDS records). `record_bytes` is the size
    of one record, which depends only on the settings, so the same settings record the same steps."""
    if every < 0:
        raise ValueError(f"record-every={every} is out of range: allowed 0 (automatic) or more")
    if every:
        return every
    records = MAX_AUTO_RECORDS
    if record_bytes > 0:
        records = max(MIN_AUTO_RECORDS, min(MAX_AUTO_RECORDS, AUTO_RECORDING_BYTES // record_bytes))
    return max(1, math.ceil(steps / records))


def record_bytes(snap) -> int:
    """Bytes of one record that vary from record to record (pooled ΔW, spectra, prefix arrays) plus
    what a full history can take; pooled W0 and the target are stored once."""
    n = sum((0 if m.delta is None else m.delta.nbytes) + m.spectrum.nbytes for m in snap.matrices.values())
    n += sum(p.gates.nbytes + (0 if p.attention is None else p.attention.nbytes) for p in snap.prefixes)
    from explorer.engine import trainer as T

    n += 12 * (T.LOSS_HISTORY + T.EVAL_HISTORY)
    n += 4 * T.GATE_HISTORY * sum(p.gates.size for p in snap.prefixes)
    n += 4 * T.SPECTRUM_HISTORY * sum(min(m.spectrum.size, T.SPECTRUM_HISTORY_VALUES) for m in snap.matrices.values())
    return n


class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, total: int, stream=None, quiet: bool = False):
        self.total, self.stream, self.quiet = total, stream or sys.stderr, quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_tenth = -1
        self._last_step = -1
        self._last_width = 0

    def update(
        self, step: int, loss, eval_loss, force: bool = False, rate: float | None = None, slow: str | None = None
    ) -> None:
        """`rate`: the recent steps/s (default: the average since the start); `slow`: why it fell far
        below what it was a moment ago, when known (Trainer.slow_reason), shown after it."""
        if self.quiet:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        frac = step / self.total if self.total else 1.0
        if force and step == self._last_step:
            return
        if self.tty:
            if not force and now - self._last_draw < 0.2:
                return
        else:
            tenth = int(frac * 10)
            if not force and tenth == self._last_tenth:
                return
            self._last_tenth = tenth
        self._last_draw, self._last_step = now, step
        width = 30
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        average = step / elapsed if elapsed > 0 else 0.0
        rate = rate if rate else average
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        text = (
            f"[{bar}] {step}/{self.total}  loss {format_fixed(loss)}  held-out {format_fixed(eval_loss)}  "
            f"{rate:.1f} steps/s{f'  slow: {slow}' if slow else ''}  {format_clock(elapsed)} elapsed, {format_clock(eta)} left"
        )
        if self.tty:  # padded: a shorter line (the slow reason gone) must cover the longer one
            self.stream.write("\r" + text.ljust(self._last_width))
            self._last_width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if not self.quiet and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.steps < 0:
        raise ValueError(f"steps={args.steps} is out of range: allowed 0 or more")
    record_every(args.steps, args.record_every)  # a bad value fails before any work
    if args.sample_every < 0:
        raise ValueError(f"sample-every={args.sample_every} is out of range: allowed 0 or more")
    from explorer.core.cpu_threads import check_threads

    check_threads(args.threads)

    import platform

    import torch

    from explorer.engine.trainer import NonFiniteLoss, Trainer
    from explorer.schema.recording import RecordingWriter

    trainer = Trainer(settings)
    tuner = trainer.use_threads(args.threads)
    trainer.eval_loss()
    # the token view's differences cost one forward over a short text: every record has them (lm)
    first = trainer.snapshot(settings.display_size, with_samples=True, with_token_delta=True)
    every = record_every(args.steps, args.record_every, record_bytes(first))
    config = {
        "settings": settings.to_dict(),
        "device": trainer.device_label(),
        "device_type": trainer.device.type,
        "threads": tuner.current,  # at the start; finish() notes the count in force at the end
        "base": trainer.scenario.info(),
        "steps": args.steps,
        "record_every": every,
        "sample_every": args.sample_every,
        "display_size": settings.display_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": "python -m explorer " + " ".join(sys.argv[1:]),
    }
    writer = RecordingWriter(args.out, config, overwrite=args.overwrite)
    progress = Progress(args.steps, quiet=args.quiet)
    started = time.perf_counter()
    fault = None
    try:
        for k in range(args.steps + 1):
            if k % every == 0 or k == args.steps:
                samples = k == 0 or k == args.steps or (args.sample_every and k % args.sample_every == 0)
                if k == 0:
                    snap = first
                else:
                    trainer.eval_loss()
                    try:
                        snap = trainer.snapshot(
                            settings.display_size, with_samples=bool(samples), with_token_delta=True
                        )
                    except NonFiniteLoss as exc:  # NonFiniteWeights: an update left NaN or infinity
                        fault = exc
                        break
                snap.state = "running" if k < args.steps else "paused"
                writer.write(snap, fresh_samples=bool(samples))
            if k == args.steps:
                break
            try:
                trainer.train_step()
            except NonFiniteLoss as exc:
                fault = exc
                break
            progress.update(
                k + 1, trainer.loss, trainer.last_eval_loss, rate=trainer.steps_per_second, slow=trainer.slow_reason
            )
        if fault is not None:
            progress.done()
            message = f"{fault}; stopped; lower the learning rate"
            record_fault(trainer, writer, settings.display_size, Fault(DIVERGED, message))
            sys.stderr.write(f"peft-explorer: training stopped: {message}\n")
        progress.update(trainer.step, trainer.loss, trainer.last_eval_loss, force=True)
        progress.done()
    except BaseException as exc:
        finish_recording(trainer, writer, args.steps, time.perf_counter() - started, failed=exc, **threads_info(tuner))
        raise
    finish_recording(trainer, writer, args.steps, time.perf_counter() - started, fault=fault, **threads_info(tuner))
    if not args.quiet:
        sys.stderr.write(f"recorded {writer.records} steps to {writer.dir} ({writer.bytes_written / 1e6:.1f} MB)\n")
    return exit_codes.FAULT if fault is not None else exit_codes.OK


def record_fault(trainer, writer, display_size: int, fault: Fault) -> None:
    """Write the fault's record: at the last good weights when they were kept, else without analyses."""
    from explorer.engine.trainer import NonFiniteLoss

    if trainer.weights_finite():
        trainer.eval_loss()
        try:
            snap = trainer.snapshot(display_size)
        except NonFiniteLoss:
            snap = trainer.bare_snapshot("fault", fault)
    else:
        snap = trainer.bare_snapshot("fault", fault)
    snap.state, snap.fault = "fault", fault
    writer.write(snap)


def threads_info(tuner) -> dict:
    """What config.json notes about the CPU threads at the end: the count in force, and the steps/s
    each count gave at the tuner's last trial (engine/thread_tuner.py; empty when nothing was tried)."""
    return {"threads": tuner.current, "thread_rates": {str(n): round(r, 3) for n, r in tuner.rates.items()}}


def finish_recording(
    trainer, writer, steps: int, wall_seconds: float, fault=None, failed: BaseException | None = None, **extra
):
    """Save the trained state (only finite weights: the last good ones after a fault) and note in
    config.json how the run ended. After a failure (`failed`), errors here are secondary: the
    recording is left marked incomplete and the first error is the one reported."""
    info = {
        "final_step": trainer.step,
        "wall_seconds": wall_seconds,
        "completed": fault is None and failed is None and trainer.step == steps,
    }
    if fault is not None:
        info["fault"] = str(fault)
    if failed is not None:
        info["error"] = f"{type(failed).__name__}: {failed}"
    info.update(extra)
    try:
        try:
            if trainer.weights_finite():
                trainer.save_state(writer.dir / "state.safetensors")
            else:
                info["state"] = "not saved: the weights were not finite and the last good ones were not kept"
        finally:
            writer.finish(**info)
    except Exception:
        if failed is None:
            raise
