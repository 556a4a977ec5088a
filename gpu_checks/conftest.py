import sys
from pathlib import Path

import pytest
import torch

# Reuse the CPU suite's helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        raise pytest.UsageError("gpu_checks need a CUDA device; the CPU suite is `python -m pytest`")
