"""Training the lm scenario on a user's checkpoint and data: the held-out loss falls on each data
shape, batches follow the seed alone, the frozen weights are shared, and what does not fit is refused
before loading."""

import pytest
import torch
from checkpoint_factory import save_checkpoint, write_datasets
from engine_helpers import one_thread, tiny_lm  # noqa: F401 (one_thread: autouse fixture)

from explorer.engine.scenarios import lm_sources
from explorer.engine.trainer import Trainer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    for kind in ("llama", "mistral", "qwen2"):
        save_checkpoint(root / kind, kind)
    return root, write_datasets(root / "data")


def _settings(model, data, **changes):
    base = dict(
        model=str(model),
        data=str(data),
        seq_len=48,
        batch_size=8,
        lr=3e-2,
        rank=4,
        targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    )
    base.update(changes)
    return tiny_lm(**base)


@pytest.mark.parametrize("kind, data", [("llama", "txt"), ("mistral", "jsonl"), ("qwen2", "instruction")])
def test_a_few_steps_lower_the_heldout_loss(files, kind, data):
    root, paths = files
    t = Trainer(_settings(root / kind, paths[data]))
    before = t.eval_loss()
    for _ in range(25):
        t.train_step()
    after = t.eval_loss()
    # a random tiny model learns slowly through its adapters, but it learns: a fixed held-out set, exact numbers
    assert after < before - 0.05, (before, after)
    info = t.scenario.info()
    assert info["model_dir"] == str((root / kind).resolve()) and len(info["model_hash"]) == 64
    assert info["data_kind"] == ("instruction" if data == "instruction" else "text")
    snap = t.snapshot(32, with_samples=True)
    assert snap.samples["adapted"] and snap.samples["prompt"] == t.scenario.prompt_text
    assert snap.budget["measured_trainable_params"] == snap.budget["trainable_params"]


def test_instruction_loss_is_on_the_response_unless_asked(files):
    root, paths = files
    response = Trainer(_settings(root / "qwen2", paths["instruction"]))
    everything = Trainer(_settings(root / "qwen2", paths["instruction"], loss_on="all"))
    (_, t1), (_, t2) = response.scenario.batch(0, 4), everything.scenario.batch(0, 4)
    assert (t1 != -100).sum() < (t2 != -100).sum() and torch.equal(t1[t1 != -100], t2[t1 != -100])
    assert "### Response:" in response.scenario.prompt_text  # samples start from a held-out prompt


def test_batches_depend_on_the_seed_alone(files):
    root, paths = files
    a = Trainer(_settings(root / "llama", paths["jsonl"], method="lora"))
    b = Trainer(_settings(root / "llama", paths["jsonl"], method="prefix", prefix_layers=1))
    c = Trainer(_settings(root / "llama", paths["jsonl"], seed=1))
    for step in (0, 7):
        assert all(torch.equal(x, y) for x, y in zip(a.scenario.batch(step, 8), b.scenario.batch(step, 8)))
    assert not torch.equal(a.scenario.batch(0, 8)[0], c.scenario.batch(0, 8)[0])
    assert torch.equal(a.scenario.data.dataset.heldout.ids, b.scenario.data.dataset.heldout.ids)


def test_segments_share_the_frozen_weights_and_pissa_copies_its_own(files):
    root, paths = files
    t = Trainer(_settings(root / "llama", paths["txt"]))
    base_q = t.scenario.base.model.layers[0].self_attn.q_proj.weight
    assert t.model.model.layers[0].self_attn.q_proj.base_layer.weight is base_q
    t.apply(init="pissa")
    pissa_q = t.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert pissa_q is not base_q and not torch.equal(pissa_q, base_q)  # the residual
    t.apply(method="full")
    assert t.model.model.layers[0].self_attn.q_proj.weight is not base_q


def test_prompt_setting_drives_samples_and_probe(files):
    root, paths = files
    t = Trainer(_settings(root / "llama", paths["txt"], method="prefix", prefix_layers=1, prompt="def f(x):"))
    assert t.scenario.prompt_text == "<s>def f(x):" and t.scenario.probe_tokens[0] == "<s>"
    snap = t.snapshot(16)
    assert snap.prefixes[0].attention.shape[-2] == len(t.scenario.probe_tokens)


def test_a_run_that_does_not_fit_is_refused_before_loading(files, monkeypatch):
    root, paths = files
    lm_sources._USER_CACHE.clear()
    monkeypatch.setattr("explorer.core.memory._mem_available", lambda: 50_000)
    with pytest.raises(ValueError) as err:
        Trainer(_settings(root / "mistral", paths["txt"]))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"training {root / 'mistral'} needs about") and "available" in msg
    assert not lm_sources._USER_CACHE


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"model": "/no/such/dir"}, "no such model directory"),
        ({"data": "/no/such.txt"}, "no such data file"),
        ({"seq_len": 4096}, "the base model's context"),
    ],
)
def test_bad_paths_are_one_line(files, changes, problem):
    root, paths = files
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        Trainer(_settings(root / "llama", paths["txt"]).with_changes(**changes))
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_settings_check_their_text():
    s = tiny_lm()
    with pytest.raises(ValueError, match="eval_data='x.txt' needs data"):
        s.with_changes(eval_data="x.txt")
    with pytest.raises(ValueError, match="model=.* is not valid"):
        s.with_changes(model="a\x00b")
    with pytest.raises(ValueError, match="prompt=3 is not valid"):
        s.with_changes(prompt=3)
    with pytest.raises(ValueError, match="loss_on='some' is unknown"):
        s.with_changes(loss_on="some")
