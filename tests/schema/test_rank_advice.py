"""The energy-rank rule (explorer/schema/rank_advice.py) against plain loops: ranks, energy kept,
the rank pattern of a whole adapter and its parameters against today's."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.schema.rank_advice import (
    ModuleSpectrum,
    check_energy,
    compact_pattern,
    energy_kept,
    energy_rank,
    pattern_advice,
    trade_off,
)


def by_hand(values, level) -> int:
    """The smallest k with sum of the top k squares >= level * total: a plain loop."""
    s = sorted((float(v) ** 2 for v in values), reverse=True)
    total = sum(s)
    if total == 0:
        return 0
    acc = 0.0
    for k, e in enumerate(s, 1):
        acc += e
        if acc >= level * total * (1 - 1e-12):
            return k
    return len(s)


# ---- the rule ----------------------------------------------------------------------------------


def test_energy_rank_by_hand():
    values = [3.0, 2.0, 1.0, 0.5]  # squares 9, 4, 1, 0.25: total 14.25
    assert energy_rank(values, 0.6) == 1  # 9 / 14.25 = 0.63
    assert energy_rank(values, 0.9) == 2  # 13 / 14.25 = 0.912
    assert energy_rank(values, 0.95) == 3  # 14 / 14.25 = 0.982
    assert energy_rank(values, 0.99) == 4
    assert energy_rank(values, 1.0) == 4
    assert energy_rank([0.5, 3.0, 1.0, 2.0], 0.9) == 2  # any order
    assert energy_rank([0.0, 0.0], 0.9) == 0  # ΔW = 0: nothing to keep
    assert energy_rank([1.0, 1e-9], 1.0) == 1  # round-off below 1e-12 of the energy is not demanded
    assert energy_kept(values, 2) == pytest.approx(13 / 14.25)
    assert energy_kept([0.0], 1) == 1.0
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.gamma(0.5, size=rng.integers(1, 40))
        for level in (0.5, 0.9, 0.95, 0.99, 1.0):
            assert energy_rank(v, level) == by_hand(v, level)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.0001, float("nan"), float("inf"), "0.9", True, None])
def test_energy_outside_zero_one_is_refused(bad):
    with pytest.raises(ValueError, match="energy"):
        check_energy(bad)


def test_pattern_advice_counts_parameters_against_today():
    modules = [
        ModuleSpectrum("model.layers.0.self_attn.q_proj", (64, 32), 4, np.array([3.0, 2.0, 1.0, 0.5])),
        ModuleSpectrum("model.layers.0.self_attn.v_proj", (16, 32), 4, np.array([1.0, 0.1, 0.0, 0.0])),
        ModuleSpectrum("model.layers.1.self_attn.q_proj", (64, 32), 4, np.array([1.0, 1.0, 1.0, 1.0])),
    ]
    a = pattern_advice(modules, 0.9)
    assert a.ranks == {
        "model.layers.0.self_attn.q_proj": 2,
        "model.layers.0.self_attn.v_proj": 1,
        "model.layers.1.self_attn.q_proj": 4,
    }
    assert a.parameters == 2 * 96 + 1 * 48 + 4 * 96 and a.parameters_today == 4 * (96 + 48 + 96)
    # the most common rank is the default (a tie: the larger), the others are named by full path
    assert (a.r, a.rank_pattern) == (4, {"model.layers.0.self_attn.q_proj": 2, "model.layers.0.self_attn.v_proj": 1})
    kept = 13 + 1.0 + 4.0
    assert a.energy_kept == pytest.approx(kept / (14.25 + 1.01 + 4.0))
    assert a.least_kept == pytest.approx(13 / 14.25)
    params, energy = trade_off(modules, [0.5, 0.9, 1.0])
    assert list(params) == sorted(params) and params[1] == a.parameters and energy[-1] == pytest.approx(1.0)
    assert compact_pattern({"a": 2, "b": 2, "c": 5}) == (2, {"c": 5})
