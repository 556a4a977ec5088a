"""ExplorerCallback in a real transformers Trainer run: the recording holds what the Trainer logged, PEFT's
own updates, and opens in the app's replay like a recording of the explorer's own runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from integrations_helpers import lora_llama, token_data

from explorer.integrations import ExplorerCallback
from explorer.schema.recording import RecordingReader

WAIT_MS = 30_000


def _train(out, callback_kwargs, steps=20, accumulation=1, layers=3):
    from transformers import Trainer, TrainingArguments

    model = lora_llama(layers=layers)
    args = TrainingArguments(
        output_dir=str(out.parent / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=accumulation,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=token_data(), callbacks=[ExplorerCallback(out, **callback_kwargs)]
    )
    trainer.train()
    return trainer, model


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trainer") / "rec"
    trainer, model = _train(out, {"every": 5, "interval_s": 0, "share": None}, accumulation=2)
    return out, trainer, model


def test_a_trainer_run_records_what_the_trainer_logged(trainer_run):
    out, trainer, model = trainer_run
    reader = RecordingReader(out)
    assert reader.steps == [0, 5, 10, 15, 20] and reader.finished
    assert [e["event"] for e in reader.events] == ["finished"] and reader.events[0]["final_step"] == 20
    logged = {h["step"]: h for h in trainer.state.log_history if "loss" in h}
    for line in reader.metrics[1:]:
        # the loss the Trainer logged for that step (logging_steps=1), with gradient accumulation
        assert line["loss"] == pytest.approx(logged[line["step"]]["loss"], rel=1e-6)
        assert line["lr"] == pytest.approx(logged[line["step"]]["learning_rate"], rel=1e-9)
        assert set(line["grad_norm"]) == set(reader.config["recorder"]["modules"])
        assert all(g > 0 for g in line["grad_norm"].values())
    snap = reader.snapshot(20)
    assert list(snap.history.steps) == list(range(1, 21))  # every step's loss, not only recorded ones
    np.testing.assert_allclose(snap.history.loss, [logged[s]["loss"] for s in range(1, 21)], rtol=1e-6)
    modules = dict(model.named_modules())
    for name, m in snap.matrices.items():
        dense = torch.linalg.svdvals(modules["base_model.model." + name].get_delta_weight("default").detach())
        np.testing.assert_allclose(m.spectrum, dense[:4].numpy(), rtol=1e-4, atol=1e-7)
    info = reader.config["recorder"]["trainer"]
    assert info["gradient_accumulation_steps"] == 2 and info["max_steps"] == 20
    assert reader.settings.batch_size == 4 and reader.settings.lr == 1e-2 and reader.settings.seed == 0
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    for step in reader.steps:
        assert reader.snapshot(step).step == step


def test_the_default_cadence_records_the_first_and_the_last_step(tmp_path):
    _, model = _train(tmp_path / "rec", {}, steps=12, layers=2)
    reader = RecordingReader(tmp_path / "rec")
    assert reader.steps[0] == 0 and reader.steps[-1] == 12 and reader.finished
    assert reader.steps == sorted(set(reader.steps))
    assert reader.config["recorder"]["cadence"] == {"every": 1, "interval_s": 1.0, "share": 0.015}


def test_a_refused_directory_stops_the_trainer_with_one_line(tmp_path):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "notes.txt").write_text("someone else's")
    with pytest.raises(ValueError, match="is not empty: choose a new directory"):
        _train(tmp_path / "rec", {}, steps=2, layers=2)


def test_the_app_replays_a_trainer_recording(qtbot, make_window, trainer_run):
    out, _, _ = trainer_run
    reader = RecordingReader(out)
    win = make_window(factory=None, start=False, size=(1600, 1000))
    ctl = win.features.replay.open(out)
    qtbot.waitUntil(lambda: win.replay is ctl, timeout=WAIT_MS)  # read off the GUI thread
    assert list(ctl.steps) == [0, 5, 10, 15, 20]
    assert ctl.show_step(20)
    views = ("delta", "spectrum", "loss")
    qtbot.waitUntil(lambda: all(win.views[v].snapshot is ctl.shown for v in views), timeout=WAIT_MS)
    want = reader.snapshot(20)
    delta = win.views["delta"]
    name = delta.picker.current()
    assert name in reader.config["recorder"]["heatmap_modules"]
    assert np.array_equal(delta.image.image, want.matrices[name].delta)
    hx, hy = win.views["loss"].train_raw.getData()
    assert np.array_equal(hx, want.history.steps) and np.allclose(hy, want.history.loss)
    # a module recorded without a heatmap: the view says so and keeps its picker
    assert delta.picker.set_current("model.layers.1.self_attn.q_proj")
    qtbot.waitUntil(
        lambda: "No ΔW heatmap of model.layers.1.self_attn.q_proj in this recording" in delta.caption.text(),
        timeout=WAIT_MS,
    )
    assert delta.message() == ""
    assert win.controls.settings == reader.settings
