"""The shipped resources: tokenizer, corpora, base model, and finding them from an installed wheel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from explorer.core import resources as base_models
from explorer.core.llama import generate, lm_loss
from explorer.core.tokenizer import TOKENIZER, decode, encode, token_label
from explorer.schema import resources

REPO = Path(__file__).resolve().parents[2]


# --- tokenizer -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "def f(x):\n\treturn x  # ok", "naïve café ✓ 日本", "\x00\x07\x7f"])
def test_tokenizer_round_trips(text):
    ids = encode(text)
    assert all(0 <= i < 256 for i in ids) and len(ids) == len(text.encode("utf-8"))
    assert decode(ids) == text


def test_tokenizer_decodes_broken_utf8_and_labels_every_byte():
    assert decode([0x61, 0xE2, 0x62]) == "a\ufffdb"  # a sampled lone lead byte must not raise
    assert (token_label(32), token_label(10), token_label(ord("a")), token_label(7)) == ("␣", "⏎", "a", "\\x07")
    labels = [token_label(i) for i in range(256)]
    assert all(label and label.isprintable() for label in labels)
    assert TOKENIZER.vocab_size == 256
    with pytest.raises(ValueError):
        token_label(256)


# --- corpora ---------------------------------------------------------------------------------


def test_corpora_are_shipped_with_both_splits():
    assert resources.corpus_names() == ["base", "domain"]
    for name in ("base", "domain"):
        train, heldout = resources.load_corpus(name, "train"), resources.load_corpus(name, "heldout")
        assert len(heldout) > 1000 and len(train) > 10 * len(heldout)
        assert heldout not in train


def test_base_corpus_is_python_and_domain_corpus_is_code_review():
    base = resources.load_corpus("base", "train")
    assert base.startswith("# file: ") and base.count("\ndef ") > 100
    lines = resources.load_corpus("domain", "train").splitlines()
    review = [line for line in lines if line.startswith("# review: ")]
    assert len(review) > 200
    assert sum(line.startswith("@@ -") for line in lines) >= len(review)
    assert sum(line.startswith("-") and not line.startswith("---") for line in lines) > 200
    assert sum(line.startswith("+") and not line.startswith("+++") for line in lines) > 200
    assert any("f'" in line or 'f"' in line for line in lines if line.startswith("+"))


def test_missing_corpus_and_bad_split_are_clear_errors():
    with pytest.raises(FileNotFoundError, match=r"nosuch\.train\.txt\.gz"):
        resources.load_corpus("nosuch")
    with pytest.raises(ValueError, match="heldout"):
        resources.load_corpus("base", "test")


# --- base model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base():
    return base_models.load_base_model()


def _windows(text: str, seq_len: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` non-overlapping windows spread evenly over the text (as in train_base.evaluate)."""
    ids = torch.tensor(encode(text))
    n = (len(ids) - 1) // seq_len
    starts = (torch.arange(n) * seq_len)[torch.linspace(0, n - 1, count).long()].tolist()
    return (
        torch.stack([ids[s : s + seq_len] for s in starts]),
        torch.stack([ids[s + 1 : s + seq_len + 1] for s in starts]),
    )


def test_base_model_is_small_gqa_llama_and_matches_its_training_record(base):
    cfg, info = base.config, resources.base_training_info()
    assert cfg.vocab_size == 256 and cfg.num_key_value_heads < cfg.num_attention_heads
    size = sum(p.stat().st_size for p in resources.base_model_dir().iterdir())
    assert size < 6.5e6
    assert info["heldout_bits_per_byte"] < info["unigram_heldout_bits_per_byte"] - 1.0
    assert info["heldout_bits_per_byte"] < 2.2  # 2.17 after the second stage (2.27 after the first)
    # a model trained in stages (train_base.py --init) records each; the totals cover them all
    stages = [*info.get("stages", []), info]
    assert info["steps"] == sum(s.get("stage_steps", s["steps"]) for s in stages)
    assert info["tokens_seen"] == sum(s.get("stage_tokens_seen", s["tokens_seen"]) for s in stages)
    x, y = _windows(resources.load_corpus("base", "heldout"), info["seq_len"], 48)
    with torch.no_grad():
        loss = float(lm_loss(base(x), y))
    assert abs(loss - info["heldout_loss"]) < 0.1, (loss, info["heldout_loss"])


def test_base_model_writes_python(base):
    prompt = torch.tensor([encode("def ")])
    text = decode(generate(base, prompt, 120, temperature=0)[0].tolist())
    assert any(word in text[4:] for word in ("def ", "self", "return", "(")), text


def test_transformers_loads_the_base_model_with_equal_logits(base):
    transformers = pytest.importorskip("transformers")
    # Both sides use torch's SDPA kernel; eager attention differs by float rounding (~1e-5 on logits ~20).
    hf = transformers.LlamaForCausalLM.from_pretrained(
        resources.base_model_dir(), dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    ids = torch.tensor([encode("    def __init__(self, name):\n        self.name = name\n")])
    with torch.no_grad():
        ours, theirs = base(ids), hf(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_missing_base_model_names_the_path(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "resources_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "base"))):
        base_models.load_base_model()


# --- installed wheel -------------------------------------------------------------------------


def test_installed_wheel_finds_its_resources(tmp_path):
    """Build the wheel, install it (not editable) into a folder, and load everything from there."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        cwd=REPO,
    )
    (wheel,) = tmp_path.glob("peft_explorer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "explorer/resources/base/model.safetensors",
        "explorer/resources/base/config.json",
        "explorer/resources/corpora/domain.train.txt.gz",
    ):
        assert shipped in names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True
    )
    probe = (
        "import explorer; from explorer.core import resources as b; from explorer.schema import resources as r\n"
        "m = b.load_base_model(); d = r.load_corpus('domain', 'train')\n"
        "assert '# review:' in d and m.config.vocab_size == 256\n"
        "print(explorer.__file__); print(r.resources_dir())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert Path(out[0]).resolve().is_relative_to(site.resolve())
    assert Path(out[1]).resolve() == (site / "explorer" / "resources").resolve()
