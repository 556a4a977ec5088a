"""The synchronous Trainer: determinism, data order, zero-init, snapshots, settings, faults, state."""

import numpy as np
import pytest
import torch
from engine_helpers import one_thread, tiny_byte_model, tiny_lm, tiny_matrix  # noqa: F401 (one_thread: autouse fixture)

from explorer.engine.scenarios import lm
from explorer.engine.trainer import InjectedFault, NonFiniteLoss, Trainer
from explorer.schema.settings import TrainSettings


def _losses(trainer, n):
    return [trainer.train_step() for _ in range(n)]


def _tensors(trainer):
    return {k: v.clone() for k, v in trainer.trained_tensors().items()}


def _same_tensors(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "settings, base",
    [(tiny_matrix(), None), (tiny_matrix(method="full"), None), (tiny_lm(method="lora+prefix"), "tiny")],
)
def test_same_settings_and_seed_give_bit_identical_losses(settings, base):
    model = tiny_byte_model() if base else None
    a, b = Trainer(settings, base_model=model), Trainer(settings, base_model=model)
    la, lb = _losses(a, 8), _losses(b, 8)
    assert la == lb  # bit for bit
    assert _same_tensors(a.trained_tensors(), b.trained_tensors())
    c = Trainer(settings.with_changes(seed=1), base_model=model)
    assert _losses(c, 8) != la


def _batches(trainer, n):
    drawn = []
    original = trainer.scenario.batch

    def spy(step, batch_size):
        out = original(step, batch_size)
        drawn.append(out if isinstance(out, torch.Tensor) else torch.cat([t.reshape(-1) for t in out]))
        return out

    trainer.scenario.batch = spy
    _losses(trainer, n)
    return drawn


def test_data_order_depends_on_the_seed_alone():
    model = tiny_byte_model()
    runs = [
        _batches(Trainer(tiny_lm(method=m, rank=r), base_model=model), 4)
        for m, r in (("lora", 2), ("prefix", 2), ("full", 2), ("lora", 4))
    ]
    for other in runs[1:]:
        assert all(torch.equal(x, y) for x, y in zip(runs[0], other))
    m_runs = [_batches(Trainer(tiny_matrix(method=m, rank=r)), 3) for m, r in (("lora", 2), ("full", 1), ("lora", 8))]
    for other in m_runs[1:]:
        assert all(torch.equal(x, y) for x, y in zip(m_runs[0], other))
    seeded = _batches(Trainer(tiny_lm(seed=5), base_model=model), 1)
    assert not torch.equal(seeded[0], runs[0][0])


def test_zero_init_step0_loss_is_the_base_models_loss_exactly_on_the_shipped_model():
    """lora, prefix, lora+prefix and full start exactly at the frozen base model's loss."""
    losses, base_losses = {}, {}
    for method in ("lora", "prefix", "lora+prefix", "full"):
        t = Trainer(tiny_lm(method=method, rank=4, prefix_len=4, prefix_layers=2))
        scenario = t.scenario
        base_losses[method] = scenario.loss(scenario.base, scenario.batch(0, t.settings.batch_size)).item()
        snap0 = t.snapshot(16)
        losses[method] = t.train_step()
        assert snap0.loss == losses[method] == base_losses[method], method
        if t.settings.uses_prefix():
            assert all(np.all(p.gates == 0.0) for p in snap0.prefixes)  # gates start at exactly 0
            _losses(t, 3)
            moved = t.snapshot(16)
            assert all(np.any(p.gates != 0.0) for p in moved.prefixes)  # ... and move
            assert moved.history.gates.shape[0] == 2 and np.all(moved.history.gates[0] == 0)
    assert len(set(losses.values())) == 1


def test_snapshot_arrays_never_exceed_the_display_size():
    t = Trainer(tiny_matrix(size_in=150, size_out=90, rank=3, target_rank=5))
    _losses(t, 2)
    for ds in (8, 17, 64, 200):
        m = t.snapshot(ds).matrices["W"]
        for arr in (m.delta, m.base, m.target):
            assert arr.dtype == np.float32 and arr.shape == (min(ds, 90), min(ds, 150))
        assert m.spectrum.shape == (3,) and m.target_spectrum.shape == (5,)  # rank-r LoRA: exactly r values
        assert m.shape == (90, 150)
    full = Trainer(tiny_matrix(method="full", size_in=40, size_out=30))
    _losses(full, 2)
    m = full.snapshot(16).matrices["W"]
    assert m.delta.shape == (16, 16) and m.spectrum.shape == (30,)
    # pooled ΔW is the block mean of the true ΔW = W - W0
    W = full.model.W.weight.detach()
    dense = torch.nn.functional.adaptive_avg_pool2d((W - full.scenario.W0)[None, None], (16, 16))[0, 0]
    assert np.allclose(m.delta, dense.numpy(), atol=1e-6)


def test_lm_snapshot_holds_probe_attention_gates_samples_and_budget():
    t = Trainer(
        tiny_lm(method="lora+prefix", prefix_len=3, prefix_layers=2, display_size=8), base_model=tiny_byte_model()
    )
    snap = t.snapshot(with_samples=True)
    assert snap.samples["adapted"] == snap.samples["base"]  # zero-init: the same text at step 0
    assert snap.samples["prompt"] == lm.SAMPLE_PROMPT and snap.samples["step"] == 0
    n_tokens = len(snap.probe_tokens)
    assert snap.probe_tokens[:3] == ["#", "␣", "r"]
    assert [p.layer for p in snap.prefixes] == [0, 1]
    for p in snap.prefixes:
        assert p.attention.shape == (4, n_tokens, 3 + n_tokens) and p.gates.shape == (4,)
        assert np.all(p.attention[:, :, :3] == 0)  # gated prompt, gate 0
    for _name, m in snap.matrices.items():
        assert m.delta.shape == (8, 8) and m.spectrum.shape == (2,)
    assert (
        snap.budget["trainable_params"]
        == snap.budget["measured_trainable_params"]
        == sum(v.numel() for v in t.trained_tensors().values())
    )


@pytest.mark.parametrize(
    "settings, base",
    [
        (tiny_matrix(use_dora=True), None),
        (tiny_lm(use_dora=True, rank=8), "tiny"),
        (tiny_lm(method="lora+prefix", use_dora=True, targets=("q_proj", "up_proj")), "tiny"),
    ],
)
def test_dora_budget_counts_the_magnitude_vectors_the_model_trains(settings, base):
    t = Trainer(settings, base_model=tiny_byte_model() if base else None)
    b = t.snapshot().budget
    assert (
        b["trainable_params"] == b["measured_trainable_params"] == sum(v.numel() for v in t.trained_tensors().values())
    )
    assert b["storage_bytes_fp16"] == 2 * b["trainable_params"]
    if base:
        # The budget view's preset table comes from the snapshot's budget: DoRA priced as PEFT counts it.
        seven_b = b["presets"]["llama-7b"]["trainable_params"]
        if settings.method == "lora":
            assert seven_b == 4_456_448  # r=8 on q_proj, v_proj
        else:
            plain = Trainer(settings.with_changes(use_dora=False), base_model=tiny_byte_model()).snapshot().budget
            assert seven_b - plain["presets"]["llama-7b"]["trainable_params"] == 32 * (4096 + 11008)


def test_hot_changes_apply_at_once_and_cold_changes_start_a_new_segment():
    t = Trainer(tiny_matrix())
    _losses(t, 3)
    assert t.apply(lr=1e-3) == {"lr": "hot"}
    assert t.step == 3 and t.segment == 0
    assert t.model.W.lora_A.weight.requires_grad
    assert all(g["lr"] == 1e-3 for g in t._seg.optimizer.param_groups)
    assert t.apply(rank=2, alpha=4.0) == {"rank": "cold", "alpha": "cold"}
    assert t.step == 0 and t.segment == 1 and t.snapshot().matrices["W"].spectrum.shape == (2,)
    assert t.apply() == {}
    with pytest.raises(ValueError, match="rank"):
        t.apply(rank=10_000)
    assert t.settings.rank == 2


def test_a_failing_cold_change_leaves_the_running_segment_untouched():
    t = Trainer(tiny_lm(), base_model=tiny_byte_model())
    _losses(t, 3)
    before = _tensors(t)
    with pytest.raises(ValueError, match="rank=64 is out of range"):
        t.apply(rank=64)  # passes the settings check; too large for this model
    assert t.settings.rank == 2 and t.step == 3 and t.segment == 0
    assert _same_tensors(before, t.trained_tensors())
    _losses(t, 1)


def test_reset_replays_the_same_run():
    t = Trainer(tiny_matrix())
    start = _tensors(t)
    first = _losses(t, 5)
    t.reset()
    assert t.step == 0 and t.segment == 1 and _same_tensors(start, t.trained_tensors())
    assert _losses(t, 5) == first


def test_non_finite_loss_restores_the_last_good_weights():
    t = Trainer(tiny_matrix())
    _losses(t, 4)
    good = _tensors(t)  # the weights after 4 updates
    _losses(t, 1)
    t.inject_fault("nan")
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step 5 \(lr=0.01\)"):
        t.train_step()
    assert t.step == 4 and _same_tensors(good, t.trained_tensors())
    assert t.snapshot().history.steps.tolist() == [0, 1, 2, 3]
    assert np.isfinite(t.train_step())


def test_an_exception_in_a_step_keeps_the_weights_of_that_step():
    t = Trainer(tiny_matrix())
    _losses(t, 2)
    before = _tensors(t)
    t.inject_fault("exception")
    with pytest.raises(InjectedFault):
        t.train_step()
    t.inject_fault("oom")
    with pytest.raises(torch.OutOfMemoryError):
        t.train_step()
    assert t.step == 2 and _same_tensors(before, t.trained_tensors())

    def broken_step(*a, **k):
        raise RuntimeError("optimizer exploded")

    t._seg.optimizer.step = broken_step  # fails half-way through an update
    with pytest.raises(RuntimeError, match="exploded"):
        t.train_step()
    assert t.step == 2 and _same_tensors(before, t.trained_tensors())
    _losses(t, 1)


def test_state_file_round_trip(tmp_path):
    t = Trainer(tiny_lm(method="lora+prefix"), base_model=tiny_byte_model())
    _losses(t, 3)
    t.save_state(tmp_path / "s.safetensors")
    other = Trainer(tiny_lm(method="full", seed=3), base_model=tiny_byte_model())
    other.load_state(tmp_path / "s.safetensors")
    assert other.settings.method == "lora+prefix" and other.settings.seed == 0 and other.step == 3
    assert _same_tensors(_tensors(t), other.trained_tensors())
    assert t.train_step() == other.train_step()

    from explorer.core.state_file import save_state

    save_state(tmp_path / "bad.safetensors", {"W.lora_A.weight": torch.zeros(3, 3)}, tiny_matrix().to_dict(), 7)
    m = Trainer(tiny_matrix())
    _losses(m, 2)
    before = _tensors(m)
    with pytest.raises(ValueError, match="do not match|shape"):
        m.load_state(tmp_path / "bad.safetensors")
    assert m.step == 2 and m.segment == 0 and _same_tensors(before, m.trained_tensors())


def test_the_seed_preset_plants_the_full_rank_update_2I_minus_W0():
    t = Trainer(tiny_matrix(preset="seed", size_in=16, size_out=16, rank=4, display_size=16))
    W0 = t.scenario.W0
    assert torch.allclose(t.scenario.W_true, 2 * torch.eye(16), atol=1e-6)  # target y = 2x
    snap = t.snapshot()
    m = snap.matrices["W"]
    assert m.target_spectrum.shape == (16,) and np.allclose(
        m.target_spectrum, torch.linalg.svdvals(2 * torch.eye(16) - W0).numpy(), rtol=1e-5
    )
    assert np.allclose(m.target, (2 * torch.eye(16) - W0).numpy(), atol=1e-6)
    first = t.train_step()
    _losses(t, 60)
    assert t.eval_loss() < first  # the rank-4 LoRA catches part of the update
    with pytest.raises(ValueError, match="preset='seed' needs a square matrix"):
        Trainer(tiny_matrix(preset="seed"))


def test_train_step_works_even_when_the_caller_turned_grad_mode_off():
    trainer = Trainer(TrainSettings(scenario="matrix", size_in=16, size_out=16, target_rank=2, rank=2, batch_size=8))
    with torch.no_grad():
        losses = [trainer.train_step() for _ in range(3)]
    assert losses[2] < losses[0]
