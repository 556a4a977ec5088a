"""The app's PEFT adapter features (pytest-qt, offscreen): File > Open PEFT adapter (the inspector
window) and File > Export as PEFT adapter.

What a person would see: the layer x module grid holds each module's ||ΔW||_F, clicking a cell
draws that module's ΔW (pixels change) and its spectrum (exactly r values), a bad directory shows
a message and leaves the previous inspection usable, an export of a running LoRA writes a
directory PEFT's reader accepts, and a per-head-gate prefix run is refused with the reason.
Every window is closed and no helper thread is left running.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from engine_helpers import tiny_lm
from helpers import tiny_llama
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from explorer.core.peft_files import read_adapter, write_adaption_prompt_adapter, write_lora_adapter

WAIT_MS = 60_000
LAYERS = 3
R_Q, R_V, ALPHA = 4, 2, 8.0  # v_proj gets rank 2 through rank_pattern


# ---------------------------------------------------------------------------------------- adapters
def _factors(seed: int):
    """Per module (A, B) for a tiny GQA Llama (hidden 64, kv 32): q_proj and v_proj in every
    layer (v_proj at rank 2 by rank_pattern), o_proj only in the last layer (an empty grid cell)."""
    g = torch.Generator().manual_seed(seed)
    mods = {}
    for i in range(LAYERS):
        mods[f"model.layers.{i}.self_attn.q_proj"] = {
            "A": torch.randn(R_Q, 64, generator=g) * 0.2,
            "B": torch.randn(64, R_Q, generator=g) * 0.05 * (i + 1),
        }
        mods[f"model.layers.{i}.self_attn.v_proj"] = {
            "A": torch.randn(R_V, 64, generator=g) * 0.2,
            "B": torch.randn(32, R_V, generator=g) * 0.2 / (i + 1),
        }
    mods[f"model.layers.{LAYERS - 1}.self_attn.o_proj"] = {
        "A": torch.randn(R_Q, 64, generator=g) * 0.2,
        "B": torch.randn(64, R_Q, generator=g) * 0.1,
    }
    return mods


def _scaling(name: str) -> float:
    return ALPHA / (R_V if name.endswith("v_proj") else R_Q)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapters") / "tiny-lora"
    mods = _factors(1)
    write_lora_adapter(
        d, mods, r=R_Q, lora_alpha=ALPHA, rank_pattern={"v_proj": R_V}, target_modules=["q_proj", "v_proj", "o_proj"]
    )
    return d, mods


@pytest.fixture(scope="module")
def other_adapter_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapters") / "other-lora"
    mods = _factors(2)
    write_lora_adapter(
        d, mods, r=R_Q, lora_alpha=ALPHA, rank_pattern={"v_proj": R_V}, target_modules=["q_proj", "v_proj", "o_proj"]
    )
    return d, mods


# ---------------------------------------------------------------------------------------- helpers
def _open(qtbot, win, path):
    """File > Open PEFT adapter on `path`; wait for the inspector to show it."""
    inspector = win.features.inspector.inspector(create=True)
    with qtbot.waitSignal(inspector.loaded, timeout=WAIT_MS) as blocker:
        assert win.features.inspector.open(str(path)) is inspector
    qtbot.waitExposed(inspector)
    return inspector, blocker.args[0]


def _image(widget) -> np.ndarray:
    """The widget as drawn now, (h, w, 3) uint8."""
    from PySide6.QtGui import QImage

    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    rows = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    return rows[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., :3].copy()


def _click_cell(qtbot, inspector, name):
    row, col = inspector.grid.cell_of(name)
    with qtbot.waitSignal(inspector.moduleSelected, timeout=WAIT_MS):
        qtbot.mouseClick(inspector.grid.glw.viewport(), Qt.LeftButton, pos=inspector.grid.cell_center(row, col))


# ---------------------------------------------------------------------------------------- inspect
def test_open_adapter_grid_table_and_views(qtbot, make_window, adapter_dir):
    path, mods = adapter_dir
    win = make_window(tiny_lm(), start=False)
    inspector, report = _open(qtbot, win, path)
    assert report.peft_type == "LORA" and len(report.modules) == len(mods)
    assert "LORA" in inspector.header.text() and "r = 2…4" in inspector.header.text()

    # the grid: layers x module kinds, each cell ||scaling B A||_F, empty where no adapter
    grid = inspector.grid
    assert grid.layers() == list(range(LAYERS))
    assert grid.modules() == ["q_proj", "v_proj", "o_proj"]
    values = grid.values()
    assert values.shape == (LAYERS, 3)
    for name, f in mods.items():
        layer, kind = int(name.split(".")[2]), name.rsplit(".", 1)[1]
        expected = float(torch.linalg.norm(_scaling(name) * f["B"] @ f["A"]))
        assert values[layer, grid.modules().index(kind)] == pytest.approx(expected, rel=1e-4), name
    assert np.isnan(values[: LAYERS - 1, 2]).all()  # o_proj only in the last layer

    # the table: one row per module, rank and scaling honour rank_pattern
    table = inspector.table
    assert table.rowCount() == len(mods)
    rows = {table.item(i, 0).data(Qt.UserRole): i for i in range(table.rowCount())}
    v0 = "model.layers.0.self_attn.v_proj"
    assert table.item(rows[v0], inspector.table.COLUMNS.index("r")).text() == str(R_V)
    assert table.item(rows[v0], inspector.table.COLUMNS.index("scaling")).text() == "4"
    assert not table.isColumnHidden(inspector.table.COLUMNS.index("scaling"))  # 2 for q, 4 for v
    assert table.isColumnHidden(inspector.table.COLUMNS.index("α"))  # 8 everywhere: in the header
    assert table.isColumnHidden(inspector.table.COLUMNS.index("amplification"))  # no base given

    # clicking a grid cell selects that module: its ΔW drawn, its spectrum has exactly r values
    q2, v1 = f"model.layers.{LAYERS - 1}.self_attn.q_proj", "model.layers.1.self_attn.v_proj"
    _click_cell(qtbot, inspector, q2)
    assert inspector.selected_module() == q2
    assert inspector.delta_view.current_matrix() == q2
    assert table.item(table.currentRow(), 0).data(Qt.UserRole) == q2
    first = _image(inspector.delta_view.glw)
    assert np.unique(first.reshape(-1, 3), axis=0).shape[0] > 50, "the ΔW heatmap is blank"
    assert inspector.spectrum_view.spectrum_values().size == R_Q
    dense = _scaling(q2) * mods[q2]["B"] @ mods[q2]["A"]
    np.testing.assert_allclose(
        inspector.spectrum_view.spectrum_values(), torch.linalg.svdvals(dense)[:R_Q].numpy(), rtol=1e-4
    )

    _click_cell(qtbot, inspector, v1)
    assert inspector.selected_module() == v1
    assert inspector.spectrum_view.spectrum_values().size == R_V
    second = _image(inspector.delta_view.glw)
    assert first.shape == second.shape and (first != second).any(axis=2).mean() > 0.05, (
        "selecting another module did not redraw the heatmap"
    )
    assert inspector.delta_view.image_data().shape == (32, 64)

    # the table picks too
    o2 = f"model.layers.{LAYERS - 1}.self_attn.o_proj"
    row = next(i for i in range(table.rowCount()) if table.item(i, 0).data(Qt.UserRole) == o2)
    with qtbot.waitSignal(inspector.moduleSelected, timeout=WAIT_MS):
        table.selectRow(row)
    assert inspector.selected_module() == o2 and grid.cell_of(o2) == (LAYERS - 1, 2)


def _bad_pickle(d):
    (d / "adapter_model.safetensors").unlink()
    (d / "adapter_model.bin").write_bytes(b"\x80\x04\x95not really a pickle")


def _bad_truncated(d):
    w = d / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])


def _bad_json(d):
    (d / "adapter_config.json").write_text('{"peft_type": "LORA", "r": ')


@pytest.mark.parametrize(
    "breaker,expected",
    [
        (_bad_pickle, "adapter_model.bin"),
        (_bad_truncated, "adapter_model.safetensors"),
        (_bad_json, "adapter_config.json"),
        (None, "no such adapter directory"),
    ],
    ids=["pickle", "truncated", "invalid-json", "missing"],
)
def test_bad_directory_shows_a_message_and_keeps_the_inspection(
    qtbot, make_window, adapter_dir, other_adapter_dir, tmp_path, breaker, expected
):
    good, _ = adapter_dir
    win = make_window(tiny_lm(), start=False)
    inspector, report = _open(qtbot, win, good)
    grid_before = inspector.grid.values()
    bad = tmp_path / "bad"
    if breaker is not None:
        shutil.copytree(other_adapter_dir[0], bad)
        breaker(bad)
    with qtbot.waitSignal(inspector.failed, timeout=WAIT_MS) as blocker:
        win.features.inspector.open(str(bad))
    message = blocker.args[0]
    assert expected in message and "\n" not in message and "Traceback" not in message
    box = inspector.error_box
    assert box is not None and box.isVisible() and box.text() == message
    if breaker is _bad_pickle:
        assert "pickle" in message
    # the previous inspection stays, and the window is still usable
    assert inspector.report is report
    np.testing.assert_array_equal(inspector.grid.values(), grid_before)
    assert inspector.select_module("model.layers.1.self_attn.q_proj")
    assert inspector.spectrum_view.spectrum_values().size == R_Q
    assert win.isVisible() and not inspector.busy
    box.close()
    # and a good adapter opens afterwards
    _, again = _open(qtbot, win, other_adapter_dir[0])
    assert again.path == str(other_adapter_dir[0])


def test_compare_with_base_adds_amplification(qtbot, make_window, adapter_dir, tmp_path):
    from explorer.core.llama import save_pretrained

    base_dir = tmp_path / "base"
    save_pretrained(tiny_llama(kv_heads=2, layers=LAYERS), base_dir)
    win = make_window(tiny_lm(), start=False)
    inspector, _ = _open(qtbot, win, adapter_dir[0])
    assert inspector.base_button.isEnabled()
    with qtbot.waitSignal(inspector.loaded, timeout=WAIT_MS) as blocker:
        inspector.compare_with_base(base_dir)
    report = blocker.args[0]
    assert report.base == str(base_dir)
    assert all(m.amplification and m.amplification["factor"] > 0 for m in report.modules)
    col = inspector.table.COLUMNS.index("amplification")
    assert not inspector.table.isColumnHidden(col)
    assert inspector.table.item(0, col).text() not in ("", "–")
    inspector.delta_view.set_mode("base")  # W0 from the base, pooled
    assert np.abs(inspector.delta_view.image_data()).max() > 0
    # a base that does not fit: a message, the comparison stays
    wrong = tmp_path / "wrong"
    save_pretrained(tiny_llama(kv_heads=4, layers=LAYERS), wrong)
    with qtbot.waitSignal(inspector.failed, timeout=WAIT_MS) as blocker:
        inspector.compare_with_base(wrong)
    assert str(wrong) in blocker.args[0] and inspector.report is report
    inspector.error_box.close()


def test_adaption_prompt_adapter_shows_prompts_and_gates(qtbot, make_window, tmp_path):
    g = torch.Generator().manual_seed(0)
    prompts = {i: (torch.randn(5, 64, generator=g), torch.tensor([0.1 * i])) for i in (1, 2)}
    write_adaption_prompt_adapter(tmp_path / "prompt", prompts)
    win = make_window(tiny_lm(), start=False)
    inspector, report = _open(qtbot, win, tmp_path / "prompt")
    assert inspector.pages.currentWidget() is inspector.prompt_panel
    assert "K = 5" in inspector.header.text() and "L = 2" in inspector.header.text()
    table = inspector.prompt_panel.table
    assert table.rowCount() == 2
    gates = sorted(float(table.item(i, 1).text()) for i in range(2))
    assert gates == pytest.approx([0.1, 0.2])
    assert not inspector.base_button.isEnabled()


# ---------------------------------------------------------------------------------------- export
def test_export_running_lora_writes_a_peft_adapter(qtbot, make_window, tmp_path, monkeypatch):
    win = make_window(tiny_lm(method="lora", rank=2, targets=("q_proj", "v_proj")))
    win.worker.step(3)
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.step >= 3, timeout=WAIT_MS)
    out = tmp_path / "export"
    job = win.features.adapter_export.export(str(out))
    assert job is not None
    qtbot.waitUntil(lambda: job.result is not None or job.error is not None, timeout=WAIT_MS)
    assert job.error is None, job.error
    qtbot.waitUntil(lambda: win.features.adapter_export.message is not None, timeout=WAIT_MS)
    adapter = read_adapter(out / "adapter")
    assert adapter.peft_type == "LORA" and len(adapter.lora) == 2 * 2
    assert all(f.rank == 2 for f in adapter.lora)
    assert any(float(f.B.abs().max()) > 0 for f in adapter.lora)  # trained, not the zero init
    assert (out / "base" / "config.json").is_file() and (out / "base" / "model.safetensors").is_file()
    box = win.features.adapter_export.message
    assert box.isVisible() and "Exported" in box.text() and str(out / "adapter") in box.informativeText()
    box.close()

    # exporting again asks before replacing: "No" leaves the files alone
    stamp = (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.No)
    assert win.features.adapter_export.export(str(out)) is None
    assert asked and (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == stamp


def test_export_of_per_head_gate_prefix_is_refused(qtbot, make_window, tmp_path):
    win = make_window(tiny_lm(method="prefix", gate_shape="head"), start=False)
    out = tmp_path / "export"
    assert win.features.adapter_export.export(str(out)) is None
    box = win.features.adapter_export.message
    assert box.isVisible() and "cannot be exported" in box.text()
    assert "per head" in box.informativeText() and "one gate per layer" in box.informativeText()
    assert "per head" in win.status.currentMessage()
    assert not out.exists()
    box.close()


def test_a_first_adapter_that_cannot_be_opened_shows_the_reason_not_empty_axes(
    qtbot, make_window, other_adapter_dir, tmp_path
):
    win = make_window(tiny_lm(), start=False)
    bad = tmp_path / "bad"
    shutil.copytree(other_adapter_dir[0], bad)
    _bad_truncated(bad)
    inspector = win.features.inspector.inspector(create=True)
    assert inspector.pages.currentWidget() is inspector.message_page  # nothing opened yet: words
    with qtbot.waitSignal(inspector.failed, timeout=WAIT_MS) as blocker:
        win.features.inspector.open(str(bad))
    assert inspector.pages.currentWidget() is inspector.message_page
    assert blocker.args[0] in inspector.message_page.text()
    inspector.error_box.close()
    _, report = _open(qtbot, win, other_adapter_dir[0])
    assert inspector.pages.currentWidget() is not inspector.message_page
