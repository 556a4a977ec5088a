"""The engine sends the probe's attention maps of the chosen prefix layers and heads only (settings
attention_layers / attention_heads; by default the deepest 8 layers x the first 8 heads), each map
exactly the probe's, the choice a hot change; recordings keep which heads they hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_helpers import assert_snapshots_equal, one_thread, tiny_lm  # noqa: F401 (one_thread: autouse fixture)

from explorer.core.llama import LlamaConfig, LlamaForCausalLM
from explorer.engine.trainer import Trainer
from explorer.schema.recording import RecordingReader, RecordingWriter

LAYERS, HEADS = 10, 12


@pytest.fixture(scope="module")
def wide_model():
    """10 layers x 12 heads: more than the default 8 x 8 in both directions, still tiny."""
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=64,
    )
    m = LlamaForCausalLM(cfg)
    m.init_weights(torch.Generator().manual_seed(0))
    return m.eval()


def full_probe(trainer) -> dict[int, np.ndarray]:
    seg = trainer._seg
    return {layer: a.float().numpy() for layer, a in seg.scenario.probe(seg.model).items()}


def test_by_default_the_deepest_8_layers_and_the_first_8_heads_are_sent(wide_model):
    trainer = Trainer(tiny_lm(method="prefix", prefix_layers=LAYERS), base_model=wide_model)
    trainer.train_step()
    snap = trainer.snapshot()
    assert [p.layer for p in snap.prefixes] == list(range(LAYERS))
    assert all(p.gates.shape == (HEADS,) for p in snap.prefixes)  # gates of every layer and head
    full = full_probe(trainer)
    for p in snap.prefixes:
        if p.layer < LAYERS - 8:
            assert p.attention is None and p.heads is None
        else:
            assert list(p.heads) == list(range(8))
            np.testing.assert_allclose(p.attention, full[p.layer][:8], rtol=0, atol=1e-6)
    sent = sum(p.attention.nbytes for p in snap.prefixes if p.attention is not None)
    assert sent == sum(a.nbytes for a in full.values()) * (8 / LAYERS) * (8 / HEADS)


def test_a_chosen_subset_is_a_hot_change_and_sends_exactly_those_maps(wide_model):
    trainer = Trainer(tiny_lm(method="lora+prefix", prefix_layers=4), base_model=wide_model)
    segment = trainer.segment
    assert trainer.apply(attention_layers=(5, 9), attention_heads=(3, 11)) == {
        "attention_layers": "hot",
        "attention_heads": "hot",
    }
    assert trainer.segment == segment  # nothing restarted
    snap = trainer.snapshot()
    full = full_probe(trainer)
    sent = {p.layer: p for p in snap.prefixes if p.attention is not None}
    assert sorted(sent) == [9]  # layer 5 has no prefix (the top 4 layers, 6 to 9, have)
    assert list(sent[9].heads) == [3, 11]
    np.testing.assert_allclose(sent[9].attention, full[9][[3, 11]], rtol=0, atol=1e-6)


def test_chosen_layers_that_have_no_prefix_fall_back_to_the_default(wide_model):
    trainer = Trainer(tiny_lm(method="prefix", prefix_layers=2, attention_layers=(0, 1)), base_model=wide_model)
    snap = trainer.snapshot()
    assert [p.layer for p in snap.prefixes if p.attention is not None] == [8, 9]


def test_a_recording_keeps_which_heads_it_holds(tmp_path, wide_model):
    settings = tiny_lm(method="prefix", prefix_layers=3, attention_heads=(0, 5, 11))
    trainer = Trainer(settings, base_model=wide_model)
    writer = RecordingWriter(tmp_path / "rec", {"settings": settings.to_dict()})
    written = trainer.snapshot()
    writer.write(written)
    writer.close()
    read = RecordingReader(tmp_path / "rec").snapshot(0)
    assert_snapshots_equal(read, written)
    assert [list(p.heads) for p in read.prefixes] == [[0, 5, 11]] * 3
    assert read.settings["attention_heads"] == [0, 5, 11]


@pytest.mark.parametrize(
    ("heads", "words"),
    [([0, 0], "names 2 heads (each once) for 2 maps"), ([0], "names 1 heads"), ([0, -1], "heads[]"), ("0-1", "heads")],
)
def test_a_recordings_heads_that_do_not_fit_its_maps_are_refused(heads, words):
    from explorer.schema.recording_checks import _prefix

    tensors = {"p/0/gates": np.zeros(4, np.float32), "p/0/attention": np.zeros((2, 3, 5), np.float32)}
    entry = {"layer": 1, "prompt_norm": 0.0, "attention": True, "heads": heads}
    with pytest.raises(ValueError) as info:
        _prefix(0, entry, tensors, "snapshots/000001.safetensors")
    assert words in str(info.value) and "snapshots/000001.safetensors" in str(info.value)
    assert list(_prefix(0, {**entry, "heads": [3, 1]}, tensors, "x").heads) == [3, 1]
