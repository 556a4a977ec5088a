"""Training and held-out loss against the step, smoothed the way TensorBoard smooths (debiased EMA).

The raw curves are drawn faint behind the smoothed ones; the smoothing weight is 0.6 by default and
adjustable from 0 (raw) to 0.99 with a slider; the y axis can be logarithmic.
"""

from __future__ import annotations

from itertools import accumulate

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui.views.base import (
    View,
    centre_text,
    corner_legend,
    loss_plot,
    new_layout_widget,
    style_legend,
    style_plot,
)

DEFAULT_SMOOTHING = 0.6
TRAIN_COLOR = "#56B4E9"
EVAL_COLOR = "#E69F00"


def ema_debiased(values, weight: float) -> np.ndarray:
    """TensorBoard's scalar smoothing: last = w·last + (1-w)·y, divided by the debias 1 - w^n.

    Non-finite values pass through unsmoothed and don't advance the average; a constant series is
    returned as it is (as TensorBoard does)."""
    y = np.asarray(values, dtype=np.float64).ravel()
    out = y.copy()
    if y.size == 0 or weight <= 0.0:
        return out
    finite = np.isfinite(y)
    yf = y[finite]
    if yf.size == 0 or np.all(yf == yf[0]):
        return out
    w = float(weight)
    one_minus = 1.0 - w
    num = np.fromiter(accumulate(yf, lambda last, v: last * w + one_minus * v, initial=0.0), np.float64, yf.size + 1)[
        1:
    ]
    if w != 1.0:
        num /= 1.0 - w ** np.arange(1, yf.size + 1, dtype=np.float64)
    out[finite] = num
    return out


class LossView(View):
    view_id = "loss"
    title = "Loss"
    formula_tooltip = (
        "cross-entropy (lm) or MSE (matrix) against the step; smoothed: s_n = (w·s'_{n-1} + (1-w)·y_n) "
        "/ (1 - wⁿ), TensorBoard's debiased EMA, w = 0.6 by default"
    )

    smoothingChanged = QtCore.Signal(float)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        self._eval_key = None
        self._smoothing = DEFAULT_SMOOTHING
        self._train_smoothed = np.zeros(0)
        self._empty = None

        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("Smoothing", content))
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, content)
        self.slider.setRange(0, 99)
        self.slider.setValue(round(DEFAULT_SMOOTHING * 100))
        self.slider.setToolTip("Exponential moving average weight w, 0 (raw) to 0.99; TensorBoard's default is 0.6")
        self.slider.setMaximumWidth(220)
        self.slider.valueChanged.connect(lambda v: self.set_smoothing(v / 100.0))
        top.addWidget(self.slider, 1)
        self.smoothing_label = QtWidgets.QLabel(f"{DEFAULT_SMOOTHING:.2f}", content)
        self.smoothing_label.setMinimumWidth(QtGui.QFontMetrics(self.font()).horizontalAdvance("0.000"))
        top.addWidget(self.smoothing_label)
        top.addStretch(1)
        self.log_box = QtWidgets.QCheckBox("log y", content)
        self.log_box.setToolTip("Logarithmic loss axis")
        self.log_box.toggled.connect(self.set_log_y)
        top.addWidget(self.log_box)
        lay.addLayout(top)

        self.glw = new_layout_widget(self.style_)
        self.glw.ci.setToolTip(self.formula_tooltip)
        self.plot = loss_plot(self.glw)
        opts = dict(clipToView=True, autoDownsample=True, downsampleMethod="peak")
        self.train_raw = pg.PlotDataItem(pen=pg.mkPen(QtGui.QColor(86, 180, 233, 70), width=1), **opts)
        # held-out measurements keep their markers (they are the real points); the smoothed line runs through
        self.eval_raw = pg.PlotDataItem(
            pen=pg.mkPen(QtGui.QColor(230, 159, 0, 70), width=1),
            symbol="o",
            symbolSize=4,
            symbolPen=None,
            symbolBrush=QtGui.QColor(230, 159, 0, 170),
            **opts,
        )
        self.train_curve = pg.PlotDataItem(pen=pg.mkPen(TRAIN_COLOR, width=1), **opts)
        self.eval_curve = pg.PlotDataItem(pen=pg.mkPen(EVAL_COLOR, width=1), **opts)
        for item in (self.train_raw, self.eval_raw, self.train_curve, self.eval_curve):
            self.plot.addItem(item)
        self.legend = corner_legend(self.plot)
        self.legend.addItem(self.train_curve, "train")
        self.legend.addItem(self.eval_curve, "held-out")
        self.empty_text = centre_text(self.plot, "waiting for the first step")
        self._set_empty(True)
        lay.addWidget(self.glw, 1)
        self.caption = QtWidgets.QLabel(content)
        self.caption.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.caption.setWordWrap(True)
        lay.addWidget(self.caption)
        self.set_content(content)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def smoothing(self) -> float:
        return self._smoothing

    def set_smoothing(self, weight: float) -> None:
        """EMA weight, 0 (raw) to 0.99."""
        weight = float(min(max(weight, 0.0), 0.99))
        if abs(weight - self._smoothing) < 1e-9:
            return
        self._smoothing = weight
        with QtCore.QSignalBlocker(self.slider):
            self.slider.setValue(round(weight * 100))
        self.smoothing_label.setText(f"{weight:.2f}")
        self._key = None
        self.smoothingChanged.emit(weight)
        self.refresh()

    def log_y(self) -> bool:
        return self.log_box.isChecked()

    def set_log_y(self, on: bool) -> None:
        if self.log_box.isChecked() != bool(on):
            self.log_box.setChecked(bool(on))  # comes back here through toggled
            return
        self.plot.setLogMode(x=False, y=bool(on))

    def smoothed_train(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, smoothed training loss) as drawn now."""
        x, y = self.train_curve.getOriginalDataset()
        return (np.zeros(0), np.zeros(0)) if x is None else (np.asarray(x), np.asarray(y))

    def export_item(self):
        return self.plot

    def set_cursor(self, step: int | None, run: tuple | None = None) -> None:
        """A replay's cursor at `step` over `run` = (steps, losses), the whole recorded run drawn
        faintly behind the curves up to `step`; None takes both away (back to live)."""
        if getattr(self, "replay_cursor", None) is None:
            self.replay_cursor = pg.InfiniteLine(
                angle=90, movable=False, pen=pg.mkPen((150, 150, 150), width=1, dash=[4, 3])
            )
            self.run_curve = pg.PlotDataItem(pen=pg.mkPen(QtGui.QColor(150, 150, 150, 110), width=1))
            self.run_curve.setZValue(-1)
            for item in (self.run_curve, self.replay_cursor):
                self.plot.addItem(item, ignoreBounds=item is self.replay_cursor)
        shown = step is not None
        self.replay_cursor.setVisible(shown)
        self.run_curve.setVisible(shown and run is not None)
        if shown:
            self.replay_cursor.setValue(float(step))
            if run is not None:
                self.run_curve.setData(np.asarray(run[0], np.float64), np.asarray(run[1], np.float64))

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snapshot) -> None:
        h = snapshot.history
        steps = np.asarray(h.steps) if h is not None else np.zeros(0)
        loss = np.asarray(h.loss) if h is not None else np.zeros(0)
        eval_steps = np.asarray(h.eval_steps) if h is not None else np.zeros(0)
        eval_loss = np.asarray(h.eval_loss) if h is not None else np.zeros(0)
        key = (
            snapshot.segment,
            steps.size,
            int(steps[-1]) if steps.size else -1,
            id(h.loss) if h else 0,
            eval_steps.size,
            snapshot.step,
            self._smoothing,
        )
        if key == self._key:
            return
        self._key = key
        n = min(steps.size, loss.size)
        if n:
            x = steps[:n].astype(np.float64)
            y = loss[:n].astype(np.float64)
            self.train_raw.setData(x, y)
            self.train_curve.setData(x, ema_debiased(y, self._smoothing))
            self.train_raw.setVisible(self._smoothing > 0)
        else:
            self.train_raw.setData([], [])
            self.train_curve.setData([], [])
        m = min(eval_steps.size, eval_loss.size)
        eval_key = (snapshot.segment, m, float(eval_steps[m - 1]) if m else -1.0, self._smoothing)
        if eval_key == self._eval_key:
            pass  # held-out loss is measured now and then: keep it
        elif m:
            x = eval_steps[:m].astype(np.float64)
            y = eval_loss[:m].astype(np.float64)
            self.eval_raw.setData(x, y)
            self.eval_curve.setData(x, ema_debiased(y, self._smoothing))
        else:
            self.eval_raw.setData([], [])
            self.eval_curve.setData([], [])
        self._eval_key = eval_key
        self._set_empty(n == 0 and m == 0)
        parts = [f"step <b>{snapshot.step:,}</b>"]
        if snapshot.loss is not None:
            parts.append(f"train <b>{snapshot.loss:.4g}</b>")
        if snapshot.eval_loss is not None:
            parts.append(f"held-out <b>{snapshot.eval_loss:.4g}</b>")
        if snapshot.steps_per_second:
            parts.append(f"{snapshot.steps_per_second:.1f} steps/s")
        if snapshot.lr:
            parts.append(f"lr {snapshot.lr:.3g}")
        self.caption.setText(" · ".join(parts))
        self.draw_count += 1

    def _set_empty(self, empty: bool) -> None:
        """Before the first step: the note, and no made-up 0 ... 1 tick values on the axes."""
        if empty == self._empty:
            return
        self._empty = empty
        self.empty_text.setVisible(empty)
        for name in ("left", "bottom"):
            self.plot.getAxis(name).setStyle(showValues=not empty)

    def _clear(self) -> None:
        self._key = self._eval_key = None
        for item in (self.train_raw, self.eval_raw, self.train_curve, self.eval_curve):
            item.setData([], [])
        self._set_empty(True)
        self.caption.setText("")

    def _apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        style_plot(self.plot, s)
        style_legend(self.legend, s)
        self.empty_text.setColor(s.muted)
        self.empty_text.setFont(s.font(11))
        self._key = self._eval_key = None
