"""What the running setting costs: trainable parameters, share of the model, storage, optimizer memory,
and the same setting priced on LLaMA-7B / 13B / 70B (the seed's 4.2M / 8.4M / 1.2M table).

Big numbers with thousands separators; a small table for the presets. Redrawn only when the budget
or the setting changes (once per segment), so it costs nothing at 30 Hz.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui.views.base import View, qt_alive
from explorer.schema.format import format_bytes, format_count, format_short

PRESET_NAMES = {
    "llama-7b": "LLaMA-7B",
    "llama-13b": "LLaMA-13B",
    "llama-2-70b": "LLaMA-2-70B",
    "llama-70b": "LLaMA-70B",
}


def format_share(share) -> str:
    try:
        pct = 100.0 * float(share)
    except (TypeError, ValueError):
        return "–"
    if pct >= 99.95:
        return "100 %"
    if pct >= 1:
        return f"{pct:.2f} %"
    return f"{pct:.3g} %"


def describe_setting(settings: dict) -> str:
    """'LoRA r=8, α=16 on q_proj, v_proj, all layers' and the like, from TrainSettings.to_dict()."""
    if not settings:
        return ""
    method = settings.get("method", "")
    parts = []
    if method in ("lora", "lora+prefix"):
        text = (
            f"LoRA r = {settings.get('rank', '?')}, α = {settings.get('alpha', '?'):g}"
            if isinstance(settings.get("alpha"), (int, float))
            else f"LoRA r = {settings.get('rank', '?')}"
        )
        if settings.get("use_rslora"):
            text += " (rsLoRA)"
        if settings.get("use_dora"):
            text += " + DoRA"
        if settings.get("scenario") == "matrix":
            text += f" on one {settings.get('size_out', '?')}×{settings.get('size_in', '?')} matrix"
        else:
            targets = settings.get("targets") or []
            layers = settings.get("layers")
            text += f" on {', '.join(targets)}" + (
                ", all layers" if not layers else f", layers {', '.join(map(str, layers))}"
            )
        parts.append(text)
    if method in ("prefix", "lora+prefix"):
        parts.append(
            f"prefix K = {settings.get('prefix_len', '?')} on the top L = {settings.get('prefix_layers', '?')} "
            f"layers, gates per {settings.get('gate_shape', 'head')} ({settings.get('gate_fn', '')})"
        )
    if method == "full":
        parts.append("full fine-tuning: every weight trains")
    return " + ".join(parts)


def price_presets(settings: dict) -> dict:
    """The setting priced on the LLaMA presets, for budgets that arrive without a "presets" entry.

    Pure arithmetic on the snapshot's settings (explorer.schema.budget), nothing is allocated. Empty for
    the matrix scenario (one matrix is no Llama setting) or when a setting does not fit a preset."""
    if not settings or settings.get("scenario") == "matrix":
        return {}
    try:
        from explorer.schema.budget import price_presets as price
    except ImportError:  # pragma: no cover - the core ships with the app
        return {}
    try:
        return price(
            settings.get("method", "lora"),
            rank=int(settings.get("rank", 8)),
            targets=tuple(settings.get("targets") or ("q_proj", "v_proj")),
            layers=settings.get("layers"),
            prefix_len=int(settings.get("prefix_len", 10)),
            prefix_layers=int(settings.get("prefix_layers", 30)),
            gate_shape=settings.get("gate_shape", "head"),
            use_dora=bool(settings.get("use_dora", False)),
        )
    except (ValueError, TypeError, KeyError):
        return {}


# The preset table's columns: header, its tooltip, and how a preset's budget fills it (full, short).
COLUMNS = (
    ("Model", "LLaMA-sized model the setting is priced on"),
    ("Params", "trainable parameters"),
    ("Share", "trainable / base model parameters"),
    ("fp16", "storage of the trainable parameters in fp16"),
    ("Adam", "optimizer memory: 2 Adam moments + the gradient, fp32 (12 bytes per trainable parameter)"),
)
SHARE_COLUMN = 2
CARD_SPACING = 6
TABLE_SPACING = (14, 8)  # between the table's columns: roomy, and where the view is narrow
FP16_COLUMN = 3
# The forms of the preset table, roomiest first: (short numbers, short model names, hidden columns).
TABLE_FORMS = (
    (False, False, ()),
    (True, False, ()),
    (True, False, (SHARE_COLUMN,)),
    (True, True, (SHARE_COLUMN,)),
    (True, True, (SHARE_COLUMN, FP16_COLUMN)),
)


class _Card(QtWidgets.QFrame):
    def __init__(self, caption: str, parent=None):
        super().__init__(parent)
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.setSpacing(0)
        lay.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop)  # numbers of a row of cards on one line
        self.caption = QtWidgets.QLabel(caption, self)
        self.value = QtWidgets.QLabel("–", self)
        self.value.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail = QtWidgets.QLabel("", self)
        for w in (self.caption, self.detail):  # small print wraps in a narrow dock, the number never
            w.setWordWrap(True)
        for w in (self.caption, self.value, self.detail):
            lay.addWidget(w)

    def set(self, value: str, detail: str = "") -> None:
        self.value.setText(value)
        self.detail.setText(detail)

    def _margins_width(self) -> int:
        m = self.layout().contentsMargins()
        return m.left() + m.right() + 2 * self.frameWidth()

    def natural_width(self) -> int:
        """Width that shows every line of the card unwrapped."""
        widths = [
            label.fontMetrics().horizontalAdvance(label.text()) for label in (self.caption, self.value, self.detail)
        ]
        return max(widths) + self._margins_width() + 2

    def least_width(self) -> int:
        """Narrowest the card reads well at: caption and number on a line each, the small print wrapped."""
        widths = [label.fontMetrics().horizontalAdvance(label.text()) for label in (self.caption, self.value)]
        return max(widths) + self._margins_width() + 2


class BudgetView(View):
    view_id = "budget"
    title = "Budget"
    formula_tooltip = (
        "LoRA trains r·(in + out) per adapted matrix (+ out for DoRA's magnitude); prefix trains L·(K·C + gates); storage = 2 bytes "
        "(fp16) or 4 (fp32) per parameter; Adam = 12 bytes per trainable parameter"
    )

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        content = QtWidgets.QWidget(self)
        outer = QtWidgets.QVBoxLayout(content)
        outer.setContentsMargins(8, 6, 8, 6)
        outer.setSpacing(8)
        self.setting_label = QtWidgets.QLabel(content)
        self.setting_label.setWordWrap(True)
        outer.addWidget(self.setting_label)
        self._cards = QtWidgets.QGridLayout()
        self._cards.setSpacing(CARD_SPACING)
        self.trainable = _Card("Trainable parameters", content)
        self.share = _Card("Share of the model", content)
        self.storage = _Card("Storage (fp16)", content)
        self.optimizer = _Card("Optimizer (Adam)", content)
        self._card_columns = 0
        self._arrange_cards(2)
        outer.addLayout(self._cards)
        self.presets_title = QtWidgets.QLabel("The same setting on", content)
        self.presets_title.setWordWrap(True)
        outer.addWidget(self.presets_title)
        self.table = QtWidgets.QGridLayout()
        self.table.setHorizontalSpacing(TABLE_SPACING[0])
        self.table.setVerticalSpacing(2)
        outer.addLayout(self.table)
        outer.addStretch(1)
        self._outer = outer
        self._table_labels: list[list[QtWidgets.QLabel]] = []
        self._rows: list[list[str]] = []  # the preset table in full
        self._short_rows: list[list[str]] = []  # the same with short numbers (4.19M), for narrow docks
        self._table_form = 0  # see table_form()
        self._table_parent = content
        # big talk-mode fonts scroll down instead of being squeezed; never sideways: the cards wrap into
        # fewer columns and the table shortens its numbers to fit the width instead
        self.scroll = QtWidgets.QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(content)
        self.scroll.viewport().installEventFilter(self)
        self.set_content(self.scroll)
        self._restyle()

    def _arrange_cards(self, columns: int) -> None:
        """Four cards in one row when the view is wide enough, else two by two, else one above the other."""
        if columns == self._card_columns:
            return
        self._card_columns = columns
        cards = (self.trainable, self.share, self.storage, self.optimizer)
        for card in cards:
            self._cards.removeWidget(card)
        for i, card in enumerate(cards):
            self._cards.addWidget(card, i // columns, i % columns)
        for c in range(4):
            self._cards.setColumnStretch(c, 1 if c < columns else 0)

    def sizeHint(self) -> QtCore.QSize:
        # what a dock would like to give it: two by two cards and the table (the scroll area's own hint
        # follows the narrowest, one-column arrangement of the word-wrapped cards)
        return QtCore.QSize(360, 200).expandedTo(self.minimumSizeHint())

    def card_columns(self) -> int:
        return self._card_columns

    def eventFilter(self, watched, event) -> bool:
        if (
            event.type() == QtCore.QEvent.Type.Resize
            and qt_alive(self, self.scroll)
            and watched is self.scroll.viewport()
        ):
            self._fit(event.size().width())
        return super().eventFilter(watched, event)

    def _fit(self, width: int | None = None) -> None:
        """Fit the cards and the table to the width the scroll area gives (its viewport, so a vertical
        scroll bar is taken into account): on resizes and new numbers only."""
        if width is None:
            width = self.scroll.viewport().width()
        m = self._outer.contentsMargins()
        avail = width - m.left() - m.right()
        cards = (self.trainable, self.share, self.storage, self.optimizer)
        natural = sum(card.natural_width() for card in cards)
        least = max(card.least_width() for card in cards)
        if avail >= natural + 3 * CARD_SPACING:
            self._arrange_cards(4)
        elif avail >= 2 * least + CARD_SPACING:
            self._arrange_cards(2)
        else:
            self._arrange_cards(1)
        self._fit_table(avail)

    def _table_width(self, rows: list[list[str]], hidden, spacing: int) -> int:
        if not rows:
            return 0
        body = QtGui.QFontMetrics(self.style_.font(10.5, mono=True))
        head = QtGui.QFontMetrics(self.style_.font(10.5, bold=True))
        total, columns = 0, 0
        for j in range(len(rows[0])):
            if j in hidden:
                continue
            metrics = [head if i == 0 else body for i in range(len(rows))]
            total += max(fm.horizontalAdvance(r[j]) for fm, r in zip(metrics, rows)) + 2
            columns += 1
        return total + spacing * (columns - 1)

    def _form_rows(self, form: int) -> list[list[str]]:
        short, short_names, _ = TABLE_FORMS[form]
        rows = self._short_rows if short else self._rows
        if short_names and rows:  # 'LLaMA-2-70B' -> '2-70B' (the title says LLaMA); no presets: no header either
            rows = [rows[0]] + [[r[0].replace("LLaMA-", "")] + r[1:] for r in rows[1:]]
        return rows

    def _fit_table(self, avail: int) -> None:
        """The roomiest form of the preset table that fits the width (see TABLE_FORMS): full numbers,
        then short numbers (4.19M), then fewer columns and short model names."""
        if not self._rows:  # no presets (the matrix scenario): no table to fit, whatever the width
            self._table_form = 0
            return
        form = len(TABLE_FORMS) - 1
        for i, (_, _, hidden) in enumerate(TABLE_FORMS):
            if self._table_width(self._form_rows(i), hidden, TABLE_SPACING[1]) <= avail:
                form = i
                break
        wide = self._table_width(self._form_rows(form), TABLE_FORMS[form][2], TABLE_SPACING[0]) <= avail
        self.table.setHorizontalSpacing(TABLE_SPACING[0] if wide else TABLE_SPACING[1])
        if form != self._table_form:
            self._table_form = form
            self._show_table()

    def table_form(self) -> int:
        """Index into TABLE_FORMS of the table shown now: 0 in full, higher when the view is narrow."""
        return self._table_form

    def _show_table(self) -> None:
        form = self._table_form
        hidden = TABLE_FORMS[form][2]
        for labels, row in zip(self._table_labels, self._form_rows(form)):
            for j, (label, text) in enumerate(zip(labels, row)):
                label.setText(text)
                label.setVisible(j not in hidden)
        self.presets_title.setText("The same setting on LLaMA" if TABLE_FORMS[form][1] else "The same setting on")

    # ---- public ----------------------------------------------------------------------------------
    def values(self) -> dict[str, str]:
        """The big numbers shown now, by card."""
        return {
            "trainable": self.trainable.value.text(),
            "share": self.share.value.text(),
            "storage": self.storage.value.text(),
            "optimizer": self.optimizer.value.text(),
        }

    def preset_rows(self) -> list[list[str]]:
        """The preset table in full: [model, trainable, share, fp16 storage, optimizer] per row."""
        return [list(row) for row in self._rows[1:]]

    def preset_cells(self) -> list[list[str]]:
        """The preset table as shown now, header first (short numbers, or no share column, when narrow)."""
        return [[label.text() for label in row if label.isVisibleTo(self)] for row in self._table_labels]

    def table_width(self) -> int:
        """Width the preset table takes now, in pixels (0 without presets)."""
        return self.table.geometry().width() if self._table_labels else 0

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snapshot) -> None:
        budget = snapshot.budget or {}
        settings = snapshot.settings or {}
        key = (snapshot.segment, repr(sorted(budget.items(), key=lambda kv: kv[0])), repr(settings))
        if key == self._key:
            return
        self._key = key
        if not budget:
            self.show_message("The budget appears with the first snapshot of a run.")
            return
        self.hide_message()
        self.setting_label.setText(describe_setting(settings))
        trainable = budget.get("trainable_params")
        base = budget.get("base_params")
        if base is None and budget.get("total_params") is not None and trainable is not None:
            base = budget["total_params"] - (0 if settings.get("method") == "full" else trainable)
        self.trainable.set(
            format_count(trainable),
            f"{format_short(trainable)} of {format_short(base)} parameters" if base else format_short(trainable),
        )
        self.share.set(format_share(budget.get("share")), "trainable / base model")
        self.storage.set(
            format_bytes(budget.get("storage_bytes_fp16")), f"{format_bytes(budget.get('storage_bytes_fp32'))} in fp32"
        )
        self.optimizer.set(format_bytes(budget.get("optimizer_bytes")), "2 moments + gradient, fp32")
        presets = budget.get("presets")
        if presets is None:
            presets = price_presets(settings)
        self._fill_presets(presets or {})
        self.draw_count += 1

    def _fill_presets(self, presets: dict) -> None:
        header = [name for name, _ in COLUMNS]
        rows, short_rows = [header], [header]
        for name, b in presets.items():
            b = b or {}
            model = PRESET_NAMES.get(name, name)
            trainable = b.get("trainable_params")
            share = format_share(b.get("share"))
            rows.append(
                [
                    model,
                    format_count(trainable),
                    share,
                    format_bytes(b.get("storage_bytes_fp16")),
                    format_bytes(b.get("optimizer_bytes")),
                ]
            )
            short_rows.append([model, format_short(trainable), share, rows[-1][3], rows[-1][4]])
        if len(rows) == 1:
            rows = short_rows = []
        self._rows, self._short_rows = rows, short_rows
        self.presets_title.setVisible(bool(rows))
        shape = [len(r) for r in rows]
        if shape != [len(r) for r in self._table_labels]:
            for row in self._table_labels:
                for label in row:
                    self.table.removeWidget(label)
                    label.deleteLater()
            self._table_labels = []
            for i, row in enumerate(rows):
                labels = []
                for j, _ in enumerate(row):
                    label = QtWidgets.QLabel(self._table_parent)
                    align = QtCore.Qt.AlignmentFlag.AlignLeft if j == 0 else QtCore.Qt.AlignmentFlag.AlignRight
                    label.setAlignment(align | QtCore.Qt.AlignmentFlag.AlignVCenter)
                    if i == 0:
                        label.setToolTip(COLUMNS[j][1])
                    self.table.addWidget(label, i, j)
                    labels.append(label)
                self._table_labels.append(labels)
            self._style_table()
        self._show_table()
        self._fit()

    def _style_table(self) -> None:
        s = self.style_
        for i, row in enumerate(self._table_labels):
            for label in row:
                label.setFont(s.font(10.5, bold=(i == 0), mono=(i > 0)))
                label.setStyleSheet(f"color: {self._muted()};" if i == 0 else "")

    def _muted(self) -> str:
        """Text colour halfway between the palette's text and window colours (secondary text)."""
        pal = self.palette()
        a, b = pal.color(pal.ColorRole.WindowText), pal.color(pal.ColorRole.Window)
        return (
            f"rgb({(a.red() * 3 + b.red() * 2) // 5}, {(a.green() * 3 + b.green() * 2) // 5}, "
            f"{(a.blue() * 3 + b.blue() * 2) // 5})"
        )

    def _clear(self) -> None:
        self._key = None

    def _apply_style(self) -> None:
        s = self.style_
        for card in (self.trainable, self.share, self.storage, self.optimizer):
            card.caption.setFont(s.font(9))
            card.caption.setStyleSheet(f"color: {self._muted()};")
            card.value.setFont(s.font(17, bold=True))
            card.detail.setFont(s.font(8.5))
            card.detail.setStyleSheet(f"color: {self._muted()};")
        self.setting_label.setFont(s.font(10))
        self.presets_title.setFont(s.font(10, bold=True))
        self._style_table()
        self._fit()
        self._key = None
