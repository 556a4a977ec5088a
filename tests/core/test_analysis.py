"""explorer.core.analysis against direct dense torch.linalg computations."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from explorer.core import analysis
from explorer.core.analysis import (
    amplification,
    cumulative_energy,
    dense_spectrum,
    effective_rank,
    energy_top_k,
    pool_matrix,
    pooled_delta,
    spectrum_from_factors,
    spectrum_summary,
    stable_rank,
    subspace_similarity,
)


def factors(out_f, in_f, r, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(r, in_f, generator=g) / math.sqrt(in_f)
    B = torch.randn(out_f, r, generator=g)
    return A.to(dtype), B.to(dtype)


def dense_values(A, B, scaling):
    """The reference: float64 svdvals of the formed ΔW."""
    return torch.linalg.svdvals(scaling * (B.double() @ A.double()))


# --- spectrum from factors ----------------------------------------------------------------------


@pytest.mark.parametrize("out_f,in_f", [(64, 64), (48, 96), (120, 40)])
@pytest.mark.parametrize("r", [1, 2, 5, 8, 16])
def test_factor_spectrum_matches_dense(out_f, in_f, r):
    A, B = factors(out_f, in_f, r, seed=out_f + r)
    spec = spectrum_from_factors(A, B, 2.5)
    ref = dense_values(A, B, 2.5)
    assert spec.values.shape == (r,) and spec.values.dtype == torch.float32
    assert torch.all(spec.values[:-1] >= spec.values[1:])
    torch.testing.assert_close(spec.values.double(), ref[:r], rtol=1e-4, atol=1e-4 * ref[0].item())
    # Everything past r is zero in the dense spectrum: a rank-r product.
    if ref.numel() > r:
        assert ref[r:].abs().max() < 1e-6 * ref[0]


@settings(max_examples=25, deadline=None)
@given(
    out_f=st.integers(1, 40),
    in_f=st.integers(1, 40),
    r=st.integers(1, 16),
    scaling=st.floats(-4, 4).filter(lambda s: abs(s) > 1e-2),
    seed=st.integers(0, 10_000),
)
def test_factor_spectrum_any_shape(out_f, in_f, r, scaling, seed):
    """Any shape, including r > min(in, out): length r, the extra values zero, vectors rebuild ΔW."""
    A, B = factors(out_f, in_f, r, seed=seed)
    spec = spectrum_from_factors(A, B, scaling, vectors=True)
    ref = dense_values(A, B, scaling)
    k = min(r, out_f, in_f)
    assert spec.values.shape == (r,)
    tol = 1e-4 * max(ref[0].item(), 1e-12)
    torch.testing.assert_close(spec.values[:k].double(), ref[:k], rtol=1e-4, atol=tol)
    if r > k:
        assert spec.values[k:].abs().max().item() <= tol
    delta = scaling * (B @ A)
    rebuilt = spec.U @ torch.diag(spec.values[:k]) @ spec.V.T
    torch.testing.assert_close(rebuilt, delta, rtol=1e-4, atol=1e-4 * delta.abs().max().item() + 1e-6)


def test_singular_vectors_are_orthonormal_and_rebuild_delta():
    A, B = factors(96, 64, 8)
    spec = spectrum_from_factors(A, B, 0.5, vectors=True)
    assert spec.U.shape == (96, 8) and spec.V.shape == (64, 8)
    eye = torch.eye(8)
    torch.testing.assert_close(spec.U.T @ spec.U, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(spec.V.T @ spec.V, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(spec.U @ torch.diag(spec.values) @ spec.V.T, 0.5 * B @ A, atol=1e-5, rtol=1e-4)


def test_zero_b_at_step_zero_gives_zero_values_without_nan():
    A, _ = factors(32, 48, 8)
    B = torch.zeros(32, 8)
    spec = spectrum_from_factors(A, B, 2.0, vectors=True)
    assert torch.equal(spec.values, torch.zeros(8))
    assert torch.isfinite(spec.U).all() and torch.isfinite(spec.V).all()
    summary = spectrum_summary(spec.values)
    assert all(math.isfinite(v) for v in summary.values())
    assert summary["fro_norm"] == 0 and summary["effective_rank"] == 0 and summary["stable_rank"] == 0
    assert summary["numerical_rank"] == 0


def test_bf16_factors_are_computed_in_float32():
    A, B = factors(64, 64, 8, dtype=torch.bfloat16)
    spec = spectrum_from_factors(A, B, 1.0)
    assert spec.values.dtype == torch.float32
    torch.testing.assert_close(spec.values.double(), dense_values(A.float(), B.float(), 1.0)[:8], rtol=1e-4, atol=1e-5)


def test_mismatched_factors_raise():
    with pytest.raises(ValueError, match="do not fit"):
        spectrum_from_factors(torch.zeros(4, 10), torch.zeros(10, 5))


# --- dense spectrum -----------------------------------------------------------------------------


def test_dense_spectrum_exact_when_small():
    W = torch.randn(70, 50)
    values, how = dense_spectrum(W)
    assert "exact" in how and values.shape == (50,)
    torch.testing.assert_close(values, torch.linalg.svdvals(W))


def test_dense_spectrum_lowrank_when_large(monkeypatch):
    """Above the size limit "auto" switches to svd_lowrank, says so, and leaves the global RNG alone."""
    monkeypatch.setattr(analysis, "DENSE_EXACT_MAX", 100)
    g = torch.Generator().manual_seed(1)
    # A decaying spectrum, like a trained update: rank-12 signal plus small noise.
    W = torch.randn(300, 12, generator=g) @ torch.randn(12, 200, generator=g) + 0.01 * torch.randn(
        300, 200, generator=g
    )
    state = torch.get_rng_state()
    values, how = dense_spectrum(W, q=20)
    assert torch.equal(torch.get_rng_state(), state)
    assert "svd_lowrank" in how and "q=20" in how and values.shape == (20,)
    exact = torch.linalg.svdvals(W)[:20]
    torch.testing.assert_close(values[:12], exact[:12], rtol=1e-4, atol=1e-4)
    again, _ = dense_spectrum(W, q=20)
    assert torch.equal(values, again)  # reproducible


def test_randomized_values_hold_their_stated_accuracy():
    """The accuracy analysis.py states for the randomized top-64 values (LOWRANK_MIN_OVERSAMPLE's
    comment; bench/bench_randomized_svd.py prints the same table): lower bounds of the exact values,
    and within the stated relative error on each kind of matrix at 1024 x 1024."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_randomized_svd import test_matrices

    torch.set_num_threads(1)
    # (max relative error of the top 64, of the top 16) stated per matrix, with ~20 % headroom for
    # another BLAS's rounding
    stated = {
        "Gaussian": (0.019, 0.006),
        "flat spectrum 1 -> 0.5": (0.04, 0.025),
        "matrix scenario, full FT (200 steps)": (1e-5, 1e-5),
        "seed preset, full FT (200 steps)": (0.007, 0.001),
    }
    for name, W in test_matrices(1024, 200):
        values, how = dense_spectrum(W, "lowrank", q=64)
        assert "partial" in how and "128 columns" in how
        exact = torch.linalg.svdvals(W)[:64]
        rel = (exact - values).abs() / exact
        assert (values <= exact * (1 + 1e-5)).all(), name  # Rayleigh-Ritz: never above the true values
        worst, worst16 = stated[name]
        assert rel.max().item() <= worst and rel[:16].max().item() <= worst16, (name, rel.max().item())


def test_dense_spectrum_rejects_unknown_method():
    with pytest.raises(ValueError, match="method="):
        dense_spectrum(torch.eye(3), method="magic")


# --- summary figures ----------------------------------------------------------------------------


def test_effective_and_stable_rank_on_known_spectra():
    assert effective_rank(torch.ones(4)).item() == pytest.approx(4.0)
    assert effective_rank(torch.tensor([3.0, 0.0, 0.0])).item() == pytest.approx(1.0)
    assert effective_rank(torch.zeros(5)).item() == 0.0
    p = torch.tensor([0.5, 0.25, 0.25])
    assert effective_rank(2 * p).item() == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert stable_rank(torch.tensor([4.0, 3.0])).item() == pytest.approx(25 / 16)
    assert stable_rank(torch.ones(7)).item() == pytest.approx(7.0)
    assert stable_rank(torch.zeros(3)).item() == 0.0


def test_energy():
    s = torch.tensor([2.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(cumulative_energy(s), torch.tensor([4 / 6, 5 / 6, 1.0, 1.0]))
    assert energy_top_k(s, 1).item() == pytest.approx(4 / 6)
    assert energy_top_k(s, 99).item() == pytest.approx(1.0)
    assert torch.equal(cumulative_energy(torch.zeros(3)), torch.zeros(3))


def test_summary_is_python_floats_matching_the_matrix():
    W = torch.randn(30, 20)
    s = torch.linalg.svdvals(W)
    summary = spectrum_summary(s)
    assert all(isinstance(v, (int, float)) for v in summary.values())
    assert summary["fro_norm"] == pytest.approx(torch.linalg.matrix_norm(W).item(), rel=1e-5)
    assert summary["spectral_norm"] == pytest.approx(torch.linalg.matrix_norm(W, 2).item(), rel=1e-5)
    assert summary["numerical_rank"] == 20 and summary["count"] == 20
    assert summary["energy_top16"] <= 1.0 and summary["energy_top1"] > 0


def test_numerical_rank_uses_the_usual_tolerance_of_the_matrix_shape():
    """σ₁ · max(m, n) · eps, as numpy / torch.linalg.matrix_rank: a direction at 1e-5 · σ₁ of a
    1024 x 1024 ΔW (tolerance 1.2e-4 · σ₁) does not count; with r · eps (4.8e-7 · σ₁ for r = 4) it did."""
    values = torch.tensor([1.0, 0.5, 1e-5, 0.0])
    assert spectrum_summary(values, shape=(1024, 1024))["numerical_rank"] == 2
    assert spectrum_summary(values, shape=(4, 8))["numerical_rank"] == 3
    M = torch.diag(torch.tensor([1.0, 0.5, 1e-5, 0.0], dtype=torch.float32))
    assert spectrum_summary(torch.linalg.svdvals(M), shape=(4, 4))["numerical_rank"] == torch.linalg.matrix_rank(M)


# --- pooling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (5, 300)])
@pytest.mark.parametrize("request_size", [(1, 1), (7, 10), (16, 16), (64, 64), (1000, 1000)])
@pytest.mark.parametrize("mode", ["mean", "maxabs"])
def test_pool_never_exceeds_the_request_nor_upsamples(shape, request_size, mode):
    out = pool_matrix(torch.randn(shape), *request_size, mode=mode)
    assert out.shape == (min(shape[0], request_size[0]), min(shape[1], request_size[1]))


def test_mean_pool_of_divisible_blocks_is_the_block_mean():
    M = torch.randn(12, 20)
    expected = M.view(4, 3, 5, 4).mean(dim=(1, 3))
    torch.testing.assert_close(pool_matrix(M, 4, 5), expected)
    assert torch.equal(pool_matrix(M, 100, 100), M)  # at or below display size: unchanged


def test_maxabs_keeps_the_signed_extreme():
    M = torch.zeros(4, 4)
    M[0, 1], M[1, 0] = -5.0, 3.0  # block (0, 0): -5 wins over 3 by magnitude
    M[2, 3] = 2.0  # block (1, 1)
    M[3, 0] = -0.5  # block (1, 0)
    expected = torch.tensor([[-5.0, 0.0], [-0.5, 2.0]])
    assert torch.equal(pool_matrix(M, 2, 2, mode="maxabs"), expected)


@pytest.mark.parametrize(
    "out_f,in_f,rows,cols", [(37, 53, 10, 7), (64, 64, 8, 8), (100, 30, 33, 29), (20, 20, 64, 64), (513, 257, 128, 96)]
)
def test_pooled_delta_from_factors_equals_pooling_the_dense_product(out_f, in_f, rows, cols):
    A, B = factors(out_f, in_f, 6)
    dense = 1.5 * (B @ A)
    for mode in ("mean", "maxabs"):
        got = pooled_delta(A, B, 1.5, rows, cols, mode=mode)
        torch.testing.assert_close(got, pool_matrix(dense, rows, cols, mode=mode), atol=1e-6, rtol=1e-5)


def test_pool_rejects_bad_requests():
    with pytest.raises(ValueError, match="rows=0"):
        pool_matrix(torch.zeros(4, 4), 0, 3)
    with pytest.raises(ValueError, match="mode="):
        pooled_delta(torch.zeros(2, 4), torch.zeros(4, 2), 1.0, 2, 2, mode="median")


# --- subspace similarity ------------------------------------------------------------------------


def test_subspace_similarity_of_a_matrix_with_itself():
    A, _ = factors(8, 64, 8)
    phi = subspace_similarity(A, A)
    assert phi.shape == (8, 8)
    torch.testing.assert_close(phi.diagonal(), torch.ones(8), atol=1e-5, rtol=0)
    assert phi.min() >= 0 and phi.max() <= 1


def test_subspace_similarity_matches_the_definition():
    A8, _ = factors(8, 64, 8, seed=1)
    A64, _ = factors(8, 64, 64, seed=2)
    phi = subspace_similarity(A8, A64)
    assert phi.shape == (8, 64)
    U1 = torch.linalg.svd(A8.double(), full_matrices=False)[2].T
    U2 = torch.linalg.svd(A64.double(), full_matrices=False)[2].T
    for i, j in [(1, 1), (3, 7), (8, 64), (8, 1), (5, 40)]:
        direct = torch.linalg.matrix_norm(U1[:, :i].T @ U2[:, :j]).item() ** 2 / min(i, j)
        assert phi[i - 1, j - 1].item() == pytest.approx(direct, abs=1e-5)
    # 64 directions in a 64-dim space contain every 8-dim subspace.
    assert phi[7, 63].item() == pytest.approx(1.0, abs=1e-5)


def test_subspace_similarity_of_same_and_orthogonal_row_spaces():
    A, _ = factors(4, 32, 4)
    mixed = torch.randn(4, 4) @ A  # same row space, different basis
    assert subspace_similarity(A, mixed)[3, 3].item() == pytest.approx(1.0, abs=1e-5)
    e = torch.eye(32)
    assert subspace_similarity(e[:4], e[4:8]).max().item() == pytest.approx(0.0, abs=1e-7)


# --- amplification ------------------------------------------------------------------------------


def test_amplification_against_a_dense_computation():
    out_f, in_f, r = 48, 64, 4
    g = torch.Generator().manual_seed(3)
    W0 = torch.randn(out_f, in_f, generator=g, dtype=torch.float64)
    A, B = factors(out_f, in_f, r, seed=4)
    got = amplification(W0, A, B, 2.0, generator=torch.Generator().manual_seed(7))

    delta = 2.0 * (B.double() @ A.double())
    U, S, Vh = torch.linalg.svd(delta)
    proj = torch.linalg.matrix_norm(U[:, :r].T @ W0 @ Vh[:r].T).item()
    U0, S0, Vh0 = torch.linalg.svd(W0)
    proj_top = torch.linalg.matrix_norm(U0[:, :r].T @ W0 @ Vh0[:r].T).item()
    rg = torch.Generator().manual_seed(7)  # the same draws in the same order
    Ur = torch.linalg.qr(torch.randn(out_f, r, generator=rg))[0].double()
    Vr = torch.linalg.qr(torch.randn(in_f, r, generator=rg))[0].double()
    proj_random = torch.linalg.matrix_norm(Ur.T @ W0 @ Vr).item()

    assert got["rank"] == r
    assert got["delta_fro"] == pytest.approx(torch.linalg.matrix_norm(delta).item(), rel=1e-4)
    assert got["w0_fro"] == pytest.approx(torch.linalg.matrix_norm(W0).item(), rel=1e-5)
    assert got["proj_delta"] == pytest.approx(proj, rel=1e-4)
    assert got["proj_w0_top"] == pytest.approx(proj_top, rel=1e-4)
    assert got["proj_random"] == pytest.approx(proj_random, rel=1e-4)
    assert got["factor"] == pytest.approx(got["delta_fro"] / proj, rel=1e-4)
    # W0's own top directions hold the most of W0 an r-dim projection can.
    assert got["proj_w0_top"] >= max(got["proj_delta"], got["proj_random"])
    assert all(isinstance(v, (int, float)) for v in got.values())


def test_amplification_uses_only_the_directions_dW_has():
    """rank(ΔW) = 2 < r = 8 (six columns of B still zero): the singular vectors of σ = 0 are arbitrary,
    so the projections use ΔW's two directions only, checked against a dense float64 computation."""
    out_f, in_f, r = 48, 64, 8
    g = torch.Generator().manual_seed(3)
    W0 = torch.randn(out_f, in_f, generator=g, dtype=torch.float64)
    A, B = factors(out_f, in_f, r, seed=4)
    B[:, 2:] = 0
    got = amplification(W0, A, B, 2.0, generator=torch.Generator().manual_seed(7))
    assert got["rank"] == 2 and got["adapter_rank"] == 8

    delta = 2.0 * (B.double() @ A.double())
    U, S, Vh = torch.linalg.svd(delta)
    proj = torch.linalg.matrix_norm(U[:, :2].T @ W0 @ Vh[:2].T).item()
    S0 = torch.linalg.svdvals(W0)
    rg = torch.Generator().manual_seed(7)  # the first 2 columns of the same r random draws
    Ur = torch.linalg.qr(torch.randn(out_f, r, generator=rg))[0].double()[:, :2]
    Vr = torch.linalg.qr(torch.randn(in_f, r, generator=rg))[0].double()[:, :2]
    assert got["proj_delta"] == pytest.approx(proj, rel=1e-4)
    assert got["factor"] == pytest.approx(torch.linalg.matrix_norm(delta).item() / proj, rel=1e-4)
    assert got["proj_w0_top"] == pytest.approx(S0[:2].square().sum().sqrt().item(), rel=1e-4)
    assert got["proj_random"] == pytest.approx(torch.linalg.matrix_norm(Ur.T @ W0 @ Vr).item(), rel=1e-4)


def test_amplification_at_step_zero_is_finite():
    A, _ = factors(16, 24, 4)
    got = amplification(torch.randn(16, 24), A, torch.zeros(16, 4), 1.0)
    assert got["delta_fro"] == 0 and got["factor"] == 0
    assert all(math.isfinite(v) for v in got.values())
