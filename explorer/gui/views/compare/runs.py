"""What tells the runs of a comparison apart, the same in every part: a colour each (Okabe & Ito,
safe for colour-blind eyes; a dash pattern as well beyond eight runs) and short module names."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui

from explorer.gui.views.base import split_matrix_name

# Okabe & Ito (2008), yellow last: it reads poorly on a light background.
RUN_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#999999")
_DASHES = (QtCore.Qt.PenStyle.SolidLine, QtCore.Qt.PenStyle.DashDotLine, QtCore.Qt.PenStyle.DotLine)


def run_colour(index: int) -> str:
    return RUN_COLOURS[index % len(RUN_COLOURS)]


def run_pen(index: int, dashed: bool = False, alpha: int = 255) -> QtGui.QPen:
    c = QtGui.QColor(run_colour(index))
    c.setAlpha(alpha)
    pen = pg.mkPen(c, width=1)
    style = QtCore.Qt.PenStyle.DashLine if dashed else _DASHES[(index // len(RUN_COLOURS)) % len(_DASHES)]
    pen.setStyle(style)
    return pen


def short_module(name: str) -> str:
    layer, module = split_matrix_name(name)
    return module if layer is None else f"layer {layer} · {module}"
