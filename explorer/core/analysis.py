"""Analyses of weight updates: spectra, summary figures, pooled heatmaps, LoRA-paper comparisons.

Everything here is torch only and runs on the device the tensors live on; functions return tensors
(or, for the few summary helpers, python floats) and leave copying to the host to the caller, so a
live view pays for one small transfer, never for a full matrix. The maths is in docs/reference.md.

All work is done in float32 under `torch.no_grad()`: bf16/fp16 factors lose too much precision in a
QR or an SVD, and none of these figures is ever differentiated.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Above this smaller dimension an exact SVD of a dense matrix gets slow on a CPU (a 4096x4096
# `svdvals` takes seconds), so `dense_spectrum(method="auto")` switches to a randomized method.
DENSE_EXACT_MAX = 1024
# The randomized method (Halko, Martinsson & Tropp 2011) returns the leading q values from a subspace
# of q + max(q, LOWRANK_MIN_OVERSAMPLE) columns after LOWRANK_NITER power iterations. Its values are
# Rayleigh-Ritz values, so never above the true ones, and least accurate near the cut-off (index q),
# by how much depends on how fast the spectrum decays there. Measured at 1024 x 1024, q = 64
# (bench/bench_randomized_svd.py; held by tests/core/test_analysis.py): 6e-6 relative for the matrix
# scenario's full fine-tuning update (planted rank 8), 6e-3 for the seed preset's full-rank update,
# 1.6 % for a Gaussian matrix (top 16: 0.5 %), 3.3 % for a nearly flat spectrum (1 -> 0.5; top 16:
# 2.1 %). With the old 10 extra columns these were 1.5 %, 4.1 %, 5.3 % and 5.9 %.
LOWRANK_Q = 256
LOWRANK_MIN_OVERSAMPLE = 10
LOWRANK_NITER = 4


@dataclass
class Spectrum:
    """Singular values (descending) and, when asked for, singular vectors as columns."""

    values: torch.Tensor
    U: torch.Tensor | None = None  # (out, k) left singular vectors
    V: torch.Tensor | None = None  # (in, k) right singular vectors


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float32)


class NonFiniteInput(ValueError):
    """An analysis was handed NaN or infinite values (a diverged run): said in one line, not a LinAlgError."""


@contextlib.contextmanager
def _finite_inputs(what: str, *tensors: torch.Tensor):
    """Turn LAPACK's failure on non-finite input into NonFiniteInput. The check runs only when the
    decomposition failed, so a healthy call pays nothing (no device sync)."""
    try:
        yield
    except torch.linalg.LinAlgError:
        if all(bool(torch.isfinite(t).all()) for t in tensors):
            raise
        raise NonFiniteInput(f"{what}: the matrix holds NaN or infinite values (did training diverge?)") from None


# --- spectra ------------------------------------------------------------------------------------


@torch.no_grad()
def spectrum_from_factors(A: torch.Tensor, B: torch.Tensor, scaling: float = 1.0, vectors: bool = False) -> Spectrum:
    """Spectrum of ΔW = scaling · B @ A without forming ΔW (A: (r, in), B: (out, r)).

    With B = Qb Rb and A^T = Qa Ra (reduced QR), ΔW = Qb (scaling · Rb Ra^T) Qa^T, and Qb, Qa have
    orthonormal columns, so ΔW's singular values are those of the small core `scaling · Rb Ra^T`
    and its singular vectors are Qb·Uc and Qa·Vc. Cost O((in + out) r^2), not O(in · out · min).

    `values` always has length r (the adapter's rank), descending; directions ΔW cannot have
    (B = 0 at step 0, or r > min(in, out)) come out as exact or round-off zeros, never NaN, because
    Householder QR and SVD of a zero matrix are well defined. U and V have k = min(r, out, in)
    columns (the most a rank-r product of that shape can use) and satisfy ΔW = U diag(values[:k]) V^T.
    """
    if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[1]:
        raise ValueError(
            f"factor shapes A={tuple(A.shape)} (r, in) and B={tuple(B.shape)} (out, r) do not fit together"
        )
    r = A.shape[0]
    A32, B32 = _f32(A), _f32(B)
    # the values need R only: mode "r" skips forming Q (the same R bit for bit, about half the time
    # on a CPU for 4096 x 8 factors; bench/bench_heatmaps.py --engine)
    mode = "reduced" if vectors else "r"
    Qb, Rb = torch.linalg.qr(B32, mode=mode)  # Qb (out, kb), Rb (kb, r), kb = min(out, r)
    Qa, Ra = torch.linalg.qr(A32.T, mode=mode)  # Qa (in, ka),  Ra (ka, r), ka = min(in, r)
    core = float(scaling) * (Rb @ Ra.T)  # (kb, ka)
    with _finite_inputs("spectrum of B·A", A32, B32):
        if vectors:
            Uc, s, Vhc = torch.linalg.svd(core, full_matrices=False)
            U, V = Qb @ Uc, Qa @ Vhc.T
        else:
            s = torch.linalg.svdvals(core)
            U = V = None
    # A negative scaling flips signs of vectors only; svd already gives s >= 0, descending.
    if s.shape[0] < r:  # r exceeds min(in, out): the remaining values are structurally zero
        s = torch.cat([s, s.new_zeros(r - s.shape[0])])
    return Spectrum(s, U, V)


def lowrank_columns(q: int, n: int) -> int:
    """Columns of the randomized method's subspace for the top q of n values: q + max(q, 10), at most n."""
    return min(q + max(q, LOWRANK_MIN_OVERSAMPLE), n)


def randomized_svd(
    W: torch.Tensor, q: int, niter: int = LOWRANK_NITER
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-q (U, s, V) of W by `torch.svd_lowrank`, without touching the global RNG.

    svd_lowrank draws its random test matrix from the global generator; a live view calling it
    mid-training would otherwise change the training run's random stream. fork_rng restores the
    state afterwards, and the fixed seed makes the figure reproducible from call to call.
    See LOWRANK_MIN_OVERSAMPLE for the accuracy of the values.
    """
    k = lowrank_columns(q, min(W.shape))
    devices = [W.device.index or 0] if W.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        U, s, V = torch.svd_lowrank(W, q=k, niter=niter)
    return U[:, :q], s[:q], V[:, :q]


def lowrank_description(q: int, n: int, niter: int = LOWRANK_NITER) -> str:
    """How `randomized_svd` got its values, for a view's caption."""
    return (
        f"randomized svd_lowrank, top {q} of {n} values, partial "
        f"(q={q}, {lowrank_columns(q, n)} columns, {niter} power iterations; never above the exact values, "
        "least accurate near the cut-off)"
    )


@torch.no_grad()
def dense_spectrum(
    W: torch.Tensor, method: str = "auto", q: int = LOWRANK_Q, niter: int = LOWRANK_NITER
) -> tuple[torch.Tensor, str]:
    """Singular values of a dense update (full fine-tuning), and a description of how they were got.

    method: "exact" (`torch.linalg.svdvals`, all min(out, in) values), "lowrank" (randomized
    `torch.svd_lowrank`, the top q values only: a partial spectrum), or "auto": exact when
    min(out, in) <= 1024, else lowrank. The returned string names the method so a view can say what it
    shows (a partial spectrum's string contains "partial").
    """
    if W.ndim != 2:
        raise ValueError(f"W must be a matrix, got shape {tuple(W.shape)}")
    if method not in ("auto", "exact", "lowrank"):
        raise ValueError(f"method={method!r} is not one of auto, exact, lowrank")
    W32 = _f32(W)
    n = min(W32.shape)
    if method == "auto":
        method = "exact" if n <= DENSE_EXACT_MAX else "lowrank"
    if method == "exact" or q >= n:
        with _finite_inputs("spectrum of a dense update", W32):
            return torch.linalg.svdvals(W32), f"exact svdvals, all {n} values"
    with _finite_inputs("spectrum of a dense update", W32):
        _, s, _ = randomized_svd(W32, q, niter)
    return s, lowrank_description(q, n, niter)


@torch.no_grad()
def update_spectrum(d: torch.Tensor, exact_max: int = 512, q: int = 64) -> tuple[torch.Tensor, str, bool]:
    """(values, method, partial) of a dense update for a view: every value by an exact SVD while
    min(out, in) <= exact_max, else the top q by the randomized method (partial = True)."""
    if min(d.shape) <= exact_max:
        values, method = dense_spectrum(d, "exact")
        return values, method, False
    values, method = dense_spectrum(d, "lowrank", q=q)
    return values, method, True


# --- summary figures of a spectrum --------------------------------------------------------------


def cumulative_energy(values: torch.Tensor) -> torch.Tensor:
    """cumsum(s^2) / sum(s^2); all zeros for an all-zero spectrum (no NaN)."""
    e = _f32(values).square()
    total = e.sum()
    return torch.where(total > 0, e.cumsum(0) / total.clamp_min(torch.finfo(e.dtype).tiny), torch.zeros_like(e))


def energy_top_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Share of the squared Frobenius norm in the top k values (k is clamped to the length)."""
    if k < 1:
        raise ValueError(f"k={k} must be at least 1")
    cum = cumulative_energy(values)
    return cum[min(k, cum.shape[0]) - 1]


def effective_rank(values: torch.Tensor) -> torch.Tensor:
    """Roy & Vetterli (2007): exp of the Shannon entropy of p = s / sum(s); 0 for an all-zero spectrum.

    Ranges from 1 (one direction) to the number of equal non-zero values.
    """
    s = _f32(values).abs()
    total = s.sum()
    p = s / total.clamp_min(torch.finfo(s.dtype).tiny)
    # 0 · log 0 = 0: xlogy handles it without NaN.
    h = -torch.special.xlogy(p, p).sum()
    return torch.where(total > 0, h.exp(), torch.zeros_like(h))


def stable_rank(values: torch.Tensor) -> torch.Tensor:
    """||M||_F^2 / ||M||_2^2 = sum(s^2) / max(s)^2; 0 for an all-zero spectrum."""
    s2 = _f32(values).square()
    top = s2.max() if s2.numel() else s2.new_zeros(())
    return torch.where(top > 0, s2.sum() / top.clamp_min(torch.finfo(s2.dtype).tiny), torch.zeros_like(top))


def rank_tolerance_factor(shape: tuple[int, int]) -> float:
    """max(m, n) · eps(float32): a singular value counts towards the rank when above σ₁ times this."""
    return max(int(shape[0]), int(shape[1])) * torch.finfo(torch.float32).eps


def spectrum_summary(values: torch.Tensor, shape: tuple[int, int] | None = None) -> dict[str, float]:
    """The figures a spectrum view shows, as python floats, with a single device->host copy.

    Keys: count, fro_norm, spectral_norm, nuclear_norm, effective_rank, stable_rank,
    numerical_rank, and energy_top{1,2,4,8,16} (each clamped to the number of values).
    numerical_rank counts the values above σ₁ · max(m, n) · eps(float32), the usual matrix-rank
    tolerance (numpy.linalg.matrix_rank, torch.linalg.matrix_rank) for the (m, n) = `shape` of the
    matrix the values belong to; without a shape, max(m, n) is taken as the number of values (a
    smaller, stricter-than-usual tolerance). For a truncated spectrum (from the randomized method)
    the norms and energies are those of the values given.
    """
    s = _f32(values)
    n = s.shape[0]
    if n == 0:
        raise ValueError("spectrum_summary needs at least one value")
    top = s.max()
    tol = top * rank_tolerance_factor(shape if shape is not None else (n, n))
    cum = cumulative_energy(s)
    ks = (1, 2, 4, 8, 16)
    figures = torch.stack(
        [
            s.square().sum().sqrt(),
            top,
            s.abs().sum(),
            effective_rank(s),
            stable_rank(s),
            ((s > tol) & (top > 0)).sum().to(torch.float32),
            *[cum[min(k, n) - 1] for k in ks],
        ]
    ).tolist()
    names = [
        "fro_norm",
        "spectral_norm",
        "nuclear_norm",
        "effective_rank",
        "stable_rank",
        "numerical_rank",
        *[f"energy_top{k}" for k in ks],
    ]
    out = dict(zip(names, figures))
    out["numerical_rank"] = int(out["numerical_rank"])
    out["count"] = n
    return out


def spectrum_figures(values: np.ndarray, fro_norm: float | None = None) -> tuple[float, float, float]:
    """(fro_norm, effective_rank, stable_rank) of a spectrum, in numpy on the host (the same
    formulas as explorer.core.analysis.spectrum_summary, without a dozen small torch calls).

    `fro_norm`: the matrix's exact ||M||_F when `values` are only its leading singular values; the
    stable rank ||M||_F² / σ₁² is then exact too, while the effective rank is that of the values given."""
    s = np.abs(np.asarray(values, np.float64))
    s2 = s * s
    fro = math.sqrt(s2.sum()) if fro_norm is None else float(fro_norm)
    total = s.sum()
    if total <= 0:
        return fro, 0.0, 0.0
    p = s[s > 0] / total
    eff = math.exp(-(p * np.log(p)).sum())
    return fro, eff, float(fro * fro / s2.max())


def to_host(parts: list[torch.Tensor]) -> list[np.ndarray]:
    """Copy several device tensors to the host in one transfer, as float32 numpy arrays."""
    if not parts:
        return []
    flat = torch.cat([p.detach().reshape(-1).float() for p in parts]).cpu().numpy()
    out, start = [], 0
    for p in parts:
        n = p.numel()
        out.append(flat[start : start + n].reshape(tuple(p.shape)))
        start += n
    return out


# --- pooling for heatmaps -----------------------------------------------------------------------


def _pool_size(shape: tuple[int, int], rows: int, cols: int) -> tuple[int, int]:
    if rows < 1 or cols < 1:
        raise ValueError(f"pool size rows={rows}, cols={cols} must both be at least 1")
    return min(rows, shape[0]), min(cols, shape[1])  # never upsample


@torch.no_grad()
def pool_matrix(M: torch.Tensor, rows: int, cols: int, mode: str = "mean") -> torch.Tensor:
    """Block-pool M (on its device) to at most (rows, cols) for display.

    Blocks are those of adaptive pooling (PyTorch's start = floor(i·n/m), end = ceil((i+1)·n/m)),
    so any size works. "mean" averages each block; "maxabs" keeps, per block, the signed entry with
    the largest magnitude, so a single large update is not averaged away in a heatmap.
    """
    if M.ndim != 2:
        raise ValueError(f"M must be a matrix, got shape {tuple(M.shape)}")
    size = _pool_size(tuple(M.shape), rows, cols)
    x = _f32(M)[None, None]
    if mode == "mean":
        return F.adaptive_avg_pool2d(x, size)[0, 0]
    if mode == "maxabs":
        # Indices of the largest |x| per block index the flattened matrix; take the signed entry.
        _, idx = F.adaptive_max_pool2d(x.abs(), size, return_indices=True)
        return x.flatten()[idx.flatten()].view(size)
    raise ValueError(f"mode={mode!r} is not one of mean, maxabs")


@torch.no_grad()
def pooled_delta(
    A: torch.Tensor, B: torch.Tensor, scaling: float, rows: int, cols: int, mode: str = "mean"
) -> torch.Tensor:
    """pool_matrix(scaling · B @ A, rows, cols, mode), without forming ΔW for mode "mean".

    A block mean of a product factorises: for a row block I and a column block J,
    mean_{i∈I, j∈J} sum_k B_ik A_kj = sum_k (mean_{i∈I} B_ik)(mean_{j∈J} A_kj). Adaptive 2-D pooling
    uses exactly the product of the 1-D adaptive row and column blocks, so pooling B's rows and A's
    columns with 1-D adaptive pooling and multiplying the small results is exact: O((out+in)·r)
    instead of O(out·in·r). "maxabs" has no such identity and forms ΔW densely.
    """
    if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[1]:
        raise ValueError(
            f"factor shapes A={tuple(A.shape)} (r, in) and B={tuple(B.shape)} (out, r) do not fit together"
        )
    if mode == "maxabs":
        return pool_matrix(float(scaling) * (_f32(B) @ _f32(A)), rows, cols, "maxabs")
    if mode != "mean":
        raise ValueError(f"mode={mode!r} is not one of mean, maxabs")
    r_out, c_out = _pool_size((B.shape[0], A.shape[1]), rows, cols)
    Bp = F.adaptive_avg_pool1d(_f32(B).T[None], r_out)[0].T  # (r_out, r): row-block means of B
    Ap = F.adaptive_avg_pool1d(_f32(A)[None], c_out)[0]  # (r, c_out): column-block means of A
    return float(scaling) * (Bp @ Ap)


# --- DoRA -----------------------------------------------------------------------------------------


@torch.no_grad()
def dora_effective_update(
    W0: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scaling: float, magnitude: torch.Tensor
) -> torch.Tensor:
    """W_eff - W0 of a DoRA module (Liu et al. 2024, arXiv 2402.09353; PEFT's DoRA merge), dense, float32.

    W_eff = m / ||W0 + s·B A||_row · (W0 + s·B A), the weight the layer applies and what a merge
    writes (the row norm over the input dimension, one per output row, as PEFT's weight norm). The
    update W_eff - W0 = (c - 1) ⊙ W0 + c ⊙ s·B A with c = m / ||W0 + s·B A||_row is in general of full
    rank: the magnitude rescales every row of W0, so the low-rank s·B A is only part of it.
    """
    W = _f32(W0)
    V = W + float(scaling) * (_f32(B) @ _f32(A))
    c = _f32(magnitude) / torch.linalg.norm(V, dim=1)
    return c[:, None] * V - W


# --- analyses from the LoRA paper (Hu et al. 2021, Section 7) -------------------------------------


@torch.no_grad()
def subspace_similarity(A1: torch.Tensor, A2: torch.Tensor) -> torch.Tensor:
    """phi(i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j) for all i <= r1, j <= r2 (Sec. 7.2).

    U = right singular vectors of A (Vh^T, columns by descending singular value). Entry [i-1, j-1]
    is phi(i, j), in [0, 1]: 1 where the smaller subspace lies inside the larger one.
    All (i, j) at once: the squared Frobenius norm of a leading block of M = U1^T U2 is a 2-D
    prefix sum of M**2.
    """
    if A1.ndim != 2 or A2.ndim != 2 or A1.shape[1] != A2.shape[1]:
        raise ValueError(f"A1 {tuple(A1.shape)} and A2 {tuple(A2.shape)} must be (r, in) with the same in")
    with _finite_inputs("subspace similarity", A1, A2):
        _, _, Vh1 = torch.linalg.svd(_f32(A1), full_matrices=False)
        _, _, Vh2 = torch.linalg.svd(_f32(A2), full_matrices=False)
    M2 = (Vh1 @ Vh2.T).square()  # (k1, k2), k = min(r, in)
    block = M2.cumsum(0).cumsum(1)
    i = torch.arange(1, M2.shape[0] + 1, device=M2.device, dtype=M2.dtype)
    j = torch.arange(1, M2.shape[1] + 1, device=M2.device, dtype=M2.dtype)
    # Round-off can push a value a hair above 1; the quantity is a cosine², so clamp to [0, 1].
    return (block / torch.minimum(i[:, None], j[None, :])).clamp(0.0, 1.0)


def _random_orthonormal(n: int, r: int, generator: torch.Generator, device) -> torch.Tensor:
    g_device = generator.device
    X = torch.randn(n, r, generator=generator, device=g_device, dtype=torch.float32)
    return torch.linalg.qr(X.to(device))[0]


@torch.no_grad()
def amplification_reference(W0: torch.Tensor, k: int, generator: torch.Generator | None = None) -> dict:
    """What `amplification` needs of W0 alone, constant while W0 is (callers may keep it between
    calls): ||W0||_F, W0's top-k singular values (exact up to DENSE_EXACT_MAX, randomized above, where
    the top k of LOWRANK_Q values are accurate to a few parts in a million), and a random k-dim
    orthonormal basis on each side (QR of Gaussian columns from `generator`, or a fixed seed 0)."""
    W = _f32(W0)
    w0_values, _ = dense_spectrum(W, q=max(k, LOWRANK_Q))
    if generator is None:
        generator = torch.Generator(device=W.device).manual_seed(0)
    Ur = _random_orthonormal(W.shape[0], k, generator, W.device)
    Vr = _random_orthonormal(W.shape[1], k, generator, W.device)
    return {"w0_fro": torch.linalg.matrix_norm(W), "w0_values": w0_values[:k], "Ur": Ur, "Vr": Vr}


@torch.no_grad()
def amplification(
    W0: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    scaling: float,
    generator: torch.Generator | None = None,
    reference: dict | None = None,
) -> dict[str, float]:
    """How much ΔW amplifies directions of W0 (LoRA paper Sec. 7.3, Table 7). Python floats.

    U, V are ΔW's singular vectors for its k = rank(ΔW) non-zero singular values (from the factors;
    σ > σ₁ · max(m, n) · eps, the usual rank tolerance). k is at most the adapter's rank r and smaller
    when ΔW is rank-deficient (B = 0 at step 0, or columns of B or rows of A that stayed parallel):
    the singular vectors of σ = 0 are arbitrary directions, and counting them would measure W0 along
    directions ΔW does not have. Every projection below uses those k directions. Returns
    - rank: k; adapter_rank: r;
    - delta_fro: ||ΔW||_F, and w0_fro: ||W0||_F;
    - proj_delta: ||U^T W0 V||_F, how much of W0 lies in ΔW's subspace;
    - proj_w0_top: the same onto W0's own top-k directions, which equals sqrt(sum of W0's top k
      squared singular values);
    - proj_random: the same onto a random k-dim orthonormal basis on each side (`generator`, or a
      fixed seed 0, so the figure is reproducible; the first k columns of r random ones);
    - factor: delta_fro / proj_delta (0 when ΔW = 0, inf if ΔW's subspace misses W0 entirely).
    `reference`: `amplification_reference(W0, r, generator)`, computed here when not given.
    W0 is whatever the adapter is added to: for a PiSSA adapter that is the residual W - s·B₀A₀ with
    W's top-r directions removed, so the factor then measures something else than Table 7's (see
    docs/reference.md).
    """
    if W0.ndim != 2 or tuple(W0.shape) != (B.shape[0], A.shape[1]):
        raise ValueError(f"W0 {tuple(W0.shape)} does not match ΔW's shape ({B.shape[0]}, {A.shape[1]})")
    W = _f32(W0)
    spec = spectrum_from_factors(A, B, scaling, vectors=True)
    available = spec.U.shape[1]
    values = spec.values[:available]
    top = values.max()
    k = int(((values > top * rank_tolerance_factor(tuple(W.shape))) & (top > 0)).sum())
    if reference is None:
        reference = amplification_reference(W, available, generator)
    U, V = spec.U[:, :k], spec.V[:, :k]
    delta_fro = values.square().sum().sqrt()
    proj_delta = torch.linalg.matrix_norm(U.T @ W @ V)
    proj_top = reference["w0_values"][:k].square().sum().sqrt()
    proj_random = torch.linalg.matrix_norm(reference["Ur"][:, :k].T @ W @ reference["Vr"][:, :k])
    d, p, t, rnd, w = torch.stack(
        [delta_fro, proj_delta, proj_top, proj_random, torch.as_tensor(reference["w0_fro"], device=W.device)]
    ).tolist()
    factor = d / p if p > 0 else (0.0 if d == 0 else math.inf)
    return {
        "rank": k,
        "adapter_rank": int(A.shape[0]),
        "delta_fro": d,
        "w0_fro": w,
        "proj_delta": p,
        "proj_w0_top": t,
        "proj_random": rnd,
        "factor": factor,
    }
