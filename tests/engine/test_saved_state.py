"""Saved state: every setting and the trained tensors (and the optimizer's moments) through the worker
and the window; atomic saves; damaged, truncated, foreign and unknown-version files are refused with
one clear line and change nothing."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from engine_helpers import no_engine_threads, one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401

from explorer.core.state_file import load_state
from explorer.engine.worker import TrainingWorker

WAIT_S = 60
WAIT_MS = 60_000


@pytest.fixture
def make_worker():
    made = []

    def make(settings):
        w = TrainingWorker(settings, base_model=tiny_byte_model(), threads=1)
        made.append(w)
        w.start()
        w.wait_for(timeout=WAIT_S)
        return w

    yield make
    for w in made:
        w.close()
        assert not w.alive
    assert no_engine_threads()


def run_to(w, step):
    w.step(step - current_step(w))
    return w.wait_for(lambda s: s.step == step and s.state == "paused", WAIT_S)


def current_step(w):
    w.request_snapshot()
    return w.wait_for(timeout=WAIT_S).step


def losses_from(snap, first_step):
    h = snap.history
    return {int(s): float(v) for s, v in zip(h.steps, h.loss) if s >= first_step}


def tensors_of(path):
    return {k: v.clone() for k, v in load_state(path).tensors.items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "settings", [tiny_matrix(rank=3), tiny_lm(method="lora+prefix")], ids=["matrix-lora", "lm-lora+prefix"]
)
def test_round_trip_through_the_worker_and_the_losses_go_on_identically(make_worker, tmp_path, settings):
    path = tmp_path / "state.safetensors"
    a = make_worker(settings)
    run_to(a, 6)
    a.save_state(path)
    after = run_to(a, 12)
    expected = losses_from(after, 6)
    assert sorted(expected) == list(range(6, 12))

    b = make_worker(settings.with_changes(rank=2, seed=7, lr=3e-3))  # other settings, other weights
    got = b.load_state(path)
    assert got == settings and b.settings == settings  # every setting came back
    snap = b.wait_for(lambda s: s.step == 6, WAIT_S)
    assert snap.state == "paused" and snap.settings["rank"] == settings.rank and snap.settings["seed"] == 0
    # the loss curve came back with it
    assert losses_from(snap, 0) == {k: v for k, v in losses_from(after, 0).items() if k < 6}
    resumed = run_to(b, 12)
    assert losses_from(resumed, 6) == expected  # the optimizer's moments came too


def test_an_interrupted_save_leaves_the_previous_file_readable(make_worker, tmp_path, monkeypatch):
    import explorer.schema.files as files

    path = tmp_path / "state.safetensors"
    w = make_worker(tiny_matrix())
    run_to(w, 3)
    w.save_state(path)
    old = load_state(path)
    assert old.step == 3
    run_to(w, 8)

    def crash(*_a, **_k):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(ValueError, match="simulated crash") as err:
        w.save_state(path)
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    again = load_state(path)  # the old file, whole and readable
    assert again.step == 3 and same(again.tensors, old.tensors)
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]  # no temporary left behind

    # killed halfway through writing the new file: the same
    real_write = files.os.write

    def half_then_die(fd, data):
        real_write(fd, bytes(data[:100]))
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(files.os, "write", half_then_die)
    with pytest.raises(ValueError, match="killed mid-write"):
        w.save_state(path)
    monkeypatch.undo()
    assert load_state(path).step == 3 and [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]
    w.save_state(path)  # and a save that completes replaces it
    assert load_state(path).step == 8


def _damaged_files(tmp_path, good):
    """name -> path of a file that must be refused."""
    from safetensors.torch import save_file

    raw = good.read_bytes()
    files = {}
    files["truncated"] = tmp_path / "truncated.safetensors"
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    header_len = struct.unpack("<Q", raw[:8])[0]
    garbled = bytearray(raw)
    garbled[8 : 8 + header_len] = bytes(b ^ 0x5A for b in garbled[8 : 8 + header_len])
    files["corrupted"] = tmp_path / "corrupted.safetensors"
    files["corrupted"].write_bytes(bytes(garbled))
    files["text"] = tmp_path / "notes.safetensors"
    files["text"].write_text("this is not a state file\n")
    files["empty"] = tmp_path / "empty.safetensors"
    files["empty"].write_bytes(b"")
    state = load_state(good)
    files["foreign"] = tmp_path / "adapter_model.safetensors"  # e.g. a PEFT adapter's weights
    save_file(
        {"base_model.model.W.lora_A.weight": torch.zeros(3, 32)}, str(files["foreign"]), metadata={"format": "pt"}
    )
    files["unknown-version"] = tmp_path / "future.safetensors"
    meta = {
        "format": "peft-explorer-state",
        "version": "99",
        "settings": json.dumps(state.settings),
        "step": "3",
        "extra": "{}",
    }
    save_file(dict(state.tensors), str(files["unknown-version"]), metadata=meta)
    files["wrong-shapes"] = tmp_path / "rank9.safetensors"
    bigger = {
        k: torch.zeros(9, v.shape[1]) if "lora_A" in k else torch.zeros(v.shape[0], 9) for k, v in state.tensors.items()
    }
    save_file(bigger, str(files["wrong-shapes"]), metadata={**meta, "version": "1"})
    files["bad-settings"] = tmp_path / "bad-settings.safetensors"
    save_file(
        dict(state.tensors),
        str(files["bad-settings"]),
        metadata={**meta, "version": "1", "settings": json.dumps({**state.settings, "rank": -4})},
    )
    files["missing"] = tmp_path / "no-such-file.safetensors"
    return files


REFUSED = {
    "truncated": "not a readable safetensors file",
    "corrupted": "not a readable safetensors file",
    "text": "not a readable safetensors file",
    "empty": "not a readable safetensors file",
    "foreign": "not a peft-explorer state file",
    "unknown-version": "version '99' is not supported",
    "wrong-shapes": "has shape",
    "bad-settings": "settings in the file are not valid",
    "missing": "no such",
}


def test_damaged_or_foreign_files_are_refused_and_change_nothing(make_worker, tmp_path):
    w = make_worker(tiny_matrix())
    before = run_to(w, 4)
    good = tmp_path / "good.safetensors"
    w.save_state(good)
    for name, path in _damaged_files(tmp_path, good).items():
        with pytest.raises(ValueError) as err:
            w.load_state(path)
        message = str(err.value)
        assert REFUSED[name] in message and "\n" not in message, (name, message)
        assert str(path.name) in message, (name, message)
    assert w.settings == tiny_matrix()
    after = tmp_path / "after.safetensors"
    w.save_state(after)
    assert same(tensors_of(good), tensors_of(after)) and load_state(after).step == before.step
    w.step(1)
    assert w.wait_for(lambda s: s.step == 5, WAIT_S).segment == before.segment  # the same run went on


def test_the_worker_refuses_politely_when_it_is_not_running(tmp_path):
    w = TrainingWorker(tiny_matrix(), threads=1)
    with pytest.raises(ValueError, match="not running"):
        w.save_state(tmp_path / "s.safetensors")
    with pytest.raises(ValueError, match="not running"):
        w.load_state(tmp_path / "s.safetensors")
    assert not (tmp_path / "s.safetensors").exists()


# ---------------------------------------------------------------------------------------- the window
def wait_delivered(qtbot, win, pred):
    qtbot.waitUntil(lambda: win.last_snapshot is not None and pred(win.last_snapshot), timeout=WAIT_MS)
    return win.last_snapshot


def test_ctrl_s_and_ctrl_o_restore_settings_and_weights_in_the_window(qtbot, window, tmp_path, monkeypatch):
    win = window
    path = tmp_path / "saved.safetensors"
    win.worker.step(5)
    saved = wait_delivered(qtbot, win, lambda s: s.step == 5 and s.state == "paused")
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(path), ""))
    win.actions_by_name["save_state"].trigger()  # Ctrl+S
    assert path.is_file() and "State saved" in win.status.currentMessage()
    assert load_state(path).settings["rank"] == 4

    assert win.apply_settings(win.settings.with_changes(rank=2, lr=0.05))  # move away: rank 2, step 0
    wait_delivered(qtbot, win, lambda s: s.settings["rank"] == 2)
    assert win.settings.rank == 2

    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getOpenFileName", lambda *a, **k: (str(path), ""))
    win.actions_by_name["open"].trigger()  # Ctrl+O
    assert "State opened" in win.status.currentMessage()
    assert win.settings == tiny_matrix() and win.worker.settings == tiny_matrix()
    back = wait_delivered(qtbot, win, lambda s: s.step == 5 and s.settings["rank"] == 4)
    m0, m1 = saved.matrices["W"], back.matrices["W"]
    assert np.array_equal(m0.delta, m1.delta) and np.array_equal(m0.spectrum, m1.spectrum)


def test_a_bad_file_in_the_window_says_so_and_changes_nothing(qtbot, window, tmp_path):
    win = window
    win.worker.step(3)
    wait_delivered(qtbot, win, lambda s: s.step == 3 and s.state == "paused")
    good = tmp_path / "good.safetensors"
    win.files.save_state(str(good))
    settings, worker_settings = win.settings, win.worker.settings
    for name, path in _damaged_files(tmp_path, good).items():
        win.files.open_file(str(path))
        message = win.status.currentMessage()
        assert "Could not open" in message and REFUSED[name] in message, (name, message)
        assert win.settings == settings and win.worker.settings == worker_settings
    win.worker.request_snapshot()
    snap = wait_delivered(qtbot, win, lambda s: s.step == 3)
    assert snap.segment == 0 and win.isVisible()
    after = tmp_path / "after.safetensors"
    win.files.save_state(str(after))
    assert same(tensors_of(good), tensors_of(after))
