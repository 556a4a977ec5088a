"""LoRA against HuggingFace PEFT on the same tiny Llama, plus the invariants users rely on."""

import copy

import pytest
import torch
from helpers import tiny_hf_llama, tiny_llama

from explorer.core.adapters import count_trainable, mark_only_adapters_trainable
from explorer.core.lora import (
    LoraLinear,
    LoraSettings,
    inject_lora,
    lora_modules,
    merge_lora,
    remove_lora,
    unmerge_lora,
)

IDS = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(1))


def _peft_pair(use_rslora=False, use_dora=False, targets=("q_proj", "v_proj")):
    from peft import LoraConfig, get_peft_model

    hf, ours = tiny_hf_llama(kv_heads=2)
    cfg = LoraConfig(
        r=4, lora_alpha=8, target_modules=list(targets), lora_dropout=0.0, use_rslora=use_rslora, use_dora=use_dora
    )
    peft_model = get_peft_model(hf, cfg).eval()
    inject_lora(ours, LoraSettings(rank=4, alpha=8, targets=targets, use_rslora=use_rslora, use_dora=use_dora))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, module in lora_modules(ours).items():
            peft_layer = peft_model.base_model.model.get_submodule(name)
            peft_layer.lora_B["default"].weight.normal_(0, 0.1, generator=g)  # move away from zero
            module.lora_A.weight.copy_(peft_layer.lora_A["default"].weight)
            module.lora_B.weight.copy_(peft_layer.lora_B["default"].weight)
            if use_dora:
                module.lora_magnitude_vector.copy_(peft_layer.lora_magnitude_vector["default"].weight)
            assert module.scaling == pytest.approx(peft_layer.scaling["default"])
    return peft_model, ours.eval()


@pytest.mark.parametrize("variant", ["plain", "rslora", "dora"])
def test_logits_equal_peft_merged_and_unmerged(variant):
    peft_model, ours = _peft_pair(
        use_rslora=variant == "rslora", use_dora=variant == "dora", targets=("q_proj", "v_proj", "down_proj")
    )
    with torch.no_grad():
        expected = peft_model(IDS).logits
        got = ours(IDS)
        assert (got - expected).abs().max() < 1e-5
        merge_lora(ours)
        assert (ours(IDS) - expected).abs().max() < 1e-5
        peft_model.merge_adapter()
        assert (peft_model(IDS).logits - ours(IDS)).abs().max() < 1e-5
        unmerge_lora(ours)
        assert (ours(IDS) - got).abs().max() == 0


def test_default_init_gives_base_logits_exactly():
    model = tiny_llama()
    with torch.no_grad():
        base = model(IDS)
    for init in ("kaiming", "gaussian"):
        m = copy.deepcopy(model)
        inject_lora(
            m,
            LoraSettings(
                rank=8, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), init=init
            ),
            torch.Generator().manual_seed(0),
        )
        with torch.no_grad():
            assert torch.equal(m(IDS), base)


def test_pissa_init_matches_peft_and_keeps_the_function():
    from peft import LoraConfig, get_peft_model

    hf, ours = tiny_hf_llama(kv_heads=2)
    with torch.no_grad():
        base = ours(IDS)
    peft_model = get_peft_model(
        copy.deepcopy(hf), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights="pissa")
    ).eval()
    inject_lora(ours, LoraSettings(rank=4, alpha=8, targets=("q_proj",), init="pissa"))
    for name, module in lora_modules(ours).items():
        peft_layer = peft_model.base_model.model.get_submodule(name)
        # Singular vectors are defined up to sign: compare the products, which are not.
        assert torch.allclose(module.delta_weight(), peft_layer.get_delta_weight("default"), atol=1e-5)
        assert torch.allclose(module.base_layer.weight, peft_layer.base_layer.weight, atol=1e-5)
    with torch.no_grad():
        assert (ours(IDS) - base).abs().max() < 1e-4
    remove_lora(ours)
    with torch.no_grad():
        assert torch.equal(ours(IDS), base)


def test_only_adapters_train_and_gradients_reach_them():
    model = tiny_llama()
    inject_lora(model, LoraSettings(rank=2, targets=("q_proj", "v_proj"), layers=(0, 2)))
    names = mark_only_adapters_trainable(model)
    assert names and all("lora_" in n for n in names)
    # r * (in + out) per matrix: q is 64x64, v is 32x64 under grouped-query attention; two layers.
    assert count_trainable(model) == 2 * (2 * (64 + 64) + 2 * (64 + 32))
    model.train()
    loss = model(IDS).logsumexp(-1).mean()
    loss.backward()
    for name, p in model.named_parameters():
        if "lora_A" in name:
            assert p.grad is None or p.grad.abs().max() == 0  # B = 0, so A gets no gradient at step 0
        elif "lora_B" in name:
            assert p.grad is not None and p.grad.abs().max() > 0
        else:
            assert p.grad is None
    assert set(n.split(".")[2] for n in lora_modules(model)) == {"0", "2"}


def test_remove_restores_the_model_bit_for_bit():
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inject_lora(model, LoraSettings(rank=4, targets=("q_proj", "up_proj"), init="pissa"))
    for m in lora_modules(model).values():
        m.lora_B.weight.data.normal_()
    merge_lora(model)
    remove_lora(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_dropout_acts_on_the_lora_branch_only():
    lin = torch.nn.Linear(16, 8)
    layer = LoraLinear(lin, 4, 8, dropout=0.5)
    x = torch.randn(3, 16)
    layer.train()
    # With B = 0 the branch is zero, so dropout there must leave the output untouched.
    assert torch.equal(layer(x), lin(x))


@pytest.mark.parametrize(
    "settings, message",
    [
        (LoraSettings(rank=0), "rank=0 is out of range: allowed 1 to"),
        (LoraSettings(rank=65), "rank=65 is out of range"),
        (LoraSettings(alpha=0), "alpha=0 is out of range"),
        (LoraSettings(targets=("qkv",)), "targets='qkv' is unknown"),
        (LoraSettings(layers=(5,)), "layers=5 is out of range: allowed 0 to 2"),
        (LoraSettings(init="xavier"), "init='xavier' is unknown"),
        (LoraSettings(dropout=1.0), "dropout=1.0 is out of range"),
    ],
)
def test_bad_settings_name_the_setting_and_leave_the_model_untouched(settings, message):
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        inject_lora(model, settings)
    assert not lora_modules(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_failure_midway_unwinds_every_wrapper(monkeypatch):
    model = tiny_llama()
    calls = {"n": 0}
    original = LoraLinear._init_factors

    def fail_on_third(self, generator):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated out-of-memory")
        original(self, generator)

    monkeypatch.setattr(LoraLinear, "_init_factors", fail_on_third)
    with pytest.raises(RuntimeError):
        inject_lora(model, LoraSettings(targets=("q_proj", "v_proj")))
    assert not lora_modules(model)


def test_merge_refuses_non_finite():
    layer = LoraLinear(torch.nn.Linear(8, 8), 2, 4)
    layer.lora_B.weight.data.fill_(float("inf"))
    layer.lora_A.weight.data.fill_(1.0)
    with pytest.raises(ValueError, match="merge refused"):
        layer.merge()
    assert not layer.merged and torch.isfinite(layer.base_layer.weight).all()
