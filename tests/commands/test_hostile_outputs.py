"""Hostile runs and outputs (issues 12 and 18): the directory lock, replacing only what is ours, atomic
writes (no library temporaries, the user's file mode, stale temporaries swept), a diverging run that
faults instead of crashing, bounded labels, escaped terminal output, and the --debug traceback.
The one-line refusals themselves are the table in tests/test_hostile.py."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.cli import main
from explorer.schema.dirlock import LOCK_NAME, DirLock, DirLockBusy
from explorer.schema.files import TMP_MARK, atomic_write_text, host_tag, sweep_stale_temporaries
from explorer.schema.recording import RecordingReader

ROOT = Path(__file__).resolve().parents[2]
RUN = ["run", "--scenario", "matrix", "--method", "lora", "--rank", "2", "--size", "8", "--target-rank", "2"]
RUN += ["--steps", "3", "--device", "cpu", "--quiet"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- the output directory's lock ------------------------------------------------------------------


def test_a_second_writer_on_a_locked_directory_is_refused_and_the_first_keeps_it(tmp_path):
    first = DirLock(tmp_path / "out", "run")
    first.acquire()
    with pytest.raises(DirLockBusy, match=f"in use by a run process {os.getpid()} on host"):
        DirLock(tmp_path / "out", "run").acquire()
    info = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    first.release()
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    with DirLock(tmp_path / "out"):  # free again
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over_but_not_one_of_another_host(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": "here", "host_tag": host_tag(), "time": 1.0}))
    with DirLock(tmp_path, "run"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere", "host_tag": "0badc0de", "time": 1.0}))
    with pytest.raises(DirLockBusy, match="on host 'elsewhere'.*delete it only if that run is gone"):
        DirLock(tmp_path).acquire()


def test_an_unreadable_lock_counts_as_held_until_it_is_old(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_bytes(b"")  # a writer between creating the file and writing its record
    with pytest.raises(DirLockBusy, match="being written or is damaged"):
        DirLock(tmp_path).acquire()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with DirLock(tmp_path):
        pass


def test_two_processes_racing_for_one_directory_one_wins(tmp_path):
    code = (
        "import sys, time\n"
        "from explorer.schema.dirlock import DirLock, DirLockBusy\n"
        "try:\n"
        f"    lock = DirLock({str(tmp_path / 'out')!r}, 'run'); lock.acquire()\n"
        "except DirLockBusy:\n"
        "    sys.exit(2)\n"
        "time.sleep(1.5); lock.release()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(3)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    assert codes == [0, 2, 2]


def test_run_overwrite_replaces_a_recording_of_ours_and_nothing_else(tmp_path):
    out = tmp_path / "rec"
    assert main(RUN + ["--out", str(out)]) == 0
    assert main(RUN + ["--out", str(out)]) == 2  # without --overwrite: refused
    assert main(RUN + ["--overwrite", "--steps", "1", "--out", str(out)]) == 0
    assert RecordingReader(out).steps == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl", "snapshots", "state.safetensors"]


def test_export_force_replaces_only_an_export_of_ours(tmp_path):
    from explorer.engine.trainer import Trainer
    from explorer.schema.settings import TrainSettings

    rec = tmp_path / "state.safetensors"
    Trainer(TrainSettings(rank=2, seq_len=8, batch_size=1, device="cpu")).save_state(rec)
    out = tmp_path / "exp"
    assert main(["export", str(rec), "--out", str(out)]) == 0
    assert main(["export", str(rec), "--out", str(out), "--force"]) == 0  # ours: replaced
    foreign = tmp_path / "foreign"
    (foreign / "adapter").mkdir(parents=True)
    (foreign / "adapter" / "mine.txt").write_text("keep me")
    assert main(["export", str(rec), "--out", str(foreign), "--force"]) == 2
    assert (foreign / "adapter" / "mine.txt").read_text() == "keep me" and sorted(os.listdir(foreign)) == ["adapter"]


# ---- atomic writes ---------------------------------------------------------------------------------


def test_written_files_have_the_users_mode_and_no_library_temporaries(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "rec"
        assert main(RUN + ["--out", str(out)]) == 0
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files), [
        (p.name, oct(p.stat().st_mode)) for p in files
    ]
    assert not [p for p in out.rglob(".*")], "no hidden temporaries"


def test_stale_temporaries_of_dead_processes_are_swept_and_others_kept(tmp_path):
    dead = tmp_path / f".state.safetensors{TMP_MARK}{host_tag()}.{_dead_pid()}.00aa11bb"
    live = tmp_path / f".state.safetensors{TMP_MARK}{host_tag()}.{os.getpid()}.00aa11bb"
    other_host = tmp_path / f".state.safetensors{TMP_MARK}0badc0de.{_dead_pid()}.00aa11bb"
    for d in (dead, live, other_host):
        d.mkdir()
        (d / "state.safetensors").write_bytes(b"\0" * 1000)
    assert sweep_stale_temporaries(tmp_path) == [dead]
    assert live.exists() and other_host.exists() and not dead.exists()
    shutil_dead = tmp_path / "sub" / f".x{TMP_MARK}{host_tag()}.{_dead_pid()}.01"
    shutil_dead.mkdir(parents=True)
    atomic_write_text(tmp_path / "sub" / "y.txt", "y")  # the first write into a directory sweeps it
    assert sorted(os.listdir(tmp_path / "sub")) == ["y.txt"]


def test_a_failed_write_names_the_target_and_leaves_the_old_file(tmp_path, monkeypatch):
    import errno

    import explorer.schema.files as files

    target = tmp_path / "table.md"
    atomic_write_text(target, "old")
    real = os.write

    def full(fd, data):
        real(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", full)
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "new and longer")
    monkeypatch.undo()
    assert err.value.filename == str(target) and err.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["table.md"]


def test_a_full_disk_mid_run_leaves_a_readable_recording_marked_incomplete(tmp_path, monkeypatch, capsys):
    import errno

    import explorer.schema.files as files

    real = os.write
    calls = {"n": 0}

    def filling(fd, data):
        calls["n"] += 1
        if calls["n"] > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(files.os, "write", filling)
    out = tmp_path / "rec"
    assert main(RUN + ["--out", str(out)]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "snapshots/" in err[0] and "No space left on device" in err[0]
    reader = RecordingReader(out)
    assert reader.steps and not reader.finished  # readable, and it says it did not finish
    assert not [p for p in out.rglob("*") if TMP_MARK in p.name or p.name == LOCK_NAME]


# ---- a diverging run -------------------------------------------------------------------------------


def test_a_diverging_full_run_faults_with_its_own_exit_code_and_keeps_the_last_good_state(tmp_path, capsys):
    from explorer.core.state_file import load_state

    out = tmp_path / "div"
    flags = ["run", "--method", "full", "--lr", "10", "--steps", "20", "--seq-len", "16", "--batch-size", "2"]
    assert main(flags + ["--device", "cpu", "--quiet", "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training stopped: non-finite" in err[0] and "Traceback" not in err[0]
    reader = RecordingReader(out)
    last = reader.snapshot(reader.steps[-1])
    assert last.state == "fault" and "non-finite" in last.fault.message and last.fault.kind == "diverged"
    assert all(np.isfinite(m.spectrum).all() for m in last.matrices.values())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["completed"] is False and "non-finite" in cfg["fault"]
    state = load_state(reader.state_path)  # refuses non-finite tensors: it loads, so they are the good ones
    assert state.step == cfg["final_step"] == last.step


def test_non_finite_weights_fault_before_any_analysis_and_go_back_to_the_last_good_ones():
    from engine_helpers import tiny_matrix

    from explorer.core.analysis import NonFiniteInput, dense_spectrum, spectrum_from_factors
    from explorer.engine.trainer import NonFiniteLoss, NonFiniteWeights, Trainer

    t = Trainer(tiny_matrix())
    t.train_step()
    after_one = {k: v.clone() for k, v in t.trained_tensors().items()}
    t.train_step()
    with torch.no_grad():
        t._seg.params[0].fill_(float("inf"))  # what a diverged update leaves
    with pytest.raises(NonFiniteWeights, match="non-finite weights at step 2.*restored the weights of step 1") as err:
        t.snapshot()
    assert isinstance(err.value, NonFiniteLoss) and t.step == 1 and t.weights_finite()
    assert all(torch.equal(after_one[k], v) for k, v in t.trained_tensors().items())
    assert t.snapshot().step == 1  # and the views can be drawn again
    with pytest.raises(NonFiniteInput, match="NaN or infinite"):
        dense_spectrum(torch.full((4, 4), float("nan")))
    with pytest.raises(NonFiniteInput):
        spectrum_from_factors(torch.full((2, 4), float("inf")), torch.ones(4, 2))


# ---- labels, terminal output, the traceback --------------------------------------------------------


def test_a_300_character_spec_value_gives_a_short_label_and_directory(tmp_path):
    from explorer.schema.compare import LABEL_RE, parse_run_spec

    long_seed = "0" * 299 + "1"
    spec = parse_run_spec(f"lora:r=2,seed={long_seed}")
    other = parse_run_spec(f"lora:r=2,seed={'0' * 298}11")
    assert len(spec.label) <= 64 and LABEL_RE.match(spec.label) and spec.label != other.label
    out = tmp_path / "cmp"
    args = ["compare", "--scenario", "matrix", "--size", "8", "--target-rank", "2", "--steps", "1", "--quiet"]
    assert main(args + ["--runs", f"lora:r=2,seed={long_seed}", "--device", "cpu", "--out", str(out)]) == 0
    assert [p.name for p in (out / "runs").iterdir()] == [spec.label]


def test_module_names_with_terminal_escapes_are_shown_escaped(tmp_path, capsys):
    from explorer.core.peft_files import write_lora_adapter

    name = "model.layers.0.self_attn.\x1b[2Jq_proj\x07"
    d = tmp_path / "adapter"
    write_lora_adapter(d, {name: {"A": torch.ones(2, 8), "B": torch.ones(8, 2)}}, r=2, lora_alpha=4)
    assert main(["inspect", str(d)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2Jq_proj\\x07" in out
    assert main(["inspect", str(d), "--json"]) == 0
    assert "\x1b" not in capsys.readouterr().out  # JSON escapes them itself


def test_an_error_message_never_carries_a_control_character(tmp_path, capsys):
    assert main(RUN + ["--out", str(tmp_path / "f\x1b[31m" / ("x" * 300))]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[31m" in err and err.count("\n") == 1


def test_an_internal_error_shows_its_traceback_under_debug(tmp_path, monkeypatch, capsys):
    from explorer.engine import trainer

    def broken(self, *a, **k):
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(trainer.Trainer, "eval_loss", broken)
    assert main(["--debug"] + RUN + ["--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith(
        "peft-explorer: internal error: ZeroDivisionError"
    )
    monkeypatch.setenv("PEFT_EXPLORER_DEBUG", "")
    assert main(RUN + ["--out", str(tmp_path / "b")]) == 1
    assert "Traceback" not in capsys.readouterr().err
