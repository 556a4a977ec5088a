"""The small base every live view shares, and the pieces several views use.

A view draws ONLY from `Snapshot` objects (plain numpy data), so it draws a recording like a live run.
The main window calls, on the GUI thread:

    view.update_snapshot(snapshot)   # up to ~30 Hz; cheap: skipped while hidden, redrawn on show
    view.clear()                     # a new segment or a reset: drop smoothed levels and caches
    view.export_item()               # what pyqtgraph's ImageExporter/SVGExporter export, or a QWidget to grab
    view.set_talk_mode(font_scale, high_contrast)
    view.set_theme(dark)
    view.refresh()                   # draw the last snapshot now (e.g. before exporting a hidden view)

Class attributes: `view_id` (registry key), `title` (dock title), `formula_tooltip` (one line, the
widget's tooltip). `draw_count` counts real redraws, for tests and benchmarks.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui.views.axes import LogValueAxis, StepAxis, nice_step

# The order in which Llama modules are listed in pickers.
MODULE_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:.*\.)?([^.]+)$")


def split_matrix_name(name: str) -> tuple[int | None, str]:
    """'model.layers.3.self_attn.q_proj' -> (3, 'q_proj'); 'W' -> (None, 'W')."""
    m = _LAYER_RE.search(name)
    if m:
        return int(m.group(1)), m.group(2)
    return None, name


def module_key(module: str) -> tuple[int, str]:
    """q, k, v, o, gate, up, down: the order Llama lists them in (then by name)."""
    return (MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER), module)


@dataclass
class Style:
    """What the theme and talk mode change: colours and font sizes."""

    dark: bool = True
    font_scale: float = 1.0
    high_contrast: bool = False

    @property
    def background(self) -> str:
        if self.dark:
            return "#000000" if self.high_contrast else "#16181c"
        return "#ffffff"

    @property
    def foreground(self) -> str:
        if self.dark:
            return "#ffffff" if self.high_contrast else "#c8ccd2"
        return "#000000" if self.high_contrast else "#30343a"

    @property
    def muted(self) -> str:
        if self.dark:
            return "#b0b0b0" if self.high_contrast else "#7c828a"
        return "#505050" if self.high_contrast else "#8a9099"

    @property
    def separator(self) -> str:
        """Lines drawn over heatmaps (prompt | tokens boundary)."""
        return "#000000" if not self.dark or self.high_contrast else "#20242a"

    def point_size(self, base: float = 9.0) -> float:
        return max(6.0, base * self.font_scale)

    def font(self, base: float = 9.0, bold: bool = False, mono: bool = False) -> QtGui.QFont:
        f = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont) if mono else QtGui.QFont()
        if mono:
            f.setStyleHint(QtGui.QFont.StyleHint.TypeWriter)
            f.setFixedPitch(True)
        f.setPointSizeF(self.point_size(base))
        f.setBold(bold)
        return f

    def color(self, name: str) -> QtGui.QColor:
        return QtGui.QColor(getattr(self, name))


def style_plot(plot: pg.PlotItem, style: Style, base: float = 9.0) -> None:
    """Axis pens, tick fonts, axis labels and title in the style's colours and sizes."""
    font = style.font(base)
    for name in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(name)
        # Kept as a pixmap: an axis (with its grid, it covers the whole plot) is repainted whenever
        # anything under it changes, and replaying its labels costs ~1 ms a time under X11; most
        # frames change a curve or an image, not the axis, so they now blit it (bench/bench_gui.py)
        axis.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
        opaque_tick_pens(axis, style.background)
        if axis.grid is not False:  # its opaque grid lines go under the data, not over it
            axis.setZValue(plot.vb.zValue() - 1)
        axis.setPen(pg.mkPen(style.muted, width=1))
        axis.setTextPen(pg.mkPen(style.foreground))
        axis.setTickFont(font)
        # No SI prefix anywhere: pyqtgraph 0.14's enableAutoSIPrefix(False) still computes one from
        # the range of the moment (a plot restyled at range ±0.5 would read its ticks x1000 for good)
        axis.setSIPrefixEnableRanges(())
        axis.enableAutoSIPrefix(False)
        if axis.labelText or axis.labelUnits:
            axis.setLabel(
                axis.labelText,
                units=axis.labelUnits or None,
                **{"color": style.foreground, "font-size": f"{style.point_size(base):.1f}pt"},
            )
    if plot.titleLabel.text:
        plot.setTitle(plot.titleLabel.text, color=style.foreground, size=f"{style.point_size(base + 1):.1f}pt")


def opaque_tick_pens(axis: pg.AxisItem, background: str) -> None:
    """Draw the axis's translucent tick and grid lines in the opaque colour they show on `background`.

    pyqtgraph fades minor ticks and grid lines by alpha; the raster engine blends a translucent line
    pixel by pixel, ~10x the cost of an opaque one, and a grid's lines span the plot: that was most of
    the cost of repainting a plot whose axis range moves with every step (the loss, the spectrum).
    Over a plain background the opaque colour is the same colour."""
    axis._opaque_background = QtGui.QColor(background)
    if getattr(axis, "_opaque_pens", None) is not None:
        axis._opaque_pens.clear()  # a new theme: blend again
        axis.picture = None
        return
    axis._opaque_pens = {}
    generate = axis.generateDrawSpecs

    def generate_opaque(painter):
        specs = generate(painter)
        if specs is None:
            return None
        axis_spec, tick_specs, text_specs = specs
        return axis_spec, [(_opaque_pen(axis, pen), a, b) for pen, a, b in tick_specs], text_specs

    axis.generateDrawSpecs = generate_opaque


@contextmanager
def uncached(widget: QtWidgets.QWidget, *scenes):
    """No item pixmap caches while rendering for an export: a cached item (the axes, see style_plot)
    would be drawn as its on-screen pixmap, blurred in a 2x PNG and as an image in an SVG."""
    all_scenes = {id(sc): sc for sc in scenes if sc is not None}
    for gv in widget.findChildren(pg.GraphicsView):
        if gv.scene() is not None:
            all_scenes[id(gv.scene())] = gv.scene()
    cached = [
        (item, item.cacheMode())
        for sc in all_scenes.values()
        for item in sc.items()
        if item.cacheMode() != QtWidgets.QGraphicsItem.CacheMode.NoCache
    ]
    for item, _ in cached:
        item.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.NoCache)
    try:
        yield
    finally:
        for item, mode in cached:
            if qt_alive(item):
                item.setCacheMode(mode)


def _opaque_pen(axis: pg.AxisItem, pen: QtGui.QPen) -> QtGui.QPen:
    color = pen.color()
    if color.alpha() == 255 or pen.brush().style() != QtCore.Qt.BrushStyle.SolidPattern:
        return pen
    key = (color.rgba(), pen.widthF(), pen.isCosmetic())
    out = axis._opaque_pens.get(key)
    if out is None:
        a, bg = color.alphaF(), axis._opaque_background
        blended = QtGui.QColor.fromRgbF(
            color.redF() * a + bg.redF() * (1 - a),
            color.greenF() * a + bg.greenF() * (1 - a),
            color.blueF() * a + bg.blueF() * (1 - a),
        )
        out = axis._opaque_pens[key] = QtGui.QPen(pen)
        out.setColor(blended)
    return out


def style_colorbar(bar: pg.ColorBarItem, style: Style) -> None:
    """A colour bar in the style, its axis wide enough for labels like '-0.025' at this font size;
    its ticks come from `set_colorbar_levels`."""
    style_plot(bar, style)
    metrics = QtGui.QFontMetrics(style.font())
    bar.axis.setWidth(metrics.horizontalAdvance("-0.025") + 12)


def set_colorbar_levels(bar: pg.ColorBarItem, levels: tuple[float, float]) -> None:
    """Show `levels` on a colour bar with a few round, labelled ticks (0 always, for diverging bars).

    The ticks are recomputed only when their round step changes, not every frame."""
    lo, hi = float(levels[0]), float(levels[1])
    bar.setLevels((lo, hi), update_items=False)
    step = nice_step(hi - lo, 4)
    first = np.ceil(lo / step - 1e-9)
    values = [v * step for v in np.arange(first, np.floor(hi / step + 1e-9) + 1)]
    key = (step, len(values), values[0] if values else None)
    if getattr(bar, "_tick_key", None) != key:
        bar._tick_key = key
        bar.axis.setTicks([[(v, f"{v:.3g}" if v else "0") for v in values], []])


def style_legend(legend: pg.LegendItem, style: Style, base: float = 8.0) -> None:
    """Legend text colour and size (re-rendering existing labels, which pyqtgraph does not) and a
    translucent background."""
    legend.setLabelTextColor(style.foreground)
    legend.setLabelTextSize(f"{style.point_size(base):.1f}pt")
    for _, label in legend.items:
        label.setText(label.text)
    legend.setBrush(pg.mkBrush(style.background + "c0"))
    legend.updateSize()


def new_layout_widget(style: Style) -> pg.GraphicsLayoutWidget:
    glw = pg.GraphicsLayoutWidget()
    glw.setBackground(style.background)
    glw.ci.setContentsMargins(2, 2, 2, 2)
    fix_layout_spacing(glw.ci.layout)
    glw.setMinimumSize(120, 90)
    return glw


def loss_plot(glw: pg.GraphicsLayoutWidget) -> pg.PlotItem:
    """Loss against step, as the loss view and the compare view draw it (grid, clipped, peak-downsampled)."""
    plot: pg.PlotItem = glw.addPlot(
        row=0, col=0, axisItems={"bottom": StepAxis("bottom"), "left": LogValueAxis("left")}
    )
    plot.hideButtons()
    plot.setLabel("bottom", "step")
    plot.setLabel("left", "loss")
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setClipToView(True)
    plot.setDownsampling(auto=True, mode="peak")
    return plot


def corner_legend(plot: pg.PlotItem, left: bool = False) -> pg.LegendItem:
    """A small legend in the plot's top right (or top left) corner."""
    corner, offset = ((0, 0), (4, 4)) if left else ((1, 0), (-4, 4))
    legend = pg.LegendItem(offset=offset, labelTextSize="8pt")
    legend.setParentItem(plot.vb)
    legend.anchor(corner, corner, offset=offset)
    return legend


def centre_text(plot: pg.PlotItem, text: str = "") -> pg.TextItem:
    """A note kept in the middle of the plot's data area (e.g. 'waiting for the first step')."""
    item = pg.TextItem(text, anchor=(0.5, 0.5))
    item.setParentItem(plot.vb)
    plot.vb.sigResized.connect(lambda: item.setPos(plot.vb.boundingRect().center()))
    return item


METHOD_NAMES = {
    "lora": "LoRA",
    "prefix": "zero-init prefix",
    "lora+prefix": "LoRA + zero-init prefix",
    "full": "full fine-tuning",
}


def method_name(method: str) -> str:
    """'lora' -> 'LoRA', 'full' -> 'full fine-tuning'; unknown as it is, none as 'this method'."""
    return METHOD_NAMES.get(method, method or "this method")


def fix_layout_spacing(grid, spacing: float = 6.0) -> None:
    """Give a pyqtgraph grid explicit spacing. Left unset, Qt asks the widget's style for it, and after
    the application style sheet changes (a theme switch) that style object is gone: the query crashes
    the process (seen with PySide6 6.11 on a second theme switch)."""
    grid.setHorizontalSpacing(spacing)
    grid.setVerticalSpacing(spacing)


class View(QtWidgets.QWidget):
    """Base of the live views. Subclasses implement `_draw(snapshot)`, `_clear()`, `_apply_style()`."""

    view_id: str = ""
    title: str = ""
    formula_tooltip: str = ""

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(f"view_{self.view_id}")
        self.setToolTip(self.formula_tooltip)
        self.style_ = Style()
        self._snapshot = None
        self._dirty = False
        self._segment = None
        self.draw_count = 0
        self._scenes: list | None = None  # the pyqtgraph scenes this view draws in (see _settle)
        self._stack = QtWidgets.QStackedWidget(self)
        self._message = QtWidgets.QLabel(self._stack)
        self._message.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self._message.setWordWrap(True)
        self._message.setMargin(16)
        self._stack.addWidget(self._message)
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._stack)

    # ---- what the main window calls -------------------------------------------------------------
    @property
    def snapshot(self):
        """The last snapshot given (drawn or not)."""
        return self._snapshot

    def update_snapshot(self, snapshot) -> None:
        """Take the newest snapshot; draw it now if the view is visible, else when it is shown."""
        self._snapshot = snapshot
        if snapshot is None:
            return
        segment = getattr(snapshot, "segment", None)
        if segment != self._segment:
            if self._segment is not None:  # new adapters: smoothed levels and caches start again
                self._clear()
            self._segment = segment
        if not self.isVisible():
            self._dirty = True
            return
        self._dirty = False
        self._draw(snapshot)
        self._settle()

    def refresh(self) -> None:
        """Draw the last snapshot now, visible or not (e.g. before an export)."""
        if self._snapshot is not None:
            self._dirty = False
            self._draw(self._snapshot)
            self._settle()

    def _settle(self) -> None:
        """Let pyqtgraph fit its auto ranges now, beside the data they fit. Left to the paint (its
        prepareForPaint), the new ranges marked the axes and curves dirty again during the paint, so
        every frame was painted twice, the second time in a slice of its own."""
        if self._scenes is None:
            self._scenes = [gv.scene() for gv in self.findChildren(pg.GraphicsView) if gv.scene() is not None]
        for scene in self._scenes:
            if qt_alive(scene):
                scene.prepareForPaint()

    def clear(self) -> None:
        """A new segment or a reset: forget the last snapshot, smoothed levels and caches."""
        self._snapshot = None
        self._dirty = False
        self._segment = None
        self._clear()

    def export_item(self):
        """The pyqtgraph item (a GraphicsLayout or PlotItem) to hand to ImageExporter/SVGExporter,
        or a QWidget to grab() for views that are not drawn by pyqtgraph."""
        return self

    def set_talk_mode(self, font_scale: float = 1.0, high_contrast: bool = False) -> None:
        """Talk mode: fonts scaled, a high-contrast theme and colour-blind-safe maps with held levels."""
        self.style_.font_scale = float(font_scale)
        self.style_.high_contrast = bool(high_contrast)
        self._restyle()

    def set_theme(self, dark: bool) -> None:
        self.style_.dark = bool(dark)
        self._restyle()

    # ---- helpers for subclasses -------------------------------------------------------------------
    def set_content(self, widget: QtWidgets.QWidget) -> None:
        self._content = widget
        self._stack.insertWidget(0, widget)
        self._stack.setCurrentWidget(widget)

    def show_message(self, text: str) -> None:
        """Replace the content by a friendly message (e.g. 'no prefix layers in this method')."""
        if self._message.text() != text:
            self._message.setText(text)
        if self._stack.currentWidget() is not self._message:
            self._stack.setCurrentWidget(self._message)

    def hide_message(self) -> None:
        if self._stack.currentWidget() is self._message:
            self._stack.setCurrentWidget(self._content)

    def message(self) -> str:
        """The message shown instead of the content, or '' when the content shows."""
        return self._message.text() if self._stack.currentWidget() is self._message else ""

    def _restyle(self) -> None:
        s = self.style_
        f = self.font()
        f.setPointSizeF(s.point_size(9.5))
        self.setFont(f)
        self._message.setFont(s.font(11))
        self._message.setStyleSheet(f"color: {s.muted};")
        self._apply_style()
        if self._snapshot is not None:
            self.refresh()

    # ---- for subclasses to implement --------------------------------------------------------------
    def _draw(self, snapshot) -> None:
        raise NotImplementedError

    def _clear(self) -> None:
        pass

    def _apply_style(self) -> None:
        pass

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self._dirty:
            self.refresh()


class MatrixPicker(QtWidgets.QWidget):
    """Layer and module pickers built from a snapshot's matrix names.

    Names of the form '...layers.{i}...{module}' give a layer list and per-layer modules; other
    names ('W' in the matrix scenario) are listed under the layer entry '-'.
    Emits `matrixChanged(name)` when the user (or `set_current`) picks another matrix.
    """

    matrixChanged = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._names: tuple[str, ...] = ()
        self._by_layer: dict[str, dict[str, str]] = {}
        self._current = ""
        self._selection = None  # a MatrixSelection shared with other pickers (explorer/gui/matrix_link.py)
        self.link_box: QtWidgets.QCheckBox | None = None
        self.layer_box = QtWidgets.QComboBox(self)
        self.layer_box.setToolTip("Layer of the adapted matrix")
        self.module_box = QtWidgets.QComboBox(self)
        self.module_box.setToolTip("Adapted module in that layer")
        self.layer_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.module_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self._layer_label = QtWidgets.QLabel("Layer", self)
        lay.addWidget(self._layer_label)
        lay.addWidget(self.layer_box)
        lay.addWidget(self.module_box)
        self.layer_box.currentIndexChanged.connect(self._layer_changed)
        self.module_box.currentIndexChanged.connect(self._module_changed)

    def link(self, selection) -> None:
        """Show the matrix `selection` names and make it follow this picker's choices, while it is
        linked; a "linked" box beside the pickers links and unlinks."""
        self._selection = selection
        self.link_box = QtWidgets.QCheckBox("linked", self)
        self.link_box.setObjectName("matrix_link")
        self.link_box.setToolTip("The ΔW and spectrum views show the same matrix; untick to pick each on its own")
        self.link_box.setChecked(selection.linked)
        self.layout().addWidget(self.link_box)
        self.link_box.clicked.connect(lambda on: selection.set_linked(on, self._current))
        selection.linkedChanged.connect(self._linked_changed)
        selection.changed.connect(self._follow)

    def _linked_changed(self, on: bool) -> None:
        if self.link_box is not None and self.link_box.isChecked() != on:
            self.link_box.setChecked(on)

    def _follow(self, name: str) -> None:
        if name != self._current and name in self._names:
            self._select(name)

    def names(self) -> tuple[str, ...]:
        return self._names

    def current(self) -> str:
        return self._current

    def set_names(self, names) -> None:
        """Rebuild the pickers if the set of names changed; keep the selection when it survives."""
        names = tuple(names)
        if names == self._names:
            return
        self._names = names
        by_layer: dict[str, dict[str, str]] = {}
        for name in names:
            layer, module = split_matrix_name(name)
            by_layer.setdefault("-" if layer is None else str(layer), {})[module] = name
        self._by_layer = {
            k: dict(sorted(v.items(), key=lambda kv: module_key(kv[0])))
            for k, v in sorted(by_layer.items(), key=lambda kv: (kv[0] == "-", int(kv[0]) if kv[0] != "-" else 0))
        }
        keep = self._current if self._current in names else (names[0] if names else "")
        if self._selection is not None and self._selection.linked and self._selection.name in names:
            keep = self._selection.name  # linked: the matrix the other picker shows
        with QtCore.QSignalBlocker(self.layer_box):
            self.layer_box.clear()
            self.layer_box.addItems(list(self._by_layer))
        only_plain = list(self._by_layer) == ["-"]
        self.layer_box.setVisible(not only_plain)
        self._layer_label.setText("Layer" if not only_plain else "Matrix")
        self._current = ""
        self._select(keep)

    def set_current(self, name: str) -> bool:
        """Select a matrix by its full name; False if the snapshot has no such matrix."""
        if name not in self._names:
            return False
        self._select(name)
        return True

    def _select(self, name: str) -> None:
        if not name:
            with QtCore.QSignalBlocker(self.module_box):
                self.module_box.clear()
            changed = self._current != ""
            self._current = ""
            if changed:
                self.matrixChanged.emit("")
            return
        layer, module = split_matrix_name(name)
        layer_key = "-" if layer is None else str(layer)
        with QtCore.QSignalBlocker(self.layer_box):
            self.layer_box.setCurrentText(layer_key)
        self._fill_modules(layer_key, module)
        self._set_current(name)

    def _fill_modules(self, layer_key: str, module: str | None) -> None:
        modules = list(self._by_layer.get(layer_key, {}))
        with QtCore.QSignalBlocker(self.module_box):
            self.module_box.clear()
            self.module_box.addItems(modules)
            if module in modules:
                self.module_box.setCurrentText(module)

    def _set_current(self, name: str) -> None:
        if name != self._current:
            self._current = name
            self.matrixChanged.emit(name)
        if self._selection is not None:
            self._selection.select(name)

    def _layer_changed(self, _index: int) -> None:
        layer_key = self.layer_box.currentText()
        _, module = split_matrix_name(self._current) if self._current else (None, None)
        self._fill_modules(layer_key, module)
        self._module_changed()

    def _module_changed(self, _index: int = 0) -> None:
        name = self._by_layer.get(self.layer_box.currentText(), {}).get(self.module_box.currentText())
        if name:
            self._set_current(name)


def qt_alive(*objects) -> bool:
    """True while every object's C++ side still exists. Event filters can be called while a window is
    being torn down, after Qt deleted part of a view: touching those parts would crash the process."""
    return all(o is not None and shiboken6.isValid(o) for o in objects)
