"""Recordings: round trip, cut-off recordings, the run command and its errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import assert_snapshots_equal, one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401 (one_thread: autouse fixture)
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from explorer.cli import main
from explorer.core.state_file import load_state
from explorer.engine.trainer import Trainer
from explorer.schema.recording import RecordingReader, RecordingWriter

ROOT = Path(__file__).resolve().parents[2]


def _record(trainer, out, steps, every, samples_at=()):
    writer = RecordingWriter(out, {"settings": trainer.settings.to_dict()})
    written = {}
    for k in range(steps + 1):
        if k % every == 0:
            trainer.eval_loss()
            snap = trainer.snapshot(with_samples=k in samples_at, with_token_delta=k in samples_at)
            writer.write(snap, fresh_samples=k in samples_at)
            written[k] = snap
        if k < steps:
            trainer.train_step()
    writer.close()
    return written


@pytest.mark.parametrize("settings", [tiny_matrix(display_size=16), tiny_lm(method="lora+prefix", display_size=8)])
def test_a_recording_gives_back_the_snapshots_the_trainer_made(tmp_path, settings):
    trainer = Trainer(settings, base_model=tiny_byte_model() if settings.scenario == "lm" else None)
    written = _record(trainer, tmp_path / "rec", 6, 2, samples_at=(0, 6))
    reader = RecordingReader(tmp_path / "rec")
    assert reader.steps == [0, 2, 4, 6] and reader.settings == settings
    for step, snap in written.items():
        assert_snapshots_equal(reader.snapshot(step), snap)
    lines = [json.loads(x) for x in (tmp_path / "rec" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 0 and "samples" not in lines[1]
    if settings.scenario == "lm":
        assert len(lines[0]["gates"]) == 1 and "adapted" in lines[0]["samples"]
    consts = sorted(p.name for p in (tmp_path / "rec" / "snapshots").glob("const-*"))
    assert consts == ["const-000.safetensors"]  # pooled W0 / target written once


def test_the_token_views_differences_round_trip_and_are_checked(tmp_path):
    trainer = Trainer(tiny_lm(display_size=8), base_model=tiny_byte_model())
    written = _record(trainer, tmp_path / "rec", 4, 2, samples_at=(0, 4))
    reader = RecordingReader(tmp_path / "rec")
    first, last = reader.snapshot(0).token_delta, reader.snapshot(4).token_delta
    assert first["step"] == 0 and (first["delta"] == 0).all()  # zero-init: exactly no change at step 0
    assert last["step"] == 4 and last["tokens"] == first["tokens"] and abs(last["delta"]).max() > 0
    assert reader.snapshot(2).token_delta is None  # not asked for at that record
    assert_snapshots_equal(reader.snapshot(4), written[4])
    # a damaged record is refused with the field named, not drawn
    path = tmp_path / "rec" / "snapshots" / "000004.safetensors"
    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    tensors["t/delta"] = np.zeros(3, np.float32)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match="token_delta"):
        RecordingReader(tmp_path / "rec").snapshot(4)


def test_a_recording_cut_off_mid_write_still_loads(tmp_path):
    trainer = Trainer(tiny_matrix())
    written = _record(trainer, tmp_path / "rec", 4, 1)
    metrics = tmp_path / "rec" / "metrics.jsonl"
    data = metrics.read_bytes()
    metrics.write_bytes(data[: len(data) - 25])  # the last line torn by a kill
    (tmp_path / "rec" / "snapshots" / "000003.safetensors").unlink()  # and a record never finished
    reader = RecordingReader(tmp_path / "rec")
    assert reader.steps == [0, 1, 2] and reader.skipped_lines == 2  # the torn line and the unfinished record
    assert reader.state_path is None and not reader.finished
    assert_snapshots_equal(reader.snapshot(2), written[2])
    with pytest.raises(KeyError, match="step 4 is not in this recording"):
        reader.snapshot(4)


def test_run_command_records_by_step_and_the_recording_replays(tmp_path, capsys):
    args = [
        "run",
        "--scenario",
        "matrix",
        "--method",
        "lora",
        "--rank",
        "3",
        "--size",
        "24",
        "--target-rank",
        "5",
        "--steps",
        "10",
        "--record-every",
        "4",
        "--seed",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    a, b = RecordingReader(tmp_path / "a"), RecordingReader(tmp_path / "b")
    assert a.steps == b.steps == [0, 4, 8, 10] and a.finished
    assert [m["loss"] for m in a.metrics] == [m["loss"] for m in b.metrics]  # same settings, same run
    assert all(len(m["spectra"]["W"]) == 3 for m in a.metrics)  # rank 3: exactly 3 values
    assert a.metrics[0]["spectra"]["W"] == [0.0, 0.0, 0.0] and "eval_loss" in a.metrics[0]
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["format"] == "peft-explorer-recording" and cfg["settings"]["size_in"] == 24
    assert cfg["device"].startswith("cpu") and cfg["final_step"] == 10
    snap = a.snapshot(10)
    assert snap.step == 10 and snap.matrices["W"].spectrum.shape == (3,) and snap.state == "paused"
    state = load_state(a.state_path)
    assert state.step == 10 and sorted(state.tensors) == ["W.lora_A.weight", "W.lora_B.weight"]
    t = Trainer(a.settings)
    t.load_state(tmp_path / "a" / "state.safetensors")
    assert t.step == 10


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--rank", "0"], "rank=0 is out of range"),
        (["--lr", "abc"], "--lr: invalid float value"),
        (["--method", "prefix", "--scenario", "matrix"], "method='prefix' is not available in the matrix scenario"),
        (["--targets", "q_proj,x_proj"], "targets='x_proj' is unknown"),
        (["--size", "8", "--size-in", "9", "--scenario", "matrix"], "--size 8 contradicts --size-in 9"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, flags, words):
    out = subprocess.run(
        [sys.executable, "-m", "explorer", "run", "--out", str(tmp_path / "x"), *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "x").exists()


def test_run_command_on_the_lm_scenario_records_gates_samples_and_the_state(tmp_path):
    out = tmp_path / "lm"
    assert (
        main(
            [
                "run",
                "--method",
                "prefix",
                "--prefix-len",
                "3",
                "--prefix-layers",
                "2",
                "--seq-len",
                "16",
                "--batch-size",
                "2",
                "--steps",
                "3",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    reader = RecordingReader(out)
    assert reader.steps == [0, 1, 2, 3]
    first, last = reader.metrics[0], reader.metrics[-1]
    assert first["gates"] == [[0.0] * 4, [0.0] * 4] and last["gates"] != first["gates"]
    assert first["samples"]["adapted"] == first["samples"]["base"] and "samples" in last
    assert "samples" not in reader.metrics[1]
    snap = reader.snapshot(3)
    assert [p.layer for p in snap.prefixes] == [2, 3] and snap.prefixes[0].attention.shape[-1] == 3 + len(
        snap.probe_tokens
    )
    state = load_state(reader.state_path)
    assert sorted(state.tensors) == [
        f"model.layers.{i}.self_attn.prefix.{n}" for i in (2, 3) for n in ("gate", "prompt")
    ]
    cfg = json.loads((out / "config.json").read_text())
    assert (
        cfg["base"]["kind"] == "lm"
        and cfg["base"]["params"] == cfg["base"]["training"]["parameters"]
        and cfg["completed"]
    )
