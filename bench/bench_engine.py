"""What live instrumentation costs the training loop, measured through the real worker thread.

    python bench/bench_engine.py [--seconds S] [--rounds R] [--quick]

For each case (the lm scenario at its defaults, the matrix scenario at 128 and 1024, and on CUDA the
matrix scenario at 4096 x 4096), in one run and interleaved round by round so a busy machine hurts
both sides alike:
- steps/s while playing with snapshots at the default rate (30/s, held-out loss, samples: exactly
  what the app gets) against the same worker with live snapshots off; target ratio >= 0.95;
- the cost of one snapshot (median ms; reduced on the device, one copy to the host), of the held-out
  loss and of one round of samples (lm);
- bytes per snapshot (arrays the views get, histories apart) against the full tensors behind them
  (every adapted ΔW and W0 at full size, plus the trained tensors).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from explorer.core import device as devices  # noqa: E402
from explorer.engine.trainer import Trainer  # noqa: E402
from explorer.engine.worker import TrainingWorker  # noqa: E402
from explorer.schema.settings import TrainSettings  # noqa: E402


def _play_for(worker: TrainingWorker, seconds: float, last: tuple) -> tuple[tuple, tuple]:
    """(steps, running seconds, worker-thread CPU seconds) of one stretch of play. The segment clock
    runs from play to pause in the worker thread, so the held-out loss and samples posted on pausing
    are not counted; CPU seconds are what other processes on a busy machine cannot inflate."""
    worker.play()
    worker.wait_for(lambda s: s.state == "running", 60)
    time.sleep(seconds)  # a benchmark, not a test: it just lets the thread train
    worker.pause()
    end = worker.wait_for(lambda s: s.state in ("paused", "fault"), 120)
    if end.state == "fault":
        raise RuntimeError(end.fault)
    cpu = worker._trainer.clock.cpu_total  # frozen while paused; read after the paused snapshot
    now = (end.step, end.time, cpu)
    return tuple(b - a for a, b in zip(last, now)), now


def throughput(settings: TrainSettings, seconds: float, rounds: int) -> dict:
    threads = devices.worker_threads()
    live = TrainingWorker(settings, threads=threads)
    bare = TrainingWorker(settings, threads=threads, instrument=False)
    totals = {"live": [0, 0.0, 0.0], "bare": [0, 0.0, 0.0]}
    last = {}
    try:
        for name, w in (("live", live), ("bare", bare)):
            w.start()
            first = w.wait_for(timeout=300)
            if first.state == "fault":
                raise RuntimeError(first.fault)
            last[name] = (first.step, first.time, 0.0)
        posted_before = live.snapshots_posted
        instrument_before = live.instrument_seconds
        for _ in range(rounds):
            for name, w in (("bare", bare), ("live", live)):
                delta, last[name] = _play_for(w, seconds, last[name])
                for i in range(3):
                    totals[name][i] += delta[i]
        live_posts = live.snapshots_posted - posted_before - 2 * rounds  # minus the play / pause posts
        instrument = live.instrument_seconds - instrument_before
    finally:
        live.close()
        bare.close()
    wall = {k: v[0] / v[1] for k, v in totals.items()}
    cpu = {k: v[0] / v[2] for k, v in totals.items()}
    return {
        "threads": threads,
        "steps_s_live": wall["live"],
        "steps_s_bare": wall["bare"],
        "ratio": wall["live"] / wall["bare"],
        "cpu_live": cpu["live"],
        "cpu_bare": cpu["bare"],
        "cpu_ratio": cpu["live"] / cpu["bare"],
        "snapshots_s": live_posts / totals["live"][1],
        "share": instrument / totals["live"][1],
    }


def costs(settings: TrainSettings, n: int = 30) -> dict:
    t = Trainer(settings)
    for _ in range(5):
        t.train_step()
    dev = t.device

    def timed(fn, k):
        out = []
        for _ in range(k):
            devices.synchronize(dev)
            t0 = time.perf_counter()
            fn()
            devices.synchronize(dev)
            out.append(time.perf_counter() - t0)
        return statistics.median(out) * 1000

    step_ms = timed(t.train_step, n)
    snap_ms = timed(lambda: t.snapshot(settings.display_size), n)
    eval_ms = timed(t.eval_loss, max(3, n // 5))
    sample_ms = timed(t.samples, 3) if hasattr(t.scenario, "samples") else None
    snap = t.snapshot(settings.display_size)
    view_bytes = sum(
        m.delta.nbytes
        + m.base.nbytes
        + m.spectrum.nbytes
        + (0 if m.target is None else m.target.nbytes + m.target_spectrum.nbytes)
        for m in snap.matrices.values()
    )
    view_bytes += sum(p.gates.nbytes + (0 if p.attention is None else p.attention.nbytes) for p in snap.prefixes)
    copied = sum(m.delta.nbytes + m.spectrum.nbytes for m in snap.matrices.values())
    copied += sum(p.gates.nbytes + 4 + (0 if p.attention is None else p.attention.nbytes) for p in snap.prefixes)
    h = snap.history
    hist_bytes = sum(
        a.nbytes for a in (h.steps, h.loss, h.eval_steps, h.eval_loss, h.gate_steps, h.gates, h.spectrum_steps)
    ) + sum(a.nbytes for a in h.spectra.values())
    full_bytes = sum(2 * 4 * m.shape[0] * m.shape[1] for m in snap.matrices.values())
    full_bytes += sum(v.numel() * v.element_size() for v in t.trained_tensors().values())
    return {
        "device": t.device_label(),
        "step_ms": step_ms,
        "snapshot_ms": snap_ms,
        "eval_ms": eval_ms,
        "sample_ms": sample_ms,
        "snapshot_bytes": view_bytes,
        "copied_bytes": copied,
        "history_bytes": hist_bytes,
        "full_bytes": full_bytes,
        "matrices": len(snap.matrices),
        "prefix_layers": len(snap.prefixes),
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def report(name: str, settings: TrainSettings, seconds: float, rounds: int) -> None:
    print(f"\n== {name}")
    c = costs(settings)
    print(f"device            {c['device']}; {c['matrices']} adapted matrices, {c['prefix_layers']} prefix layers")
    print(f"train step        {c['step_ms']:.2f} ms (median)")
    print(f"one snapshot      {c['snapshot_ms']:.2f} ms (median; reduce on device + one host copy)")
    print(f"held-out loss     {c['eval_ms']:.2f} ms")
    if c["sample_ms"] is not None:
        print(f"samples           {c['sample_ms']:.0f} ms (adapted model, {96} bytes; the base sample is cached)")
    print(
        f"bytes/snapshot    {_mb(c['snapshot_bytes'])} of arrays (+ {_mb(c['history_bytes'])} of histories) "
        f"vs {_mb(c['full_bytes'])} of full tensors (ΔW and W0 at full size + trained tensors): "
        f"{c['full_bytes'] / max(1, c['snapshot_bytes']):.1f}x smaller"
    )
    print(
        f"copied/snapshot   {_mb(c['copied_bytes'])} from the device (pooled ΔW, spectra, gates, attention; "
        f"pooled W0 and the target are copied once per segment)"
    )
    tp = throughput(settings, seconds, rounds)
    print(
        f"steps/s           {tp['steps_s_live']:.1f} with live snapshots ({tp['snapshots_s']:.1f}/s posted) vs "
        f"{tp['steps_s_bare']:.1f} without, worker threads {tp['threads']}: ratio {tp['ratio']:.3f} "
        f"(target >= 0.95) {'OK' if tp['ratio'] >= 0.95 else 'BELOW TARGET'}"
    )
    print(
        f"instrumentation   {100 * tp['share']:.2f}% of the running time (snapshots, held-out loss, samples; "
        f"measured inside the worker)"
    )
    print(
        f"steps/CPU-s       {tp['cpu_live']:.1f} with vs {tp['cpu_bare']:.1f} without (worker-thread CPU time, "
        f"which other processes cannot inflate): ratio {tp['cpu_ratio']:.3f} "
        f"{'OK' if tp['cpu_ratio'] >= 0.95 else 'BELOW TARGET'}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per stretch of play (default 3)")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved rounds per case (default 8)")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s per case")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this text")
    args = ap.parse_args()
    torch.set_num_threads(devices.worker_threads())  # the costs below, measured as the worker runs
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
    print(
        f"torch {torch.__version__}; {devices.worker_threads()} worker thread(s) of "
        f"{len(__import__('os').sched_getaffinity(0))} cores; cuda: {torch.cuda.is_available()}"
    )
    cases = [
        ("lm scenario, defaults (LoRA r=8 on q_proj, v_proj)", TrainSettings(device="cpu")),
        ("lm scenario, lora+prefix", TrainSettings(device="cpu", method="lora+prefix")),
        ("matrix 128 x 128, LoRA r=8", TrainSettings(scenario="matrix", device="cpu")),
        ("matrix 1024 x 1024, LoRA r=8", TrainSettings(scenario="matrix", size_in=1024, size_out=1024, device="cpu")),
        (
            "matrix 1024 x 1024, full fine-tuning",
            TrainSettings(scenario="matrix", method="full", size_in=1024, size_out=1024, device="cpu"),
        ),
    ]
    if torch.cuda.is_available():
        cases += [
            ("CUDA lm scenario, defaults", TrainSettings(device="cuda")),
            (
                "CUDA matrix 4096 x 4096, LoRA r=8",
                TrainSettings(scenario="matrix", size_in=4096, size_out=4096, device="cuda", batch_size=256),
            ),
            (
                "CUDA matrix 4096 x 4096, full fine-tuning",
                TrainSettings(
                    scenario="matrix", method="full", size_in=4096, size_out=4096, device="cuda", batch_size=256
                ),
            ),
        ]
    for name, settings in cases:
        if args.only and args.only not in name:
            continue
        report(name, settings, args.seconds, args.rounds)
    if not torch.cuda.is_available():
        print("\n== CUDA matrix 4096 x 4096\nskipped: no GPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
