"""A checkpoint's own tokenizer: its `tokenizer.json`, through the `tokenizers` library.

Same interface as the byte tokenizer (explorer.core.tokenizer), which stays the shipped base's:
encode, decode, token_label(s), vocab_size, plus the ids that start and end a text. A directory
with only a SentencePiece `tokenizer.model` is refused (it would need the sentencepiece package and
its own rules); transformers writes the equivalent tokenizer.json for most checkpoints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

TOKENIZER_MAX_BYTES = 64_000_000  # Llama 3's tokenizer.json is 9 MB, Qwen2's 7 MB
_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}


def _visible(text: str) -> str:
    out = []
    for ch in text:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)


class HFTokenizer:
    def __init__(self, tokenizer, path: Path, bos_token_id: int | None = None, eos_token_id: int | None = None):
        self._tok = tokenizer
        self.path = path
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` alone (no start or end token: callers add those where a text begins)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_label(self, token_id: int) -> str:
        """A short printable label for one token: its text with blanks made visible ('␣if'), else its name."""
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} is outside the vocabulary 0..{self.vocab_size - 1}")
        text = self._tok.decode([token_id], skip_special_tokens=False)
        if not text or text == "\ufffd":  # a lone byte of a longer character, or an empty special
            text = self._tok.id_to_token(token_id) or f"<{token_id}>"
        return _visible(text)

    def token_labels(self, ids: Iterable[int]) -> list[str]:
        return [self.token_label(i) for i in ids]


def load_tokenizer(directory, model_vocab_size: int, bos_token_id=None, eos_token_id=None) -> HFTokenizer:
    """The directory's tokenizer.json; ValueError / FileNotFoundError (one line) otherwise."""
    from tokenizers import Tokenizer

    directory = Path(directory)
    path = directory / "tokenizer.json"
    if not path.is_file():
        if (directory / "tokenizer.model").is_file():
            raise ValueError(
                f"{directory / 'tokenizer.model'}: a SentencePiece tokenizer, which is not supported: allowed "
                "tokenizer.json (transformers writes one: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR))"
            )
        raise FileNotFoundError(f"{path}: the model directory has no tokenizer.json")
    size = path.stat().st_size
    if size > TOKENIZER_MAX_BYTES:
        raise ValueError(f"{path}: {size:,} bytes is too large for a tokenizer (at most {TOKENIZER_MAX_BYTES:,})")
    try:
        text = path.read_bytes().decode("utf-8")
        if not isinstance(json.loads(text), dict):
            raise ValueError("expected a JSON object")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a valid JSON tokenizer ({str(exc).splitlines()[0]})") from None
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # the library's own error type
        raise ValueError(f"{path}: not a tokenizer the tokenizers library reads ({str(exc).splitlines()[0]})") from None
    out = HFTokenizer(tokenizer, path, bos_token_id, eos_token_id)
    if out.vocab_size > model_vocab_size:
        raise ValueError(
            f"{path}: has {out.vocab_size:,} tokens but the model's vocab_size is {model_vocab_size:,}; "
            "is it the tokenizer of this model?"
        )
    for name, value in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
        if value is not None and value >= model_vocab_size:
            raise ValueError(f"{directory / 'config.json'}: {name}={value} is outside the vocabulary")
    return out
