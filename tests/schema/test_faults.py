"""Faults as data: a Fault's fields are checked, recordings keep the message where readers before
structured faults look for it (with the kind and the setting beside it), and old recordings, which
hold only the message, are read back as kind "error"."""

from __future__ import annotations

import dataclasses
import json

import pytest
import snapshot_factory as sf

from explorer.schema.faults import ERROR, KINDS, SETTING, Fault
from explorer.schema.recording import RecordingReader, RecordingWriter, metrics_line, snapshot_file_name
from explorer.schema.snapshot import fault_snapshot


def test_a_fault_holds_its_kind_message_and_setting():
    f = Fault(SETTING, "could not apply rank=64: too large; the previous settings stay in force", "rank")
    assert (f.kind, f.setting) == ("setting", "rank") and str(f) == f.message
    assert f.to_dict() == {"kind": "setting", "message": f.message, "setting": "rank"}
    assert Fault("diverged", "x") == Fault("diverged", "x") and hash(Fault("died", "x"))
    assert {"start", "setting", "diverged", "memory", "error", "all-stopped", "died"} == set(KINDS)
    with pytest.raises(ValueError, match="fault kind='meteor' is unknown"):
        Fault("meteor", "x")
    with pytest.raises(ValueError, match="message must be a string"):
        Fault("error", None)
    with pytest.raises(ValueError, match="setting must be a setting's name"):
        Fault("setting", "x", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):  # what was said stays said
        f.kind = "error"


def test_reading_a_fault_as_recorded():
    assert Fault.read(None) is None
    assert Fault.read("loss is NaN") == Fault(ERROR, "loss is NaN")  # an old recording: the message only
    assert Fault.read("x", "setting", "lr") == Fault("setting", "x", "lr")
    with pytest.raises(ValueError, match="fault_kind='meteor' is unknown"):
        Fault.read("x", "meteor")
    with pytest.raises(ValueError, match="must be a message string"):
        Fault.read(3)


def test_recordings_keep_the_message_and_add_the_kind(tmp_path):
    snap = sf.lora_prefix_snapshot(60)
    snap.state, snap.fault = "fault", Fault("setting", "could not apply rank=64: too large", "rank")
    line = metrics_line(snap)
    assert line["fault"] == snap.fault.message and line["fault_kind"] == "setting" and line["fault_setting"] == "rank"
    writer = RecordingWriter(tmp_path / "rec", {"settings": snap.settings})
    writer.write(snap)
    writer.close()
    back = RecordingReader(tmp_path / "rec").snapshot(60)
    assert back.fault == snap.fault and back.state == "fault"
    # the metrics line an older reader reads: "fault" is still the message
    raw = json.loads((tmp_path / "rec" / "metrics.jsonl").read_text().splitlines()[0])
    assert raw["fault"] == snap.fault.message


def test_an_old_recordings_fault_reads_as_an_error(tmp_path):
    """A snapshot file written before faults had kinds holds the message alone."""
    snap = sf.lora_prefix_snapshot(60)
    snap.state, snap.fault = "fault", Fault("diverged", "non-finite loss at step 60")
    writer = RecordingWriter(tmp_path / "rec", {"settings": snap.settings})
    writer.write(snap)
    writer.close()
    # rewrite the snapshot's metadata as the old writer did: "fault" the message, no kind, no setting
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "rec" / "snapshots" / snapshot_file_name(60)
    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata()
    d = json.loads(meta["snapshot"])
    d.pop("fault_kind")
    d.pop("fault_setting", None)
    meta["snapshot"] = json.dumps(d)
    save_file(load_file(str(path)), str(path), metadata=meta)
    back = RecordingReader(tmp_path / "rec").snapshot(60)
    assert back.fault == Fault("error", "non-finite loss at step 60")


def test_a_fault_snapshot_without_data():
    s = fault_snapshot({"lr": 0.01, "scenario": "matrix"}, Fault("start", "could not start training: x"))
    assert s.state == "fault" and s.step == 0 and s.lr == 0.01 and s.settings["scenario"] == "matrix"
    assert s.fault.kind == "start" and not s.matrices
