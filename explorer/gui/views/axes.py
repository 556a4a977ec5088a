"""Axes several views share: a log axis with a few round labels (σ, loss) and a step axis that only
ever reads whole, non-negative steps.

pyqtgraph's own log axis labels powers of ten only, so a loss between 1.4 and 3.6 on log y showed no
label at all; its linear axis cuts a range of three steps into halves (0.5, 1.5) and pads a run's
first steps into negative ones.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtGui


def nice_step(span: float, count: int = 3) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts `span` into about `count` parts."""
    if not np.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(1, count)
    power = 10.0 ** np.floor(np.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * power >= raw:
            return float(m * power)
    return float(10 * power)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
# Mantissas of the labelled ticks, densest first; a set is used when its labels fit the axis.
_MANTISSAS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,))


def format_log_value(value: float, powers: bool = False) -> str:
    """A tick label for a value on a log axis: '0.2', '30', '10⁻⁵', '2×10⁻⁵' (no float noise, no
    'e-05'); `powers` writes every value as a power of ten (an axis spanning many decades)."""
    if value <= 0 or not np.isfinite(value):
        return ""
    exponent = int(np.floor(np.log10(value) + 1e-9))
    if not powers and -3 <= exponent <= 4:
        return f"{value:.3g}"
    mantissa = value / 10.0**exponent
    power = f"10{str(exponent).translate(_SUPERSCRIPT)}"
    return power if abs(mantissa - 1) < 1e-6 else f"{mantissa:.2g}×{power}"


def log_ticks(lo: float, hi: float, max_labels: int) -> tuple[list[float], list[float]]:
    """(labelled, unlabelled) tick values, as log10 of the value, for a log axis spanning [lo, hi] (log10).

    Labels at round values (1, 2, 5 x 10^k, or fewer), at most `max_labels` of them, so an axis of
    less than two decades is not crowded with the minor labels pyqtgraph would write; unlabelled
    minor ticks at 1..9 x 10^k while there are few decades. An axis too short to hold two round values
    gets evenly spaced ones (0.75, 0.8, 0.85)."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return [], []
    max_labels = max(2, int(max_labels))
    decades = range(int(np.floor(lo)), int(np.ceil(hi)) + 1)

    def inside(mantissas):
        return [d + float(np.log10(m)) for d in decades for m in mantissas if lo <= d + np.log10(m) <= hi]

    labelled: list[float] = []
    for mantissas in _MANTISSAS:
        values = inside(mantissas)
        if 2 <= len(values) <= max_labels:
            labelled = values
            break
    if not labelled:
        whole = [float(d) for d in decades if lo <= d <= hi]
        if len(whole) >= 2:  # many decades: every n-th power of ten
            every = int(np.ceil(len(whole) / max_labels))
            first = int(np.ceil(lo))
            labelled = [v for v in whole if (int(v) - first) % every == 0]
        else:  # less than a factor ~2 in view: round linear values
            a, b = 10.0**lo, 10.0**hi
            step = float(nice_step(b - a, min(max_labels, 4)))
            values = np.arange(np.ceil(a / step) * step, b + step * 1e-6, step)
            labelled = [float(np.log10(v)) for v in values if v > 0]
    minor: list[float] = []
    if hi - lo <= 4:
        taken = set(np.round(labelled, 6))
        minor = [v for v in inside(range(1, 10)) if round(v, 6) not in taken]
    return labelled, minor


class LogValueAxis(pg.AxisItem):
    """A value axis (σ, loss) that in log mode has a few round labels (see `log_ticks`), also within one
    decade, and unlabelled minor ticks; in linear mode it is pyqtgraph's."""

    MAX_LABELS = 6
    LABEL_GAP = 1.3  # labelled ticks at least this many text lines apart

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._labelled: set[float] = set()

    def logTickValues(self, minVal, maxVal, size, stdTicks):  # noqa: N802 - pyqtgraph API
        font = self.style.get("tickFont") or QtGui.QFont()
        line = QtGui.QFontMetrics(font).height()
        fit = min(self.MAX_LABELS, int(size / (line * 2.5)))
        labelled, minor = log_ticks(float(minVal), float(maxVal), fit)
        # labels at least LABEL_GAP lines apart, from the top (0.8 and 1 are a tenth of a decade apart:
        # on a short axis they were drawn over each other); the others stay as unlabelled ticks
        span = float(maxVal) - float(minVal)
        gap = self.LABEL_GAP * line * span / size if size > 0 and span > 0 else 0.0
        kept: list[float] = []
        for v in sorted(labelled, reverse=True):
            if not kept or kept[-1] - v >= gap:
                kept.append(v)
        minor, labelled = sorted(set(minor) | (set(labelled) - set(kept))), sorted(kept)
        self._labelled = {round(v, 9) for v in labelled}
        return [(None, labelled), (None, minor)]

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        shown = [10.0 ** float(v) * scale for v in values if round(float(v), 9) in self._labelled]
        powers = bool(shown) and (min(shown) < 1e-3 or max(shown) >= 1e5)
        return [
            format_log_value(10.0 ** float(v) * scale, powers) if round(float(v), 9) in self._labelled else ""
            for v in values
        ]


class StepAxis(pg.AxisItem):
    """A training-step axis: ticks at whole steps >= 0 only (a step is a count), written as integers;
    pyqtgraph's spacing is kept when it is a whole number of steps, and a range narrower than a few
    steps gets one tick per step."""

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph API
        lo, hi = sorted((float(minVal), float(maxVal)))
        if not (np.isfinite(lo) and np.isfinite(hi)) or size <= 0:
            return []
        levels = []
        for spacing, values in super().tickValues(lo, hi, size):
            if spacing < 1.0 or abs(spacing - round(spacing)) > 1e-9 * max(1.0, spacing):
                continue  # halves and tenths of a step
            whole = [float(round(v)) for v in values if v >= -1e-9 and abs(v - round(v)) < 1e-6 * max(1.0, spacing)]
            levels.append((float(round(spacing)), whole))
        if not any(values for _, values in levels):
            first, last = int(np.ceil(max(lo, 0.0) - 1e-9)), int(np.floor(hi + 1e-9))
            if last < first:
                return []
            every = max(1, int(nice_step(last - first, 4))) if last - first > 4 else 1
            levels = [(float(every), [float(v) for v in range(first - first % every, last + 1, every) if v >= first])]
        return self._readable(levels, lo, hi, size)

    def _readable(self, levels, lo: float, hi: float, size: float):
        """The levels whose labels do not run into each other: pyqtgraph labelled every step of
        0..13 on a 250 px axis ('10111213')."""
        if self.orientation not in ("bottom", "top") or hi <= lo:
            return levels
        font = self.style.get("tickFont") or QtGui.QFont()
        widest = QtGui.QFontMetrics(font).horizontalAdvance(str(int(max(abs(lo), abs(hi)))))
        per_step = size / (hi - lo)
        kept = [(spacing, values) for spacing, values in levels if spacing * per_step >= widest + 8]
        if kept or not levels:
            return kept
        spacing = max(1.0, float(np.ceil(nice_step((widest + 8) / per_step * 4, 4))))  # the finest that fits
        first = np.ceil(max(lo, 0.0) / spacing) * spacing
        return [(spacing, [float(v) for v in np.arange(first, hi + 1e-9, spacing)])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        return [f"{int(round(v * scale))}" for v in values]


class ShareAxis(pg.AxisItem):
    """An axis of a share from 0 to 1 (cumulative energy), labelled in per cent at round shares, as
    many as fit without crowding: 0 / 25 / 50 / 75 / 100 %, 0 / 50 / 100 %, or 0 / 100 % (none on an
    axis shorter than two lines of its type). pyqtgraph's own ticks crowd a short axis at talk-mode
    sizes into labels drawn over each other."""

    STEPS = (0.2, 0.25, 0.5, 1.0)  # at most six labels
    GAP_LINES = 1.8  # labelled ticks at least this many text lines apart

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph API
        lo, hi = sorted((float(minVal), float(maxVal)))
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo or size <= 0:
            return []
        font = self.style.get("tickFont") or QtGui.QFont()
        line = QtGui.QFontMetrics(font).height()
        per_unit = size / (hi - lo)  # pixels per share of 1
        for step in self.STEPS:
            values = share_ticks(lo, hi, step)
            if step * per_unit >= self.GAP_LINES * line and len(values) >= 2:
                return [(step, values)]
        return []

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        return [format_share_tick(v * scale) for v in values]


def share_ticks(lo: float, hi: float, step: float) -> list[float]:
    """Multiples of `step` in [lo, hi] ∩ [0, 1]."""
    first = int(np.ceil(max(lo, 0.0) / step - 1e-9))
    last = int(np.floor(min(hi, 1.0) / step + 1e-9))
    return [round(k * step, 9) for k in range(first, last + 1)]


def format_share_tick(value: float) -> str:
    """0.25 -> '25 %', 1.0 -> '100 %' (whole per cents: the ticks are multiples of 10 % or 25 %)."""
    return f"{100 * value:.0f} %"
