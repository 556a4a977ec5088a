"""Colour maps for the views: 256-entry lookup tables and levels that don't flicker.

- Diverging maps are centred on zero: negative values blue (or purple), zero white, positive red
  (or orange). `RdBu` is the everyday map; `PuOr` (purple-orange, ColorBrewer) stays readable for
  the common forms of colour blindness and in a projector's washed-out light, so talk mode uses it.
- Sequential maps (waterfalls, gate heatmaps) come from pyqtgraph's shipped CC0 maps (viridis,
  cividis...), which are perceptually uniform; cividis is designed for colour-vision deficiency.
- `SymmetricLevels` turns a stream of frames into levels ±m with m following max|x|: it jumps up
  at once (nothing ever saturates by surprise) and falls back slowly, so the colours of a matrix
  that shrinks for one frame don't flicker. `MaxLevels` does the same for non-negative data (0, m).

Every LUT is a read-only (256, 4) uint8 array, ready for `ImageItem.setLookupTable`.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pyqtgraph as pg

LUT_SIZE = 256

# ColorBrewer anchors (Cynthia Brewer, Apache-2.0), ordered from the most negative to the most positive.
_DIVERGING_ANCHORS: dict[str, tuple[str, ...]] = {
    # blue for negative, red for positive (RdBu reversed, as in most weight plots)
    "RdBu": (
        "#053061",
        "#2166ac",
        "#4393c3",
        "#92c5de",
        "#d1e5f0",
        "#f7f7f7",
        "#fddbc7",
        "#f4a582",
        "#d6604d",
        "#b2182b",
        "#67001f",
    ),
    # purple for negative, orange for positive: colour-blind safe
    "PuOr": (
        "#2d004b",
        "#542788",
        "#8073ac",
        "#b2abd2",
        "#d8daeb",
        "#f7f7f7",
        "#fee0b6",
        "#fdb863",
        "#e08214",
        "#b35806",
        "#7f3b08",
    ),
    # teal for negative, brown for positive: colour-blind safe
    "BrBG": (
        "#003c30",
        "#01665e",
        "#35978f",
        "#80cdc1",
        "#c7eae5",
        "#f5f5f5",
        "#f6e8c3",
        "#dfc27d",
        "#bf812d",
        "#8c510a",
        "#543005",
    ),
}

DIVERGING = "RdBu"  # the everyday diverging map
DIVERGING_SAFE = "PuOr"  # talk mode / colour-blind safe
SEQUENTIAL = "viridis"
SEQUENTIAL_SAFE = "cividis"

# Okabe & Ito (2008): eight colours distinguishable with every common colour-vision deficiency.
QUALITATIVE = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")


def diverging_names() -> tuple[str, ...]:
    return tuple(_DIVERGING_ANCHORS)


def is_diverging(name: str) -> bool:
    return name in _DIVERGING_ANCHORS


@cache
def colormap(name: str) -> pg.ColorMap:
    """A pyqtgraph ColorMap by name: one of the diverging maps above, or any pyqtgraph map (viridis...)."""
    anchors = _DIVERGING_ANCHORS.get(name)
    if anchors is not None:
        colors = [pg.mkColor(c) for c in anchors]
        return pg.ColorMap(np.linspace(0.0, 1.0, len(colors)), colors, name=name)
    cmap = pg.colormap.get(name)
    if cmap is None:
        raise ValueError(f"unknown colour map {name!r}")
    return cmap


def colorbar(name: str, values: tuple[float, float] = (0.0, 1.0), width: int = 14) -> pg.ColorBarItem:
    """A new colour bar that only shows the map (no dragging, no menu): the views set its levels."""
    return pg.ColorBarItem(values=values, colorMap=colormap(name), interactive=False, width=width, colorMapMenu=False)


@cache
def lut(name: str, n: int = LUT_SIZE) -> np.ndarray:
    """An (n, 4) uint8 RGBA lookup table, read-only and cached."""
    table = colormap(name).getLookupTable(0.0, 1.0, n, alpha=True)
    table = np.ascontiguousarray(table, dtype=np.uint8)
    table.setflags(write=False)
    return table


def diverging_for(high_contrast: bool) -> str:
    return DIVERGING_SAFE if high_contrast else DIVERGING


def sequential_for(high_contrast: bool) -> str:
    return SEQUENTIAL_SAFE if high_contrast else SEQUENTIAL


def abs_max(data: np.ndarray | None) -> float:
    """max |x| over the finite values (NaN and inf ignored); 0 for empty or all-NaN data."""
    if data is None or data.size == 0:
        return 0.0
    hi = np.nanmax(data) if data.dtype.kind == "f" else data.max()
    lo = np.nanmin(data) if data.dtype.kind == "f" else data.min()
    m = max(abs(float(hi)), abs(float(lo)))
    if not math.isfinite(m):  # inf somewhere (or all NaN): scale by the finite values only
        finite = data[np.isfinite(data)]
        m = float(np.abs(finite).max()) if finite.size else 0.0
    return m


class SymmetricLevels:
    """Levels (-m, m) with m smoothed over frames.

    m jumps up to a new max|x| at once and decays towards a smaller one by `decay` per frame.
    With `hold=True` (talk mode) m never falls within a segment: the colours are fixed once reached.
    `floor` keeps the levels apart for an all-zero matrix (ΔW at step 0), which then draws as the
    map's centre colour.
    """

    def __init__(self, decay: float = 0.85, floor: float = 1e-12, hold: bool = False):
        self.decay = decay
        self.floor = floor
        self.hold = hold
        self._m: float | None = None

    def reset(self) -> None:
        self._m = None

    @property
    def value(self) -> float:
        return max(self._m or 0.0, self.floor)

    def update(self, data: np.ndarray | None) -> tuple[float, float]:
        return self.update_max(abs_max(data))

    def update_max(self, m: float) -> tuple[float, float]:
        m = float(m) if math.isfinite(m) else 0.0
        if self._m is None or m >= self._m:
            self._m = m
        elif not self.hold:
            self._m = self.decay * self._m + (1.0 - self.decay) * m
        return self.levels()

    def levels(self) -> tuple[float, float]:
        v = self.value
        return (-v, v)


class MaxLevels(SymmetricLevels):
    """Levels (0, m) for non-negative data, smoothed like SymmetricLevels."""

    def levels(self) -> tuple[float, float]:
        return (0.0, self.value)


def label_room(font) -> int:
    """Pixels a colour bar's end label ('1', '-0.5') spills past the end of the bar: half a line, and a bit."""
    from PySide6 import QtGui

    return QtGui.QFontMetrics(font).height() // 2 + 3


def align_colorbar(bar: pg.ColorBarItem, plot: pg.PlotItem) -> None:
    """Make a vertical colour bar beside `plot` (same layout row) span exactly the plot's view box.

    The gradient then starts and ends where the image does, not at the plot's title or axis, and
    its end labels spill into the room the plot's axes and title leave. Cheap and idempotent: call
    it when the plot's view box is resized, not per frame."""
    try:
        import shiboken6

        if not all(shiboken6.isValid(o) for o in (bar, bar.vb, bar.layout, plot, plot.vb)):
            return  # a closing window is tearing the items down
    except ImportError:  # pragma: no cover - PySide6 ships shiboken6
        pass
    want = plot.vb.sceneBoundingRect()
    have = bar.vb.sceneBoundingRect()
    if want.height() <= 0 or have.height() <= 0:
        return
    left, top, right, bottom = getattr(bar, "_aligned_margins", (1.0, 1.0, 1.0, 1.0))
    top = max(0.0, round(top + want.top() - have.top()))
    bottom = max(0.0, round(bottom + have.bottom() - want.bottom()))
    margins = (left, top, right, bottom)
    if getattr(bar, "_aligned_margins", None) != margins:
        bar._aligned_margins = margins
        bar.layout.setContentsMargins(*margins)
        bar.layout.activate()  # geometry now, so the next call measures the new bar
