"""Following a run live (explorer.gui.replay with follow=True; `python -m explorer --follow DIR`): a
writer on another thread appends records, the views keep up, the scrubber goes back and returns to
the head; a finished run says so, a run whose writer went away without finishing looks stalled."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from engine_helpers import one_thread, tiny_matrix  # noqa: F401

from explorer.engine.trainer import Trainer
from explorer.schema.recording import RecordingWriter

WAIT_MS = 30_000
KEEP_UP_MS = 3_000  # "new records reach the views within about a second" (+ a busy 2-core machine)
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.window(factory=None, start=False, size=(1600, 1000))


@pytest.fixture(scope="module")
def run_snapshots():
    """A short matrix run's snapshots, steps 0..6, and its settings."""
    settings = tiny_matrix(rank=3, display_size=24)
    trainer = Trainer(settings)
    snaps = []
    for _step in range(7):
        snap = trainer.snapshot(settings.display_size)
        snap.state = "running"
        snaps.append(snap)
        trainer.train_step()
    return settings, snaps


class ThreadWriter:
    """A RecordingWriter driven from its own thread, as a training job writes while the app follows."""

    def __init__(self, directory: Path, settings):
        self.writer = RecordingWriter(directory, {"settings": settings.to_dict(), "device": "cpu"})
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            job()

    def do(self, fn) -> None:
        done = threading.Event()
        self.jobs.put(lambda: (fn(), done.set()))
        assert done.wait(30)

    def write(self, *snaps) -> None:
        for snap in snaps:
            self.do(lambda s=snap: self.writer.write(s))

    def end(self, finish: bool) -> None:
        self.do((lambda: self.writer.finish(final_step=6)) if finish else self.writer.close)
        self.jobs.put(None)
        self.thread.join(30)


def label(ctl) -> str:
    return ctl.follow_label.text() if ctl.follow_label is not None else ""


def test_the_follower_keeps_up_goes_back_returns_to_the_head_and_sees_the_end(qtbot, window, run_snapshots, tmp_path):
    settings, snaps = run_snapshots
    win = window
    out = tmp_path / "live"
    writer = ThreadWriter(out, settings)
    try:
        writer.write(snaps[0], snaps[1])
        ctl = win.features.replay.open(out, follow=True, poll_ms=100)
        qtbot.waitUntil(lambda: win.replay is ctl, timeout=WAIT_MS)
        assert ctl.shown_step == 1 and ctl.count == 2  # at the head
        assert label(ctl).startswith("following · step 1 · last record") and "Following  live" in ctl.bar.name.text()
        writer.write(snaps[2], snaps[3])
        qtbot.waitUntil(lambda: ctl.shown_step == 3, timeout=KEEP_UP_MS)
        assert ctl.bar.slider.maximum() == 3 and "step 3" in label(ctl)
        qtbot.waitUntil(lambda: win.views["delta"].snapshot is ctl.shown, timeout=WAIT_MS)
        # the scrubber goes back: new records extend the slider but the views stay there
        assert ctl.show_index(0)
        writer.write(snaps[4])
        qtbot.waitUntil(lambda: ctl.count == 5, timeout=KEEP_UP_MS)
        assert ctl.shown_step == 0 and ctl.bar.slider.maximum() == 4 and ctl.bar.head_button.isEnabled()
        ctl.bar.head_button.click()  # back to the head: the views follow the run again
        assert ctl.shown_step == 4 and not ctl.bar.head_button.isEnabled()
        writer.write(snaps[5])
        qtbot.waitUntil(lambda: ctl.shown_step == 5, timeout=KEEP_UP_MS)
        writer.write(snaps[6])
        writer.end(finish=True)
        qtbot.waitUntil(lambda: label(ctl).startswith("finished"), timeout=KEEP_UP_MS)
        assert ctl.shown_step == 6 and "finished" in win.status.currentMessage() and not ctl.poll.isActive()
    finally:
        if writer.thread.is_alive():
            writer.end(finish=False)


def test_a_run_whose_writer_went_away_looks_stalled_and_keeps_what_it_has(qtbot, window, run_snapshots, tmp_path):
    settings, snaps = run_snapshots
    win = window
    out = tmp_path / "live"
    writer = ThreadWriter(out, settings)
    writer.write(snaps[0], snaps[1])
    ctl = win.features.replay.open(out, follow=True, poll_ms=100, stall_s=0.5)
    qtbot.waitUntil(lambda: win.replay is ctl, timeout=WAIT_MS)
    # quiet, but its writer (this process, holding the lock) is alive: slow, not stalled
    qtbot.waitUntil(lambda: ctl.watch.quiet_for() > 1.5, timeout=WAIT_MS)
    assert not ctl.watch.stalled and label(ctl).startswith("following")
    writer.end(finish=False)  # the writer lets go of its lock without the "finished" line
    qtbot.waitUntil(lambda: "looks stalled" in win.status.currentMessage(), timeout=WAIT_MS)
    assert label(ctl).startswith("stalled?") and ctl.count == 2 and ctl.shown_step == 1
    assert ctl.show_index(0)  # what it has stays usable


def test_following_a_directory_before_its_first_record(qtbot, window, run_snapshots, tmp_path):
    settings, snaps = run_snapshots
    win = window
    out = tmp_path / "live"
    writer = ThreadWriter(out, settings)
    try:
        ctl = win.features.replay.open(out, follow=True, poll_ms=100)
        assert ctl is not None and "waiting for its records" in win.status.currentMessage()
        qtbot.waitUntil(lambda: not ctl.reading, timeout=WAIT_MS)
        assert win.replay is None  # nothing to show yet; the window stays as it was
        writer.write(snaps[0])
        qtbot.waitUntil(lambda: win.replay is ctl and ctl.shown_step == 0, timeout=KEEP_UP_MS)
    finally:
        writer.end(finish=True)


def test_command_line_follow_opens_the_recording_in_follow_mode(run_snapshots, tmp_path):
    settings, snaps = run_snapshots
    out = tmp_path / "live"
    writer = RecordingWriter(out, {"settings": settings.to_dict(), "device": "cpu"})
    writer.write(snaps[0])
    writer.write(snaps[1])
    code = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "import explorer.gui.replay as r\n"
        "ready = r.ReplayFeature._ready\n"
        "def wrapped(self, ctl):\n"
        "    ready(self, ctl)\n"
        "    print('following', ctl.follow, ctl.count, ctl.shown_step, 'worker', self.window.worker, flush=True)\n"
        "    QTimer.singleShot(0, self.window.widget.close)\n"
        "r.ReplayFeature._ready = wrapped\n"
        "from explorer.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, "--follow", str(out), "--settings-path", str(tmp_path / "s.ini")],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            cwd=ROOT,
        )
    finally:
        writer.close()
    assert done.returncode == 0, done.stderr
    assert "following True 2 1 worker None" in done.stdout
