"""rank_pattern / alpha_pattern at injection: per-module ranks and alphas resolved as PEFT does, and bad
patterns refused naming the setting, with the model left as it was."""

import pytest
import torch
from helpers import tiny_hf_llama

from explorer.core.lora import LoraSettings, inject_lora, lora_modules

IDS = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(1))
PATTERNS = dict(
    rank_pattern={"down_proj": 2, "model.layers.1.self_attn.q_proj": 8, "layers.2.self_attn.v_proj": 3},
    alpha_pattern={"v_proj": 3.0, "model.layers.0.mlp.down_proj": 20.0},
)


@pytest.mark.parametrize("use_rslora", [False, True])
def test_per_module_ranks_and_scalings_equal_peft(use_rslora):
    from peft import LoraConfig, get_peft_model

    hf, ours = tiny_hf_llama(kv_heads=2)
    targets = ("q_proj", "v_proj", "down_proj")
    peft_model = get_peft_model(
        hf, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), use_rslora=use_rslora, **PATTERNS)
    ).eval()
    inject_lora(ours, LoraSettings(rank=4, alpha=8, targets=targets, use_rslora=use_rslora, **PATTERNS))
    g = torch.Generator().manual_seed(2)
    modules = lora_modules(ours)
    assert len(modules) == 9
    with torch.no_grad():
        for name, module in modules.items():
            layer = peft_model.base_model.model.get_submodule(name)
            assert module.rank == layer.r["default"], name
            assert module.scaling == pytest.approx(layer.scaling["default"]), name
            layer.lora_B["default"].weight.normal_(0, 0.1, generator=g)
            module.lora_A.weight.copy_(layer.lora_A["default"].weight)
            module.lora_B.weight.copy_(layer.lora_B["default"].weight)
        assert (ours.eval()(IDS) - peft_model(IDS).logits).abs().max() < 1e-5
    ranks = {n: m.rank for n, m in modules.items()}
    assert ranks["model.layers.1.self_attn.q_proj"] == 8 and ranks["model.layers.0.self_attn.q_proj"] == 4
    assert ranks["model.layers.2.self_attn.v_proj"] == 3 and ranks["model.layers.1.mlp.down_proj"] == 2


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(rank_pattern={"o_proj": 2}), "rank_pattern: key 'o_proj' matches no LoRA module"),
        (dict(alpha_pattern={"layers.9.self_attn.q_proj": 2.0}), "alpha_pattern: key 'layers.9.self_attn.q_proj'"),
        (dict(rank_pattern={"q_proj": 65}), "rank_pattern['q_proj']=65 is out of range: allowed 1 to 64"),
        (dict(alpha_pattern={"q_proj": -1.0}), "alpha_pattern['q_proj']=-1.0 is out of range"),
    ],
)
def test_bad_patterns_are_refused_and_leave_the_model_alone(changes, message):
    _, ours = tiny_hf_llama(kv_heads=2)
    before = {n: type(m) for n, m in ours.named_modules()}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        inject_lora(ours, LoraSettings(rank=4, targets=("q_proj", "v_proj"), **changes))
    assert {n: type(m) for n, m in ours.named_modules()} == before
