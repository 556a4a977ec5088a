"""Bounded histories that thin out old points, so memory stays flat over a million steps.

A `ThinningBuffer` keeps at most `capacity` points. It accepts every `stride`-th point offered;
when it is full it keeps every second stored point and doubles the stride. The points kept are
then evenly spread over the whole run (every 1st, 2nd, 4th, ... point), the first point is never
lost, and the most recent point is always shown (kept aside until the stride takes it).
"""

from __future__ import annotations

import numpy as np

# How much history a snapshot carries (the engine's runs and the recordings of a user's own run alike)
LOSS_HISTORY = 2048
EVAL_HISTORY = 512
GATE_HISTORY = 512
SPECTRUM_HISTORY = 256
SPECTRUM_HISTORY_VALUES = 64  # leading singular values kept per matrix in the waterfall history


class ThinningBuffer:
    def __init__(self, capacity: int = 2048, shape: tuple[int, ...] = (), dtype=np.float32):
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity={capacity} must be an even number of at least 2")
        self.capacity = capacity
        self.shape = tuple(shape)
        self._steps = np.zeros(capacity, np.int64)
        self._values = np.zeros((capacity, *self.shape), dtype)
        self._n = 0
        self.stride = 1
        self._offered = 0
        self._last: tuple[int, np.ndarray] | None = None
        self._last_stored = False

    def __len__(self) -> int:
        return self._n + (0 if self._last is None or self._last_stored else 1)

    def append(self, step: int, value) -> None:
        value = np.asarray(value, dtype=self._values.dtype)
        if value.shape != self.shape:
            raise ValueError(f"value shape {value.shape} does not match the buffer's {self.shape}")
        self._last = (int(step), value.copy())
        self._last_stored = False
        if self._offered % self.stride == 0:
            if self._n == self.capacity:
                keep = slice(0, self._n, 2)
                half = (self._n + 1) // 2
                self._steps[:half] = self._steps[keep]
                self._values[:half] = self._values[keep]
                self._n = half
                self.stride *= 2
            if self._offered % self.stride == 0:
                self._steps[self._n] = step
                self._values[self._n] = value
                self._n += 1
                self._last_stored = True
        self._offered += 1

    def rewind(self, step: int) -> None:
        """Forget points at `step` or later (a fault sent the run back there)."""
        keep = int(np.searchsorted(self._steps[: self._n], step, side="left"))
        dropped = self._n - keep
        self._n = keep
        self._offered = max(0, self._offered - dropped * self.stride)
        if self._last is not None and self._last[0] >= step:
            if self._n:
                self._last = (int(self._steps[self._n - 1]), self._values[self._n - 1].copy())
                self._last_stored = True
            else:
                self._last, self._last_stored = None, False

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (steps, values) kept, ending with the most recent point."""
        steps, values = self._steps[: self._n].copy(), self._values[: self._n].copy()
        if self._last is not None and not self._last_stored:
            steps = np.append(steps, self._last[0])
            values = np.concatenate([values, self._last[1][None]], axis=0)
        return steps, values

    @property
    def last(self):
        return None if self._last is None else self._last[1]

    def nbytes(self) -> int:
        return self._steps.nbytes + self._values.nbytes


class SpectrumHistory:
    """Spectra of several matrices at the same steps, in one thinning buffer.

    Each row is the concatenation of the matrices' leading `max_values` singular values, so all
    matrices share one step axis and one thinning schedule.
    """

    def __init__(self, lengths: dict[str, int], capacity: int = 256, max_values: int = 64):
        self.lengths = {name: min(n, max_values) for name, n in lengths.items()}
        total = sum(self.lengths.values())
        self.buffer = ThinningBuffer(capacity, (total,)) if total else None

    def append(self, step: int, spectra: dict[str, np.ndarray]) -> None:
        if self.buffer is None:
            return
        row = np.concatenate([np.asarray(spectra[name], np.float32)[:n] for name, n in self.lengths.items()])
        self.buffer.append(step, row)

    def rewind(self, step: int) -> None:
        if self.buffer is not None:
            self.buffer.rewind(step)

    def arrays(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self.buffer is None:
            return np.zeros(0, np.int64), {}
        steps, rows = self.buffer.arrays()
        out, start = {}, 0
        for name, n in self.lengths.items():
            out[name] = np.ascontiguousarray(rows[:, start : start + n])
            start += n
        return steps, out
