"""Inspecting a LLaMA-7B-sized LoRA adapter end to end, against a dense SVD per module.

    python bench/bench_inspect.py [--dense-modules 1] [--repeats 3] [--dtype fp16]

Generates, in a temporary directory, a PEFT adapter the size of LLaMA-7B's at r = 16 on q_proj and
v_proj (32 layers x 2 modules, 4096 x 4096, 8,388,608 parameters, 16.8 MB in fp16), then times:

- ours, end to end: `inspect_adapter(DIR)` (strict read and validation of the files, spectra from the
  factors by QR, every summary figure, the layer x module grid) plus the JSON of `inspect --json`;
  the median of --repeats runs;
- dense: per module, form ΔW = scaling · B @ A in float32 and take `torch.linalg.svdvals` of it.
  This is measured on the first --dense-modules modules only and EXTRAPOLATED to all 64 (a full
  dense run takes many minutes on 2 CPU cores); the output says so. Pass --dense-modules 64 to
  measure them all.

It also checks that the two agree (the top r singular values, relative to the largest). About a
minute on 2 CPU cores, nearly all of it in the one dense SVD (30 to 70 s for a 4096 x 4096 matrix). The load average is printed because on a shared
machine other work inflates the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from explorer.core.inspect_adapter import inspect_adapter
from explorer.core.peft_files import read_adapter, write_lora_adapter

LAYERS, HIDDEN, RANK, ALPHA = 32, 4096, 16, 32
TARGETS = ("q_proj", "v_proj")


def generate(directory: Path, dtype: torch.dtype) -> None:
    """A random adapter with a decaying spectrum (as trained updates have), fixed seed."""
    g = torch.Generator().manual_seed(0)
    decay = torch.logspace(0, -2, RANK)
    modules = {}
    for layer in range(LAYERS):
        for target in TARGETS:
            A = torch.randn(RANK, HIDDEN, generator=g) / HIDDEN**0.5
            B = torch.randn(HIDDEN, RANK, generator=g) * decay * 0.05
            modules[f"model.layers.{layer}.self_attn.{target}"] = {"A": A.to(dtype), "B": B.to(dtype)}
    write_lora_adapter(directory, modules, r=RANK, lora_alpha=ALPHA, target_modules=list(TARGETS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dense-modules", type=int, default=1, help="modules measured with the dense SVD (then extrapolated to all 64)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of our end-to-end inspection")
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    args = parser.parse_args()
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu, load average {load:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "adapter"
        t0 = time.perf_counter()
        generate(directory, dtype)
        size = (directory / "adapter_model.safetensors").stat().st_size
        n_modules = LAYERS * len(TARGETS)
        print(
            f"adapter: {LAYERS} layers x {','.join(TARGETS)}, {HIDDEN}x{HIDDEN}, r={RANK}, {args.dtype}, "
            f"{n_modules} modules, {n_modules * 2 * HIDDEN * RANK:,} parameters, {size / 1e6:.1f} MB "
            f"(generated in {time.perf_counter() - t0:.1f} s)"
        )

        inspect_adapter(directory)  # warm-up (imports, allocator)
        times, read_times = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            adapter = read_adapter(directory)
            read_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            report = inspect_adapter(directory)
            json.dumps(report.to_json_dict(), allow_nan=False)
            times.append(time.perf_counter() - t0)
        ours = statistics.median(times)
        read = statistics.median(read_times)

        k = max(1, min(args.dense_modules, n_modules))
        dense_times, worst = [], 0.0
        for f in adapter.lora[:k]:
            A, B = f.A.float(), f.B.float()
            t0 = time.perf_counter()
            delta = f.scaling * (B @ A)
            values = torch.linalg.svdvals(delta)
            dense_times.append(time.perf_counter() - t0)
            mine = torch.tensor(report.module(f.name).singular_values)
            worst = max(worst, ((values[:RANK] - mine).abs().max() / values[0]).item())
            del delta
        per_dense = statistics.mean(dense_times)
        dense_total = per_dense * n_modules
        measured = (
            "measured" if k == n_modules else f"measured on {k} of {n_modules} modules, extrapolated x{n_modules / k:g}"
        )

    print()
    print("| path | per module | all 64 modules |")
    print("|---|---|---|")
    print(
        f"| ours, end to end (read + validate + spectra + figures + JSON), median of {args.repeats} "
        f"| {ours / n_modules * 1e3:.1f} ms | {ours:.2f} s (of which reading and validating {read:.2f} s) |"
    )
    print(
        f"| dense: form ΔW (fp32) + torch.linalg.svdvals | {per_dense * 1e3:,.0f} ms | {dense_total:,.0f} s "
        f"({measured}) |"
    )
    print()
    print(
        f"speed-up {dense_total / ours:,.0f}x; largest difference of the top {RANK} singular values, relative to "
        f"the largest: {worst:.1e}"
    )


if __name__ == "__main__":
    main()
