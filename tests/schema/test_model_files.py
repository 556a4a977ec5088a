"""A model directory's fingerprint, read without torch (explorer.schema.model_files), and what a replay
says of a recording whose model directory changed (explorer.schema.recording.recorded_model_change)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from model_dir_factory import CONFIG, sharded_model, single_file_model

from explorer.schema import model_files
from explorer.schema.model_files import INDEX, SINGLE, fingerprint
from explorer.schema.recording import FORMAT, recorded_model_change, recorded_model_problem

ROOT = Path(__file__).resolve().parents[2]


def test_fingerprint_hashes_the_config_and_the_weights_header_only(tmp_path):
    d = single_file_model(tmp_path / "m")
    raw = (d / SINGLE).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    expected = hashlib.sha256((d / "config.json").read_bytes() + raw[: 8 + n]).hexdigest()
    assert fingerprint(d) == expected
    # the weights' bytes are not part of it; the config's and the header's are
    with open(d / SINGLE, "r+b") as fh:
        fh.seek(8 + n)
        fh.write(b"\1\2\3\4")
    assert fingerprint(d) == expected
    single_file_model(d, config={**CONFIG, "hidden_size": 128})
    assert fingerprint(d) != expected


def test_fingerprint_of_a_sharded_model_hashes_its_index(tmp_path):
    d = sharded_model(tmp_path / "m")
    expected = hashlib.sha256((d / "config.json").read_bytes() + (d / INDEX).read_bytes()).hexdigest()
    assert fingerprint(d) == expected
    sharded_model(d, shards=("model-00001.safetensors", "model-00002.safetensors"))
    assert fingerprint(d) != expected


def test_the_engine_notes_the_same_hash(tmp_path):
    """One definition: core.checkpoint's fingerprint (what the engine writes into a recording) is this one."""
    from explorer.core import checkpoint

    assert checkpoint.fingerprint is model_files.fingerprint
    d = single_file_model(tmp_path / "m")
    assert checkpoint.fingerprint(d) == fingerprint(d)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda d: (d / "w.bin").write_bytes(b"x"), ValueError, "pickled weights are never loaded"),
        (lambda d: None, FileNotFoundError, f"no {SINGLE} or {INDEX}"),
        (lambda d: (d / SINGLE).write_bytes(struct.pack("<Q", 10**12)), ValueError, "damaged safetensors header"),
        (lambda d: (d / SINGLE).write_bytes(struct.pack("<Q", 100) + b"{}"), ValueError, "the file ends inside it"),
        (lambda d: (d / "config.json").write_bytes(b" " * 5_000_000), ValueError, "too large for a config.json"),
    ],
)
def test_fingerprint_refuses_hostile_directories_with_one_line(tmp_path, make, error, words):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    make(d)
    with pytest.raises(error) as info:
        fingerprint(d)
    assert words in str(info.value) and "\n" not in str(info.value)


def recording_on(tmp_path: Path, model: Path, digest) -> Path:
    rec = tmp_path / "rec"
    rec.mkdir(exist_ok=True)
    base = {"model_dir": str(model)} if digest is None else {"model_dir": str(model), "model_hash": digest}
    (rec / "config.json").write_text(json.dumps({"format": FORMAT, "base": base}))
    (rec / "metrics.jsonl").write_text("")
    return rec


def test_a_replay_says_when_the_model_directory_changed(tmp_path):
    model = single_file_model(tmp_path / "my-llama")
    rec = recording_on(tmp_path, model, fingerprint(model))
    assert recorded_model_problem(rec) is None and recorded_model_change(rec) is None
    single_file_model(model, names=("a", "b", "c"))  # another model in the same directory
    note = recorded_model_change(rec)
    assert note is not None and "\n" not in note
    assert str(model) in note and "changed since this recording was made" in note
    assert recorded_model_problem(rec) is None  # it still replays
    (model / SINGLE).unlink()  # no weights at all: it cannot be checked, and says why
    note = recorded_model_change(rec)
    assert "could not be checked" in note and f"no {SINGLE}" in note and "\n" not in note


def test_nothing_to_compare_says_nothing(tmp_path):
    model = single_file_model(tmp_path / "my-llama")
    assert recorded_model_change(recording_on(tmp_path, model, None)) is None  # no hash noted
    assert recorded_model_change(tmp_path) is None  # not a recording: its reader says so
    (tmp_path / "rec" / "config.json").write_text(json.dumps({"format": FORMAT, "settings": {"model": ""}}))
    assert recorded_model_change(tmp_path / "rec") is None  # the shipped base
    gone = recording_on(tmp_path, tmp_path / "gone", "0" * 64)
    assert recorded_model_change(gone) is None and "which is missing" in recorded_model_problem(gone)


@pytest.mark.parametrize("digest", ["abc", 7, "G" * 64])
def test_a_recorded_hash_that_is_no_sha256_is_a_problem(tmp_path, digest):
    model = single_file_model(tmp_path / "my-llama")
    rec = recording_on(tmp_path, model, digest)
    assert "base.model_hash is not a sha256 hex digest" in recorded_model_problem(rec)
    assert recorded_model_change(rec) is None


def test_the_check_imports_no_torch(tmp_path):
    model = single_file_model(tmp_path / "my-llama")
    rec = recording_on(tmp_path, model, "0" * 64)
    code = (
        "import sys\n"
        "from explorer.schema.recording import recorded_model_change\n"
        f"note = recorded_model_change({str(rec)!r})\n"
        "assert 'changed' in note, note\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
