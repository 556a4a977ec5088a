"""The inspector's page for AdaptionPrompt (LLaMA-Adapter) adapters: a row per layer (gate, prompt
norms), the gates as bars and the norm of every prompt vector as a heatmap.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui import colormaps
from explorer.gui.inspector.module_table import SortItem
from explorer.gui.views.base import Style, new_layout_widget, set_colorbar_levels, style_colorbar, style_plot
from explorer.schema.format import format_value


class PromptPanel(QtWidgets.QWidget):
    """AdaptionPrompt adapters: a table per layer, the gates as bars and ||p_k|| as a heatmap."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.style_ = Style()
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        split = QtWidgets.QSplitter(Qt.Horizontal, self)
        self.table = QtWidgets.QTableWidget(0, 5, split)
        self.table.setObjectName("prompt_table")
        self.table.setHorizontalHeaderLabels(["layer", "gate", "‖P‖F", "min ‖pₖ‖", "max ‖pₖ‖"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSortIndicator(0, Qt.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.glw = new_layout_widget(self.style_)
        self.gate_plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.gate_plot.setTitle("gate per layer (PEFT applies it as is; 0 = the prompt has no effect)")
        self.gate_plot.setLabel("bottom", "layer")
        self.gate_plot.setLabel("left", "gate")
        self.gate_plot.hideButtons()
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush="#56B4E9", pen=None)
        self.gate_plot.addItem(self.bars)
        self.gate_plot.addLine(y=0, pen=pg.mkPen("#888888", width=1))
        self.norm_plot: pg.PlotItem = self.glw.addPlot(row=1, col=0)
        self.norm_plot.setTitle("‖pₖ‖ per prompt vector")
        self.norm_plot.setLabel("bottom", "prompt position k")
        self.norm_plot.setLabel("left", "layer")
        self.norm_plot.hideButtons()
        self.norm_plot.invertY(True)
        self.norm_image = pg.ImageItem(axisOrder="row-major")
        self.norm_image.setLookupTable(colormaps.lut(colormaps.SEQUENTIAL))
        self.norm_plot.addItem(self.norm_image)
        self.norm_bar = colormaps.colorbar(colormaps.SEQUENTIAL)
        self.glw.addItem(self.norm_bar, row=1, col=1)
        split.addWidget(self.table)
        split.addWidget(self.glw)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 2)
        split.setSizes([440, 1000])
        lay.addWidget(split)
        self._apply_style()

    def set_prompts(self, ap) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        if ap is None:
            self.bars.setOpts(x=[], height=[])
            self.norm_image.clear()
            return
        self.table.setRowCount(len(ap.layers))
        for row, p in enumerate(ap.layers):
            lo, hi = min(p.vector_norms), max(p.vector_norms)
            for col, (text, key) in enumerate(
                [
                    (str(p.layer), p.layer),
                    (format_value(p.gate), p.gate),
                    (format_value(p.prompt_norm), p.prompt_norm),
                    (format_value(lo), lo),
                    (format_value(hi), hi),
                ]
            ):
                self.table.setItem(row, col, SortItem(text, key))
        self.table.setSortingEnabled(True)
        layers = [p.layer for p in ap.layers]
        gates = [p.gate for p in ap.layers]
        self.bars.setOpts(x=layers, height=gates, width=0.7)
        self.gate_plot.setXRange(min(layers) - 0.6, max(layers) + 0.6, padding=0)
        norms = np.array([p.vector_norms for p in ap.layers], dtype=np.float32)
        top = float(norms.max()) if norms.size and norms.max() > 0 else 1.0
        self.norm_image.setImage(norms, autoLevels=False, levels=(0.0, top))
        # cell centres on whole numbers: row i is layer i, column k is prompt position k
        self.norm_image.setRect(QtCore.QRectF(-0.5, min(layers) - 0.5, norms.shape[1], len(layers)))
        self.norm_plot.setRange(
            xRange=(-0.5, norms.shape[1] - 0.5), yRange=(min(layers) - 0.5, min(layers) + len(layers) - 0.5), padding=0
        )
        set_colorbar_levels(self.norm_bar, (0.0, top))

    def set_theme(self, dark: bool) -> None:
        self.style_.dark = bool(dark)
        self._apply_style()

    def _apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        for p in (self.gate_plot, self.norm_plot):
            style_plot(p, s)
        style_colorbar(self.norm_bar, s)
