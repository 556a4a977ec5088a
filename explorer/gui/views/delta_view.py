"""ΔW heatmap of one adapted matrix: ΔW, W0, W0 + ΔW, (matrix scenario) the planted target ΔW*, and
for DoRA the effective update W_eff − W0 (the magnitude rescales every row, so it is full rank; ΔW =
s·B·A is only its low-rank part). W0 + ΔW is always what a merge writes: for DoRA that is W_eff.

Diverging colour map centred on zero with symmetric levels ±max|x| (smoothed over frames), a colour
bar, and the matrix drawn in its own coordinates (rows = outputs, columns = inputs), so a 4096x4096
matrix pooled to 128x128 on the device still reads 0..4096 on its axes.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.base import (
    MatrixPicker,
    View,
    fix_layout_spacing,
    new_layout_widget,
    qt_alive,
    set_colorbar_levels,
    style_colorbar,
    style_plot,
)

MODES = ("delta", "base", "merged", "target", "effective")
MODE_LABELS = {"delta": "ΔW", "base": "W₀", "merged": "W₀+ΔW", "target": "ΔW*", "effective": "W_eff − W₀ (DoRA)"}
BUTTON_LABELS = {**MODE_LABELS, "effective": "W_eff−W₀"}
MODE_TIPS = {
    "delta": "ΔW = scaling·B·A: what the adapter adds (exactly 0 at step 0); for DoRA its low-rank part",
    "base": "W₀: the frozen pretrained weight",
    "merged": "W₀ + ΔW: the weight the adapted model uses (what a merge writes; for DoRA "
    "W_eff = m / ‖W₀ + ΔW‖_row · (W₀ + ΔW))",
    "target": "ΔW*: the planted update the matrix scenario trains towards",
    "effective": "DoRA: the effective update W_eff − W₀ = m / ‖W₀ + ΔW‖_row · (W₀ + ΔW) − W₀, what the "
    "adapter really changes (full rank: the magnitude m rescales every row of W₀)",
}


class IndexAxis(pg.AxisItem):
    """Row or column indices with as many round ticks (1, 2, 5 x 10^k) as their labels have room for;
    where fewer than three fit, the two ends (0 and 4096): a 4096-wide matrix in a small dock reads
    0 ... 4096, not 1000 2000 3000 run together."""

    def _room(self, lo: float, hi: float) -> float:
        metrics = QtGui.QFontMetrics(self.style.get("tickFont") or QtGui.QFont())
        if self.orientation in ("bottom", "top"):
            return metrics.horizontalAdvance(str(int(max(abs(lo), abs(hi))))) + metrics.height()
        return metrics.height() * 2.0

    def tickValues(self, minVal, maxVal, size):
        lo, hi = sorted((float(minVal), float(maxVal)))
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo or size <= 0:
            return []
        fit = int(size / self._room(lo, hi))
        step = 1.0
        while True:
            for m in (1.0, 2.0, 5.0):
                count = int(np.floor(hi / (m * step) + 1e-9) - np.ceil(lo / (m * step) - 1e-9)) + 1
                if count <= max(fit, 1):
                    if count >= 3:
                        first = np.ceil(lo / (m * step) - 1e-9) * m * step
                        return [(m * step, [float(first + i * m * step) + 0.0 for i in range(count)])]
                    return [(None, [float(np.ceil(lo - 1e-9)) + 0.0, float(np.floor(hi + 1e-9)) + 0.0])]
            step *= 10.0

    def tickStrings(self, values, scale, spacing):
        return [f"{v * scale:.0f}" if float(v).is_integer() else f"{v * scale:g}" for v in values]


def target_norm(m) -> float | None:
    """‖ΔW*‖F of the planted target: exact from its singular values (the pooled image is not), else None."""
    values = getattr(m, "target_spectrum", None)
    if values is None or np.size(values) == 0:
        return None
    return float(np.sqrt(np.sum(np.asarray(values, dtype=np.float64) ** 2)))


def caption_head(m, mode: str, data: np.ndarray, level: float) -> tuple[list[str], tuple[int, int]]:
    """The caption's first parts (what is shown, of which matrix, its size, the norm of what is shown
    (‖ΔW*‖F for the target, else ‖ΔW‖F), DoRA's effective update, the colour range), and the matrix's
    (out, in) size."""
    out_f, in_f = (int(m.shape[0]), int(m.shape[1])) if len(m.shape) == 2 else data.shape
    dora = getattr(m, "effective_update", None) is not None
    label = "W_eff = W₀ + (W_eff − W₀) (DoRA: what a merge writes)" if dora and mode == "merged" else MODE_LABELS[mode]
    if mode == "target":
        exact = target_norm(m)
        norm = (
            f"‖ΔW*‖<sub>F</sub> = {exact:.4g}"
            if exact is not None
            else f"‖ΔW*‖<sub>F</sub> ≈ {float(np.linalg.norm(data)):.4g} (pooled)"
        )
    else:
        norm = f"‖ΔW‖<sub>F</sub> = {m.fro_norm:.4g}" + (" (ΔW = s·B·A, the low-rank part)" if dora else "")
    parts = [f"<b>{label}</b> of {html.escape(m.name)}", f"{out_f}×{in_f}", norm]
    if dora:
        parts.append(f"‖W_eff − W₀‖<sub>F</sub> = {m.effective_update_fro_norm:.4g}")
    parts.append(f"colours ±{level:.3g}")
    return parts, (out_f, in_f)


def missing_text(snapshot, m, mode: str) -> str:
    """Why there is no heatmap of `m` to draw. Live, the engine sends the heatmaps of the matrix on
    view only (and its W0 once), so one picked a moment ago is on the way; a recording holds those it
    was sent (the app's: the matrices that were on view; a user's own run's: a bounded set)."""
    name = html.escape(m.name)
    if snapshot.state != "replay":
        what = "W₀" if m.delta is not None else MODE_LABELS[mode]
        return f"{what} of {name} is on the way (the engine sends the heatmaps of the matrix on view only)…"
    held = [n for n, x in (snapshot.matrices or {}).items() if x.delta is not None]
    if held:
        shown = ", ".join(html.escape(n) for n in held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
        where = f"it holds the heatmaps of {shown}"
    else:
        where = "it holds no heatmaps"
    return (
        f"No {MODE_LABELS[mode]} heatmap of {name} in this recording: {where} (a recording of the app keeps "
        "those of the matrices on view, one of your own run a few); spectra and norms of every matrix are "
        "recorded (the spectrum view)"
    )


class DeltaView(View):
    view_id = "delta"
    title = "ΔW heatmap"
    formula_tooltip = (
        "ΔW = scaling·B·A with scaling = α/r (rsLoRA: α/√r); W = W₀ + ΔW; colours centred on 0, levels ±max|x|"
    )

    matrixChanged = QtCore.Signal(str)  # the user picked another matrix (the spectrum view can follow)
    modeChanged = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._mode = "delta"
        self._key = None
        self._geometry = None
        self._data: np.ndarray | None = None
        self._levels = {m: colormaps.SymmetricLevels() for m in MODES}
        self._cmap_name = colormaps.DIVERGING

        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        # pickers left, mode buttons right; in a narrow dock the buttons go on a second line
        self._top = QtWidgets.QGridLayout()
        self._top.setHorizontalSpacing(4)
        self._top.setVerticalSpacing(3)
        self.picker = MatrixPicker(content)
        self.picker.matrixChanged.connect(self._matrix_picked)
        self._mode_bar = QtWidgets.QWidget(content)
        self._mode_bar.setMinimumWidth(1)  # beside the pickers it never makes the dock wider: it moves below
        modes = QtWidgets.QHBoxLayout(self._mode_bar)
        modes.setContentsMargins(0, 0, 0, 0)
        modes.setSpacing(4)
        self._buttons: dict[str, QtWidgets.QToolButton] = {}
        group = QtWidgets.QButtonGroup(content)
        group.setExclusive(True)
        for mode in MODES:
            b = QtWidgets.QToolButton(self._mode_bar)
            b.setText(BUTTON_LABELS[mode])
            b.setToolTip(MODE_TIPS[mode])
            b.setCheckable(True)
            b.setAutoRaise(False)
            b.setProperty("role", "mode")  # the theme shows the checked one in the highlight colour
            b.clicked.connect(lambda _=False, m=mode: self.set_mode(m))
            group.addButton(b)
            modes.addWidget(b)
            self._buttons[mode] = b
        self._buttons["delta"].setChecked(True)
        self._buttons["target"].setEnabled(False)
        self._buttons["effective"].setVisible(False)  # DoRA only
        self._top.addWidget(self.picker, 0, 0)
        self._top.setColumnStretch(1, 1)
        self._buttons_below = None
        self._place_mode_bar(False)
        lay.addLayout(self._top)

        self.glw = new_layout_widget(self.style_)
        self.glw.ci.setToolTip(self.formula_tooltip)
        # plot and colour bar in a layout of their own, centred by the margins around it (and exported
        # without them)
        self.frame = self.glw.ci.addLayout(row=0, col=0)
        self.frame.setContentsMargins(0, 0, 0, 0)
        fix_layout_spacing(self.frame.layout)
        self.plot: pg.PlotItem = self.frame.addPlot(
            row=0, col=0, axisItems={"bottom": IndexAxis("bottom"), "left": IndexAxis("left")}
        )
        # The axes fit the image exactly; its aspect is kept by sizing the plot (see _fit_layout), not by
        # a locked view box, which would pad the range to fill a wide or tall dock (-10 ... 140 rows).
        self.plot.invertY(True)
        self.plot.hideButtons()
        self.plot.vb.setDefaultPadding(0.0)
        self.plot.getAxis("bottom").setStyle(hideOverlappingLabels=12)  # "0" at the left end is drawn
        self.plot.vb.sigResized.connect(self._fit_layout)
        self.plot.setLabel("bottom", "input (column)")
        self.plot.setLabel("left", "output (row)")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(colormaps.lut(self._cmap_name))
        self.plot.addItem(self.image)
        self.colorbar = colormaps.colorbar(self._cmap_name, (-1.0, 1.0))
        self.frame.addItem(self.colorbar, row=0, col=1)
        self.colorbar.geometryChanged.connect(self._fit_layout)  # its labels widen it as the levels change
        lay.addWidget(self.glw, 1)
        self.caption = QtWidgets.QLabel(content)
        self.caption.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.set_content(content)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def matrix_names(self) -> tuple[str, ...]:
        return self.picker.names()

    def current_matrix(self) -> str:
        return self.picker.current()

    def set_matrix(self, name: str) -> bool:
        """Show the matrix with this full name (e.g. 'model.layers.1.self_attn.v_proj'); False if unknown."""
        if self._snapshot is not None:
            self.picker.set_names(list(self._snapshot.matrices))
        return self.picker.set_current(name)

    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """'delta' (ΔW), 'base' (W0), 'merged' (W0 + ΔW), 'target' (ΔW*, matrix scenario only) or
        'effective' (W_eff − W0, DoRA only)."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is unknown: allowed {', '.join(MODES)}")
        self._buttons[mode].setChecked(True)
        if mode != self._mode:
            self._mode = mode
            self._key = None
            self.modeChanged.emit(mode)
            self.refresh()

    def levels(self) -> tuple[float, float]:
        """The (low, high) levels of the image now: always symmetric about 0."""
        lv = self.image.getLevels()
        return (float(lv[0]), float(lv[1])) if lv is not None else (0.0, 0.0)

    def image_data(self) -> np.ndarray | None:
        """The array drawn now (pooled), or None."""
        return self._data

    def caption_text(self) -> str:
        return self.caption.text()

    def export_item(self):
        return self.frame

    # ---- drawing ---------------------------------------------------------------------------------
    def _matrix_picked(self, name: str) -> None:
        for tracker in self._levels.values():
            tracker.reset()
        self._key = None
        self.matrixChanged.emit(name)
        self.refresh()

    def _draw(self, snapshot) -> None:
        matrices = snapshot.matrices or {}
        if not matrices:
            method = (snapshot.settings or {}).get("method", "")
            if method == "prefix":
                self.show_message(
                    "No adapted matrices: prefix tuning trains prompt vectors and gates, "
                    "not weights.\nSee the attention and gates views."
                )
            else:
                self.show_message("No adapted matrices yet: waiting for the first snapshot with weights.")
            self._key = None
            return
        self.hide_message()
        first = not self.picker.current()
        self.picker.set_names(list(matrices))
        if first:  # start on a matrix whose heatmaps came (live: the engine's choice; a replay: one recorded)
            sent = next((n for n, m in matrices.items() if m.delta is not None), None)
            if sent is not None:
                self.picker.set_current(sent)
        name = self.picker.current()
        m = matrices.get(name)
        if m is None:
            return
        has_target = m.target is not None
        effective = getattr(m, "effective_update", None)  # DoRA: W_eff - W0, pooled like delta
        self._buttons["target"].setEnabled(has_target)
        if self._buttons["effective"].isVisibleTo(self) != (effective is not None):
            self._buttons["effective"].setVisible(effective is not None)
        mode = self._mode
        if (mode == "target" and not has_target) or (mode == "effective" and effective is None):
            mode = "delta"
        key = (snapshot.segment, snapshot.step, snapshot.time, name, mode, id(m.delta))
        if key == self._key:
            return
        self._key = key
        if mode == "delta":
            data = m.delta
        elif mode == "base":
            data = m.base
        elif mode == "merged":
            # mean pooling is linear: pooled(W0 + ΔW) = pooled W0 + pooled ΔW; for DoRA the merged
            # weight is W0 + (W_eff - W0)
            added = m.delta if effective is None else effective
            data = None if m.base is None or added is None else m.base + added
        elif mode == "effective":
            data = effective
        else:
            data = m.target
        if data is None:
            self._data = None
            self.image.clear()
            self.caption.setText(missing_text(snapshot, m, mode))
            self.draw_count += 1
            return
        data = np.ascontiguousarray(data, dtype=np.float32)
        self._data = data
        if mode in ("delta", "target") and has_target:
            # one colour scale for ΔW and ΔW*: flipping between them compares the two, colour for colour
            largest = max(colormaps.abs_max(m.delta), colormaps.abs_max(m.target))
            levels = self._levels["delta"].update_max(largest)
        else:
            levels = self._levels[mode].update(data)
        self.image.setImage(data, autoLevels=False, levels=levels)
        out_f, in_f = (int(m.shape[0]), int(m.shape[1])) if len(m.shape) == 2 else data.shape
        geometry = (data.shape, out_f, in_f)
        if geometry != self._geometry:
            self._geometry = geometry
            self.image.setRect(QtCore.QRectF(0, 0, in_f, out_f))
            # zoom and pan stay inside the matrix
            self.plot.vb.setLimits(xMin=0, xMax=in_f, yMin=0, yMax=out_f)
            self.plot.setRange(xRange=(0, in_f), yRange=(0, out_f), padding=0)
            self._fit_layout()
        set_colorbar_levels(self.colorbar, levels)
        self.caption.setText(self._caption(snapshot, m, mode, data, levels[1]))
        self.draw_count += 1

    def _place_mode_bar(self, below: bool) -> None:
        if below == self._buttons_below:
            return
        self._buttons_below = below
        self._top.removeWidget(self._mode_bar)
        if below:
            self._top.addWidget(self._mode_bar, 1, 0, 1, 3, QtCore.Qt.AlignmentFlag.AlignLeft)
        else:
            self._top.addWidget(self._mode_bar, 0, 2)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        need = self.picker.sizeHint().width() + self._mode_bar.sizeHint().width() + 16
        self._place_mode_bar(event.size().width() < need)

    def image_aspect(self) -> float:
        """Width / height the heatmap is drawn with: the matrix's columns / rows, kept within 1:4 and 4:1
        so a 11008 x 4096 matrix is still a readable block."""
        if not self._geometry:
            return 1.0
        _, out_f, in_f = self._geometry
        return float(np.clip(in_f / max(out_f, 1), 0.25, 4.0))

    def _fit_layout(self) -> None:
        """Give the plot the margins that make its view box the image's shape, centred in the view, with
        room above and below for the colour bar's end labels; then line the colour bar up with it.

        Runs on resizes and new matrix shapes only: the margins are computed from the layout's size and
        the room the axes take, so calling it again changes nothing."""
        if not qt_alive(self, self.glw, self.glw.ci, self.frame, self.plot, self.colorbar):
            return  # called from a resize while a closing window tears the items down
        ci, vb = self.glw.ci, self.plot.vb
        total = ci.geometry()
        plot_rect, vb_rect = self.plot.geometry(), vb.geometry()
        if total.width() <= 0 or vb_rect.width() <= 0 or vb_rect.height() <= 0:
            return
        room = colormaps.label_room(self.style_.font())
        axes_w = plot_rect.width() - vb_rect.width()
        axes_h = plot_rect.height() - vb_rect.height()
        bar_w = self.colorbar.geometry().width() + self.frame.layout.horizontalSpacing()
        avail_w = total.width() - 4 - bar_w - axes_w
        avail_h = total.height() - 2 * room - axes_h
        if avail_w <= 8 or avail_h <= 8:
            margins = (2, 0, 2, 0)
        else:
            aspect = self.image_aspect()
            scale = min(avail_w / aspect, avail_h)
            extra_w = max(0.0, avail_w - scale * aspect) / 2
            extra_h = max(0.0, avail_h - scale) / 2
            margins = (2 + extra_w, extra_h, 2 + extra_w, extra_h)
        old = getattr(self, "_margins", None)
        if old is None or max(abs(a - b) for a, b in zip(margins, old)) >= 0.5:
            self._margins = margins
            ci.setContentsMargins(*margins)
            ci.layout.activate()  # now, not on the next turn of the event loop: no frame drawn off-shape
        if getattr(self, "_room", None) != room:
            self._room = room  # inside the frame, so an export keeps the bar's end labels
            self.frame.setContentsMargins(0, room, 0, room)
        colormaps.align_colorbar(self.colorbar, self.plot)

    def _caption(self, snapshot, m, mode: str, data: np.ndarray, level: float) -> str:
        parts, (out_f, in_f) = caption_head(m, mode, data, level)
        parts.append(f"step {snapshot.step:,}")
        if data.shape != (out_f, in_f):
            parts.append(f"pooled from {out_f}×{in_f} to {data.shape[0]}×{data.shape[1]}")
        if mode == "delta" and m.fro_norm == 0.0:
            parts.append("ΔW is exactly 0 (B starts at zero)")
        return " · ".join(parts)

    def _clear(self) -> None:
        for tracker in self._levels.values():
            tracker.reset()
        self._key = None
        self._geometry = None
        self._data = None
        self.image.clear()
        self.caption.setText("")

    def _apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        style_colorbar(self.colorbar, s)
        self._margins = None
        self._fit_layout()
        name = colormaps.diverging_for(s.high_contrast)
        if name != self._cmap_name:
            self._cmap_name = name
            self.image.setLookupTable(colormaps.lut(name))
            self.colorbar.setColorMap(colormaps.colormap(name))
        for tracker in self._levels.values():
            tracker.hold = s.high_contrast
        self._key = None
