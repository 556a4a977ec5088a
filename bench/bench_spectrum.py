"""Spectrum of ΔW = s·B·A from the factors (QR + r×r SVD) against dense `svdvals` of the formed ΔW.

    python bench/bench_spectrum.py [--repeats 5]

Prints a markdown table: the median time of each path (dense: --repeats runs; factors: ten times
as many, as it is cheap; each after one warm-up call), their ratio, and the largest difference of
the values relative to the top one. 1024x1024 runs on the CPU always; 4096x4096 on the GPU when
there is one. About half a minute on 2 CPU cores. The load average is printed because on a shared
machine other work inflates the dense timings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from explorer.core.analysis import spectrum_from_factors

RANKS = (8, 16, 64)
SCALING = 2.0


def _median_ms(fn, device: torch.device, repeats: int) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up: first-call allocations and kernel selection are not what we measure
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench(size: int, device: torch.device, repeats: int) -> list[str]:
    rows = []
    g = torch.Generator(device=device).manual_seed(0)
    for r in RANKS:
        A = torch.randn(r, size, generator=g, device=device) / size**0.5
        B = torch.randn(size, r, generator=g, device=device)
        dense_ms = _median_ms(lambda A=A, B=B: torch.linalg.svdvals(SCALING * B @ A), device, repeats)
        # The fast path is cheap, so it gets more repeats: its median is then robust to the odd
        # scheduler hiccup on a shared machine that would otherwise dominate a 0.1 ms figure.
        factor_ms = _median_ms(lambda A=A, B=B: spectrum_from_factors(A, B, SCALING).values, device, 10 * repeats)
        dense = torch.linalg.svdvals(SCALING * B @ A)[:r]
        ours = spectrum_from_factors(A, B, SCALING).values
        rel = ((ours - dense).abs().max() / dense[0]).item()
        rows.append(
            f"| {size}x{size} | {device.type} | {r} | {dense_ms:,.2f} | {factor_ms:,.3f} "
            f"| {dense_ms / factor_ms:,.0f}x | {rel:.1e} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    cpu = f"{torch.get_num_threads()} CPU threads"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print(
        f"torch {torch.__version__}, {cpu}"
        + (f", {gpu}" if gpu else "")
        + f"; median of {args.repeats} (dense) / {10 * args.repeats} (factors) runs, float32; "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
    )
    print("| ΔW | device | r | dense svdvals (ms) | from factors (ms) | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|---|")
    for row in bench(1024, torch.device("cpu"), args.repeats):
        print(row)
    if gpu:
        for row in bench(4096, torch.device("cuda"), args.repeats):
            print(row)
    else:
        print("| 4096x4096 | cuda | – | skipped: no GPU | | | |")


if __name__ == "__main__":
    main()
