"""What the running setting costs: trainable parameters, share of the model, storage, optimizer memory,
and the same setting priced on LLaMA-7B / 13B / 70B (the seed's 4.2M / 8.4M / 1.2M table).

Big numbers with thousands separators; a small table for the presets. Redrawn only when the budget
or the setting changes (once per segment), so it costs nothing at 30 Hz.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from explorer.gui.views.base import View, format_bytes, format_count, format_short

PRESET_NAMES = {"llama-7b": "LLaMA-7B", "llama-13b": "LLaMA-13B", "llama-2-70b": "LLaMA-2-70B",
                "llama-70b": "LLaMA-70B"}
METHOD_NAMES = {"lora": "LoRA", "prefix": "zero-init prefix", "lora+prefix": "LoRA + zero-init prefix",
                "full": "full fine-tuning"}


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
        text = f"LoRA r = {settings.get('rank', '?')}, α = {settings.get('alpha', '?'):g}" \
            if isinstance(settings.get("alpha"), (int, float)) else f"LoRA r = {settings.get('rank', '?')}"
        if settings.get("use_rslora"):
            text += " (rsLoRA)"
        if settings.get("use_dora"):
            text += " + DoRA"
        if settings.get("scenario") == "matrix":
            text += f" on one {settings.get('size_out', '?')}×{settings.get('size_in', '?')} matrix"
        else:
            targets = settings.get("targets") or []
            layers = settings.get("layers")
            text += f" on {', '.join(targets)}" + (", all layers" if not layers else
                                                    f", layers {', '.join(map(str, layers))}")
        parts.append(text)
    if method in ("prefix", "lora+prefix"):
        parts.append(f"prefix K = {settings.get('prefix_len', '?')} on the top L = {settings.get('prefix_layers', '?')} "
                     f"layers, gates per {settings.get('gate_shape', 'head')} ({settings.get('gate_fn', '')})")
    if method == "full":
        parts.append("full fine-tuning: every weight trains")
    return " + ".join(parts)


def price_presets(settings: dict) -> dict:
    """The setting priced on the LLaMA presets, for budgets that arrive without a "presets" entry.

    Pure arithmetic on the snapshot's settings (explorer.core.budget), nothing is allocated. Empty for
    the matrix scenario (one matrix is no Llama setting) or when a setting does not fit a preset."""
    if not settings or settings.get("scenario") == "matrix":
        return {}
    try:
        from explorer.core.budget import PRESETS, compute_budget
    except ImportError:          # pragma: no cover - the core ships with the app
        return {}
    out = {}
    for name, config in PRESETS.items():
        try:
            out[name] = compute_budget(
                config, settings.get("method", "lora"), rank=int(settings.get("rank", 8)),
                targets=tuple(settings.get("targets") or ("q_proj", "v_proj")), layers=settings.get("layers"),
                prefix_len=int(settings.get("prefix_len", 10)), prefix_layers=int(settings.get("prefix_layers", 30)),
                gate_shape=settings.get("gate_shape", "head")).to_dict()
        except (ValueError, TypeError, KeyError):
            continue
    return out


class _Card(QtWidgets.QFrame):
    def __init__(self, caption: str, parent=None):
        super().__init__(parent)
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        lay.setSpacing(0)
        self.caption = QtWidgets.QLabel(caption, self)
        self.value = QtWidgets.QLabel("–", self)
        self.value.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail = QtWidgets.QLabel("", self)
        for w in (self.caption, self.value, self.detail):
            lay.addWidget(w)

    def set(self, value: str, detail: str = "") -> None:
        self.value.setText(value)
        self.detail.setText(detail)


class BudgetView(View):
    view_id = "budget"
    title = "Budget"
    formula_tooltip = ("LoRA trains r·(in + out) per adapted matrix; prefix trains L·(K·C + gates); storage = 2 bytes "
                       "(fp16) or 4 (fp32) per parameter; Adam = 12 bytes per trainable parameter")

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
        self._cards.setSpacing(6)
        self.trainable = _Card("Trainable parameters", content)
        self.share = _Card("Share of the model", content)
        self.storage = _Card("Storage (fp16)", content)
        self.optimizer = _Card("Optimizer memory (Adam)", content)
        self._card_columns = 0
        self._arrange_cards(2)
        outer.addLayout(self._cards)
        self.presets_title = QtWidgets.QLabel("The same setting on", content)
        outer.addWidget(self.presets_title)
        self.table = QtWidgets.QGridLayout()
        self.table.setHorizontalSpacing(14)
        self.table.setVerticalSpacing(2)
        outer.addLayout(self.table)
        outer.addStretch(1)
        self._table_labels: list[list[QtWidgets.QLabel]] = []
        self._table_parent = content
        scroll = QtWidgets.QScrollArea(self)      # big talk-mode fonts scroll instead of being squeezed
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        self.set_content(scroll)
        self._restyle()

    def _arrange_cards(self, columns: int) -> None:
        """Four cards in one row when the view is wide enough, else two by two."""
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

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        need = sum(card.sizeHint().width() for card in (self.trainable, self.share, self.storage, self.optimizer))
        self._arrange_cards(4 if event.size().width() >= need + 40 else 2)

    # ---- public ----------------------------------------------------------------------------------
    def values(self) -> dict[str, str]:
        """The big numbers shown now, by card."""
        return {"trainable": self.trainable.value.text(), "share": self.share.value.text(),
                "storage": self.storage.value.text(), "optimizer": self.optimizer.value.text()}

    def preset_rows(self) -> list[list[str]]:
        """The preset table as text: [model, trainable, share, fp16 storage, optimizer] per row."""
        return [[label.text() for label in row] for row in self._table_labels[1:]]

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
        self.trainable.set(format_count(trainable), f"{format_short(trainable)} of {format_short(base)} "
                                                    "parameters" if base else format_short(trainable))
        self.share.set(format_share(budget.get("share")), "trainable / base model")
        self.storage.set(format_bytes(budget.get("storage_bytes_fp16")),
                         f"{format_bytes(budget.get('storage_bytes_fp32'))} in fp32")
        self.optimizer.set(format_bytes(budget.get("optimizer_bytes")), "2 moments + gradient, fp32")
        presets = budget.get("presets")
        if presets is None:
            presets = price_presets(settings)
        self._fill_presets(presets or {})
        self.draw_count += 1

    def _fill_presets(self, presets: dict) -> None:
        rows = [["Model", "Trainable", "Share", "fp16", "Optimizer"]]
        for name, b in presets.items():
            b = b or {}
            rows.append([PRESET_NAMES.get(name, name), format_count(b.get("trainable_params")),
                         format_share(b.get("share")), format_bytes(b.get("storage_bytes_fp16")),
                         format_bytes(b.get("optimizer_bytes"))])
        if len(rows) == 1:
            rows = []
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
                    self.table.addWidget(label, i, j)
                    labels.append(label)
                self._table_labels.append(labels)
            self._style_table()
        for labels, row in zip(self._table_labels, rows):
            for label, text in zip(labels, row):
                label.setText(text)

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
        return f"rgb({(a.red() * 3 + b.red() * 2) // 5}, {(a.green() * 3 + b.green() * 2) // 5}, " \
               f"{(a.blue() * 3 + b.blue() * 2) // 5})"

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
        self._key = None
