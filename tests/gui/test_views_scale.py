"""The window's views on real model shapes, without training one: synthetic snapshots of a LLaMA-7B run
(32 layers x 32 heads, MLP 11008 columns), a Llama-3-8B one (MLP 14336) and a Llama-2-70B one (80 x 64,
MLP 28672; snapshot_factory.scale_snapshot), handed to the window as a worker would hand them.

The ΔW and spectrum pickers reach every layer and module, the controls' layer fields reach layer 79,
the budget view shows the model's counts, the attention grid the chosen subset, and no view fails."""

from __future__ import annotations

import numpy as np
import pytest
import snapshot_factory as sf

from explorer.gui.controls import ControlsPanel
from explorer.schema.format import format_count, format_short
from explorer.schema.settings import SETTINGS_SPEC, TrainSettings

WAIT_MS = 30_000
MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# shape: (layers, heads, hidden, MLP columns, key/value width)
SHAPES = {
    "llama-7b": (32, 32, 4096, 11008, 4096),
    "llama-3-8b": (32, 32, 4096, 14336, 1024),
    "llama-2-70b": (80, 64, 8192, 28672, 1024),
}

# lora+prefix: every view applies, so every dock shows
pytestmark = pytest.mark.window(
    TrainSettings(method="lora+prefix", prefix_layers=30), factory=None, start=False, size=(1600, 1000)
)


@pytest.fixture(scope="module")
def snaps():
    return {
        name: sf.scale_snapshot(name, prefix_layers=SHAPES[name][0] if name == "llama-2-70b" else 30) for name in SHAPES
    }


def delivered(qtbot, win, snap, view_ids):
    win.deliver(snap)
    qtbot.waitUntil(
        lambda: all(win.views[v].snapshot is snap and win.views[v].draw_count for v in view_ids), timeout=WAIT_MS
    )
    assert win.view_errors == {}


@pytest.mark.parametrize("name", list(SHAPES))
def test_matrix_pickers_reach_every_layer_and_module(qtbot, window, snaps, name):
    snap = snaps[name]
    n_layers = SHAPES[name][0]
    delta, spectrum = window.views["delta"], window.views["spectrum"]
    delivered(qtbot, window, snap, ["delta", "spectrum"])
    picker = delta.picker
    assert len(picker.names()) == n_layers * len(MODULES)
    assert [picker.layer_box.itemText(i) for i in range(picker.layer_box.count())] == [str(i) for i in range(n_layers)]
    for layer in sorted({0, n_layers // 2, n_layers - 1}):
        picker.layer_box.setCurrentText(str(layer))
        assert [picker.module_box.itemText(i) for i in range(picker.module_box.count())] == MODULES
        for module in MODULES:
            picker.module_box.setCurrentText(module)
            part = "mlp" if module in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            matrix = f"model.layers.{layer}.{part}.{module}"
            assert delta.current_matrix() == matrix and spectrum.current_matrix() == matrix  # linked
            m = snap.matrices[matrix]
            out_f, in_f = sf.scale_module_shape(name, module)
            assert m.shape == (out_f, in_f)
            np.testing.assert_array_equal(delta.image_data(), m.delta)
            assert f"pooled from {out_f}×{in_f} to 32×32" in delta.caption_text()
            assert delta.image_aspect() == pytest.approx(np.clip(in_f / out_f, 0.25, 4.0))
            assert delta.plot.vb.viewRange()[0] == pytest.approx([0, in_f])
            np.testing.assert_allclose(spectrum.spectrum_values(), m.spectrum[m.spectrum > 0])


@pytest.mark.parametrize("name", list(SHAPES))
def test_budget_view_shows_the_models_counts(qtbot, window, snaps, name):
    snap = snaps[name]
    delivered(qtbot, window, snap, ["budget"])
    budget = window.views["budget"]
    trainable, base = snap.budget["trainable_params"], snap.budget["base_params"]
    assert budget.values()["trainable"] == format_count(trainable)
    assert budget.trainable.detail.text() == f"{format_short(trainable)} of {format_short(base)} parameters"
    assert format_short(base) == {"llama-7b": "6.74B", "llama-3-8b": "8.03B", "llama-2-70b": "69B"}[name]


def test_attention_grid_shows_the_chosen_subset_in_the_window(qtbot, window, snaps):
    snap = snaps["llama-2-70b"]
    delivered(qtbot, window, snap, ["attention", "gates"])
    view = window.views["attention"]
    assert view.available_shape() == (80, 64) and view.grid_shape() == (8, 8)
    assert view.layers() == list(range(72, 80))
    assert view.choose("0,40,79", "63") == ""
    assert view.layers() == [0, 40, 79] and view.heads() == [63]
    # the engine then sends those maps only
    later = sf.as_sent(sf.scale_snapshot("llama-2-70b", step=80, prefix_layers=80, seed=3), (0, 40, 79), (63,))
    delivered(qtbot, window, later, ["attention"])
    assert view.layers() == [0, 40, 79] and view.heads() == [63]
    t, w = 64, 10 + 64
    np.testing.assert_array_equal(
        view.grid_image.image[2 * (t + 1) : 2 * (t + 1) + t, :w], later.prefixes[79].attention[0]
    )
    gates = window.views["gates"]
    assert gates.heatmap_shape()[0] == 80  # one row per prefix layer
    assert "layers 0, 40, 79 (3 of 80 prefix layers) × head 63 (1 of 64)" in view.grid_caption.text()


def test_every_view_draws_a_70b_snapshot(qtbot, window, snaps):
    snap = snaps["llama-2-70b"]
    window.deliver(snap)
    shown = window.visible_view_ids()
    assert {"delta", "spectrum", "attention", "gates", "budget"} <= set(shown)
    qtbot.waitUntil(lambda: all(window.views[v].snapshot is snap for v in shown), timeout=WAIT_MS)
    assert window.view_errors == {}
    # the rank limit the controls take from the snapshot is the model's smallest matrix side
    assert window.controls.rows["rank"].editor.maximum() == min(1024, SETTINGS_SPEC["rank"].high)


def test_the_controls_layer_fields_reach_layer_79(qtbot):
    calls = []
    panel = ControlsPanel(
        TrainSettings(method="lora+prefix"),
        configure=lambda **c: calls.append(c) or {k: SETTINGS_SPEC[k].kind for k in c},
    )
    qtbot.addWidget(panel)
    panel.show()
    ed = panel.rows["layers"].editor
    for text, layers in (("79", (79,)), ("64-79", tuple(range(64, 80))), ("0,40,79", (0, 40, 79))):
        ed.setText(text)
        ed.editingFinished.emit()
        assert panel.settings.layers == layers
    prefix = panel.rows["prefix_layers"].editor
    assert prefix.maximum() >= 80
    prefix.setValue(80)
    assert panel.settings.prefix_layers == 80


def test_the_delta_view_asks_for_the_70b_matrix_it_shows_and_keeps_its_w0(qtbot, window, snaps):
    """As the engine sends them: the heatmaps of the matrix on view only (0.2 MB, not 74 MB), its W0
    once; the view asks for another matrix, says it is on the way, draws it when it comes, and draws
    W₀ from the window's copy after the engine has stopped sending it."""
    whole = snaps["llama-2-70b"]
    host, view = window.worker_host, window.views["delta"]
    first = sf.as_sent(whole)  # the engine's first snapshot: the first matrix, with its W0
    host.snapshot.emit(first)  # as a worker's would arrive
    qtbot.waitUntil(lambda: view.snapshot is first and view.draw_count, timeout=WAIT_MS)
    q0, down = "model.layers.0.self_attn.q_proj", "model.layers.79.mlp.down_proj"
    assert view.current_matrix() == q0 and window.settings.heatmap_matrices is None
    np.testing.assert_array_equal(view.image_data(), whole.matrices[q0].delta)

    assert view.set_matrix(down)
    assert window.settings.heatmap_matrices == (down,)  # asked of the engine, hot
    assert "on the way" in view.caption_text() and view.image_data() is None

    chosen = sf.as_sent(whole, heatmap_matrices=(down,))
    host.snapshot.emit(chosen)
    qtbot.waitUntil(lambda: view.snapshot is chosen and view.image_data() is not None, timeout=WAIT_MS)
    np.testing.assert_array_equal(view.image_data(), whole.matrices[down].delta)
    later = sf.as_sent(whole, heatmap_matrices=(down,), held=False)
    assert later.matrices[down].base is None
    host.snapshot.emit(later)
    qtbot.waitUntil(lambda: view.snapshot is not chosen and view.snapshot.step == later.step, timeout=WAIT_MS)
    view.set_mode("base")
    np.testing.assert_array_equal(view.image_data(), whole.matrices[down].base)
    view.set_mode("delta")
    assert window.view_errors == {}
