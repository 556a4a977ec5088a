"""Singular-value spectrum of ΔW: log-scale values, the target's spectrum, cumulative energy, ranks, waterfall.

Top: σ_i of the chosen matrix's ΔW (exactly r non-zero values for LoRA, the full spectrum for full
fine-tuning, or its leading values only above 512 per side: a partial spectrum, labelled so) on a log
axis, with the planted target's spectrum overlaid in the matrix scenario, for DoRA the spectrum of the
effective update W_eff − W0 (full rank) beside the low-rank B·A part, and the cumulative energy
Σ_{i<=k} σ_i² / ||ΔW||_F² on a second (right) axis (exact also for a partial spectrum: ||ΔW||_F is).
Bottom: the waterfall, an image of log10 σ_i (columns, aligned with the plot above) over the recorded
steps (rows, newest at the top), from `snapshot.history.spectra`.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.axes import (  # noqa: F401 - format_log_value, log_ticks importable here too
    LogValueAxis,
    ShareAxis,
    StepAxis,
    format_log_value,
    log_ticks,
)
from explorer.gui.views.base import MatrixPicker, View, new_layout_widget, qt_alive, style_legend, style_plot
from explorer.schema.rank_advice import ENERGY_LEVELS, energy_ranks

DECADES = 4.0  # the waterfall's colour spans this many decades below the largest value
AXIS_WIDTH = 56
MAX_SYMBOLS = 96  # draw point markers for at most this many singular values
WATERFALL_MIN_PX = 56  # the waterfall's colour rows: shorter, the view drops it and the spectrum takes the room


class SpectrumView(View):
    view_id = "spectrum"
    title = "Spectrum"
    formula_tooltip = (
        "σ₁ ≥ σ₂ ≥ … of ΔW (at most r non-zero for LoRA); energy(k) = Σᵢ≤ₖ σᵢ² / Σ σᵢ²; "
        "effective rank = exp(H(σ/Σσ)); stable rank = Σ σᵢ² / σ₁²"
    )

    matrixChanged = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        self._wf_key = None
        self._values = np.zeros(0, np.float32)
        self._symbols = True
        self._seq_name = colormaps.SEQUENTIAL

        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        top = QtWidgets.QHBoxLayout()
        self.picker = MatrixPicker(content)
        self.picker.matrixChanged.connect(self._matrix_picked)
        top.addWidget(self.picker)
        top.addStretch(1)
        lay.addLayout(top)
        self.ranks = QtWidgets.QLabel(content)
        self.ranks.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.ranks.setWordWrap(True)
        lay.addWidget(self.ranks)

        self.glw = new_layout_widget(self.style_)
        self.glw.ci.setToolTip(self.formula_tooltip)
        # -- the spectrum, log y
        self.value_axis = LogValueAxis("left")
        self.plot: pg.PlotItem = self.glw.addPlot(
            row=1, col=0, axisItems={"left": self.value_axis, "right": ShareAxis("right")}
        )
        self.plot.setLogMode(x=False, y=True)
        self.value_axis.setStyle(maxTextLevel=0)  # the minor ticks are drawn, not labelled
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("left", "σᵢ")
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        self.plot.getAxis("left").setWidth(AXIS_WIDTH)
        self.plot.showAxis("right")
        self.plot.getAxis("right").setWidth(AXIS_WIDTH)
        self.plot.setLabel("right", "cumulative energy")
        self.plot.getAxis("right").setLogMode(False, False)
        # no grid from the share axis (the σ axis draws it): with one, pyqtgraph drops the labels at
        # its ends (0 % and 100 %), which stick out of the plot by half a line
        self.plot.getAxis("right").setGrid(False)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").setStyle(showValues=False)
        self.target_curve = pg.PlotDataItem(
            pen=pg.mkPen("#E69F00", width=1, style=QtCore.Qt.PenStyle.DashLine),
            symbol="s",
            symbolSize=6,
            symbolPen=pg.mkPen("#E69F00", width=1),
            symbolBrush=None,
            name="target ΔW*",
        )
        self.curve = pg.PlotDataItem(
            pen=pg.mkPen("#56B4E9", width=1),
            symbol="o",
            symbolSize=7,
            symbolPen=pg.mkPen("#56B4E9", width=1),
            symbolBrush="#56B4E9",
            name="ΔW",
        )
        self.effective_curve = pg.PlotDataItem(
            pen=pg.mkPen("#CC79A7", width=1, style=QtCore.Qt.PenStyle.DashLine),
            symbol="t",
            symbolSize=6,
            symbolPen=pg.mkPen("#CC79A7", width=1),
            symbolBrush=None,
            name="W_eff − W₀ (DoRA)",
        )
        for item in (self.target_curve, self.effective_curve, self.curve):
            # on the log axis the values are log10(σ), never the huge numbers the dynamic range limit
            # guards against; with it on, every change of the y range (each frame, as σ grows) set the
            # points of each curve again
            item.setDynamicRangeLimit(None)
            self.plot.addItem(item)
        self.rank_line = pg.InfiniteLine(
            angle=90,
            movable=False,
            pen=pg.mkPen("#999999", width=1, style=QtCore.Qt.PenStyle.DotLine),
            label="r",
            labelOpts={
                "position": 0.5,
                "color": "#aaaaaa",
                # left of the line, clear of the points
                "anchors": [(1.1, 0.5), (1.1, 0.5)],
            },
        )
        self.rank_line.hide()
        self.plot.addItem(self.rank_line, ignoreBounds=True)
        # the energy ranks: where 90, 95 and 99 % of Σσ² are reached (levels reached at the same k share a line)
        self.energy_lines: list[pg.InfiniteLine] = []
        for i in range(len(ENERGY_LEVELS)):
            line = pg.InfiniteLine(
                angle=90,
                movable=False,
                pen=pg.mkPen("#009E73", width=1, style=QtCore.Qt.PenStyle.DashLine),
                label="",
                labelOpts={"position": 0.92 - 0.1 * i, "color": "#009E73", "anchors": [(-0.1, 0.5), (-0.1, 0.5)]},
            )
            line.hide()
            self.plot.addItem(line, ignoreBounds=True)
            self.energy_lines.append(line)
        self._energy_ranks: dict[float, int] = {}
        # -- cumulative energy on a second y axis
        self.energy_box = pg.ViewBox(enableMouse=False)
        self.energy_box.disableAutoRange()
        self.energy_box.setYRange(0.0, 1.0, padding=0.02)
        self.energy_box.setXLink(self.plot.vb)
        self.plot.scene().addItem(self.energy_box)
        self.plot.getAxis("right").linkToView(self.energy_box)
        self.energy_curve = pg.PlotCurveItem(pen=pg.mkPen("#009E73", width=1))
        self.energy_box.addItem(self.energy_curve)
        self.plot.vb.sigResized.connect(self._sync_energy_box)
        self.empty_text = pg.TextItem(anchor=(0.5, 0.5))
        self.empty_text.setParentItem(self.plot.vb)
        self.empty_text.hide()
        # the legend on a line of its own above the plot: inside it, it would cover the σ curve (top left)
        # or the energy curve (top right), whichever corner it took
        self.legend = pg.LegendItem(labelTextSize="8pt", colCount=3)
        self.legend.setFlag(self.legend.GraphicsItemFlag.ItemIsMovable, False)
        self.glw.addItem(self.legend, row=0, col=0)
        self._legend_has_target = None
        self._set_legend(False, False)
        # -- waterfall
        self.waterfall_plot: pg.PlotItem = self.glw.addPlot(row=2, col=0, axisItems={"left": StepAxis("left")})
        self.waterfall_plot.hideButtons()
        self.waterfall_plot.setMenuEnabled(False)
        self.waterfall_plot.setMouseEnabled(x=False, y=False)
        self.waterfall_plot.setXLink(self.plot)
        self.waterfall_plot.setLabel("left", "step")
        self.waterfall_plot.setLabel("bottom", "index i")
        self.waterfall_plot.getAxis("left").setWidth(AXIS_WIDTH)
        self.waterfall_plot.showAxis("right")
        self.waterfall_plot.getAxis("right").setWidth(AXIS_WIDTH)
        self.waterfall_plot.getAxis("right").setStyle(showValues=False)
        self.waterfall = pg.ImageItem(axisOrder="row-major")
        self.waterfall.setLookupTable(colormaps.lut(self._seq_name))
        self.waterfall_plot.addItem(self.waterfall)
        self.glw.ci.layout.setRowStretchFactor(1, 3)
        self.glw.ci.layout.setRowStretchFactor(2, 2)
        self.glw.ci.layout.setSpacing(2)
        self._with_waterfall = None
        self._dropped = False  # the waterfall is out of the layout because the view is short
        self._sized = False  # the drawing has had its first resize
        self.glw.installEventFilter(self)
        lay.addWidget(self.glw, 1)
        self.caption = QtWidgets.QLabel(content)
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.set_content(content)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def set_matrix(self, name: str) -> bool:
        """Show the spectrum of this matrix (full name); False if the snapshot has no such matrix."""
        if self._snapshot is not None:
            self.picker.set_names(list(self._snapshot.matrices))
        return self.picker.set_current(name)

    def current_matrix(self) -> str:
        return self.picker.current()

    def spectrum_values(self) -> np.ndarray:
        """The singular values plotted now (the non-zero ones)."""
        return self._values

    def waterfall_shape(self) -> tuple[int, int]:
        """(recorded steps, singular values) of the waterfall image; (0, 0) when empty."""
        img = self.waterfall.image
        return (0, 0) if img is None else tuple(img.shape)

    def ranks_text(self) -> str:
        return self.ranks.text()

    def energy_marks(self) -> dict[float, int]:
        """{level: rank} marked on the plot: the smallest k keeping 90 / 95 / 99 % of Σσ² ({} for ΔW = 0)."""
        return dict(self._energy_ranks)

    def energy_line_labels(self) -> list[tuple[float, str]]:
        """(x, label) of every energy-rank line drawn now."""
        return [(line.value(), line.label.toPlainText()) for line in self.energy_lines if line.isVisible()]

    def export_item(self):
        return self.glw.ci

    def has_waterfall(self) -> bool:
        """False while the view is too short for both plots (the spectrum keeps the room then)."""
        return bool(self._with_waterfall)

    # ---- layout ----------------------------------------------------------------------------------
    def eventFilter(self, watched, event) -> bool:
        if (
            watched is self.glw
            and event.type() == QtCore.QEvent.Type.Resize
            and qt_alive(self, self.glw, self.glw.ci, self.glw.ci.layout)
        ):
            self._fit_rows(event.size().height())
        return super().eventFilter(watched, event)

    def _fit_rows(self, height: int | None = None) -> None:
        """The spectrum gets at least 150 px (scaled in talk mode) and the waterfall the rest; a view
        too short for a readable waterfall drops it and puts the index axis under the spectrum."""
        if height is None:
            if not self._sized:
                return  # not laid out yet: its first resize (when shown) fits it
            height = self.glw.height()
        self._sized = True
        scale = max(1.0, self.style_.font_scale)
        line = QtGui.QFontMetrics(self.style_.font()).height()
        spectrum_min = 150 * scale
        # a few rows of colour (no shorter than talk mode's least plot, talk_fit.MIN_PLOT_PX) and its index axis
        waterfall_min = max(WATERFALL_MIN_PX, 40 * scale) + 2.5 * line
        room = height - max(self.legend.height(), line) - 10  # below the legend, within the margins
        grid = self.glw.ci.layout
        in_layout = any(grid.itemAt(i) is self.waterfall_plot for i in range(grid.count()))
        if not in_layout and not self._dropped:
            return  # a subclass took the waterfall out for good (the adapter inspector): leave it so
        with_waterfall = room >= spectrum_min + waterfall_min
        grid.setRowMinimumHeight(1, max(40.0, min(spectrum_min, room)))
        if with_waterfall != self._with_waterfall:
            self._with_waterfall = with_waterfall
            # out of the layout, not squeezed to nothing (a plot squeezed to 0 px comes back with
            # axes of 0 px)
            if with_waterfall and not in_layout:
                grid.addItem(self.waterfall_plot, 2, 0)
            elif not with_waterfall and in_layout:
                grid.removeItem(self.waterfall_plot)
            self._dropped = not with_waterfall
            self.waterfall_plot.setVisible(with_waterfall)
            if with_waterfall:  # pyqtgraph sizes a hidden axis to 0 px and keeps it so: size them again
                for name in ("left", "right"):
                    axis = self.waterfall_plot.getAxis(name)
                    axis.setWidth(axis.fixedWidth)
                axis = self.waterfall_plot.getAxis("bottom")
                axis.setHeight(axis.fixedHeight)
            bottom = self.plot.getAxis("bottom")
            bottom.setStyle(showValues=not with_waterfall)
            bottom.setLabel("" if with_waterfall else "index i")
            bottom.showLabel(not with_waterfall)
            style_plot(self.plot, self.style_)
            self._set_caption()  # it says whether a waterfall shows

    # ---- drawing ---------------------------------------------------------------------------------
    def _sync_energy_box(self) -> None:
        self.energy_box.setGeometry(self.plot.vb.sceneBoundingRect())
        self.energy_box.linkedViewChanged(self.plot.vb, self.energy_box.XAxis)
        self._place_empty_text()

    def _place_empty_text(self) -> None:
        r = self.plot.vb.boundingRect()
        self.empty_text.setPos(r.center())

    def _set_legend(self, with_target: bool, with_effective: bool = False) -> None:
        if (with_target, with_effective) == self._legend_has_target:
            return
        self._legend_has_target = (with_target, with_effective)
        self.legend.clear()
        self.legend.addItem(self.curve, "σᵢ of ΔW = s·B·A" if with_effective else "σᵢ of ΔW")
        if with_target:
            self.legend.addItem(self.target_curve, "σᵢ of target ΔW*")
        if with_effective:
            self.legend.addItem(self.effective_curve, "σᵢ of W_eff − W₀ (DoRA)")
        self.legend.addItem(self.energy_curve, "cumulative energy")
        self._style_legend()

    def _style_legend(self) -> None:
        style_legend(self.legend, self.style_)

    def _set_ticks(self, n: int) -> None:
        step = 1
        for candidate in (1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256, 500, 512, 1000, 1024):
            step = candidate
            if n / candidate <= 10:
                break
        else:
            step = int(10 ** np.ceil(np.log10(n / 10)))
        for plot in (self.plot, self.waterfall_plot):
            plot.getAxis("bottom").setTickSpacing(step, step)

    def _matrix_picked(self, name: str) -> None:
        self._key = self._wf_key = None
        self.matrixChanged.emit(name)
        self.refresh()

    def _draw(self, snapshot) -> None:
        matrices = snapshot.matrices or {}
        if not matrices:
            method = (snapshot.settings or {}).get("method", "")
            if method == "prefix":
                self.show_message(
                    "No weight update to decompose: prefix tuning trains prompt vectors and gates.\n"
                    "See the attention and gates views."
                )
            else:
                self.show_message("No spectrum yet: waiting for the first snapshot with weights.")
            self._key = self._wf_key = None
            return
        self.hide_message()
        self.picker.set_names(list(matrices))
        name = self.picker.current()
        m = matrices.get(name)
        if m is None:
            return
        key = (snapshot.segment, snapshot.step, snapshot.time, name, id(m.spectrum))
        if key != self._key:
            self._key = key
            self._draw_spectrum(snapshot, m)
            self.draw_count += 1
        self._draw_waterfall(snapshot, name)

    def _draw_spectrum(self, snapshot, m) -> None:
        s = np.asarray(m.spectrum, dtype=np.float64).ravel()
        s = s[np.isfinite(s)]
        settings = snapshot.settings or {}
        rank = settings.get("rank") if settings.get("method") in ("lora", "lora+prefix") else None
        if rank and settings.get("rank_pattern"):
            rank = s.size  # a per-module rank: the factors give exactly this module's r values
        positive = s[s > 0]
        self._values = positive.astype(np.float32)
        n_shown = positive.size
        if positive.size:
            x = np.arange(1, positive.size + 1, dtype=np.float64)
            symbols = positive.size <= MAX_SYMBOLS  # a full 4096-value spectrum: a line only
            if symbols != self._symbols:
                self._symbols = symbols
                self.curve.setSymbol("o" if symbols else None)
            self.curve.setData(x, positive)
            energy = np.cumsum(positive**2)
            # a partial spectrum: the share of the whole ||ΔW||_F² (exact), not of the values shown
            total = float(m.fro_norm) ** 2 if getattr(m, "spectrum_partial", False) else energy[-1]
            energy /= total if total > 0 else energy[-1]
            self.energy_curve.setData(x, energy)
        else:
            self.curve.setData([], [])
            self.energy_curve.setData([], [])
        t = None if m.target_spectrum is None else np.asarray(m.target_spectrum, dtype=np.float64).ravel()
        if t is not None and t.size:
            top = max(float(t.max()), float(positive.max()) if positive.size else 0.0)
            t = t[t > top * 1e-5]  # drop numerical dust below the plot's useful range
        has_target = t is not None and t.size > 0
        if has_target:
            self.target_curve.setData(np.arange(1, t.size + 1, dtype=np.float64), t)
            self.target_curve.show()
            n_shown = max(n_shown, t.size)
        else:
            self.target_curve.setData([], [])
            self.target_curve.hide()
        e = getattr(m, "effective_update_spectrum", None)
        e = None if e is None else np.asarray(e, dtype=np.float64).ravel()
        e = None if e is None else e[np.isfinite(e) & (e > 0)]
        if e is not None and e.size:
            self.effective_curve.setSymbol("t" if e.size <= MAX_SYMBOLS else None)
            self.effective_curve.setData(np.arange(1, e.size + 1, dtype=np.float64), e)
            self.effective_curve.show()
            n_shown = max(n_shown, e.size)
        else:
            self.effective_curve.setData([], [])
            self.effective_curve.hide()
        self._set_legend(has_target, e is not None and e.size > 0)
        n_axis = max(n_shown, int(rank) if rank else 0, s.size, 1)
        if n_axis != getattr(self, "_n_axis", None):
            self._n_axis = n_axis
            self.plot.setXRange(0.5, n_axis + 0.5, padding=0.02)
            self._set_ticks(n_axis)
        if rank:
            # shown first: pyqtgraph skips a label's text update while the label is hidden, so a label
            # set before show() would read its old text ("r") on the first frame
            self.rank_line.show()
            self.rank_line.setPos(rank + 0.5)
            self.rank_line.label.setFormat(f"r = {rank}")
            self.rank_line.label.valueChanged()
        else:
            self.rank_line.hide()
        # a partial spectrum (the leading values of a large full update) cannot say where 90 % is reached
        self._mark_energy_ranks(positive[:0] if getattr(m, "spectrum_partial", False) else positive)
        # text
        zero = s.size - positive.size
        if s.size and positive.size == 0:
            head = f"ΔW = 0: all {s.size} singular values are 0"
            if snapshot.step == 0:
                head += " (B starts at zero)"
            self.empty_text.setText(head)
            self.empty_text.show()
            self._place_empty_text()
        else:
            partial = getattr(m, "spectrum_partial", False)
            if partial:
                head = (
                    f"top <b>{s.size}</b> of {min(m.shape)} σ (randomized, partial) · effective rank of these "
                    f"{s.size} <b>{m.effective_rank:.2f}</b> · stable rank <b>{m.stable_rank:.2f}</b> "
                    "(exact ‖ΔW‖F and σ₁)"
                )
            else:
                head = f"<b>{positive.size}</b> non-zero σ" + (f" of r = {rank}" if rank else f" of {s.size}")
                if zero:
                    head += f" ({zero} zero)"
                head += f" · effective rank <b>{m.effective_rank:.2f}</b> · stable rank <b>{m.stable_rank:.2f}</b>"
                ranks = self._energy_ranks
                head += f" · keeps {' / '.join(f'{round(100 * e)}' for e in ranks)} % of Σσ² at rank " + " / ".join(
                    f"<b>{k}</b>" for k in ranks.values()
                )
            self.empty_text.hide()
        if getattr(m, "effective_update_spectrum", None) is not None:
            count = np.size(m.effective_update_spectrum)
            part = f"top {count} of {min(m.shape)} σ, partial" if m.effective_update_partial else f"{count} σ"
            head += (
                f"<br>DoRA W_eff − W₀ ({part}): ‖·‖F <b>{m.effective_update_fro_norm:.4g}</b> · "
                + ("effective rank of these " if m.effective_update_partial else "effective rank ")
                + f"<b>{m.effective_update_effective_rank:.2f}</b> · stable rank "
                f"<b>{m.effective_update_stable_rank:.2f}</b>"
            )
        self.ranks.setText(head)
        method = {"qr": "exact, from the QR of B and A", "exact": "exact", "svdvals": "dense SVD"}.get(
            m.spectrum_method, m.spectrum_method
        )
        self._caption_text = (
            f"{m.name} · {m.shape[0]}×{m.shape[1]} · ‖ΔW‖F = {m.fro_norm:.4g} · "
            f"spectrum: {method} · step {snapshot.step:,}"
        )
        if getattr(m, "effective_update_method", None):
            self._caption_text += f" · W_eff − W₀: {m.effective_update_method}"
        self._set_caption()

    def _mark_energy_ranks(self, positive: np.ndarray) -> None:
        """Dashed lines at the 90 / 95 / 99 % energy ranks; levels reached at the same k share one line."""
        self._energy_ranks = energy_ranks(positive) if positive.size else {}
        by_rank: dict[int, list[float]] = {}
        for level, k in self._energy_ranks.items():
            by_rank.setdefault(k, []).append(level)
        marks = sorted(by_rank.items())
        for i, line in enumerate(self.energy_lines):
            if i >= len(marks):
                line.hide()
                continue
            k, levels = marks[i]
            line.show()  # before the label: a hidden label skips its text update
            line.setPos(k)
            line.label.setFormat("/".join(f"{round(100 * e)}" for e in levels) + " %")
            line.label.valueChanged()

    def _set_caption(self) -> None:
        if not hasattr(self, "caption"):  # still building the view
            return
        text = getattr(self, "_caption_text", "")
        if text and self._with_waterfall:
            text += f" · waterfall colour: log₁₀ σᵢ, {DECADES:.0f} decades"
        self.caption.setText(text)

    def _draw_waterfall(self, snapshot, name: str) -> None:
        h = snapshot.history
        spectra = None if h is None else (h.spectra or {}).get(name)
        steps = None if h is None else h.spectrum_steps
        if spectra is None or steps is None or len(steps) == 0 or np.size(spectra) == 0:
            if self._wf_key != ("empty",):
                self._wf_key = ("empty",)
                self.waterfall.clear()
            return
        spectra = np.asarray(spectra)
        key = (snapshot.segment, name, len(steps), int(steps[0]), int(steps[-1]), spectra.shape, id(spectra))
        if key == self._wf_key:
            return
        self._wf_key = key
        data = np.asarray(spectra, dtype=np.float32).reshape(len(steps), -1)
        top = float(np.nanmax(data)) if data.size else 0.0
        if not np.isfinite(top) or top <= 0:
            logs = np.zeros_like(data)
            levels = (-1.0, 0.0)
        else:
            floor = top * 10 ** (-DECADES)
            logs = np.log10(np.maximum(data, floor, dtype=np.float32))
            levels = (float(np.log10(floor)), float(np.log10(top)))
        self.waterfall.setImage(np.ascontiguousarray(logs), autoLevels=False, levels=levels)
        y0, y1 = float(steps[0]), float(steps[-1])
        span = y1 - y0 if y1 > y0 else 1.0
        self.waterfall.setRect(QtCore.QRectF(0.5, y0, data.shape[1], span))
        self.waterfall_plot.setYRange(y0, y0 + span, padding=0)

    def _clear(self) -> None:
        self._key = self._wf_key = None
        self._n_axis = None
        self._values = np.zeros(0, np.float32)
        self.curve.setData([], [])
        self.target_curve.setData([], [])
        self.effective_curve.setData([], [])
        self.energy_curve.setData([], [])
        self.waterfall.clear()
        self._energy_ranks = {}
        for line in self.energy_lines:
            line.hide()
        self.empty_text.hide()
        self.ranks.setText("")
        self._caption_text = ""
        self.caption.setText("")

    def _apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        style_plot(self.waterfall_plot, s)
        for ax in ("left", "right"):
            self.plot.getAxis(ax).setWidth(int(AXIS_WIDTH * max(1.0, s.font_scale)))
            self.waterfall_plot.getAxis(ax).setWidth(int(AXIS_WIDTH * max(1.0, s.font_scale)))
        self._style_legend()
        self.empty_text.setColor(s.foreground)
        self.empty_text.setFont(s.font(11))
        self.rank_line.label.setColor(s.muted)
        self.rank_line.label.setFont(s.font(8.5))
        for line in self.energy_lines:
            line.label.setFont(s.font(8))
        self._with_waterfall = None
        self._fit_rows()
        name = colormaps.sequential_for(s.high_contrast)
        if name != self._seq_name:
            self._seq_name = name
            self.waterfall.setLookupTable(colormaps.lut(name))
        self._key = self._wf_key = None
