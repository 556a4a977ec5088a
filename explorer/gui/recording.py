"""Screen recording: frames of a widget (a view or the whole window) grabbed on a timer and encoded
as an animated GIF (Pillow) or an MP4 (imageio-ffmpeg, the optional `video` extra). The window's
File > Record… (the dialog, the toolbar's indicator) is explorer.gui.screen_recording's.

    rec = Recorder(widget, "out.gif", fps=15); rec.start(); ...; rec.stop()   # `finished` follows

How it works, and what it costs:
- Frames are crisp: the widget is painted at the screen's device pixel ratio, or at 2x on a screen of
  ratio 1 (`capture_ratio`; text and lines drawn at twice the resolution, not a frame scaled up), on a
  QTimer at the chosen rate (10, 15 or 30 per second), straight into QImages (implicitly shared: a
  frame identical to the one before only raises that frame's count). A 2x frame holds four times the
  pixels: the memory limit is reached four times sooner, and the record dialog says after how long. A frame slot the timer missed (a busy event loop) repeats the frame before it, so the file
  plays at the speed things happened. Grabbing never takes more than MAX_DUTY of the GUI thread's time:
  when a grab is slow (a whole 1600 x 1000 window is ~30 ms at 1x), the next one waits, and the slots
  in between repeat the last frame.
- Memory is bounded: the recording stops by itself at MAX_SECONDS or when the frames held reach
  MAX_BYTES, and says so.
- Stop hands the frames to a helper thread that encodes them and writes the file atomically
  (a temporary file beside it, renamed when complete); the status bar announces the file.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

from explorer.gui.jobs import thread_job
from explorer.schema.files import atomic_replace
from explorer.schema.format import format_bytes, one_line

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
        return f"MP4: imageio-ffmpeg has no working ffmpeg ({one_line(exc)}); {VIDEO_EXTRA}"
    return ""


def capture_ratio(widget: QtWidgets.QWidget) -> float:
    """The device pixel ratio frames of `widget` are painted at: its screen's, or 2 where that is 1
    (a GIF for slides or a README, crisp when shown at half its size on a high-DPI screen)."""
    ratio = float(widget.devicePixelRatioF())
    return ratio if ratio > 1.0 else 2.0


def grab_image(widget: QtWidgets.QWidget, ratio: float) -> QtGui.QImage:
    """`widget` painted at device pixel ratio `ratio` into a new QImage (w·ratio × h·ratio pixels).
    Straight into the image: QWidget.grab() paints into a pixmap at the screen's ratio only, and its
    conversion to a QImage is a copy more."""
    if abs(ratio - widget.devicePixelRatioF()) < 1e-6:
        return widget.grab().toImage()
    size = widget.size()
    image = QtGui.QImage(
        max(1, round(size.width() * ratio)), max(1, round(size.height() * ratio)), QtGui.QImage.Format.Format_RGB32
    )
    image.setDevicePixelRatio(ratio)
    image.fill(widget.palette().window().color())
    widget.render(image)
    return image


def format_of(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{Path(path).name}: unknown video type {suffix or '(none)'!r}: allowed .gif or .mp4")
    return FORMATS[suffix]


class Recorder(QtCore.QObject):
    """Grabs `widget` at `fps` (painted at `ratio`, by default `capture_ratio`) until stopped (or a
    limit), then encodes on a helper thread.

    Signals (GUI thread): `frame_taken(frames)`, `stopped(reason)` when capture ends,
    `finished(ok, message)` when the file is written (or could not be)."""

    frame_taken = QtCore.Signal(int)
    stopped = QtCore.Signal(str)
    finished = QtCore.Signal(bool, str)

    def __init__(
        self,
        widget: QtWidgets.QWidget,
        path,
        fps: int = DEFAULT_FPS,
        *,
        max_seconds: float = MAX_SECONDS,
        max_bytes: int = MAX_BYTES,
        ratio: float | None = None,
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
        self.ratio = float(ratio) if ratio else capture_ratio(widget)  # device pixels per widget pixel
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
        self._job = None  # the encoding job (gui/jobs.py)
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(max(1, int(1000 / self.fps)))
        self._timer.timeout.connect(self._tick)

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
            image = grab_image(self.widget, self.ratio)
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
                self.stop(f"stopped at the memory limit ({format_bytes(self.max_bytes)} of frames)")
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
            QtCore.QTimer.singleShot(0, self, lambda: self._on_encoded(False, "nothing was recorded"))
            return
        images, counts = list(self.images), list(self.counts)
        # not a daemon: a window closed while encoding still gets its file
        self._job = thread_job(
            self._encode, images, counts, name="explorer-encode-recording", daemon=False, parent=self
        )
        self._job.done.connect(lambda outcome: self._on_encoded(*outcome))
        self._job.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until encoding is done (scripts and tests; the GUI waits for `finished`)."""
        return self._job.wait(timeout) if self._job is not None else True

    # ---- encoding (helper thread) -----------------------------------------------------------------
    def _encode(self, images: list[QtGui.QImage], counts: list[int]) -> tuple[bool, str]:
        try:
            size = encode(images, counts, self.path, self.fps, self.format)
            total = sum(counts)
            text = (
                f"Recording saved to {self.path} ({total} frames at {self.fps} fps, "
                f"{total / self.fps:.1f} s, {size[0]}×{size[1]}, {format_bytes(self.path.stat().st_size)})"
            )
            ok = True
        except Exception as exc:  # noqa: BLE001 - said in the status bar
            text, ok = f"Could not write the recording {self.path.name}: {one_line(exc)}", False
        return ok, text

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
