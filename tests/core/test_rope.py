"""RoPE from Hugging Face configs: both config layouts (transformers 4's top-level `rope_theta` /
`rope_scaling`, transformers 5's `rope_parameters`), `llama3` and `linear` scaling, against
transformers' own LlamaForCausalLM; any other scaling is refused with one line naming it."""

import json

import pytest
import torch

from explorer.core.checkpoint import load_checkpoint
from explorer.core.llama import LlamaConfig

LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
LINEAR = {"rope_type": "linear", "factor": 4.0}


def _save_hf(tmp_path, rope_theta, rope_scaling, layout):
    """A random transformers Llama saved to tmp_path with its RoPE written in `layout`; returns it."""
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM as HFLlama

    hf_config = HFConfig(
        vocab_size=61,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=rope_theta,
        rope_scaling=dict(rope_scaling) if rope_scaling else None,
    )
    torch.manual_seed(0)
    hf = HFLlama(hf_config).eval()
    hf.save_pretrained(tmp_path)
    cfg_path = tmp_path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert "rope_parameters" in cfg and "rope_theta" not in cfg  # what transformers 5 writes
    if layout == "old":
        params = cfg.pop("rope_parameters")
        cfg["rope_theta"] = params.pop("rope_theta")
        if params.get("rope_type", "default") == "default":
            cfg["rope_scaling"] = None
        else:  # the oldest files say "type"
            params["type"] = params.pop("rope_type")
            cfg["rope_scaling"] = params
        cfg_path.write_text(json.dumps(cfg))
    return hf


@pytest.mark.parametrize("layout", ["old", "new"])
@pytest.mark.parametrize(
    "rope_theta, scaling",
    [(500000.0, LLAMA3), (10000.0, LINEAR), (500000.0, None)],
    ids=["llama3-theta500k", "linear", "plain-theta500k"],
)
def test_logits_equal_transformers(tmp_path, rope_theta, scaling, layout):
    from transformers import AutoModelForCausalLM

    hf = _save_hf(tmp_path, rope_theta, scaling, layout)
    ours = load_checkpoint(tmp_path).eval()
    assert ours.config.rope_theta == rope_theta
    ids = torch.randint(0, 61, (2, 96), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
        assert (ours(ids) - expected).abs().max() < 1e-5
        # The file means the same to transformers in either layout.
        reread = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
        assert (reread(ids).logits - expected).abs().max() < 1e-5
    # Scaling matters at these positions: plain RoPE at the same theta gives other logits.
    if scaling is not None:
        plain = LlamaConfig(**{**ours.config.__dict__, "rope_scaling": None})
        from explorer.core.llama import LlamaForCausalLM

        unscaled = LlamaForCausalLM(plain).eval()
        unscaled.load_state_dict(ours.state_dict())
        with torch.no_grad():
            assert (unscaled(ids) - expected).abs().max() > 1e-3


def test_saved_config_round_trips_the_scaling(tmp_path):
    from transformers import AutoModelForCausalLM

    from explorer.core.llama import save_pretrained

    _save_hf(tmp_path / "a", 500000.0, LLAMA3, "new")
    ours = load_checkpoint(tmp_path / "a").eval()
    save_pretrained(ours, tmp_path / "b")
    again = load_checkpoint(tmp_path / "b").eval()
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "b").eval()
    ids = torch.randint(0, 61, (1, 80))
    with torch.no_grad():
        assert torch.equal(again(ids), ours(ids))
        assert (hf(ids).logits - ours(ids)).abs().max() < 1e-5


@pytest.mark.parametrize("rope_type", ["yarn", "dynamic", "longrope", "su"])
@pytest.mark.parametrize("layout", ["rope_scaling", "rope_parameters"])
def test_other_scaling_is_refused_naming_it(rope_type, layout):
    d = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}
    d[layout] = {"rope_type": rope_type, "factor": 2.0, "rope_theta": 10000.0}
    with pytest.raises(ValueError, match=rf"rope_type={rope_type!r} is not supported") as err:
        LlamaConfig.from_hf_dict(d)
    assert "\n" not in str(err.value) and "llama3" in str(err.value) and "linear" in str(err.value)


@pytest.mark.parametrize(
    "rope, problem",
    [
        ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}, "high_freq_factor"),
        ({"rope_type": "linear"}, "factor"),
        ({"rope_type": "linear", "factor": "2"}, "factor"),
        ({"rope_type": "linear", "factor": -1.0}, "factor"),
        ({**LLAMA3, "high_freq_factor": 1.0}, "high_freq_factor"),
        ({"rope_type": "default", "rope_theta": 0}, "rope_theta"),
        ({"rope_type": "default", "partial_rotary_factor": 0.5}, "partial_rotary_factor"),
        ("linear", "rope_parameters"),
    ],
)
def test_bad_rope_values_are_one_line(rope, problem):
    d = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "rope_parameters": rope}
    with pytest.raises(ValueError, match=problem) as err:
        LlamaConfig.from_hf_dict(d, where="cfg.json")
    assert "\n" not in str(err.value) and str(err.value).startswith("cfg.json")


def test_missing_rope_theta_is_transformers_default():
    c = LlamaConfig.from_hf_dict({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4})
    assert c.rope_theta == 10000.0 and c.rope_scaling is None


def test_budget_command_reads_either_layout_and_refuses_other_scaling(tmp_path, capsys):
    from explorer import cli

    _save_hf(tmp_path / "new", 500000.0, LLAMA3, "new")
    _save_hf(tmp_path / "old", 500000.0, LLAMA3, "old")
    capsys.readouterr()
    assert cli.main(["budget", "--model", str(tmp_path / "new"), "--json"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert cli.main(["budget", "--model", str(tmp_path / "old"), "--json"]) == 0
    assert (
        json.loads(capsys.readouterr().out)["trainable_params"]
        == new["trainable_params"]
        == 2 * 8 * ((64 + 64) + (64 + 32))
    )
    cfg = json.loads((tmp_path / "new" / "config.json").read_text())
    cfg["rope_parameters"]["rope_type"] = "yarn"
    (tmp_path / "new" / "config.json").write_text(json.dumps(cfg))
    assert cli.main(["budget", "--model", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rope_type='yarn' is not supported" in err
