"""The window with its default worker, training in a child process, end to end (pytest-qt, offscreen):
Play, every visible view redraws, the child killed shows a message and the window lives on, Reset
brings training back, closing leaves no process and no thread. (The other GUI tests use the thread
worker through `worker_factory`, for speed.)"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import threading

from explorer.commands.app import add_arguments
from explorer.engine.process_worker import ProcessTrainingWorker
from explorer.gui.main_window import DEFAULT_WORKER, THREAD_WORKER

WAIT_MS = 60_000


def test_in_process_flag_picks_the_thread_worker():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--in-process"]).in_process and not parser.parse_args([]).in_process
    assert DEFAULT_WORKER.endswith(":ProcessTrainingWorker") and THREAD_WORKER.endswith(":TrainingWorker")


def test_the_gui_side_needs_no_torch():
    """Importing torch takes seconds, mostly holding the GIL: the GUI process must never need it when
    training runs in a child (the budget view prices LLaMA presets from a torch-free config)."""
    code = (
        "import sys; import explorer.gui.main_window, explorer.engine.process_worker, explorer.gui.views; "
        "from explorer.gui.views.budget_view import price_presets; "
        "from explorer.schema.settings import TrainSettings; "
        "assert price_presets(TrainSettings().to_dict()); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_window_trains_in_a_child_process_survives_its_death_and_leaves_nothing(qtbot, make_window):
    baseline = {t.ident for t in threading.enumerate()}
    win = make_window(factory=None)  # the app's default: training in a child process
    assert isinstance(win.worker, ProcessTrainingWorker)
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.step == 0, timeout=WAIT_MS)
    shown = [v for v in win.visible_view_ids() if v != "budget"]  # budget: drawn from the settings
    assert shown
    before = {v: win.views[v].grab().toImage() for v in shown}

    win.play()
    qtbot.waitUntil(lambda: win.last_snapshot.step >= 30 and win.last_snapshot.state == "running", timeout=WAIT_MS)

    def redrawn():
        assert all(win.views[v].grab().toImage() != before[v] for v in shown)

    qtbot.waitUntil(redrawn, timeout=WAIT_MS)

    # the training process dies: a message, the window lives on, Reset starts a new one
    first = win.worker
    os.kill(first.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: win.fault_dialog is not None and "exit code -9" in win.fault_dialog.text(), timeout=WAIT_MS)
    assert "stopped unexpectedly" in win.status.currentMessage()
    for _ in range(3):
        win.drain()  # later drains find nothing: no second, vaguer message
    assert "exit code -9" in win.fault_dialog.text() and not win.playing
    win.reset()
    qtbot.waitUntil(
        lambda: (
            win.worker is not None
            and win.worker.alive
            and win.last_snapshot.state == "paused"
            and win.last_snapshot.step == 0
        ),
        timeout=WAIT_MS,
    )
    assert win.fault_dialog is None
    win.play()
    qtbot.waitUntil(lambda: win.last_snapshot.step >= 10 and win.last_snapshot.state == "running", timeout=WAIT_MS)

    win.close()
    assert win.worker is None and not first.alive
    assert not multiprocessing.active_children()
    leftover = [t for t in threading.enumerate() if t.ident not in baseline and t.is_alive()]
    assert not leftover, f"threads left running: {leftover}"
