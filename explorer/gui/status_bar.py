"""The status bar: a message on the left; state, step, steps per second (and why it fell, when the
engine knows: Snapshot.slow_reason), device and memory on the right."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QStatusBar

from explorer.gui.theme import current_theme
from explorer.schema.format import format_bytes, format_rate

STATE_TEXT = {
    "running": "● running",
    "paused": "❚❚ paused",
    "fault": "▲ fault",
    "starting": "… starting",
    "stopped": "■ stopped",
    "replay": "▶ replay",
}


RATE_TIP = "Training steps per second"


def rate_text(state: str, steps_per_second) -> str:
    """Steps per second as the status bar shows them: the measured rate while training, 0 while paused
    or stopped (the engine's figure is that of the last stretch of play), nothing in a replay (the
    recording's rate is not this machine's)."""
    if state == "replay":
        return ""
    if state == "running":
        return f"{format_rate(steps_per_second)} steps/s"
    return "0 steps/s"


class StatusBar(QStatusBar):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("status_bar")
        self.state = self._label("state", "State of the training loop", min_width=96)
        self.step = self._label(
            "step", "Training steps in this segment (a cold change or Reset starts a new one)", min_width=92
        )
        self.slow = self._label("slow", "", min_width=0)
        self.slow.hide()  # shown only while the engine says why training runs far slower than a moment ago
        self.rate = self._label("rate", RATE_TIP, min_width=92)
        self.loss = self._label("loss", "Last training loss", min_width=120)
        self.device = self._label("device", "Where training runs", min_width=90)
        self.memory = self._label(
            "memory", "Device memory in use (CUDA), or the process's memory on the CPU", min_width=86
        )
        self._error_timer = QTimer(self)
        self._error_timer.setSingleShot(True)
        self._error_timer.timeout.connect(self._clear_error_style)
        self.set_state("starting")
        self.step.setText("step –")
        self.rate.setText("– steps/s")
        self.loss.setText("loss –")
        self.device.setText("–")
        self.memory.setText("mem –")

    def _label(self, name: str, tip: str, min_width: int = 0) -> QLabel:
        label = QLabel()
        label.setObjectName(f"status_{name}")
        label.setToolTip(tip)
        label.setMinimumWidth(min_width)
        label.setAlignment(Qt.AlignCenter)
        self.addPermanentWidget(label)
        return label

    def set_state(self, state: str) -> None:
        t = current_theme()
        colour = {"running": t.ok, "fault": t.error, "paused": t.warn}.get(state, t.dim_text)
        self.state.setText(STATE_TEXT.get(state, state))
        _restyle(self.state, f"color: {colour}; font-weight: 600;")
        self.state.setProperty("state", state)

    def update_from(self, snap) -> None:
        self.set_state(snap.state)
        self.step.setText(f"step {snap.step:,}")
        self.rate.setText(rate_text(snap.state, snap.steps_per_second))
        self.show_slow_reason(snap.slow_reason if snap.state == "running" else None)
        self.loss.setText("loss –" if snap.loss is None else f"loss {snap.loss:.4g}")
        self.device.setText(str(snap.device))
        self.memory.setText(f"mem {format_bytes(snap.memory_bytes)}")

    def show_slow_reason(self, reason: str | None) -> None:
        """'slow: <reason>' beside the rate while training runs far slower than a moment ago for a
        reason the engine could tell (engine/slowdown.py), hidden otherwise."""
        if not reason:
            self.slow.hide()
            self.slow.setText("")
            self.rate.setToolTip(RATE_TIP)
            return
        self.slow.setText(f"slow: {reason}")
        _restyle(self.slow, f"color: {current_theme().warn};")
        tip = f"Training runs far slower than a moment ago: {reason}"
        self.slow.setToolTip(tip)
        self.rate.setToolTip(f"{RATE_TIP}. {tip}")
        self.slow.show()

    def info(self, message: str, ms: int = 6000) -> None:
        self._clear_error_style()
        self.showMessage(message, ms)

    def error(self, message: str, ms: int = 20000) -> None:
        self.setStyleSheet(f"QStatusBar {{ color: {current_theme().error}; }}")
        self.showMessage("⚠ " + message, ms)
        self._error_timer.start(ms)

    def _clear_error_style(self) -> None:
        self.setStyleSheet("")


def _restyle(label: QLabel, sheet: str) -> None:
    """Set a style sheet only when it changes: setting one re-polishes the label and lays the status
    bar out again, and this ran for every snapshot (up to 30 a second)."""
    if label.styleSheet() != sheet:
        label.setStyleSheet(sheet)
