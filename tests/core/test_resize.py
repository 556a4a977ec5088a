"""Resizing LoRA adapters: against a dense SVD of ΔW, round trips through PEFT, the command's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.core.peft_files import read_adapter, write_lora_adapter
from explorer.core.resize import (
    FIXED_TEXT,
    best_rank_k_factors,
    factor_svd,
    plan_resize,
    resize_adapter,
)
from explorer.schema.rank_advice import energy_rank
from tests.helpers import tiny_hf_llama

ROOT = Path(__file__).resolve().parents[2]


def dense_best(delta: torch.Tensor, k: int) -> torch.Tensor:
    """The best rank-k approximation of a dense matrix, by a full SVD in float64."""
    U, S, Vh = torch.linalg.svd(delta.double(), full_matrices=False)
    return (U[:, :k] * S[:k]) @ Vh[:k]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b.double()) / torch.linalg.norm(b.double()).clamp_min(1e-300))


# ---- the maths on random factors ---------------------------------------------------------------


@pytest.mark.parametrize("shape,r", [((48, 32), 8), ((20, 70), 6), ((16, 16), 16)])
@pytest.mark.parametrize("scaling,new_scaling", [(2.0, 0.5), (0.25, 3.0), (-1.5, -0.7)])
def test_best_rank_k_from_factors_equals_dense_truncated_svd(shape, r, scaling, new_scaling):
    g = torch.Generator().manual_seed(r + shape[0])
    out_f, in_f = shape
    A = torch.randn(r, in_f, generator=g)
    B = torch.randn(out_f, r, generator=g) * torch.logspace(0, -1.5, r)  # distinct values, decaying
    delta = scaling * (B.double() @ A.double())
    for k in (1, r // 2, r):
        A_k, B_k = best_rank_k_factors(A, B, scaling, k, new_scaling)
        assert A_k.shape == (k, in_f) and B_k.shape == (out_f, k) and A_k.dtype == A.dtype
        approx = new_scaling * (B_k.double() @ A_k.double())
        assert rel(approx, dense_best(delta, k)) < 1e-5
        # split symmetrically: B_k's columns and A_k's rows have equal norms, sqrt(σ_i / |s'|)
        np.testing.assert_allclose(torch.linalg.norm(B_k, dim=0), torch.linalg.norm(A_k, dim=1), rtol=1e-5)


def test_factor_svd_values_are_those_of_dense_delta():
    g = torch.Generator().manual_seed(3)
    A, B = torch.randn(5, 40, generator=g), torch.randn(30, 5, generator=g)
    _, S, _ = factor_svd(A, B, 0.7, vectors=False)
    np.testing.assert_allclose(S.numpy(), torch.linalg.svdvals(0.7 * (B.double() @ A.double()))[:5].numpy(), rtol=1e-10)


def test_zero_delta_resizes_to_zero_factors():
    A, B = torch.randn(4, 10), torch.zeros(12, 4)
    A_k, B_k = best_rank_k_factors(A, B, 2.0, 2, 1.0)
    assert torch.count_nonzero(A_k) == 0 and torch.count_nonzero(B_k) == 0


# ---- random adapters written by the explorer, resized, read back --------------------------------


def random_adapter(path: Path, r=8, alpha=16.0, **kwargs) -> dict:
    g = torch.Generator().manual_seed(7)
    modules = {}
    for layer in range(2):
        for kind, (out_f, in_f) in (("q_proj", (24, 24)), ("v_proj", (12, 24))):
            decay = torch.logspace(0, -2, r)
            modules[f"model.layers.{layer}.self_attn.{kind}"] = {
                "A": torch.randn(r, in_f, generator=g),
                "B": torch.randn(out_f, r, generator=g) * decay,
            }
    write_lora_adapter(path, modules, r=r, lora_alpha=alpha, **kwargs)
    return modules


@pytest.mark.parametrize("use_rslora", [False, True])
def test_resized_adapter_gives_dense_best_rank_k_per_module(tmp_path, use_rslora):
    random_adapter(tmp_path / "a", use_rslora=use_rslora)
    original = read_adapter(tmp_path / "a")
    result = resize_adapter(tmp_path / "a", tmp_path / "out", energy=0.95)
    resized = read_adapter(tmp_path / "out")
    assert {m.rank_after for m in result.plan.modules} != {8}
    for f in original.lora:
        delta = f.scaling * (f.B.double() @ f.A.double())
        values = torch.linalg.svdvals(delta).numpy()
        k = energy_rank(values, 0.95)
        g = resized.module(f.name)
        assert g.rank == k and g.alpha == f.alpha
        expected_scaling = f.alpha / (k**0.5 if use_rslora else k)
        assert g.scaling == pytest.approx(expected_scaling, rel=1e-12)
        assert rel(g.scaling * (g.B.double() @ g.A.double()), dense_best(delta, k)) < 1e-5
        m = next(p for p in result.plan.modules if p.name == f.name)
        assert m.energy_kept == pytest.approx(float((values[:k] ** 2).sum() / (values**2).sum()), rel=1e-9)
        assert m.energy_kept >= 0.95 and (k == 1 or (values[: k - 1] ** 2).sum() / (values**2).sum() < 0.95)
        assert m.params_after == k * sum(f.shape)


def test_rank_and_pattern_choices(tmp_path):
    random_adapter(tmp_path / "a")
    adapter = read_adapter(tmp_path / "a")
    plan = plan_resize(adapter, rank=3)
    assert [m.rank_after for m in plan.modules] == [3] * 4
    capped = plan_resize(adapter, rank=50)
    assert [m.rank_after for m in capped.modules] == [8] * 4 and "at most 8" in capped.modules[0].note
    # PEFT's rule: the first key that matches the end of the path wins; unnamed modules keep their rank
    plan = plan_resize(adapter, rank_pattern={"model.layers.1.self_attn.q_proj": 2, "q_proj": 5})
    ranks = {m.name: m.rank_after for m in plan.modules}
    assert ranks == {
        "model.layers.0.self_attn.q_proj": 5,
        "model.layers.0.self_attn.v_proj": 8,
        "model.layers.1.self_attn.q_proj": 2,
        "model.layers.1.self_attn.v_proj": 8,
    }
    r, rank_pattern, _, alpha_pattern = plan.config_patterns()
    assert r == 8 and rank_pattern == {"model.layers.0.self_attn.q_proj": 5, "model.layers.1.self_attn.q_proj": 2}
    assert alpha_pattern == {}


def test_everything_else_in_the_file_is_copied_unchanged(tmp_path):
    random_adapter(tmp_path / "a", use_dora=False)
    # a modules_to_save weight rides along in the file
    from safetensors.torch import load_file, save_file

    wpath = tmp_path / "a/adapter_model.safetensors"
    tensors = load_file(str(wpath))
    extra = torch.arange(6.0).reshape(2, 3)
    tensors["base_model.model.lm_head.modules_to_save.default.weight"] = extra
    save_file(tensors, str(wpath))
    resize_adapter(tmp_path / "a", tmp_path / "out", rank=2)
    out = load_file(str(tmp_path / "out/adapter_model.safetensors"))
    assert torch.equal(out["base_model.model.lm_head.modules_to_save.default.weight"], extra)
    cfg_in = json.loads((tmp_path / "a/adapter_config.json").read_text())
    cfg_out = json.loads((tmp_path / "out/adapter_config.json").read_text())
    changed = {k for k in cfg_in if cfg_in[k] != cfg_out[k]}
    assert changed <= {"r", "rank_pattern", "alpha_pattern", "lora_alpha"} and cfg_out["r"] == 2


# ---- round trips through PEFT ------------------------------------------------------------------


def peft_adapter(tmp_path: Path, **config) -> tuple[Path, Path]:
    """A tiny transformers Llama saved in tmp, a PEFT LoRA adapter on it with moved B, both dirs."""
    from peft import LoraConfig, get_peft_model

    hf, _ = tiny_hf_llama(layers=2)
    base = tmp_path / "base"
    hf.save_pretrained(base)
    model = get_peft_model(hf, LoraConfig(**config))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=g)
            if "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.rand(p.shape, generator=g))
    path = tmp_path / "adapter"
    model.save_pretrained(path)
    return path, base


def peft_deltas(base: Path, adapter: Path) -> dict:
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), adapter).eval()
    out = {}
    for name, module in model.base_model.model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            magnitude = None
            if module.lora_magnitude_vector and "default" in module.lora_magnitude_vector:
                magnitude = module.lora_magnitude_vector["default"].weight.detach().clone()
            out[name] = (module.get_delta_weight("default").detach(), module.r["default"], magnitude)
    return out


CONFIGS = {
    "plain": dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"]),
    "rslora": dict(r=8, lora_alpha=4, target_modules=["q_proj", "k_proj"], use_rslora=True),
    "patterns": dict(
        r=6,
        lora_alpha=12,
        target_modules=["q_proj", "v_proj", "down_proj"],
        rank_pattern={"down_proj": 4, "model.layers.1.self_attn.q_proj": 8},
        alpha_pattern={"v_proj": 3},
    ),
    "dora": dict(r=6, lora_alpha=8, target_modules=["q_proj", "o_proj"], use_dora=True),
}


@pytest.mark.parametrize("kind", list(CONFIGS))
@pytest.mark.parametrize(
    "how", [{"energy": 0.9}, {"rank": 3}, {"rank_pattern": {"q_proj": 2, "layers.0.mlp.down_proj": 1}}]
)
def test_peft_loads_the_result_and_its_delta_is_the_dense_best_rank_k(tmp_path, kind, how):
    if "rank_pattern" in how and kind not in ("patterns",):
        how = {"rank_pattern": {"q_proj": 2}}
    adapter, base = peft_adapter(tmp_path, **CONFIGS[kind])
    result = resize_adapter(adapter, tmp_path / "out", **how)
    before = peft_deltas(base, adapter)
    after = peft_deltas(base, tmp_path / "out")
    assert set(before) == set(after) and before
    planned = {m.name: m.rank_after for m in result.plan.modules}
    for name, (delta, r, magnitude) in before.items():
        new_delta, k, new_magnitude = after[name]
        assert k == planned[name] <= r
        assert rel(new_delta, dense_best(delta, k)) < 1e-5, name
        if magnitude is not None:  # DoRA: the magnitude vector is kept exactly
            assert torch.equal(new_magnitude, magnitude)


def test_logit_difference_matches_peft(tmp_path):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    adapter, base = peft_adapter(tmp_path, **CONFIGS["patterns"])
    result = resize_adapter(adapter, tmp_path / "out", energy=0.9, base=base)
    assert result.tokenized == "bytes modulo the vocabulary of 97"
    ids = torch.tensor([[b % 97 for b in FIXED_TEXT.encode()][:64]])
    assert result.text_tokens == ids.shape[1]
    with torch.no_grad():
        original = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), adapter).eval()(ids).logits
        resized = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), tmp_path / "out").eval()(ids).logits
        plain = LlamaForCausalLM.from_pretrained(base).eval()(ids).logits
    assert result.logit_difference > 0
    assert result.logit_difference == pytest.approx(float((original - resized).abs().max()), rel=1e-3, abs=1e-5)
    assert result.adapter_effect == pytest.approx(float((original - plain).abs().max()), rel=1e-3, abs=1e-5)


def test_dora_rows_keep_their_norms_after_a_resize(tmp_path):
    """DoRA: PEFT's weight m ⊙ (W0 + ΔW_k) / ‖W0 + ΔW_k‖_row keeps every row's norm m exactly."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    adapter, base = peft_adapter(tmp_path, **CONFIGS["dora"])
    resize_adapter(adapter, tmp_path / "out", rank=1)
    magnitudes = {name: m for name, (_, _, m) in peft_deltas(base, tmp_path / "out").items()}
    merged = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), tmp_path / "out").merge_and_unload()
    for name, m in magnitudes.items():
        rows = torch.linalg.norm(merged.get_submodule(name).weight.detach(), dim=1)
        torch.testing.assert_close(rows, m, rtol=1e-5, atol=1e-6)
