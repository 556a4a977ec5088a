"""The attention grid's Layers / Heads picker: what the text means, what a bad text does, and that the
grid shows (and enlarges) exactly the chosen maps, through new snapshots."""

from __future__ import annotations

import numpy as np
import pytest
import snapshot_factory as sf
from PySide6 import QtCore

from explorer.gui.views.attention_view import GAP, AttentionView
from explorer.schema.attention_choice import MAX_SHOWN, parse_choice
from explorer.schema.format import format_ranges


def test_parse_choice_reads_lists_ranges_all_and_empty():
    layers = range(2, 32)
    assert parse_choice("", layers, "Layers") is None
    assert parse_choice("  ", layers, "Layers") is None
    assert parse_choice("24-31", layers, "Layers") == tuple(range(24, 32))
    assert parse_choice("2-3, 30,31", layers, "Layers") == (2, 3, 30, 31)
    assert parse_choice("30–31 5", layers, "Layers") == (5, 30, 31)  # an en dash, spaces
    assert parse_choice("all", range(4), "Heads") == (0, 1, 2, 3)
    assert format_ranges((0, 1, 2, 3, 30, 31)) == "0–3, 30–31"
    assert format_ranges((7,)) == "7"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1", "Layers: 1 is not here (there are 2–31)"),
        ("0-3", "Layers: 0 is not here"),
        ("x", "is not a number or a range"),
        ("3-", "is not a number or a range"),
        ("9-4", "runs backwards"),
        ("all", f"at most {MAX_SHOWN}"),
        ("2-31", "30 at once is too many"),
        ("99999999999", "is not a number or a range"),
    ],
)
def test_parse_choice_refuses_with_one_line(text, words):
    with pytest.raises(ValueError) as info:
        parse_choice(text, range(2, 32), "Layers")
    message = str(info.value)
    assert words in message and "\n" not in message


def _click(qtbot, glw, item, point: QtCore.QPointF) -> None:
    glw.grab()  # lay out and paint first: positions are final
    pos = glw.mapFromScene(item.mapToScene(point))
    qtbot.mouseMove(glw.viewport(), pos)
    qtbot.mouseClick(glw.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)


def _view(qtbot, w=900, h=700) -> AttentionView:
    view = AttentionView()
    qtbot.addWidget(view)
    view.resize(w, h)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_default_on_a_7b_shape_is_the_deepest_8_layers_by_the_first_8_heads(qtbot):
    view = _view(qtbot)
    snap = sf.scale_snapshot("llama-7b", prefix_layers=30)
    view.update_snapshot(snap)
    assert view.available_shape() == (30, 32)
    assert view.grid_shape() == (8, 8)
    assert view.layers() == list(range(24, 32)) and view.heads() == list(range(8))
    caption = view.grid_caption.text()
    assert "layers 24–31 (8 of 30 prefix layers) × heads 0–7 (8 of 32)" in caption
    t, w = 64, 10 + 64
    assert view.grid_image.image.shape == (8 * (t + GAP) - GAP, 8 * (w + GAP) - GAP)
    # the mosaic holds exactly the chosen maps: layer 31 is the last prefix row, head 7 its 8th column
    top = view.grid_image.image[7 * (t + GAP) : 7 * (t + GAP) + t, 7 * (w + GAP) : 7 * (w + GAP) + w]
    np.testing.assert_array_equal(top, snap.prefixes[29].attention[7])


def test_chosen_layers_and_heads_are_shown_survive_snapshots_and_enlarge_the_right_map(qtbot):
    view = _view(qtbot)
    view.update_snapshot(sf.scale_snapshot("llama-7b", step=10, prefix_layers=30))
    assert view.choose("2-3,30,31", "0,5,31") == ""
    assert view.layers() == [2, 3, 30, 31] and view.heads() == [0, 5, 31]
    assert "layers 2–3, 30–31 (4 of 30 prefix layers) × heads 0, 5, 31 (3 of 32)" in view.grid_caption.text()
    later = sf.scale_snapshot("llama-7b", step=50, prefix_layers=30, seed=1)
    view.update_snapshot(later)
    assert view.layers() == [2, 3, 30, 31] and view.heads() == [0, 5, 31]
    assert view.picker.layers_edit.text() == "2-3,30-31" and view.picker.heads_edit.text() == "0,5,31"
    # a click on the cell of layer 30 (prefix row 28), head 31 enlarges that map
    with qtbot.waitSignal(view.cellClicked) as sig:
        _click(qtbot, view.grid_glw, view.grid_image, view.cell_center(28, 31))
    assert sig.args == [28, 31]
    assert view.enlarged() == (28, 31)
    np.testing.assert_array_equal(view.detail_image.image, later.prefixes[28].attention[31])
    assert "layer <b>30</b>" in view.detail_title.text() and "head <b>31</b>" in view.detail_title.text()
    view.next_button.click()  # the next shown map: layer 31, head 0
    assert view.enlarged() == (29, 0)
    view.prev_button.click()
    assert view.enlarged() == (28, 31)


def test_bad_text_says_one_line_and_keeps_the_previous_selection(qtbot):
    view = _view(qtbot)
    view.update_snapshot(sf.scale_snapshot("llama-7b", prefix_layers=30))
    assert view.choose("28-31", "0-3") == ""
    drawn = view.draw_count
    error = view.choose("0-3", None)  # layers 0 and 1 carry no prefix
    assert error.startswith("Layers: 0 is not here") and "\n" not in error
    assert view.picker.error_label.text() == error and view.picker.error_label.isVisible()
    assert view.layers() == [28, 29, 30, 31] and view.heads() == [0, 1, 2, 3]
    assert view.picker.layers_edit.text() == "28-31"  # the field shows what is shown again
    assert view.draw_count == drawn  # nothing redrawn
    assert "at most 16" in view.choose(None, "all")
    assert view.heads() == [0, 1, 2, 3]
    assert view.choose("", "") == ""  # empty: the default again, and the message goes
    assert view.picker.error_label.text() == ""
    assert view.layers() == list(range(24, 32)) and view.heads() == list(range(8))


def test_selection_follows_the_prefix_layers_that_exist(qtbot):
    view = _view(qtbot)
    view.update_snapshot(sf.scale_snapshot("llama-7b", prefix_layers=30))
    view.choose("2-3,31", "30-31")
    # fewer prefix layers in a new segment: the chosen ones still there stay, the others go
    view.update_snapshot(sf.scale_snapshot("llama-7b", prefix_layers=4))
    assert view.layers() == [31] and view.heads() == [30, 31]
    # a small model: none of the chosen layers or heads exists, so the defaults show
    view.update_snapshot(sf.prefix_snapshot(20, layers=(6, 7), heads=4))
    assert view.layers() == [6, 7] and view.heads() == [0, 1, 2, 3]
    # back on the big one, the choice applies again
    view.update_snapshot(sf.scale_snapshot("llama-7b", prefix_layers=30))
    assert view.layers() == [2, 3, 31] and view.heads() == [30, 31]


def test_typing_in_a_field_is_not_overwritten_by_a_snapshot(qtbot):
    view = _view(qtbot)
    view.update_snapshot(sf.scale_snapshot("llama-7b", prefix_layers=30))
    view.picker.layers_edit.setFocus()
    qtbot.waitUntil(view.picker.layers_edit.hasFocus)
    qtbot.keyClicks(view.picker.layers_edit, "30")
    view.update_snapshot(sf.scale_snapshot("llama-7b", step=60, prefix_layers=30))
    assert view.picker.layers_edit.text() == "30"
    qtbot.keyClick(view.picker.layers_edit, QtCore.Qt.Key.Key_Return)
    assert view.layers() == [30]


def test_a_70b_shape_draws_only_the_chosen_maps(qtbot):
    view = _view(qtbot)
    snap = sf.scale_snapshot("llama-2-70b", prefix_layers=80, probe_len=32)
    view.update_snapshot(snap)
    assert view.available_shape() == (80, 64)
    assert view.grid_shape() == (8, 8) and view.layers() == list(range(72, 80))
    assert view.choose("0-15", "48-63") == ""
    assert view.grid_shape() == (16, 16) and view.layers() == list(range(16)) and view.heads() == list(range(48, 64))
    assert "(16 of 80 prefix layers) × heads 48–63 (16 of 64)" in view.grid_caption.text()
    view.enlarge(79, 63)
    np.testing.assert_array_equal(view.detail_image.image, snap.prefixes[79].attention[63])


# ---- with the engine: it sends the chosen maps only ---------------------------------------------


def test_a_choice_is_asked_of_the_engine_and_drawn_when_its_maps_come(qtbot):
    view = _view(qtbot)
    full = sf.scale_snapshot("llama-7b", step=30, prefix_layers=30)
    view.update_snapshot(sf.as_sent(full))  # the default the engine sends: layers 24-31 x heads 0-7
    assert view.grid_shape() == (8, 8) and "on the way" not in view.grid_caption.text()
    assert np.isfinite(view.grid_image.image).sum() == 64 * 64 * 74  # every cell drawn
    with qtbot.waitSignal(view.attentionChosen) as sig:
        assert view.choose("2-3", "0,31") == ""
    assert sig.args == [(2, 3), (0, 31)]
    # until the engine's next snapshot the chosen maps it has not sent are empty cells, said so
    assert view.layers() == [2, 3] and view.heads() == [0, 31]
    assert np.isnan(view.grid_image.image).all()
    assert "4 chosen maps on the way" in view.grid_caption.text()
    with pytest.raises(IndexError, match="carries no map"):
        view.enlarge(0, 31)
    _click(qtbot, view.grid_glw, view.grid_image, view.cell_center(0, 0))
    assert view.enlarged() is None  # an empty cell does not open
    later = sf.as_sent(sf.scale_snapshot("llama-7b", step=40, prefix_layers=30), (2, 3), (0, 31))
    view.update_snapshot(later)
    assert view.layers() == [2, 3] and view.heads() == [0, 31]
    assert "on the way" not in view.grid_caption.text()
    t, w = 64, 74
    np.testing.assert_array_equal(view.grid_image.image[:t, w + 1 :], later.prefixes[0].attention[1])
    view.enlarge(1, 31)
    np.testing.assert_array_equal(view.detail_image.image, later.prefixes[1].attention[1])


def test_the_picker_takes_the_choice_the_runs_settings_name(qtbot):
    view = _view(qtbot)
    full = sf.scale_snapshot("llama-7b", prefix_layers=30)
    view.update_snapshot(sf.as_sent(full, (30, 31), (4, 5)))  # e.g. saved with the settings last time
    assert view.layers() == [30, 31] and view.heads() == [4, 5]
    assert view.picker.layers_edit.text() == "30-31" and view.picker.heads_edit.text() == "4-5"
    view.update_snapshot(sf.as_sent(full, None, None))  # chosen back to the default elsewhere
    assert view.layers() == list(range(24, 32)) and view.picker.layers_edit.text() == ""


def test_a_replay_says_which_maps_its_recording_holds(qtbot):
    view = _view(qtbot)
    recorded = sf.as_sent(sf.scale_snapshot("llama-7b", prefix_layers=30))
    recorded.state = "replay"
    view.update_snapshot(recorded)
    view.choose("2,31", "0,9")
    caption = view.grid_caption.text()
    assert "3 chosen maps not recorded (the recording holds layers 24–31 × heads 0–7)" in caption
    np.testing.assert_array_equal(view.grid_image.image[65 : 65 + 64, :74], recorded.prefixes[29].attention[0])


def test_the_window_asks_its_engine_for_the_chosen_heads(qtbot, make_window):
    """The real engine on the tiny model (2 layers x 4 heads): the view's choice becomes the run's
    settings (kept with the others) and the next snapshots carry those maps only."""
    from engine_helpers import tiny_lm

    win = make_window(tiny_lm(method="prefix", prefix_layers=2), size=(1400, 900))
    view = win.views["attention"]
    qtbot.waitUntil(lambda: view.snapshot is not None and view.grid_shape() == (2, 4), timeout=30_000)
    assert view.choose("1", "1,3") == ""
    qtbot.waitUntil(lambda: win.settings.attention_heads == (1, 3), timeout=30_000)
    assert win.settings.attention_layers == (1,)
    assert win.store.load_settings().attention_heads == (1, 3)  # saved with the settings
    qtbot.waitUntil(
        lambda: [list(p.heads) if p.heads is not None else None for p in win.last_snapshot.prefixes] == [None, [1, 3]],
        timeout=30_000,
    )
    qtbot.waitUntil(lambda: view.snapshot is win.last_snapshot, timeout=30_000)
    assert view.layers() == [1] and view.heads() == [1, 3] and "on the way" not in view.grid_caption.text()
