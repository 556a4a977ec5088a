"""Opening things in the window: one Open… that recognises what it is given, the recent-files list,
Ctrl+S's atomic settings write, a run recording whose disk fails at once, Open model… / Open data…."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from explorer.gui import run_recording
from explorer.gui.persistence import Persistence
from explorer.gui.window_files import kind_of
from explorer.schema.recording import FORMAT, recorded_model_problem

WAIT_MS = 60_000


def test_kind_of_recognises_each_thing_the_app_opens(tmp_path):
    (tmp_path / "state.safetensors").write_bytes(b"x")
    (tmp_path / "s.json").write_text("{}")
    (tmp_path / "d.jsonl").write_text("{}")
    for name, files in {
        "adapter": ["adapter_config.json"],
        "recording": ["config.json", "metrics.jsonl"],
        "model": ["config.json"],
        "texts": ["a.txt"],
    }.items():
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_text("{}")
    assert kind_of(tmp_path / "state.safetensors") == "state"
    assert kind_of(tmp_path / "s.json") == "settings"
    assert kind_of(tmp_path / "d.jsonl") == "data"
    assert [kind_of(tmp_path / n) for n in ("adapter", "recording", "model", "texts")] == [
        "adapter",
        "recording",
        "model",
        "data",
    ]
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(ValueError, match="not a regular file"):
        kind_of(tmp_path / "pipe.json")
    with pytest.raises(FileNotFoundError, match="no such file"):
        kind_of(tmp_path / "gone.json")


def test_recent_files_are_remembered_newest_first_and_missing_ones_pruned(tmp_path):
    store = Persistence(path=str(tmp_path / "settings.ini"))
    a, b = tmp_path / "a.json", tmp_path / "rec"
    a.write_text("{}")
    b.mkdir()
    store.add_recent(str(a), "settings")
    store.add_recent(str(b), "recording")
    store.add_recent(str(a), "settings")  # again: moves to the top, once
    assert store.recent_files() == [(str(a), "settings"), (str(b), "recording")]
    a.unlink()
    again = Persistence(path=str(tmp_path / "settings.ini"))
    assert again.recent_files() == [(str(b), "recording")]
    store.q.setValue("files/recent", '[[1, 2], "x", ["p", "evil"]')  # damaged: ignored
    assert store.recent_files() == []


def test_ctrl_s_writes_settings_atomically_and_a_failed_write_keeps_the_old_file(window, tmp_path, monkeypatch):
    path = tmp_path / "settings.json"
    path.write_text('{"rank": 2}\n')
    import explorer.schema.files as files

    def fail_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", fail_fsync)
    window.files.save_state(str(path))
    assert path.read_text() == '{"rank": 2}\n'  # the previous file is whole
    assert "No space left" in window.status.currentMessage()
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temporary left behind
    monkeypatch.undo()
    window.files.save_state(str(path))
    assert json.loads(path.read_text())["rank"] == window.settings.rank


def test_open_applies_a_settings_file_read_off_the_gui_thread_and_lists_it(qtbot, window, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(window.settings.with_changes(rank=2).to_dict()))
    assert window.files.open_file(str(path)) == "settings"
    qtbot.waitUntil(lambda: window.settings.rank == 2, timeout=WAIT_MS)
    assert window.store.recent_files()[0] == (str(path), "settings")
    window.files.fill_recent_menu()
    texts = [a.text() for a in window.files.recent_menu.actions()]
    assert texts[0].startswith("s.json") and "Clear the list" in texts


def test_a_run_recording_whose_first_write_fails_at_once_says_so(qtbot, window, tmp_path, monkeypatch):
    """The writer thread fails before toggle() returns (start() waits for it here): the failure was
    emitted before anyone listened, and the recorder stayed 'active' with no message."""
    qtbot.waitUntil(lambda: window.last_snapshot is not None, timeout=WAIT_MS)

    def full_disk(self, snap, fresh_samples=False, extra=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_recording.RecordingWriter, "write", full_disk)
    start = run_recording.RunRecorder.start

    def start_and_let_the_writer_fail(self):
        start(self)
        self.wait(30)  # the writer thread has failed and emitted by now

    monkeypatch.setattr(run_recording.RunRecorder, "start", start_and_let_the_writer_fail)
    rec = window.features.run_recording.toggle(tmp_path / "rec")
    assert rec is not None
    qtbot.waitUntil(lambda: not rec.active, timeout=WAIT_MS)
    assert "No space left" in window.status.currentMessage()
    assert window.actions_by_name["record_run"].text() == "Record run to directory…"


def test_a_recording_made_on_a_model_that_is_gone_is_refused_saying_so(window, tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    gone = tmp_path / "my-llama"
    (rec / "config.json").write_text(json.dumps({"format": FORMAT, "base": {"model_dir": str(gone)}}))
    (rec / "metrics.jsonl").write_text("")
    assert "which is missing" in recorded_model_problem(rec)
    assert window.files.open_recording(str(rec)) is None
    assert "my-llama" in window.status.currentMessage() and "missing" in window.status.currentMessage()
    assert not window.replaying
    gone.mkdir()
    (gone / "config.json").write_text("{}")
    assert recorded_model_problem(rec) is None
    assert recorded_model_problem(tmp_path) is None  # no config.json: the reader says so itself


@pytest.mark.parametrize("name", ["model", "data"])
def test_open_model_or_data_refuses_what_is_not_there_and_keeps_the_run(window, tmp_path, name):
    before = window.settings
    assert getattr(window.files, f"open_{name}")(str(tmp_path / "nothing")) is None
    assert window.settings == before and "nothing" in window.status.currentMessage()


@pytest.fixture
def user_sources(tmp_path):
    """A tiny Llama checkpoint and datasets (made before the window, whose fixture watches threads)."""
    from checkpoint_factory import save_checkpoint, write_datasets

    model_dir = tmp_path / "tiny-llama"
    save_checkpoint(model_dir, "llama")
    return model_dir, write_datasets(tmp_path / "data")


def user_worker(settings):
    """The real TrainingWorker on one thread, loading the base the settings name (no test model)."""
    from explorer.engine.worker import TrainingWorker

    return TrainingWorker(settings, threads=1)


def test_the_window_opens_a_tiny_model_and_dataset_and_trains(qtbot, user_sources, make_window):
    from engine_helpers import tiny_lm

    from explorer.core.checkpoint import load_checkpoint
    from explorer.schema.format import format_short

    model_dir, data = user_sources
    win = make_window(tiny_lm(model=str(model_dir), data=str(data["txt"])), factory=user_worker)
    qtbot.waitUntil(lambda: win.last_snapshot is not None, timeout=WAIT_MS)
    snap = win.last_snapshot
    assert snap.settings["model"] == str(model_dir) and snap.settings["data"] == str(data["txt"])
    # the budget view shows the loaded model's real counts
    base = snap.budget["base_params"]
    assert base == sum(p.numel() for p in load_checkpoint(model_dir).parameters())
    qtbot.waitUntil(lambda: format_short(base) in win.views["budget"].trainable.detail.text(), timeout=WAIT_MS)
    # File > Open data…: a cold change onto the instruction data, and the run trains on it
    assert win.files.open_data(str(data["jsonl"])) == str(data["jsonl"])
    qtbot.waitUntil(lambda: (win.last_snapshot.settings or {}).get("data") == str(data["jsonl"]), timeout=WAIT_MS)
    step = win.last_snapshot.step
    win.worker.step(3)
    qtbot.waitUntil(lambda: win.last_snapshot.step >= step + 3, timeout=WAIT_MS)
    assert win.last_snapshot.loss is not None and win.last_snapshot.fault is None
    assert win.store.recent_files()[0] == (str(data["jsonl"]), "data")
    # File > Open model… on a directory that is no usable checkpoint: one line, the run in force stays
    bad = model_dir.parent / "bad-model"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "gpt2"}')
    before = win.settings
    win.files.open_model(str(bad))
    qtbot.waitUntil(lambda: "gpt2" in win.status.currentMessage() or win.fault_dialog is not None, timeout=WAIT_MS)
    assert win.settings.model == before.model, win.status.currentMessage()
    assert str(bad) not in [p for p, _ in win.store.recent_files()]  # refused: not remembered


def test_open_recent_reopens_through_open(window, tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"x")
    window.files.open_recent(str(path), "state")
    assert "unknown file type" in window.status.currentMessage()
    assert Path(path).exists()


def test_command_line_model_and_data_flags_set_the_window_settings(tmp_path):
    """`python -m explorer --model DIR --data PATH`: the window starts on the lm scenario with them
    (the settings it remembers on close say so)."""
    import subprocess
    import sys

    model_dir, data = tmp_path / "m", tmp_path / "d.txt"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    data.write_text("text\n")
    ini = tmp_path / "s.ini"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    args = ["--first-frame-exit", "--scenario", "lm", "--settings-path", str(ini)]
    out = subprocess.run(
        [sys.executable, "-m", "explorer", *args, "--model", str(model_dir), "--data", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    saved = Persistence(path=str(ini)).load_settings()
    assert saved is not None and saved.model == str(model_dir) and saved.data == str(data)
