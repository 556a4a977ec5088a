"""File > Open PEFT adapter: look inside any LoRA or AdaptionPrompt adapter directory.

    open_adapter(window, path=None)     # a directory chooser when path is None

opens (or reuses) the window's inspector: a header (peft_type, r / alpha / scaling, rsLoRA, DoRA,
targets, parameters, file size), a layer x module grid of ||ΔW||_F (click a cell to select that
module), a table of every module (shape, rank, alpha, scaling, norm, σ₁, effective and stable rank,
energy of the top k, DoRA magnitude, amplification with a base model), and the selected module's ΔW
heatmap and spectrum drawn by the SAME DeltaView and SpectrumView as live training (a Snapshot
holding that module's MatrixSnapshot, ΔW pooled from the factors). AdaptionPrompt adapters show
their prompt length, layers, gates and prompt norms instead. "Compare with base model…" (an HF
Llama directory) adds the LoRA paper's amplification factor per module and W₀ in the heatmap.

Reading and analysing run on a helper thread (a 7B-sized adapter takes a second or two) with a
progress bar; the result comes back through a queued signal. A bad directory (missing files,
invalid JSON, a pickle, a truncated safetensors, NaN, ...) shows a message with the reader's one
line; the previous inspection stays and the app keeps running.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui import colormaps
from explorer.gui.views.base import (
    MODULE_ORDER,
    Style,
    format_bytes,
    format_count,
    new_layout_widget,
    set_colorbar_levels,
    style_colorbar,
    style_plot,
)
from explorer.gui.views.delta_view import DeltaView
from explorer.gui.views.spectrum_view import SpectrumView

ENERGY_KS = (1, 2, 4, 8, 16)
GRID_TEXT_MAX_CELLS = 160  # write the norm into each cell of grids up to this size


# --------------------------------------------------------------------------------- entry point
def open_adapter(window, path=None):
    """File > Open PEFT adapter. Returns the inspector (or None when the chooser was cancelled)."""
    if path is None:
        start = str(getattr(window, "_last_adapter_dir", "") or Path.home())
        path = QtWidgets.QFileDialog.getExistingDirectory(
            window, "Open PEFT adapter (a directory with adapter_config.json)", start
        )
        if not path:
            return None
    inspector = inspector_of(window, create=True)
    inspector._sync_theme()
    inspector.show()
    inspector.raise_()
    inspector.activateWindow()
    inspector.load(path)
    try:
        window._last_adapter_dir = str(Path(path).parent)
    except (TypeError, ValueError):
        pass
    return inspector


def inspector_of(window, create: bool = False):
    """The inspector window that belongs to `window` (made on first use when `create`)."""
    inspector = getattr(window, "adapter_inspector", None)
    if inspector is not None:
        try:
            inspector.objectName()  # raises once Qt deleted it
        except RuntimeError:
            inspector = None
    if inspector is None and create:
        inspector = AdapterInspector(window)
        window.adapter_inspector = inspector
    return inspector


# --------------------------------------------------------------------------------- background work
class _Job(QtCore.QObject):
    """Runs `fn(progress)` on a helper thread; its signals arrive queued on the GUI thread."""

    progress = QtCore.Signal(int, int, int)  # generation, done, total
    done = QtCore.Signal(int, object)  # generation, result
    failed = QtCore.Signal(int, str)  # generation, one line

    def __init__(self, generation: int, fn, label: str):
        super().__init__()
        self.generation = generation
        self._fn = fn
        self._label = label
        self.thread = threading.Thread(target=self._run, name="explorer-inspect-adapter", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        g = self.generation
        try:
            result = self._fn(lambda done, total: self.progress.emit(g, int(done), int(total)))
        except (ValueError, OSError) as exc:  # the reader's one-line messages
            self.failed.emit(g, _one_line(str(exc)) or f"{self._label}: {type(exc).__name__}")
        except MemoryError:
            self.failed.emit(g, f"{self._label}: not enough memory to analyse this adapter")
        except Exception as exc:  # noqa: BLE001 - anything else: say so, the app lives on
            self.failed.emit(g, f"{self._label}: {type(exc).__name__}: {_one_line(str(exc))}")
        else:
            self.done.emit(g, result)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------- table items
class _Item(QtWidgets.QTableWidgetItem):
    """A cell that sorts by a number (or a string) while showing formatted text."""

    def __init__(self, text: str, key=None, tip: str = ""):
        super().__init__(text)
        self._key = key if key is not None else text
        self.setFlags(Qt.ItemIsSelectable | Qt.ItemIsEnabled)
        if tip:
            self.setToolTip(tip)
        if isinstance(key, (int, float)):
            self.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)

    def __lt__(self, other):  # noqa: D105
        a, b = self._key, getattr(other, "_key", other.text())
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if v != v:
        return "–"
    if v in (float("inf"), float("-inf")):
        return "∞" if v > 0 else "-∞"
    return f"{v:.{digits}g}"


def _sort_key(v):
    """Numbers for sorting; missing / NaN values sort first."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return float("-inf")
    return v if v == v else float("-inf")


# --------------------------------------------------------------------------------- the norm grid
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
        self.colorbar = pg.ColorBarItem(
            values=(0.0, 1.0),
            colorMap=colormaps.colormap(colormaps.SEQUENTIAL),
            interactive=False,
            width=14,
            colorMapMenu=False,
        )
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


# --------------------------------------------------------------------------------- views as used here
class _InspectorDeltaView(DeltaView):
    """DeltaView drawing one module of an adapter file: no matrix picker (the grid and the table
    pick), and a caption without a training step."""

    def _caption(self, snapshot, m, mode, data, level):
        out_f, in_f = (int(m.shape[0]), int(m.shape[1])) if len(m.shape) == 2 else data.shape
        from explorer.gui.views.delta_view import MODE_LABELS

        dora = getattr(m, "effective_update", None) is not None
        label = "W_eff (DoRA: what a merge writes)" if dora and mode == "merged" else MODE_LABELS[mode]
        parts = [f"<b>{label}</b> of {html.escape(m.name)}", f"{out_f}×{in_f}", f"‖ΔW‖<sub>F</sub> = {m.fro_norm:.4g}"]
        if dora:
            parts.append(f"‖W_eff − W₀‖<sub>F</sub> = {m.effective_update_fro_norm:.4g}")
        parts.append(f"colours ±{level:.3g}")
        if data.shape != (out_f, in_f):
            parts.append(f"mean-pooled to {data.shape[0]}×{data.shape[1]} from the factors")
        if mode in ("base", "merged") and not getattr(snapshot, "has_base", False):
            parts.append("no base model: W₀ shown as 0 (Compare with base model… loads it)")
        if mode == "delta" and m.fro_norm == 0.0:
            parts.append("ΔW is exactly 0 (B is zero: an untrained adapter)")
        return " · ".join(parts)


class _InspectorSpectrumView(SpectrumView):
    """SpectrumView for one module of an adapter file: no picker, no waterfall (a file has one step)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.glw.ci.layout.removeItem(self.waterfall_plot)
        self.waterfall_plot.hide()
        self.glw.ci.layout.setRowStretchFactor(1, 0)
        self.plot.getAxis("bottom").setStyle(showValues=True)
        self.plot.setLabel("bottom", "index i")

    def _draw_spectrum(self, snapshot, m):
        super()._draw_spectrum(snapshot, m)
        if self.rank_line.isVisible():
            # pyqtgraph's InfLineLabel skips updates while hidden, and the base view shows the
            # line after setting its text: refresh it, or the first module reads "r" alone
            self.rank_line.label.valueChanged()
        self.caption.setText(
            f"{m.name} · {m.shape[0]}×{m.shape[1]} · ‖ΔW‖F = {m.fro_norm:.4g} · "
            "spectrum: exact, from the QR of B and A (no dense ΔW)"
        )

    def _draw_waterfall(self, snapshot, name):
        pass


# --------------------------------------------------------------------------------- prompts page
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
        self.norm_bar = pg.ColorBarItem(
            values=(0.0, 1.0),
            colorMap=colormaps.colormap(colormaps.SEQUENTIAL),
            interactive=False,
            width=14,
            colorMapMenu=False,
        )
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
                    (_fmt(p.gate), p.gate),
                    (_fmt(p.prompt_norm), p.prompt_norm),
                    (_fmt(lo), lo),
                    (_fmt(hi), hi),
                ]
            ):
                self.table.setItem(row, col, _Item(text, key))
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


# --------------------------------------------------------------------------------- the window
class AdapterInspector(QtWidgets.QMainWindow):
    """What is inside a PEFT adapter directory. One per main window, reused for each adapter."""

    loaded = QtCore.Signal(object)  # the AdapterReport now shown
    failed = QtCore.Signal(str)  # the one-line reason an adapter (or a base) was refused
    busyChanged = QtCore.Signal(bool)
    moduleSelected = QtCore.Signal(str)

    COLUMNS = (
        "module",
        "shape",
        "r",
        "α",
        "scaling",
        "‖ΔW‖F",
        "σ₁",
        "eff. rank",
        "st. rank",
        "top-k energy",
        "DoRA ‖m‖ mean",
        "amplification",
    )
    COLUMN_TIPS = {
        "r": "rank r of this module (rank_pattern honoured)",
        "α": "lora_alpha of this module (alpha_pattern honoured)",
        "scaling": "α/r, or α/√r with rsLoRA",
        "‖ΔW‖F": "Frobenius norm of ΔW = scaling·B·A",
        "σ₁": "largest singular value of ΔW (its spectral norm)",
        "eff. rank": "effective rank exp(H(σ/Σσ)) (Roy & Vetterli)",
        "st. rank": "stable rank Σσᵢ² / σ₁²",
        "top-k energy": "share of ‖ΔW‖F² in the top k singular values (pick k above the table)",
        "DoRA ‖m‖ mean": "DoRA: mean of the magnitude vector m (min..max in the tooltip)",
        "amplification": "‖ΔW‖F / ‖Uᵀ W₀ V‖F over ΔW's own singular directions, the rank(ΔW) ≤ r with σ > 0 "
        "(LoRA paper, section 7); "
        "needs the base model",
    }

    def __init__(self, main_window=None):
        super().__init__(main_window, Qt.Window)
        self.setObjectName("adapter_inspector")
        self.setWindowTitle("PEFT adapter inspector")
        self.setAttribute(Qt.WA_DeleteOnClose, False)
        self.main_window = main_window
        self.report = None
        self.error_box: QtWidgets.QMessageBox | None = None
        self.last_error: str = ""
        self._generation = 0
        self._jobs: dict[int, _Job] = {}
        self._busy_label = ""
        self._selected: str | None = None
        self._matrix_cache: dict[str, object] = {}
        self._selection_count = 0
        self._dark = getattr(main_window, "theme", "dark") != "light"
        self._build()
        self._apply_theme()
        self.resize(1440, 900)
        self.lora_page.setSizes([800, 640])

    # ---- construction
    def _build(self) -> None:
        central = QtWidgets.QWidget(self)
        outer = QtWidgets.QVBoxLayout(central)
        outer.setContentsMargins(8, 6, 8, 6)
        outer.setSpacing(6)

        top = QtWidgets.QHBoxLayout()
        self.header = QtWidgets.QLabel(central)
        self.header.setObjectName("inspector_header")
        self.header.setTextFormat(Qt.RichText)
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.header.setText("Open a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).")
        self.header.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Preferred)
        top.addWidget(self.header, 1)
        buttons = QtWidgets.QVBoxLayout()
        self.open_button = QtWidgets.QPushButton("Open adapter…", central)
        self.open_button.setToolTip("Inspect another PEFT adapter directory")
        self.open_button.clicked.connect(lambda: self.choose_and_load())
        self.base_button = QtWidgets.QPushButton("Compare with base model…", central)
        self.base_button.setToolTip(
            "An HF Llama directory (config.json + model.safetensors): adds the "
            "amplification factor of each module and W₀ to the heatmap"
        )
        self.base_button.clicked.connect(lambda: self.choose_base())
        self.base_button.setEnabled(False)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.base_button)
        buttons.addStretch(1)
        top.addLayout(buttons)
        outer.addLayout(top)

        status_row = QtWidgets.QHBoxLayout()
        self.progress = QtWidgets.QProgressBar(central)
        self.progress.setObjectName("inspector_progress")
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status = QtWidgets.QLabel(central)
        self.status.setObjectName("inspector_status")
        self.status.setProperty("role", "dim")
        status_row.addWidget(self.progress)
        status_row.addWidget(self.status, 1)
        outer.addLayout(status_row)

        self.pages = QtWidgets.QStackedWidget(central)
        # LoRA page: grid + table on the left, ΔW heatmap + spectrum on the right
        lora = QtWidgets.QSplitter(Qt.Horizontal)
        left = QtWidgets.QSplitter(Qt.Vertical)
        grid_box = QtWidgets.QWidget()
        gl = QtWidgets.QVBoxLayout(grid_box)
        gl.setContentsMargins(0, 0, 0, 0)
        gl.setSpacing(2)
        self.grid_title = QtWidgets.QLabel("<b>‖ΔW‖<sub>F</sub> by layer and module</b> · click a cell")
        self.grid_title.setTextFormat(Qt.RichText)
        gl.addWidget(self.grid_title)
        self.grid = NormGridView(grid_box)
        self.grid.moduleClicked.connect(self.select_module)
        gl.addWidget(self.grid, 1)
        left.addWidget(grid_box)

        table_box = QtWidgets.QWidget()
        tl = QtWidgets.QVBoxLayout(table_box)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(2)
        row = QtWidgets.QHBoxLayout()
        self.table_title = QtWidgets.QLabel("<b>Modules</b>")
        self.table_title.setTextFormat(Qt.RichText)
        row.addWidget(self.table_title)
        row.addStretch(1)
        row.addWidget(QtWidgets.QLabel("energy of the top k, k ="))
        self.k_box = QtWidgets.QComboBox()
        for k in ENERGY_KS:
            self.k_box.addItem(str(k), k)
        self.k_box.setCurrentIndex(0)
        self.k_box.setToolTip("k for the top-k energy column: Σᵢ≤ₖ σᵢ² / Σ σᵢ²")
        self.k_box.currentIndexChanged.connect(lambda _i: self._fill_energy())
        row.addWidget(self.k_box)
        tl.addLayout(row)
        self.table = QtWidgets.QTableWidget(0, len(self.COLUMNS))
        self.table.setObjectName("module_table")
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        for col, name in enumerate(self.COLUMNS):
            tip = self.COLUMN_TIPS.get(name)
            if tip:
                self.table.horizontalHeaderItem(col).setToolTip(tip)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.ElideLeft)  # long module paths keep their end
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.Interactive)
        header.setStretchLastSection(False)
        header.setSortIndicator(0, Qt.AscendingOrder)
        self.table.itemSelectionChanged.connect(self._table_selection_changed)
        tl.addWidget(self.table, 1)
        left.addWidget(table_box)
        left.setStretchFactor(0, 2)
        left.setStretchFactor(1, 3)

        right = QtWidgets.QSplitter(Qt.Vertical)
        self.delta_view = _InspectorDeltaView()
        self.delta_view.picker.hide()
        self.spectrum_view = _InspectorSpectrumView()
        self.spectrum_view.picker.hide()
        right.addWidget(self.delta_view)
        right.addWidget(self.spectrum_view)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        lora.addWidget(left)
        lora.addWidget(right)
        lora.setStretchFactor(0, 5)
        lora.setStretchFactor(1, 4)
        self.lora_page = lora
        self.lora_splitters = (lora, left, right)
        self.pages.addWidget(lora)
        self.prompt_panel = PromptPanel()
        self.pages.addWidget(self.prompt_panel)
        outer.addWidget(self.pages, 1)
        self.setCentralWidget(central)

    # ---- theme
    def _apply_theme(self) -> None:
        for v in (self.delta_view, self.spectrum_view, self.grid, self.prompt_panel):
            v.set_theme(self._dark)

    def set_theme(self, dark: bool) -> None:
        self._dark = bool(dark)
        self._apply_theme()

    def _sync_theme(self) -> None:
        """Follow the main window's theme (it may have changed since the last time)."""
        dark = getattr(self.main_window, "theme", "dark") != "light"
        if dark != self._dark:
            self.set_theme(dark)

    def showEvent(self, event):  # noqa: N802 - Qt API
        self._sync_theme()
        super().showEvent(event)

    # ---- loading
    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def choose_and_load(self) -> None:
        start = str(Path(self.report.path).parent) if self.report is not None else str(Path.home())
        path = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Open PEFT adapter (a directory with adapter_config.json)", start
        )
        if path:
            self.load(path)

    def choose_base(self) -> None:
        if self.report is None:
            return
        start = self.report.base or str(Path(self.report.path).parent)
        path = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Base model for amplification (an HF Llama directory)", start
        )
        if path:
            self.compare_with_base(path)

    def load(self, path, base=None) -> int:
        """Read and analyse an adapter directory on a helper thread; `loaded` or `failed` follows.
        Returns the job's number. A newer load supersedes an older one still running."""
        from_path = str(path)
        label = from_path

        def work(progress):
            from explorer.core.inspect_adapter import inspect_adapter

            return inspect_adapter(from_path, base=base, progress=progress)

        return self._start(work, label, f"Reading {from_path}…")

    def compare_with_base(self, base_dir) -> int | None:
        """Re-analyse the adapter shown now against an HF Llama base (amplification, W₀)."""
        if self.report is None:
            return None
        adapter = self.report.adapter
        source = adapter if adapter is not None else self.report.path
        base_dir = str(base_dir)

        def work(progress):
            from explorer.core.inspect_adapter import inspect_adapter

            return inspect_adapter(source, base=base_dir, progress=progress)

        return self._start(work, base_dir, f"Comparing with the base model {base_dir}…")

    def _start(self, fn, label: str, text: str) -> int:
        self._generation += 1
        g = self._generation
        job = _Job(g, fn, label)
        job.progress.connect(self._on_progress)
        job.done.connect(self._on_done)
        job.failed.connect(self._on_failed)
        self._jobs = {g: job}  # older jobs finish unheard
        self._busy_label = text
        self.progress.setRange(0, 0)  # busy until the first module is done
        self.progress.show()
        self.status.setText(text)
        self.open_button.setEnabled(True)
        self.base_button.setEnabled(False)
        self.busyChanged.emit(True)
        job.start()
        return g

    def _finish(self, g: int) -> bool:
        """True when job g is the current one (and is now retired)."""
        if g not in self._jobs:
            return False
        del self._jobs[g]
        self.progress.hide()
        self.base_button.setEnabled(self.report is not None and self.report.peft_type == "LORA")
        self.busyChanged.emit(False)
        return True

    def _on_progress(self, g: int, done: int, total: int) -> None:
        if g not in self._jobs:
            return
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat("module %v of %m")

    def _on_failed(self, g: int, message: str) -> None:
        if not self._finish(g):
            return
        self.last_error = message
        self.status.setText(("Kept the previous adapter. " if self.report is not None else "") + message)
        self._show_error(message)
        self.failed.emit(message)

    def _show_error(self, message: str) -> None:
        if self.error_box is None:
            box = QtWidgets.QMessageBox(
                QtWidgets.QMessageBox.Warning, "Cannot open this adapter", message, QtWidgets.QMessageBox.Ok, self
            )
            box.setObjectName("inspector_error")
            box.setWindowModality(Qt.NonModal)
            box.finished.connect(lambda _r: setattr(self, "error_box", None))
            self.error_box = box
        else:
            self.error_box.setText(message)
        self.error_box.setInformativeText(
            "The previous inspection stays as it was."
            if self.report is not None
            else "Pick a directory with adapter_config.json and adapter_model.safetensors."
        )
        self.error_box.show()
        self.error_box.raise_()

    def _on_done(self, g: int, report) -> None:
        if not self._finish(g):
            return
        self.last_error = ""
        self.show_report(report)
        self.loaded.emit(report)

    # ---- showing a report
    def show_report(self, report) -> None:
        keep = self._selected if self.report is not None and self.report.path == report.path else None
        self.report = report
        self._matrix_cache = {}
        self._selected = None
        self.setWindowTitle(f"PEFT adapter · {Path(report.path).name}")
        self.header.setText(self._header_html(report))
        amp = sum(1 for m in report.modules if m.amplification)
        self.status.setText(
            f"Analysed {len(report.modules)} module{'s' if len(report.modules) != 1 else ''} in {report.seconds:.2f} s (spectra from "
            "the factors, no dense ΔW)" + (f"; amplification against {report.base}" if amp else "")
            if report.peft_type == "LORA"
            else f"Read {len(report.adaption_prompt.layers)} prompt layers in {report.seconds:.2f} s"
        )
        self.base_button.setEnabled(report.peft_type == "LORA")
        if report.peft_type == "LORA":
            self.pages.setCurrentWidget(self.lora_page)
            self.grid.set_grid(report.grid, report.modules)
            self.grid.setVisible(report.grid is not None)
            self.grid_title.setText(
                "<b>‖ΔW‖<sub>F</sub> by layer and module</b> · click a cell"
                if report.grid is not None
                else "<b>‖ΔW‖<sub>F</sub></b>: no modules inside numbered layers"
            )
            self._fill_table(report)
            names = [m.name for m in report.modules]
            if names:
                self.select_module(keep if keep in names else names[0])
            else:
                self.delta_view.clear()
                self.spectrum_view.clear()
        else:
            self.pages.setCurrentWidget(self.prompt_panel)
            self.prompt_panel.set_prompts(report.adaption_prompt)

    def _header_html(self, r) -> str:
        e = html.escape
        cfg = r.config
        name = Path(r.path).name or r.path
        lines = [f"<span style='font-size:13pt'><b>{e(name)}</b></span> &nbsp; <span>{e(r.path)}</span>"]
        facts = [f"<b>{e(r.peft_type)}</b>"]
        if r.peft_type == "LORA":
            ranks = sorted({m.rank for m in r.modules})
            alphas = sorted({m.alpha for m in r.modules})
            scalings = sorted({m.scaling for m in r.modules})
            facts.append(
                "r = " + (str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]}…{ranks[-1]}")
                if ranks
                else f"r = {cfg.get('r')}"
            )
            facts.append(
                "α = " + (f"{alphas[0]:g}" if len(alphas) == 1 else f"{alphas[0]:g}…{alphas[-1]:g}")
                if alphas
                else f"α = {cfg.get('lora_alpha')}"
            )
            facts.append(
                "scaling = " + (f"{scalings[0]:.4g}" if len(scalings) == 1 else f"{scalings[0]:.4g}…{scalings[-1]:.4g}")
                if scalings
                else ""
            )
            facts.append("rsLoRA (α/√r)" if cfg.get("use_rslora") else "α/r scaling")
            if cfg.get("use_dora"):
                facts.append("<b>DoRA</b>")
            facts.append(f"{len(r.modules)} module{'s' if len(r.modules) != 1 else ''}")
        else:
            ap = r.adaption_prompt
            facts.append(f"prompt length K = {ap.adapter_len}")
            facts.append(f"top L = {ap.adapter_layers} layers ({ap.layers[0].layer}–{ap.layers[-1].layer})")
            facts.append(f"hidden size {ap.hidden_size}")
            facts.append("one identity gate per layer")
        facts.append(f"{format_count(r.trainable_parameters)} parameters")
        facts.append(f"{format_bytes(r.file_bytes)} on disk ({', '.join(r.dtypes)})")
        lines.append(" · ".join(f for f in facts if f))
        more = []
        targets = cfg.get("target_modules")
        if targets is not None:
            shown = targets if isinstance(targets, str) else ", ".join(map(str, targets))
            more.append(f"targets: {e(shown)}")
        if cfg.get("layers_to_transform") is not None:
            more.append(f"layers: {e(str(cfg['layers_to_transform']))}")
        for key in ("rank_pattern", "alpha_pattern"):
            if cfg.get(key):
                more.append(f"{key}: {e(_short(cfg[key]))}")
        if cfg.get("base_model_name_or_path"):
            more.append(f"trained on: {e(str(cfg['base_model_name_or_path']))}")
        if r.base:
            more.append(f"<b>compared with base</b> {e(r.base)}")
        parts = r.trainable_parts.counts()
        if set(parts) - {"lora_A", "lora_B"}:  # more than the factors: say what the count is made of
            more.append("trains " + " + ".join(f"{k} {format_count(v)}" for k, v in parts.items()))
        counted = {*r.trainable_parts.modules_to_save_tensors, *r.trainable_parts.bias_tensors}
        others = [n for n in r.other_tensors if n not in counted]
        if others:
            more.append(f"{len(others)} other tensors (not analysed, not counted)")
        if more:
            lines.append(" · ".join(more))
        return "<br>".join(lines)

    def _fill_table(self, report) -> None:
        t = self.table
        t.setSortingEnabled(False)
        t.blockSignals(True)
        t.clearContents()
        t.setRowCount(len(report.modules))
        has_dora = any(m.dora is not None for m in report.modules)
        has_amp = any(m.amplification for m in report.modules)
        for row, m in enumerate(report.modules):
            s1 = m.singular_values[0] if m.singular_values else 0.0
            cells = [
                _Item(m.name, (m.layer if m.layer is not None else 1 << 30, _module_key(m.module), m.name), m.name),
                _Item(f"{m.shape[0]}×{m.shape[1]}", m.shape[0] * m.shape[1]),
                _Item(str(m.rank), m.rank),
                _Item(f"{m.alpha:g}", m.alpha),
                _Item(_fmt(m.scaling), m.scaling),
                _Item(_fmt(m.fro_norm), m.fro_norm),
                _Item(_fmt(s1), s1),
                _Item(f"{m.effective_rank:.2f}", m.effective_rank),
                _Item(f"{m.stable_rank:.2f}", m.stable_rank),
                _Item("", 0.0),
            ]
            if m.dora is not None:
                d = m.dora
                tip = f"m: min {d.min:.4g}, max {d.max:.4g}, std {d.std:.3g}"
                if d.row_scale_mean is not None:
                    tip += (
                        f"; row scale m/‖W₀+ΔW‖ {d.row_scale_min:.4g}…{d.row_scale_max:.4g} "
                        f"(mean {d.row_scale_mean:.4g})"
                    )
                cells.append(_Item(_fmt(d.mean), d.mean, tip))
            else:
                cells.append(_Item("–", float("-inf")))
            if m.amplification:
                factor = m.amplification.get("factor")
                tip = ", ".join(f"{k} = {_fmt(v)}" for k, v in m.amplification.items() if isinstance(v, (int, float)))
                cells.append(_Item(_fmt(factor, 3), _sort_key(factor), tip))
            else:
                cells.append(_Item("–", float("-inf")))
            for col, item in enumerate(cells):
                item.setData(Qt.UserRole, m.name)
                t.setItem(row, col, item)
        # α and scaling the same everywhere: the header says so, the columns make room
        t.setColumnHidden(self.COLUMNS.index("α"), len({m.alpha for m in report.modules}) <= 1)
        t.setColumnHidden(self.COLUMNS.index("scaling"), len({m.scaling for m in report.modules}) <= 1)
        t.setColumnHidden(self.COLUMNS.index("DoRA ‖m‖ mean"), not has_dora)
        t.setColumnHidden(self.COLUMNS.index("amplification"), not has_amp)
        self._fill_energy()
        t.blockSignals(False)
        t.setSortingEnabled(True)
        metrics = t.fontMetrics()
        longest = max((metrics.horizontalAdvance(m.name) for m in report.modules), default=80)
        t.setColumnWidth(0, min(longest + 24, 260))
        self.table_title.setText(f"<b>Modules</b> ({len(report.modules)})")

    def _fill_energy(self) -> None:
        if self.report is None or self.report.peft_type != "LORA":
            return
        k = int(self.k_box.currentData() or 1)
        col = self.COLUMNS.index("top-k energy")
        self.table.horizontalHeaderItem(col).setText(f"top-{k} energy")
        sorting = self.table.isSortingEnabled()
        self.table.setSortingEnabled(False)
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is None:
                continue
            m = self.report.module(item.data(Qt.UserRole))
            e = m.energy_top_k.get(k)
            if e is None and m.cumulative_energy:
                e = m.cumulative_energy[min(k, len(m.cumulative_energy)) - 1]
            cell = _Item(f"{e:.1%}" if e is not None else "–", e if e is not None else float("-inf"))
            cell.setData(Qt.UserRole, m.name)
            self.table.setItem(row, col, cell)
        self.table.setSortingEnabled(sorting)

    def _table_selection_changed(self) -> None:
        items = self.table.selectedItems()
        if items:
            name = items[0].data(Qt.UserRole)
            if name and name != self._selected:
                self.select_module(name)

    # ---- selecting a module
    def module_names(self) -> list[str]:
        return [] if self.report is None else [m.name for m in self.report.modules]

    def selected_module(self) -> str | None:
        return self._selected

    def select_module(self, name: str) -> bool:
        """Show this module's ΔW heatmap and spectrum; select its grid cell and table row."""
        if self.report is None or name not in self.module_names():
            return False
        try:
            snap = self._snapshot_for(name)
        except (ValueError, OSError, RuntimeError) as exc:
            self.status.setText(f"Cannot draw {name}: {_one_line(str(exc))}")
            return False
        self._selected = name
        self.delta_view.update_snapshot(snap)
        self.spectrum_view.update_snapshot(snap)
        self.grid.select(name)
        self._select_row(name)
        self.moduleSelected.emit(name)
        return True

    def _select_row(self, name: str) -> None:
        t = self.table
        for row in range(t.rowCount()):
            item = t.item(row, 0)
            if item is not None and item.data(Qt.UserRole) == name:
                if t.currentRow() != row or not item.isSelected():
                    t.blockSignals(True)
                    t.selectRow(row)
                    t.blockSignals(False)
                    t.viewport().update()
                t.scrollToItem(item)
                return

    def _snapshot_for(self, name: str):
        from explorer.core.inspect_adapter import matrix_snapshot
        from explorer.schema.snapshot import Snapshot

        ms = self._matrix_cache.get(name)
        if ms is None:
            ms = matrix_snapshot(self.report, name)
            self._matrix_cache[name] = ms
        m = self.report.module(name)
        self._selection_count += 1
        snap = Snapshot(
            step=0,
            time=0.0,
            segment=self._selection_count,
            loss=None,
            eval_loss=None,
            lr=0.0,
            steps_per_second=0.0,
            device="file",
            memory_bytes=0,
            settings={"scenario": "adapter", "method": "lora", "rank": int(m.rank)},
            matrices={name: ms},
            state="paused",
        )
        snap.has_base = self.report.base is not None
        return snap

    # ---- closing
    def closeEvent(self, event):  # noqa: N802 - Qt API
        self._jobs = {}  # a job still running finishes unheard
        if self.error_box is not None:
            self.error_box.close()
        super().closeEvent(event)


def _module_key(module: str) -> tuple[int, str]:
    """q, k, v, o, gate, up, down: the order Llama lists them in (then by name)."""
    return (MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER), module)


def _short(value) -> str:
    import json

    s = json.dumps(value, separators=(",", ":"))
    return s if len(s) <= 80 else s[:77] + "..."


__all__ = ["AdapterInspector", "NormGridView", "PromptPanel", "inspector_of", "open_adapter"]
