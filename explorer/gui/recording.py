"""File > Record…: record a view or the whole window as an animated GIF (Pillow) or an MP4
(imageio-ffmpeg, the optional `video` extra).

    toggle_recording(window)                       # the action: a dialog to start, or stop a recording
    start_recording(window, target, path, fps=15)  # target: "window" or a view id ("loss", ...)
    stop_recording(window)                         # -> the Recorder, now encoding

How it works, and what it costs:
- Frames come from QWidget.grab() on a QTimer at the chosen rate (10, 15 or 30 per second) and are
  kept as QImages (implicitly shared: a frame identical to the one before only raises that frame's
  count). A frame slot the timer missed (a busy event loop) repeats the frame before it, so the file
  plays at the speed things happened. Grabbing never takes more than MAX_DUTY of the GUI thread's time:
  when a grab is slow (a whole 1600 x 1000 window is ~30 ms), the next one waits, and the slots in
  between repeat the last frame.
- Memory is bounded: the recording stops by itself at MAX_SECONDS or when the frames held reach
  MAX_BYTES, and says so.
- Stop hands the frames to a helper thread that encodes them and writes the file atomically
  (a temporary file beside it, renamed when complete); the status bar announces the file.
- While recording, the toolbar shows a red dot, the elapsed time and the frame count, with a Stop
  button; the File menu's Record… action reads "Stop recording"; the status bar announces the file.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

FPS_CHOICES = (10, 15, 30)
DEFAULT_FPS = 15
MAX_SECONDS = 120.0
MAX_BYTES = 1 << 30  # frames held in memory (distinct ones), 1 GiB
MAX_DUTY = 0.4  # at most this share of the GUI thread goes to grabbing
FORMATS = {".gif": "GIF", ".mp4": "MP4"}
VIDEO_EXTRA = 'pip install "peft-explorer[video]"'
MP4_MISSING = f"MP4 needs imageio-ffmpeg, which is not installed: {VIDEO_EXTRA} (or record a GIF)"
TITLE = "Recording"


def mp4_problem() -> str:
    """'' when MP4 can be written here; otherwise what to do about it (one line)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return MP4_MISSING
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001 - a broken install: say what it said
        return f"MP4: imageio-ffmpeg has no working ffmpeg ({' '.join(str(exc).split())}); {VIDEO_EXTRA}"
    return ""


def format_of(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{Path(path).name}: unknown video type {suffix or '(none)'!r}: allowed .gif or .mp4")
    return FORMATS[suffix]


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


class Recorder(QtCore.QObject):
    """Grabs `widget` at `fps` until stopped (or a limit), then encodes on a helper thread.

    Signals (GUI thread): `frame_taken(frames)`, `stopped(reason)` when capture ends,
    `finished(ok, message)` when the file is written (or could not be)."""

    frame_taken = QtCore.Signal(int)
    stopped = QtCore.Signal(str)
    finished = QtCore.Signal(bool, str)
    _encoded = QtCore.Signal(bool, str)

    def __init__(
        self,
        widget: QtWidgets.QWidget,
        path,
        fps: int = DEFAULT_FPS,
        *,
        max_seconds: float = MAX_SECONDS,
        max_bytes: int = MAX_BYTES,
        parent=None,
    ):
        super().__init__(parent)
        if int(fps) not in FPS_CHOICES:
            raise ValueError(f"fps={fps!r} is not offered: allowed {', '.join(map(str, FPS_CHOICES))}")
        self.widget = widget
        self.path = Path(path)
        self.format = format_of(self.path)
        if self.format == "MP4" and mp4_problem():
            raise ValueError(mp4_problem())
        self.fps = int(fps)
        self.max_seconds = float(max_seconds)
        self.max_bytes = int(max_bytes)
        self.images: list[QtGui.QImage] = []  # distinct frames, in order
        self.counts: list[int] = []  # how many frame slots each one fills
        self.frames = 0  # frame slots filled (sum of counts)
        self.grabs = 0
        self.bytes_held = 0
        self.state = "idle"  # idle | recording | encoding | done | failed
        self.stop_reason = ""
        self.message = ""
        self.size: tuple[int, int] | None = None
        self._t0 = 0.0
        self._t_stop = 0.0
        self._grab_cost = 0.0
        self._next_grab = 0.0
        self._thread: threading.Thread | None = None
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(max(1, int(1000 / self.fps)))
        self._timer.timeout.connect(self._tick)
        self._encoded.connect(self._on_encoded)

    # ---- capture ------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self.state == "recording"

    def elapsed(self) -> float:
        if self.state == "idle":
            return 0.0
        end = self._t_stop if self.state != "recording" else time.perf_counter()
        return end - self._t0

    def start(self) -> None:
        if self.state != "idle":
            return
        self.state = "recording"
        self._t0 = time.perf_counter()
        self._grab(slots=1)
        self._timer.start()

    def _tick(self) -> None:
        if not self.recording:
            return
        now = time.perf_counter()
        elapsed = now - self._t0
        if elapsed >= self.max_seconds:
            self.stop(f"stopped at the {self.max_seconds:g} s limit")
            return
        due = int(elapsed * self.fps) + 1  # frame slots that have begun since the start
        if due <= self.frames:
            return
        if now < self._next_grab:  # grabbing is slow: keep to MAX_DUTY
            return
        self._grab(slots=due - self.frames)

    def _grab(self, slots: int) -> None:
        t = time.perf_counter()
        try:
            image = self.widget.grab().toImage()
        except RuntimeError:  # the widget is gone
            self.stop("the recorded widget was closed")
            return
        cost = time.perf_counter() - t
        self._grab_cost = cost if not self.grabs else 0.7 * self._grab_cost + 0.3 * cost
        self._next_grab = t + self._grab_cost / MAX_DUTY
        self.grabs += 1
        if image.isNull():
            return
        if self.size is None:
            self.size = (image.width(), image.height())
        if self.images and image == self.images[-1]:
            self.counts[-1] += slots  # nothing changed on screen: no new memory
        else:
            if self.images:  # the slots missed show what was on screen then
                self.counts[-1] += slots - 1
                slots = 1
            if self.bytes_held + image.sizeInBytes() > self.max_bytes:
                self.stop(f"stopped at the memory limit ({_human(self.max_bytes)} of frames)")
                return
            self.images.append(image)
            self.counts.append(slots)
            self.bytes_held += image.sizeInBytes()
        self.frames = sum(self.counts)
        self.frame_taken.emit(self.frames)

    def stop(self, reason: str = "") -> None:
        """End the capture and encode the frames on a helper thread (the file follows `finished`)."""
        if self.state != "recording":
            return
        self._timer.stop()
        self._t_stop = time.perf_counter()
        self.stop_reason = reason
        self.state = "encoding"
        self.stopped.emit(reason)
        if not self.images:  # (queued: whoever connects right after start() still hears it)
            QtCore.QTimer.singleShot(0, self, lambda: self._encoded.emit(False, "nothing was recorded"))
            return
        images, counts = list(self.images), list(self.counts)
        self._thread = threading.Thread(
            target=self._encode, args=(images, counts), name="explorer-encode-recording", daemon=False
        )
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until encoding is done (scripts and tests; the GUI waits for `finished`)."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # ---- encoding (helper thread) -----------------------------------------------------------------
    def _encode(self, images: list[QtGui.QImage], counts: list[int]) -> None:
        try:
            size = encode(images, counts, self.path, self.fps, self.format)
            total = sum(counts)
            text = (
                f"Recording saved to {self.path} ({total} frames at {self.fps} fps, "
                f"{total / self.fps:.1f} s, {size[0]}×{size[1]}, {_human(self.path.stat().st_size)})"
            )
            ok = True
        except Exception as exc:  # noqa: BLE001 - said in the status bar
            text, ok = f"Could not write the recording {self.path.name}: {' '.join(str(exc).split())}", False
        try:
            self._encoded.emit(ok, text)
        except RuntimeError:  # the window (and this recorder) went away meanwhile
            pass

    def _on_encoded(self, ok: bool, text: str) -> None:
        self.state = "done" if ok else "failed"
        self.message = text
        self.images, self.counts = [], []  # free the frames
        self.bytes_held = 0
        self.finished.emit(ok, text)


# ---------------------------------------------------------------------------------------- encoders
def _rgb(image: QtGui.QImage, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 of `image`, scaled to `size` if it differs (the widget was resized)."""
    if (image.width(), image.height()) != size:
        image = image.scaled(
            size[0], size[1], Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()  # a copy: the buffer dies with `image`


def encode(images: list[QtGui.QImage], counts: list[int], path, fps: int, fmt: str | None = None) -> tuple[int, int]:
    """Write the frames (each shown counts[i] frame slots at `fps`) as GIF or MP4, atomically.
    Returns the frame size (w, h)."""
    from explorer.schema.files import atomic_replace

    path = Path(path)
    fmt = fmt or format_of(path)
    first = images[0]
    size = (first.width(), first.height())
    if fmt == "MP4":
        size = (size[0] + size[0] % 2, size[1] + size[1] % 2)  # yuv420p wants even sides
    with atomic_replace(path) as tmp:
        if fmt == "GIF":
            _write_gif(images, counts, tmp, fps, size)
        else:
            _write_mp4(images, counts, tmp, fps, size)
    return size


def _write_gif(images, counts, tmp: Path, fps: int, size) -> None:
    from PIL import Image

    slot_ms = 1000.0 / fps
    frames, durations = [], []
    shown = 0.0
    for image, count in zip(images, counts):
        frames.append(
            Image.fromarray(_rgb(image, size)).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        )
        # GIF delays are whole hundredths of a second: round the running total, so the whole plays on time
        start, shown = shown, shown + count * slot_ms
        durations.append(max(10, int(round(shown / 10.0)) * 10 - int(round(start / 10.0)) * 10))
    frames[0].save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        disposal=1,
        optimize=False,
    )


def _write_mp4(images, counts, tmp: Path, fps: int, size) -> None:
    import imageio_ffmpeg

    first = (images[0].width(), images[0].height())
    writer = imageio_ffmpeg.write_frames(
        str(tmp),
        size,
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=8,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-f", "mp4"],
    )
    writer.send(None)
    try:
        for image, count in zip(images, counts):
            rgb = _rgb(image, first)
            if first != size:  # an odd side: one black line of padding
                canvas = np.zeros((size[1], size[0], 3), np.uint8)
                canvas[: first[1], : first[0]] = rgb
                rgb = canvas
            data = rgb.tobytes()
            for _ in range(count):
                writer.send(data)
    finally:
        writer.close()


# ---------------------------------------------------------------------------------------- the window
def _targets(window) -> dict[str, tuple[str, QtWidgets.QWidget]]:
    """key -> (title, widget): the whole window, then each view."""
    out = {"window": ("Whole window", window)}
    for view_id, view in getattr(window, "views", {}).items():
        dock = getattr(window, "view_docks", {}).get(view_id)
        out[view_id] = (dock.windowTitle() if dock is not None else view_id, view)
    return out


def active_recorder(window) -> Recorder | None:
    rec = getattr(window, "_recorder", None)
    return rec if rec is not None and rec.recording else None


def start_recording(window, target: str, path, fps: int = DEFAULT_FPS, **limits) -> Recorder:
    """Start recording `target` ("window" or a view id) to `path` (.gif or .mp4). ValueError with one
    line when it cannot (a recording runs already, an unknown target, MP4 without imageio-ffmpeg)."""
    if active_recorder(window) is not None:
        raise ValueError("a recording is running already: stop it first")
    targets = _targets(window)
    if target not in targets:
        raise ValueError(f"target={target!r} is unknown: allowed {', '.join(targets)}")
    title, widget = targets[target]
    rec = Recorder(widget, path, fps, parent=window, **limits)
    rec.target = target
    rec.title = title
    indicator = RecordingIndicator(rec, window)
    _show_indicator(window, indicator)
    rec.indicator = indicator
    rec.stopped.connect(lambda reason, w=window, r=rec: _on_stopped(w, r, reason))
    rec.finished.connect(lambda ok, text, w=window, r=rec: _on_finished(w, r, ok, text))
    window._recorder = rec
    _watch_close(window)
    rec.start()
    indicator.refresh()
    _sync_action(window)
    window.status.info(
        f"Recording {title.lower() if target == 'window' else title} to {rec.path.name} "
        f"at {rec.fps} fps… (Stop: the toolbar's Stop button or File > Stop recording)"
    )
    return rec


def stop_recording(window) -> Recorder | None:
    rec = active_recorder(window)
    if rec is not None:
        rec.stop()
    return rec


def toggle_recording(window, target: str | None = None, path=None, fps: int | None = None):
    """The File > Record… action: stop the running recording, or ask what to record and start it."""
    if active_recorder(window) is not None:
        return stop_recording(window)
    if target is None or path is None:
        dialog = RecordDialog(window)
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return None
        target, path, fps = dialog.choice()
    try:
        return start_recording(window, target, path, fps or DEFAULT_FPS)
    except ValueError as exc:
        window.status.error(str(exc))
        return None


def _on_stopped(window, rec: Recorder, reason: str) -> None:
    _sync_action(window)
    why = f" ({reason})" if reason else ""
    try:
        window.status.info(f"Recording stopped{why}: encoding {rec.frames} frames to {rec.path.name}…", 60_000)
    except RuntimeError:
        pass


def _on_finished(window, rec: Recorder, ok: bool, text: str) -> None:
    try:
        if ok:
            window.status.info(text, 20_000)
        else:
            window.status.error(text)
    except RuntimeError:
        pass
    indicator = getattr(rec, "indicator", None)
    if indicator is not None:
        try:
            _hide_indicator(window, indicator)
        except RuntimeError:
            pass
        rec.indicator = None


def _show_indicator(window, indicator) -> None:
    """In the training toolbar, right-aligned before Help (a toolbar moves what does not fit into its
    overflow menu, so the window never has to grow for it); in the status bar when there is none."""
    bar = getattr(window, "toolbar", None)
    help_action = getattr(window, "actions_by_name", {}).get("help")
    if bar is not None and help_action is not None and help_action in bar.actions():
        indicator.toolbar_action = bar.insertWidget(help_action, indicator)
    else:
        indicator.toolbar_action = None
        window.status.insertPermanentWidget(0, indicator)
    indicator.show()


def _hide_indicator(window, indicator) -> None:
    if indicator.toolbar_action is not None:
        window.toolbar.removeAction(indicator.toolbar_action)
    else:
        window.status.removeWidget(indicator)
    indicator.hide()
    indicator.deleteLater()


def _sync_action(window) -> None:
    action = getattr(window, "actions_by_name", {}).get("record")
    if action is None:
        return
    if active_recorder(window) is not None:
        action.setText("Stop recording")
        action.setToolTip("Stop the recording and write the file")
    else:
        action.setText("Record…")
        action.setToolTip("Record a view or the window (GIF, MP4)")


class _CloseWatch(QtCore.QObject):
    """A window that closes while recording stops the capture; the file is still written."""

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if event.type() == QtCore.QEvent.Type.Close:
            rec = active_recorder(obj)
            if rec is not None:
                rec.stop("the window closed")
        return False


def _watch_close(window) -> None:
    if getattr(window, "_recording_close_watch", None) is None:
        watch = _CloseWatch(window)
        window.installEventFilter(watch)
        window._recording_close_watch = watch


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
            self.label.setText(f"REC {_clock(rec.elapsed())} · {rec.frames} frames · {rec.fps} fps")
            self.label.setStyleSheet("color: #ff3b30; font-weight: 600;")
            self.stop_button.setVisible(True)
        else:
            self.dot.setStyleSheet("color: #e5c07b; font-size: 14pt;")
            self.label.setText(f"encoding {rec.frames} frames…")
            self.label.setStyleSheet("font-weight: 600;")
            self.stop_button.setVisible(False)


class RecordDialog(QtWidgets.QDialog):
    """What to record, how, and where."""

    def __init__(self, window):
        super().__init__(window)
        self.setWindowTitle("Record")
        self.setObjectName("record_dialog")
        form = QtWidgets.QFormLayout(self)
        self.target_box = QtWidgets.QComboBox()
        for key, (title, _w) in _targets(window).items():
            self.target_box.addItem(title, key)
        current = getattr(window, "current_view_id", lambda: None)()
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
            widget = _targets(self._window).get(self.target_box.currentData(), ("", self._window))[1]
            frame = widget.size()
            ratio = widget.devicePixelRatioF()
            frame_bytes = max(1, int(frame.width() * ratio) * int(frame.height() * ratio) * 4)
            fps = self.fps_box.currentData()
            seconds = min(MAX_SECONDS, MAX_BYTES / frame_bytes / fps)
            self.hint.setText(
                f"{frame.width()}×{frame.height()} pixels; stops by itself after "
                f"{math.floor(seconds):.0f} s of changing frames (memory limit "
                f"{_human(MAX_BYTES)}), or at {MAX_SECONDS:.0f} s. Encoding runs after Stop."
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
