"""Zero-init gated prefix attention against PEFT's AdaptionPrompt, and its zero-init invariants."""

import pytest
import torch
from helpers import tiny_hf_llama, tiny_llama

from explorer.core.adapters import mark_only_adapters_trainable
from explorer.core.lora import LoraSettings, inject_lora
from explorer.core.prefix import PrefixSettings, inject_prefix, prefix_adapters, remove_prefix

IDS = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_per_layer_identity_gate_equals_peft_adaption_prompt(kv_heads):
    from peft import AdaptionPromptConfig, get_peft_model

    hf, ours = tiny_hf_llama(kv_heads=kv_heads)
    peft_model = get_peft_model(hf, AdaptionPromptConfig(adapter_len=5, adapter_layers=2, task_type="CAUSAL_LM")).eval()
    inject_prefix(ours, PrefixSettings(length=5, layers=2, gate_shape="layer", gate_fn="identity"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for i, adapter in prefix_adapters(ours).items():
            peft_attn = peft_model.base_model.model.model.layers[i].self_attn
            peft_attn.adaption_gate.copy_(torch.randn(1, generator=g))  # non-zero gates
            adapter.prompt.copy_(peft_attn.adaption_prompt[0])
            adapter.gate.copy_(peft_attn.adaption_gate)
        expected = peft_model(input_ids=IDS).logits
        assert (ours(IDS) - expected).abs().max() < 1e-5
        probs = []
        assert (ours(IDS, probs_out=probs) - expected).abs().max() < 1e-5
    # Adapted layers show [prompt | tokens]: K + T columns; the prompt part sums to the gate.
    assert probs[-1].shape == (2, 4, 20, 25) and probs[0].shape == (2, 4, 20, 20)
    gate = prefix_adapters(ours)[2].gate_values()
    assert torch.allclose(probs[-1][..., :5].sum(-1), gate.expand(2, 4, 20), atol=1e-5)
    assert torch.allclose(probs[-1][..., 5:].sum(-1), torch.ones(2, 4, 20), atol=1e-5)


@pytest.mark.parametrize("gate_shape", ["head", "layer"])
@pytest.mark.parametrize("gate_fn", ["tanh", "identity"])
def test_zero_gates_give_base_logits_exactly(gate_shape, gate_fn):
    model = tiny_llama()
    with torch.no_grad():
        base = model(IDS)
    inject_prefix(
        model,
        PrefixSettings(length=4, layers=3, gate_shape=gate_shape, gate_fn=gate_fn),
        torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        assert torch.equal(model(IDS), base)
    remove_prefix(model)
    with torch.no_grad():
        assert torch.equal(model(IDS), base)


def test_gradients_reach_only_prompts_and_gates():
    model = tiny_llama()
    inject_prefix(model, PrefixSettings(length=4, layers=2), torch.Generator().manual_seed(0))
    names = mark_only_adapters_trainable(model)
    assert sorted(n.rsplit(".", 1)[-1] for n in names) == ["gate", "gate", "prompt", "prompt"]
    model.train()
    model(IDS).logsumexp(-1).mean().backward()
    for name, p in model.named_parameters():
        if name.endswith("gate"):
            assert p.grad is not None and p.grad.abs().max() > 0  # the gate moves first
        elif not name.endswith("prompt"):
            assert p.grad is None
    # Per-head gates: one per head in each of the top two layers.
    assert [a.gate.shape[0] for a in prefix_adapters(model).values()] == [4, 4]
    assert list(prefix_adapters(model)) == [1, 2]


def test_prefix_and_lora_together_start_at_the_base():
    model = tiny_llama()
    with torch.no_grad():
        base = model(IDS)
    inject_lora(model, LoraSettings(rank=4, targets=("k_proj", "v_proj")))
    inject_prefix(model, PrefixSettings(length=3, layers=1, init="tokens"), torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(IDS), base)


@pytest.mark.parametrize(
    "settings, message",
    [
        (PrefixSettings(length=0), "prefix length K=0 is out of range: allowed 1 or more"),
        (PrefixSettings(layers=4), "prefix layers L=4 is out of range: allowed 1 to 3"),
        (PrefixSettings(gate_shape="token"), "gate shape='token' is unknown"),
        (PrefixSettings(gate_fn="sigmoid"), "gate function='sigmoid' is unknown"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_attached(settings, message):
    model = tiny_llama()
    with pytest.raises(ValueError, match=message):
        inject_prefix(model, settings)
    assert not prefix_adapters(model)


def test_adapted_model_is_deterministic_from_its_generator():
    a, b = tiny_llama(), tiny_llama()
    inject_prefix(a, PrefixSettings(), torch.Generator().manual_seed(7))
    inject_prefix(b, PrefixSettings(), torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
