"""Functions the job tests run in a child process (engine/jobs.py names them by string)."""

from __future__ import annotations

import os
import time


def count(n: int, progress=None) -> dict:
    for i in range(n):
        if progress is not None:
            progress(i + 1, n)
    return {"n": n, "pid": os.getpid()}


def refuse(path: str) -> None:
    raise ValueError(f"{path}: not an adapter directory (no adapter_config.json)")


def crash() -> None:
    raise KeyError("model.layers.0")


def hang(marker: str) -> None:
    """Writes its pid to `marker`, then never returns (a hostile file's parse that never ends)."""
    with open(marker, "w") as fh:
        fh.write(str(os.getpid()))
    while True:
        time.sleep(0.05)


def die() -> None:
    os._exit(3)
