"""What changed, token by token: a fixed held-out text (a review comment and its diff from the domain
corpus's held-out split), each token on a cell coloured by how much more (or less) likely the adapted
model finds it than the frozen base model: Δ = log p_adapted(token) − log p_base(token), in nats.

Diverging colours centred on 0 (the map's neutral centre is "unchanged"), a symmetric scale ±m with
m following the 95th percentile of |Δ| (it jumps up at once, falls back slowly; held in talk mode),
and a legend. The percentile, not the maximum: one token the base model never expects (a "+" opening
a diff line: 12 nats) would otherwise leave every other token pale; beyond ±m the map's ends are
drawn and the legend says "≥". Under
a zero-init adapter every Δ is exactly 0 at step 0, so the text sits on plain paper until training
moves it: learning shows at once, even on a tiny model, long before its samples read well. Hovering
a token tells its Δ and the factor p_adapted / p_base.

Data: `snapshot.token_delta` (the engine scores the text on the device at its own cadence; see
explorer/schema/snapshot.py). Redrawn when its step changes or the view is resized.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.base import View
from explorer.schema.format import format_age

FLOOR_NATS = 0.05  # the scale never narrows below ±0.05 nats: round-off noise stays pale
SCALE_QUANTILE = 0.95
POINT_SIZES = (14.0, 13.0, 12.0, 11.0, 10.0, 9.0, 8.0, 7.0)  # the largest that fits the view is used
SHOWN = {"\n": "⏎", "\t": "→"}  # whitespace that gets a glyph (a space is its coloured cell alone)


def cell_colours(delta: np.ndarray, m: float, map_name: str) -> np.ndarray:
    """(n, 4) uint8 RGBA: Δ on the diverging map over [-m, m], 0 on its centre, beyond it its ends."""
    table = colormaps.lut(map_name)
    t = np.clip((np.asarray(delta, np.float64) / max(m, 1e-12) + 1.0) / 2.0, 0.0, 1.0)
    return table[np.round(t * (len(table) - 1)).astype(np.int64)]


def ink_for(rgba) -> QtGui.QColor:
    """Black or white text, whichever reads on this cell (by its luminance)."""
    r, g, b = (int(x) for x in rgba[:3])
    return QtGui.QColor("#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff")


class _TokenCanvas(QtWidgets.QWidget):
    """The text as monospace cells, wrapped at the widget's width, at the largest size that fits."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setMinimumSize(120, 60)
        self.pieces: list[str] = []
        self.delta = np.zeros(0, np.float32)  # one value per piece; the first (context) is 0
        self.colours = np.zeros((0, 4), np.uint8)
        self.paper = QtGui.QColor("#f7f7f7")
        self.font_scale = 1.0
        self._cells: list[tuple[QtCore.QRectF, int]] = []
        self._font = QtGui.QFont()
        self._laid_out_for: tuple | None = None

    def set_text(self, pieces: list[str], delta: np.ndarray, colours: np.ndarray, paper: QtGui.QColor) -> None:
        if pieces != self.pieces:
            self._laid_out_for = None
        self.pieces, self.delta, self.colours, self.paper = pieces, delta, colours, paper
        self.update()

    def set_font_scale(self, scale: float) -> None:
        self.font_scale = float(scale)
        self._laid_out_for = None
        self.update()

    # ---- layout ------------------------------------------------------------------------------
    def _layout(self, font: QtGui.QFont, width: float) -> tuple[list[tuple[QtCore.QRectF, int]], float]:
        fm = QtGui.QFontMetricsF(font)
        cw, lh, pad = fm.horizontalAdvance("M"), fm.height() + 3, 6.0
        x, y, cells = pad, pad, []
        for i, piece in enumerate(self.pieces):
            n = max(1, len(piece)) if piece != "\n" else 1
            if x + n * cw > width - pad and x > pad:
                x, y = pad, y + lh
            cells.append((QtCore.QRectF(x, y, n * cw, lh), i))
            x += n * cw
            if piece == "\n":
                x, y = pad, y + lh
        return cells, y + lh + pad

    def _relayout(self) -> None:
        key = (self.width(), self.height(), self.font_scale, len(self.pieces))
        if key == self._laid_out_for:
            return
        self._laid_out_for = key
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QtGui.QFont.StyleHint.TypeWriter)
        font.setFixedPitch(True)
        for points in POINT_SIZES:
            font.setPointSizeF(points * self.font_scale)
            cells, height = self._layout(font, self.width())
            if height <= self.height():
                break
        self._font, self._cells = font, cells

    @property
    def cells(self) -> list[tuple[QtCore.QRectF, int]]:
        """(where, piece index) of every piece, laid out for the widget's size now."""
        self._relayout()
        return self._cells

    # ---- painting and hovering -----------------------------------------------------------------
    def paintEvent(self, _event) -> None:
        cells = self.cells
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), self.paper)
        painter.setFont(self._font)
        for rect, i in cells:
            rgba = self.colours[i] if i < len(self.colours) else None
            if rgba is not None:
                painter.fillRect(rect, QtGui.QColor(int(rgba[0]), int(rgba[1]), int(rgba[2])))
            piece = self.pieces[i]
            glyph = SHOWN.get(piece, piece)
            if glyph.strip():
                ink = ink_for(rgba) if rgba is not None else QtGui.QColor("#000000")
                if piece in SHOWN:
                    ink.setAlpha(120)
                painter.setPen(ink)
                painter.drawText(rect, QtCore.Qt.AlignmentFlag.AlignCenter, glyph)
        painter.end()

    def piece_at(self, pos: QtCore.QPointF) -> int | None:
        for rect, i in self.cells:
            if rect.contains(pos):
                return i
        return None

    def mouseMoveEvent(self, event) -> None:
        i = self.piece_at(event.position())
        if i is None or i >= len(self.delta):
            QtWidgets.QToolTip.hideText()
            return
        shown = repr(self.pieces[i])
        if i == 0:
            tip = f"{shown}: the first token, context only (nothing predicts it)"
        else:
            d = float(self.delta[i])
            tip = f"{shown}: Δ log p = {d:+.3f} nats · p_adapted / p_base = ×{math.exp(d):.3g}"
        QtWidgets.QToolTip.showText(event.globalPosition().toPoint(), tip, self)


class _Legend(QtWidgets.QWidget):
    """A horizontal colour bar from −m (less likely) through 0 to +m (more likely)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.map_name = colormaps.DIVERGING
        self.m = FLOOR_NATS
        self.clipped = False  # some |Δ| beyond m: the end labels say ≤ / ≥
        self.ink = QtGui.QColor("#c8ccd2")
        self.setMinimumHeight(34)

    def set_scale(self, m: float, map_name: str, ink: QtGui.QColor, clipped: bool = False) -> None:
        self.m, self.map_name, self.ink, self.clipped = float(m), map_name, ink, bool(clipped)
        fm = QtGui.QFontMetrics(self.font())
        self.setMinimumHeight(fm.height() + 22)
        self.update()

    LEFT, RIGHT = "less likely", "more likely"

    def _side(self) -> int:
        fm = QtGui.QFontMetrics(self.font())
        return max(fm.horizontalAdvance(self.LEFT), fm.horizontalAdvance(self.RIGHT)) + 10

    def bar_rect(self) -> QtCore.QRectF:
        """Where the colour bar is drawn: -m at its left edge, 0 in the middle, +m at its right edge."""
        side = self._side()
        return QtCore.QRectF(side, 2, max(20.0, self.width() - 2 * side), 12)

    def paintEvent(self, _event) -> None:
        painter = QtGui.QPainter(self)
        fm = QtGui.QFontMetrics(self.font())
        left_text, right_text = self.LEFT, self.RIGHT
        side = self._side()
        bar = self.bar_rect()
        gradient = QtGui.QLinearGradient(bar.topLeft(), bar.topRight())
        table = colormaps.lut(self.map_name)
        for k in range(0, len(table), 16):
            r, g, b, _ = (int(x) for x in table[k])
            gradient.setColorAt(k / (len(table) - 1), QtGui.QColor(r, g, b))
        r, g, b, _ = (int(x) for x in table[-1])
        gradient.setColorAt(1.0, QtGui.QColor(r, g, b))
        painter.fillRect(bar, gradient)
        painter.setPen(self.ink)
        painter.drawRect(bar)
        painter.drawText(QtCore.QRectF(0, 0, side - 6, 16), QtCore.Qt.AlignmentFlag.AlignRight, left_text)
        painter.drawText(QtCore.QRectF(bar.right() + 6, 0, side, 16), QtCore.Qt.AlignmentFlag.AlignLeft, right_text)
        lo, hi = ("≤ ", "≥ ") if self.clipped else ("", "")
        ticks = ((bar.left(), f"{lo}−{self.m:.3g}"), (bar.center().x(), "0"), (bar.right(), f"{hi}+{self.m:.3g} nats"))
        for x, text in ticks:
            painter.drawLine(QtCore.QPointF(x, bar.bottom()), QtCore.QPointF(x, bar.bottom() + 3))
            w = fm.horizontalAdvance(text)
            painter.drawText(
                QtCore.QPointF(min(max(0.0, x - w / 2), self.width() - w), bar.bottom() + 4 + fm.ascent()), text
            )
        painter.end()


class TokenView(View):
    view_id = "tokens"
    title = "What changed, token by token"
    formula_tooltip = (
        "a fixed held-out review, each token coloured by Δ = log p_adapted(token) − log p_base(token): "
        "warm = the adapted model finds it more likely, cool = less, neutral = unchanged (exactly, at step 0)"
    )

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.levels = colormaps.SymmetricLevels(floor=FLOOR_NATS)
        self._key = None
        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        top = QtWidgets.QHBoxLayout()
        top.setSpacing(8)
        self.step_label = QtWidgets.QLabel(content)
        self.step_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        top.addWidget(self.step_label)
        self.age_label = QtWidgets.QLabel(content)
        top.addWidget(self.age_label)
        self.summary = QtWidgets.QLabel(content)
        self.summary.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        top.addWidget(self.summary, 1)
        lay.addLayout(top)
        self.canvas = _TokenCanvas(content)
        lay.addWidget(self.canvas, 1)
        self.legend = _Legend(content)
        lay.addWidget(self.legend)
        self.set_content(content)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def scale(self) -> float:
        """m of the symmetric scale ±m the colours are drawn over, in nats (the 95th percentile of
        |Δ|, smoothed over snapshots)."""
        return self.levels.value

    def deltas(self) -> np.ndarray:
        """Δ per token as drawn (the context token's 0 first)."""
        return self.canvas.delta

    def text(self) -> str:
        return "".join(self.canvas.pieces)

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snapshot) -> None:
        data = snapshot.token_delta
        if not data:
            if (snapshot.settings or {}).get("scenario") == "matrix":
                self.show_message("No text in the matrix scenario: the token view scores the language model's text.")
            else:
                self.show_message("The text appears here once the engine has scored it.")
            self._key = None
            return
        step = int(data.get("step", snapshot.step))
        age = format_age(step, snapshot.step)
        if self.age_label.text() != age:
            self.age_label.setText(age)
        key = (snapshot.segment, step, len(data["tokens"]))
        if key == self._key:
            return
        self._key = key
        self.hide_message()
        delta = np.asarray(data["delta"], np.float32)
        finite = np.abs(delta[np.isfinite(delta)])
        m = self.levels.update_max(float(np.quantile(finite, SCALE_QUANTILE)) if finite.size else 0.0)[1]
        pieces = [str(data.get("context", "")), *[str(t) for t in data["tokens"]]]
        shown = np.concatenate([np.zeros(1, np.float32), delta])
        map_name = colormaps.diverging_for(self.style_.high_contrast)
        colours = cell_colours(shown, m, map_name)  # the context's 0 lands on the neutral centre
        centre = colormaps.lut(map_name)[len(colormaps.lut(map_name)) // 2]
        self.canvas.set_text(pieces, shown, colours, QtGui.QColor(*(int(x) for x in centre[:3])))
        self.legend.set_scale(m, map_name, self.style_.color("foreground"), bool(finite.size and finite.max() > m))
        self.step_label.setText(f"step <b>{step:,}</b>")
        self.summary.setText(self._summary(delta))
        self.draw_count += 1

    @staticmethod
    def _summary(delta: np.ndarray) -> str:
        if delta.size == 0:
            return ""
        if not np.any(delta):
            return "<b>no change yet</b>: every token exactly as likely as under the base model"
        more = float((delta > 0).mean())
        return (
            f"mean Δ log p <b>{float(delta.mean()):+.3f}</b> nats/token · "
            f"<b>{more:.0%}</b> of tokens more likely than under the base model"
        )

    def _clear(self) -> None:
        self._key = None
        self.levels.reset()
        self.canvas.set_text([], np.zeros(0, np.float32), np.zeros((0, 4), np.uint8), self.canvas.paper)
        for label in (self.step_label, self.age_label, self.summary):
            label.setText("")

    def _apply_style(self) -> None:
        s = self.style_
        self.levels.hold = s.high_contrast  # talk mode: colours fixed once reached
        self.canvas.set_font_scale(s.font_scale)
        self.step_label.setFont(s.font(11))
        self.age_label.setFont(s.font(10))
        self.age_label.setStyleSheet(f"color: {s.muted};")
        self.summary.setFont(s.font(9.5))
        self.legend.setFont(s.font(9))
        self._key = None
