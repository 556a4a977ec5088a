"""The token view's data: log p_adapted - log p_base per token of a fixed held-out text, exactly zero
under a zero-init adapter, moving once it trains; and the worker's "sample now" and cadences."""

import numpy as np
import pytest
import torch
from engine_helpers import no_engine_threads, one_thread, tiny_byte_model, tiny_lm  # noqa: F401 (one_thread: autouse fixture)

from explorer.core.llama import lm_loss
from explorer.core.tokenizer import encode
from explorer.engine.scenarios.lm import token_text
from explorer.engine.trainer import Trainer
from explorer.engine.worker import TrainingWorker
from explorer.schema.resources import load_corpus


@pytest.mark.parametrize(
    "changes",
    [
        dict(method="lora"),
        dict(method="lora", init="gaussian", targets=("q_proj", "v_proj", "up_proj")),
        dict(method="prefix", prefix_len=3, prefix_layers=2),
        dict(method="lora+prefix", prefix_len=2, prefix_layers=1),
        dict(method="full", lr=1e-3),
    ],
    ids=["lora", "lora-gaussian", "prefix", "lora+prefix", "full"],
)
def test_exactly_zero_at_step_zero_and_moving_after_training(changes):
    t = Trainer(tiny_lm(**changes), base_model=tiny_byte_model())
    first = t.token_delta()
    text = first["context"] + "".join(first["tokens"])
    assert text == token_text(load_corpus("domain", "heldout"), tiny_byte_model().config.max_position_embeddings)
    assert first["step"] == 0 and first["delta"].dtype == np.float32
    assert first["delta"].shape == (len(first["tokens"]),) and len(first["tokens"]) > 16
    assert np.all(first["delta"] == 0.0)  # exactly: a zero-init adapter does not change the model at all
    for _ in range(4):
        t.train_step()
    later = t.token_delta()
    assert later["step"] == 4 and later["tokens"] == first["tokens"]
    assert np.all(np.isfinite(later["delta"])) and np.abs(later["delta"]).max() > 1e-4


def test_the_differences_are_the_two_models_log_probabilities():
    t = Trainer(tiny_lm(), base_model=tiny_byte_model())
    for _ in range(3):
        t.train_step()
    d = t.token_delta()
    ids = torch.tensor([encode(d["context"] + "".join(d["tokens"]))])
    model = t.model.eval()
    with torch.no_grad():
        # per-token cross-entropy is -log p; the difference of the two is the adapter's gain
        ours = -torch.stack([lm_loss(model(ids[:, :-1])[:, i : i + 1], ids[:, i + 1 : i + 2]) for i in range(3)])
        base = -torch.stack(
            [lm_loss(tiny_byte_model()(ids[:, :-1])[:, i : i + 1], ids[:, i + 1 : i + 2]) for i in range(3)]
        )
    np.testing.assert_allclose(d["delta"][:3], (ours - base).numpy(), atol=1e-5)


def test_the_text_is_a_whole_held_out_review_that_fits_the_context():
    heldout = load_corpus("domain", "heldout")
    text = token_text(heldout, 256)
    assert text.startswith("# review:") and "\n--- a/" in text and "\n@@ " in text
    assert len(text.encode()) <= 256 and text in heldout
    short = token_text(heldout, 40)  # nothing whole fits: cut at a line end
    assert len(short.encode()) <= 40 and heldout.startswith(short)


def test_snapshot_carries_the_differences_when_asked():
    t = Trainer(tiny_lm(), base_model=tiny_byte_model())
    assert t.snapshot(16).token_delta is None
    snap = t.snapshot(16, with_token_delta=True)
    assert snap.token_delta["step"] == 0 and np.all(snap.token_delta["delta"] == 0)


def test_matrix_scenario_has_no_token_view():
    from engine_helpers import tiny_matrix

    t = Trainer(tiny_matrix())
    assert t.token_delta() is None


# ---- the worker -----------------------------------------------------------------------------


@pytest.fixture
def worker():
    w = TrainingWorker(tiny_lm(), base_model=tiny_byte_model(), threads=1)
    w.start()
    yield w
    w.close()
    assert not w.alive and no_engine_threads()


def test_worker_posts_differences_and_samples_with_every_reset_and_on_request(worker):
    s = worker.wait_for(lambda s: s.samples is not None and s.token_delta is not None, 30)
    assert s.token_delta["step"] == 0 and np.all(s.token_delta["delta"] == 0)
    worker.play()
    worker.wait_for(lambda s: s.step >= 3, 30)
    worker.pause()
    worker.reset()  # a new segment: fresh samples and differences at step 0, never the old ones
    s = worker.wait_for(lambda s: s.segment == 1 and s.samples is not None and s.token_delta is not None, 30)
    assert s.samples["step"] == 0 and s.token_delta["step"] == 0 and np.all(s.token_delta["delta"] == 0)
    worker.configure(speed=0.0)
    worker.step(2)
    worker.wait_for(lambda s: s.segment == 1 and s.step == 2 and s.state == "paused", 30)
    worker.sample_now()  # "Sample now": generated at the current step
    s = worker.wait_for(lambda s: s.samples is not None and s.samples["step"] == 2, 30)
    assert s.token_delta["step"] == 2 and np.abs(s.token_delta["delta"]).max() > 0
