"""`python -m explorer compare`: train several settings on the same data and seed, write a comparison table.

    python -m explorer compare --scenario lm --runs lora:r=4 --runs lora:r=8 --runs lora:r=16 \\
        --runs prefix:K=10 --runs full --steps 300 --seed 0 --out runs/cmp

Each --runs SPEC is `METHOD[:KEY=VALUE,...]` (explorer/engine/compare.py documents the syntax:
lora:r=8, lora:r=16,alpha=32, prefix:K=10,L=2, lora+prefix:r=8,K=10, full, lora:r=8,label=mine).
The other flags set what every run shares (scenario, data, device) and the defaults a SPEC changes.
The runs are stepped round-robin in one thread, one step each in turn, on the same batches.

Writes into DIR (new or empty; --overwrite replaces an earlier comparison there):
    table.csv      one row per run: run, method, spec, trainable_params, share, storage_bytes, steps,
                   final_loss, final_eval_loss, steps_per_second, llama7b_trainable_params,
                   llama7b_storage_bytes
    table.md       the same in the spirit of LLaMA-Reviewer's Table IX, with the notes that define it
    analysis.json  phi between LoRA runs per shared module (the first pair is the first two LoRA runs),
                   with a random-basis control; amplification per module of every LoRA run; LoRA's ΔW
                   spectrum against the full update's per module when a `full` run is present
    compare.json   the base settings, the specs and their labels, the command
    runs/<label>/  a recording per run (explorer/schema/recording.py) that replays in the app
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
import time
from pathlib import Path

# Import only the settings table here (no torch), so `--help` stays instant.
from explorer.commands import exit_codes
from explorer.commands.run import _TYPES, _indices, _layers, _shown, pattern_type
from explorer.commands.run import _csv as _csv_list
from explorer.schema.format import format_bytes, format_clock, format_fixed, format_short
from explorer.schema.settings import PATTERNS, SETTINGS_SPEC, TrainSettings
from explorer.schema.text import printable

MANIFEST = "compare.json"
FORMAT = "peft-explorer-compare"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cmp = parser.add_argument_group("the comparison")
    cmp.add_argument(
        "--runs",
        action="append",
        required=True,
        metavar="SPEC",
        help="a run: METHOD[:KEY=VALUE,...], e.g. lora:r=8, lora:r=16,alpha=32, prefix:K=10,L=2, "
        "lora+prefix:r=8,K=10, full, lora:r=8,label=mine (keys: r, K, L, label, or any "
        "per-run setting); repeat --runs for each run",
    )
    cmp.add_argument("--steps", type=int, default=300, help="updates per run (default 300)")
    cmp.add_argument(
        "--out", required=True, metavar="DIR", help="directory for the table and recordings (new or empty)"
    )
    cmp.add_argument(
        "--record-every",
        type=int,
        default=0,
        metavar="K",
        help="record every K steps (default: about 100 records per run); step 0 and the last always",
    )
    cmp.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch, 1 to 4 x the cores (default 0: the fastest of 1 .. the cores the "
        "largest run can use, timed on the steps; see explorer/core/cpu_threads.py)",
    )
    cmp.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out")
    cmp.add_argument("--quiet", action="store_true", help="no progress lines")
    defaults = TrainSettings()
    types = {name: f.type for name, f in TrainSettings.__dataclass_fields__.items()}
    group = parser.add_argument_group("settings every run starts from (a SPEC's keys override them)")
    for name, spec in SETTINGS_SPEC.items():
        if name in ("method", "heatmap_matrices"):  # a comparison records every matrix's heatmaps
            continue
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        note = f" [default {_shown(default)}]"
        if name in PATTERNS:
            group.add_argument(
                flag, type=pattern_type(name), default=None, metavar="PATTERN=VALUE,...", help=spec.help + note
            )
        elif name == "targets":
            group.add_argument(flag, type=_csv_list, default=None, metavar="T1,T2", help=spec.help + note)
        elif name == "layers":
            group.add_argument(flag, type=_layers, default=None, metavar="I,J|all", help=spec.help + note)
        elif name in ("attention_layers", "attention_heads"):
            group.add_argument(flag, type=_indices, default=None, metavar="I,J-K", help=spec.help + note)
        elif types[name] == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=spec.help + note)
        elif spec.choices is not None:
            group.add_argument(flag, choices=spec.choices, default=None, help=spec.help + note)
        else:
            group.add_argument(
                flag, type=_TYPES[types[name]], default=None, metavar=name.upper(), help=spec.help + note
            )
    group.add_argument(
        "--size", type=int, default=None, metavar="D", help="matrix scenario: both --size-in and --size-out"
    )


def base_settings_from_args(args: argparse.Namespace) -> TrainSettings:
    changes = {
        name: getattr(args, name)
        for name in SETTINGS_SPEC
        if name != "method" and getattr(args, name, None) is not None
    }
    if getattr(args, "size", None) is not None:
        for name in ("size_in", "size_out"):
            if name in changes and changes[name] != args.size:
                raise ValueError(f"--size {args.size} contradicts --{name.replace('_', '-')} {changes[name]}")
            changes[name] = args.size
    return TrainSettings().with_changes(**changes)


# ---- formatting --------------------------------------------------------------------------------------


def table_csv(rows: list[dict], columns) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def table_markdown(snap, header: dict) -> str:
    """Table IX in spirit: method, what trains, what it costs here and on LLaMA-7B, how well it fits."""
    lines = [f"# Comparison: {header['scenario']} scenario, {header['steps']} steps, seed {header['seed']}", ""]
    lines.append(
        f"Base: {header['base']}. Device: {header['device']}. Every run saw the same batches in the same "
        "order (unless its spec sets another seed or batch size)."
    )
    lines.append("")
    cols = [
        "run",
        "method",
        "trainable params",
        "share of the model",
        "storage (fp16)",
        "final train loss",
        "final held-out loss",
        "steps/s",
        "LLaMA-7B params",
        "LLaMA-7B storage (fp16)",
    ]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(cols) - 2)) + "|")
    for r in snap.runs:
        held = format_fixed(r.final_eval_loss)
        if r.fault:
            held += " (stopped)"
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{r.label}`",
                    r.method,
                    f"{r.trainable_params:,}",
                    f"{100 * r.share:.3g}%",
                    format_bytes(r.storage_bytes),
                    format_fixed(r.final_loss),
                    held,
                    f"{r.steps_per_second:.1f}",
                    format_short(r.llama7b_trainable_params),
                    format_bytes(r.llama7b_storage_bytes),
                ]
            )
            + " |"
        )
    lines.append("")
    ranked = sorted(
        (r for r in snap.runs if r.final_eval_loss is not None and not r.fault), key=lambda r: r.final_eval_loss
    )
    if ranked:
        lines.append(
            "Ranked by final held-out loss (lower is better): "
            + " < ".join(f"`{r.label}` ({r.final_eval_loss:.4f})" for r in ranked)
            + "."
        )
        lines.append("")
    a = snap.analysis
    if a is not None and a.pairs:
        x, y = a.pairs[0]
        lines.append(
            f"Subspace similarity (LoRA paper Fig. 3) of `{x}` and `{y}`, mean over modules of phi(1, 1) and "
            "of phi(i, i) at the smaller rank, against a random basis of the same size:"
        )
        lines.append("")
        import numpy as np

        sims = a.similarity[(x, y)]
        ctrl = a.control[(x, y)]
        top = np.mean([m[0, 0] for m in sims.values()])
        k = min(next(iter(sims.values())).shape)
        last = np.mean([m[k - 1, k - 1] for m in sims.values()])
        ctop = np.mean([m[0, 0] for m in ctrl.values()])
        clast = np.mean([m[k - 1, k - 1] for m in ctrl.values()])
        lines.append(
            f"| pair | phi(1,1) | phi({k},{k}) |\n|---|---:|---:|\n| `{x}` vs `{y}` | {top:.3f} | {last:.3f} |\n"
            f"| `{x}` vs random | {ctop:.3f} | {clast:.3f} |"
        )
        lines.append("")
    if a is not None and a.amplification:
        lines.append(
            "Amplification (LoRA paper Table 7), mean over modules: ||ΔW||_F / ||U^T W0 V||_F, and W0 "
            "projected onto ΔW's k = rank(ΔW) singular directions (k <= r: directions with σ = 0 are left "
            "out), onto W0's own top-k and onto a random k-dim basis:"
        )
        lines.append("")
        lines.append(
            "| run | factor | ‖ΔW‖_F | ‖UᵀW0V‖_F (ΔW's) | W0's top-k | random |\n|---|---:|---:|---:|---:|---:|"
        )
        import numpy as np

        for label, rows in a.amplification.items():
            if not rows:
                continue
            m = {
                k: float(np.mean([r[k] for r in rows]))
                for k in ("factor", "delta_fro", "proj_delta", "proj_w0_top", "proj_random")
            }
            lines.append(
                f"| `{label}` | {m['factor']:.2f} | {m['delta_fro']:.4g} | {m['proj_delta']:.4g} | "
                f"{m['proj_w0_top']:.4g} | {m['proj_random']:.4g} |"
            )
        residual = [label for label, rows in a.amplification.items() if rows and rows[0].get("w0") == "residual"]
        if residual:
            lines.append("")
            lines.append(
                f"{', '.join(f'`{x}`' for x in residual)}: PiSSA, so W0 here is the residual W - s·B₀A₀, whose "
                "top-r directions moved into the adapter at initialisation; its factor is not Table 7's "
                "(which projects the pretrained W0)."
            )
        lines.append("")
    if a is not None and a.intrinsic:
        lines.append(
            'LoRA against full fine-tuning on the same modules (the "intrinsic rank" picture), means over '
            "modules: the share of the full update's energy in its top r directions, its effective rank, "
            "and how much of LoRA's top-r subspace lies in the full update's top-r one:"
        )
        lines.append("")
        lines.append(
            "| LoRA run | full run | r | full energy in top r | full effective rank | LoRA effective rank "
            "| overlap (out / in) |\n|---|---|---:|---:|---:|---:|---:|"
        )
        import numpy as np

        method = ""
        for (lo, fu), per in a.intrinsic.items():
            vals = list(per.values())
            method = vals[0]["full_method"]
            mean = {
                k: float(np.mean([v[k] for v in vals]))
                for k in (
                    "full_energy_top_r",
                    "full_effective_rank",
                    "lora_effective_rank",
                    "overlap_left",
                    "overlap_right",
                )
            }
            lines.append(
                f"| `{lo}` | `{fu}` | {vals[0]['rank']} | {100 * mean['full_energy_top_r']:.1f}% | "
                f"{mean['full_effective_rank']:.1f} | {mean['lora_effective_rank']:.2f} | "
                f"{mean['overlap_left']:.2f} / {mean['overlap_right']:.2f} |"
            )
        lines.append("")
        lines.append(f"Spectra: LoRA's exact from its factors; the full update's by {method}.")
        lines.append("")
    lines += [
        "Notes:",
        "- trainable params: what trains in this model (LoRA r·(in+out) per adapted matrix; prefix L·(K·C + gates); "
        "full: every weight), as explorer.schema.budget counts it; share: of the base model's parameters.",
        "- storage: the trainable weights in fp16 (2 bytes each), decimal units.",
        "- final train loss: mean training loss over the last 10% of steps (at most the last 1,000); "
        "final held-out loss: on the scenario's fixed held-out set after the last step.",
        "- steps/s: each run's own training-step time (the runs take turns on one thread).",
        "- LLaMA-7B: the same setting (rank, targets, layers, K, L, gates) priced on LLaMA-7B "
        "(32 layers, hidden 4096); L counts the top L of its 32 layers.",
    ]
    return "\n".join(lines) + "\n"


# ---- the command -----------------------------------------------------------------------------------


def _record_fault(r, writer, display_size: int, recorded: set, progress) -> None:
    """Write a stopped run's fault record (at its last good weights, when they were kept), once."""
    from explorer.commands.run import record_fault

    if r.label in recorded:
        return
    recorded.add(r.label)
    progress.done()
    record_fault(r.trainer, writer, display_size, r.fault)
    sys.stderr.write(f"peft-explorer: run {printable(r.label)} stopped at step {r.trainer.step}: {r.fault}\n")


class _Progress:
    """A progress line on stderr: redrawn in place on a terminal, one line per 10% otherwise."""

    def __init__(self, total: int, quiet: bool, stream=None):
        self.total, self.quiet, self.stream = total, quiet, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_draw, self._last_tenth, self._last_step = 0.0, -1, -1

    def update(self, step: int, runner, force: bool = False) -> None:
        if self.quiet or (force and step == self._last_step):
            return
        now = time.perf_counter()
        frac = step / self.total if self.total else 1.0
        if self.tty:
            if not force and now - self._last_draw < 0.25:
                return
        else:
            tenth = int(frac * 10)
            if not force and tenth == self._last_tenth:
                return
            self._last_tenth = tenth
        self._last_draw, self._last_step = now, step
        elapsed = now - self.start
        rate = step / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / rate if rate > 0 else float("nan")
        losses = "  ".join(
            f"{r.label} {'stopped' if r.fault else format_fixed(r.trainer.loss, 3)}" for r in runner.runs
        )
        bar = "#" * int(frac * 20) + "." * (20 - int(frac * 20))
        text = f"[{bar}] {step}/{self.total}  {losses}  {rate:.2f} rounds/s  {format_clock(elapsed)} elapsed, {format_clock(left)} left"
        self.stream.write(("\r" + text) if self.tty else (text + "\n"))
        self.stream.flush()

    def done(self) -> None:
        if not self.quiet and self.tty:
            self.stream.write("\n")
            self.stream.flush()


_TOP_FILES = ("table.csv", "table.md", "analysis.json", MANIFEST)


def comparison_problem(out: Path) -> str | None:
    """Why `out` is not a comparison of ours that --overwrite may replace (None when it is): its
    compare.json must carry our format, and it may hold only our tables and runs/ of recordings."""
    from explorer.schema.outdir import entries, foreign_entries, marker_problem
    from explorer.schema.recording import recording_problem

    problem = marker_problem(out / MANIFEST, FORMAT) or foreign_entries(
        out, lambda name, is_dir: (name == "runs") if is_dir else name in _TOP_FILES
    )
    runs = out / "runs"
    if problem is None and runs.is_dir():
        for name in entries(runs):
            if not (runs / name).is_dir():
                return f"runs/ holds {name!r}, which is not a recording"
            if entries(runs / name) and recording_problem(runs / name) is not None:
                return f"runs/{name} is not a recording ({recording_problem(runs / name)})"
    return problem


def _prepare_out(out: Path, overwrite: bool):
    """Claim (check, create, lock) the output directory; with --overwrite clear the comparison there.
    Returns the held lock."""
    from explorer.schema.outdir import claim_output_dir, entries

    lock = claim_output_dir(out, what="comparison", overwrite=overwrite, ours=comparison_problem)
    try:
        if entries(out):
            for name in _TOP_FILES:
                (out / name).unlink(missing_ok=True)
            if (out / "runs").is_dir():
                shutil.rmtree(out / "runs")
    except BaseException:
        lock.release()
        raise
    return lock


def run(args: argparse.Namespace, base_model=None) -> int:
    """The command. `base_model` (tests only): a model to adapt instead of the shipped one."""
    from explorer.schema.compare import parse_run_spec, unique_labels

    base = base_settings_from_args(args)
    if args.steps < 0:
        raise ValueError(f"steps={args.steps} is out of range: allowed 0 or more")
    if args.record_every < 0:
        raise ValueError(f"record-every={args.record_every} is out of range: allowed 0 (automatic) or more")
    from explorer.core.cpu_threads import check_threads

    check_threads(args.threads)
    specs = unique_labels([parse_run_spec(t) for t in args.runs])
    for s in specs:
        s.settings(base)  # every spec is checked before any work
    out = Path(args.out)
    lock = _prepare_out(out, args.overwrite)
    try:
        return _compare(args, base, specs, out, base_model)
    finally:
        lock.release()


def _compare(args, base, specs, out: Path, base_model) -> int:

    import platform

    import torch

    from explorer.commands.run import finish_recording, record_bytes, record_every, threads_info
    from explorer.core.analysis import NonFiniteInput
    from explorer.engine.compare import CompareRunner
    from explorer.engine.trainer import NonFiniteLoss
    from explorer.schema.compare import TABLE_COLUMNS
    from explorer.schema.files import atomic_write_text
    from explorer.schema.recording import RecordingWriter

    runner = CompareRunner(base, specs, base_model=base_model)
    tuner = runner.use_threads(args.threads)
    ds = base.display_size
    for r in runner.runs:
        r.trainer.eval_loss()
    firsts = [r.trainer.snapshot(ds, with_samples=True) for r in runner.runs]
    every = record_every(args.steps, args.record_every, max(record_bytes(s) for s in firsts))
    command = (
        "python -m explorer " + " ".join(sys.argv[1:])
        if sys.argv[1:2] == ["compare"]
        else "python -m explorer compare " + " ".join(f"--runs {t}" for t in args.runs)
    )
    writers = []
    for r in runner.runs:
        t = r.trainer
        config = {
            "settings": t.settings.to_dict(),
            "device": t.device_label(),
            "device_type": t.device.type,
            "threads": tuner.current,
            "base": t.scenario.info(),
            "steps": args.steps,
            "record_every": every,
            "sample_every": 0,
            "display_size": ds,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "command": command,
            "compare": {"label": r.label, "spec": r.spec.text, "index": r.index, "runs": runner.labels},
        }
        try:
            writers.append(RecordingWriter(out / "runs" / r.label, config))
        except BaseException:
            for w in writers:
                w.close()
            raise
    manifest = {
        "format": FORMAT,
        "version": 1,
        "base_settings": base.to_dict(),
        "steps": args.steps,
        "seed": base.seed,
        "runs": [{"label": s.label, "spec": s.text, "dir": f"runs/{s.label}"} for s in specs],
        "command": command,
        "record_every": every,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))

    progress = _Progress(args.steps, args.quiet)
    recorded_fault = set()
    status = 0
    try:
        for k in range(args.steps + 1):
            if k % every == 0 or k == args.steps:
                last = k == args.steps
                if k:
                    runner.evaluate()
                for i, (r, w) in enumerate(zip(runner.runs, writers)):
                    if r.fault is not None:
                        continue
                    try:
                        snap = firsts[i] if k == 0 else r.trainer.snapshot(ds, with_samples=last)
                    except NonFiniteLoss as exc:  # an update left NaN or infinity: this run stops
                        r.fault = f"{exc}; this run stopped"
                        status = exit_codes.FAULT
                        _record_fault(r, w, ds, recorded_fault, progress)
                        continue
                    snap.state = "paused" if last else "running"
                    snap.steps_per_second = r.summary().steps_per_second
                    w.write(snap, fresh_samples=(k == 0 or last))
            if k == args.steps:
                break
            runner.step_round()
            for r, w in zip(runner.runs, writers):
                if r.fault is not None and r.label not in recorded_fault:
                    _record_fault(r, w, ds, recorded_fault, progress)
                    status = exit_codes.FAULT
            if not runner.active():
                break
            progress.update(k + 1, runner)
        progress.update(runner.step, runner, force=True)
        progress.done()
    except BaseException as exc:
        for r, w in zip(runner.runs, writers):
            finish_recording(r.trainer, w, args.steps, r.trainer.clock.elapsed(), failed=exc, **threads_info(tuner))
        raise
    for r, w in zip(runner.runs, writers):
        finish_recording(r.trainer, w, args.steps, r.trainer.clock.elapsed(), fault=r.fault, **threads_info(tuner))

    runner.evaluate()
    try:
        snap = runner.snapshot(analysis=True)
    except NonFiniteInput:  # a run that faulted without good weights to go back to: tables without analyses
        snap = runner.snapshot(analysis=False)
    rows = snap.table_rows()
    atomic_write_text(out / "table.csv", table_csv(rows, TABLE_COLUMNS))
    first = runner.runs[0].trainer
    info = first.scenario.info()
    base_text = (
        f"the shipped byte-level Llama ({info.get('params', 0):,} parameters)"
        if info.get("kind") == "lm"
        else f"one {info.get('shape', ['?', '?'])[0]}x{info.get('shape', ['?', '?'])[1]} matrix, "
        f"target {info.get('target', '')}"
    )
    header = {
        "scenario": base.scenario,
        "steps": args.steps,
        "seed": base.seed,
        "base": base_text,
        "device": first.device_label(),
    }
    atomic_write_text(out / "table.md", table_markdown(snap, header))
    analysis = snap.analysis.to_json() if snap.analysis is not None else {}
    analysis["runs"] = [
        {
            "label": r.label,
            "method": r.method,
            "rank": r.settings.get("rank") if "lora" in r.method else None,
            "seed": r.settings.get("seed"),
        }
        for r in snap.runs
    ]
    analysis["methods"] = {
        "similarity": "phi(i, j) = ||U_a[:, :i]^T U_b[:, :j]||_F^2 / min(i, j), U = right singular vectors of A "
        "(LoRA paper Sec. 7.2); control: run a's A against a random Gaussian matrix of run b's shape",
        "amplification": "factor = ||ΔW||_F / ||U^T W0 V||_F, U, V = ΔW's singular vectors of its k = rank(ΔW) "
        "non-zero values (sigma > sigma_1 * max(m, n) * eps; Sec. 7.3); proj_w0_top: W0 onto its own top-k; "
        "proj_random: onto a random k-dim basis (seed 0); w0: 'residual' for PiSSA runs (W0 = W - s*B0*A0)",
        "intrinsic": "LoRA ΔW spectrum exact from the factors; the full update ΔW = W - W0 by the method in "
        "full_method",
    }
    atomic_write_text(out / "analysis.json", json.dumps(analysis, indent=1))
    if not args.quiet:
        sys.stderr.write(
            f"wrote {out / 'table.csv'}, {out / 'table.md'}, {out / 'analysis.json'} and "
            f"{len(writers)} recordings under {out / 'runs'}\n"
        )
    return status
