"""Accuracy and cost of the randomized top-q singular values (explorer.core.analysis.randomized_svd)
against exact `svdvals`, on the matrices full fine-tuning's live spectrum meets above 512 per side.

    python bench/bench_randomized_svd.py [--size 1024] [--q 64] [--steps 200]

Prints a markdown table: per matrix and per configuration (the shipped one: q + max(q, 10) columns;
the old one: q + 10), the largest relative error of the top q values and of the top 16, whether every
value is at most the exact one (Rayleigh-Ritz values are lower bounds), and the median time of three
calls on one CPU thread. Both configurations run interleaved in one process. The figures quoted in
analysis.py's LOWRANK_MIN_OVERSAMPLE comment (and held by tests/core/test_analysis.py) come from here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from explorer.core import analysis
from explorer.engine.trainer import Trainer
from explorer.schema.settings import TrainSettings


def test_matrices(size: int, steps: int):
    """(name, matrix): a Gaussian matrix, a nearly flat spectrum (1 -> 0.5), and the full fine-tuning
    update W - W0 of the matrix scenario (planted rank 8) and of its seed preset (2I - W0, full rank)
    after `steps` steps at lr 1e-3."""
    g = torch.Generator().manual_seed(0)
    yield "Gaussian", torch.randn(size, size, generator=g)
    U = torch.linalg.qr(torch.randn(size, size, generator=g))[0]
    V = torch.linalg.qr(torch.randn(size, size, generator=g))[0]
    yield "flat spectrum 1 -> 0.5", (U * torch.linspace(1.0, 0.5, size)) @ V.T
    for name, preset in (("matrix scenario, full FT", "none"), ("seed preset, full FT", "seed")):
        t = Trainer(
            TrainSettings(
                scenario="matrix", method="full", size_in=size, size_out=size, lr=1e-3, device="cpu", preset=preset
            )
        )
        for _ in range(steps):
            t.train_step()
        src = t.scenario.matrix_sources(t.model, t.settings)[0]
        yield f"{name} ({steps} steps)", (src.weight.detach() - src.base).float()


def _old(W: torch.Tensor, q: int) -> torch.Tensor:
    """The configuration before: q + 10 columns, 4 power iterations."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        _, s, _ = torch.svd_lowrank(W, q=q + 10, niter=analysis.LOWRANK_NITER)
    return s[:q]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--q", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    q = args.q
    print(f"load average {os.getloadavg()[0]:.2f}; {args.size}x{args.size}, top q={q}, one CPU thread\n")
    print("| matrix | configuration | max rel. error (top q) | top 16 | all <= exact | median ms |")
    print("|---|---|---:|---:|---|---:|")
    configs = (
        (
            f"q + max(q, 10) = {analysis.lowrank_columns(q, args.size)} columns",
            lambda W: analysis.randomized_svd(W, q)[1],
        ),
        (f"q + 10 = {q + 10} columns (before)", lambda W: _old(W, q)),
    )
    for name, W in test_matrices(args.size, args.steps):
        exact = torch.linalg.svdvals(W)[:q]
        times = {label: [] for label, _ in configs}
        values = {}
        for _ in range(3):  # interleaved
            for label, fn in configs:
                t0 = time.perf_counter()
                values[label] = fn(W)
                times[label].append((time.perf_counter() - t0) * 1e3)
        for label, _ in configs:
            rel = (exact - values[label]).abs() / exact
            below = bool((values[label] <= exact * (1 + 1e-5)).all())
            print(
                f"| {name} | {label} | {rel.max():.2e} | {rel[:16].max():.2e} | {below} | "
                f"{statistics.median(times[label]):.0f} |"
            )


if __name__ == "__main__":
    main()
