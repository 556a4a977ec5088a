"""Our decoder against transformers' LlamaForCausalLM, and HF directories in and out."""

import json

import pytest
import torch
from helpers import tiny_hf_llama

from explorer.core.checkpoint import load_checkpoint
from explorer.core.llama import LlamaConfig, generate, save_pretrained


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa2", "mqa"])
def test_logits_equal_transformers(kv_heads):
    hf, ours = tiny_hf_llama(kv_heads=kv_heads)
    ids = torch.randint(0, 97, (2, 24))
    with torch.no_grad():
        expected = hf(ids).logits
        assert torch.allclose(ours(ids), expected, atol=1e-5, rtol=0)
        probs = []
        assert torch.allclose(ours(ids, probs_out=probs), expected, atol=1e-5, rtol=0)
    # The explicit-probabilities path hands out one causal map per layer, rows summing to 1.
    assert len(probs) == 3 and probs[0].shape == (2, 4, 24, 24)
    assert torch.allclose(probs[0].sum(-1), torch.ones(2, 4, 24), atol=1e-6)
    assert probs[0][0, 0, 0, 1:].abs().max() == 0


def test_hf_directory_round_trip(tmp_path):
    from transformers import LlamaForCausalLM as HFLlama

    hf, ours = tiny_hf_llama(kv_heads=2)
    save_pretrained(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llama"
    ids = torch.randint(0, 97, (1, 16))
    loaded_hf = HFLlama.from_pretrained(tmp_path).eval()
    loaded = load_checkpoint(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(ids), ours(ids))
        assert torch.allclose(loaded_hf(ids).logits, ours(ids), atol=1e-5)


def test_pickled_weights_are_refused(tmp_path):
    _, ours = tiny_hf_llama()
    save_pretrained(ours, tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickled weights are never loaded"):
        load_checkpoint(tmp_path)


def test_damaged_weights_give_a_clear_error(tmp_path):
    _, ours = tiny_hf_llama()
    save_pretrained(ours, tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_checkpoint(tmp_path)


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="num_key_value_heads"):
        LlamaConfig(num_attention_heads=4, num_key_value_heads=3)


def test_generate_extends_the_prompt():
    _, ours = tiny_hf_llama()
    out = generate(ours, torch.tensor([[1, 2, 3]]), 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 8) and out[0, :3].tolist() == [1, 2, 3]
    greedy = generate(ours, torch.tensor([[1, 2, 3]]), 5, temperature=0)
    assert torch.equal(greedy, generate(ours, torch.tensor([[1, 2, 3]]), 5, temperature=0))
