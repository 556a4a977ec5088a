"""Exporting views and metrics (explorer.gui.export): PNG at twice the on-screen size, SVG that is
valid XML with real drawing elements, CSV with the histories; and the window's Ctrl+E / CSV actions."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import snapshot_factory as sf
from PIL import Image
from PySide6 import QtWidgets

from explorer.gui.export import (
    TITLE_PX,
    export_title,
    export_view,
    metrics_table,
    on_screen_size,
    suffix_for,
    write_metrics_csv,
)
from explorer.gui.views import VIEW_CLASSES

SVG = "{http://www.w3.org/2000/svg}"
SCENES = {
    "delta": sf.lora_snapshot(120),
    "spectrum": sf.lora_snapshot(120),
    "attention": sf.prefix_snapshot(60),
    "gates": sf.prefix_snapshot(60),
    "loss": sf.lora_snapshot(200),
    "budget": sf.lora_snapshot(10),
    "samples": sf.lora_snapshot(10),
}


def shown(qtbot, view_id, w=520, h=380):
    view = VIEW_CLASSES[view_id]()
    qtbot.addWidget(view)
    view.resize(w, h)
    view.show()
    qtbot.waitExposed(view)
    view.update_snapshot(SCENES[view_id])
    QtWidgets.QApplication.processEvents()
    return view


@pytest.mark.parametrize("view_id", list(SCENES))
def test_png_is_valid_and_twice_the_on_screen_size(qtbot, tmp_path, view_id):
    view = shown(qtbot, view_id)
    size = on_screen_size(view)
    assert size.width() > 100 and size.height() > 100
    path = export_view(view, tmp_path / f"{view_id}.png")
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        # twice the on-screen size, under a title line twice its on-screen height
        want_h = 2 * (size.height() + TITLE_PX)
        assert abs(im.width - 2 * size.width()) <= 1 and abs(im.height - want_h) <= 1, (im.size, size)
        px = np.asarray(im.convert("RGB"))
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 8  # a picture, not a blank rectangle
    assert [p.name for p in tmp_path.iterdir()] == [f"{view_id}.png"]


@pytest.mark.parametrize("view_id", ["loss", "delta", "spectrum", "budget"])
def test_svg_is_valid_xml_with_drawing_elements(qtbot, tmp_path, view_id):
    view = shown(qtbot, view_id)
    path = export_view(view, tmp_path / f"{view_id}.svg")
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    size = on_screen_size(view)
    box = [float(x) for x in root.get("viewBox").split()]
    assert box[2:] == pytest.approx([size.width(), size.height()], abs=1)
    tags = [el.tag[len(SVG) :] for el in root.iter() if el.tag.startswith(SVG)]
    assert tags.count("text") >= 3  # axis ticks, labels, numbers
    if view_id != "budget":
        assert tags.count("path") + tags.count("polyline") >= 5  # curves, axes, frames as vectors
    if view_id in ("delta", "spectrum"):
        assert "image" in tags  # the heatmap, embedded
    texts = " ".join("".join(el.itertext()) for el in root.iter(f"{SVG}text"))
    expected = {"loss": "step", "delta": "input", "spectrum": "index", "budget": "LLaMA"}[view_id]
    assert expected in texts


def test_unknown_type_and_a_failed_write_leave_nothing(qtbot, tmp_path, monkeypatch):
    view = shown(qtbot, "loss")
    with pytest.raises(ValueError, match="allowed .png or .svg"):
        export_view(view, tmp_path / "loss.jpg")
    old = tmp_path / "loss.png"
    old.write_bytes(b"previous")
    monkeypatch.setattr("PySide6.QtGui.QImage.save", lambda *a, **k: False)
    with pytest.raises(OSError):
        export_view(view, old)
    assert old.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["loss.png"]


def test_suffix_follows_the_chosen_filter():
    assert suffix_for("/x/plot", "SVG drawing (*.svg)") == "/x/plot.svg"
    assert suffix_for("/x/plot", "PNG image (*.png)") == "/x/plot.png"
    assert suffix_for("/x/plot.svg", "PNG image (*.png)") == "/x/plot.svg"
    assert suffix_for("/x/m", "CSV (*.csv)") == "/x/m.csv"


def test_metrics_csv_has_the_histories(tmp_path):
    snap = sf.lora_prefix_snapshot(80)
    header, rows = metrics_table(snap)
    h = snap.history
    assert header[:3] == ["step", "loss", "eval_loss"]
    gates = [c for c in header if c.startswith("gate_L")]
    n_layers, n_heads = np.asarray(h.gates).shape[1:]
    assert len(gates) in (n_layers, n_layers * n_heads)
    ranks = [c for c in header if c.startswith("effective_rank_")]
    assert len(ranks) == len(h.spectra)
    path = tmp_path / "metrics.csv"
    assert write_metrics_csv(snap, path) == len(rows)
    with open(path, newline="") as fh:
        table = list(csv.DictReader(fh))
    steps = [int(r["step"]) for r in table]
    assert steps == sorted(set(steps)) and set(int(s) for s in h.steps) <= set(steps)
    by_step = {int(r["step"]): r for r in table}
    for s, v in zip(h.steps, h.loss):
        assert float(by_step[int(s)]["loss"]) == pytest.approx(float(v))
    for s, v in zip(h.eval_steps, h.eval_loss):
        assert float(by_step[int(s)]["eval_loss"]) == pytest.approx(float(v))
    last_gate_step = int(h.gate_steps[-1])
    first_gate = gates[0]
    assert header[-1] == "lr" and all(float(r["lr"]) == pytest.approx(snap.lr) for r in table)
    assert float(by_step[last_gate_step][first_gate]) == pytest.approx(float(np.asarray(h.gates)[-1, 0, 0]))
    # a step with a loss but no held-out value leaves that cell empty
    only_train = sorted(set(int(s) for s in h.steps) - set(int(s) for s in h.eval_steps))
    assert only_train and by_step[only_train[0]]["eval_loss"] == ""


def test_window_exports_the_current_view_and_the_metrics(qtbot, make_window, tmp_path, monkeypatch):
    win = make_window(None, factory=None, start=False)
    win.deliver(sf.lora_snapshot(150))
    qtbot.waitUntil(lambda: win.views["loss"].snapshot is not None, timeout=10_000)
    win.set_current_view("loss")
    target = tmp_path / "chosen"
    monkeypatch.setattr(
        "PySide6.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), "SVG drawing (*.svg)")
    )
    win.actions_by_name["export_view"].trigger()  # Ctrl+E
    assert (tmp_path / "chosen.svg").is_file(), win.status.currentMessage()
    ET.parse(tmp_path / "chosen.svg")
    assert "Exported loss" in win.status.currentMessage()
    assert win.files.export_current_view(str(tmp_path / "loss.png")) == str(tmp_path / "loss.png")
    with Image.open(tmp_path / "loss.png") as im:
        size = on_screen_size(win.views["loss"])
        assert abs(im.width - 2 * size.width()) <= 1
    out = win.files.export_metrics(str(tmp_path / "m.csv"))
    assert out and Path(out).read_text().startswith("step,loss,eval_loss")


def test_png_has_a_title_line_and_everything_doubles(qtbot, tmp_path):
    """The title names the view, the matrix, the step and the run; everything is twice as large,
    the legend and its type too."""
    view = shown(qtbot, "loss")
    snap = SCENES["loss"]
    title = export_title(view)
    assert title.startswith("Loss · ") and f"step {snap.step}" in title and snap.settings["method"] in title
    assert " · W · " in export_title(shown(qtbot, "delta")) or "q_proj" in export_title(shown(qtbot, "delta"))
    path = export_view(view, tmp_path / "loss.png")
    px = np.asarray(Image.open(path).convert("RGB")).astype(int)
    band = px[: 2 * TITLE_PX]
    assert (np.abs(band - px[-1, -1]).sum(axis=2) > 200).mean() > 0.01  # type in the title band
    # halved, the picture is what the screen shows (pyqtgraph's ImageExporter widened the plot but
    # kept the legend and the ticks at screen size)
    item = view.export_item()
    gv = item.scene().views()[0]
    screen = Image.fromqimage(gv.grab(gv.mapFromScene(item.sceneBoundingRect()).boundingRect()).toImage())
    screen = screen.convert("RGB")
    halved = Image.open(path).convert("RGB").crop((0, 2 * TITLE_PX, px.shape[1], px.shape[0]))
    halved = halved.resize(screen.size, Image.Resampling.BOX)
    diff = np.abs(np.asarray(halved).astype(int) - np.asarray(screen).astype(int)).mean()
    assert diff < 6, diff


@pytest.mark.parametrize("view_id", ["loss", "budget"])
def test_svg_renders_like_the_png_in_a_second_renderer(qtbot, tmp_path, view_id):
    """rsvg-convert (librsvg, without vector-effect support) draws the SVG: not blank, and covering
    about as much of the frame as the PNG export (a curve drawn with its pen scaled by the data
    transform became a band covering a third of the plot)."""
    import shutil
    import subprocess

    rsvg = shutil.which("rsvg-convert")
    assert rsvg, "rsvg-convert is needed for this test (apt install librsvg2-bin)"
    view = shown(qtbot, view_id)
    svg = export_view(view, tmp_path / f"{view_id}.svg")
    png = export_view(view, tmp_path / f"{view_id}.png", scale=1.0)
    out = tmp_path / "rendered.png"
    subprocess.run([rsvg, "-b", "white", "-o", str(out), str(svg)], check=True, timeout=60)

    def coverage(path, skip_top=0):
        img = np.asarray(Image.open(path).convert("L")).astype(int)[skip_top:]
        bg = np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]))
        return (np.abs(img - bg) > 40).mean(), img.shape

    drawn, shape = coverage(out)
    want, want_shape = coverage(png, skip_top=TITLE_PX)
    assert abs(shape[0] - want_shape[0]) <= 2 and abs(shape[1] - want_shape[1]) <= 2, (shape, want_shape)
    assert drawn > 0.005, "the SVG renders blank"
    assert 0.4 * want <= drawn <= 2.5 * want, (drawn, want)
