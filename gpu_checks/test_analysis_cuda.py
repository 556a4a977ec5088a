"""Run on a GPU machine: `python -m pytest gpu_checks`. Not part of the default suite (CI has no GPU)."""

import torch
from test_analysis import dense_values, factors  # noqa: F401 - shared helpers

from explorer.core.analysis import (
    amplification,
    dense_spectrum,
    pooled_delta,
    spectrum_from_factors,
    subspace_similarity,
)


def test_everything_stays_on_the_device():
    A, B = (t.cuda() for t in factors(256, 512, 8))
    spec = spectrum_from_factors(A, B, 2.0, vectors=True)
    assert spec.values.is_cuda and spec.U.is_cuda
    torch.testing.assert_close(
        spec.values.cpu().double(), dense_values(A.cpu(), B.cpu(), 2.0)[:8], rtol=1e-4, atol=1e-3
    )
    assert pooled_delta(A, B, 2.0, 32, 32).is_cuda
    assert subspace_similarity(A, A).is_cuda
    assert dense_spectrum(B @ A)[0].is_cuda
    amplification(torch.randn(256, 512, device="cuda"), A, B, 2.0)
