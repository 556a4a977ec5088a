"""Resizing a LLaMA-7B-sized LoRA adapter to 95 % energy: from the factors against a dense SVD of each ΔW.

    python bench/bench_resize.py [--dense-modules 1] [--repeats 3] [--energy 0.95] [--dtype fp16]

The adapter: r = 64 on q_proj, k_proj, v_proj, o_proj of 32 layers (128 modules, 4096 x 4096,
67,108,864 parameters; 134 MB in fp16), random factors with a decaying spectrum (as trained updates
have) from a fixed seed. Times, interleaved in one run (ours, dense, ours, dense, ...):

- ours, the maths: per module, QR of B and Aᵀ, SVD of the 64 x 64 core, the energy rank, the new
  factors (`best_rank_k_factors`); each module is generated, resized and dropped in turn, so at
  most one module's factors are alive;
- ours, end to end: `resize_adapter(DIR, OUT, energy=E)` on the adapter written to a temporary
  directory: strict read, plan, new factors, write, read back and check;
- dense: per module, form ΔW = scaling · B @ A in float32, `torch.linalg.svd`, take the top k and
  build the same factors. Measured on --dense-modules modules only and EXTRAPOLATED to all 128 (a
  4096 x 4096 SVD with vectors takes a minute or more on 2 CPU cores); the output says so.

It checks the two agree (relative Frobenius distance of the two rank-k approximations of the
measured module, ours before its factors are rounded to the adapter's dtype; that rounding is
printed beside it) and prints the load average: on a shared machine other work inflates the timings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from explorer.core.lora import lora_scaling
from explorer.core.peft_files import write_lora_adapter
from explorer.core.resize import best_rank_k_factors, factor_svd, resize_adapter
from explorer.schema.rank_advice import energy_rank

LAYERS, HIDDEN, RANK, ALPHA = 32, 4096, 64, 128
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
N_MODULES = LAYERS * len(TARGETS)
SCALING = lora_scaling(RANK, ALPHA, False)


def module_factors(index: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Module `index`'s random factors, the same on every call (seeded per module)."""
    g = torch.Generator().manual_seed(index)
    decay = torch.logspace(0, -1.5, RANK)  # σ over 1.5 decades: 95 % energy needs well under 64
    A = torch.randn(RANK, HIDDEN, generator=g) / HIDDEN**0.5
    B = torch.randn(HIDDEN, RANK, generator=g) * decay * 0.05
    return A.to(dtype), B.to(dtype)


def module_name(index: int) -> str:
    return f"model.layers.{index // len(TARGETS)}.self_attn.{TARGETS[index % len(TARGETS)]}"


def ours_maths(energy: float, dtype: torch.dtype) -> tuple[float, int]:
    """Seconds spent resizing every module from its factors (generation not counted), kept ranks."""
    spent, kept = 0.0, 0
    for i in range(N_MODULES):
        A, B = module_factors(i, dtype)
        t0 = time.perf_counter()
        _, S, _ = factor_svd(A, B, SCALING, vectors=False)
        k = max(1, energy_rank(S.numpy(), energy))
        best_rank_k_factors(A, B, SCALING, k, lora_scaling(k, ALPHA, False))
        spent += time.perf_counter() - t0
        kept += k
    return spent, kept


def dense_one(index: int, energy: float, dtype: torch.dtype) -> tuple[float, float, float]:
    """Seconds for the dense path on one module; the relative Frobenius distance between its rank-k
    approximation and ours (ours kept in float64); and what storing our factors in `dtype` adds."""
    A, B = module_factors(index, dtype)
    t0 = time.perf_counter()
    delta = SCALING * (B.float() @ A.float())
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    k = max(1, energy_rank(S.numpy(), energy))
    new_scaling = lora_scaling(k, ALPHA, False)
    root = (S[:k] / new_scaling).sqrt()
    B_k, A_k = U[:, :k] * root, root[:, None] * Vh[:k]
    seconds = time.perf_counter() - t0
    dense = new_scaling * (B_k.double() @ A_k.double())
    del delta, U, Vh

    def ours(a, b):
        oA, oB = best_rank_k_factors(a, b, SCALING, k, new_scaling)
        return new_scaling * (oB.double() @ oA.double())

    exact = ours(A.double(), B.double())
    stored = ours(A, B)
    norm = torch.linalg.norm(exact)
    return seconds, float(torch.linalg.norm(exact - dense) / norm), float(torch.linalg.norm(stored - exact) / norm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense-modules", type=int, default=1, help="modules measured densely (then extrapolated)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each of our measurements")
    parser.add_argument("--energy", type=float, default=0.95)
    parser.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    args = parser.parse_args()
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu, load average {load:.2f} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "adapter"
        t0 = time.perf_counter()
        modules = {module_name(i): dict(zip("AB", module_factors(i, dtype))) for i in range(N_MODULES)}
        write_lora_adapter(src, modules, r=RANK, lora_alpha=ALPHA, target_modules=list(TARGETS))
        del modules
        size = (src / "adapter_model.safetensors").stat().st_size
        print(
            f"adapter: {LAYERS} layers x {','.join(TARGETS)}, {HIDDEN}x{HIDDEN}, r={RANK}, {args.dtype}, "
            f"{N_MODULES} modules, {N_MODULES * 2 * HIDDEN * RANK:,} parameters, {size / 1e6:.0f} MB "
            f"(generated in {time.perf_counter() - t0:.1f} s)"
        )
        ours_maths(args.energy, dtype)  # warm-up
        maths, ends, dense, worst, rounding = [], [], [], 0.0, 0.0
        n_dense = max(1, min(args.dense_modules, N_MODULES))
        kept = after = 0
        for i in range(max(args.repeats, n_dense)):
            if i < args.repeats:
                seconds, kept = ours_maths(args.energy, dtype)
                maths.append(seconds)
                out = Path(tmp) / f"out{i}"
                t0 = time.perf_counter()
                result = resize_adapter(src, out, energy=args.energy)
                ends.append(time.perf_counter() - t0)
                after = result.plan.params_after
            if i < n_dense:
                seconds, distance, stored = dense_one(i, args.energy, dtype)
                dense.append(seconds)
                worst, rounding = max(worst, distance), max(rounding, stored)
    ours, end = statistics.median(maths), statistics.median(ends)
    per_dense = statistics.mean(dense)
    dense_total = per_dense * N_MODULES
    measured = (
        "measured"
        if n_dense == N_MODULES
        else f"measured on {n_dense} of {N_MODULES} modules, extrapolated x{N_MODULES / n_dense:g}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    before = N_MODULES * 2 * HIDDEN * RANK
    print(
        f"energy {args.energy:g}: mean rank {kept / N_MODULES:.1f} of {RANK}, parameters {before:,} → {after:,} "
        f"({100 * after / before:.1f} %)"
    )
    print()
    print(f"| path | per module | all {N_MODULES} modules |")
    print("|---|---|---|")
    print(
        f"| ours: QR + core SVD + new factors (float64), median of {args.repeats} | "
        f"{ours / N_MODULES * 1e3:.1f} ms | {ours:.2f} s |"
    )
    print(
        f"| ours end to end: read + plan + factors + write + read back, median of {args.repeats} | "
        f"{end / N_MODULES * 1e3:.1f} ms | {end:.2f} s |"
    )
    print(
        f"| dense: form ΔW (fp32) + torch.linalg.svd + new factors | {per_dense:,.1f} s | "
        f"{dense_total:,.0f} s ({measured}) |"
    )
    print()
    print(
        f"speed-up {dense_total / ours:,.0f}x (maths), {dense_total / end:,.0f}x (end to end); the two rank-k "
        f"approximations differ by {worst:.1e} (relative Frobenius; ours in float64, dense in float32); storing "
        f"our factors in {args.dtype} adds {rounding:.1e}; load average {load:.2f} at the end"
    )


if __name__ == "__main__":
    main()
