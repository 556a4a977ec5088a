"""The window asks the engine for the heatmaps of the matrix the ΔW view shows (setting
heatmap_matrices) and gets them within a snapshot or two; the pooled W0 it is sent once stays in the
window (W₀ and W₀+ΔW still draw many snapshots later); a recording made in the app holds the shown
matrices' heatmaps, and its replay says which ones for the others."""

from __future__ import annotations

import numpy as np
import torch
from engine_helpers import one_thread, tiny_byte_model, tiny_lm  # noqa: F401 (one_thread: autouse fixture)

from explorer.core.analysis import pool_matrix
from explorer.schema.recording import RecordingReader

WAIT_MS = 30_000
TARGETS = ("q_proj", "v_proj", "up_proj")


def pooled_w0(name: str, ds: int) -> np.ndarray:
    weight = tiny_byte_model().get_submodule(name).weight.detach()
    with torch.no_grad():
        return pool_matrix(weight, ds, ds).numpy()


def shows(win, name: str) -> bool:
    """The ΔW view has drawn `name`'s heatmap from a snapshot that carries it."""
    view = win.views["delta"]
    snap = view.snapshot
    m = None if snap is None else snap.matrices.get(name)
    return (
        m is not None
        and m.delta is not None
        and view.current_matrix() == name
        and view.image_data() is not None
        and np.array_equal(view.image_data(), m.delta)
    )


def test_switching_matrices_shows_the_new_one_within_a_snapshot_or_two(qtbot, make_window):
    win = make_window(tiny_lm(targets=TARGETS), size=(1600, 1000))
    view = win.views["delta"]
    win.worker.step(3)
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.step == 3, timeout=WAIT_MS)
    names = list(win.last_snapshot.matrices)
    assert len(names) == 6
    qtbot.waitUntil(lambda: shows(win, names[0]), timeout=WAIT_MS)
    # the engine sends the first matrix's heatmaps only, and the settings were left alone for it
    assert [n for n, m in win.last_snapshot.matrices.items() if m.delta is not None] == [names[0]]
    assert win.settings.heatmap_matrices is None

    # paused: the pick is a hot change, answered by a snapshot at once
    before = win.delivered
    assert view.set_matrix(names[4])
    assert win.settings.heatmap_matrices == (names[4],)
    qtbot.waitUntil(lambda: shows(win, names[4]), timeout=WAIT_MS)
    assert win.delivered - before <= 2
    assert "on the way" not in view.caption_text()

    # playing: the same, within a snapshot or two of the pick
    win.play()
    qtbot.waitUntil(lambda: win.last_snapshot.state == "running", timeout=WAIT_MS)
    arrived = []
    win.snapshot_delivered.connect(lambda s: arrived.append(s.matrices[names[2]].delta is not None))
    assert view.set_matrix(names[2])  # linked: the spectrum view follows, and asks nothing more
    assert win.views["spectrum"].current_matrix() == names[2]
    qtbot.waitUntil(lambda: shows(win, names[2]), timeout=WAIT_MS)
    win.pause()
    assert arrived.index(True) <= 2, arrived

    # W0 came once with the choice; many snapshots later W₀ and W₀+ΔW still draw from the window's copy
    qtbot.waitUntil(lambda: win.last_snapshot.state == "paused", timeout=WAIT_MS)
    start = win.last_snapshot.step
    win.worker.step(4)
    qtbot.waitUntil(lambda: win.last_snapshot.step == start + 4, timeout=WAIT_MS)
    w0 = pooled_w0(names[2], win.settings.display_size)
    view.set_mode("base")
    qtbot.waitUntil(lambda: view.image_data() is not None and view.image_data().shape == w0.shape, timeout=WAIT_MS)
    np.testing.assert_allclose(view.image_data(), w0, rtol=1e-6, atol=1e-7)
    view.set_mode("merged")
    m = view.snapshot.matrices[names[2]]
    np.testing.assert_allclose(view.image_data(), w0 + m.delta, rtol=1e-6, atol=1e-7)
    assert win.view_errors == {}


def test_a_recording_made_in_the_app_holds_the_shown_matrix_and_its_replay_says_so(qtbot, make_window, tmp_path):
    win = make_window(tiny_lm(targets=TARGETS), size=(1600, 1000))
    view = win.views["delta"]
    qtbot.waitUntil(lambda: win.last_snapshot is not None, timeout=WAIT_MS)
    names = list(win.last_snapshot.matrices)
    out = tmp_path / "app-run"
    rec = win.features.run_recording.toggle(out)
    assert rec is not None
    win.worker.step(2)
    qtbot.waitUntil(lambda: rec.last_step == 2, timeout=WAIT_MS)
    assert view.set_matrix(names[1])
    qtbot.waitUntil(lambda: shows(win, names[1]), timeout=WAIT_MS)
    win.worker.step(2)
    qtbot.waitUntil(lambda: rec.last_step == 4 and shows(win, names[1]), timeout=WAIT_MS)
    with qtbot.waitSignal(rec.ended, timeout=WAIT_MS):
        win.actions_by_name["record_run"].trigger()
    reader = RecordingReader(out)
    last = reader.snapshot(reader.steps[-1])
    assert [n for n, m in last.matrices.items() if m.delta is not None] == [names[1]]
    # W0 of the shown matrix is in every record that shows it (the window put it back), stored once
    np.testing.assert_allclose(last.matrices[names[1]].base, pooled_w0(names[1], 128), rtol=1e-6, atol=1e-7)
    assert all(m.spectrum.size for m in last.matrices.values())  # every matrix's spectrum is recorded

    ctl = win.features.replay.open(out)
    qtbot.waitUntil(lambda: win.replay is ctl and view.snapshot is ctl.shown, timeout=WAIT_MS)
    assert ctl.show_step(reader.steps[-1])
    qtbot.waitUntil(lambda: view.snapshot is ctl.shown, timeout=WAIT_MS)
    asked = win.settings.heatmap_matrices
    assert view.set_matrix(names[5])
    qtbot.waitUntil(lambda: "in this recording" in view.caption_text(), timeout=WAIT_MS)
    assert f"it holds the heatmaps of {names[1]}" in view.caption_text()
    assert view.image_data() is None and win.settings.heatmap_matrices == asked  # a replay asks the engine nothing
    assert view.set_matrix(names[1])
    qtbot.waitUntil(lambda: shows(win, names[1]), timeout=WAIT_MS)

    # back to live with another matrix picked in the replay: the window asks for it
    assert view.set_matrix(names[3])
    win.features.replay.back_to_live()
    qtbot.waitUntil(lambda: shows(win, names[3]), timeout=WAIT_MS)
    assert win.settings.heatmap_matrices == (names[3],)
    assert win.view_errors == {}
