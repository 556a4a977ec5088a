"""The live views, drawn from synthetic snapshots (tests/snapshot_factory.py), judged by what a person
would see: grabbed pixels that are not blank and that change with the data, symmetric colour levels,
exactly r singular values, a layers x heads attention grid, gates from 0, TensorBoard's smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import snapshot_factory as sf
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views import VIEW_CLASSES, View
from explorer.gui.views.loss_view import ema_debiased
from explorer.schema.faults import Fault


@pytest.fixture(autouse=True)
def _no_app_style_sheet(qapp):
    """The views are tested on their own: without the window's application style sheet, which an
    earlier window test may have left set (with one set, Qt does not pass a widget's font to its labels;
    talk mode lifts it for the same reason)."""
    sheet = qapp.styleSheet()
    qapp.setStyleSheet("")
    yield
    qapp.setStyleSheet(sheet)


# ---- helpers -------------------------------------------------------------------------------------


def make(qtbot, view_id: str, w: int = 560, h: int = 420) -> View:
    view = VIEW_CLASSES[view_id]()
    qtbot.addWidget(view)
    view.resize(w, h)
    view.show()
    qtbot.waitExposed(view)
    return view


def pixels(widget: QtWidgets.QWidget) -> np.ndarray:
    """The widget as a person would see it, (height, width, 3) uint8."""
    QtWidgets.QApplication.processEvents()
    img = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
    return buf.reshape(img.height(), img.bytesPerLine() // 4, 4)[:, : img.width(), :3].copy()


def colours(arr: np.ndarray) -> int:
    flat = arr.reshape(-1, 3).astype(np.int64)
    return int(np.unique(flat[:, 0] | (flat[:, 1] << 8) | (flat[:, 2] << 16)).size)


def changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return 1.0
    return float(np.any(a != b, axis=2).mean())


def drawing(view: View) -> QtWidgets.QWidget:
    """The part of a view that shows the data (not its pickers and captions)."""
    for name in ("glw", "grid_glw"):
        if hasattr(view, name):
            return getattr(view, name)
    return view


def sized(qtbot, view_id: str, w: int, h: int) -> View:
    """A view at exactly w x h (resized after it is shown, as a dock resizes it), laid out."""
    view = make(qtbot, view_id, w, h)
    view.resize(w, h)
    pixels(view)
    assert (view.width(), view.height()) == (w, h)
    return view


def in_widget(item, widget: QtWidgets.QWidget) -> QtCore.QRectF:
    """Where a pyqtgraph item lies in its GraphicsView, in widget pixels."""
    return widget.mapFromScene(item.sceneBoundingRect()).boundingRect().toRectF()


# The live views of a single run (the compare view has its own tests).
LIVE_VIEWS = ["delta", "spectrum", "attention", "gates", "loss", "budget", "samples", "tokens"]

# Per view: the snapshot it is shown first, and a later one with different data.
SCENES = {
    "delta": (sf.lora_snapshot(20), sf.lora_snapshot(200)),
    "spectrum": (sf.lora_snapshot(20), sf.lora_snapshot(200)),
    "attention": (sf.prefix_snapshot(10), sf.prefix_snapshot(200)),
    "gates": (sf.prefix_snapshot(20), sf.prefix_snapshot(200)),
    "loss": (sf.lora_snapshot(30), sf.lora_snapshot(300)),
    "budget": (sf.lora_snapshot(20, rank=4), sf.lora_snapshot(20, rank=16, segment=1)),
    "samples": (sf.lora_snapshot(20), sf.lora_snapshot(120)),
    "tokens": (sf.lora_snapshot(20), sf.lora_snapshot(200)),
}


# ---- the registry and the base API ---------------------------------------------------------------


def test_registry_lists_every_view_in_order():
    assert list(VIEW_CLASSES)[: len(LIVE_VIEWS)] == LIVE_VIEWS
    for key, cls in VIEW_CLASSES.items():
        assert issubclass(cls, View)
        assert cls.view_id == key and cls.title and cls.formula_tooltip
        assert "\n" not in cls.formula_tooltip


@pytest.mark.parametrize("view_id", LIVE_VIEWS)
def test_view_is_drawn_and_changes_with_the_data(qtbot, view_id):
    view = make(qtbot, view_id)
    assert view.toolTip() == view.formula_tooltip
    before = pixels(drawing(view))
    first, later = SCENES[view_id]
    view.update_snapshot(first)
    a = pixels(drawing(view))
    assert view.message() == ""
    assert colours(a) > 16, "the view looks blank after a snapshot"
    assert changed_fraction(before, a) > 0.01
    view.update_snapshot(later)
    b = pixels(drawing(view))
    assert changed_fraction(a, b) > 0.002, "new data did not change the picture"


@pytest.mark.parametrize("view_id", LIVE_VIEWS)
def test_views_draw_snapshots_with_empty_fields(qtbot, view_id):
    view = make(qtbot, view_id, 420, 320)
    for snap in (
        sf.blank_snapshot(),
        sf.blank_snapshot("prefix"),
        sf.lora_snapshot(0),
        sf.prefix_snapshot(0),
        sf.full_snapshot(0),
        sf.full_snapshot(30),
        sf.matrix_snapshot(0),
        sf.matrix_snapshot(30),
        sf.lora_prefix_snapshot(0),
        sf.lora_prefix_snapshot(30),
    ):
        view.update_snapshot(snap)
        assert pixels(view).size
    view.clear()
    assert view.snapshot is None
    view.update_snapshot(sf.lora_prefix_snapshot(50))
    assert colours(pixels(view)) > 16


@pytest.mark.parametrize("view_id", LIVE_VIEWS)
def test_views_survive_non_finite_values(qtbot, view_id):
    """A run that blew up (the engine reports a fault) still draws: NaN and inf become gaps, not errors."""
    view = make(qtbot, view_id, 420, 320)
    snap = sf.lora_prefix_snapshot(60)
    for m in snap.matrices.values():
        m.delta[:3] = np.nan
        m.delta[3, 3] = np.inf
        m.spectrum[-1] = np.nan
    snap.history.loss[-5:] = np.nan
    snap.history.gates[-1] = np.nan
    snap.prefixes[0].attention[0, 0, 0] = np.nan
    snap.state, snap.fault = "fault", Fault("diverged", "loss is NaN at step 60")
    view.update_snapshot(snap)
    assert colours(pixels(view)) > 16
    if view_id == "delta":
        lo, hi = view.levels()
        data = view.image_data()
        assert lo == -hi and hi == pytest.approx(np.abs(data[np.isfinite(data)]).max())


def test_full_fine_tuning_snapshot_shows_friendly_messages(qtbot):
    snap = sf.full_snapshot(30)
    attention, gates = make(qtbot, "attention"), make(qtbot, "gates")
    attention.update_snapshot(snap)
    gates.update_snapshot(snap)
    assert "No prefix layers in this method (full fine-tuning)" in attention.message()
    assert "No gates in this method" in gates.message()
    lora = sf.lora_snapshot(30)
    attention.update_snapshot(lora)
    assert "(LoRA)" in attention.message()
    attention.update_snapshot(sf.prefix_snapshot(30))
    assert attention.message() == ""


def test_hidden_views_skip_work_and_catch_up_when_shown(qtbot):
    view = make(qtbot, "delta")
    snap = sf.lora_snapshot(40)
    view.update_snapshot(snap)
    assert view.draw_count == 1
    view.update_snapshot(snap)  # the same data again: nothing to redraw
    assert view.draw_count == 1
    view.hide()
    view.update_snapshot(sf.lora_snapshot(80))
    view.update_snapshot(sf.lora_snapshot(90))
    assert view.draw_count == 1  # hidden: no work
    view.show()
    qtbot.waitExposed(view)
    assert view.draw_count == 2  # shown: only the newest is drawn
    assert "step 90" in view.caption_text()


def test_refresh_draws_a_hidden_view_before_export(qtbot):
    view = VIEW_CLASSES["loss"]()
    qtbot.addWidget(view)
    view.update_snapshot(sf.lora_snapshot(100))
    assert view.draw_count == 0
    view.refresh()
    assert view.draw_count == 1


@pytest.mark.parametrize("view_id", ["delta", "spectrum", "attention", "gates", "loss"])
def test_export_item_is_exportable_by_pyqtgraph(qtbot, view_id):
    import pyqtgraph.exporters as exporters

    view = make(qtbot, view_id)
    view.update_snapshot(SCENES[view_id][1])
    item = view.export_item()
    image = exporters.ImageExporter(item).export(toBytes=True)
    assert not image.isNull() and image.width() > 50


def test_export_item_as_svg(qtbot, tmp_path):
    """pyqtgraph 0.14.0's SVGExporter cannot parse the closed paths ('... Z') Qt 6 writes (pyqtgraph
    issue 3495): explorer.gui.export paints the item's scene through QSvgGenerator instead."""
    import xml.etree.ElementTree as ET

    from explorer.gui.export import export_view

    view = make(qtbot, "loss")
    view.update_snapshot(SCENES["loss"][1])
    path = export_view(view, tmp_path / "loss.svg")
    assert b"<svg" in path.read_bytes()[:400]
    root = ET.parse(path).getroot()
    assert any(el.tag.endswith("path") for el in root.iter()) and any(el.tag.endswith("text") for el in root.iter())


@pytest.mark.parametrize("view_id", ["budget", "samples", "tokens"])
def test_export_item_of_widget_views_is_the_widget(qtbot, view_id):
    view = make(qtbot, view_id)
    view.update_snapshot(SCENES[view_id][0])
    assert view.export_item() is view
    assert not view.export_item().grab().isNull()


def test_talk_mode_uses_colour_blind_safe_maps_and_bigger_fonts(qtbot):
    view = make(qtbot, "delta")
    view.update_snapshot(sf.lora_snapshot(100))
    size = view.caption.font().pointSizeF()
    view.set_talk_mode(1.8, True)
    assert np.array_equal(view.image.lut, colormaps.lut(colormaps.DIVERGING_SAFE))
    assert view.caption.font().pointSizeF() > size * 1.5
    lo, hi = view.levels()
    view.update_snapshot(sf.lora_snapshot(5))  # much smaller ΔW: talk mode holds the levels
    assert view.levels() == (lo, hi)
    view.set_talk_mode(1.0, False)
    assert np.array_equal(view.image.lut, colormaps.lut(colormaps.DIVERGING))
    view.set_theme(dark=False)
    assert view.glw.backgroundBrush().color().lightness() > 200


# ---- ΔW heatmap -----------------------------------------------------------------------------------


def test_heatmap_levels_are_symmetric_and_never_clip(qtbot):
    view = make(qtbot, "delta")
    for mode in ("delta", "base", "merged"):
        view.set_mode(mode)
        for step in (10, 60, 200, 30):
            view.update_snapshot(sf.lora_snapshot(step))
            lo, hi = view.levels()
            assert lo == -hi and hi > 0
            assert hi >= np.abs(view.image_data()).max() - 1e-7
            bar_lo, bar_hi = view.colorbar.levels()
            assert (bar_lo, bar_hi) == (lo, hi)


def test_heatmap_levels_fall_back_slowly_so_colours_do_not_flicker(qtbot):
    view = make(qtbot, "delta")
    view.update_snapshot(sf.lora_snapshot(300))
    _, big = view.levels()
    view.update_snapshot(sf.lora_snapshot(5))
    small_max = float(np.abs(view.image_data()).max())
    _, after = view.levels()
    assert small_max < after < big  # moving down, not jumping
    view.clear()  # a new segment starts from its own scale
    view.update_snapshot(sf.lora_snapshot(5))
    assert view.levels()[1] == pytest.approx(small_max)


def test_heatmap_shows_delta_zero_at_step_zero(qtbot):
    view = make(qtbot, "delta")
    view.update_snapshot(sf.lora_snapshot(0))
    assert not view.image_data().any()
    assert "exactly 0" in view.caption_text()
    lo, hi = view.levels()
    assert lo == -hi


def test_heatmap_pickers_and_modes(qtbot):
    view = make(qtbot, "delta")
    snap = sf.lora_snapshot(50)
    view.update_snapshot(snap)
    assert view.matrix_names() == tuple(snap.matrices)
    assert [view.picker.layer_box.itemText(i) for i in range(view.picker.layer_box.count())] == ["0", "1"]
    assert [view.picker.module_box.itemText(i) for i in range(view.picker.module_box.count())] == ["q_proj", "v_proj"]
    name = "model.layers.1.self_attn.v_proj"
    with qtbot.waitSignal(view.matrixChanged) as sig:
        assert view.set_matrix(name)
    assert sig.args == [name] and view.current_matrix() == name
    np.testing.assert_array_equal(view.image_data(), snap.matrices[name].delta)
    view.picker.layer_box.setCurrentText("0")  # the user picks another layer: module is kept
    assert view.current_matrix() == "model.layers.0.self_attn.v_proj"
    assert not view.set_matrix("model.layers.9.mlp.up_proj")
    view.set_mode("base")
    np.testing.assert_array_equal(view.image_data(), snap.matrices[view.current_matrix()].base)
    view.set_mode("merged")
    m = snap.matrices[view.current_matrix()]
    np.testing.assert_allclose(view.image_data(), m.base + m.delta)
    assert not view._buttons["target"].isEnabled()  # no target outside the matrix scenario
    with pytest.raises(ValueError):
        view.set_mode("nonsense")


def test_heatmap_of_a_pooled_4096_matrix_and_its_target(qtbot):
    view = make(qtbot, "delta")
    snap = sf.matrix_snapshot(60, shape=(4096, 4096))
    view.update_snapshot(snap)
    assert "pooled from 4096×4096 to 128×128" in view.caption_text()
    assert view.image_data().shape == (128, 128)
    rect = view.image.mapRectToParent(view.image.boundingRect())
    assert (rect.width(), rect.height()) == (4096, 4096)  # axes read in the matrix's own indices
    assert view._buttons["target"].isEnabled()
    view.set_mode("target")
    np.testing.assert_array_equal(view.image_data(), snap.matrices["W"].target)
    assert "ΔW*" in view.caption_text()


@pytest.mark.parametrize("w,h", [(380, 600), (560, 420), (900, 400)])
def test_heatmap_axes_fit_the_image_exactly_and_it_is_centred(qtbot, w, h):
    view = sized(qtbot, "delta", w, h)
    view.update_snapshot(sf.lora_snapshot(100))  # 64 x 64
    pixels(view)
    (x0, x1), (y0, y1) = view.plot.vb.viewRange()
    assert (x0, x1, y0, y1) == (0, 64, 0, 64)  # no padding: not -10 ... 80
    box = in_widget(view.plot.vb, view.glw)
    assert box.width() == pytest.approx(box.height(), abs=2)  # square pixels for a square matrix
    assert min(box.width(), box.height()) > 0.5 * min(view.glw.width(), view.glw.height())
    bar = in_widget(view.colorbar, view.glw)
    plot = in_widget(view.plot, view.glw)
    left, right = plot.left(), view.glw.width() - bar.right()
    assert left == pytest.approx(right, abs=3)  # centred, the colour bar beside it
    gradient = in_widget(view.colorbar.vb, view.glw)
    assert gradient.top() == pytest.approx(box.top(), abs=1)  # the bar spans the image, no more
    assert gradient.bottom() == pytest.approx(box.bottom(), abs=1)
    assert view.width() == w  # nothing forces the dock wider
    import pyqtgraph.exporters as exporters

    image = exporters.ImageExporter(view.export_item()).export(toBytes=True)
    assert image.width() <= bar.right() - plot.left() + 4  # an export leaves the centring margins out


def test_heatmap_of_a_tall_matrix_keeps_its_shape(qtbot):
    view = sized(qtbot, "delta", 700, 420)
    snap = sf.matrix_snapshot(40, shape=(256, 128))
    view.update_snapshot(snap)
    pixels(view)
    (x0, x1), (y0, y1) = view.plot.vb.viewRange()
    assert (x0, x1, y0, y1) == (0, 128, 0, 256)
    box = in_widget(view.plot.vb, view.glw)
    assert box.height() / box.width() == pytest.approx(2.0, rel=0.03)


def test_heatmap_axes_label_round_indices_or_the_two_ends(qtbot):
    from explorer.gui.views.delta_view import IndexAxis

    axis = IndexAxis("bottom")
    ((_, values),) = axis.tickValues(0, 4096, 400)
    assert values == [0, 1000, 2000, 3000, 4000]
    ((_, values),) = axis.tickValues(0, 4096, 90)  # no room for three: the ends
    assert values == [0, 4096] and axis.tickStrings(values, 1.0, None) == ["0", "4096"]
    ((_, values),) = axis.tickValues(0, 64, 300)
    assert values == [0, 10, 20, 30, 40, 50, 60]


def test_heatmap_buttons_wrap_below_the_pickers_in_a_narrow_dock(qtbot):
    view = sized(qtbot, "delta", 340, 500)
    bar = view._mode_bar.geometry()
    assert bar.right() <= view.width() and bar.top() > view.picker.geometry().top()
    view.resize(900, 500)
    pixels(view)
    assert view._mode_bar.geometry().top() == pytest.approx(view.picker.geometry().top(), abs=4)


# ---- spectrum ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [1, 4, 8])
def test_spectrum_shows_exactly_r_values(qtbot, rank):
    view = make(qtbot, "spectrum")
    view.update_snapshot(sf.lora_snapshot(100, rank=rank))
    assert view.spectrum_values().size == rank
    x, y = view.curve.getData()
    assert len(x) == rank and list(x) == list(range(1, rank + 1))
    assert f"of r = {rank}" in view.ranks_text()
    assert view.waterfall_shape()[1] == rank
    assert view.waterfall_shape()[0] == len(sf.lora_snapshot(100, rank=rank).history.spectrum_steps)


def test_spectrum_rank_label_reads_r_equals_rank_on_the_first_frame(qtbot):
    view = make(qtbot, "spectrum")
    view.update_snapshot(sf.lora_snapshot(100, rank=8))
    assert view.rank_line.isVisible()
    assert view.rank_line.label.toPlainText() == "r = 8"
    view.update_snapshot(sf.lora_snapshot(120, rank=4, segment=1))
    assert view.rank_line.label.toPlainText() == "r = 4"


def _left_labels(view) -> list[str]:
    pixels(view)
    axis = view.plot.getAxis("left")
    lo, hi = axis.range
    levels = axis.tickValues(lo, hi, axis.height())
    shown = levels[: axis.style["maxTextLevel"] + 1]
    return [t for _, values in shown for t in axis.tickStrings(values, 1.0, None)]


def test_spectrum_log_axis_labels_few_round_values(qtbot):
    from explorer.gui.views.spectrum_view import log_ticks

    view = make(qtbot, "spectrum", 560, 420)
    view.update_snapshot(sf.lora_snapshot(200, rank=8))  # less than a decade of values
    labels = _left_labels(view)
    assert 2 <= len(labels) <= 5, labels  # not 0.2 0.3 0.4 0.5 0.6 0.7 0.8
    assert all(float(t) * 10 ** -np.floor(np.log10(float(t))) in (1, 2, 3, 5) for t in labels)
    labelled, minor = log_ticks(-6.0, 1.0, 5)  # seven decades: powers of ten
    assert len(labelled) <= 5 and all(v == int(v) for v in labelled) and not minor
    labelled, _ = log_ticks(np.log10(0.75), np.log10(0.86), 4)  # a sliver: round linear values
    assert [round(10**v, 3) for v in labelled] == [0.75, 0.8, 0.85]


def test_spectrum_legend_sits_above_the_plot_and_a_short_view_drops_the_waterfall(qtbot):
    view = sized(qtbot, "spectrum", 560, 460)
    view.update_snapshot(sf.lora_snapshot(100, rank=8))
    pixels(view)
    legend, plot = in_widget(view.legend, view.glw), in_widget(view.plot.vb, view.glw)
    assert legend.bottom() <= plot.top() + 1  # never over the curves
    assert view.has_waterfall() and view.waterfall_plot.isVisible()
    view.resize(560, 300)  # too short for both plots
    pixels(view)
    assert not view.has_waterfall() and not view.waterfall_plot.isVisible()
    plot = in_widget(view.plot.vb, view.glw)
    assert plot.height() >= 100  # the spectrum keeps the room
    assert view.plot.getAxis("bottom").style["showValues"]  # and gets the index axis
    assert "waterfall" not in view.caption.text()
    view.set_theme(dark=False)  # restyled while it is dropped
    view.resize(560, 520)  # tall again: back, aligned
    pixels(view)
    assert view.has_waterfall()
    plot, waterfall = in_widget(view.plot.vb, view.glw), in_widget(view.waterfall_plot.vb, view.glw)
    assert waterfall.left() == pytest.approx(plot.left(), abs=1) and waterfall.right() == pytest.approx(
        plot.right(), abs=1
    )


def test_gate_colours_stay_readable_on_a_light_background(qtbot):
    view = make(qtbot, "gates")
    view.update_snapshot(sf.prefix_snapshot(100, layers=(4, 5, 6, 7), heads=2))
    view.set_theme(dark=False)
    for curve in view._curves:
        assert curve.opts["pen"].color().lightness() < 200  # no pale yellow on white
    assert len({c.opts["pen"].color().name() for c in view._curves}) == 4


def test_spectrum_of_full_fine_tuning_is_full_and_has_no_rank_line(qtbot):
    view = make(qtbot, "spectrum")
    view.update_snapshot(sf.full_snapshot(60))
    assert view.spectrum_values().size == 32
    assert not view.rank_line.isVisible()


def test_spectrum_overlays_the_target_and_reports_ranks(qtbot):
    view = make(qtbot, "spectrum")
    snap = sf.matrix_snapshot(80, rank=2, target_rank=4)
    view.update_snapshot(snap)
    assert view.spectrum_values().size == 2
    tx, ty = view.target_curve.getData()
    assert len(tx) == 4 and view.target_curve.isVisible()
    m = snap.matrices["W"]
    assert f"{m.effective_rank:.2f}" in view.ranks_text() and f"{m.stable_rank:.2f}" in view.ranks_text()
    ex, ey = view.energy_curve.getData()
    assert ey[-1] == pytest.approx(1.0) and np.all(np.diff(ey) >= 0)


def test_spectrum_at_step_zero_says_all_values_are_zero(qtbot):
    view = make(qtbot, "spectrum")
    view.update_snapshot(sf.lora_snapshot(0, rank=4))
    assert view.spectrum_values().size == 0
    assert "all 4 singular values are 0" in view.ranks_text()


def test_spectrum_follows_the_heatmap_selection(qtbot):
    delta, spectrum = make(qtbot, "delta"), make(qtbot, "spectrum")
    delta.matrixChanged.connect(spectrum.set_matrix)
    snap = sf.lora_snapshot(50)
    delta.update_snapshot(snap)
    spectrum.update_snapshot(snap)
    delta.set_matrix("model.layers.1.self_attn.q_proj")
    assert spectrum.current_matrix() == "model.layers.1.self_attn.q_proj"
    np.testing.assert_allclose(spectrum.spectrum_values(), snap.matrices["model.layers.1.self_attn.q_proj"].spectrum)


# ---- attention -----------------------------------------------------------------------------------


def _click(qtbot, glw, item, point: QtCore.QPointF) -> None:
    pixels(glw)  # lay out and paint first: positions are final
    pos = glw.mapFromScene(item.mapToScene(point))
    qtbot.mouseMove(glw.viewport(), pos)
    qtbot.mouseClick(glw.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)


def test_attention_grid_has_layers_by_heads_cells_and_enlarges_with_labels(qtbot):
    view = make(qtbot, "attention", 640, 480)
    tokens = ["The", " cat", " sat", " on", " the", " mat"]
    snap = sf.prefix_snapshot(80, layers=(5, 6, 7), heads=4, prompt_len=3, tokens=tokens)
    view.update_snapshot(snap)
    assert view.grid_shape() == (3, 4)
    assert view.layers() == [5, 6, 7]
    t, w = 6, 3 + 6
    assert view.grid_image.image.shape == (3 * (t + 1) - 1, 4 * (w + 1) - 1)
    lo, hi = view.levels()
    assert lo == -hi
    with qtbot.waitSignal(view.cellClicked) as sig:
        _click(qtbot, view.grid_glw, view.grid_image, view.cell_center(2, 1))
    assert sig.args == [2, 1]
    assert view.enlarged() == (2, 1)
    columns, rows = view.detail_labels()
    assert len(columns) == 3 + 6
    assert columns[:3] == ["P0", "P1", "P2"] and columns[3:] == ["The", "·cat", "·sat", "·on", "·the", "·mat"]
    assert rows == columns[3:]
    np.testing.assert_array_equal(view.detail_image.image, snap.prefixes[2].attention[1])
    assert view.detail_line.value() == 3  # the prompt | tokens separator
    assert "layer <b>7</b>" in view.detail_title.text() and "head <b>1</b>" in view.detail_title.text()
    enlarged = pixels(view.detail_glw)
    assert colours(enlarged) > 16
    view.next_button.click()
    assert view.enlarged() == (2, 2)
    qtbot.mouseClick(view.back_button, QtCore.Qt.MouseButton.LeftButton)
    assert view.enlarged() is None
    _click(qtbot, view.grid_glw, view.grid_image, QtCore.QPointF(w + 0.5, 1))  # a gap between cells
    assert view.enlarged() is None


def test_attention_prompt_columns_are_zero_at_step_zero(qtbot):
    view = make(qtbot, "attention")
    view.update_snapshot(sf.prefix_snapshot(0, prompt_len=4))
    n_layers, n_heads = view.grid_shape()
    assert (n_layers, n_heads) == (2, 4)
    view.enlarge(0, 0)
    att = view.detail_image.image
    assert not att[:, :4].any() and att[:, 4:].sum(axis=1) == pytest.approx(np.ones(att.shape[0]), abs=1e-5)


# ---- gates ---------------------------------------------------------------------------------------


def test_gate_curves_start_at_exactly_zero_one_per_layer_and_head(qtbot):
    view = make(qtbot, "gates")
    snap = sf.prefix_snapshot(150, layers=(4, 5, 6), heads=4)
    view.update_snapshot(snap)
    curves = view.curve_data()
    assert len(curves) == 3 * 4
    for (x, y), expected in zip(curves, snap.history.gates.reshape(len(snap.history.gate_steps), -1).T):
        assert x[0] == 0 and y[0] == 0.0
        np.testing.assert_allclose(y, expected)
    assert max(abs(y[-1]) for _, y in curves) > 0.1
    assert view.heatmap_shape() == (3, len(snap.history.gate_steps))
    np.testing.assert_allclose(view.heat.image, np.abs(snap.history.gates).mean(axis=2).T)
    # coloured by layer: one curve item per layer, each its own colour
    assert len({c.opts["pen"].color().name() for c in view._curves}) == 3


def test_per_layer_gates_draw_one_curve_per_layer(qtbot):
    view = make(qtbot, "gates")
    view.update_snapshot(sf.prefix_snapshot(60, layers=(6, 7), heads=4, gate_shape="layer"))
    assert len(view.curve_data()) == 2
    assert "one gate per layer" in view.caption.text()


def test_gates_layout_gives_the_curves_a_useful_share(qtbot):
    snap = sf.prefix_snapshot(200, layers=(4, 5, 6, 7), heads=4)
    view = sized(qtbot, "gates", 380, 600)  # a narrow dock: curves above the heatmap
    view.update_snapshot(snap)
    pixels(view)
    assert view.arrangement() == "stacked"
    curves, heat = in_widget(view.plot.vb, view.glw), in_widget(view.heat_plot.vb, view.glw)
    assert curves.width() >= 0.6 * view.width() and curves.height() >= 0.4 * view.height()
    assert curves.bottom() < heat.top()
    # one step axis for both: the curves span the heatmap's steps over the same pixels
    assert curves.left() == pytest.approx(heat.left(), abs=2) and curves.right() == pytest.approx(heat.right(), abs=2)
    assert view.plot.vb.viewRange()[0] == pytest.approx(view.heat_plot.vb.viewRange()[0])
    view.resize(900, 400)  # wide: side by side
    pixels(view)
    assert view.arrangement() == "side"
    curves, heat = in_widget(view.plot.vb, view.glw), in_widget(view.heat_plot.vb, view.glw)
    assert curves.width() >= 0.45 * view.width() and curves.height() >= 0.7 * view.height()
    assert curves.right() < heat.left()
    bar = in_widget(view.heat_bar.vb, view.glw)
    assert bar.top() == pytest.approx(heat.top(), abs=1) and bar.bottom() == pytest.approx(heat.bottom(), abs=1)


def test_gates_drawing_follows_its_dock_up_and_down(qtbot):
    """In a dock (a parent that resizes the view), the drawing fills the new size every time, the
    curves keep the larger share, and nothing holds the drawing at an earlier size."""
    dock = QtWidgets.QWidget()
    qtbot.addWidget(dock)
    lay = QtWidgets.QVBoxLayout(dock)
    view = VIEW_CLASSES["gates"]()
    lay.addWidget(view)
    view.set_theme(dark=True)  # styled before it is ever shown
    dock.resize(300, 420)
    dock.show()
    qtbot.waitExposed(dock)
    view.update_snapshot(sf.lora_prefix_snapshot(200))
    for w, h in ((300, 420), (300, 760), (300, 380), (380, 600)):
        dock.resize(w, h)
        pixels(dock)
        assert view.glw.ci.geometry().height() == pytest.approx(view.glw.viewport().height(), abs=1)
        curves, heat = in_widget(view.plot.vb, view.glw), in_widget(view.heat_plot.vb, view.glw)
        assert curves.height() > heat.height() > 20
    assert curves.height() >= 0.4 * view.height()


def test_gates_heatmap_labels_thin_out_and_many_layers_share_a_short_legend(qtbot):
    view = sized(qtbot, "gates", 380, 500)
    view.update_snapshot(sf.prefix_snapshot(100, layers=tuple(range(30)), heads=2))
    pixels(view)
    ticks = view.heat_plot.getAxis("left")._tickLevels[0]
    line = QtGui.QFontMetrics(view.style_.font()).height()
    assert len(ticks) < 30 and len(ticks) * line <= view.heat_plot.vb.height() * 1.1  # labels don't overlap
    assert [label for _, label in view.legend.items][0].text == "L0" and len(view.legend.items) == 2


# ---- loss ----------------------------------------------------------------------------------------


def _reference_ema(values, weight):
    last, out = 0.0, []
    for n, v in enumerate(values, start=1):
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight**n))
    return np.array(out)


def test_loss_smoothing_defaults_to_tensorboards_debiased_ema(qtbot):
    view = make(qtbot, "loss")
    snap = sf.lora_snapshot(300)
    view.update_snapshot(snap)
    assert view.smoothing() == 0.6 and view.slider.value() == 60
    x, y = view.smoothed_train()
    np.testing.assert_array_equal(x, snap.history.steps)
    np.testing.assert_allclose(y, _reference_ema(snap.history.loss.astype(np.float64), 0.6), rtol=1e-12)
    assert y[0] == pytest.approx(float(snap.history.loss[0]))  # debiased: the first point is the raw one
    rx, ry = view.train_raw.getData()
    assert len(ry) == len(y) and view.train_raw.isVisible()  # the raw curve stays, faint, behind
    with qtbot.waitSignal(view.smoothingChanged):
        view.slider.setValue(90)
    assert view.smoothing() == pytest.approx(0.9)
    np.testing.assert_allclose(view.smoothed_train()[1], _reference_ema(snap.history.loss.astype(np.float64), 0.9))
    view.set_smoothing(0.0)
    np.testing.assert_allclose(view.smoothed_train()[1], snap.history.loss)
    ex, ey = view.eval_curve.getData()
    assert len(ex) == len(snap.history.eval_steps)


def test_loss_log_axis_toggle(qtbot):
    view = make(qtbot, "loss")
    view.update_snapshot(sf.lora_snapshot(200))
    linear = pixels(view.glw)
    view.log_box.setChecked(True)
    assert view.log_y() and view.plot.getAxis("left").logMode
    assert changed_fraction(linear, pixels(view.glw)) > 0.01
    view.set_log_y(False)
    assert not view.log_box.isChecked() and not view.plot.getAxis("left").logMode


def test_loss_axes_carry_no_made_up_ticks_before_the_first_step(qtbot):
    view = make(qtbot, "loss")
    view.update_snapshot(sf.blank_snapshot())
    assert view.empty_text.isVisible() and not view.plot.getAxis("left").style["showValues"]
    view.update_snapshot(sf.lora_snapshot(50))
    assert not view.empty_text.isVisible() and view.plot.getAxis("left").style["showValues"]


def test_ema_edge_cases():
    assert ema_debiased([], 0.6).size == 0
    np.testing.assert_array_equal(ema_debiased([2.0, 2.0, 2.0], 0.6), [2.0, 2.0, 2.0])
    out = ema_debiased([1.0, np.nan, 3.0], 0.5)
    assert out[0] == 1.0 and np.isnan(out[1]) and out[2] == pytest.approx(_reference_ema([1.0, 3.0], 0.5)[1])
    np.testing.assert_array_equal(ema_debiased([1.0, 5.0], 0.0), [1.0, 5.0])


# ---- budget --------------------------------------------------------------------------------------


def test_budget_prices_the_setting_on_llama_presets(qtbot):
    view = make(qtbot, "budget")
    view.update_snapshot(sf.lora_snapshot(10, rank=8))
    values = view.values()
    assert values["trainable"] == "4,096"  # 2 layers x 2 targets x 8 x (64 + 64)
    assert values["storage"] == "8.2 kB"
    rows = {r[0]: r for r in view.preset_rows()}
    assert rows["LLaMA-7B"][1] == "4,194,304" and rows["LLaMA-7B"][3] == "8.4 MB"
    assert set(rows) == {"LLaMA-7B", "LLaMA-13B", "LLaMA-2-70B"}
    view.update_snapshot(sf.prefix_snapshot(10, prompt_len=10, layers=tuple(range(30)), heads=4, segment=1))
    rows = {r[0]: r for r in view.preset_rows()}
    assert rows["LLaMA-7B"][1] == "1,229,760"  # K=10 on the top L=30 layers, per-head gates


def test_budget_without_presets_or_keys(qtbot):
    view = make(qtbot, "budget")
    snap = sf.lora_snapshot(10, rank=16)
    snap.budget = {k: v for k, v in snap.budget.items() if k != "presets"}  # as the engine may send it
    view.update_snapshot(snap)
    rows = {r[0]: r for r in view.preset_rows()}
    assert rows["LLaMA-7B"][1] == "8,388,608"  # priced from the snapshot's settings
    snap = sf.lora_snapshot(11)
    snap.budget = {"trainable_params": 123456}
    view.update_snapshot(snap)
    assert view.values()["trainable"] == "123,456" and view.values()["optimizer"] == "–"
    view.update_snapshot(sf.blank_snapshot())
    assert "budget" in view.message()


def test_budget_fits_a_narrow_dock_without_scrolling_sideways(qtbot):
    view = sized(qtbot, "budget", 380, 420)
    view.update_snapshot(sf.lora_prefix_snapshot(100))
    pixels(view)
    viewport = view.scroll.viewport()
    assert not view.scroll.horizontalScrollBar().isVisible()
    assert view.scroll.widget().width() <= viewport.width()
    assert view.scroll.widget().minimumSizeHint().width() <= viewport.width()
    for row in view._table_labels:  # every table cell shows whole
        for label in row:
            if label.isVisibleTo(view):
                assert label.geometry().right() <= viewport.width()
                assert label.width() >= label.fontMetrics().horizontalAdvance(label.text())
    assert view.card_columns() == 2
    assert view.preset_cells()[0][:2] == ["Model", "Params"]  # short headers
    assert view.preset_rows()[0][1] == "2,129,984"  # the full count stays in the data
    view.resize(1000, 420)  # wide: four cards, full numbers
    pixels(view)
    assert view.card_columns() == 4 and view.table_form() == 0
    assert view.preset_cells()[1][1] == "2,129,984"


def test_budget_in_talk_mode_still_never_scrolls_sideways(qtbot):
    view = sized(qtbot, "budget", 380, 420)
    view.set_talk_mode(1.5, True)
    view.update_snapshot(sf.lora_prefix_snapshot(100))
    pixels(view)
    assert view.scroll.widget().minimumSizeHint().width() <= view.scroll.viewport().width()
    assert view.table_form() > 0


# ---- samples -------------------------------------------------------------------------------------


def test_samples_side_by_side_with_the_prompt_highlighted(qtbot):
    view = make(qtbot, "samples")
    snap = sf.lora_snapshot(40)
    view.update_snapshot(snap)
    adapted, base = view.texts()
    assert adapted == snap.samples["adapted"] and base == snap.samples["base"]
    assert view.sample_step() == 40
    doc = view.adapted.text.document()
    cursor = QtGui.QTextCursor(doc)
    cursor.setPosition(1)
    assert cursor.charFormat().background().color().alpha() > 0  # the prompt is highlighted
    cursor.setPosition(len(snap.samples["prompt"]) + 3)
    assert cursor.charFormat().background().style() == QtCore.Qt.BrushStyle.NoBrush
    assert view.adapted.text.font().fixedPitch()  # monospace
    count = view.draw_count
    later = sf.lora_snapshot(41)
    later.samples = dict(snap.samples)  # same samples riding along: no redraw
    view.update_snapshot(later)
    assert view.draw_count == count
    view.update_snapshot(sf.lora_snapshot(90))
    assert view.draw_count == count + 1 and view.sample_step() == 90


def test_samples_accept_continuations_without_the_prompt(qtbot):
    view = make(qtbot, "samples")
    snap = sf.lora_snapshot(40)
    snap.samples = {"prompt": "# review:", "adapted": " use is None", "base": "xx", "step": 40}
    view.update_snapshot(snap)
    assert view.texts() == ("# review: use is None", "# review: xx")
    view.update_snapshot(sf.matrix_snapshot(10))
    assert "matrix scenario" in view.message()


REVIEW_SAMPLE = (
    "# review: nit: `index` says more than `i`\n--- a/nntplib.py\n+++ b/nntplib.py\n"
    "@@ -213,5 +213,5 @@ def _parse_overview(lines, fmt):\n"
    "         article_number = int(article_number)\n"
    "-        for i, token in enumerate(tokens):\n"
    "+        for index, token in enumerate(tokens):\n"
    "             if index >= len(fmt):"
)


def _line_format(view, line_no: int) -> tuple[QtGui.QColor, QtGui.QColor]:
    """(text colour, line tint; transparent for none) of a line of the adapted text."""
    block = view.adapted.text.document().findBlockByNumber(line_no)
    cursor = QtGui.QTextCursor(block)
    cursor.movePosition(QtGui.QTextCursor.MoveOperation.Right)
    tint = block.blockFormat().background()
    none = tint.style() == QtCore.Qt.BrushStyle.NoBrush
    return cursor.charFormat().foreground().color(), QtGui.QColor(0, 0, 0, 0) if none else tint.color()


def test_samples_read_like_a_code_review(qtbot):
    view = sized(qtbot, "samples", 380, 300)
    snap = sf.lora_prefix_snapshot(240)
    snap.samples = {
        "prompt": "# review:",
        "adapted": REVIEW_SAMPLE,
        "step": 240,
        "base": "# review:\n        else:\n            break",
    }
    view.update_snapshot(snap)
    text = view.adapted.text
    assert text.lineWrapMode() == QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth
    assert text.font().fixedPitch() and text.font().pointSizeF() >= 11
    assert view.texts()[0] == REVIEW_SAMPLE  # whitespace kept as it is
    lines = REVIEW_SAMPLE.split("\n")
    added, removed, hunk, review = (
        lines.index(next(line for line in lines if line.startswith(p))) for p in ("+ ", "-  ", "@@", "# review")
    )
    fg, tint = _line_format(view, added)
    assert fg.green() > fg.red() + 60 and tint.alpha() > 0 and tint.green() > tint.red()  # + green
    fg, tint = _line_format(view, removed)
    assert fg.red() > fg.green() + 60 and tint.alpha() > 0 and tint.red() > tint.green()  # - red
    fg, _ = _line_format(view, hunk)
    assert fg.blue() > fg.red() + 60 and fg.green() > fg.red() + 60  # @@ cyan
    _, tint = _line_format(view, review)
    assert tint.alpha() > 0  # highlighted
    fg, tint = _line_format(view, lines.index("--- a/nntplib.py"))
    assert tint.alpha() == 0 and not (fg.red() > fg.green() + 60)  # a file header is not a removed line
    # long lines wrap at the column's edge (nothing hides off to the side); the columns scroll together
    pixels(view)
    assert text.horizontalScrollBar().maximum() == 0
    longest = max(len(line) for line in lines)
    wrapped = text.document().documentLayout().documentSize().height()
    assert longest * QtGui.QFontMetricsF(text.font()).horizontalAdvance("x") > text.viewport().width()
    assert wrapped > len(lines)  # more visual lines than text lines: the long ones wrapped
    text.verticalScrollBar().setValue(1)
    assert view.base.text.verticalScrollBar().value() == min(1, view.base.text.verticalScrollBar().maximum())
    assert "step <b>240</b>" in view.step_label.text()
    assert view.header.text() == "continuing the marked prompt" and "# review:" in view.header.toolTip()
    assert not view.identical()


def test_samples_columns_line_up_side_by_side_or_stacked(qtbot):
    view = sized(qtbot, "samples", 1000, 300)
    snap = sf.lora_prefix_snapshot(240)
    snap.samples = {"prompt": "# review:", "adapted": REVIEW_SAMPLE, "base": REVIEW_SAMPLE, "step": 240}
    view.update_snapshot(snap)
    pixels(view)
    a, b = view.adapted.text, view.base.text
    pos_a, pos_b = a.mapTo(view, QtCore.QPoint(0, 0)), b.mapTo(view, QtCore.QPoint(0, 0))
    assert view.orientation() == QtCore.Qt.Orientation.Horizontal
    assert pos_a.y() == pos_b.y() and a.height() == b.height()  # line n beside line n
    assert a.width() == pytest.approx(b.width(), abs=2)
    view.resize(380, 420)  # too narrow for two columns of code
    pixels(view)
    pos_a, pos_b = a.mapTo(view, QtCore.QPoint(0, 0)), b.mapTo(view, QtCore.QPoint(0, 0))
    assert view.orientation() == QtCore.Qt.Orientation.Vertical
    assert pos_a.x() == pos_b.x() and a.width() == b.width() and pos_a.y() < pos_b.y()
    assert a.width() > 0.9 * view.width()


def test_samples_say_no_change_yet_only_while_the_texts_are_identical(qtbot):
    view = make(qtbot, "samples")
    snap = sf.lora_prefix_snapshot(10)
    snap.samples = {"prompt": "# review:", "adapted": "# review: x", "base": "# review: x", "step": 10}
    view.update_snapshot(snap)
    assert view.identical() and view.same_hint.isVisible() and "no change yet" in view.same_hint.text()
    later = sf.lora_prefix_snapshot(50)
    later.samples = {"prompt": "# review:", "adapted": "# review: y", "base": "# review: x", "step": 50}
    view.update_snapshot(later)
    assert not view.identical() and not view.same_hint.isVisible()
    view.set_theme(dark=False)  # light theme: still coloured, redrawn
    assert view.texts()[0] == "# review: y"


def test_samples_say_how_old_they_are_and_can_be_asked_for(qtbot):
    view = make(qtbot, "samples")
    snap = sf.lora_snapshot(40)
    view.update_snapshot(snap)
    assert view.age() == "new" and view.sample_button.isEnabled()
    later = sf.lora_snapshot(80)
    later.samples = dict(snap.samples)  # the samples of step 40 riding along at step 80
    count = view.draw_count
    view.update_snapshot(later)
    assert view.age() == "40 steps old" and view.draw_count == count  # the label moves, the text is not redrawn
    with qtbot.waitSignal(view.sample_requested, timeout=1000):
        qtbot.mouseClick(view.sample_button, QtCore.Qt.MouseButton.LeftButton)
    replayed = sf.lora_snapshot(90)
    replayed.state = "replay"
    view.update_snapshot(replayed)
    assert not view.sample_button.isEnabled()  # a replay shows what was recorded
    view.update_snapshot(sf.matrix_snapshot(10))
    assert not view.sample_button.isEnabled() and view.age() == ""


def test_samples_colours_follow_the_theme(qtbot):
    view = make(qtbot, "samples")
    snap = sf.lora_prefix_snapshot(240)
    snap.samples = {"prompt": "# review:", "adapted": REVIEW_SAMPLE, "base": "# review:", "step": 240}
    view.update_snapshot(snap)
    added = next(i for i, line in enumerate(REVIEW_SAMPLE.split("\n")) if line.startswith("+ "))
    dark = _line_format(view, added)[0]
    view.set_theme(dark=False)
    light = _line_format(view, added)[0]
    assert light.lightness() < dark.lightness()  # dark green on white, light on black


# ---- colour bars ---------------------------------------------------------------------------------


@pytest.mark.parametrize("talk", [False, True])
def test_attention_colour_bar_end_labels_are_not_clipped(qtbot, talk):
    view = sized(qtbot, "attention", 560, 420)
    if talk:
        view.set_talk_mode(1.5, True)
    view.update_snapshot(sf.prefix_snapshot(80))
    pixels(view)
    for glw, plot, bar in ((view.grid_glw, view.grid_plot, view.grid_bar),):
        gradient, image = in_widget(bar.vb, glw), in_widget(plot.vb, glw)
        half_line = QtGui.QFontMetrics(bar.axis.style["tickFont"]).height() / 2
        assert gradient.top() - half_line >= 0  # the top label ("1") is whole
        assert gradient.bottom() + half_line <= glw.height()  # and so is the bottom one ("-1")
        assert gradient.top() == pytest.approx(image.top(), abs=1)  # the bar spans the maps, no more
        assert gradient.bottom() == pytest.approx(image.bottom(), abs=1)
    view.enlarge(0, 0)
    pixels(view)
    gradient = in_widget(view.detail_bar.vb, view.detail_glw)
    half_line = QtGui.QFontMetrics(view.detail_bar.axis.style["tickFont"]).height() / 2
    assert gradient.top() - half_line >= 0 and gradient.bottom() + half_line <= view.detail_glw.height()


# ---- colour maps ---------------------------------------------------------------------------------


def test_colormaps_are_256_entry_luts_centred_on_white():
    for name in colormaps.diverging_names():
        lut = colormaps.lut(name)
        assert lut.shape == (256, 4) and lut.dtype == np.uint8 and not lut.flags.writeable
        assert lut[127:129, :3].min() > 225  # zero is (nearly) white
        assert np.abs(lut[0, :3].astype(int) - lut[-1, :3].astype(int)).sum() > 100  # ends differ
    assert colormaps.lut("viridis").shape == (256, 4)
    assert colormaps.diverging_for(True) == "PuOr" and colormaps.sequential_for(True) == "cividis"


def test_symmetric_levels_jump_up_and_fall_slowly():
    levels = colormaps.SymmetricLevels(decay=0.8)
    assert levels.update(np.array([[0.0]])) == (-1e-12, 1e-12)
    assert levels.update(np.array([[-2.0, 1.0]])) == (-2.0, 2.0)
    lo, hi = levels.update(np.array([[0.5]]))
    assert lo == -hi and hi == pytest.approx(0.8 * 2 + 0.2 * 0.5)
    levels.hold = True
    assert levels.update(np.array([[0.1]]))[1] == pytest.approx(hi)
    assert levels.update(np.array([[np.nan, 3.0]])) == (-3.0, 3.0)
    assert levels.update(np.array([[np.inf, 4.0]])) == (-4.0, 4.0)  # inf does not blow the scale up
    levels.reset()
    assert levels.update(np.array([[0.25]])) == (-0.25, 0.25)
    assert colormaps.MaxLevels().update(np.array([[-4.0]])) == (0.0, 4.0)


# ---- tokens --------------------------------------------------------------------------------------


def test_tokens_are_unchanged_at_step_zero_and_coloured_once_trained(qtbot):
    view = make(qtbot, "tokens", 640, 360)
    view.update_snapshot(sf.lora_snapshot(0))
    assert view.message() == "" and view.text() == sf.TOKEN_TEXT
    assert np.all(view.deltas() == 0)
    canvas = pixels(view.canvas)
    assert colours(canvas) > 2  # the text is there (ink on paper) ...
    assert "no change yet" in view.summary.text()
    paper = colormaps.lut(colormaps.DIVERGING)[128][:3]
    cells = view.canvas.cells
    for rect, i in cells[1:]:  # ... and every token sits on the neutral centre colour: unchanged
        x, y = int(rect.left()) + 1, int(rect.top()) + 1
        assert np.abs(canvas[y, x].astype(int) - paper.astype(int)).max() <= 2, (i, canvas[y, x])
    view.update_snapshot(sf.lora_snapshot(200))
    trained = pixels(view.canvas)
    assert changed_fraction(canvas, trained) > 0.05 and colours(trained) > 16
    delta = view.deltas()[1:]
    more = next(i for i, d in enumerate(delta, 1) if d > 0.5)
    less = next(i for i, d in enumerate(delta, 1) if d < -0.2)
    warm, cool = (
        trained[int(view.canvas.cells[i][0].top()) + 1, int(view.canvas.cells[i][0].left()) + 1] for i in (more, less)
    )
    warm, cool = warm.astype(int), cool.astype(int)  # pixels() gives B, G, R
    assert warm[2] > warm[0] + 40 and cool[0] > cool[2] + 20  # more likely: red; less likely: blue
    assert view.scale() == pytest.approx(np.quantile(np.abs(delta), 0.95))  # symmetric: ±95th percentile of |Δ|
    assert view.legend.clipped == bool(np.abs(delta).max() > view.scale())
    assert "more likely" in view.summary.text() and "step <b>200</b>" in view.step_label.text()


def test_tokens_legend_is_symmetric_and_centred_on_zero(qtbot):
    view = make(qtbot, "tokens", 640, 360)
    view.update_snapshot(sf.lora_snapshot(200))
    legend = pixels(view.legend)
    assert colours(legend) > 32  # a gradient with its labels
    bar = view.legend.bar_rect()
    row = legend[int(bar.center().y())].astype(int)  # through the bar
    left, right = int(bar.left()) + 2, int(bar.right()) - 2
    mid = row[int(bar.center().x())]
    assert np.abs(mid - colormaps.lut(colormaps.DIVERGING)[128][:3].astype(int)).max() < 30  # 0 in the middle
    assert row[left][0] > row[left][2] + 60 and row[right][2] > row[right][0] + 60  # (B, G, R): blue ... red
    assert view.legend.m == pytest.approx(view.scale())


def test_tokens_fit_the_view_and_say_when_there_is_nothing(qtbot):
    view = make(qtbot, "tokens", 300, 200)
    view.update_snapshot(sf.lora_snapshot(100))
    bottom = max(rect.bottom() for rect, _ in view.canvas.cells)
    assert bottom <= view.canvas.height() and max(r.right() for r, _ in view.canvas.cells) <= view.canvas.width()
    view.update_snapshot(sf.matrix_snapshot(10))
    assert "matrix scenario" in view.message()
