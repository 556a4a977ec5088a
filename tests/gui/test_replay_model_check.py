"""--replay / File > Open of a recording made on a user's model directory: a directory that now holds
another model (its config.json / weights index hash differs from the one noted) is said in one line,
and the recording still replays; the app's own run recordings note that hash too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import snapshot_factory as sf
from model_dir_factory import single_file_model

from explorer.gui.run_recording import base_note
from explorer.schema.model_files import SINGLE, fingerprint
from explorer.schema.recording import RecordingWriter

WAIT_MS = 30_000

pytestmark = pytest.mark.window(factory=None, start=False, size=(1400, 900))


def synthetic_recording(directory: Path, model: Path, digest: str) -> Path:
    snaps = sf.training_run(sf.lora_snapshot, steps=(0, 10, 20))
    settings = {**snaps[0].settings, "model": str(model)}
    writer = RecordingWriter(directory, {"settings": settings, "base": {"model_dir": str(model), "model_hash": digest}})
    for snap in snaps:
        snap.settings = settings
        writer.write(snap)
    writer.finish(final_step=20, completed=True)
    return directory


def test_a_changed_model_directory_is_said_and_the_recording_replays(qtbot, window, tmp_path):
    model = single_file_model(tmp_path / "my-llama")
    rec = synthetic_recording(tmp_path / "rec", model, fingerprint(model))
    single_file_model(model, config={"model_type": "llama", "hidden_size": 128})  # retrained / replaced since
    ctl = window.files.open_recording(str(rec))
    assert ctl is not None
    qtbot.waitUntil(lambda: window.replay is ctl and ctl.count == 3, timeout=WAIT_MS)
    assert "changed since this recording was made" in ctl.model_note
    qtbot.waitUntil(lambda: "Replaying rec" in window.status.currentMessage(), timeout=WAIT_MS)
    message = window.status.currentMessage()
    assert "Note: the model in" in message and str(model) in message and "changed since" in message
    assert "\n" not in message


def test_an_unchanged_model_directory_says_nothing(qtbot, window, tmp_path):
    model = single_file_model(tmp_path / "my-llama")
    rec = synthetic_recording(tmp_path / "rec", model, fingerprint(model))
    ctl = window.files.open_recording(str(rec))
    assert ctl is not None
    qtbot.waitUntil(lambda: window.replay is ctl and "Replaying rec" in window.status.currentMessage(), timeout=WAIT_MS)
    assert ctl.model_note == "" and "Note:" not in window.status.currentMessage()


def test_the_apps_run_recordings_note_the_model_and_its_hash(tmp_path):
    model = single_file_model(tmp_path / "my-llama")
    assert base_note({"model": str(model)}) == {"model_dir": str(model.resolve()), "model_hash": fingerprint(model)}
    assert base_note({"model": ""}) is None and base_note({}) is None
    (model / SINGLE).unlink()  # not hashable now: the directory is still noted
    assert base_note({"model": str(model)}) == {"model_dir": str(model.resolve())}
    json.dumps(base_note({"model": str(model)}))
