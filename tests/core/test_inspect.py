"""The adapter report: figures against dense computations and PEFT, JSON schema, command line."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from explorer.core.analysis import amplification, pool_matrix
from explorer.core.inspect_adapter import format_report, inspect_adapter, matrix_snapshot, prefix_snapshots
from explorer.core.llama import save_pretrained
from explorer.core.peft_files import write_adaption_prompt_adapter, write_lora_adapter
from tests.helpers import tiny_hf_llama, tiny_llama

FIXED_MODULE_FIELDS = {
    "name": str,
    "shape": list,
    "rank": int,
    "alpha": float,
    "scaling": float,
    "fro_norm": float,
    "singular_values": list,
    "effective_rank": float,
    "stable_rank": float,
}


@pytest.fixture(scope="module")
def peft_adapter(tmp_path_factory):
    """A PEFT-written LoRA adapter (rank/alpha patterns, DoRA) with non-zero B, its PEFT model and dir."""
    from peft import LoraConfig, get_peft_model

    hf, _ = tiny_hf_llama(layers=3)
    base_dir = tmp_path_factory.mktemp("base")
    hf.save_pretrained(base_dir)
    model = get_peft_model(
        hf,
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj", "down_proj"],
            use_dora=True,
            rank_pattern={"down_proj": 2},
            alpha_pattern={"v_proj": 2},
        ),
    )
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=g)
    path = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(path)
    return path, model, base_dir


def test_module_figures_equal_dense_svd_of_peft_delta(peft_adapter):
    path, model, _ = peft_adapter
    report = inspect_adapter(path)
    assert report.peft_type == "LORA" and len(report.modules) == 9
    for m in report.modules:
        layer = model.base_model.model.get_submodule(m.name)
        delta = layer.get_delta_weight("default").detach().double()
        dense = torch.linalg.svdvals(delta)
        r = layer.r["default"]
        assert m.rank == r and len(m.singular_values) == r
        assert m.scaling == pytest.approx(layer.scaling["default"])
        assert m.shape == tuple(delta.shape)
        np.testing.assert_allclose(m.singular_values, dense[:r].numpy(), rtol=1e-4, atol=1e-7)
        assert m.fro_norm == pytest.approx(torch.linalg.norm(delta).item(), rel=1e-4)
        s = dense[:r]
        assert m.stable_rank == pytest.approx((s.square().sum() / s[0] ** 2).item(), rel=1e-4)
        p = s / s.sum()
        assert m.effective_rank == pytest.approx(torch.exp(-(p * p.log()).sum()).item(), rel=1e-4)
        assert m.energy_top_k[1] == pytest.approx((s[0] ** 2 / s.square().sum()).item(), rel=1e-4)
        assert m.dora is not None and m.dora.count == delta.shape[0]
    assert report.module("model.layers.1.mlp.down_proj").rank == 2
    assert report.module("model.layers.1.self_attn.v_proj").alpha == 2


def test_grid_is_layers_by_module_kinds(peft_adapter):
    report = inspect_adapter(peft_adapter[0])
    g = report.grid
    assert g.layers == [0, 1, 2] and g.modules == ["q_proj", "v_proj", "down_proj"]
    assert g.fro_norm[1][2] == report.module("model.layers.1.mlp.down_proj").fro_norm


def test_amplification_and_dora_row_scale_with_the_base(peft_adapter):
    path, model, base_dir = peft_adapter
    report = inspect_adapter(path, base=base_dir)
    for m in report.modules:
        layer = model.base_model.model.get_submodule(m.name)
        W0 = layer.base_layer.weight.detach()
        expected = amplification(
            W0,
            layer.lora_A["default"].weight.detach(),
            layer.lora_B["default"].weight.detach(),
            layer.scaling["default"],
        )
        assert m.amplification["factor"] == pytest.approx(expected["factor"], rel=1e-4)
        # DoRA's row factor m / ||W0 + ΔW||: PEFT initialised m to ||W0|| (B was 0), then B moved.
        dense = layer.lora_magnitude_vector["default"].weight.detach() / torch.linalg.norm(
            W0 + layer.get_delta_weight("default").detach(), dim=1
        )
        assert m.dora.row_scale_mean == pytest.approx(dense.mean().item(), rel=1e-4)
        assert m.dora.row_scale_min == pytest.approx(dense.min().item(), rel=1e-4)


def test_fan_in_fan_out_uses_the_transposed_base(tmp_path):
    g = torch.Generator().manual_seed(0)
    A, B, W0 = torch.randn(2, 12, generator=g), torch.randn(8, 2, generator=g), torch.randn(8, 12, generator=g)
    write_lora_adapter(tmp_path / "a", {"transformer.h.0.attn.c_attn": {"A": A, "B": B}}, r=2, lora_alpha=2)
    cfg = json.loads((tmp_path / "a/adapter_config.json").read_text())
    cfg["fan_in_fan_out"] = True
    (tmp_path / "a/adapter_config.json").write_text(json.dumps(cfg))
    from safetensors.torch import save_file

    (tmp_path / "base").mkdir()
    save_file({"transformer.h.0.attn.c_attn.weight": W0.T.contiguous()}, str(tmp_path / "base/model.safetensors"))
    report = inspect_adapter(tmp_path / "a", base=tmp_path / "base")
    m = report.modules[0]
    assert m.shape == (8, 12) and m.fan_in_fan_out and m.layer is None
    assert m.amplification["factor"] == pytest.approx(amplification(W0, A, B, 1.0)["factor"], rel=1e-5)
    snap = matrix_snapshot(report, m.name, display_size=4)
    assert snap.delta.shape == (4, 4)  # (in, out) layout, as the Conv1D weight is stored
    np.testing.assert_allclose(snap.delta, pool_matrix((B @ A).T, 4, 4).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(snap.base, pool_matrix(W0.T, 4, 4).numpy(), rtol=1e-6)  # W0 from the report's base


def test_matrix_snapshot_pools_delta_like_the_live_views(peft_adapter):
    path, model, _ = peft_adapter
    report = inspect_adapter(path)
    name = "model.layers.0.self_attn.q_proj"
    delta = model.base_model.model.get_submodule(name).get_delta_weight("default").detach()
    snap = matrix_snapshot(report, name, display_size=16)
    assert snap.shape == (64, 64) and snap.delta.shape == (16, 16)
    np.testing.assert_allclose(snap.delta, pool_matrix(delta, 16, 16).numpy(), rtol=1e-4, atol=1e-6)
    assert snap.spectrum.shape == (4,)


def test_adaption_prompt_report(tmp_path):
    g = torch.Generator().manual_seed(0)
    prompts = {i: (torch.randn(3, 64, generator=g), torch.tensor([0.1 * i])) for i in (1, 2)}
    write_adaption_prompt_adapter(tmp_path / "p", prompts)
    model = tiny_llama(layers=3)
    save_pretrained(model, tmp_path / "base")
    report = inspect_adapter(tmp_path / "p", base=tmp_path / "base")
    ap = report.adaption_prompt
    assert (ap.adapter_len, ap.adapter_layers, ap.hidden_size) == (3, 2, 64)
    assert [p.gate for p in ap.layers] == pytest.approx([0.1, 0.2])
    assert ap.layers[0].prompt_norm == pytest.approx(torch.linalg.norm(prompts[1][0]).item(), rel=1e-6)
    assert report.modules == [] and report.trainable_parameters == 2 * (3 * 64 + 1)
    assert [s.layer for s in prefix_snapshots(report)] == [1, 2]
    with pytest.raises(ValueError, match="prompts end at layer 2 but the base model has 4 layers"):
        save_pretrained(tiny_llama(layers=4), tmp_path / "base4")
        inspect_adapter(tmp_path / "p", base=tmp_path / "base4")


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "explorer", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_cli_json_has_the_fixed_fields(peft_adapter):
    proc = _cli("inspect", peft_adapter[0], "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["peft_type"] == "LORA"
    for m in data["modules"]:
        for key, typ in FIXED_MODULE_FIELDS.items():
            assert isinstance(m[key], typ), key
        assert len(m["shape"]) == 2 and len(m["singular_values"]) == m["rank"]
    text = _cli("inspect", peft_adapter[0], "--base", peft_adapter[2])
    assert text.returncode == 0 and "amplif." in text.stdout and "DoRA magnitude" in text.stdout


def test_cli_bad_adapter_is_one_line_exit_2(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "adapter_config.json").write_text("{not json")
    proc = _cli("inspect", d)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "adapter_config.json" in lines[0] and "invalid JSON" in lines[0]
    assert "Traceback" not in proc.stderr


# --- what PEFT counts as trainable, part by part ----------------------------------------------------


def _peft_saved(tmp_path, name, **lora_kw):
    """A PEFT adapter on a tiny Llama with attention biases, saved; and PEFT's own trainable count."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        attention_bias=True,
    )
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], **lora_kw))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    trainable, _ = model.get_nb_trainable_parameters()
    model.save_pretrained(tmp_path / name)
    return tmp_path / name, trainable, model


@pytest.mark.parametrize(
    "lora_kw, parts",
    [
        ({"modules_to_save": ["lm_head"]}, {"lora_A", "lora_B", "modules_to_save"}),
        ({"bias": "all"}, {"lora_A", "lora_B", "bias"}),
        ({"bias": "lora_only"}, {"lora_A", "lora_B", "bias"}),
        ({"lora_bias": True}, {"lora_A", "lora_B", "lora_bias"}),
        (
            {"use_dora": True, "modules_to_save": ["embed_tokens"], "bias": "lora_only"},
            {"lora_A", "lora_B", "lora_magnitude_vector", "modules_to_save", "bias"},
        ),
    ],
)
def test_trainable_parameters_are_what_peft_counts(tmp_path, lora_kw, parts):
    path, trainable, _ = _peft_saved(tmp_path, "a", **lora_kw)
    report = inspect_adapter(path)
    assert report.trainable_parameters == trainable
    assert set(report.trainable_parts.counts()) == parts
    data = report.to_json_dict()
    assert data["trainable_parameters"] == trainable and data["trainable_parts"]["lora_A"] > 0
    if "modules_to_save" in parts:
        assert report.trainable_parts.modules_to_save_tensors == [
            "lm_head.weight" if "lm_head" in lora_kw["modules_to_save"] else "model.embed_tokens.weight"
        ]
        assert "modules_to_save: " in format_report(report)
    if lora_kw.get("bias") == "lora_only":  # the adapted layers' own biases only
        assert all(".q_proj." in n or ".v_proj." in n for n in report.trainable_parts.bias_tensors)
    assert "trainable: lora_A" in format_report(report)


def test_lora_bias_tensors_are_shown(tmp_path):
    path, _, model = _peft_saved(tmp_path, "b", lora_bias=True)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n and n.endswith("bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "b")
    report = inspect_adapter(tmp_path / "b")
    for m in report.modules:
        layer = model.base_model.model.get_submodule(m.name)
        b = layer.lora_B["default"].bias.detach()
        assert m.lora_bias["count"] == b.numel() and m.lora_bias["norm"] == pytest.approx(b.norm().item(), rel=1e-5)
        assert m.lora_bias["merged_norm"] == pytest.approx(layer.scaling["default"] * b.norm().item(), rel=1e-5)
        assert (
            m.parameters == layer.lora_A["default"].weight.numel() + layer.lora_B["default"].weight.numel() + b.numel()
        )
    assert "lora_bias: 64 values" in format_report(report)
    assert report.to_json_dict()["modules"][0]["lora_bias"]["count"] == 64


@pytest.mark.parametrize(
    "field, value",
    [("bias", "some"), ("lora_bias", "yes"), ("modules_to_save", "lm_head"), ("modules_to_save", [3])],
)
def test_trainable_fields_of_the_config_are_type_checked(tmp_path, field, value):
    path, _, _ = _peft_saved(tmp_path, "c")
    cfg = json.loads((path / "adapter_config.json").read_text())
    cfg[field] = value
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=rf"adapter_config.json: wrong type: {field} is") as info:
        inspect_adapter(path)
    assert "\n" not in str(info.value)


def test_numerical_rank_uses_the_matrix_shape_tolerance(tmp_path):
    """A direction at 1e-5 of σ₁ in a 512 x 512 ΔW is below σ₁·512·eps (6.1e-5 σ₁): rank 1, as
    torch.linalg.matrix_rank says; the old r·eps tolerance (4.8e-7 σ₁ for r = 4) counted it."""
    g = torch.Generator().manual_seed(0)
    A = torch.linalg.qr(torch.randn(512, 4, generator=g))[0].T.contiguous()
    B = torch.linalg.qr(torch.randn(512, 4, generator=g))[0] * torch.tensor([1.0, 1e-5, 0.0, 0.0])
    write_lora_adapter(tmp_path / "r", {"model.layers.0.self_attn.q_proj": {"A": A, "B": B}}, r=4, lora_alpha=4)
    m = inspect_adapter(tmp_path / "r").modules[0]
    assert m.numerical_rank == 1 == torch.linalg.matrix_rank(B @ A).item()


def test_matrix_snapshot_of_dora_with_its_base_shows_the_merge(peft_adapter):
    path, model, base_dir = peft_adapter
    report = inspect_adapter(path, base=base_dir)
    name = "model.layers.1.self_attn.q_proj"
    layer = model.base_model.model.get_submodule(name)
    W0 = layer.base_layer.weight.detach()
    m = layer.lora_magnitude_vector["default"].weight.detach()
    V = W0 + layer.get_delta_weight("default").detach()
    merged = (m / torch.linalg.norm(V, dim=1))[:, None] * V  # PEFT's DoRA merge
    snap = matrix_snapshot(report, name, display_size=16)
    np.testing.assert_allclose(snap.base + snap.effective_update, pool_matrix(merged, 16, 16).numpy(), atol=2e-6)
    assert snap.effective_update_fro_norm == pytest.approx(torch.linalg.matrix_norm(merged - W0).item(), rel=1e-5)
    assert snap.effective_update_spectrum.shape == (64,) and snap.effective_update_partial is False
    assert matrix_snapshot(inspect_adapter(path), name).effective_update is None  # no base: no W0 to rescale
