"""Tiny Hugging Face checkpoints made by transformers in the tests, each with a BPE tokenizer.json
trained with the `tokenizers` library on the shipped corpus."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

VOCAB = 320
BOS, EOS = 0, 1
KINDS = ("llama", "mistral", "qwen2", "qwen2-sliding", "llama-bias")
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


@functools.lru_cache(maxsize=1)
def bpe_tokenizer_json() -> str:
    """A byte-level BPE tokenizer.json (vocabulary VOCAB, <s> = 0, </s> = 1) trained on the domain corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from explorer.schema.resources import load_corpus

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([load_corpus("domain", "train")], trainer)
    return tok.to_str()


def hf_config(kind: str, **overrides):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    if kind == "llama":  # GQA + llama3 RoPE scaling + tied embeddings
        cfg = LlamaConfig(**common, rope_theta=500000.0, rope_scaling=dict(LLAMA3), tie_word_embeddings=True)
    elif kind == "llama-bias":
        cfg = LlamaConfig(**common, attention_bias=True, mlp_bias=True)
    elif kind == "mistral":  # a window shorter than the tests' sequences, so it is exercised
        cfg = MistralConfig(**common, sliding_window=8)
    elif kind == "qwen2":
        cfg = Qwen2Config(**common, tie_word_embeddings=True)
    elif kind == "qwen2-sliding":  # layer 1 slides, layer 0 does not
        cfg = Qwen2Config(**common, use_sliding_window=True, sliding_window=8, max_window_layers=1)
    else:
        raise ValueError(kind)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def save_checkpoint(directory, kind: str = "llama", seed: int = 0, tokenizer: bool = True, **save_kwargs):
    """A random transformers model of `kind` saved to `directory` (biases and norms randomised too,
    so they are tested); returns the model (fp32, eval)."""
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(hf_config(kind)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(directory, **save_kwargs)
    if tokenizer:
        (directory / "tokenizer.json").write_text(bpe_tokenizer_json())
    return hf


def rewrite_json(path, **changes) -> None:
    path = Path(path)
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def review_blocks(limit: int = 200) -> list[tuple[str, str]]:
    """(review comment, diff) pairs of the shipped domain corpus."""
    from explorer.schema.resources import load_corpus

    out = []
    for block in load_corpus("domain", "train").split("# review: ")[1 : limit + 1]:
        comment, _, diff = block.partition("\n")
        out.append((comment.strip(), diff.strip()))
    return out


def write_datasets(directory) -> dict[str, Path]:
    """The three shapes of user data made from the shipped corpus: .txt, .jsonl text, Alpaca .json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blocks = review_blocks()
    texts = [f"# review: {c}\n{d}\n" for c, d in blocks]
    paths = {
        "txt": directory / "corpus.txt",
        "jsonl": directory / "corpus.jsonl",
        "instruction": directory / "alpaca.json",
    }
    paths["txt"].write_text("".join(texts))
    paths["jsonl"].write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    records = [{"instruction": "Review this change.", "input": d[:300], "output": c} for c, d in blocks]
    paths["instruction"].write_text(json.dumps(records))
    return paths
