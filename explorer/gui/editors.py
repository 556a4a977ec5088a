"""Editors of the settings panel besides the stock ones: a spin box for settings spanning decades, the
layers text, and what the keyboard does in a number field.

A number field has no use for Space, and after Enter its number is committed: the window's keys
belong to the window again. Without this, Space after Enter replaced the selected number by a blank
instead of playing.
"""

from __future__ import annotations

import math
import re

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox

from explorer.schema.format import format_ranges, parse_ranges


class NumberFieldKeys(QObject):
    """Event filter of a number field (a spin box and its line edit): Space is not claimed (the window's
    shortcut, Play / pause, gets it; nothing is typed); Enter commits the number, then the field gives
    the keyboard back."""

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt API
        kind = event.type()
        if kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and event.key() == Qt.Key.Key_Space:
            event.ignore()
            return True  # not the field's: the shortcut map hands Space to the window
        if kind == QEvent.Type.KeyPress and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            box = watched if isinstance(watched, QAbstractSpinBox) else watched.parent()
            if isinstance(box, QAbstractSpinBox):
                QTimer.singleShot(0, box, box.clearFocus)  # after the box has taken the number
        return False


def number_field(box: QAbstractSpinBox) -> QAbstractSpinBox:
    """Give `box` the keys of a number field (NumberFieldKeys); returns it."""
    keys = NumberFieldKeys(box)
    box.installEventFilter(keys)
    box.lineEdit().installEventFilter(keys)
    return box


class LogSpinBox(QDoubleSpinBox):
    """A float box for settings spanning decades: shows '3e-03', steps along a ladder (1, 2, 5, 10...)."""

    def __init__(self, ladder=(1.0, 2.0, 5.0), parent=None):
        super().__init__(parent)
        self._ladder = ladder
        self.setDecimals(12)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt API
        return f"{value:.4g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt API
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip()
        if t == "" or re.fullmatch(r"[0-9.eE+-]*", t) is None:
            return QValidator.Invalid if t else QValidator.Intermediate, text, pos
        try:
            v = float(t)
        except ValueError:
            return QValidator.Intermediate, text, pos
        if not math.isfinite(v) or not (self.minimum() <= v <= self.maximum()):
            return QValidator.Intermediate, text, pos
        return QValidator.Acceptable, text, pos

    def _ladder_values(self) -> list[float]:
        lo, hi = self.minimum(), self.maximum()
        out = []
        for e in range(math.floor(math.log10(max(lo, 1e-30))) - 1, math.ceil(math.log10(max(hi, 1e-30))) + 1):
            for m in self._ladder:
                v = float(f"{m * 10.0**e:.6g}")
                if lo <= v <= hi:
                    out.append(v)
        return sorted(set(out))

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt API
        values = self._ladder_values()
        if not values:
            return
        v = self.value()
        if steps > 0:
            bigger = [x for x in values if x > v * (1 + 1e-9)]
            idx = min(steps - 1, len(bigger) - 1)
            new = bigger[idx] if bigger else values[-1]
        else:
            smaller = [x for x in values if x < v * (1 - 1e-9)]
            idx = max(len(smaller) + steps, 0)
            new = smaller[idx] if smaller else values[0]
        self.setValue(new)
        self.editingFinished.emit()


def parse_layers(text: str) -> tuple[int, ...] | None:
    """'' or 'all' -> None (every layer); '0,2,4-6' -> (0, 2, 4, 5, 6)."""
    text = text.strip().lower()
    if text in ("", "all"):
        return None
    out: list[int] = []
    for a, b in parse_ranges(text, "layers", max_span=4096):
        out.extend(range(a, b + 1))
    return tuple(sorted(set(out))) or None


def format_layers(value) -> str:
    return format_ranges(value or (), dash="-", sep=",", empty="")
