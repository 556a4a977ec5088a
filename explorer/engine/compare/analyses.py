"""The LoRA paper's analyses between the runs of a comparison, on their trainers (Hu et al. 2021,
Section 7; docs/reference.md).

- `subspace_similarity_between(a, b, module)`: phi(i, j) between the two runs' A matrices (Fig. 3).
- `seed_similarity(a, b, module)`: the same for two seeds at one rank, with A against a random
  Gaussian matrix of the same shape as the control (what chance overlap looks like).
- `amplification_table(trainer)`: per LoRA module, ||ΔW||_F / ||U^T W0 V||_F and the projection of
  W0 onto ΔW's k = rank(ΔW) <= r directions, onto W0's own top-k and onto a random basis (Table 7);
  PiSSA runs marked (their W0 is the residual).
- `intrinsic_rank(lora, full, module)`: LoRA's ΔW spectrum against the full fine-tuning update's
  spectrum on the same module, with the method used for each stated.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from explorer.core.analysis import (
    DENSE_EXACT_MAX,
    amplification,
    amplification_reference,
    lowrank_description,
    randomized_svd,
    spectrum_from_factors,
    subspace_similarity,
)


def sources_of(trainer) -> dict:
    """The trainer's adapted matrices by name (the scenario's MatrixSources)."""
    return {s.name: s for s in trainer.scenario.matrix_sources(trainer.model, trainer.settings)}


def lora_source(trainer, module: str):
    src = sources_of(trainer).get(module)
    if src is None:
        raise ValueError(
            f"module {module!r} is not adapted in the {trainer.settings.method} run "
            f"(adapted: {', '.join(sources_of(trainer)) or 'none'})"
        )
    if src.A is None:
        raise ValueError(f"module {module!r} has no LoRA factors in the {trainer.settings.method} run")
    return src


def lora_module_names(trainer) -> list[str]:
    return [name for name, s in sources_of(trainer).items() if s.A is not None]


@torch.no_grad()
def subspace_similarity_between(trainer_a, trainer_b, module: str) -> np.ndarray:
    """phi(i, j) between the A matrices of one module in two LoRA runs (paper Fig. 3): (r_a, r_b),
    entry [i-1, j-1] = ||U_a[:, :i]^T U_b[:, :j]||_F^2 / min(i, j)."""
    a = lora_source(trainer_a, module).A
    b = lora_source(trainer_b, module).A
    return subspace_similarity(a, b.to(a.device)).cpu().numpy()


def _random_like(A: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(rows, A.shape[1], generator=g).to(A.device)


@torch.no_grad()
def random_control(trainer_a, module: str, rows: int, seed: int = 0) -> np.ndarray:
    """phi between run a's A and a random Gaussian (rows, in) matrix: the overlap chance gives
    (about j / in on the diagonal for a random j-dimensional subspace)."""
    a = lora_source(trainer_a, module).A
    return subspace_similarity(a, _random_like(a, rows, seed)).cpu().numpy()


def seed_similarity(trainer_a, trainer_b, module: str, control_seed: int = 0) -> dict:
    """phi between two runs at the same rank that differ in seed, and the random-basis control."""
    ra, rb = (lora_source(t, module).A.shape[0] for t in (trainer_a, trainer_b))
    if ra != rb:
        raise ValueError(f"seed similarity compares one rank: the runs have rank {ra} and {rb}")
    if trainer_a.settings.seed == trainer_b.settings.seed:
        raise ValueError(f"seed similarity compares two seeds: both runs have seed {trainer_a.settings.seed}")
    return {
        "rank": ra,
        "seeds": [trainer_a.settings.seed, trainer_b.settings.seed],
        "phi": subspace_similarity_between(trainer_a, trainer_b, module),
        "control": random_control(trainer_a, module, rb, control_seed),
    }


def amplification_table(trainer, seed: int = 0, cache: dict | None = None) -> list[dict]:
    """Per LoRA module: the amplification figures of docs/reference.md (paper Table 7) as floats:
    rank (of ΔW: the directions used), adapter_rank, delta_fro, w0_fro, proj_delta (||U^T W0 V||_F,
    U, V ΔW's singular vectors of its non-zero values), proj_w0_top (onto W0's own top-k),
    proj_random (onto a random k-dim basis), factor (||ΔW||_F / proj_delta), and w0: "pretrained",
    or "residual" for a PiSSA run, whose W0 is the residual W - s·B₀A₀ (its top-r directions moved
    into the adapter), so its factor is not Table 7's. `cache` (optional) keeps W0's constant
    figures (amplification_reference) between calls."""
    rows = []
    w0 = "residual" if getattr(trainer.settings, "init", "") == "pissa" else "pretrained"
    for name, src in sources_of(trainer).items():
        if src.A is None:
            continue
        g = torch.Generator(device=src.base.device).manual_seed(int(seed))
        k = min(src.A.shape[0], *src.base.shape)
        reference = None
        if cache is not None:
            key = (name, k, src.base.data_ptr())
            if key not in cache:
                cache[key] = amplification_reference(src.base, k, g)
            reference = cache[key]
        row = amplification(src.base, src.A, src.B, src.scaling, generator=g, reference=reference)
        rows.append({"module": name, **row, "w0": w0})
    return rows


def _energy_top(values: np.ndarray, k: int) -> float:
    s2 = np.asarray(values, np.float64) ** 2
    total = s2.sum()
    return float(s2[:k].sum() / total) if total > 0 else 0.0


def _ranks(values: np.ndarray) -> tuple[float, float]:
    s = np.abs(np.asarray(values, np.float64))
    if s.sum() <= 0:
        return 0.0, 0.0
    p = s[s > 0] / s.sum()
    return float(math.exp(-(p * np.log(p)).sum())), float((s**2).sum() / (s**2).max())


@torch.no_grad()
def full_update(full_trainer, module: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ΔW = W - W0, W0) of one matrix in a full fine-tuning run."""
    src = sources_of(full_trainer).get(module)
    if src is None or src.weight is None:
        raise ValueError(
            f"module {module!r} is not a fully fine-tuned matrix in the {full_trainer.settings.method} run"
        )
    return src.weight.detach().float() - src.base.detach().float(), src.base


@torch.no_grad()
def intrinsic_rank(lora_trainer, full_trainer, module: str, _full_cache: dict | None = None) -> dict:
    """LoRA's ΔW spectrum against the full fine-tuning update's on the same module ("intrinsic rank").

    Returns lora_values (r values, exact from the factors), full_values (all of them up to
    analysis.DENSE_EXACT_MAX, else the top ones by randomized SVD) and `*_method` strings saying how
    each was computed; rank r; effective and stable ranks of both; full_energy_top_r (the share of
    the full update's energy in its top r directions, what a rank-r LoRA could at best capture);
    overlap_left / overlap_right: ||U_lora^T U_full_r||_F^2 / r, how much of LoRA's top-r
    output (input) subspace lies in the full update's top-r one (1: the same directions)."""
    src = lora_source(lora_trainer, module)
    spec = spectrum_from_factors(src.A, src.B, src.scaling, vectors=True)
    k = spec.U.shape[1]
    cached = None if _full_cache is None else _full_cache.get(module)
    if cached is None:
        delta, _ = full_update(full_trainer, module)
        n = min(delta.shape)
        if n <= DENSE_EXACT_MAX:
            U, s, Vh = torch.linalg.svd(delta, full_matrices=False)
            V = Vh.T
            method = f"exact svd, all {n} values"
        else:
            q = max(64, k)
            U, s, V = randomized_svd(delta, q)
            method = lowrank_description(q, n)
        cached = (U, s, V, method)
        if _full_cache is not None:
            _full_cache[module] = cached
    U, s, V, method = cached
    kk = min(k, U.shape[1])
    overlap_l = float((spec.U.T @ U[:, :kk]).square().sum() / max(kk, 1))
    overlap_r = float((spec.V.T @ V[:, :kk]).square().sum() / max(kk, 1))
    lora_values = spec.values.cpu().numpy().astype(np.float32)
    full_values = s.cpu().numpy().astype(np.float32)
    le, ls = _ranks(lora_values)
    fe, fs = _ranks(full_values)
    return {
        "module": module,
        "rank": int(src.A.shape[0]),
        "lora_values": lora_values,
        "lora_method": "exact: QR of the factors + SVD of the r x r core",
        "full_values": full_values,
        "full_method": method,
        "lora_effective_rank": le,
        "lora_stable_rank": ls,
        "full_effective_rank": fe,
        "full_stable_rank": fs,
        "full_energy_top_r": _energy_top(full_values, int(src.A.shape[0])),
        "lora_fro": float(np.sqrt((lora_values.astype(np.float64) ** 2).sum())),
        "full_fro": float(np.sqrt((full_values.astype(np.float64) ** 2).sum())),
        "overlap_left": overlap_l,
        "overlap_right": overlap_r,
    }
