"""File > Record…: record a view or the whole window as GIF or MP4 (explorer.gui.recording does the
grabbing and encoding).

    window.features.screen_recording.toggle()                  # a dialog to start, or stop
    window.features.screen_recording.start(target, path, fps)  # target: "window" or a view id
    window.features.screen_recording.stop()                    # -> the Recorder, now encoding

While recording, the toolbar shows a red dot, the elapsed time and the frame count, with a Stop
button; the File menu's Record… action reads "Stop recording"; the status bar announces the file.
A window that closes while recording stops the capture; the file is still written.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6 import QtCore, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui.recording import (
    DEFAULT_FPS,
    FORMATS,
    FPS_CHOICES,
    MAX_BYTES,
    MAX_SECONDS,
    Recorder,
    capture_ratio,
    mp4_problem,
)
from explorer.gui.services import WindowServices
from explorer.schema.format import format_bytes, format_clock


def targets(window: WindowServices) -> dict[str, tuple[str, QtWidgets.QWidget]]:
    """key -> (title, widget): the whole window, then each view."""
    out = {"window": ("Whole window", window.widget)}
    for view_id, view in window.views.items():
        out[view_id] = (window.view_docks[view_id].windowTitle(), view)
    return out


class ScreenRecordingFeature:
    """Screen recording as a part of the window: at most one recording at a time."""

    def __init__(self, window: WindowServices):
        self.window = window
        self.recorder: Recorder | None = None  # the last one started (it may still be encoding)

    @property
    def active(self) -> Recorder | None:
        """The recorder grabbing frames now, or None."""
        return self.recorder if self.recorder is not None and self.recorder.recording else None

    def start(self, target: str, path, fps: int = DEFAULT_FPS, **limits) -> Recorder:
        """Start recording `target` ("window" or a view id) to `path` (.gif or .mp4). ValueError with
        one line when it cannot (a recording runs already, an unknown target, MP4 without imageio-ffmpeg)."""
        if self.active is not None:
            raise ValueError("a recording is running already: stop it first")
        choices = targets(self.window)
        if target not in choices:
            raise ValueError(f"target={target!r} is unknown: allowed {', '.join(choices)}")
        title, widget = choices[target]
        rec = Recorder(widget, path, fps, parent=self.window.widget, **limits)
        rec.target = target
        rec.title = title
        indicator = RecordingIndicator(rec, self.window.widget)
        self._show_indicator(indicator)
        rec.indicator = indicator
        rec.stopped.connect(lambda reason, r=rec: self._on_stopped(r, reason))
        rec.finished.connect(lambda ok, text, r=rec: self._on_finished(r, ok, text))
        self.recorder = rec
        rec.start()
        indicator.refresh()
        self._sync_action()
        self.window.status.info(
            f"Recording {title.lower() if target == 'window' else title} to {rec.path.name} "
            f"at {rec.fps} fps… (Stop: the toolbar's Stop button or File > Stop recording)"
        )
        return rec

    def stop(self) -> Recorder | None:
        rec = self.active
        if rec is not None:
            rec.stop()
        return rec

    def toggle(self, target: str | None = None, path=None, fps: int | None = None) -> Recorder | None:
        """The File > Record… action: stop the running recording, or ask what to record and start it."""
        if self.active is not None:
            return self.stop()
        if target is None or path is None:
            dialog = RecordDialog(self.window)
            if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
                return None
            target, path, fps = dialog.choice()
        try:
            return self.start(target, path, fps or DEFAULT_FPS)
        except ValueError as exc:
            self.window.status.error(str(exc))
            return None

    def window_closing(self) -> None:
        if self.active is not None:
            self.active.stop("the window closed")

    def _on_stopped(self, rec: Recorder, reason: str) -> None:
        self._sync_action()
        why = f" ({reason})" if reason else ""
        try:
            self.window.status.info(f"Recording stopped{why}: encoding {rec.frames} frames to {rec.path.name}…", 60_000)
        except RuntimeError:
            pass

    def _on_finished(self, rec: Recorder, ok: bool, text: str) -> None:
        try:
            if ok:
                self.window.status.info(text, 20_000)
            else:
                self.window.status.error(text)
        except RuntimeError:
            pass
        indicator = getattr(rec, "indicator", None)
        if indicator is not None:
            try:
                self._hide_indicator(indicator)
            except RuntimeError:
                pass
            rec.indicator = None

    def _show_indicator(self, indicator: RecordingIndicator) -> None:
        """In the training toolbar, right-aligned before Help (a toolbar moves what does not fit into
        its overflow menu, so the window never has to grow for it); in the status bar when Help is not
        in the toolbar."""
        bar = self.window.toolbar
        help_action = self.window.actions_by_name["help"]
        if help_action in bar.actions():
            indicator.toolbar_action = bar.insertWidget(help_action, indicator)
        else:
            indicator.toolbar_action = None
            self.window.status.insertPermanentWidget(0, indicator)
        indicator.show()

    def _hide_indicator(self, indicator: RecordingIndicator) -> None:
        if indicator.toolbar_action is not None:
            self.window.toolbar.removeAction(indicator.toolbar_action)
        else:
            self.window.status.removeWidget(indicator)
        indicator.hide()
        indicator.deleteLater()

    def _sync_action(self) -> None:
        action = self.window.actions_by_name["record"]
        if self.active is not None:
            action.setText("Stop recording")
            action.setToolTip("Stop the recording and write the file")
        else:
            action.setText("Record…")
            action.setToolTip("Record a view or the window (GIF, MP4)")


class RecordingIndicator(QtWidgets.QWidget):
    """The sign of a recording (in the toolbar): a red dot (blinking), elapsed time, frames, Stop."""

    def __init__(self, rec: Recorder, parent=None):
        super().__init__(parent)
        self.setObjectName("recording_indicator")
        self.rec = rec
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        lay.setSpacing(6)
        self.dot = QtWidgets.QLabel("●")
        self.dot.setObjectName("recording_dot")
        self.label = QtWidgets.QLabel()
        self.label.setObjectName("recording_label")
        self.stop_button = QtWidgets.QToolButton()
        self.stop_button.setObjectName("recording_stop")
        self.stop_button.setText("■ Stop")
        self.stop_button.setToolTip("Stop recording and write the file")
        self.stop_button.clicked.connect(lambda: rec.stop())
        lay.addWidget(self.dot)
        lay.addWidget(self.label)
        lay.addWidget(self.stop_button)
        self.setToolTip(f"Recording {getattr(rec, 'title', '')} to {rec.path}")
        self._blink = False
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        rec.stopped.connect(lambda _r: self.refresh())
        rec.finished.connect(lambda *_: self._timer.stop())
        self.refresh()

    def text(self) -> str:
        return self.label.text()

    def refresh(self) -> None:
        rec = self.rec
        if rec.recording:
            self._blink = not self._blink
            self.dot.setStyleSheet(f"color: {'#ff3b30' if self._blink else '#8b1a14'}; font-size: 14pt;")
            self.label.setText(f"REC {format_clock(rec.elapsed())} · {rec.frames} frames · {rec.fps} fps")
            self.label.setStyleSheet("color: #ff3b30; font-weight: 600;")
            self.stop_button.setVisible(True)
        else:
            self.dot.setStyleSheet("color: #e5c07b; font-size: 14pt;")
            self.label.setText(f"encoding {rec.frames} frames…")
            self.label.setStyleSheet("font-weight: 600;")
            self.stop_button.setVisible(False)


class RecordDialog(QtWidgets.QDialog):
    """What to record, how, and where."""

    def __init__(self, window: WindowServices):
        super().__init__(window.widget)
        self.setWindowTitle("Record")
        self.setObjectName("record_dialog")
        form = QtWidgets.QFormLayout(self)
        self.target_box = QtWidgets.QComboBox()
        for key, (title, _w) in targets(window).items():
            self.target_box.addItem(title, key)
        current = window.current_view_id()
        form.addRow("Record", self.target_box)
        self.format_box = QtWidgets.QComboBox()
        self.format_box.addItem("GIF (Pillow)", ".gif")
        self.format_box.addItem("MP4 (H.264, imageio-ffmpeg)", ".mp4")
        form.addRow("Format", self.format_box)
        self.fps_box = QtWidgets.QComboBox()
        for fps in FPS_CHOICES:
            self.fps_box.addItem(f"{fps} frames per second", fps)
        self.fps_box.setCurrentIndex(FPS_CHOICES.index(DEFAULT_FPS))
        form.addRow("Frame rate", self.fps_box)
        row = QtWidgets.QHBoxLayout()
        self.path_edit = QtWidgets.QLineEdit(str(Path.home() / "peft-explorer.gif"))
        browse = QtWidgets.QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        form.addRow("File", row)
        self.hint = QtWidgets.QLabel()
        self.hint.setObjectName("record_hint")
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.hint)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.start_button = self.buttons.addButton("Start recording", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self._window = window
        self.format_box.currentIndexChanged.connect(self._format_changed)
        self.fps_box.currentIndexChanged.connect(self._update_hint)
        self.target_box.currentIndexChanged.connect(self._update_hint)
        if current is not None:
            i = self.target_box.findData(current)
            if i >= 0:
                self.target_box.setCurrentIndex(i)
        self._update_hint()

    def _browse(self) -> None:
        suffix = self.format_box.currentData()
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Record to", self.path_edit.text(), f"{FORMATS[suffix]} (*{suffix})"
        )
        if path:
            if Path(path).suffix.lower() != suffix:
                path += suffix
            self.path_edit.setText(path)

    def _format_changed(self) -> None:
        suffix = self.format_box.currentData()
        path = Path(self.path_edit.text() or str(Path.home() / "peft-explorer"))
        self.path_edit.setText(str(path.with_suffix(suffix)))
        self._update_hint()

    def _update_hint(self) -> None:
        problem = mp4_problem() if self.format_box.currentData() == ".mp4" else ""
        if problem:
            self.hint.setText(problem)
            self.hint.setProperty("role", "error")
            self.hint.setStyleSheet("color: #ff5f56;")
        else:
            widget = targets(self._window)[self.target_box.currentData()][1]
            frame = widget.size()
            ratio = capture_ratio(widget)
            w, h = round(frame.width() * ratio), round(frame.height() * ratio)
            frame_bytes = max(1, w * h * 4)
            fps = self.fps_box.currentData()
            seconds = min(MAX_SECONDS, MAX_BYTES / frame_bytes / fps)
            self.hint.setText(
                f"{w}×{h} pixels ({frame.width()}×{frame.height()} at {ratio:g}x: crisp); stops by itself after "
                f"{math.floor(seconds):.0f} s of changing frames (memory limit "
                f"{format_bytes(MAX_BYTES)}), or at {MAX_SECONDS:.0f} s. Encoding runs after Stop."
            )
            self.hint.setProperty("role", "dim")
            self.hint.setStyleSheet("")
        self.start_button.setEnabled(not problem)

    def choice(self) -> tuple[str, str, int]:
        path = self.path_edit.text().strip()
        suffix = self.format_box.currentData()
        if Path(path).suffix.lower() not in FORMATS:
            path += suffix
        return self.target_box.currentData(), path, int(self.fps_box.currentData())
