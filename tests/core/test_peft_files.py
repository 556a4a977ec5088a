"""Reading and writing PEFT adapter directories: against files PEFT itself writes, and strictness."""

import json
import math
import pickle
import struct

import pytest
import torch

from explorer.core.peft_files import (
    PICKLE_NAME,
    WEIGHTS_NAME,
    AdapterFileError,
    pattern_key,
    read_adapter,
    read_safetensors_header,
    target_matches,
    write_adaption_prompt_adapter,
    write_lora_adapter,
)
from tests.helpers import tiny_hf_llama


def _peft_lora_dir(tmp_path, **config):
    from peft import LoraConfig, get_peft_model

    hf, _ = tiny_hf_llama(layers=3)
    model = get_peft_model(hf, LoraConfig(**config))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=g)
    model.save_pretrained(tmp_path / "peft")
    return tmp_path / "peft", model


def test_reads_what_peft_writes_with_patterns_rslora_and_layers(tmp_path):
    path, model = _peft_lora_dir(
        tmp_path,
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "o_proj"],
        use_rslora=True,
        layers_to_transform=[0, 2],
        rank_pattern={"v_proj": 2, "layers.2.self_attn.q_proj": 6},
        alpha_pattern={"o_proj": 3},
    )
    adapter = read_adapter(path)
    assert adapter.peft_type == "LORA"
    assert {m.layer for m in adapter.lora} == {0, 2}
    assert len(adapter.lora) == 6
    for m in adapter.lora:
        layer = model.base_model.model.get_submodule(m.name)
        assert m.rank == layer.r["default"]
        assert m.alpha == layer.lora_alpha["default"]
        assert m.scaling == pytest.approx(layer.scaling["default"])
        assert torch.equal(m.A, layer.lora_A["default"].weight.detach())
        assert torch.equal(m.B, layer.lora_B["default"].weight.detach())
        assert m.shape == (64, 64)
    assert adapter.module("model.layers.2.self_attn.q_proj").rank == 6
    assert adapter.module("model.layers.0.self_attn.q_proj").rank == 4
    assert adapter.module("model.layers.0.self_attn.o_proj").scaling == pytest.approx(3 / math.sqrt(4))


def test_reads_peft_dora_magnitude(tmp_path):
    path, model = _peft_lora_dir(tmp_path, r=4, lora_alpha=8, target_modules=["q_proj"], use_dora=True)
    adapter = read_adapter(path)
    for m in adapter.lora:
        layer = model.base_model.model.get_submodule(m.name)
        assert torch.equal(m.magnitude, layer.lora_magnitude_vector["default"].weight.detach())


def test_reads_peft_adaption_prompt(tmp_path):
    from peft import AdaptionPromptConfig, get_peft_model

    hf, _ = tiny_hf_llama(layers=3)
    model = get_peft_model(hf, AdaptionPromptConfig(adapter_len=5, adapter_layers=2, target_modules="self_attn"))
    model.save_pretrained(tmp_path / "ap")
    adapter = read_adapter(tmp_path / "ap")
    assert adapter.peft_type == "ADAPTION_PROMPT"
    assert [p.layer for p in adapter.prompts] == [1, 2]
    for p in adapter.prompts:
        attn = model.base_model.model.model.layers[p.layer].self_attn
        assert torch.equal(p.prompt, attn.adaption_prompt[0].detach())
        assert p.prompt.shape == (5, 64)


@pytest.mark.parametrize(
    "key,name,expected",
    [
        ("q_proj", "model.layers.0.self_attn.q_proj", True),
        ("self_attn.q_proj", "model.layers.0.self_attn.q_proj", True),
        ("proj", "model.layers.0.self_attn.q_proj", False),  # must end at a dot boundary
        (r"model\.layers\.[01]\..*q_proj", "model.layers.1.self_attn.q_proj", True),
        (r"model\.layers\.[01]\..*q_proj", "model.layers.2.self_attn.q_proj", False),
        ("layers.0.self_attn.q_proj", "model.layers.10.self_attn.q_proj", False),
    ],
)
def test_pattern_matching_is_peft_s(key, name, expected):
    from peft.utils.other import get_pattern_key

    assert (pattern_key([key], name) == key) is expected
    assert (get_pattern_key([key], name) == key) is expected


def test_target_matching():
    assert target_matches(["q_proj"], "model.layers.0.self_attn.q_proj")
    assert not target_matches(["q_proj"], "model.layers.0.self_attn.k_proj")
    assert target_matches(r".*\.(q|v)_proj", "model.layers.0.self_attn.v_proj")
    assert target_matches("all-linear", "model.layers.0.mlp.up_proj")


def test_write_then_read_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    modules = {
        f"model.layers.{i}.self_attn.q_proj": {
            "A": torch.randn(3, 16, generator=g),
            "B": torch.randn(8, 3, generator=g),
            "magnitude": torch.rand(8, generator=g) + 1,
        }
        for i in range(2)
    }
    write_lora_adapter(tmp_path / "a", modules, r=3, lora_alpha=6, use_dora=True)
    adapter = read_adapter(tmp_path / "a")
    assert [m.name for m in adapter.lora] == list(modules)
    for m in adapter.lora:
        assert torch.equal(m.A, modules[m.name]["A"]) and torch.equal(m.magnitude, modules[m.name]["magnitude"])
        assert m.scaling == 2.0
    prompts = {i: (torch.randn(4, 16, generator=g), torch.randn(1, generator=g)) for i in (5, 6)}
    write_adaption_prompt_adapter(tmp_path / "p", prompts)
    adapter = read_adapter(tmp_path / "p")
    assert adapter.config["adapter_len"] == 4 and adapter.config["adapter_layers"] == 2
    assert torch.equal(adapter.prompts[1].gate, prompts[6][1])


def _small(tmp_path, **cfg):
    g = torch.Generator().manual_seed(0)
    write_lora_adapter(
        tmp_path,
        {"model.layers.0.self_attn.q_proj": {"A": torch.randn(2, 8, generator=g), "B": torch.randn(8, 2, generator=g)}},
        r=2,
        lora_alpha=4,
    )
    if cfg:
        c = json.loads((tmp_path / "adapter_config.json").read_text())
        c.update(cfg)
        (tmp_path / "adapter_config.json").write_text(json.dumps(c))
    return tmp_path


def _raw_safetensors(path, header: dict, data: bytes):
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def test_pickle_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    d = _small(tmp_path / "a")
    (d / WEIGHTS_NAME).unlink()
    (d / PICKLE_NAME).write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(AdapterFileError, match="pickle") as err:
        read_adapter(d)
    assert str(d / PICKLE_NAME) in str(err.value) and "arbitrary code" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "header,data,message",
    [
        ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "claims bytes up to 16"),
        ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, b"\0" * 12, "data_offsets span 12"),
        (
            {
                "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            "overlaps",
        ),
        ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "unaccounted bytes"),
        ({"x": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype"),
        ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}}, b"\0" * 8, "invalid shape"),
        ({"x": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 8]}}, b"\0" * 8, "span 8"),
    ],
)
def test_hostile_headers_are_refused_before_safetensors_sees_them(tmp_path, header, data, message):
    path = tmp_path / "w.safetensors"
    _raw_safetensors(path, header, data)
    with pytest.raises(AdapterFileError, match=message) as err:
        read_safetensors_header(path)
    assert str(err.value).startswith(str(path))


def test_header_length_beyond_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(AdapterFileError, match="limit"):
        read_safetensors_header(path)
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(AdapterFileError, match="claims 1000 bytes"):
        read_safetensors_header(path)
    path.write_bytes(struct.pack("<Q", 2) + b"{]")
    with pytest.raises(AdapterFileError, match="not valid JSON"):
        read_safetensors_header(path)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("r", "8", "wrong type: r"),
        ("r", 3, "says r=3"),
        ("lora_alpha", None, None),  # PEFT's default applies
        ("lora_alpha", [1], "wrong type: lora_alpha"),
        ("use_rslora", "yes", "wrong type: use_rslora"),
        ("peft_type", "IA3", "does not read"),
        ("peft_type", "FOO", "unknown peft_type"),
        ("rank_pattern", {"q_proj": 0}, "wrong type"),
        ("rank_pattern", {"(": 2}, "not a valid pattern"),
        ("rank_pattern", {"(a+)+": 2}, "nested repetition"),
        ("target_modules", ["k_proj"], "not among target_modules"),
        ("layers_to_transform", [1], "outside layers_to_transform"),
        ("use_dora", True, "no lora_magnitude_vector"),
    ],
)
def test_config_problems_name_the_file_and_field(tmp_path, field, value, message):
    d = _small(tmp_path, **{field: value})
    if message is None:
        assert read_adapter(d).lora[0].scaling == 8 / 2
        return
    with pytest.raises(AdapterFileError, match=message) as err:
        read_adapter(d)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(d))


def test_shape_disagreement_nan_and_missing_files(tmp_path):
    from safetensors.torch import save_file

    d = _small(tmp_path / "a")
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(2, 8),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.ones(8, 3),
        },
        str(d / WEIGHTS_NAME),
    )
    with pytest.raises(AdapterFileError, match="disagree on the rank"):
        read_adapter(d)
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.full((2, 8), math.nan),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.ones(8, 2),
        },
        str(d / WEIGHTS_NAME),
    )
    with pytest.raises(AdapterFileError, match="NaN"):
        read_adapter(d)
    (d / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        read_adapter(d)
    (d / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        read_adapter(d)
    with pytest.raises(FileNotFoundError, match="no such adapter directory"):
        read_adapter(tmp_path / "nowhere")
