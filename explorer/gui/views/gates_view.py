"""Gate growth of zero-init prefix tuning: gate(g) per layer and head against the step, and a heatmap.

Left: one curve per (layer, head), coloured by layer (Okabe-Ito colours, heads of a layer share the
colour and one curve item, joined with NaN breaks, so a frame costs one setData per layer), starting
at exactly 0 because g is initialised to zero. Right: layers x steps heatmap of
the mean |gate| over the heads, so many layers read at a glance.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.base import View, new_layout_widget, set_colorbar_levels, style_colorbar, style_legend, style_plot

MAX_CURVES = 256   # beyond this many (layer, head) curves, draw one mean curve per layer


def layer_color(i: int) -> QtGui.QColor:
    if i < len(colormaps.QUALITATIVE) - 1:          # the last Okabe-Ito colour (grey) is kept for notes
        return pg.mkColor(colormaps.QUALITATIVE[i])
    return pg.intColor(i, hues=max(9, i + 1))


class GatesView(View):
    view_id = "gates"
    title = "Gates"
    formula_tooltip = ("gate(g) = tanh(g) (official training code) or g (paper, PEFT); g starts at 0, so the prompt "
                       "adds nothing at step 0; heatmap: mean over heads of |gate| per layer and step")

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        self._curve_layout = None       # (layers, curves per layer, per_layer_mean)
        self._curves: list[pg.PlotCurveItem] = []     # one per layer
        self._series: list[tuple[np.ndarray, np.ndarray]] = []
        self._levels = colormaps.MaxLevels()
        self._seq_name = colormaps.SEQUENTIAL
        self._layers: list[int] = []

        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        self.glw = new_layout_widget(self.style_)
        self.glw.ci.setToolTip(self.formula_tooltip)
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "gate(g)")
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        self.plot.setClipToView(True)
        self.zero_line = pg.InfiniteLine(pos=0.0, angle=0, movable=False,
                                         pen=pg.mkPen("#888888", width=1, style=QtCore.Qt.PenStyle.DashLine))
        self.plot.addItem(self.zero_line, ignoreBounds=True)
        self.legend = pg.LegendItem(offset=(4, 4), labelTextSize="8pt")
        self.legend.setParentItem(self.plot.vb)
        self.legend.anchor((0, 0), (0, 0), offset=(4, 4))
        self.heat_plot: pg.PlotItem = self.glw.addPlot(row=0, col=1)
        self.heat_plot.hideButtons()
        self.heat_plot.setMenuEnabled(False)
        self.heat_plot.setMouseEnabled(x=False, y=False)
        self.heat_plot.invertY(True)
        self.heat_plot.setLabel("bottom", "step")
        self.heat_plot.setTitle("mean |gate| over heads")
        self.heat_plot.getAxis("left").setStyle(tickLength=0)
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setLookupTable(colormaps.lut(self._seq_name))
        self.heat_plot.addItem(self.heat)
        self.heat_bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=colormaps.colormap(self._seq_name),
                                        interactive=False, width=12, colorMapMenu=False)
        self.glw.addItem(self.heat_bar, row=0, col=2)
        self.glw.ci.layout.setColumnStretchFactor(0, 3)
        self.glw.ci.layout.setColumnStretchFactor(1, 2)
        lay.addWidget(self.glw, 1)
        self.caption = QtWidgets.QLabel(content)
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.set_content(content)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def curve_data(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(steps, gate values) of every curve drawn now, in (layer, head) order."""
        return [(np.asarray(x), np.asarray(y)) for x, y in self._series]

    def heatmap_shape(self) -> tuple[int, int]:
        """(layers, recorded steps) of the heatmap; (0, 0) when empty."""
        img = self.heat.image
        return (0, 0) if img is None else tuple(img.shape)

    def export_item(self):
        return self.glw.ci

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snapshot) -> None:
        settings = snapshot.settings or {}
        method = settings.get("method", "")
        h = snapshot.history
        hist_gates = None if h is None else np.asarray(h.gates)
        steps = None if h is None else np.asarray(h.gate_steps)
        has_history = hist_gates is not None and hist_gates.ndim == 3 and hist_gates.size > 0 and steps.size
        if not snapshot.prefixes and not has_history:
            if method in ("prefix", "lora+prefix"):
                self.show_message("No gates yet: waiting for the first snapshot.")
            else:
                name = {"lora": "LoRA", "full": "full fine-tuning"}.get(method, method or "this method")
                self.show_message(f"No gates in this method ({name}).\n"
                                  "Gates belong to zero-init prefix tuning: choose prefix or LoRA + prefix.")
            self._key = None
            return
        self.hide_message()
        if has_history:
            gates = hist_gates.astype(np.float32, copy=False)
            steps = steps.astype(np.float64)
            key = (snapshot.segment, steps.size, float(steps[0]), float(steps[-1]), id(h.gates))
        else:   # no history yet: the current gates as one point
            gates = np.stack([np.asarray(p.gates, np.float32).reshape(-1) for p in snapshot.prefixes])[None]
            steps = np.array([float(snapshot.step)])
            key = (snapshot.segment, snapshot.step, snapshot.time, "now")
        if key == self._key:
            return
        self._key = key
        n_points, n_layers, n_heads = gates.shape
        layers = [int(p.layer) for p in snapshot.prefixes] if len(snapshot.prefixes) == n_layers \
            else list(range(n_layers))
        per_layer = settings.get("gate_shape") == "layer"
        mean_only = n_layers * n_heads > MAX_CURVES and not per_layer
        layout = (tuple(layers), mean_only)
        if layout != self._curve_layout:
            self._build_curves(layers)
            self._curve_layout = layout
            self._layers = layers
        # one curve item per layer: its heads joined end to end with NaN breaks (one setData per layer)
        self._series = []
        for li in range(n_layers):
            if per_layer:
                heads = gates[:, li, :1].T
            elif mean_only:
                heads = gates[:, li, :].mean(axis=1, keepdims=True).T
            else:
                heads = gates[:, li, :].T                     # (heads, points)
            self._series.extend((steps, y) for y in heads)
            k = heads.shape[0]
            xs = np.empty((k, n_points + 1))
            ys = np.empty((k, n_points + 1))
            xs[:, :n_points] = steps
            ys[:, :n_points] = heads
            xs[:, n_points] = ys[:, n_points] = np.nan
            self._curves[li].setData(xs.ravel(), ys.ravel(), connect="finite")
        # heatmap: (layers, points) of mean |gate|
        heat = np.ascontiguousarray(np.abs(gates).mean(axis=2).T)
        levels = self._levels.update(heat)
        self.heat.setImage(heat, autoLevels=False, levels=levels)
        set_colorbar_levels(self.heat_bar, levels)
        x0, x1 = float(steps[0]), float(steps[-1])
        span = x1 - x0 if x1 > x0 else 1.0
        self.heat.setRect(QtCore.QRectF(x0, 0.0, span, float(n_layers)))
        self.heat_plot.setRange(xRange=(x0, x0 + span), yRange=(0, n_layers), padding=0)
        now = gates[-1]
        fn = settings.get("gate_fn", "")
        fn_text = {"tanh": "gate = tanh(g)", "identity": "gate = g"}.get(fn, "gate(g)")
        shape_text = "one gate per layer" if per_layer else "one gate per head"
        note = " · many heads: one mean curve per layer" if mean_only else ""
        self.caption.setText(f"{fn_text}, {shape_text} · {n_layers} layers × {n_heads} heads · "
                             f"now: max |gate| {float(np.abs(now).max()):.3g}, mean {float(now.mean()):+.3g} · "
                             f"step {snapshot.step:,}{note}")
        self.draw_count += 1

    def _build_curves(self, layers: list[int]) -> None:
        for c in self._curves:
            self.plot.removeItem(c)
        self._curves = []
        self.legend.clear()
        self.legend.setColumnCount(1 if len(layers) <= 2 else 2)
        for li, layer in enumerate(layers):
            curve = pg.PlotCurveItem(pen=pg.mkPen(layer_color(li), width=1), connect="finite")
            self.plot.addItem(curve)
            self._curves.append(curve)
            self.legend.addItem(curve, f"L{layer}")
        self.heat_plot.getAxis("left").setTicks([[(i + 0.5, f"L{layer}") for i, layer in enumerate(layers)]])
        self._style_legend()

    def _style_legend(self) -> None:
        style_legend(self.legend, self.style_)

    def _clear(self) -> None:
        self._key = None
        self._levels.reset()
        for c in self._curves:
            c.setData([], [])
        self._series = []
        self.heat.clear()
        self.caption.setText("")

    def _apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        self.plot.getAxis("left").setStyle(maxTextLevel=0)
        style_plot(self.heat_plot, s)
        style_colorbar(self.heat_bar, s)
        self._style_legend()
        self.zero_line.setPen(pg.mkPen(s.muted, width=1, style=QtCore.Qt.PenStyle.DashLine))
        name = colormaps.sequential_for(s.high_contrast)
        if name != self._seq_name:
            self._seq_name = name
            self.heat.setLookupTable(colormaps.lut(name))
            self.heat_bar.setColorMap(colormaps.colormap(name))
        self._levels.hold = s.high_contrast
        self._key = None
