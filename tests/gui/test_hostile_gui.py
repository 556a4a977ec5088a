"""Hostile input at the window's entry points (issue 18): each gives one line that says what failed,
the window lives on and the event loop never stalls for more than a second (the stall watchdog of
tests/conftest.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from explorer.schema.recording import FORMAT

WAIT_MS = 60_000


def fifo_json(tmp: Path) -> Path:
    path = tmp / "settings.json"
    os.mkfifo(path)  # no writer: an open() that blocks would freeze the window forever
    return path


def non_utf8_json(tmp: Path) -> Path:
    path = tmp / "settings.json"
    path.write_bytes(b'{"rank": "\xff\xfe"}')
    return path


def deep_json(tmp: Path) -> Path:
    path = tmp / "settings.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


def settings_of_wrong_types(tmp: Path) -> Path:
    path = tmp / "settings.json"
    path.write_text(json.dumps({"rank": "eight", "targets": 3}))
    return path


def truncated_safetensors(tmp: Path) -> Path:
    path = tmp / "state.safetensors"
    header = json.dumps({"W": {"dtype": "F32", "shape": [64, 64], "data_offsets": [0, 16384]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 100)  # 100 of 16384 bytes
    return path


def deck_of_wrong_types(tmp: Path) -> Path:
    path = tmp / "deck.toml"
    path.write_text('[[scene]]\ntitle = 3\ncaption = ["x"]\nviews = [1]\nruns = [{label = [1]}]\n')
    return path


def recording_of_wrong_types(tmp: Path) -> Path:
    rec = tmp / "recording"
    rec.mkdir()
    (rec / "config.json").write_text(json.dumps({"format": FORMAT, "settings": {"rank": [1]}, "steps": "many"}))
    (rec / "metrics.jsonl").write_text(json.dumps({"step": "zero", "loss": {"x": 1}}) + "\n")
    return rec


def recording_on_a_missing_model(tmp: Path) -> Path:
    rec = recording_of_wrong_types(tmp)
    config = {"format": FORMAT, "settings": {"model": str(tmp / "gone")}, "base": {"model_dir": str(tmp / "gone")}}
    (rec / "config.json").write_text(json.dumps(config))
    return rec


def not_an_adapter(tmp: Path) -> Path:
    d = tmp / "not-an-adapter"
    d.mkdir()
    (d / "notes.bin").write_bytes(os.urandom(64))
    return d


def unknown_file(tmp: Path) -> Path:
    path = tmp / "weights.pt"
    path.write_bytes(b"\x80\x04pickle")
    return path


# (name, make the input, the entry point, what the message must say)
CASES = [
    ("fifo-json", fifo_json, "open", "not a regular file"),
    ("non-utf8-json", non_utf8_json, "open", "settings.json"),
    ("deep-json", deep_json, "open", "nested"),
    ("settings-wrong-types", settings_of_wrong_types, "open", "targets=3"),
    ("truncated-safetensors", truncated_safetensors, "open", "state.safetensors"),
    ("deck-wrong-types", deck_of_wrong_types, "talk", "title"),
    ("recording-wrong-types", recording_of_wrong_types, "open", "recording"),
    ("recording-missing-model", recording_on_a_missing_model, "open", "which is missing"),
    ("not-an-adapter", not_an_adapter, "adapter", "adapter"),
    ("not-an-adapter-via-open", not_an_adapter, "open", "not a recording"),
    ("pickle-file", unknown_file, "open", "unknown file type"),
]


@pytest.mark.stall_watchdog(limit_s=1.0)
@pytest.mark.parametrize("name,make,entry,says", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_at_an_entry_point_says_what_failed_and_the_window_lives_on(
    qtbot, window, tmp_path, name, make, entry, says
):
    win = window
    qtbot.waitUntil(lambda: win.last_snapshot is not None, timeout=WAIT_MS)
    path = make(tmp_path)
    win.status.clearMessage()
    if entry == "open":
        win.files.open_file(str(path))
        qtbot.waitUntil(lambda: win.status.currentMessage().startswith("⚠"), timeout=WAIT_MS)
        message = win.status.currentMessage()
    elif entry == "talk":
        assert win.enter_talk_mode(str(path)) is None
        message = win.status.currentMessage()
    else:
        assert win.files.open_adapter(str(path)) is None
        message = win.status.currentMessage()
    assert says in message, message
    assert "\n" not in message and "Traceback" not in message
    # the window lives on: the run still steps and the panel still applies settings
    assert win.isVisible() and win.worker is not None and win.controls.isEnabled() and win.replay is None
    step = win.last_snapshot.step
    win.worker.step(1)
    qtbot.waitUntil(lambda: win.last_snapshot.step > step, timeout=WAIT_MS)
    QApplication.processEvents()


@pytest.mark.stall_watchdog(limit_s=1.0)
def test_any_exception_at_an_entry_point_is_one_line_and_changes_nothing(window, tmp_path, monkeypatch):
    """Not only the reader's ValueError / OSError: whatever escapes a File action or talk mode."""
    win = window
    rec = recording_of_wrong_types(tmp_path)

    def too_deep(*_a, **_k):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(win.features.replay, "open", too_deep)
    assert win.files.open_recording(str(rec)) is None
    assert win.status.currentMessage() == f"⚠ Could not open the recording {rec}: nested too deeply to read"

    def broken(*_a, **_k):
        return 1 / 0

    monkeypatch.setattr(win.features.talk, "enter", broken)
    win.actions_by_name["talk_mode"].trigger()
    assert win.status.currentMessage() == "⚠ Could not enter talk mode: ZeroDivisionError: division by zero"
    monkeypatch.setattr(win.features.adapter_export, "export", lambda *a: {}["missing"])
    win.actions_by_name["export_adapter"].trigger()
    assert win.status.currentMessage() == "⚠ Could not carry out “Export as PEFT adapter”: KeyError: 'missing'"
    assert win.isVisible() and win.worker is not None and win.controls.isEnabled()
