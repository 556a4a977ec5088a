"""Hugging Face checkpoint directories: logits equal transformers' AutoModelForCausalLM for each
supported model_type; hostile directories give one line each, before anything large is allocated."""

import json
import os

import pytest
import torch
from checkpoint_factory import KINDS, VOCAB, rewrite_json, save_checkpoint

from explorer.core.checkpoint import fingerprint, load_checkpoint, read_config
from explorer.core.llama import save_pretrained

IDS = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(3))


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize("kind", KINDS)
def test_logits_equal_transformers(tmp_path, kind):
    from transformers import AutoModelForCausalLM

    save_checkpoint(tmp_path, kind)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ours = load_checkpoint(tmp_path).eval()
    with torch.no_grad():
        expected = hf(IDS).logits
        assert (ours(IDS) - expected).abs().max().item() < 1e-5
        probs = []  # the explicit-probabilities path (attention maps) computes the same
        assert (ours(IDS, probs_out=probs) - expected).abs().max().item() < 1e-5
    if kind == "mistral":  # the window is honoured: nothing 8 or more positions back
        assert probs[0][0, 0, 20, :13].abs().max() == 0 and probs[0][0, 0, 20, 13:21].sum() > 0.99
    # Saving ours gives a directory transformers reads back to the same logits.
    save_pretrained(ours, tmp_path / "again")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert (again(IDS).logits - expected).abs().max().item() < 1e-5


def test_config_reads_what_each_type_means(tmp_path):
    save_checkpoint(tmp_path / "l", "llama")
    save_checkpoint(tmp_path / "q", "qwen2-sliding", tokenizer=False)
    llama, qwen = read_config(tmp_path / "l"), read_config(tmp_path / "q")
    assert llama.tie_word_embeddings and llama.rope_scaling["rope_type"] == "llama3" and llama.rope_theta == 500000
    assert llama.num_key_value_heads == 2 and llama.bos_token_id == 0 and llama.eos_token_id == 1
    assert qwen.qkv_bias and not qwen.attention_bias and qwen.window_of(0) is None and qwen.window_of(1) == 8


def test_sharded_checkpoint_loads_the_same(tmp_path):
    hf = save_checkpoint(tmp_path, "qwen2", max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and not (tmp_path / "model.safetensors").exists()
    with torch.no_grad():
        assert (load_checkpoint(tmp_path)(IDS) - hf(IDS).logits).abs().max().item() < 1e-5


def test_loads_straight_into_the_run_dtype_on_the_meta_device(tmp_path, monkeypatch):
    """bf16: every tensor is read and cast one at a time; the model is never materialised in fp32."""
    import explorer.core.llama as llama

    save_checkpoint(tmp_path, "llama")
    created = []
    real_init = llama.LlamaForCausalLM.__init__

    def spy(self, config):
        real_init(self, config)
        created.append({p.device.type for p in self.parameters()})

    monkeypatch.setattr(llama.LlamaForCausalLM, "__init__", spy)
    model = load_checkpoint(tmp_path, dtype=torch.bfloat16)
    assert created == [{"meta"}]
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32 and not model.model.rotary_emb.inv_freq.is_meta


def test_fingerprint_changes_with_the_weights_index(tmp_path):
    save_checkpoint(tmp_path / "a", "llama")
    save_checkpoint(tmp_path / "b", "llama", seed=1)
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "a")
    rewrite_json(tmp_path / "b" / "config.json", rms_norm_eps=1e-5)
    assert fingerprint(tmp_path / "a") != fingerprint(tmp_path / "b")


# --- hostile directories ------------------------------------------------------------------------


def test_pickle_weights_are_refused_unopened(tmp_path):
    save_checkpoint(tmp_path, "llama")
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert "pytorch_model.bin" in _one_line(err) and "convert them to safetensors" in str(err.value)


def test_other_model_types_are_refused_naming_the_supported(tmp_path):
    save_checkpoint(tmp_path, "llama")
    rewrite_json(tmp_path / "config.json", model_type="gpt2")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert "'gpt2'" in _one_line(err) and "llama, mistral, qwen2" in str(err.value)


def test_missing_shard(tmp_path):
    save_checkpoint(tmp_path, "llama", max_shard_size="40KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_checkpoint(tmp_path)
    assert shard.name in _one_line(err) and "missing" in str(err.value)


@pytest.mark.parametrize("outside", ["../elsewhere.safetensors", "/etc/passwd", "link.safetensors"])
def test_index_naming_a_file_outside_the_directory(tmp_path, outside):
    model = tmp_path / "model"
    save_checkpoint(model, "llama", max_shard_size="40KB")
    (tmp_path / "elsewhere.safetensors").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere.safetensors", model / "link.safetensors")
    index_path = model / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = outside
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError) as err:
        load_checkpoint(model)
    assert "outside the model directory" in _one_line(err)


def test_shapes_that_do_not_match_the_config(tmp_path):
    save_checkpoint(tmp_path, "mistral")
    rewrite_json(tmp_path / "config.json", intermediate_size=128)
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert "mlp.gate_proj.weight has shape [96, 64]" in _one_line(err) and "implies [128, 64]" in str(err.value)


def test_missing_and_unexpected_tensors(tmp_path):
    save_checkpoint(tmp_path, "llama")  # tied: no lm_head in the file
    rewrite_json(tmp_path / "config.json", tie_word_embeddings=False)
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert "lm_head.weight is missing" in _one_line(err)
    save_checkpoint(tmp_path / "q", "qwen2")
    rewrite_json(tmp_path / "q" / "config.json", model_type="llama")  # qwen2's q/k/v biases are extra for llama
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "q")
    assert "_proj.bias" in _one_line(err) and "a llama model with this config.json does not have" in str(err.value)


@pytest.mark.parametrize(
    "changes",
    [{"num_hidden_layers": 10**7}, {"hidden_size": 10**6, "intermediate_size": 4 * 10**6, "head_dim": 16}],
    ids=["layers-1e7", "hidden-1e6"],
)
def test_absurd_sizes_are_refused_before_allocating(tmp_path, changes, monkeypatch):
    import explorer.core.llama as llama

    save_checkpoint(tmp_path, "llama")
    rewrite_json(tmp_path / "config.json", **changes)
    monkeypatch.setattr(llama.LlamaForCausalLM, "__init__", lambda *a: pytest.fail("allocated a model"))
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert "the weights alone need" in _one_line(err) and "available" in str(err.value)


def test_damaged_files_and_configs(tmp_path):
    save_checkpoint(tmp_path, "llama")
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert "model.safetensors: unreadable" in _one_line(err)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert "config.json: not valid JSON" in _one_line(err)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": "2"}))
    with pytest.raises(ValueError) as err:
        read_config(tmp_path)
    assert "num_hidden_layers='2' must be a whole number" in _one_line(err)


def test_integer_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    save_checkpoint(tmp_path, "llama")
    state = load_file(tmp_path / "model.safetensors")
    state["model.norm.weight"] = state["model.norm.weight"].to(torch.int8)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path)
    assert "model.norm.weight is I8, not a float" in _one_line(err)


def test_adapters_on_a_bf16_base_train_in_fp32(tmp_path):
    """What a bf16 GPU run does (bf16 weights, autocast), on the CPU: adapters stay fp32 and learn."""
    from explorer.core.adapters import mark_only_adapters_trainable
    from explorer.core.lora import LoraSettings, inject_lora
    from explorer.core.prefix import PrefixSettings, inject_prefix

    save_checkpoint(tmp_path, "qwen2")
    reference = load_checkpoint(tmp_path).eval()
    model = load_checkpoint(tmp_path, dtype=torch.bfloat16).eval()
    for m in (model, reference):
        g = torch.Generator().manual_seed(0)
        inject_lora(m, LoraSettings(rank=4, targets=("q_proj", "v_proj", "down_proj"), init="pissa"), g)
        inject_prefix(m, PrefixSettings(length=3, layers=1, init="tokens"), g)
        mark_only_adapters_trainable(m)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(IDS)
    with torch.no_grad():
        assert (logits.float() - reference(IDS)).abs().max() < 0.1  # bf16's rounding, not a different model
    torch.nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), IDS.reshape(-1)).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trained)
    # without autocast the fp32 factors meet a bf16 input and the output keeps the base's dtype
    with torch.no_grad():
        lora_q = model.model.layers[0].self_attn.q_proj
        assert lora_q(torch.randn(2, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16
