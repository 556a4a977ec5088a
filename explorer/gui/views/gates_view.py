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
from explorer.gui.views.axes import StepAxis
from explorer.gui.views.base import (
    View,
    corner_legend,
    method_name,
    new_layout_widget,
    qt_alive,
    set_colorbar_levels,
    style_colorbar,
    style_legend,
    style_plot,
)

MAX_CURVES = 256  # beyond this many (layer, head) curves, draw one mean curve per layer
HEAT_TITLE, HEAT_TITLE_SHORT = "mean |gate| over heads", "mean |gate|"


MAX_NAMED_LAYERS = len(colormaps.QUALITATIVE) - 1  # the last Okabe-Ito colour (grey) is kept for notes


def layer_color(i: int, n: int = 0, dark: bool = True) -> QtGui.QColor:
    """Colour of the i-th of n layers: an Okabe-Ito colour each while they last (on white, without the
    yellow, which is too pale to read there), else a colour by depth (a sequential map from the first
    layer to the last: 30 layers read as a gradient, not 30 hues)."""
    names = colormaps.QUALITATIVE[:MAX_NAMED_LAYERS]
    if not dark:
        names = tuple(c for c in names if c != "#F0E442") + ("#000000",)
    if n <= MAX_NAMED_LAYERS:
        return pg.mkColor(names[i % MAX_NAMED_LAYERS])
    t = 0.15 + 0.85 * i / max(1, n - 1)
    return colormaps.colormap(colormaps.SEQUENTIAL).map(t if dark else 0.9 - 0.8 * (t - 0.15) / 0.85, mode="qcolor")


class GatesView(View):
    view_id = "gates"
    title = "Gates"
    formula_tooltip = (
        "gate(g) = tanh(g) (official training code) or g (paper, PEFT); g starts at 0, so the prompt "
        "adds nothing at step 0; heatmap: mean over heads of |gate| per layer and step"
    )

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        self._curve_layout = None  # (layers, curves per layer, per_layer_mean)
        self._curves: list[pg.PlotCurveItem] = []  # one per layer
        self._series: list[tuple[np.ndarray, np.ndarray]] = []
        self._levels = colormaps.MaxLevels()
        self._seq_name = colormaps.SEQUENTIAL
        self._layers: list[int] = []
        self._range = None
        self._tick_every = None

        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        self.glw = new_layout_widget(self.style_)
        self.glw.ci.setToolTip(self.formula_tooltip)
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0, axisItems={"bottom": StepAxis("bottom")})
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "gate(g)")
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        self.plot.setClipToView(True)
        self.zero_line = pg.InfiniteLine(
            pos=0.0, angle=0, movable=False, pen=pg.mkPen("#888888", width=1, style=QtCore.Qt.PenStyle.DashLine)
        )
        self.plot.addItem(self.zero_line, ignoreBounds=True)
        self.legend = corner_legend(self.plot, left=True)
        self.heat_plot: pg.PlotItem = self.glw.addPlot(row=0, col=1, axisItems={"bottom": StepAxis("bottom")})
        self.heat_plot.hideButtons()
        self.heat_plot.setMenuEnabled(False)
        self.heat_plot.setMouseEnabled(x=False, y=False)
        self.heat_plot.invertY(True)
        self.heat_plot.setLabel("bottom", "step")
        self.heat_plot.setTitle(HEAT_TITLE)
        self.heat_plot.getAxis("left").setStyle(tickLength=0)
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setLookupTable(colormaps.lut(self._seq_name))
        self.heat_plot.addItem(self.heat)
        self.heat_bar = colormaps.colorbar(self._seq_name, width=12)
        self.glw.addItem(self.heat_bar, row=0, col=2)
        self.heat_plot.vb.sigResized.connect(self._heat_resized)
        self._arrangement = "side"
        self._arrange("stacked")
        self.glw.ci.geometryChanged.connect(self._drawing_resized)
        for plot in (self.plot, self.heat_plot):
            plot.setPreferredHeight(1)
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

    def arrangement(self) -> str:
        """'side' (curves left of the heatmap, a wide view) or 'stacked' (curves above it, a narrow one)."""
        return self._arrangement

    # ---- layout ----------------------------------------------------------------------------------
    @staticmethod
    def arrangement_for(width: int, height: int) -> str:
        """Side by side only when the view is wide enough for both to keep a useful width."""
        return "side" if width >= 480 and width >= 1.2 * height else "stacked"

    def _arrange(self, arrangement: str) -> None:
        """Move the plot, the heatmap and its colour bar in the layout (on resizes only, never per frame)."""
        if arrangement == self._arrangement:
            return
        self._arrangement = arrangement
        grid = self.glw.ci.layout
        for item in (self.plot, self.heat_plot, self.heat_bar):
            grid.removeItem(item)
        for i in range(3):
            grid.setRowStretchFactor(i, 0)
            grid.setColumnStretchFactor(i, 0)
        if arrangement == "side":  # curves | heatmap | bar, the curves a little wider
            grid.addItem(self.plot, 0, 0)
            grid.addItem(self.heat_plot, 0, 1)
            grid.addItem(self.heat_bar, 0, 2)
            grid.setColumnStretchFactor(0, 3)
            grid.setColumnStretchFactor(1, 2)
            grid.setRowStretchFactor(0, 1)
        else:  # curves above the heatmap, the same width: one step axis for both
            grid.addItem(self.plot, 0, 0)
            grid.addItem(self.heat_plot, 1, 0)
            grid.addItem(self.heat_bar, 1, 1)
            grid.setColumnStretchFactor(0, 1)
            # the height beyond the plots' minimum sizes goes 3 : 2 to the curves (their preferred
            # sizes are made minimal, or Qt would share a short dock by those instead)
            grid.setRowStretchFactor(0, 3)
            grid.setRowStretchFactor(1, 2)
        # stacked, the heatmap's step axis right below says "step" for both
        self.plot.getAxis("bottom").showLabel(arrangement == "side")
        self._set_axis_widths()
        self._set_title()
        grid.activate()

    def _set_axis_widths(self) -> None:
        """Stacked, both left axes get the same width, so the two step axes line up."""
        metrics = QtGui.QFontMetrics(self.style_.font())
        width = metrics.horizontalAdvance("-0.25") + metrics.height() + 16
        self.plot.getAxis("left").setWidth(width)
        self.heat_plot.getAxis("left").setWidth(width if self._arrangement == "stacked" else None)

    def _heat_resized(self) -> None:
        if not qt_alive(self, self.heat_plot, self.heat_bar):
            return
        colormaps.align_colorbar(self.heat_bar, self.heat_plot)
        self._set_layer_ticks()

    def _set_title(self, width: int | None = None) -> None:
        """The heatmap's title, shortened when the heatmap is narrow (a title sets its plot's minimum width)."""
        width = self.glw.width() if width is None else width
        if self._arrangement == "side":
            width = width * 2 // 5
        full = QtGui.QFontMetrics(self.style_.font(10)).horizontalAdvance(HEAT_TITLE) + 90
        text = HEAT_TITLE if width >= full else HEAT_TITLE_SHORT
        if text != self.heat_plot.titleLabel.text:
            s = self.style_
            self.heat_plot.setTitle(text, color=s.foreground, size=f"{s.point_size(10):.1f}pt")

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        size = event.size()
        self._arrange(self.arrangement_for(size.width(), size.height()))

    def _drawing_resized(self) -> None:
        """The drawing's layout got its new size (the view's own resizeEvent comes before the drawing
        is resized, so its size is not known there): fit the title. A signal of the layout item, not
        an event filter on the drawing, which could fire while a closing window tears the drawing's
        layout down."""
        if not qt_alive(self, self.glw, self.glw.ci, self.glw.ci.layout):
            return
        self._set_title(self.glw.ci.geometry().width())

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
                name = method_name(method)
                self.show_message(
                    f"No gates in this method ({name}).\n"
                    "Gates belong to zero-init prefix tuning: choose prefix or LoRA + prefix."
                )
            self._key = None
            return
        self.hide_message()
        if has_history:
            gates = hist_gates.astype(np.float32, copy=False)
            steps = steps.astype(np.float64)
            key = (snapshot.segment, steps.size, float(steps[0]), float(steps[-1]), id(h.gates))
        else:  # no history yet: the current gates as one point
            gates = np.stack([np.asarray(p.gates, np.float32).reshape(-1) for p in snapshot.prefixes])[None]
            steps = np.array([float(snapshot.step)])
            key = (snapshot.segment, snapshot.step, snapshot.time, "now")
        if key == self._key:
            return
        self._key = key
        n_points, n_layers, n_heads = gates.shape
        layers = (
            [int(p.layer) for p in snapshot.prefixes] if len(snapshot.prefixes) == n_layers else list(range(n_layers))
        )
        per_layer = settings.get("gate_shape") == "layer"
        mean_only = n_layers * n_heads > MAX_CURVES and not per_layer
        layout = (tuple(layers), mean_only)
        if layout != self._curve_layout:
            self._layers = layers
            self._build_curves(layers)
            self._curve_layout = layout
        # one curve item per layer: its heads joined end to end with NaN breaks (one setData per layer)
        self._series = []
        for li in range(n_layers):
            if per_layer:
                heads = gates[:, li, :1].T
            elif mean_only:
                heads = gates[:, li, :].mean(axis=1, keepdims=True).T
            else:
                heads = gates[:, li, :].T  # (heads, points)
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
        if (x0, span, n_layers) != self._range:  # the curves span the same steps as the heatmap
            self._range = (x0, span, n_layers)
            self.heat_plot.setRange(xRange=(x0, x0 + span), yRange=(0, n_layers), padding=0)
            self.plot.setXRange(x0, x0 + span, padding=0)
        now = gates[-1]
        fn = settings.get("gate_fn", "")
        fn_text = {"tanh": "gate = tanh(g)", "identity": "gate = g"}.get(fn, "gate(g)")
        shape_text = "one gate per layer" if per_layer else "one gate per head"
        note = " · many heads: one mean curve per layer" if mean_only else ""
        self.caption.setText(
            f"{fn_text}, {shape_text} · {n_layers} layers × {n_heads} heads · "
            f"now: max |gate| {float(np.abs(now).max()):.3g}, mean {float(now.mean()):+.3g} · "
            f"step {snapshot.step:,}{note}"
        )
        self.draw_count += 1

    def _build_curves(self, layers: list[int]) -> None:
        for c in self._curves:
            self.plot.removeItem(c)
        self._curves = []
        self.legend.clear()
        n = len(layers)
        self.legend.setColumnCount(1 if n <= 2 or n > MAX_NAMED_LAYERS else 2)
        for li, layer in enumerate(layers):
            curve = pg.PlotCurveItem(pen=pg.mkPen(layer_color(li, n, self.style_.dark), width=1), connect="finite")
            self.plot.addItem(curve)
            self._curves.append(curve)
            # many layers: the legend names the first and the last (the colours run between them)
            if n <= MAX_NAMED_LAYERS or li in (0, n - 1):
                self.legend.addItem(curve, f"L{layer}")
        self._tick_every = None
        self._set_layer_ticks()
        self._style_legend()

    def _set_layer_ticks(self) -> None:
        """One label per layer row of the heatmap, or every 2nd, 3rd... when the rows are too thin for
        their labels (30 layers in a short dock); on resizes and new layers only."""
        layers = self._layers
        if not layers:
            return
        line = QtGui.QFontMetrics(self.style_.font()).height()
        pitch = self.heat_plot.vb.height() / len(layers)
        every = max(1, int(np.ceil(line * 1.05 / max(pitch, 1e-6))))
        if every != self._tick_every:
            self._tick_every = every
            self.heat_plot.getAxis("left").setTicks(
                [[(i + 0.5, f"L{layer}") for i, layer in enumerate(layers) if i % every == 0], []]
            )

    def _style_legend(self) -> None:
        style_legend(self.legend, self.style_)

    def _clear(self) -> None:
        self._key = None
        self._range = None
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
        self.plot.getAxis("bottom").showLabel(self._arrangement == "side")
        style_plot(self.heat_plot, s)
        style_colorbar(self.heat_bar, s)
        self._set_axis_widths()
        self._tick_every = None
        self._set_layer_ticks()
        self._style_legend()
        self.zero_line.setPen(pg.mkPen(s.muted, width=1, style=QtCore.Qt.PenStyle.DashLine))
        for li, curve in enumerate(self._curves):  # the layer colours for this background
            curve.setPen(pg.mkPen(layer_color(li, len(self._curves), s.dark), width=1))
        name = colormaps.sequential_for(s.high_contrast)
        if name != self._seq_name:
            self._seq_name = name
            self.heat.setLookupTable(colormaps.lut(name))
            self.heat_bar.setColorMap(colormaps.colormap(name))
        self._levels.hold = s.high_contrast
        self._key = None
