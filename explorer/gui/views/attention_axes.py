"""The attention view's pieces that draw: token labels on an axis that never overlap them, and the
grid's image that reports where it was clicked."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui


def token_label(token: str) -> str:
    """Make whitespace visible: ' cat' -> '·cat', '\\n' -> '↵'."""
    return token.replace("\n", "↵").replace("\t", "⇥").replace(" ", "·") or "∅"


class TokenAxis(pg.AxisItem):
    """An axis with one label per row or column (at i + 0.5). On the bottom the labels are drawn
    vertically so long tokens never overlap; on the left they are horizontal. Labels that would
    collide are thinned (every 2nd, 3rd... is kept), never drawn over each other."""

    def __init__(self, orientation: str = "bottom", **kw):
        super().__init__(orientation, **kw)
        self._labels: list[str] = []

    def labels(self) -> list[str]:
        return list(self._labels)

    def set_labels(self, labels) -> None:
        self._labels = list(labels)
        metrics = QtGui.QFontMetrics(self.style["tickFont"] or QtGui.QFont())
        widest = max((metrics.horizontalAdvance(s) for s in self._labels), default=0)
        size = int(widest + metrics.height() * 0.5 + 10) if self._labels else None
        if self.orientation in ("bottom", "top"):
            self.setHeight(size)
        else:
            self.setWidth(size)
        self.picture = None
        self.update()

    def setTickFont(self, font):
        super().setTickFont(font)
        if self._labels:
            self.set_labels(self._labels)

    def tickValues(self, minVal, maxVal, size):
        lo, hi = min(minVal, maxVal), max(minVal, maxVal)
        return [(1.0, [i + 0.5 for i in range(len(self._labels)) if lo <= i + 0.5 <= hi])]

    def tickStrings(self, values, scale, spacing):
        return ["" for _ in values]

    def drawPicture(self, p, axisSpec, tickSpecs, textSpecs):
        super().drawPicture(p, axisSpec, tickSpecs, [])
        view = self.linkedView()
        if view is None or not self._labels:
            return
        font = self.style["tickFont"] or QtGui.QFont()
        metrics = QtGui.QFontMetrics(font)
        p.setFont(font)
        p.setPen(self.textPen())
        horizontal = self.orientation in ("bottom", "top")
        pos = []
        for i in range(len(self._labels)):
            pt = self.mapFromScene(view.mapViewToScene(QtCore.QPointF(i + 0.5, i + 0.5)))
            pos.append(pt.x() if horizontal else pt.y())
        pitch = abs(pos[1] - pos[0]) if len(pos) > 1 else metrics.height()
        every = max(1, int(np.ceil(metrics.height() * 0.95 / max(pitch, 1e-6))))
        gap = max(0, self.style["tickLength"]) + 3
        baseline = (metrics.ascent() - metrics.descent()) / 2
        extent = self.width() if horizontal else self.height()
        for i, (v, text) in enumerate(zip(pos, self._labels)):
            if i % every or v < -1 or v > extent + 1:
                continue
            if horizontal:
                p.save()
                p.translate(v, gap)
                p.rotate(90)
                p.drawText(QtCore.QPointF(0, baseline), text)
                p.restore()
            else:
                x = self.width() - gap - metrics.horizontalAdvance(text)
                p.drawText(QtCore.QPointF(x, v + baseline), text)


class ClickableImage(pg.ImageItem):
    clicked = QtCore.Signal(float, float)  # x (column), y (row) in image coordinates

    def mouseClickEvent(self, ev):
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            pos = ev.pos()
            ev.accept()
            self.clicked.emit(pos.x(), pos.y())
        else:
            super().mouseClickEvent(ev)

    def hoverEvent(self, ev):
        if not ev.isExit():
            ev.acceptClicks(QtCore.Qt.MouseButton.LeftButton)
