"""The stage of talk mode: a black sheet over the whole window with the scene's views, each in a
panel under a large title, arranged by the scene's layout (grid, row, column, or focus: the first view
large, 3/5 of the width, the others stacked beside it), and the caption strip at the bottom (the
scene's title and caption, a scene counter in its corner). A panel whose plots need the room can take
a larger share of its column (`grow`, used by talk mode's fit)."""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from explorer.schema.deck import Scene

ACCENT = "#E69F00"  # Okabe-Ito orange: the scene title's rule, readable on black
EVEN_STRETCH = 4  # the panels' share of their column, in steps of a quarter of an even share ...
MAX_STRETCH = 12  # ... up to 3 times its neighbours' height for a panel whose plots need the room


class Panel(QWidget):
    """One view on the stage, under its title."""

    def __init__(self, title: str, view: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("talk_panel")
        self.view = view
        # The layout's stretch decides the sizes, not the views' minimum sizes (on a small projector a
        # small view is clipped rather than the large one squeezed)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)
        lay = QVBoxLayout(self)
        lay.setSizeConstraint(QVBoxLayout.SetNoConstraint)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(2)
        self.title = QLabel(title, self)
        self.title.setObjectName("talk_panel_title")
        lay.addWidget(self.title)
        lay.addWidget(view, 1)
        view.show()

    def set_scale(self, scale: float) -> None:
        _style_label(self.title, 10 * scale, "#d8d8d8", bold=True)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        """No: a view's word-wrapped caption would make its panel's height-for-width the whole column's
        height (the stretch factors, not the content, share the stage)."""
        return False


def _colour(widget: QWidget, colour: str, role=QPalette.WindowText) -> None:
    pal = widget.palette()
    pal.setColor(role, QColor(colour))
    widget.setPalette(pal)


def _style_label(label: QLabel, points: float, colour: str, bold: bool = False) -> None:
    font = QFont(label.font())
    font.setPointSizeF(max(6.0, points))
    font.setBold(bold)
    label.setFont(font)
    _colour(label, colour)


class Stage(QWidget):
    """A black sheet over the whole window: the scene's views, and the caption strip at the bottom."""

    resized = Signal()  # with the window (e.g. once the window manager has made it full screen)

    def __init__(self, host: QWidget, scale: float):
        super().__init__(host)
        self.setObjectName("talk_stage")
        self.setAutoFillBackground(True)
        pal = self.palette()
        pal.setColor(QPalette.Window, QColor("#000000"))
        pal.setColor(QPalette.WindowText, QColor("#ffffff"))
        self.setPalette(pal)
        self.scale = scale
        self.panels: list[Panel] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 8, 10, 6)
        outer.setSpacing(6)
        self.area = QWidget(self)
        outer.addWidget(self.area, 1)
        self.rule = QFrame(self)  # the accent line above the caption
        self.rule.setObjectName("talk_rule")
        self.rule.setFixedHeight(3)
        self.rule.setAutoFillBackground(True)
        _colour(self.rule, ACCENT, QPalette.Window)
        outer.addWidget(self.rule, 0)
        self.strip = QFrame(self)
        self.strip.setObjectName("talk_caption_strip")
        strip = QHBoxLayout(self.strip)
        strip.setContentsMargins(14, 8, 14, 6)
        strip.setSpacing(24)
        texts = QVBoxLayout()
        texts.setSpacing(4)
        self.title = QLabel(self.strip)
        self.title.setObjectName("talk_title")
        self.title.setTextFormat(Qt.PlainText)
        self.caption = QLabel(self.strip)
        self.caption.setTextFormat(Qt.PlainText)
        self.caption.setObjectName("talk_caption")
        self.caption.setWordWrap(True)
        self.caption.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        texts.addWidget(self.title)
        texts.addWidget(self.caption)
        strip.addLayout(texts, 1)
        self.counter = QLabel(self.strip)
        self.counter.setObjectName("talk_counter")
        self.counter.setAlignment(Qt.AlignRight | Qt.AlignBottom)
        self.counter.setToolTip(
            "Space / PageDown: next scene · PageUp: previous · B: blank · Esc: leave · F1: every key"
        )
        strip.addWidget(self.counter, 0, Qt.AlignRight | Qt.AlignBottom)
        outer.addWidget(self.strip, 0)
        self.set_scale(scale)
        host.installEventFilter(self)
        self.setGeometry(host.rect())

    def set_scale(self, scale: float) -> None:
        """Type sizes by `scale` (fonts and palettes set directly: a style sheet here would stop the
        views' own fonts from reaching their labels)."""
        self.scale = scale
        _style_label(self.title, 15 * scale, "#ffffff", bold=True)
        _style_label(self.caption, 11.5 * scale, "#ffffff")
        _style_label(self.counter, 9 * scale, "#9a9a9a")
        for panel in self.panels:
            panel.set_scale(scale)

    def set_caption(self, scene: Scene, index: int, total: int) -> None:
        self.title.setText(scene.title)
        self.caption.setText(scene.caption)
        self.counter.setText(f"{index + 1} / {total}")

    def take_views(self) -> list[QWidget]:
        """Empty the stage; returns the views that were on it (their panels are deleted)."""
        views = []
        for panel in self.panels:
            views.append(panel.view)
            panel.view.setParent(None)
            panel.hide()
            panel.deleteLater()
        self.panels = []
        old = self.area
        self.area = QWidget(self)
        self.layout().replaceWidget(old, self.area)
        old.hide()
        old.deleteLater()
        return views

    def show_views(self, items: list[tuple[str, QWidget]], layout: str) -> None:
        """Put `items` [(title, view)] on the (empty) stage, arranged by `layout`."""
        self.panels = [Panel(title, view) for title, view in items]
        for panel in self.panels:
            panel.set_scale(self.scale)
        panels = self.panels
        n = len(panels)
        if layout == "focus" and n > 1:
            row = QHBoxLayout(self.area)
            row.setContentsMargins(0, 0, 0, 0)
            row.setSpacing(8)
            row.addWidget(panels[0], 3)  # 3 : 2 - a square heatmap uses the height anyway
            col = QVBoxLayout()
            col.setSpacing(8)
            for p in panels[1:]:
                col.addWidget(p, 1)
            row.addLayout(col, 1)
        elif layout in ("row", "column"):
            line = (QHBoxLayout if layout == "row" else QVBoxLayout)(self.area)
            line.setContentsMargins(0, 0, 0, 0)
            line.setSpacing(8)
            for p in panels:
                line.addWidget(p, 1)
        else:  # grid (and focus with one view)
            grid = QGridLayout(self.area)
            grid.setContentsMargins(0, 0, 0, 0)
            grid.setSpacing(8)
            cols = max(1, math.ceil(math.sqrt(n)))
            rows = max(1, math.ceil(n / cols))
            for i, p in enumerate(panels):
                r, c = divmod(i, cols)
                span = cols - c if i == n - 1 else 1  # the last one fills its row
                grid.addWidget(p, r, c, 1, span)
            for c in range(cols):
                grid.setColumnStretch(c, 1)
            for r in range(rows):
                grid.setRowStretch(r, 1)
        self.area.show()
        for panel in panels:
            panel.show()
        self.area.layout().activate()  # sizes now: the cut is one frame, not two

    def even(self) -> None:
        """Every panel its even share again (undoes `grow`)."""
        layouts = [self.area.layout()] if self.area.layout() is not None else []
        while layouts:
            layout = layouts.pop()
            if isinstance(layout, QGridLayout):
                for row in range(layout.rowCount()):
                    layout.setRowStretch(row, EVEN_STRETCH)
            for i in range(layout.count()):
                item = layout.itemAt(i)
                if item.layout() is not None:
                    layouts.append(item.layout())
                elif isinstance(layout, QVBoxLayout) and isinstance(item.widget(), Panel):
                    layout.setStretch(i, EVEN_STRETCH)

    def grow(self, view: QWidget, step: int = 1) -> bool:
        """A larger share (`step` quarters of an even share; negative: smaller) of its column's height
        for the panel of `view`, from an even share up to MAX_STRETCH; False when it cannot (a row of
        panels, or at the most already). Talk mode keeps a step only when it helps (TalkMode._grow)."""
        panel = next((p for p in self.panels if p.view is view), None)
        found = None if panel is None or self.area.layout() is None else _place_of(self.area.layout(), panel)
        if found is None:
            return False
        layout, index = found
        if isinstance(layout, QGridLayout):  # a grid's panel grows with its row
            row = layout.getItemPosition(index)[0]
            others = [layout.rowStretch(r) for r in range(layout.rowCount()) if r != row]
            wanted = layout.rowStretch(row) + step
        elif isinstance(layout, QVBoxLayout):
            others = [layout.stretch(i) for i in range(layout.count()) if i != index]
            wanted = layout.stretch(index) + step
        else:
            return False
        if not others or not EVEN_STRETCH <= wanted <= MAX_STRETCH:
            return False
        if isinstance(layout, QGridLayout):
            layout.setRowStretch(row, wanted)
        else:
            layout.setStretch(index, wanted)
        layout.activate()
        return True

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if obj is self.parentWidget() and event.type() == QEvent.Resize:
            self.setGeometry(obj.rect())
            self.resized.emit()
        return False


def _place_of(layout, widget: QWidget):
    """(the layout that holds `widget` directly, its index there), searching nested layouts; or None."""
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is widget:
            return layout, i
        if item.layout() is not None:
            found = _place_of(item.layout(), widget)
            if found is not None:
                return found
    return None
