"""What a live snapshot's heatmaps cost on the way to the window, at real model shapes.

    python bench/bench_heatmaps.py [--rounds R] [--display-size D] [--shapes llama-7b,llama-2-70b]
                                   [--engine] [--device cpu|cuda]

Snapshots of a LoRA run on all seven projections of LLaMA-7B (224 matrices) and Llama-2-70B (560),
built without the model (tests/snapshot_factory.scale_snapshot: the arrays a view reads at their real
sizes). For each, interleaved round by round so a busy machine hurts all sides alike, the bytes and
the median time of pickling them as the process relay does (ForkingPickler; nothing is unpickled):

- before: every matrix's pooled ΔW and W0 in every snapshot (what the engine sent until now);
- first:  the matrix on view's ΔW and W0, every matrix's norms and spectrum (the first snapshot of
          a segment, of a new choice or of a new display size);
- later:  the matrix on view's ΔW only (every other snapshot: W0 stays in the window).

`--engine` also times the device work of one snapshot's matrices from the LoRA factors (7B shapes,
rank 8): every matrix's spectrum by QR of its factors, and the pooled ΔW of every matrix against that
of one, so the share the spectra keep is measured, not guessed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from multiprocessing.reduction import ForkingPickler  # noqa: E402

import snapshot_factory as sf  # noqa: E402

from explorer.schema.format import format_bytes  # noqa: E402


def _pickle_ms(snap, n: int = 1) -> tuple[int, float]:
    t0 = time.perf_counter()
    for _ in range(n):
        data = ForkingPickler.dumps(snap)
    return len(data), (time.perf_counter() - t0) * 1000 / n


def sizes(shapes, rounds: int, ds: int) -> None:
    print(f"display_size {ds}, LoRA r=8 on {', '.join(sf.ALL_TARGETS)}; median of {rounds} interleaved rounds")
    print(f"{'model':<13}{'matrices':>9}  {'before':>20}  {'first':>20}  {'later':>20}  {'later/before':>13}")
    for shape in shapes:
        whole = sf.scale_snapshot(shape, method="lora", display_size=ds, rank=8)
        cases = {
            "before": whole,
            "first": sf.as_sent(whole, held=True),
            "later": sf.as_sent(whole, held=False),
        }
        times = {k: [] for k in cases}
        nbytes = {}
        for _ in range(rounds):
            for k, snap in cases.items():
                nbytes[k], ms = _pickle_ms(snap)
                times[k].append(ms)
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = [f"{format_bytes(nbytes[k])} {med[k]:6.1f} ms" for k in cases]
        ratio = f"{nbytes['later'] / nbytes['before']:.4f}"
        print(f"{shape:<13}{len(whole.matrices):>9}  {cells[0]:>20}  {cells[1]:>20}  {cells[2]:>20}  {ratio:>13}")
        spectra = sum(m.spectrum.nbytes for m in whole.matrices.values())
        print(
            f"{'':<13}every matrix's spectrum: {format_bytes(spectra)}; pickling later/before: "
            f"{med['later'] / med['before']:.4f}"
        )


def engine(rounds: int, ds: int, device: str) -> None:
    import torch

    from explorer.core.analysis import pooled_delta, spectrum_from_factors, to_host

    layers, hidden, heads, kv_heads, inter, _ = sf._SCALE_SHAPES["llama-7b"]
    shapes = sf._shapes(hidden, heads, kv_heads, inter)
    g = torch.Generator().manual_seed(0)
    factors = []
    for _layer in range(layers):
        for t in sf.ALL_TARGETS:
            out_f, in_f = shapes[t]
            a = (torch.randn(8, in_f, generator=g) / in_f**0.5).to(device)
            b = (torch.randn(out_f, 8, generator=g) * 1e-3).to(device)
            factors.append((a, b))

    def run(kind: str) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        parts = []
        for k, (a, b) in enumerate(factors):
            if kind in ("spectra", "before"):
                parts.append(spectrum_from_factors(a, b, 2.0).values)
            if kind == "before" or (kind == "after" and k == 0):
                parts.append(pooled_delta(a, b, 2.0, ds, ds))
            if kind == "after":
                parts.append(spectrum_from_factors(a, b, 2.0).values)
        to_host(parts)
        return (time.perf_counter() - t0) * 1000

    kinds = ("before", "after", "spectra")
    times = {k: [] for k in kinds}
    run("before")  # warm-up
    for _ in range(rounds):
        for k in kinds:
            times[k].append(run(k))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nengine, {device}, LLaMA-7B shapes, {len(factors)} LoRA matrices r=8, display_size {ds}:")
    print(f"  every spectrum + every pooled ΔW (before): {med['before']:.1f} ms")
    print(
        f"  every spectrum + the pooled ΔW on view (after): {med['after']:.1f} ms "
        f"(after/before {med['after'] / med['before']:.3f})"
    )
    print(f"  every spectrum alone: {med['spectra']:.1f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--display-size", type=int, default=128)
    ap.add_argument("--shapes", default="llama-7b,llama-2-70b")
    ap.add_argument("--engine", action="store_true", help="also time the device work from the factors")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in sf._SCALE_SHAPES]
    if unknown or args.rounds < 1:
        ap.error(f"--shapes: unknown {', '.join(unknown)}" if unknown else "--rounds: at least 1")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    sizes(shapes, args.rounds, args.display_size)
    if args.engine:
        engine(args.rounds, args.display_size, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
