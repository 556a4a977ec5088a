"""Prefix attention, BertViz-style: a layer x head grid of small maps over [prompt | tokens] for the probe.

Each cell is one head's attention of every probe token (rows, queries) over the K gated prompt
vectors and the T real tokens (columns, keys): [gate·softmax(S_p) | softmax(S_t)]. A line separates
the prompt columns from the token columns. Click a cell to enlarge it with token labels on both axes
(P0..P{K-1} for the prompt, the probe's tokens for the rest); Esc or "All heads" goes back.

On a real model (32 layers x 32 heads, 80 x 64) the grid shows a subset the user picks in the
"Layers" and "Heads" fields (explorer/gui/views/attention_picker.py; by default the deepest 8 prefix
layers x the first 8 heads, at most 16 x 16) and the caption says what is shown of what. The choice
goes to the run's settings (attention_layers / attention_heads, `attentionChosen`): the engine sends
those maps only (every map of a 70B model is ~100 MB a snapshot), so until its next snapshot a newly
chosen cell is empty and the caption says the maps are on the way; a replay shows what its recording
holds and says what it lacks.

The grid is ONE image (a mosaic with transparent gaps): one setImage per frame, whatever its size.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.attention_axes import ClickableImage, TokenAxis, token_label
from explorer.gui.views.attention_picker import AttentionPicker, format_ranges
from explorer.gui.views.base import (
    View,
    method_name,
    new_layout_widget,
    set_colorbar_levels,
    style_colorbar,
    style_plot,
)

GAP = 1  # transparent cells between maps in the grid mosaic


class AttentionView(View):
    view_id = "attention"
    title = "Prefix attention"
    formula_tooltip = (
        "attn = [ gate(g)·softmax(q·Kpᵀ/√d) | softmax(q·Ktᵀ/√d + mask) ],  Kp = W_k·P (frozen W_k, "
        "learned prompt P); rows: probe tokens, columns: [P0..P(K-1) | tokens]"
    )

    cellClicked = QtCore.Signal(int, int)  # (row = index of the prefix layer, head)
    # the user chose other maps: (model layers, heads), each None for the default subset; the window
    # asks the engine for them (settings attention_layers / attention_heads)
    attentionChosen = QtCore.Signal(object, object)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        self._geometry = None  # (layers, heads, T, K)
        self._buffer: np.ndarray | None = None
        self._maps: list[np.ndarray] = []  # per prefix layer: its (heads, T, K + T) attention, as sent
        self._attention: np.ndarray | None = None  # the maps shown: (rows, columns, T, K + T)
        self._layers: list[int] = []  # the model layer of every prefix layer (index: prefix row)
        self._rows: list[int] = []  # the prefix row of each grid row
        self._heads: list[int] = []  # the head of each grid column
        self._map_heads: list[dict[int, int]] = []  # per prefix row: head -> its map's index in _maps[row]
        self._missing = 0  # chosen maps this snapshot does not carry
        self._replay = False
        self._settings_choice = (None, None)  # the choice the run's settings named when last seen
        self._gates: np.ndarray | None = None
        self._prompt_len = 0
        self._tokens: list[str] = []
        self._enlarged: tuple[int, int] | None = None
        self._levels = colormaps.SymmetricLevels()
        self._cmap_name = colormaps.DIVERGING

        self._pages = QtWidgets.QStackedWidget(self)
        # -- grid page
        grid_page = QtWidgets.QWidget(self._pages)
        gl = QtWidgets.QVBoxLayout(grid_page)
        gl.setContentsMargins(4, 4, 4, 4)
        gl.setSpacing(3)
        self.picker = AttentionPicker(grid_page)
        self.picker.changed.connect(self._selection_changed)
        gl.addWidget(self.picker)
        self.grid_glw = new_layout_widget(self.style_)
        self.grid_glw.ci.setToolTip(self.formula_tooltip)
        self.grid_plot: pg.PlotItem = self.grid_glw.addPlot(row=0, col=0)
        self.grid_plot.invertY(True)
        self.grid_plot.hideButtons()
        self.grid_plot.setMenuEnabled(False)
        self.grid_plot.setMouseEnabled(x=False, y=False)
        self.grid_plot.showAxis("top")
        self.grid_plot.hideAxis("bottom")
        self.grid_plot.getAxis("left").setStyle(tickLength=0)
        self.grid_plot.getAxis("top").setStyle(tickLength=0)
        self.grid_image = ClickableImage(axisOrder="row-major")
        self.grid_image.setLookupTable(colormaps.lut(self._cmap_name))
        self.grid_image.clicked.connect(self._grid_clicked)
        # behind the mosaic: the colour its transparent gaps show, so the maps stay apart on a white page too
        self.grid_backdrop = QtWidgets.QGraphicsRectItem()
        self.grid_backdrop.setPen(QtGui.QPen(QtCore.Qt.PenStyle.NoPen))
        self.grid_backdrop.setZValue(-1)
        self.grid_plot.addItem(self.grid_backdrop, ignoreBounds=True)
        self.grid_plot.addItem(self.grid_image)
        self.grid_lines = pg.PlotCurveItem(connect="pairs", pen=pg.mkPen("#20242a", width=1))
        self.grid_plot.addItem(self.grid_lines)
        self.grid_bar = colormaps.colorbar(self._cmap_name, (-1.0, 1.0), width=12)
        self.grid_glw.addItem(self.grid_bar, row=0, col=1)
        self.grid_plot.vb.sigResized.connect(lambda: colormaps.align_colorbar(self.grid_bar, self.grid_plot))
        gl.addWidget(self.grid_glw, 1)
        self.grid_caption = QtWidgets.QLabel(grid_page)
        self.grid_caption.setWordWrap(True)
        gl.addWidget(self.grid_caption)
        self._pages.addWidget(grid_page)
        # -- enlarged page
        detail_page = QtWidgets.QWidget(self._pages)
        dl = QtWidgets.QVBoxLayout(detail_page)
        dl.setContentsMargins(4, 4, 4, 4)
        dl.setSpacing(3)
        bar = QtWidgets.QHBoxLayout()
        self.back_button = QtWidgets.QToolButton(detail_page)
        self.back_button.setText("◀ All heads")
        self.back_button.setToolTip("Back to the layer × head grid (Esc)")
        self.back_button.clicked.connect(self.show_grid)
        bar.addWidget(self.back_button)
        self.prev_button = QtWidgets.QToolButton(detail_page)
        self.prev_button.setText("‹")
        self.prev_button.setToolTip("Previous head")
        self.prev_button.clicked.connect(lambda: self._step_head(-1))
        self.next_button = QtWidgets.QToolButton(detail_page)
        self.next_button.setText("›")
        self.next_button.setToolTip("Next head")
        self.next_button.clicked.connect(lambda: self._step_head(+1))
        bar.addWidget(self.prev_button)
        bar.addWidget(self.next_button)
        self.detail_title = QtWidgets.QLabel(detail_page)
        self.detail_title.setTextFormat(QtCore.Qt.TextFormat.RichText)
        bar.addWidget(self.detail_title, 1)
        dl.addLayout(bar)
        self.detail_glw = new_layout_widget(self.style_)
        self.detail_glw.ci.setToolTip(self.formula_tooltip)
        self.token_axis = TokenAxis("bottom")
        self.query_axis = TokenAxis("left")
        self.detail_plot: pg.PlotItem = self.detail_glw.addPlot(
            row=0, col=0, axisItems={"bottom": self.token_axis, "left": self.query_axis}
        )
        self.detail_plot.invertY(True)
        self.detail_plot.hideButtons()
        self.detail_plot.setMenuEnabled(False)
        self.detail_plot.setMouseEnabled(x=False, y=False)
        self.detail_plot.setLabel("left", "query (probe token)")
        self.detail_image = pg.ImageItem(axisOrder="row-major")
        self.detail_image.setLookupTable(colormaps.lut(self._cmap_name))
        self.detail_plot.addItem(self.detail_image)
        self.detail_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#20242a", width=1))
        self.detail_plot.addItem(self.detail_line, ignoreBounds=True)
        self.detail_bar = colormaps.colorbar(self._cmap_name, (-1.0, 1.0), width=12)
        self.detail_glw.addItem(self.detail_bar, row=0, col=1)
        self.detail_plot.vb.sigResized.connect(lambda: colormaps.align_colorbar(self.detail_bar, self.detail_plot))
        dl.addWidget(self.detail_glw, 1)
        self._pages.addWidget(detail_page)
        self._escape = QtGui.QShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Escape), detail_page)
        self._escape.setContext(QtCore.Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._escape.activated.connect(self.show_grid)
        self.set_content(self._pages)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def grid_shape(self) -> tuple[int, int]:
        """(rows, columns) of the grid drawn now, i.e. (layers shown, heads shown); (0, 0) when none."""
        if self._attention is None:
            return (0, 0)
        return tuple(self._attention.shape[:2])

    def available_shape(self) -> tuple[int, int]:
        """(prefix layers, heads) the snapshot has, shown or not."""
        return (len(self._maps), self.picker.head_count()) if self._maps else (0, 0)

    def layers(self) -> list[int]:
        """The model layer of each grid row."""
        return [self._layers[r] for r in self._rows]

    def heads(self) -> list[int]:
        """The head of each grid column."""
        return list(self._heads)

    def choose(self, layers: str | None = None, heads: str | None = None) -> str:
        """Type into the Layers / Heads fields (None leaves one) and apply; the one-line error or ''."""
        return self.picker.choose(layers, heads)

    def cell_center(self, row: int, head: int) -> QtCore.QPointF:
        """Centre of the cell of prefix row `row` (an index into every prefix layer) and `head` in
        image coordinates (for clicks and tests); ValueError when that cell is not shown."""
        _, _, t, w = self._attention.shape
        i, j = self._rows.index(row), self._heads.index(head)
        return QtCore.QPointF(j * (w + GAP) + w / 2, i * (t + GAP) + t / 2)

    def enlarge(self, row: int, head: int) -> None:
        """Show one cell big, with token labels; `row` indexes the prefix layers (every one, shown
        in the grid or not), `head` the heads."""
        if not self._maps:
            return
        n_layers, n_heads = self.available_shape()
        if not (0 <= row < n_layers and 0 <= head < n_heads):
            raise IndexError(f"cell ({row}, {head}) is outside the {n_layers} x {n_heads} prefix maps")
        if not self._has_map(row, head):
            raise IndexError(f"layer {self._layers[row]} head {head}: this snapshot carries no map of it")
        self._enlarged = (row, head)
        self._draw_detail(new_cell=True)
        self._pages.setCurrentIndex(1)

    def enlarged(self) -> tuple[int, int] | None:
        """(row, head) of the enlarged cell, or None while the grid shows."""
        return self._enlarged if self._pages.currentIndex() == 1 else None

    def show_grid(self) -> None:
        self._pages.setCurrentIndex(0)

    def detail_labels(self) -> tuple[list[str], list[str]]:
        """(column labels: P0..P{K-1} then the tokens, row labels: the tokens) of the enlarged map."""
        return self.token_axis.labels(), list(self._row_labels)

    def levels(self) -> tuple[float, float]:
        lv = self.grid_image.getLevels()
        return (float(lv[0]), float(lv[1])) if lv is not None else (0.0, 0.0)

    def export_item(self):
        return self.detail_glw.ci if self.enlarged() else self.grid_glw.ci

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snapshot) -> None:
        every = list(snapshot.prefixes or [])
        carried = [p for p in every if p.attention is not None and np.size(p.attention)]
        if not carried:
            method = (snapshot.settings or {}).get("method", "")
            if snapshot.prefixes:
                self.show_message("Prefix layers are set up; waiting for the probe's attention maps.")
            elif method in ("prefix", "lora+prefix"):
                self.show_message("No prefix attention yet: waiting for the first snapshot.")
            else:
                name = method_name(method)
                self.show_message(
                    f"No prefix layers in this method ({name}).\n"
                    "Choose prefix or LoRA + prefix to see the gated prompt attention."
                )
            self._key = None
            return
        self.hide_message()
        # live maps are measured on their own cadence and ride along between measurements: redraw
        # when they were measured again (or are of other layers or heads), not on every step
        measured = getattr(carried[0], "attention_step", None)
        heads = carried[0].heads
        cells = (tuple(p.layer for p in carried), None if heads is None else tuple(int(h) for h in heads))
        key = (
            (snapshot.segment, "measured", measured, cells)
            if measured is not None
            else (snapshot.segment, snapshot.step, snapshot.time, id(carried[0].attention))
        )
        if key == self._key:
            return
        self._key = key
        shapes = {np.shape(p.attention) for p in carried}
        if len({s[1:] for s in shapes}) != 1 or any(len(s) != 3 or s[0] < 1 for s in shapes):
            self.show_message(f"The prefix attention maps differ in shape ({sorted(shapes)[:2]}): nothing to draw.")
            self._key = None
            return
        _, t, w = next(iter(shapes))
        k = max(0, w - t)
        # every prefix layer can be chosen; the engine sends the maps of the chosen ones only
        self._layers = [int(p.layer) for p in every]
        sent = {id(p) for p in carried}
        self._maps = [np.asarray(p.attention) if id(p) in sent else None for p in every]
        self._map_heads = [_head_positions(p) if id(p) in sent else {} for p in every]
        n_heads = max(
            [len(np.ravel(p.gates)) for p in every if p.gates is not None]
            + [max(index) + 1 for index in self._map_heads if index]
        )
        self._adopt_settings(snapshot.settings or {})
        self.picker.set_available(self._layers, n_heads)
        chosen_layers, chosen_heads = self.picker.selection()
        self._rows = [self._layers.index(layer) for layer in chosen_layers]
        self._heads = list(chosen_heads)
        att = np.full((len(self._rows), len(self._heads), t, w), np.nan, np.float32)  # (rows, cols, T, K + T)
        for i, r in enumerate(self._rows):
            have = [(j, self._map_heads[r][h]) for j, h in enumerate(self._heads) if h in self._map_heads[r]]
            if have:
                cols, sent = (list(x) for x in zip(*have))
                att[i, cols] = self._maps[r][sent]
        self._missing = int(sum(1 for r in self._rows for h in self._heads if h not in self._map_heads[r]))
        self._replay = snapshot.state == "replay"
        n_layers = len(every)
        self._attention = att
        self._gates = (
            np.stack([np.asarray(p.gates, dtype=np.float32).reshape(-1) for p in every])
            if all(p.gates is not None for p in every) and len({np.size(p.gates) for p in every}) == 1
            else None
        )
        self._prompt_len = k
        tokens = list(snapshot.probe_tokens or [])
        self._tokens = tokens[-t:] if len(tokens) >= t else tokens + [f"t{i}" for i in range(len(tokens), t)]
        n_rows, n_cols = len(self._rows), len(self._heads)
        geometry = (n_rows, n_cols, t, k, tuple(self.layers()), tuple(self._heads))
        if geometry != self._geometry:
            self._geometry = geometry
            self._build_grid(n_rows, n_cols, t, w, k)
            if self._enlarged and (self._enlarged[0] >= n_layers or self._enlarged[1] >= n_heads):
                self._enlarged = None
                self.show_grid()
        buf = self._buffer
        buf4 = buf.reshape(n_rows, t + GAP, n_cols, w + GAP)
        buf4[:, :t, :, :w] = att.transpose(0, 2, 1, 3)
        mosaic = buf[: n_rows * (t + GAP) - GAP, : n_cols * (w + GAP) - GAP]
        has_maps = self._missing < att.shape[0] * att.shape[1]  # (numpy warns on the max of all NaN)
        levels = self._levels.update_max(colormaps.abs_max(att) if has_maps else 0.0)
        self.grid_image.setImage(mosaic, autoLevels=False, levels=levels)
        set_colorbar_levels(self.grid_bar, levels)
        gmax = float(np.abs(self._gates).max()) if self._gates is not None and self._gates.size else 0.0
        self.grid_caption.setText(
            f"{self.shown_text()} · each map: {t} probe tokens (rows) over [{k} prompt | {t} tokens] (columns) · "
            f"max |gate| {gmax:.3g} (all prefix layers) · step {snapshot.step if measured is None else measured:,} · "
            "click a map to enlarge" + self._missing_text()
        )
        if self._enlarged is not None:
            if self._has_map(*self._enlarged):
                self._draw_detail(new_cell=False)
            else:
                self._enlarged = None
                self.show_grid()
        self.draw_count += 1

    def shown_text(self) -> str:
        """What the grid shows of what: 'layers 24–31 (8 of 30 prefix layers) × heads 0–7 (8 of 32)'."""
        n_layers, n_heads = self.available_shape()
        shown = self.layers()
        return (
            f"layer{'s' if len(shown) != 1 else ''} {format_ranges(shown)} ({len(shown)} of {n_layers} prefix "
            f"layer{'s' if n_layers != 1 else ''}) × head{'s' if len(self._heads) != 1 else ''} "
            f"{format_ranges(self._heads)} ({len(self._heads)} of {n_heads})"
        )

    def _missing_text(self) -> str:
        """What the grid lacks of the choice: maps the engine sends from its next snapshot on, or (a
        replay) maps the recording does not hold."""
        if not self._missing:
            return ""
        if self._replay:
            layers = [layer for layer, index in zip(self._layers, self._map_heads) if index]
            heads = sorted({h for index in self._map_heads for h in index})
            return (
                f" · {self._missing} chosen map{'s' if self._missing != 1 else ''} not recorded (the recording "
                f"holds layers {format_ranges(layers)} × heads {format_ranges(heads)})"
            )
        return (
            f" · {self._missing} chosen map{'s' if self._missing != 1 else ''} on the way (the engine sends them next)"
        )

    def _has_map(self, row: int, head: int) -> bool:
        return 0 <= row < len(self._maps) and head in self._map_heads[row]

    def _adopt_settings(self, settings: dict) -> None:
        """The run's settings name a choice (a saved one, or one made in another window): the picker
        takes it when it changes there; a choice made here then goes back to the run through them."""
        choice = tuple(_index_list(settings.get(name)) for name in ("attention_layers", "attention_heads"))
        if choice != self._settings_choice:
            self._settings_choice = choice
            if choice != self.picker.asked():
                self.picker.adopt(*choice)

    def _selection_changed(self) -> None:
        self.attentionChosen.emit(*self.picker.asked())
        self._key = None
        self.refresh()

    def _build_grid(self, n_layers: int, n_heads: int, t: int, w: int, k: int) -> None:
        self._buffer = np.full((n_layers * (t + GAP), n_heads * (w + GAP)), np.nan, np.float32)
        height = n_layers * (t + GAP) - GAP
        width = n_heads * (w + GAP) - GAP
        xs = np.array([h * (w + GAP) + k for h in range(n_heads)], np.float64)
        if k > 0:
            x = np.repeat(xs, 2)
            y = np.tile([0.0, float(height)], n_heads)
            self.grid_lines.setData(x, y)
        else:
            self.grid_lines.setData([], [])
        self.grid_plot.getAxis("left").setTicks(
            [[(i * (t + GAP) + t / 2, f"L{layer}") for i, layer in enumerate(self.layers())]]
        )
        self.grid_plot.getAxis("top").setTicks([[(j * (w + GAP) + w / 2, f"h{h}") for j, h in enumerate(self._heads)]])
        self.grid_plot.setRange(xRange=(0, width), yRange=(0, height), padding=0)
        self.grid_backdrop.setRect(QtCore.QRectF(0, 0, width, height))

    def _grid_clicked(self, x: float, y: float) -> None:
        if self._attention is None:
            return
        n_rows, n_cols, t, w = self._attention.shape
        i, ry = divmod(int(np.floor(y)), t + GAP)
        j, rx = divmod(int(np.floor(x)), w + GAP)
        if 0 <= i < n_rows and 0 <= j < n_cols and ry < t and rx < w:
            row, head = self._rows[i], self._heads[j]
            if not self._has_map(row, head):
                return
            self.cellClicked.emit(row, head)
            self.enlarge(row, head)

    def _step_head(self, delta: int) -> None:
        """The next (previous) map of the grid shown, head by head then layer by layer."""
        if self._enlarged is None or self._attention is None:
            return
        cells = [(r, h) for r in self._rows for h in self._heads if self._has_map(r, h)]
        here = cells.index(self._enlarged) if self._enlarged in cells else -1 if delta > 0 else 0
        self.enlarge(*cells[(here + delta) % len(cells)])

    def _draw_detail(self, new_cell: bool) -> None:
        row, head = self._enlarged
        att = np.asarray(self._maps[row][self._map_heads[row][head]], dtype=np.float32)
        t, w = att.shape
        k = self._prompt_len
        levels = self._levels.levels()
        self.detail_image.setImage(att, autoLevels=False, levels=levels)
        set_colorbar_levels(self.detail_bar, levels)
        if new_cell or self._detail_geometry != (t, w, tuple(self._tokens)):
            self._detail_geometry = (t, w, tuple(self._tokens))
            columns = [f"P{i}" for i in range(k)] + [token_label(s) for s in self._tokens]
            self.token_axis.set_labels(columns)
            self._row_labels = [token_label(s) for s in self._tokens]
            self.query_axis.set_labels(self._row_labels)
            self.detail_line.setPos(k)
            self.detail_line.setVisible(k > 0)
            self.detail_plot.setRange(xRange=(0, w), yRange=(0, t), padding=0)
        gate = ""
        if self._gates is not None and self._gates.shape[1] > head:
            gate = f" · gate <b>{self._gates[row, head]:+.4f}</b>"
        self.detail_title.setText(
            f"layer <b>{self._layers[row]}</b> · head <b>{head}</b>{gate} · [{k} prompt | {t} tokens]"
        )

    _detail_geometry = None
    _row_labels: list = []

    def _clear(self) -> None:
        self._key = None
        self._levels.reset()
        self._attention = None
        self._maps = []
        self._map_heads = []
        self._geometry = None
        self._detail_geometry = None
        self._enlarged = None
        self.grid_image.clear()
        self.detail_image.clear()
        self.grid_lines.setData([], [])
        self.grid_backdrop.setRect(QtCore.QRectF())
        self.grid_caption.setText("")
        self.show_grid()

    def _apply_style(self) -> None:
        s = self.style_
        for glw in (self.grid_glw, self.detail_glw):
            glw.setBackground(s.background)
        for plot in (self.grid_plot, self.detail_plot):
            style_plot(plot, s)
        for bar in (self.grid_bar, self.detail_bar):
            style_colorbar(bar, s)
        # room for the colour bar's end labels where no axis leaves it: below the grid, above the map
        room = colormaps.label_room(s.font())
        self.grid_glw.ci.setContentsMargins(2, 2, 2, room)
        self.detail_glw.ci.setContentsMargins(2, room, 2, 2)
        colormaps.align_colorbar(self.grid_bar, self.grid_plot)
        colormaps.align_colorbar(self.detail_bar, self.detail_plot)
        self.token_axis.setTickFont(s.font(9, mono=True))
        self.query_axis.setTickFont(s.font(9, mono=True))
        self.grid_backdrop.setBrush(pg.mkBrush(s.background if s.dark else "#8f959d"))
        line_pen = pg.mkPen(s.separator, width=1)
        self.grid_lines.setPen(line_pen)
        self.detail_line.setPen(line_pen)
        name = colormaps.diverging_for(s.high_contrast)
        if name != self._cmap_name:
            self._cmap_name = name
            for img in (self.grid_image, self.detail_image):
                img.setLookupTable(colormaps.lut(name))
            for bar in (self.grid_bar, self.detail_bar):
                bar.setColorMap(colormaps.colormap(name))
        self._levels.hold = s.high_contrast
        self._key = None


def _head_positions(prefix) -> dict[int, int]:
    """head -> index of its map in prefix.attention (its `heads`, or every head in order)."""
    heads = prefix.heads if prefix.heads is not None else range(np.shape(prefix.attention)[0])
    return {int(h): i for i, h in enumerate(heads)}


def _index_list(value) -> tuple[int, ...] | None:
    """A settings value that lists indices, as a sorted tuple; None for anything else."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return None
    return tuple(sorted(set(value)))
