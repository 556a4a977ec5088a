"""Export: transformers + PEFT, loading OUT/base and OUT/adapter, compute the explorer's logits."""

import copy
import json
import subprocess
import sys

import pytest
import torch

from explorer.core.adapters import inject_adapters, mark_only_adapters_trainable
from explorer.core.export_adapter import build_trained_model, export_problem, export_state
from explorer.core.inspect_adapter import inspect_adapter
from explorer.core.llama import save_pretrained
from explorer.core.state_file import save_state
from explorer.schema.settings import TrainSettings
from tests.helpers import tiny_llama

IDS = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(3))


def _trained(base, settings: TrainSettings, seed=1):
    """Adapt a copy of `base` as the trainer does and move every trainable tensor away from its init."""
    model = copy.deepcopy(base)
    g = torch.Generator().manual_seed(seed)
    inject_adapters(model, settings, g, g)  # the translation the trainer and export share
    trainable = mark_only_adapters_trainable(model)
    with torch.no_grad():
        for _name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval(), {n: p.detach() for n, p in model.named_parameters() if n in trainable}


def _peft_logits(out):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(out / "base", attn_implementation="eager").eval()
    model = PeftModel.from_pretrained(hf, out / "adapter").eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def base():
    return tiny_llama(kv_heads=2, layers=3)


@pytest.mark.parametrize(
    "name,changes",
    [
        ("lora", dict(rank=4, targets=("q_proj", "v_proj"))),
        ("rslora", dict(rank=4, use_rslora=True, targets=("q_proj", "k_proj", "o_proj", "down_proj"), layers=(0, 2))),
        ("dora", dict(rank=2, use_dora=True, targets=("q_proj", "v_proj", "up_proj"))),
        ("pissa", dict(rank=4, init="pissa", targets=("q_proj", "v_proj"))),
        (
            "patterns",
            dict(
                rank=4,
                alpha=8.0,
                use_rslora=True,
                targets=("q_proj", "v_proj", "down_proj"),
                rank_pattern={"down_proj": 2, "model.layers.1.self_attn.q_proj": 6},
                alpha_pattern={"v_proj": 3.0},
            ),
        ),
        ("prefix", dict(method="prefix", prefix_len=5, prefix_layers=2, gate_shape="layer", gate_fn="identity")),
    ],
)
def test_peft_reproduces_our_logits(tmp_path, base, name, changes):
    settings = TrainSettings(**changes)
    ours, tensors = _trained(base, settings)
    save_state(tmp_path / "state.safetensors", tensors, settings.to_dict(), step=42)
    result = export_state(tmp_path / "state.safetensors", tmp_path / "out", base=base)
    assert result.peft_type == ("ADAPTION_PROMPT" if name == "prefix" else "LORA") and result.step == 42
    with torch.no_grad():
        expected = ours(IDS)
    assert (_peft_logits(tmp_path / "out") - expected).abs().max().item() < 1e-5
    # The exported adapter reads back through the strict reader and the report.
    report = inspect_adapter(tmp_path / "out" / "adapter")
    assert report.trainable_parameters == sum(t.numel() for t in tensors.values())
    assert json.loads((tmp_path / "out" / "export.json").read_text())["step"] == 42


def test_recording_directory_with_its_recorded_base(tmp_path, base):
    settings = TrainSettings(rank=2, alpha=4.0)
    ours, tensors = _trained(base, settings)
    save_pretrained(base, tmp_path / "basedir")
    rec = tmp_path / "rec"
    save_state(
        rec / "state.safetensors",
        tensors,
        settings.to_dict(),
        step=5,
        extra={"base_model_dir": str(tmp_path / "basedir")},
    )
    export_state(rec, tmp_path / "out")
    with torch.no_grad():
        assert (_peft_logits(tmp_path / "out") - ours(IDS)).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="already exists"):
        export_state(rec, tmp_path / "out")
    export_state(rec, tmp_path / "out", overwrite=True)
    # A state that does not fit the base it is exported on is refused, not half-written.
    with pytest.raises(ValueError, match="different base"):
        export_state(rec, tmp_path / "out2", base=tiny_llama(layers=2))
    assert not (tmp_path / "out2" / "adapter").exists()


def test_recording_config_names_the_base_and_a_different_base_is_refused(tmp_path, base):
    settings = TrainSettings(rank=2, alpha=4.0)
    ours, tensors = _trained(base, settings)
    save_pretrained(base, tmp_path / "basedir")
    rec = tmp_path / "rec"
    save_state(rec / "state.safetensors", tensors, settings.to_dict(), step=5)
    described = {"kind": "lm", "path": str(tmp_path / "basedir"), "config": base.config.to_hf_dict()}
    (rec / "config.json").write_text(json.dumps({"format": "peft-explorer-recording", "base": described}))
    result = export_state(rec, tmp_path / "out")
    assert result.base_source == str(tmp_path / "basedir")
    with torch.no_grad():
        assert (_peft_logits(tmp_path / "out") - ours(IDS)).abs().max().item() < 1e-5
    other = tiny_llama(kv_heads=2, layers=3, vocab=101)
    save_pretrained(other, tmp_path / "other")
    described["config"]["vocab_size"] = 101
    described["path"] = str(tmp_path / "basedir")
    (rec / "config.json").write_text(json.dumps({"base": described}))
    with pytest.raises(ValueError, match="not the base the run trained on"):
        export_state(rec, tmp_path / "out3")


@pytest.mark.parametrize(
    "changes,words",
    [
        (dict(method="prefix", gate_shape="head", gate_fn="identity"), ["per head", "one gate per layer"]),
        (dict(method="prefix", gate_shape="layer", gate_fn="tanh"), ["tanh"]),
        (dict(method="lora+prefix"), ["one method"]),
        (dict(method="full"), ["not an adapter"]),
        (dict(scenario="matrix", size_in=16, size_out=16, rank=2, target_rank=2), ["single matrix"]),
    ],
)
def test_refusals_say_why_and_what_exports(tmp_path, changes, words):
    settings = TrainSettings(**changes)
    problem = export_problem(settings)
    assert problem is not None and all(w in problem for w in words) and "AdaptionPrompt" in problem
    save_state(tmp_path / "s.safetensors", {"x": torch.zeros(1)}, settings.to_dict(), step=1)
    with pytest.raises(ValueError, match="cannot export") as err:
        export_state(tmp_path / "s.safetensors", tmp_path / "out", base=tiny_llama())
    assert words[0] in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out" / "adapter").exists()


def test_refusal_on_the_command_line_is_one_line_exit_2(tmp_path):
    words = ["per head"]
    settings = TrainSettings(method="prefix")
    save_state(tmp_path / "s.safetensors", {"x": torch.zeros(1)}, settings.to_dict(), step=1)
    proc = subprocess.run(
        [sys.executable, "-m", "explorer", "export", str(tmp_path / "s.safetensors"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and words[0] in proc.stderr
    assert not (tmp_path / "out" / "adapter").exists()


def test_exportable_settings_have_no_problem():
    assert export_problem(TrainSettings()) is None
    assert export_problem(TrainSettings(method="prefix", gate_shape="layer", gate_fn="identity")) is None


def test_export_on_the_shipped_base(tmp_path):
    try:
        from explorer.core.resources import load_base_model
        from explorer.schema.resources import base_model_dir

        base_model_dir()
    except (ImportError, FileNotFoundError):
        pytest.skip("the shipped base model is not built in this checkout")
    settings = TrainSettings(rank=2)
    ours, tensors = _trained(load_base_model(), settings)
    save_state(tmp_path / "state.safetensors", tensors, settings.to_dict(), step=3)
    export_state(tmp_path / "state.safetensors", tmp_path / "out")  # no base given: the shipped one
    model, *_ = build_trained_model(tmp_path / "state.safetensors")
    ids = IDS % ours.config.vocab_size
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    hf = PeftModel.from_pretrained(
        LlamaForCausalLM.from_pretrained(tmp_path / "out" / "base"), tmp_path / "out" / "adapter"
    ).eval()
    with torch.no_grad():
        expected = ours(ids)
        assert (model(ids) - expected).abs().max().item() < 1e-5
        assert (hf(input_ids=ids).logits - expected).abs().max().item() < 1e-5
