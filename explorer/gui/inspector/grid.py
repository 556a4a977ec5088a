"""The inspector's layer x module grid of ‖ΔW‖F (viridis, the norm written in each cell of a small
grid); a click on a cell selects that module.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.base import Style, new_layout_widget, set_colorbar_levels, style_colorbar, style_plot

GRID_TEXT_MAX_CELLS = 160  # write the norm into each cell of grids up to this size


class NormGridView(QtWidgets.QWidget):
    """Layer x module heatmap of ||ΔW||_F; click a cell to select that module."""

    moduleClicked = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.style_ = Style()
        self._layers: list[int] = []
        self._modules: list[str] = []
        self._names: dict[tuple[int, int], str] = {}
        self._values = np.zeros((0, 0), np.float32)
        self._texts: list[pg.TextItem] = []
        self._selected: tuple[int, int] | None = None
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.glw = new_layout_widget(self.style_)
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.plot.invertY(True)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setLabel("left", "layer")
        self.plot.setLabel("bottom", "module")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(colormaps.lut(colormaps.SEQUENTIAL))
        self.plot.addItem(self.image)
        self.marker = QtWidgets.QGraphicsRectItem(0, 0, 1, 1)
        pen = pg.mkPen("#ffffff", width=2)
        pen.setCosmetic(True)
        self.marker.setPen(pen)
        self.marker.setZValue(10)
        self.marker.hide()
        self.plot.addItem(self.marker)
        self.colorbar = colormaps.colorbar(colormaps.SEQUENTIAL)
        self.glw.addItem(self.colorbar, row=0, col=1)
        self.glw.scene().sigMouseClicked.connect(self._clicked)
        self.glw.scene().sigMouseMoved.connect(self._hovered)
        lay.addWidget(self.glw)
        self.setMinimumHeight(160)
        self._apply_style()

    # ---- data
    def set_grid(self, grid, modules) -> None:
        """`grid`: the report's NormGrid (or None); `modules`: its ModuleReports (for names)."""
        for t in self._texts:
            self.plot.removeItem(t)
        self._texts = []
        self._selected = None
        self.marker.hide()
        if grid is None or not grid.layers:
            self._layers, self._modules, self._names = [], [], {}
            self._values = np.zeros((0, 0), np.float32)
            self.image.clear()
            return
        self._layers, self._modules = list(grid.layers), list(grid.modules)
        values = np.array([[np.nan if v is None else v for v in row] for row in grid.fro_norm], dtype=np.float32)
        self._values = values
        li = {layer: i for i, layer in enumerate(self._layers)}
        ki = {k: j for j, k in enumerate(self._modules)}
        self._names = {
            (li[m.layer], ki[m.module]): m.name
            for m in modules
            if m.layer is not None and m.layer in li and m.module in ki
        }
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 1.0
        top = top if top > 0 else 1.0
        self.image.setImage(values, autoLevels=False, levels=(0.0, top))
        self.image.setRect(QtCore.QRectF(0, 0, len(self._modules), len(self._layers)))
        set_colorbar_levels(self.colorbar, (0.0, top))
        bottom = [(j + 0.5, m) for j, m in enumerate(self._modules)]
        step = max(1, int(np.ceil(len(self._layers) / 16)))
        left = [(i + 0.5, str(layer)) for i, layer in enumerate(self._layers) if i % step == 0]
        self.plot.getAxis("bottom").setTicks([bottom, []])
        self.plot.getAxis("left").setTicks([left, []])
        self.plot.setRange(xRange=(0, len(self._modules)), yRange=(0, len(self._layers)), padding=0.0)
        if values.size <= GRID_TEXT_MAX_CELLS:
            for (i, j), v in np.ndenumerate(values):
                if not np.isfinite(v):
                    continue
                dark_cell = v < 0.6 * top  # viridis: dark purple to yellow
                t = pg.TextItem(f"{v:.3g}", color="#ffffff" if dark_cell else "#000000", anchor=(0.5, 0.5))
                t.setFont(self.style_.font(8))
                t.setPos(j + 0.5, i + 0.5)
                self.plot.addItem(t)
                self._texts.append(t)

    def layers(self) -> list[int]:
        return list(self._layers)

    def modules(self) -> list[str]:
        return list(self._modules)

    def values(self) -> np.ndarray:
        """(layers, modules) norms drawn now; NaN where a module carries no adapter."""
        return self._values.copy()

    def name_at(self, row: int, col: int) -> str | None:
        return self._names.get((row, col))

    def cell_of(self, name: str) -> tuple[int, int] | None:
        for cell, n in self._names.items():
            if n == name:
                return cell
        return None

    def select(self, name: str | None) -> None:
        cell = self.cell_of(name) if name else None
        self._selected = cell
        if cell is None:
            self.marker.hide()
            return
        i, j = cell
        self.marker.setRect(QtCore.QRectF(j, i, 1, 1))
        self.marker.show()

    def cell_center(self, row: int, col: int) -> QtCore.QPoint:
        """Widget (viewport) coordinates of a cell's centre, for clicking it in tests."""
        scene = self.plot.vb.mapViewToScene(QtCore.QPointF(col + 0.5, row + 0.5))
        return self.glw.mapFromScene(scene)

    # ---- mouse
    def _cell_at(self, scene_pos) -> tuple[int, int] | None:
        if not self._layers or not self.plot.vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.plot.vb.mapSceneToView(scene_pos)
        i, j = int(np.floor(p.y())), int(np.floor(p.x()))
        if 0 <= i < len(self._layers) and 0 <= j < len(self._modules):
            return i, j
        return None

    def _clicked(self, event) -> None:
        cell = self._cell_at(event.scenePos())
        if cell is None:
            return
        name = self._names.get(cell)
        if name:
            event.accept()
            self.moduleClicked.emit(name)

    def _hovered(self, scene_pos) -> None:
        cell = self._cell_at(scene_pos)
        if cell is None:
            self.glw.setToolTip("Click a cell to show that module")
            return
        i, j = cell
        v = self._values[i, j]
        name = self._names.get(cell)
        text = f"{name}\n‖ΔW‖_F = {v:.4g}" if name else f"layer {self._layers[i]} · {self._modules[j]}: no adapter"
        self.glw.setToolTip(text)

    # ---- style
    def set_theme(self, dark: bool) -> None:
        self.style_.dark = bool(dark)
        self._apply_style()

    def _apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        style_colorbar(self.colorbar, s)
        pen = self.marker.pen()
        pen.setColor(QtGui.QColor("#ffffff" if s.dark else "#d01010"))
        self.marker.setPen(pen)
