"""Compare settings: several runs on the same data and seed, overlaid (the seed paper's RQ4, live).

Top: the loss curves of every run, one colour each (Okabe-Ito, safe for colour-blind eyes; a dash
pattern as well beyond eight runs): training loss smoothed (TensorBoard's debiased EMA) as solid
lines, held-out loss as dashed lines with markers. Middle: the Table IX-style table (what trains, its
share, storage, final losses, speed, the same setting on LLaMA-7B). Bottom, the LoRA paper's analyses:
- Subspace φ (Fig. 3): φ(i, j) = ||U_a[:, :i]^T U_b[:, :j]||_F^2 / min(i, j) for a chosen pair of
  LoRA runs and module, beside the control (run a against a random basis of run b's size);
- Amplification (Table 7): per module, ||ΔW||_F / ||U^T W0 V||_F, and W0 projected onto ΔW's
  k = rank(ΔW) <= r directions, W0's own top-k and a random basis (PiSSA runs marked: W0 is the residual);
- Intrinsic rank: LoRA's ΔW spectrum against the full fine-tuning update's on the same module, with
  how each spectrum was computed.

It draws `explorer.engine.compare.CompareSnapshot`s (from a CompareWorker, or `load_comparison(DIR)`
for a headless comparison). An ordinary training `Snapshot` is drawn as a one-run comparison until
the first CompareSnapshot arrives; after that, ordinary snapshots are ignored until `clear()`.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.base import (
    View,
    format_bytes,
    format_count,
    format_short,
    new_layout_widget,
    split_matrix_name,
    style_colorbar,
    style_legend,
    style_plot,
)
from explorer.gui.views.loss_view import DEFAULT_SMOOTHING, ema_debiased

# Okabe & Ito (2008), yellow last: it reads poorly on a light background.
RUN_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#999999")
_DASHES = (QtCore.Qt.PenStyle.SolidLine, QtCore.Qt.PenStyle.DashDotLine, QtCore.Qt.PenStyle.DotLine)

TABLE_HEADERS = (
    "run",
    "method",
    "trainable params",
    "share",
    "storage (fp16)",
    "train loss",
    "held-out loss",
    "steps/s",
    "LLaMA-7B params",
    "LLaMA-7B storage",
)
TABLE_TIPS = (
    "The run's label (its spec without punctuation, or label=...)",
    "lora, prefix, lora+prefix or full (fine-tuning every weight)",
    "Parameters that train: LoRA r·(in+out) per matrix, prefix L·(K·C + gates), full: all",
    "Trainable parameters as a share of the base model's",
    "The trainable weights saved in fp16 (2 bytes each)",
    "Mean training loss over the last 10% of steps (at most the last 1,000)",
    "Held-out loss at the last evaluation",
    "Steps per second of the run's own training steps (the runs take turns)",
    "The same setting priced on LLaMA-7B (32 layers, hidden 4096)",
    "Its fp16 storage on LLaMA-7B",
)
TABS = ("similarity", "amplification", "intrinsic")
DEFAULT_SPECS = "lora:r=4  lora:r=8  lora:r=16  prefix:K=10  full"
SPECS_TIP = (
    "Run specs separated by spaces: METHOD[:KEY=VALUE,...], e.g. lora:r=8, lora:r=16,alpha=32, "
    "prefix:K=10,L=2, lora+prefix:r=8,K=10, full, lora:r=8,seed=1, lora:r=8,label=mine"
)


def split_specs(text: str) -> list[str]:
    """'lora:r=4  prefix:K=10; full' -> ['lora:r=4', 'prefix:K=10', 'full'] (spaces or ';' between runs)."""
    return [t for t in text.replace(";", " ").split() if t]


# k = rank(ΔW): the directions the projections use (at most r; σ = 0 directions are left out)
AMP_HEADERS = ("run", "module", "k", "‖ΔW‖_F", "‖UᵀW₀V‖_F", "W₀ top-k", "random", "factor")


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


def _fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–" if x is None else "∞"
    return f"{x:.{digits}g}"


class CompareView(View):
    view_id = "compare"
    title = "Compare"
    formula_tooltip = (
        "Runs on the same data and seed overlaid; φ(i,j) = ‖U_aᵢᵀU_bⱼ‖²_F / min(i,j) (LoRA Fig. 3); "
        "amplification ‖ΔW‖_F / ‖UᵀW₀V‖_F (Table 7); LoRA ΔW spectrum vs the full update's"
    )

    pairChanged = QtCore.Signal(str, str)
    moduleChanged = QtCore.Signal(str)
    compareRequested = QtCore.Signal(list)  # run specs the user asked to compare (already parsed once)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        self._compare = None  # the newest CompareSnapshot, once one has arrived
        self._got_compare = False
        self._smoothing = DEFAULT_SMOOTHING
        self._show_eval = True
        self._train_items: dict[str, pg.PlotDataItem] = {}
        self._eval_items: dict[str, pg.PlotDataItem] = {}
        self._pair: tuple[str, str] = ("", "")
        self._module = ""
        self._phi: np.ndarray | None = None
        self._analysis_key = None

        content = QtWidgets.QWidget(self)
        outer = QtWidgets.QVBoxLayout(content)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.setSpacing(3)
        ask = QtWidgets.QHBoxLayout()
        ask.addWidget(QtWidgets.QLabel("Runs", content))
        self.specs_edit = QtWidgets.QLineEdit(DEFAULT_SPECS, content)
        self.specs_edit.setToolTip(SPECS_TIP)
        self.specs_edit.setPlaceholderText(DEFAULT_SPECS)
        self.specs_edit.returnPressed.connect(self.request_compare)
        ask.addWidget(self.specs_edit, 1)
        self.compare_button = QtWidgets.QPushButton("Compare", content)
        self.compare_button.setToolTip("Train these runs on the same data and seed, taking turns, and overlay them")
        self.compare_button.clicked.connect(self.request_compare)
        ask.addWidget(self.compare_button)
        outer.addLayout(ask)
        self.spec_error = QtWidgets.QLabel(content)
        self.spec_error.setWordWrap(True)
        self.spec_error.setVisible(False)
        self.spec_error.setStyleSheet("color: #D55E00;")
        outer.addWidget(self.spec_error)
        top = QtWidgets.QHBoxLayout()
        self.status = QtWidgets.QLabel(content)
        self.status.setTextFormat(QtCore.Qt.TextFormat.RichText)
        top.addWidget(self.status, 1)
        self.eval_box = QtWidgets.QCheckBox("held-out", content)
        self.eval_box.setChecked(True)
        self.eval_box.setToolTip("Also draw the held-out loss (dashed, with markers)")
        self.eval_box.toggled.connect(self.set_show_eval)
        top.addWidget(self.eval_box)
        self.log_box = QtWidgets.QCheckBox("log y", content)
        self.log_box.setToolTip("Logarithmic loss axis")
        self.log_box.toggled.connect(self.set_log_y)
        top.addWidget(self.log_box)
        outer.addLayout(top)

        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical, content)
        self.splitter.setChildrenCollapsible(False)
        outer.addWidget(self.splitter, 1)

        # -- loss curves
        self.glw = new_layout_widget(self.style_)
        self.glw.ci.setToolTip("Training loss (solid, smoothed) and held-out loss (dashed) of every run")
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setClipToView(True)
        self.plot.setDownsampling(auto=True, mode="peak")
        self.legend = pg.LegendItem(offset=(-4, 4), labelTextSize="8pt")
        self.legend.setParentItem(self.plot.vb)
        self.legend.anchor((1, 0), (1, 0), offset=(-4, 4))
        self.empty_text = pg.TextItem("no runs yet", anchor=(0.5, 0.5))
        self.empty_text.setParentItem(self.plot.vb)
        self.plot.vb.sigResized.connect(lambda: self.empty_text.setPos(self.plot.vb.boundingRect().center()))
        self.splitter.addWidget(self.glw)

        # -- the table
        self.table = QtWidgets.QTableWidget(0, len(TABLE_HEADERS), content)
        self.table.setHorizontalHeaderLabels(list(TABLE_HEADERS))
        for i, tip in enumerate(TABLE_TIPS):
            self.table.horizontalHeaderItem(i).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(60)
        self.splitter.addWidget(self.table)

        # -- the analyses
        analyses = QtWidgets.QWidget(content)
        alay = QtWidgets.QVBoxLayout(analyses)
        alay.setContentsMargins(0, 0, 0, 0)
        alay.setSpacing(2)
        pick = QtWidgets.QHBoxLayout()
        pick.addWidget(QtWidgets.QLabel("Module", analyses))
        self.module_box = QtWidgets.QComboBox(analyses)
        self.module_box.setToolTip("The adapted matrix the analyses look at")
        self.module_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.module_box.currentIndexChanged.connect(self._module_picked)
        pick.addWidget(self.module_box)
        pick.addSpacing(12)
        self.pair_label = QtWidgets.QLabel("φ of", analyses)
        pick.addWidget(self.pair_label)
        self.run_a_box = QtWidgets.QComboBox(analyses)
        self.run_b_box = QtWidgets.QComboBox(analyses)
        for box in (self.run_a_box, self.run_b_box):
            box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
            box.setToolTip("A LoRA run (rows of φ: the first; columns: the second)")
            box.currentIndexChanged.connect(self._pair_picked)
        pick.addWidget(self.run_a_box)
        self.vs_label = QtWidgets.QLabel("vs", analyses)
        pick.addWidget(self.vs_label)
        pick.addWidget(self.run_b_box)
        pick.addStretch(1)
        alay.addLayout(pick)
        self.tabs = QtWidgets.QTabWidget(analyses)
        self.tabs.setDocumentMode(True)
        alay.addWidget(self.tabs, 1)

        # φ heatmaps: the pair and the random control, one colour bar (0..1)
        sim = QtWidgets.QWidget()
        slay = QtWidgets.QVBoxLayout(sim)
        slay.setContentsMargins(0, 0, 0, 0)
        self.phi_glw = new_layout_widget(self.style_)
        self.phi_plot = self.phi_glw.addPlot(row=0, col=0)
        self.control_plot = self.phi_glw.addPlot(row=0, col=1)
        for p in (self.phi_plot, self.control_plot):
            p.hideButtons()
            p.invertY(True)
            p.setMouseEnabled(False, False)
            p.setLabel("left", "i")
        self.phi_image = pg.ImageItem(axisOrder="row-major")
        self.control_image = pg.ImageItem(axisOrder="row-major")
        self.phi_plot.addItem(self.phi_image)
        self.control_plot.addItem(self.control_image)
        self.phi_bar = pg.ColorBarItem(
            values=(0.0, 1.0),
            colorMap=colormaps.colormap(colormaps.SEQUENTIAL),
            interactive=False,
            width=14,
            colorMapMenu=False,
        )
        self.phi_glw.addItem(self.phi_bar, row=0, col=2)
        slay.addWidget(self.phi_glw, 1)
        self.phi_caption = QtWidgets.QLabel(sim)
        self.phi_caption.setWordWrap(True)
        self.phi_caption.setTextFormat(QtCore.Qt.TextFormat.RichText)
        slay.addWidget(self.phi_caption)
        self.tabs.addTab(sim, "Subspace φ")

        # amplification: factor per module and run as bars, and the figures in a table
        amp = QtWidgets.QWidget()
        amplay = QtWidgets.QHBoxLayout(amp)
        amplay.setContentsMargins(0, 0, 0, 0)
        self.amp_glw = new_layout_widget(self.style_)
        self.amp_plot = self.amp_glw.addPlot(row=0, col=0)
        self.amp_plot.hideButtons()
        self.amp_plot.setMouseEnabled(False, False)
        self.amp_plot.setLabel("left", "amplification factor")
        self.amp_plot.showGrid(y=True, alpha=0.15)
        amplay.addWidget(self.amp_glw, 1)
        self.amp_table = QtWidgets.QTableWidget(0, len(AMP_HEADERS), amp)
        self.amp_table.setHorizontalHeaderLabels(list(AMP_HEADERS))
        self.amp_table.verticalHeader().setVisible(False)
        self.amp_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.amp_table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        amplay.addWidget(self.amp_table, 1)
        self._amp_bars: list[pg.BarGraphItem] = []
        self.tabs.addTab(amp, "Amplification")

        # intrinsic rank: spectra of LoRA's ΔW and the full update on one module
        intr = QtWidgets.QWidget()
        ilay = QtWidgets.QVBoxLayout(intr)
        ilay.setContentsMargins(0, 0, 0, 0)
        self.intr_glw = new_layout_widget(self.style_)
        self.intr_plot = self.intr_glw.addPlot(row=0, col=0)
        self.intr_plot.hideButtons()
        self.intr_plot.setLogMode(x=False, y=True)
        self.intr_plot.setLabel("bottom", "index of the singular value")
        self.intr_plot.setLabel("left", "singular value")
        self.intr_plot.showGrid(x=True, y=True, alpha=0.15)
        self.intr_legend = pg.LegendItem(offset=(-4, 4), labelTextSize="8pt")
        self.intr_legend.setParentItem(self.intr_plot.vb)
        self.intr_legend.anchor((1, 0), (1, 0), offset=(-4, 4))
        ilay.addWidget(self.intr_glw, 1)
        self.intr_caption = QtWidgets.QLabel(intr)
        self.intr_caption.setWordWrap(True)
        self.intr_caption.setTextFormat(QtCore.Qt.TextFormat.RichText)
        ilay.addWidget(self.intr_caption)
        self._intr_items: list[pg.PlotDataItem] = []
        self.tabs.addTab(intr, "Intrinsic rank")
        self.tabs.currentChanged.connect(lambda _i: self._draw_analysis(force=True))

        self.splitter.addWidget(analyses)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 3)
        self.set_content(content)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def specs_text(self) -> str:
        return self.specs_edit.text()

    def set_specs_text(self, text: str) -> None:
        self.specs_edit.setText(text)

    def request_compare(self) -> list[str] | None:
        """Check the run specs typed in; emit compareRequested(specs) if they parse, else show why.
        Returns the specs, or None on an error. (Scenario-specific checks happen when the main window
        builds the CompareWorker: its ValueError belongs in `show_spec_error`.)"""
        from explorer.schema.compare import parse_run_spec, unique_labels

        specs = split_specs(self.specs_edit.text())
        try:
            if not specs:
                raise ValueError("no runs: type run specs separated by spaces, e.g. " + DEFAULT_SPECS)
            unique_labels([parse_run_spec(t) for t in specs])
        except ValueError as exc:
            self.show_spec_error(str(exc))
            return None
        self.show_spec_error("")
        self.compareRequested.emit(specs)
        return specs

    def show_spec_error(self, text: str) -> None:
        """A one-line problem with the run specs under the field ('' hides it)."""
        self.spec_error.setText(text)
        self.spec_error.setVisible(bool(text))

    def spec_error_text(self) -> str:
        return self.spec_error.text() if not self.spec_error.isHidden() else ""

    def update_snapshot(self, snapshot) -> None:
        """A CompareSnapshot, or an ordinary Snapshot (drawn as a one-run comparison until the first
        CompareSnapshot arrives; ignored after that until clear())."""
        if snapshot is not None and not hasattr(snapshot, "runs"):
            if self._got_compare:
                return
            from explorer.schema.compare import comparison_from_snapshot

            snapshot = comparison_from_snapshot(snapshot)
        elif snapshot is not None:
            self._got_compare = True
        super().update_snapshot(snapshot)

    def clear(self) -> None:
        self._got_compare = False
        super().clear()

    def comparison(self):
        """The comparison drawn (or to be drawn when shown)."""
        return self._snapshot

    def labels(self) -> list[str]:
        return list(self._train_items)

    def curve_count(self) -> int:
        """Training-loss curves with data (one per run)."""
        return sum(
            1
            for item in self._train_items.values()
            if item.getOriginalDataset()[0] is not None and len(item.getOriginalDataset()[0])
        )

    def curve_colour(self, label: str) -> str:
        return self._train_items[label].opts["pen"].color().name()

    def table_rows(self) -> int:
        return self.table.rowCount()

    def table_text(self, row: int, column: int | str) -> str:
        col = TABLE_HEADERS.index(column) if isinstance(column, str) else column
        item = self.table.item(row, col)
        return "" if item is None else item.text()

    def pair(self) -> tuple[str, str]:
        return self._pair

    def set_pair(self, a: str, b: str) -> bool:
        """Show φ for these two LoRA runs (rows: a); False if either is not a LoRA run of the comparison."""
        labels = [self.run_a_box.itemText(i) for i in range(self.run_a_box.count())]
        if a not in labels or b not in labels:
            return False
        with QtCore.QSignalBlocker(self.run_a_box), QtCore.QSignalBlocker(self.run_b_box):
            self.run_a_box.setCurrentText(a)
            self.run_b_box.setCurrentText(b)
        self._pair_picked()
        return True

    def module(self) -> str:
        return self._module

    def modules(self) -> list[str]:
        return [self.module_box.itemData(i) for i in range(self.module_box.count())]

    def set_module(self, name: str) -> bool:
        """Analyse this matrix (full name, e.g. 'model.layers.1.self_attn.v_proj'); False if unknown."""
        i = self.module_box.findData(name)
        if i < 0:
            return False
        self.module_box.setCurrentIndex(i)
        return True

    def tab(self) -> str:
        return TABS[self.tabs.currentIndex()]

    def set_tab(self, name: str) -> None:
        """'similarity', 'amplification' or 'intrinsic'."""
        if name not in TABS:
            raise ValueError(f"tab={name!r} is unknown: allowed {', '.join(TABS)}")
        self.tabs.setCurrentIndex(TABS.index(name))

    def phi(self) -> np.ndarray | None:
        """The φ matrix drawn now (rows: run a's i, columns: run b's j), or None."""
        return self._phi

    def show_eval(self) -> bool:
        return self._show_eval

    def set_show_eval(self, on: bool) -> None:
        on = bool(on)
        if self.eval_box.isChecked() != on:
            self.eval_box.setChecked(on)  # comes back here through toggled
            return
        self._show_eval = on
        for item in self._eval_items.values():
            item.setVisible(on)

    def set_log_y(self, on: bool) -> None:
        if self.log_box.isChecked() != bool(on):
            self.log_box.setChecked(bool(on))
            return
        self.plot.setLogMode(x=False, y=bool(on))

    def set_smoothing(self, weight: float) -> None:
        """EMA weight for the training curves, 0 (raw) to 0.99 (TensorBoard's default 0.6)."""
        self._smoothing = float(min(max(weight, 0.0), 0.99))
        self._key = None
        self.refresh()

    def export_item(self):
        return self

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snap) -> None:
        key = (
            snap.segment,
            snap.step,
            snap.state,
            tuple((r.label, r.step, r.eval_steps.size, r.fault) for r in snap.runs),
            id(snap.analysis),
        )
        if key == self._key:
            return
        self._key = key
        self._draw_status(snap)
        self._draw_curves(snap)
        self._draw_table(snap)
        self._fill_pickers(snap)
        self._draw_analysis()
        self.draw_count += 1

    def _draw_status(self, snap) -> None:
        n = len(snap.runs)
        parts = [f"<b>{n}</b> run{'s' if n != 1 else ''}", f"step <b>{snap.step:,}</b>", snap.scenario]
        if snap.device:
            parts.append(snap.device)
        if snap.state == "fault" and snap.fault:
            parts.append(f"<span style='color:#D55E00'>{snap.fault}</span>")
        elif snap.state:
            parts.append(snap.state)
        stopped = [r.label for r in snap.runs if r.fault]
        if stopped:
            parts.append(f"<span style='color:#D55E00'>stopped: {', '.join(stopped)}</span>")
        self.status.setText(" · ".join(parts))
        self.status.setToolTip("\n".join(f"{r.label}: {r.fault}" for r in snap.runs if r.fault))

    def _sync_items(self, labels: list[str]) -> None:
        if list(self._train_items) == labels:
            return
        for item in list(self._train_items.values()) + list(self._eval_items.values()):
            self.plot.removeItem(item)
        self.legend.clear()
        self._train_items, self._eval_items = {}, {}
        opts = dict(clipToView=True, autoDownsample=True, downsampleMethod="peak")
        for i, label in enumerate(labels):
            train = pg.PlotDataItem(pen=run_pen(i), **opts)
            held = pg.PlotDataItem(
                pen=run_pen(i, dashed=True, alpha=200),
                symbol="o",
                symbolSize=4,
                symbolPen=None,
                symbolBrush=QtGui.QColor(run_colour(i)),
                **opts,
            )
            held.setVisible(self._show_eval)
            self.plot.addItem(held)
            self.plot.addItem(train)
            self.legend.addItem(train, label)
            self._train_items[label], self._eval_items[label] = train, held
        style_legend(self.legend, self.style_)

    def _draw_curves(self, snap) -> None:
        labels = [r.label for r in snap.runs]
        if labels != list(self._train_items) and self._got_compare and snap.runs and not self.specs_edit.hasFocus():
            self.specs_edit.setText("  ".join(r.spec for r in snap.runs))  # what runs now
        self._sync_items(labels)
        any_data = False
        for r in snap.runs:
            train, held = self._train_items[r.label], self._eval_items[r.label]
            colour = r.colour
            if train.opts["pen"].color().name().upper() != run_colour(colour).upper():
                train.setPen(run_pen(colour))
                held.setPen(run_pen(colour, dashed=True, alpha=200))
                held.setSymbolBrush(QtGui.QColor(run_colour(colour)))
            n = min(r.steps.size, r.losses.size)
            if n:
                x = r.steps[:n].astype(np.float64)
                train.setData(x, ema_debiased(r.losses[:n], self._smoothing))
                any_data = True
            else:
                train.setData([], [])
            m = min(r.eval_steps.size, r.eval_losses.size)
            if m:
                held.setData(r.eval_steps[:m].astype(np.float64), r.eval_losses[:m].astype(np.float64))
                any_data = True
            else:
                held.setData([], [])
        self.empty_text.setText("no runs yet" if not snap.runs else "waiting for the first step")
        self.empty_text.setVisible(not any_data)

    def _draw_table(self, snap) -> None:
        t = self.table
        if t.rowCount() != len(snap.runs):
            t.setRowCount(len(snap.runs))
            self._fit_table()
        for row, r in enumerate(snap.runs):
            values = (
                r.label,
                r.method,
                format_count(r.trainable_params),
                f"{100 * r.share:.3g}%",
                format_bytes(r.storage_bytes),
                _fmt(r.final_loss),
                _fmt(r.final_eval_loss),
                f"{r.steps_per_second:.1f}" if r.steps_per_second else "–",
                format_short(r.llama7b_trainable_params) if r.llama7b_trainable_params is not None else "–",
                format_bytes(r.llama7b_storage_bytes) if r.llama7b_storage_bytes is not None else "–",
            )
            for col, text in enumerate(values):
                item = t.item(row, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    if col >= 2:
                        item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
                    t.setItem(row, col, item)
                if item.text() != text:
                    item.setText(text)
            first = t.item(row, 0)
            icon_key = (r.colour, bool(r.fault))
            if first.data(QtCore.Qt.ItemDataRole.UserRole) != icon_key:
                first.setData(QtCore.Qt.ItemDataRole.UserRole, icon_key)
                pix = QtGui.QPixmap(12, 12)
                pix.fill(QtGui.QColor(run_colour(r.colour)))
                first.setIcon(QtGui.QIcon(pix))
                first.setToolTip(f"{r.spec}" + (f"\nstopped: {r.fault}" if r.fault else ""))
                font = first.font()
                font.setStrikeOut(bool(r.fault))
                first.setFont(font)

    def _fit_table(self) -> None:
        """Tall enough for every run (up to 8 rows; more scroll), so the table never hides a run."""
        t = self.table
        t.resizeRowsToContents()
        rows = min(t.rowCount(), 8)
        h = t.horizontalHeader().sizeHint().height() + 2 * t.frameWidth()
        h += sum(t.rowHeight(i) for i in range(rows)) if rows else t.verticalHeader().defaultSectionSize()
        h += t.horizontalScrollBar().sizeHint().height()
        t.setMinimumHeight(h)

    # ---- the analyses ------------------------------------------------------------------------------
    def _fill_pickers(self, snap) -> None:
        a = snap.analysis
        lora = [r.label for r in snap.runs if r.method in ("lora", "lora+prefix")]
        modules: list[str] = []
        if a is not None:
            modules = list(a.modules)
            for per in list(a.intrinsic.values()) + [rows for rows in a.similarity.values()]:
                for m in per:
                    if m not in modules:
                        modules.append(m)
            for rows in a.amplification.values():
                for row in rows:
                    if row["module"] not in modules:
                        modules.append(row["module"])
        if modules != self.modules():
            with QtCore.QSignalBlocker(self.module_box):
                self.module_box.clear()
                for m in modules:
                    self.module_box.addItem(short_module(m), m)
                keep = self._module if self._module in modules else (modules[0] if modules else "")
                if keep:
                    self.module_box.setCurrentIndex(self.module_box.findData(keep))
            if keep != self._module:
                self._module = keep
                self.moduleChanged.emit(keep)
        current = [self.run_a_box.itemText(i) for i in range(self.run_a_box.count())]
        if current != lora:
            a0, b0 = self._pair
            with QtCore.QSignalBlocker(self.run_a_box), QtCore.QSignalBlocker(self.run_b_box):
                self.run_a_box.clear()
                self.run_b_box.clear()
                self.run_a_box.addItems(lora)
                self.run_b_box.addItems(lora)
                if a0 in lora and b0 in lora and (a0 != b0 or len(lora) < 2):  # a pair, not one run twice
                    na, nb = a0, b0
                elif len(lora) >= 2:
                    na, nb = lora[0], lora[1]
                else:
                    na = nb = lora[0] if lora else ""
                if na:
                    self.run_a_box.setCurrentText(na)
                    self.run_b_box.setCurrentText(nb)
            new_pair = (na, nb) if lora else ("", "")
            if new_pair != self._pair:
                self._pair = new_pair
                self.pairChanged.emit(*new_pair)

    def _module_picked(self, _index: int = 0) -> None:
        name = self.module_box.currentData() or ""
        if name != self._module:
            self._module = name
            self.moduleChanged.emit(name)
            self._draw_analysis(force=True)

    def _pair_picked(self, _index: int = 0) -> None:
        pair = (self.run_a_box.currentText(), self.run_b_box.currentText())
        if pair != self._pair:
            self._pair = pair
            self.pairChanged.emit(*pair)
            self._draw_analysis(force=True)

    def _draw_analysis(self, force: bool = False) -> None:
        snap = self._snapshot
        a = None if snap is None else snap.analysis
        key = (id(a), self._module, self._pair, self.tabs.currentIndex(), self.style_.high_contrast, self.style_.dark)
        if key == self._analysis_key and not force:
            return
        self._analysis_key = key
        tab = self.tab()
        pair_widgets = (self.pair_label, self.run_a_box, self.vs_label, self.run_b_box)
        for w in pair_widgets:
            w.setVisible(tab == "similarity")
        if tab == "similarity":
            self._draw_similarity(a)
        elif tab == "amplification":
            self._draw_amplification(snap, a)
        else:
            self._draw_intrinsic(snap, a)

    def _draw_similarity(self, a) -> None:
        ra, rb = self._pair
        module = self._module
        phi = control = None
        control_of = ra
        if a is not None and ra and rb and ra != rb:
            phi = a.phi(ra, rb, module)
            if phi is not None:
                if (ra, rb) in a.control:
                    control = a.control[(ra, rb)].get(module)
                elif (rb, ra) in a.control:  # computed for the stored pair's first run
                    control, control_of = a.control[(rb, ra)].get(module), rb
        self._phi = phi
        cmap = colormaps.sequential_for(self.style_.high_contrast)
        for img, data, plot, title in (
            (self.phi_image, phi, self.phi_plot, f"{ra} vs {rb}"),
            (self.control_image, control, self.control_plot, f"{control_of} vs random"),
        ):
            img.setLookupTable(colormaps.lut(cmap))
            if data is None or data.size == 0:
                img.clear()
                plot.setTitle("")
                continue
            d = np.ascontiguousarray(data, np.float32)
            img.setImage(d, levels=(0.0, 1.0), autoLevels=False)
            img.setRect(QtCore.QRectF(0.5, 0.5, d.shape[1], d.shape[0]))
            plot.setTitle(title)
            plot.setLabel("bottom", "j")
            for axis, n in (("bottom", d.shape[1]), ("left", d.shape[0])):
                step = max(1, math.ceil(n / 8))
                plot.getAxis(axis).setTicks([[(v, str(v)) for v in range(1, n + 1, step)], []])
            plot.setRange(xRange=(0.5, d.shape[1] + 0.5), yRange=(0.5, d.shape[0] + 0.5), padding=0)
        self.phi_bar.setColorMap(colormaps.colormap(cmap))
        style_plot(self.phi_plot, self.style_)
        style_plot(self.control_plot, self.style_)
        if a is None:
            text = "The analyses appear once the runs have trained (they are computed every few seconds)."
        elif self.run_a_box.count() < 2 and not a.pairs:
            text = "φ needs two LoRA runs (e.g. lora:r=8 and lora:r=64, or two seeds: lora:r=8,seed=1)."
        elif phi is None:
            text = "Pick two different LoRA runs that share this module."
        else:
            k = min(phi.shape)
            diag = np.diagonal(phi)
            text = f"φ(1,1) = <b>{phi[0, 0]:.3f}</b>, mean φ(i,i) for i ≤ {k} = <b>{diag.mean():.3f}</b>"
            if control is not None:
                text += (
                    f"; {control_of} against a random basis: φ(1,1) = {control[0, 0]:.3f}, mean φ(i,i) = "
                    f"{np.diagonal(control).mean():.3f}"
                )
            text += f" · {short_module(module)} · step {a.step:,}"
        self.phi_caption.setText(text)

    def _draw_amplification(self, snap, a) -> None:
        for bar in self._amp_bars:
            self.amp_plot.removeItem(bar)
        self._amp_bars = []
        rows = [] if a is None else [(label, row) for label, rs in a.amplification.items() for row in rs]
        t = self.amp_table
        t.setRowCount(len(rows))
        index = {r.label: r.colour for r in snap.runs} if snap is not None else {}
        for i, (label, row) in enumerate(rows):
            residual = row.get("w0") == "residual"
            values = (
                label + (" (W₀ = PiSSA residual)" if residual else ""),
                short_module(row["module"]),
                str(row["rank"]),
                _fmt(row["delta_fro"]),
                _fmt(row["proj_delta"]),
                _fmt(row["proj_w0_top"]),
                _fmt(row["proj_random"]),
                _fmt(row["factor"], 3),
            )
            for col, text in enumerate(values):
                item = t.item(i, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    t.setItem(i, col, item)
                item.setText(text)
            t.item(i, 1).setToolTip(row["module"])
            t.item(i, 0).setToolTip(
                "PiSSA: W₀ is the residual W − s·B₀A₀ (W's top-r directions moved into the adapter), so this "
                "factor is not the LoRA paper's Table 7 figure"
                if residual
                else ""
            )
            t.item(i, 2).setToolTip(f"rank(ΔW) = {row['rank']} of the adapter's r = {row.get('adapter_rank', '?')}")
            bold = row["module"] == self._module
            for col in range(len(values)):
                f = t.item(i, col).font()
                f.setBold(bold)
                t.item(i, col).setFont(f)
        if not rows:
            return
        labels = list(a.amplification)
        modules = []
        for _, row in rows:
            if row["module"] not in modules:
                modules.append(row["module"])
        width = 0.8 / max(1, len(labels))
        for k, label in enumerate(labels):
            by_module = {row["module"]: row["factor"] for row in a.amplification[label]}
            xs = [i - 0.4 + width * (k + 0.5) for i, m in enumerate(modules) if m in by_module]
            ys = [by_module[m] if math.isfinite(by_module[m]) else 0.0 for m in modules if m in by_module]
            bar = pg.BarGraphItem(
                x=xs,
                height=ys,
                width=width * 0.9,
                brush=QtGui.QColor(run_colour(index.get(label, k))),
                pen=pg.mkPen(None),
            )
            self.amp_plot.addItem(bar)
            self._amp_bars.append(bar)
        ticks = [(i, short_module(m).replace("layer ", "L").replace(" · ", " ")) for i, m in enumerate(modules)]
        self.amp_plot.getAxis("bottom").setTicks([ticks])
        self.amp_plot.setXRange(-0.6, len(modules) - 0.4, padding=0)
        self.amp_plot.enableAutoRange(axis="y")

    def _draw_intrinsic(self, snap, a) -> None:
        for item in self._intr_items:
            self.intr_plot.removeItem(item)
        self._intr_items = []
        self.intr_legend.clear()
        module = self._module
        entries = [] if a is None else [(lo, fu, per[module]) for (lo, fu), per in a.intrinsic.items() if module in per]
        if not entries:
            if a is None:
                self.intr_caption.setText("The analyses appear once the runs have trained.")
            else:
                self.intr_caption.setText(
                    "Add a full fine-tuning run (--runs full) to compare LoRA's ΔW spectrum "
                    "with the full update's on the same module."
                )
            return
        index = {r.label: r.colour for r in snap.runs} if snap is not None else {}
        fu = entries[0][1]
        full = np.asarray(entries[0][2]["full_values"], np.float64)
        floor = 1e-12
        x = np.arange(1, full.size + 1, dtype=np.float64)
        grey = self.style_.muted
        full_item = pg.PlotDataItem(
            x,
            np.maximum(full, floor),
            pen=pg.mkPen(grey, width=1),
            symbol="o",
            symbolSize=3,
            symbolPen=None,
            symbolBrush=QtGui.QColor(grey),
        )
        self.intr_plot.addItem(full_item)
        self._intr_items.append(full_item)
        self.intr_legend.addItem(full_item, f"{fu}: ΔW = W − W₀")
        lines = [f"{fu}: {entries[0][2]['full_method']}; LoRA: {entries[0][2]['lora_method']}"]
        for lo, _fu, d in entries:
            if _fu != fu:
                continue
            v = np.asarray(d["lora_values"], np.float64)
            c = index.get(lo, 0)
            item = pg.PlotDataItem(
                np.arange(1, v.size + 1, dtype=np.float64),
                np.maximum(v, floor),
                pen=run_pen(c),
                symbol="s",
                symbolSize=5,
                symbolPen=None,
                symbolBrush=QtGui.QColor(run_colour(c)),
            )
            self.intr_plot.addItem(item)
            self._intr_items.append(item)
            self.intr_legend.addItem(item, lo)
            lines.append(
                f"<b>{lo}</b> (r={d['rank']}): the full update keeps {100 * d['full_energy_top_r']:.1f}% of its "
                f"energy in its top {d['rank']}; effective rank full {d['full_effective_rank']:.1f}, "
                f"LoRA {d['lora_effective_rank']:.2f}; overlap of the top-{d['rank']} subspaces "
                f"{d['overlap_left']:.2f} (out) / {d['overlap_right']:.2f} (in)"
            )
        style_legend(self.intr_legend, self.style_)
        self.intr_caption.setText("<br>".join(lines))

    # ---- base hooks --------------------------------------------------------------------------------
    def _clear(self) -> None:
        self._key = None
        self._analysis_key = None
        self._phi = None
        for item in list(self._train_items.values()) + list(self._eval_items.values()):
            item.setData([], [])
        self.table.setRowCount(0)
        self.amp_table.setRowCount(0)
        for img in (self.phi_image, self.control_image):
            img.clear()
        self.empty_text.setVisible(True)
        self.status.setText("")

    def _apply_style(self) -> None:
        s = self.style_
        for glw in (self.glw, self.phi_glw, self.amp_glw, self.intr_glw):
            glw.setBackground(s.background)
        for p in (self.plot, self.phi_plot, self.control_plot, self.amp_plot, self.intr_plot):
            style_plot(p, s)
        style_colorbar(self.phi_bar, s)
        style_legend(self.legend, s)
        style_legend(self.intr_legend, s)
        self.empty_text.setColor(s.muted)
        self.empty_text.setFont(s.font(11))
        for w in (self.table, self.amp_table):
            w.setFont(s.font(9))
            w.horizontalHeader().setFont(s.font(9))
            w.resizeRowsToContents()
        self._fit_table()
        self._key = None
        self._analysis_key = None
