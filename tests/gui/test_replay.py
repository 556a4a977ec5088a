"""Replay (explorer.gui.replay): a recording drawn in the window as the live run drew it, scrubbed with
the slider, played at a speed; a recording cut off mid-write still opens; the live run recorded from
the app replays too; `python -m explorer --replay DIR`."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import assert_snapshots_equal, one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401
from PySide6.QtWidgets import QApplication

from explorer.engine.trainer import Trainer
from explorer.gui import replay
from explorer.gui.persistence import Persistence
from explorer.schema.recording import RecordingReader, RecordingWriter

WAIT_MS = 30_000
ROOT = Path(__file__).resolve().parents[2]


def record(directory: Path, settings, steps: int, base_model=None) -> dict:
    """A headless run recorded at every step, as `python -m explorer run` does; {step: live snapshot}."""
    trainer = Trainer(settings, base_model=base_model)
    writer = RecordingWriter(directory, {"settings": settings.to_dict(), "device": trainer.device_label()})
    live = {}
    for k in range(steps + 1):
        trainer.eval_loss()
        snap = trainer.snapshot(settings.display_size, with_samples=k in (0, steps))
        snap.state = "running" if k < steps else "paused"
        writer.write(snap, fresh_samples=k in (0, steps))
        live[k] = snap
        if k < steps:
            trainer.train_step()
    trainer.save_state(directory / "state.safetensors")
    writer.finish(final_step=trainer.step, completed=True)
    return live


@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec") / "matrix"
    return d, record(d, tiny_matrix(rank=3, display_size=24), 12)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec") / "lm"
    return d, record(d, tiny_lm(method="lora+prefix", prefix_layers=2), 4, base_model=tiny_byte_model())


# no worker unless a test starts one (Back to live would start the app's default, a child process)
pytestmark = pytest.mark.window(factory=None, start=False, size=(1600, 1000))


def drawn(qtbot, win, ctl, view_ids):
    """Wait until these views took the snapshot the replay shows now."""
    qtbot.waitUntil(lambda: all(win.views[v].snapshot is ctl.shown for v in view_ids), timeout=WAIT_MS)


def open_replay(qtbot, win, directory, **kw):
    """Open a recording and wait until it is indexed (off the GUI thread) and shown."""
    ctl = win.features.replay.open(directory, **kw)
    assert ctl is not None
    qtbot.waitUntil(lambda: win.replay is ctl, timeout=WAIT_MS)
    return ctl


def positive(values):
    v = np.asarray(values, np.float64)
    return v[v > 0]


def test_replay_at_step_s_draws_what_the_live_run_had_at_step_s(qtbot, window, matrix_run):
    directory, live = matrix_run
    win = window
    ctl = open_replay(qtbot, win, directory)
    assert list(ctl.steps) == list(range(13)) and ctl.count == 13
    assert "Replaying matrix: 13 recorded steps" in win.status.currentMessage()
    for s in (0, 5, 12, 3):
        assert ctl.show_step(s)
        drawn(qtbot, win, ctl, ["delta", "spectrum", "loss"])
        m_live = live[s].matrices["W"]
        assert np.array_equal(win.views["delta"].image.image, m_live.delta)  # the heatmap's data
        y = win.views["spectrum"].curve.yData  # (log-scale axis: the data)
        y = np.zeros(0) if y is None else y  # step 0: ΔW = 0, no values
        assert np.allclose(y, positive(m_live.spectrum)) and len(y) == np.count_nonzero(m_live.spectrum)
        hx, hy = win.views["loss"].train_raw.getData()
        h = live[s].history
        assert np.array_equal(hx, h.steps) and np.allclose(hy, h.loss)
        assert win.status.step.text() == f"step {s:,}" and "replay" in win.status.state.text()
        assert ctl.bar.step_label.text().startswith(f"step {s} of 12")
        # field for field, array for array: the snapshot drawn is the live one (state aside)
        assert_snapshots_equal(dataclasses.replace(ctl.shown, state=live[s].state), live[s])
    assert s == 3 and ctl.bar.slider.value() == 3


def test_prefix_views_replay_gates_and_attention(qtbot, window, lm_run):
    directory, live = lm_run
    win = window
    ctl = open_replay(qtbot, win, directory)
    qtbot.waitUntil(lambda: {"attention", "gates", "samples"} <= set(win.visible_view_ids()), timeout=WAIT_MS)
    assert ctl.show_step(4)
    drawn(qtbot, win, ctl, ["attention", "gates", "samples"])
    got = win.views["attention"].snapshot
    for p_live, p_got in zip(live[4].prefixes, got.prefixes):
        assert np.array_equal(p_live.attention, p_got.attention) and np.array_equal(p_live.gates, p_got.gates)
    assert np.array_equal(got.history.gates, live[4].history.gates)
    assert win.views["samples"].snapshot.samples == live[4].samples
    # samples are recorded when fresh (steps 0 and 4 here); as live, the newest so far ride along
    assert live[2].samples is None and ctl.show_step(2)
    drawn(qtbot, win, ctl, ["samples"])
    assert win.views["samples"].snapshot.samples == live[0].samples and live[0].samples["step"] == 0


def test_replay_shows_the_samples_nearest_the_scrubbed_step(qtbot, window, lm_run):
    directory, live = lm_run  # samples recorded at steps 0 and 4
    win = window
    ctl = win.features.replay.open(directory)
    view = win.views["samples"]
    qtbot.waitUntil(lambda: "samples" in win.visible_view_ids(), timeout=WAIT_MS)
    for step, made, age in ((1, 0, "1 step old"), (3, 4, "1 step ahead"), (4, 4, "new"), (2, 0, "2 steps old")):
        assert ctl.show_step(step)
        drawn(qtbot, win, ctl, ["samples"])
        assert view.snapshot.samples == live[made].samples and view.age() == age, step
    assert not view.sample_button.isEnabled()  # a replay shows what was recorded: nothing to sample


def test_nearer_samples_prefers_the_closer_then_the_earlier():
    a, b = {"step": 0, "adapted": "a"}, {"step": 10, "adapted": "b"}
    assert replay.nearer_samples(4, a, b) == a and replay.nearer_samples(6, a, b) == b
    assert replay.nearer_samples(5, b, a) == a  # a tie: what was known then
    assert replay.nearer_samples(7, None, b) == b and replay.nearer_samples(3, None, None) is None


def test_slider_keys_and_playback_move_the_views(qtbot, window, matrix_run):
    directory, live = matrix_run
    win = window
    ctl = open_replay(qtbot, win, directory)
    delta = win.views["delta"]
    ctl.bar.slider.setValue(7)  # the user drags the slider
    qtbot.waitUntil(lambda: ctl.shown_step == 7 and delta.snapshot is ctl.shown, timeout=WAIT_MS)
    assert np.array_equal(delta.image.image, live[7].matrices["W"].delta)
    win.findChild(replay.QtGui.QAction, "action_replay_step_1").trigger()  # Right: one record on
    assert ctl.shown_step == 8
    win.findChild(replay.QtGui.QAction, "action_replay_ends_0").trigger()
    assert ctl.shown_step == 0 and ctl.bar.slider.value() == 0
    win.activateWindow()  # the keys themselves (window shortcuts)
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=WAIT_MS)
    qtbot.keyClick(win, replay.Qt.Key.Key_End)
    assert ctl.shown_step == 12
    qtbot.keyClick(win, replay.Qt.Key.Key_Left)
    assert ctl.shown_step == 11
    qtbot.keyClick(win, replay.Qt.Key.Key_Space)  # the live Play is disabled: Space plays this
    assert ctl.playing and not win.playing
    qtbot.keyClick(win, replay.Qt.Key.Key_Space)
    assert not ctl.playing
    ctl.show_index(0)
    ctl.set_speed(8.0)
    assert ctl.steps_per_second() == pytest.approx(8 * ctl.rate) and "8x" in ctl.bar.speed_box.currentText()
    seen = []
    ctl.position_changed.connect(seen.append)
    ctl.bar.play_button.click()  # play: on to the end, then stop
    assert ctl.playing and "Pause" in ctl.bar.play_button.text()
    qtbot.waitUntil(lambda: not ctl.playing, timeout=WAIT_MS)
    assert ctl.shown_step == 12 and seen == sorted(seen) and seen[-1] == 12
    drawn(qtbot, win, ctl, ["delta"])
    assert np.array_equal(delta.image.image, live[12].matrices["W"].delta)


def test_live_controls_are_disabled_and_back_to_live_restores_them(qtbot, make_window, matrix_run):
    directory, live = matrix_run
    win = make_window(size=(1600, 1000))
    win.worker.step(2)
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.step == 2, timeout=WAIT_MS)
    assert win.settings == tiny_matrix()
    ctl = open_replay(qtbot, win, directory)
    assert not win.controls.isEnabled() and not win.speed_box.isEnabled()
    assert win.controls.settings == ctl.reader.settings and win.settings.rank == 3  # what it was made with
    for name in ("play_pause", "step", "reset", "save_state", "open", "talk_mode"):
        assert not win.actions_by_name[name].isEnabled(), name
    assert win.actions_by_name["export_view"].isEnabled() and win.actions_by_name["record"].isEnabled()
    ctl.show_step(9)
    win.worker.step(3)  # the live run goes on meanwhile; the window shows the replay
    win.worker.request_snapshot()
    qtbot.waitUntil(
        lambda: win.worker._mailbox.peek() is not None and win.worker._mailbox.peek().step == 5, timeout=WAIT_MS
    )
    win.drain()  # the drain timer's slot: it leaves the live snapshot waiting
    assert win.last_snapshot is ctl.shown and win.last_snapshot.step == 9
    ctl.bar.live_button.click()  # Back to live
    bar = win.findChild(replay.QtWidgets.QToolBar, "replay_bar")
    assert win.replay is None and (bar is None or not bar.isVisible())
    assert win.controls.isEnabled() and win.actions_by_name["play_pause"].isEnabled()
    assert win.settings == tiny_matrix() and win.worker.settings == tiny_matrix()
    qtbot.waitUntil(
        lambda: win.last_snapshot is not None and win.last_snapshot.state != "replay" and win.last_snapshot.step == 5,
        timeout=WAIT_MS,
    )
    assert "Back to live" in win.status.currentMessage()


def test_closing_in_replay_remembers_the_live_settings(qtbot, window, matrix_run, tmp_path):
    directory, _live = matrix_run
    win = window
    open_replay(qtbot, win, directory)
    assert win.settings.rank == 3
    win.close()
    assert Persistence(path=str(tmp_path / "settings.ini")).load_settings() == tiny_matrix()


def test_a_recording_cut_off_mid_write_still_opens(qtbot, window, matrix_run, tmp_path):
    directory, live = matrix_run
    cut = tmp_path / "cut"
    shutil.copytree(directory, cut)
    cfg = json.loads((cut / "config.json").read_text())
    for key in ("final_step", "completed"):
        cfg.pop(key, None)
    (cut / "config.json").write_text(json.dumps(cfg))
    (cut / "state.safetensors").unlink()
    (cut / "snapshots" / "000012.safetensors").unlink()  # killed before its metrics line
    raw = (cut / "metrics.jsonl").read_bytes()
    lines = [x for x in raw.split(b"\n") if b'"event": "finished"' not in x]  # the end the kill never reached
    (cut / "metrics.jsonl").write_bytes(b"\n".join(lines[:-3]) + b"\n" + lines[-3][: len(lines[-3]) // 2])
    win = window
    ctl = open_replay(qtbot, win, cut)
    assert list(ctl.steps) == list(range(11))  # 11 torn, 12 never written
    assert "cut off" in win.status.currentMessage() and "torn line" in win.status.currentMessage()
    assert ctl.show_step(10)
    drawn(qtbot, win, ctl, ["delta"])
    assert np.array_equal(win.views["delta"].image.image, live[10].matrices["W"].delta)
    # a damaged snapshot file: a message, and the replay stays where it was
    (cut / "snapshots" / "000004.safetensors").write_bytes(b"garbage")
    assert not ctl.show_step(4)
    assert "step 4 cannot be read" in win.status.currentMessage() and ctl.shown_step == 10


def test_what_is_not_a_recording_is_refused(qtbot, window, tmp_path):
    win = window
    (tmp_path / "empty").mkdir()
    assert win.features.replay.open(tmp_path / "empty") is None
    assert (
        "Could not open the recording" in win.status.currentMessage()
        and "no config.json" in win.status.currentMessage()
    )
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text('{"format": "something-else"}')
    assert win.features.replay.open(tmp_path / "foreign") is None
    assert "not a peft-explorer recording" in win.status.currentMessage()
    assert win.replay is None and win.controls.isEnabled()


def test_the_live_run_recorded_from_the_app_replays(qtbot, make_window, tmp_path):
    win = make_window(size=(1600, 1000))
    qtbot.waitUntil(lambda: win.last_snapshot is not None, timeout=WAIT_MS)
    out = tmp_path / "app-run"
    rec = win.features.run_recording.toggle(out)
    assert rec is not None and win.actions_by_name["record_run"].text() == "Stop recording the run"
    delivered = {}
    win.snapshot_delivered.connect(lambda s: delivered.__setitem__(s.step, s))
    win.worker.step(6)
    qtbot.waitUntil(lambda: 6 in delivered and delivered[6].state == "paused", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: rec.last_step == 6, timeout=WAIT_MS)
    with qtbot.waitSignal(rec.ended, timeout=WAIT_MS):
        win.actions_by_name["record_run"].trigger()  # File > Stop recording the run
    assert "Run recorded to" in win.status.currentMessage()
    reader = RecordingReader(out)
    assert reader.finished and 6 in reader.steps and (out / "state.safetensors").is_file()
    assert_snapshots_equal(reader.snapshot(6), dataclasses.replace(delivered[6]))
    ctl = open_replay(qtbot, win, out)
    assert ctl.show_step(6)
    drawn(qtbot, win, ctl, ["spectrum"])
    assert np.allclose(win.views["spectrum"].curve.yData, positive(delivered[6].matrices["W"].spectrum))
    win.features.replay.back_to_live()

    # a cold change ends the run's recording (one recording, one run)
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.state != "replay", timeout=WAIT_MS)
    rec = win.features.run_recording.toggle(tmp_path / "second")
    with qtbot.waitSignal(rec.ended, timeout=WAIT_MS) as ended:
        win.apply_settings(win.settings.with_changes(rank=2))
    assert "a recording holds one run" in ended.args[0] and RecordingReader(tmp_path / "second").steps
    assert win.features.run_recording.toggle(out) is None and "not empty" in win.status.currentMessage()


def test_command_line_replay_opens_the_recording_without_the_engine(matrix_run, tmp_path):
    directory, _live = matrix_run
    code = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "import explorer.gui.replay as r\n"
        "ready = r.ReplayFeature._ready\n"
        "def wrapped(self, ctl):\n"
        "    ready(self, ctl)\n"
        "    window = self.window\n"
        "    print('replaying', ctl.count, 'worker', window.worker, 'torch' in sys.modules, flush=True)\n"
        "    QTimer.singleShot(0, window.widget.close)\n"
        "r.ReplayFeature._ready = wrapped\n"
        "from explorer.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [sys.executable, "-c", code, "--replay", str(directory), "--settings-path", str(tmp_path / "s.ini")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "replaying 13 worker None False" in out.stdout  # no training engine, no torch


def big_recording(src: Path, dst: Path, lines: int, spectrum: int = 16) -> int:
    """A copy of the recording `src` with `lines` more records appended, written directly (fast): the
    records cycle over src's snapshot files. Two hostile lines among them. Returns the last step."""
    shutil.copytree(src, dst)
    raw = [x for x in (dst / "metrics.jsonl").read_bytes().split(b"\n") if x and b'"event"' not in x]
    first = len(raw)
    spec = json.dumps([0.5] * spectrum)
    with open(dst / "metrics.jsonl", "wb") as fh:
        fh.write(b"\n".join(raw) + b"\n")
        fh.writelines(
            (
                f'{{"step": {k}, "loss": {1.0 / (k + 1)}, "eval_loss": null, "lr": 0.01, "time": {k * 0.01}, '
                f'"segment": 0, "steps_per_second": 100.0, "state": "running", "spectra": {{"W": {spec}}}, '
                f'"snapshot": "snapshots/{k % first:06d}.safetensors"}}\n'
            ).encode()
            for k in range(first, first + lines)
        )
        fh.write(b'{"step": 5, "loss": "a string where a number goes", "snapshot": "snapshots/000005.safetensors"}\n')
        fh.write(b'{"step": 6, "settings": {"rank": [[[]]]}, "state": {"nested": 1}}\n')
    return first + lines - 1


class LoopWatch:
    """The longest gap between two ticks of a 20 ms timer: how long the GUI's event loop stalled."""

    def __init__(self):
        from PySide6.QtCore import QTimer

        self.longest = 0.0
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self):
        now = time.perf_counter()
        self.longest = max(self.longest, now - self._last)
        self._last = now

    def stop(self):
        self.timer.stop()


def test_a_long_recording_opens_without_stalling_the_window(qtbot, window, matrix_run, tmp_path):
    """Issue 18: --replay of a 400 MB metrics.jsonl froze the window for 19 s. Now it is indexed on a
    helper thread: the window enters replay mode at once, the event loop never stalls, the slider
    fills in, and the two bad lines are skipped and counted, never drawn."""
    directory, live = matrix_run
    lines = 60_000  # ~11 MB; scanned at ~100 µs a line on this busy 2-core machine
    last = big_recording(directory, tmp_path / "big", lines)
    win = window
    watch = LoopWatch()
    ctl = win.features.replay.open(tmp_path / "big")
    qtbot.waitUntil(lambda: win.replay is ctl, timeout=WAIT_MS)
    assert ctl.shown_step == 0 and ctl.reading  # shown while the rest is read
    with qtbot.waitSignal(ctl.loaded, timeout=120_000):
        pass
    watch.stop()
    assert watch.longest < 1.0, f"the event loop stalled for {watch.longest:.2f} s"
    assert ctl.count == last + 1 and ctl.steps[-1] == last and ctl.bar.slider.maximum() == last
    assert ctl.reader.skipped_lines == 2 and "a string where a number goes" not in str(ctl.shown)
    assert "Replaying big" in win.status.currentMessage() and "2 torn line(s) skipped" in win.status.currentMessage()
    assert ctl.show_index(last) and ctl.shown_step == last
    want = live[last % 13].matrices["W"]  # the record's snapshot file (the records cycle over 13)
    drawn(qtbot, win, ctl, ["delta"])
    assert np.array_equal(win.views["delta"].image.image, want.delta)
    # the loss view: the whole run (thinned), a cursor at the step shown
    loss = win.views["loss"]
    rx, ry = loss.run_curve.getOriginalDataset()
    assert (
        len(rx) <= 2 * 4096 and rx[-1] == last and loss.replay_cursor.value() == last and loss.replay_cursor.isVisible()
    )
    assert ctl.show_step(3) and loss.replay_cursor.value() == 3 and loss.run_curve.getOriginalDataset()[0][-1] == last


def test_indexing_a_recording_takes_memory_by_record_not_by_line(matrix_run, tmp_path):
    """The index keeps 24 bytes a record, not the record's line (RecordingReader keeps every line as a
    dict: 2.5 GB for a 400 MB file)."""
    import tracemalloc

    from explorer.schema.recording_index import RecordingIndex

    directory, _live = matrix_run
    lines = 8_000
    big_recording(directory, tmp_path / "big", lines, spectrum=256)
    size = (tmp_path / "big" / "metrics.jsonl").stat().st_size
    tracemalloc.start()
    try:
        index = RecordingIndex(tmp_path / "big")
        index.scan()
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(index) == 13 + lines and index.skipped_lines == 2
    assert size > 8e6 and peak < 2e6, (size, peak)  # the file is 10 MB; the index needs under 2 MB
    tracemalloc.start()
    try:
        RecordingReader(tmp_path / "big")
        _now, reader_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader_peak > 10 * peak  # what it replaced


def test_a_recording_with_no_good_record_says_so_and_leaves_a_usable_window(qtbot, window, matrix_run, tmp_path):
    """Issue 18: --replay of a bad recording left a dead window (no engine, no message)."""
    directory, _live = matrix_run
    bad = tmp_path / "bad"
    shutil.copytree(directory, bad)
    (bad / "metrics.jsonl").write_bytes(
        b'{"step": "zero", "snapshot": "snapshots/000000.safetensors"}\n{"step": 1, "lr": [1]}\nnot json\n'
    )
    win = window
    started = []
    win.start_worker = lambda play=False: started.append(play)  # what --replay falls back to
    ctl = win.features.replay.open(bad, live_on_failure=True)
    assert ctl is not None
    qtbot.waitUntil(lambda: "Could not open the recording" in win.status.currentMessage(), timeout=WAIT_MS)
    message = win.status.currentMessage()
    assert "no complete record" in message and "line 1" in message and "step" in message
    assert win.replay is None and started == [False] and win.controls.isEnabled()


def test_the_slider_jumps_to_where_it_is_clicked(qtbot, window, matrix_run):
    """Issue 16: a click on the slider's groove went a tenth of the way, not to the click."""
    directory, _live = matrix_run
    win = window
    ctl = open_replay(qtbot, win, directory)
    slider = ctl.bar.slider
    qtbot.waitUntil(lambda: slider.isVisible() and slider.width() > 100, timeout=WAIT_MS)
    x = round(slider.width() * 0.8)
    qtbot.mouseClick(slider, replay.Qt.MouseButton.LeftButton, pos=replay.QtCore.QPoint(x, slider.height() // 2))
    qtbot.waitUntil(lambda: ctl.shown_step is not None and ctl.shown_step >= 9, timeout=WAIT_MS)
    assert 9 <= slider.value() <= 11  # where it was clicked (a page step would have gone to 1)


def test_follow_a_run_is_in_the_file_menu(qtbot, window, monkeypatch, matrix_run):
    directory, _live = matrix_run
    win = window
    titles = []
    chooser = lambda _parent, title, _start: titles.append(title) or str(directory)  # noqa: E731
    monkeypatch.setattr(replay.QtWidgets.QFileDialog, "getExistingDirectory", chooser)
    menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&File")
    assert win.actions_by_name["follow_run"] in menu.actions()
    win.actions_by_name["follow_run"].trigger()  # File > Follow a run…
    qtbot.waitUntil(lambda: win.replay is not None, timeout=WAIT_MS)
    assert titles == ["Follow a run (its recording directory)"] and win.replay.follow
    assert win.replay.shown_step == 12  # at the head; the recording is finished
    qtbot.waitUntil(lambda: win.replay.follow_label.text().startswith("finished · step 12"), timeout=WAIT_MS)
