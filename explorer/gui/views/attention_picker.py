"""Which prefix layers and heads the attention grid shows: two short text fields ("Layers", "Heads")
that take lists and ranges like `0-3,30,31`, `all`, or nothing (the default subset).

A 7B model has 32 layers x 32 heads and a 70B one 80 x 64: every map at once is thousands of tiny
squares (and ~100 MB a snapshot), so the grid shows a subset and the user says which; the rules
(what the text means, the default, the limit) are explorer.schema.attention_choice's, which the
engine follows to send only those maps. Layers are named by their number in the model (L24 is the
model's layer 24), heads by their index; the numbers a user types stay chosen through new snapshots
and new segments while they still exist.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6 import QtCore, QtWidgets

from explorer.schema.attention_choice import chosen, parse_choice
from explorer.schema.format import format_ranges


class AttentionPicker(QtWidgets.QWidget):
    """The "Layers" and "Heads" fields. `set_available(layers, heads)` with each snapshot's prefix
    layers and head count; `selection()` is what to show; `changed` when the user picks another."""

    changed = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._layers_available: tuple[int, ...] = ()
        self._heads_available: tuple[int, ...] = ()
        # what the user asked for (None: the default subset); kept as numbers, not rows, so that it
        # means the same model layers when the prefix layers change
        self._layers_asked: tuple[int, ...] | None = None
        self._heads_asked: tuple[int, ...] | None = None
        self._error = ""
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.layers_edit = self._field(
            "Layers", "Model layers to show: e.g. 24-31 or 0-3,30,31; all; empty: the deepest"
        )
        self.heads_edit = self._field("Heads", "Heads to show: e.g. 0-7 or 0,5,9; all; empty: the first")
        self.error_label = QtWidgets.QLabel(self)
        self.error_label.setObjectName("attention_picker_error")
        self.error_label.setProperty("role", "error")  # the window's style sheet colours it as the controls' errors
        self.error_label.setMinimumWidth(1)  # a long message is cut, never widens the dock
        self.error_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        lay.addWidget(self.error_label, 1)

    def _field(self, caption: str, tip: str) -> QtWidgets.QLineEdit:
        label = QtWidgets.QLabel(caption, self)
        edit = QtWidgets.QLineEdit(self)
        edit.setToolTip(tip)
        label.setToolTip(tip)
        edit.setMaximumWidth(edit.fontMetrics().horizontalAdvance("0-3,30,31,40") + 16)
        edit.setPlaceholderText("default")
        edit.editingFinished.connect(self._edited)
        self.layout().addWidget(label)
        self.layout().addWidget(edit)
        return edit

    # ---- state ------------------------------------------------------------------------------------
    def set_available(self, layers: Sequence[int], n_heads: int) -> None:
        """The prefix layers and heads the snapshot has; the fields' text follows what is shown."""
        self._layers_available = tuple(sorted(set(int(v) for v in layers)))
        self._heads_available = tuple(range(int(n_heads)))
        self._show_text()

    def selection(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(model layers, heads) to show, ascending: what was asked that is still here, else the default."""
        return (
            chosen(self._layers_asked, self._layers_available, deepest=True),
            chosen(self._heads_asked, self._heads_available, deepest=False),
        )

    def head_count(self) -> int:
        return len(self._heads_available)

    def asked(self) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
        """(layers, heads) the user asked for; None where the default subset applies."""
        return self._layers_asked, self._heads_asked

    def adopt(self, layers, heads) -> None:
        """Take a choice made elsewhere (the run's settings: a saved choice, another window's) as if
        asked here, without emitting `changed`."""
        self._layers_asked = None if layers is None else tuple(sorted(set(int(v) for v in layers)))
        self._heads_asked = None if heads is None else tuple(sorted(set(int(v) for v in heads)))
        self._show_text(force=True)

    def error(self) -> str:
        """The one-line message about the last text that could not be used ('' when none)."""
        return self._error

    def choose(self, layers: str | None = None, heads: str | None = None) -> str:
        """As if the user typed these texts and pressed Enter (None leaves a field); the error, or ''."""
        if layers is not None:
            self.layers_edit.setText(layers)
        if heads is not None:
            self.heads_edit.setText(heads)
        self._edited()
        return self._error

    def _edited(self) -> None:
        try:
            layers = parse_choice(self.layers_edit.text(), self._layers_available, "Layers")
            heads = parse_choice(self.heads_edit.text(), self._heads_available, "Heads")
        except ValueError as exc:
            self._set_error(str(exc))
            self._show_text(force=True)  # the fields go back to what is shown: the previous selection stays
            return
        self._set_error("")
        if (layers, heads) != (self._layers_asked, self._heads_asked):
            before = self.selection()
            self._layers_asked, self._heads_asked = layers, heads
            self._show_text(force=True)
            if self.selection() != before:
                self.changed.emit()

    def _set_error(self, text: str) -> None:
        self._error = text
        self.error_label.setText(text)
        self.error_label.setToolTip(text)

    def _show_text(self, force: bool = False) -> None:
        """The fields say what is shown; a snapshot (not `force`) leaves a field being typed in alone."""
        layers, heads = self.selection()
        for edit, asked, shown in (
            (self.layers_edit, self._layers_asked, layers),
            (self.heads_edit, self._heads_asked, heads),
        ):
            text = "" if asked is None else format_ranges(shown).replace("–", "-").replace(" ", "")
            if edit.text() != text and (force or not edit.hasFocus()):
                edit.setText(text)
            edit.setPlaceholderText(format_ranges(shown).replace("–", "-").replace(" ", "") if shown else "default")
