"""Rank advice from singular values: plain numpy, no torch, no Qt.

The one rule every consumer shares (the views, the resize command, the core's resize): the
energy rank at level e of a spectrum σ₁ ≥ σ₂ ≥ … is the smallest k whose top k values keep at least
the share e of ΔW's energy Σσ² (= ‖ΔW‖²_F). By Eckart–Young, truncating ΔW to that k is the best
rank-k approximation and its relative squared Frobenius error is 1 - energy kept.

Parameters follow LoRA's count: a rank-k module of shape (out, in) holds k·(out + in) factor values.
A whole adapter's advice is a `rank_pattern` as PEFT reads it (keys matched against module paths);
`compact_pattern` writes it as a default rank plus full module paths for the modules that differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

ENERGY_LEVELS = (0.90, 0.95, 0.99)
# Energies that fall short of a level by less than this count as reaching it: the values come
# from float32 (or float64) arithmetic, and "keep 100 %" must not demand the last 1e-13 of round-off.
ENERGY_TOL = 1e-12


def _values(values) -> np.ndarray:
    s = np.abs(np.asarray(values, dtype=np.float64).ravel())
    if not np.all(np.isfinite(s)):
        raise ValueError("singular values must be finite numbers (got NaN or infinity)")
    return np.sort(s)[::-1]


def check_energy(energy, what: str = "energy") -> float:
    """`energy` as a float in (0, 1], else ValueError naming `what`."""
    if isinstance(energy, bool) or not isinstance(energy, (int, float, np.floating, np.integer)):
        raise ValueError(f"{what}={energy!r} is not a number: allowed 0 < {what} <= 1")
    e = float(energy)
    if not (np.isfinite(e) and 0.0 < e <= 1.0):
        raise ValueError(f"{what}={energy!r} is out of range: allowed 0 < {what} <= 1")
    return e


def cumulative_energy(values) -> np.ndarray:
    """Σ_{i<=k} σ_i² / Σ σ_i² for k = 1..n (values sorted descending); zeros, never NaN, for ΔW = 0."""
    s = _values(values)
    cum = np.cumsum(s * s)
    total = cum[-1] if cum.size else 0.0
    return cum / total if total > 0 else np.zeros_like(cum)


def energy_rank(values, energy: float) -> int:
    """Smallest k keeping at least `energy` of Σσ²; 0 when every value is 0 (nothing to keep)."""
    e = check_energy(energy)
    cum = cumulative_energy(values)
    if cum.size == 0 or cum[-1] == 0:
        return 0
    return int(np.searchsorted(cum, e - ENERGY_TOL, side="left")) + 1


def energy_ranks(values, levels: Iterable[float] = ENERGY_LEVELS) -> dict[float, int]:
    return {float(level): energy_rank(values, level) for level in levels}


def energy_kept(values, k: int) -> float:
    """Share of Σσ² in the top k values (1.0 for ΔW = 0: nothing is lost)."""
    cum = cumulative_energy(values)
    if cum.size == 0 or cum[-1] == 0:
        return 1.0
    if k <= 0:
        return 0.0
    return float(cum[min(k, cum.size) - 1])


def lora_parameters(shape, rank: int) -> int:
    """k·(out + in): the factor values of a rank-k LoRA module of shape (out, in)."""
    out_f, in_f = int(shape[0]), int(shape[1])
    return int(rank) * (out_f + in_f)


# --- a whole adapter ------------------------------------------------------------------------


@dataclass
class ModuleSpectrum:
    """What advice needs of one module: its path, ΔW's shape (out, in), today's rank, the values."""

    name: str
    shape: tuple[int, int]
    rank: int
    values: np.ndarray


@dataclass
class PatternAdvice:
    """The ranks one energy level implies for every module, and what they cost against today."""

    energy: float
    ranks: dict[str, int]  # module path -> rank at this level (at least 1: PEFT has no rank 0)
    r: int  # the default rank of the compact pattern
    rank_pattern: dict[str, int]  # full module paths whose rank differs from r
    parameters: int
    parameters_today: int
    energy_kept: float  # of the whole adapter: Σ over modules of kept σ² / Σ of all σ²
    least_kept: float  # the smallest share kept by any one module
    kept: dict[str, float] = field(default_factory=dict)  # module path -> share of its Σσ² kept

    @property
    def ratio(self) -> float:
        return self.parameters / self.parameters_today if self.parameters_today else float("nan")


def compact_pattern(ranks: Mapping[str, int]) -> tuple[int, dict[str, int]]:
    """(default, pattern): the most common value (the larger on a tie) and {path: value} for the rest."""
    if not ranks:
        raise ValueError("compact_pattern needs at least one module")
    counts = Counter(ranks.values())
    default = max(counts, key=lambda v: (counts[v], v))
    return default, {name: v for name, v in ranks.items() if v != default}


def pattern_advice(modules: Iterable[ModuleSpectrum], energy: float) -> PatternAdvice:
    """The rank pattern that keeps `energy` of each module's Σσ², with parameters and energy kept.

    This is what the rank view shows per level and what the adapter inspector's energy slider
    calls as it moves: plain arithmetic on spectra already computed, no factor is touched."""
    e = check_energy(energy)
    modules = list(modules)
    if not modules:
        raise ValueError("no LoRA modules to advise on")
    ranks, kept = {}, {}
    params = today = 0
    kept_total = energy_total = 0.0
    for m in modules:
        s = _values(m.values)
        k = max(1, energy_rank(s, e))
        ranks[m.name] = k
        kept[m.name] = energy_kept(s, k)
        params += lora_parameters(m.shape, k)
        today += lora_parameters(m.shape, m.rank)
        total = float(np.sum(s * s))
        energy_total += total
        kept_total += kept[m.name] * total
    r, pattern = compact_pattern(ranks)
    return PatternAdvice(
        energy=e,
        ranks=ranks,
        r=r,
        rank_pattern=pattern,
        parameters=params,
        parameters_today=today,
        energy_kept=kept_total / energy_total if energy_total > 0 else 1.0,
        least_kept=min(kept.values()),
        kept=kept,
    )


def trade_off(modules: Iterable[ModuleSpectrum], energies) -> tuple[np.ndarray, np.ndarray]:
    """(parameters, energy kept of the whole adapter) at each level in `energies`: the curve of
    parameters against energy kept that a slider walks along."""
    modules = list(modules)
    advice = [pattern_advice(modules, e) for e in energies]
    return (
        np.array([a.parameters for a in advice], dtype=np.int64),
        np.array([a.energy_kept for a in advice], dtype=np.float64),
    )
