"""A checkpoint's tokenizer.json through the tokenizers library; what is refused, in one line."""

import pytest
from checkpoint_factory import BOS, EOS, VOCAB, bpe_tokenizer_json

from explorer.core.hf_tokenizer import load_tokenizer
from explorer.schema.resources import load_corpus


def _one_line(err) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


def test_round_trip_and_labels(tmp_path):
    (tmp_path / "tokenizer.json").write_text(bpe_tokenizer_json())
    tok = load_tokenizer(tmp_path, VOCAB, BOS, EOS)
    text = load_corpus("domain", "heldout")[:2000]
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode()) / 1.5  # merges learnt from the corpus compress it
    assert tok.vocab_size <= VOCAB and BOS not in ids and max(ids) < tok.vocab_size
    labels = tok.token_labels(tok.encode("if x:\n\treturn"))
    assert "".join(labels).replace("␣", " ").replace("⏎", "\n").replace("⇥", "\t") == "if x:\n\treturn"
    assert tok.token_label(BOS) == "<s>"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.token_label(VOCAB + 5)


def test_sentencepiece_only_is_refused(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(b"\x0a\x0bsentencepiece")
    with pytest.raises(ValueError) as err:
        load_tokenizer(tmp_path, VOCAB)
    assert "SentencePiece" in _one_line(err) and "tokenizer.json" in str(err.value)


def test_no_tokenizer_at_all(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_tokenizer(tmp_path, VOCAB)
    assert "no tokenizer.json" in _one_line(err)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"{this is not json", "not a valid JSON tokenizer"),
        (b"\xff\xfe\x00binary", "not a valid JSON tokenizer"),
        (b"[1, 2, 3]", "expected a JSON object"),
        (b'{"model": {"type": "NoSuchModel"}}', "not a tokenizer the tokenizers library reads"),
    ],
)
def test_broken_tokenizer_files(tmp_path, content, problem):
    (tmp_path / "tokenizer.json").write_bytes(content)
    with pytest.raises(ValueError) as err:
        load_tokenizer(tmp_path, VOCAB)
    assert problem in _one_line(err) and "tokenizer.json" in str(err.value)


def test_a_tokenizer_larger_than_the_model_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text(bpe_tokenizer_json())
    with pytest.raises(ValueError) as err:
        load_tokenizer(tmp_path, 100)
    assert "vocab_size is 100" in _one_line(err)
