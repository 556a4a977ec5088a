"""Recording a view or the window (explorer.gui.recording): a valid GIF whose frames and timing match
the frame rate and the time recorded, painted at the screen's device pixel ratio or 2x (crisp), a
visible indicator while it runs, bounded memory, MP4 when imageio-ffmpeg is there and one clear line
about how to get it when it is not."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import snapshot_factory as sf
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDialog, QWidget

from explorer.gui import recording, screen_recording

WAIT_MS = 20_000


# the app's default settings and worker (never started), at a size a recording can show
pytestmark = pytest.mark.window(None, factory=None, start=False, size=(1600, 900))


@pytest.fixture(autouse=True)
def _settled(qtbot, window):
    """A snapshot drawn, and the window settled at its size before anything records it (the status
    bar fills in)."""
    window.deliver(sf.lora_snapshot(10))
    qtbot.waitUntil(lambda: window.width() >= window.minimumSizeHint().width(), timeout=WAIT_MS)


def animate(rec, view):
    """Each frame taken moves the view on, so every frame differs from the one before."""
    step = [10]

    def next_frame(_n):
        step[0] += 10
        view.update_snapshot(sf.lora_snapshot(step[0]))

    rec.frame_taken.connect(next_frame)


def indicator(win):
    return win.findChild(QWidget, "recording_indicator")


def test_gif_of_a_view_has_the_frames_and_timing_of_what_was_recorded(qtbot, window, tmp_path):
    win, fps = window, 15
    path = tmp_path / "loss.gif"
    rec = win.features.screen_recording.start("loss", path, fps=fps)
    animate(rec, win.views["loss"])
    assert rec.recording and indicator(win) is not None and indicator(win).isVisible()
    assert "REC" in indicator(win).text() and win.actions_by_name["record"].text() == "Stop recording"
    dpr = win.views["loss"].devicePixelRatioF()
    assert rec.ratio == (dpr if dpr > 1 else 2.0)  # the screen's ratio, or 2x where that is 1
    # slots at the frame rate, and grabs (each a new picture) as fast as MAX_DUTY lets a 2x grab come
    qtbot.waitUntil(lambda: rec.frames >= 18 and rec.grabs >= 11, timeout=WAIT_MS)
    assert "REC 0:0" in indicator(win).text()
    with qtbot.waitSignal(rec.finished, timeout=WAIT_MS) as done:
        win.features.screen_recording.toggle()  # the action again: stop
    assert done.args[0], done.args[1]
    elapsed = rec.elapsed()
    # every frame slot since the start is filled: missed timer ticks repeat the frame before
    assert abs(rec.frames - elapsed * fps) <= 2, (rec.frames, elapsed)
    assert rec.grabs <= rec.frames + 1
    assert "Recording saved to" in win.status.currentMessage() and str(path) in win.status.currentMessage()
    assert indicator(win) is None or not indicator(win).isVisible()
    assert win.actions_by_name["record"].text() == "Record…"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "GIF" and im.is_animated
        view = win.views["loss"]
        # at the screen's device pixel ratio, or 2x where that is 1
        ratio = dpr if dpr > 1 else 2.0
        assert im.size == (round(view.width() * ratio), round(view.height() * ratio))
        n = im.n_frames
        durations = []
        for i in range(n):
            im.seek(i)
            durations.append(im.info["duration"])
    assert n >= 10 and n <= rec.frames, (n, rec.frames, rec.grabs, durations)
    assert abs(sum(durations) - rec.frames * 1000 / fps) <= 10  # it plays as long as it was recorded
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".ini"] == ["loss.gif"]  # no temporary left


def test_the_whole_window_and_the_limits(qtbot, window, tmp_path):
    win = window
    rec = win.features.screen_recording.start("window", tmp_path / "win.gif", fps=10, max_seconds=0.6)
    with qtbot.waitSignal(rec.finished, timeout=WAIT_MS):
        pass  # stops by itself at the time limit
    assert rec.stop_reason.startswith("stopped at the 0.6 s limit") and rec.state == "done"
    assert 5 <= rec.frames <= 8
    with Image.open(tmp_path / "win.gif") as im:
        assert im.size == (round(win.width() * rec.ratio), round(win.height() * rec.ratio))

    rec = win.features.screen_recording.start("delta", tmp_path / "mem.gif", fps=30, max_bytes=1)
    with qtbot.waitSignal(rec.finished, timeout=WAIT_MS) as done:
        pass  # not even one frame fits: nothing written
    assert "memory limit" in rec.stop_reason and not done.args[0] and "nothing was recorded" in done.args[1]
    assert not (tmp_path / "mem.gif").exists()
    view = win.views["delta"]
    frame = recording.grab_image(view, recording.capture_ratio(view)).sizeInBytes()
    rec = win.features.screen_recording.start("delta", tmp_path / "mem.gif", fps=30, max_bytes=3 * frame)
    animate(rec, win.views["delta"])
    with qtbot.waitSignal(rec.finished, timeout=WAIT_MS) as done:
        pass
    assert "memory limit" in rec.stop_reason and done.args[0] and rec.bytes_held == 0
    with Image.open(tmp_path / "mem.gif") as im:
        assert im.n_frames <= 3


def grey(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_Grayscale8)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    return np.frombuffer(image.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)[:, :w].astype(np.float64)


def test_frames_are_painted_at_twice_the_resolution_not_scaled_up(qtbot, window):
    """The 2x frame is the same picture as the screen's (scaled down it matches the 1x grab), with
    more detail than the 1x grab scaled up: text and lines painted at 2x."""
    view = window.views["spectrum"]
    one = view.grab().toImage()
    two = recording.grab_image(view, 2.0)
    assert (two.width(), two.height()) == (2 * one.width(), 2 * one.height())
    down = two.scaled(
        one.width(), one.height(), Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
    assert np.abs(grey(down) - grey(one)).mean() < 6
    up = one.scaled(
        two.width(), two.height(), Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation
    )

    def detail(a):  # the differences between neighbouring pixels of each 2x2 block: none in a scaled-up one
        return np.abs(a[0::2, 0::2] - a[1::2, 1::2]).mean() + np.abs(a[0::2, 0::2] - a[0::2, 1::2]).mean()

    assert detail(grey(up)) == 0 and detail(grey(two)) > 0.5


def test_bad_requests_say_why(qtbot, window, tmp_path):
    win = window
    with pytest.raises(ValueError, match="allowed .gif or .mp4"):
        win.features.screen_recording.start("loss", tmp_path / "x.avi")
    with pytest.raises(ValueError, match="target='nope' is unknown"):
        win.features.screen_recording.start("nope", tmp_path / "x.gif")
    with pytest.raises(ValueError, match="fps=12 is not offered"):
        win.features.screen_recording.start("loss", tmp_path / "x.gif", fps=12)
    rec = win.features.screen_recording.start("loss", tmp_path / "a.gif")
    with pytest.raises(ValueError, match="running already"):
        win.features.screen_recording.start("gates", tmp_path / "b.gif")
    with qtbot.waitSignal(rec.finished, timeout=WAIT_MS):
        win.features.screen_recording.stop()


def test_mp4_without_imageio_ffmpeg_says_how_to_get_it(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import imageio_ffmpeg -> ImportError
    problem = recording.mp4_problem()
    assert problem == recording.MP4_MISSING and 'pip install "peft-explorer[video]"' in problem
    with pytest.raises(ValueError) as err:
        window.features.screen_recording.start("loss", tmp_path / "x.mp4")
    assert str(err.value) == problem
    assert window.features.screen_recording.toggle("loss", str(tmp_path / "x.mp4")) is None
    assert 'pip install "peft-explorer[video]"' in window.status.currentMessage()
    assert window.features.screen_recording.active is None and not (tmp_path / "x.mp4").exists()

    dialog = screen_recording.RecordDialog(window)  # the dialog says it where MP4 is chosen
    qtbot.addWidget(dialog)
    assert dialog.start_button.isEnabled()
    dialog.format_box.setCurrentIndex(dialog.format_box.findData(".mp4"))
    assert 'pip install "peft-explorer[video]"' in dialog.hint.text()
    assert not dialog.start_button.isEnabled() and dialog.path_edit.text().endswith(".mp4")
    dialog.format_box.setCurrentIndex(dialog.format_box.findData(".gif"))
    assert dialog.start_button.isEnabled() and "memory limit" in dialog.hint.text()


def test_the_dialog_starts_what_was_chosen(qtbot, window, tmp_path, monkeypatch):
    win = window
    chosen = {}

    def run_dialog(dialog):
        dialog.target_box.setCurrentIndex(dialog.target_box.findData("gates"))
        dialog.fps_box.setCurrentIndex(dialog.fps_box.findData(30))
        dialog.path_edit.setText(str(tmp_path / "gates"))
        chosen["choice"] = dialog.choice()
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(screen_recording.RecordDialog, "exec", run_dialog)
    win.actions_by_name["record"].trigger()  # File > Record…
    rec = win.features.screen_recording.active
    assert chosen["choice"] == ("gates", str(tmp_path / "gates.gif"), 30)
    assert rec is not None and rec.widget is win.views["gates"] and rec.fps == 30
    with qtbot.waitSignal(rec.finished, timeout=WAIT_MS):
        indicator(win).stop_button.click()  # the indicator's Stop button
    assert (tmp_path / "gates.gif").is_file()


def test_closing_the_window_still_writes_the_file(qtbot, window, tmp_path):
    win = window
    rec = win.features.screen_recording.start("window", tmp_path / "closing.gif", fps=10)
    qtbot.waitUntil(lambda: rec.frames >= 3, timeout=WAIT_MS)
    win.close()
    assert rec.state in ("encoding", "done") and rec.stop_reason == "the window closed"
    assert rec.wait(30)
    with Image.open(tmp_path / "closing.gif") as im:
        assert im.format == "GIF"


def test_mp4_is_valid_and_has_every_frame(qtbot, window, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    win, fps = window, 10
    path = tmp_path / "loss.mp4"
    rec = win.features.screen_recording.start("loss", path, fps=fps)
    animate(rec, win.views["loss"])
    qtbot.waitUntil(lambda: rec.frames >= 8, timeout=WAIT_MS)
    with qtbot.waitSignal(rec.finished, timeout=WAIT_MS) as done:
        win.features.screen_recording.stop()
    assert done.args[0], done.args[1]
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    frames = sum(1 for _ in reader)
    w, h = rec.size
    assert meta["size"] == (w + w % 2, h + h % 2) and meta["fps"] == fps
    assert frames == rec.frames
