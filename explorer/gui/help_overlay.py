"""F1: a translucent sheet over the window listing every shortcut (from `shortcuts.SHORTCUTS`, plus any
that another part of the app registers, e.g. talk mode's scene keys). Esc, F1 or a click closes it."""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from explorer.gui.shortcuts import SHORTCUTS, native_text
from explorer.gui.theme import current_theme


class HelpOverlay(QWidget):
    closed = Signal()

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("help_overlay")
        self.setFocusPolicy(Qt.StrongFocus)
        self.extra: list[tuple[str, str, str]] = []  # (group, keys text, description)
        outer = QVBoxLayout(self)
        outer.setAlignment(Qt.AlignCenter)
        self.card = QFrame(self)
        self.card.setObjectName("help_card")
        card_layout = QVBoxLayout(self.card)
        card_layout.setContentsMargins(28, 20, 28, 20)
        self.label = QLabel(self.card)
        self.label.setObjectName("help_text")
        self.label.setTextFormat(Qt.RichText)
        card_layout.addWidget(self.label)
        outer.addWidget(self.card, 0, Qt.AlignCenter)
        parent.installEventFilter(self)
        self.hide()

    def add_entries(self, group: str, entries: list[tuple[str, str]]) -> None:
        """Register more shortcuts to list: [(keys text, description)]."""
        self.extra.extend((group, k, d) for k, d in entries)

    def rows(self) -> list[tuple[str, str, str]]:
        out = [(s.group, native_text(s.keys), s.text) for s in SHORTCUTS]
        out.extend(self.extra)
        return out

    def _html(self) -> str:
        t = current_theme()
        groups: dict[str, list[tuple[str, str]]] = {}
        for group, keys, text in self.rows():
            groups.setdefault(group, []).append((keys, text))
        parts = [
            "<div style='font-size:15pt; font-weight:600; margin-bottom:8px'>Keyboard shortcuts</div>",
            "<table cellspacing='0' cellpadding='4'>",
        ]
        for group, items in groups.items():
            parts.append(
                f"<tr><td colspan='2' style='color:{t.dim_text}; padding-top:10px'>"
                f"<b>{html.escape(group)}</b></td></tr>"
            )
            for keys, text in items:
                parts.append(
                    f"<tr><td style='padding-right:24px'><span style='font-family:monospace; "
                    f"font-weight:600; color:{t.highlight}'>{html.escape(keys)}</span></td>"
                    f"<td>{html.escape(text)}</td></tr>"
                )
        parts.append("</table>")
        parts.append(f"<div style='color:{t.dim_text}; margin-top:10px'>Esc, F1 or a click closes this.</div>")
        return "".join(parts)

    def open(self) -> None:
        t = current_theme()
        self.card.setStyleSheet(
            f"#help_card {{ background: {t.window}; border: 1px solid {t.dim_text};"
            f" border-radius: 8px; }} QLabel {{ color: {t.text}; font-size: 11pt; }}"
        )
        self.label.setText(self._html())
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.show()
        self.setFocus(Qt.ShortcutFocusReason)

    def close_overlay(self) -> None:
        if self.isVisible():
            self.hide()
            self.closed.emit()

    def toggle(self) -> None:
        if self.isVisible():
            self.close_overlay()
        else:
            self.open()

    def paintEvent(self, event):  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0, 150))

    def mousePressEvent(self, event):  # noqa: N802 - Qt API
        self.close_overlay()

    def keyPressEvent(self, event):  # noqa: N802 - Qt API
        if event.key() in (Qt.Key_Escape, Qt.Key_F1):
            self.close_overlay()
            return
        super().keyPressEvent(event)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if obj is self.parentWidget() and event.type() == QEvent.Resize and self.isVisible():
            self.setGeometry(obj.rect())
        return False
