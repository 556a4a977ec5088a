"""Where training runs: device and dtype resolution, a readable name, memory in use.

`auto` picks cuda, then mps, then cpu. bf16 is offered on a GPU only (as mixed precision: fp32
weights, bf16 autocast), because the CPU's bf16 matmuls are slow and the small models gain nothing.
"""

from __future__ import annotations

import os
import sys

import torch

import explorer
from explorer.core import cpu_threads


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """auto -> cuda, then mps, then cpu; a named device that is not there is a ValueError."""
    if name == "auto":
        if cuda_available():
            return torch.device("cuda", torch.cuda.current_device())
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not cuda_available():
            raise ValueError(
                "device='cuda' is not available on this machine: allowed auto, cpu"
                + (", mps" if mps_available() else "")
            )
        return torch.device("cuda", torch.cuda.current_device())
    if name == "mps":
        if not mps_available():
            raise ValueError(
                "device='mps' is not available on this machine: allowed auto, cpu"
                + (", cuda" if cuda_available() else "")
            )
        return torch.device("mps")
    raise ValueError(f"device={name!r} is unknown: allowed auto, cpu, cuda, mps")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: None for fp32, torch.bfloat16 for bf16 (GPU only)."""
    if name == "fp32":
        return None
    if name == "bf16":
        if device.type == "cpu":
            raise ValueError("dtype='bf16' needs a GPU (cuda or mps): allowed fp32 on the cpu")
        return torch.bfloat16
    raise ValueError(f"dtype={name!r} is unknown: allowed fp32, bf16")


def device_name(device: torch.device) -> str:
    """A label for the status bar: 'cuda:0 (NVIDIA H200)', 'mps', 'cpu (1 thread)'."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n != 1 else ''})"
    return str(device)


def memory_bytes(device: torch.device) -> int:
    """Memory in use: allocated tensors on CUDA / MPS, the process's resident set on the CPU."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.memory_allocated(device))
        if device.type == "mps":
            return int(torch.mps.current_allocated_memory())
    except Exception:  # a broken driver must not break a snapshot
        return 0
    return process_rss()


_RSS_CACHE = [0.0, 0]
RSS_MAX_AGE_S = 0.25


def process_rss() -> int:
    """Resident set size, re-read at most every RSS_MAX_AGE_S seconds (reading /proc costs ~0.1 ms)."""
    import time

    now = time.monotonic()
    if now - _RSS_CACHE[0] < RSS_MAX_AGE_S and _RSS_CACHE[1]:
        return _RSS_CACHE[1]
    _RSS_CACHE[:] = [now, _read_rss()]
    return _RSS_CACHE[1]


def _read_rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)  # peak, the best we have here
    except Exception:
        return 0


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (for honest timings)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def worker_threads(
    matmul_flops: float | None = None, *, device: torch.device | None = None, beside_gui: bool = True
) -> int:
    """A torch thread count from a look at the machine, untuned (explorer/core/cpu_threads.py says
    where it is used and why the default tunes instead): on the CPU the cores free now, capped by what
    a step's matrix products can use, less one core for the window when `beside_gui`; on a GPU every
    core (less the window's), as before."""
    if device is not None and device.type != "cpu":
        return max(1, cpu_threads.usable_cores() - (1 if beside_gui else 0))
    return cpu_threads.default_threads(matmul_flops, reserve=1 if beside_gui else 0)


def thread_plan(
    requested: int | None, matmul_flops: float | None, device: torch.device, *, beside_gui: bool
) -> tuple[int, list[int]]:
    """(the count to start with, the counts engine/thread_tuner.py may try). A request (checked:
    1 .. 4 x cores) is kept as it is, and so is the GPU's count. On the CPU the tuner tries 1 up to the
    cores (less the window's) and what the model's matrix products can use; but while OpenMP's threads
    may spin (torch was loaded before explorer, without OMP_WAIT_POLICY=PASSIVE) only the cores free
    now are used, untuned: a spinning thread on a core another process takes is what collapsed (issue 17)."""
    n = cpu_threads.check_threads(requested)
    if n:
        return n, [n]
    if device.type != "cpu" or not explorer.OPENMP_PASSIVE:
        n = worker_threads(matmul_flops, device=device, beside_gui=beside_gui)
        return n, [n]
    # Start with the most: sleeping threads cost little when cores are taken, and on a crowded machine
    # they get more of the CPU; the tuner drops to fewer within the first steps where fewer are faster.
    cap = max(1, min(cpu_threads.usable_cores() - (1 if beside_gui else 0), cpu_threads.work_threads(matmul_flops)))
    return cap, list(range(1, cap + 1))
