"""How many CPU threads torch trains with, everywhere that trains (run, compare, the app's child
process, the thread workers). No torch here: `--threads` is checked before torch loads.

What the default does, and why (issue 17; bench/bench_threads.py measures it):
1. OpenMP's threads sleep at once instead of spinning (OMP_WAIT_POLICY=PASSIVE, set by
   explorer/__init__.py before torch loads). This is the fix for the collapse: by default libgomp's
   threads spin at every barrier, so with 2 threads on 2 cores and another process on one of them,
   each of the thousands of short parallel regions in a small model's step waited for a descheduled
   partner while its spinning twin held the other core. Measured (lm run, 2 cores): 0.77 steps/s
   spinning against 6.8 passive with a core burned, 1.6 against 12 at load ~1.7.
2. The candidates: 1 up to the usable cores (the affinity mask), less one kept for the window beside
   the GUI, and no more than a step's typical matrix product can keep busy (OP_FLOPS_PER_THREAD a
   thread; the shipped model's 1024 x 128 x 344 products are worth 3, the 128 x 128 matrix 1).
3. The count among them is settled by timing real steps (engine/thread_tuner.py), and again every
   30 s of stepping, starting from the most: neither the free cores nor the load predict it. At load
   ~2 one thread beat two (8.4 against 7.2 steps/s); at load ~9 two beat one by 1.5-3x, because among
   many runnable threads the scheduler gives each its share, so two threads get more of the CPU.
4. Fallbacks: when torch was loaded before explorer without PASSIVE (threads may spin), the cores
   free now (a /proc/stat sample of other processes' use, SAMPLE_S) are used, untuned, never more;
   on a GPU the CPU only feeds it, so every core (less the window's) as before.
A request (`--threads N`, `threads=N`) is used as it is, bounded to 1 .. 4 x the cores.
Inter-op threads are left alone: eager training never uses torch's inter-op pool.
"""

from __future__ import annotations

import math
import os
import time

import explorer

MAX_THREADS_PER_CORE = 4  # --threads above 4 x the cores is a mistake (1000000 crashed OpenMP)
OP_FLOPS_PER_THREAD = 25e6  # about 0.3 ms of one core's matrix product: worth a thread's wake-up
SAMPLE_S = 0.2  # how long to watch /proc/stat for other processes' CPU use


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def max_threads(cores: int | None = None) -> int:
    return MAX_THREADS_PER_CORE * (cores or usable_cores())


def check_threads(threads, cores: int | None = None, name: str = "threads") -> int:
    """A requested thread count: 0 (or None) means automatic; otherwise 1 .. 4 x the cores.
    Returns it as an int; anything else is a ValueError naming the setting."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise ValueError(
            f"{name}={threads!r} is not a whole number: allowed 0 (automatic) or 1 to {max_threads(cores)}"
        )
    cores = cores or usable_cores()
    if threads < 0 or threads > max_threads(cores):
        raise ValueError(
            f"{name}={threads} is out of range: allowed 0 (automatic) or 1 to {max_threads(cores)} "
            f"({MAX_THREADS_PER_CORE} x the {cores} usable core{'s' if cores != 1 else ''})"
        )
    return threads


def work_threads(matmul_flops: float | None) -> int:
    """Threads a step's typical matrix product can keep busy (None: no limit known)."""
    if matmul_flops is None:
        return 1 << 30
    return max(1, int(matmul_flops // OP_FLOPS_PER_THREAD))


def choose_threads(
    cores: int, others_busy: float, matmul_flops: float | None, *, reserve: int = 0, passive: bool = True
) -> int:
    """A thread count from the machine's figures (the count where OpenMP may spin, see 4. above; and
    worker_threads' guess), from numbers: `cores` usable, `others_busy` cores' worth of CPU used
    by other processes, `matmul_flops` of a typical matrix product in a step, `reserve` cores kept for
    the GUI. With `passive` OpenMP a thread that finds its core half taken costs little, so a core
    counts as free when more than half of it is; a spinning thread on a busy core costs ten times
    more, so then only wholly free cores count."""
    free = cores - reserve - max(0.0, float(others_busy))
    by_load = math.floor(free + 0.5) if passive else math.floor(free + 1e-9)
    return max(1, min(cores, by_load, work_threads(matmul_flops)))


def _cpu_ticks(cpus: set[int] | None, path: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) jiffies of the given CPUs (None: all) from /proc/stat, or None where it cannot be read."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        parts = line.split()
        try:
            cpu = int(parts[0][3:])
            values = [int(v) for v in parts[1:9]]  # user nice system idle iowait irq softirq steal
        except (ValueError, IndexError):
            return None
        if (cpus is not None and cpu not in cpus) or len(values) < 5:
            continue
        busy += sum(values) - values[3] - values[4]
        total += sum(values)
    return (busy, total) if total else None


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def others_busy_cores(sample_s: float = SAMPLE_S) -> float | None:
    """Cores' worth of CPU that other processes used over `sample_s` seconds (this process's own use
    taken out), on the CPUs we may run on; None where /proc/stat cannot be read."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    before, own_before, t0 = _cpu_ticks(cpus), _own_cpu_seconds(), time.monotonic()
    if before is None:
        return None
    time.sleep(sample_s)
    after, own_after, t1 = _cpu_ticks(cpus), _own_cpu_seconds(), time.monotonic()
    if after is None or after[1] <= before[1] or t1 <= t0:
        return None
    n_cpus = len(cpus) if cpus else (os.cpu_count() or 1)
    busy_share = (after[0] - before[0]) / (after[1] - before[1])  # of all the CPUs' time
    own = (own_after - own_before) / (t1 - t0)
    return max(0.0, busy_share * n_cpus - own)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_threads(matmul_flops: float | None, *, reserve: int = 0) -> int:
    """choose_threads on this machine as it is now (takes SAMPLE_S to look)."""
    cores = usable_cores()
    busy = others_busy_cores()
    if busy is None:
        busy = load_average() or 0.0
    return choose_threads(cores, busy, matmul_flops, reserve=reserve, passive=explorer.OPENMP_PASSIVE)
