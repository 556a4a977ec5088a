"""A byte-level tokenizer: one token per UTF-8 byte, vocabulary 256.

Bytes need no merges table, no file and no training, so the shipped base model, the corpora and any
text a user types all share one vocabulary, and every token can be shown on an axis. Multi-byte
characters (é, ␣) become several tokens; `decode` replaces any broken sequence instead of failing,
because sampled bytes need not form valid UTF-8.
"""

from __future__ import annotations

from collections.abc import Iterable

VOCAB_SIZE = 256

# Labels for bytes that would be invisible or ambiguous on a plot axis.
_SPECIAL_LABELS = {ord(" "): "␣", ord("\n"): "⏎", ord("\t"): "⇥", ord("\r"): "␍"}


def _label(byte: int) -> str:
    if byte in _SPECIAL_LABELS:
        return _SPECIAL_LABELS[byte]
    if 0x21 <= byte <= 0x7E:  # printable ASCII shows as itself
        return chr(byte)
    # Control bytes, DEL and lone bytes of multi-byte characters: a Python escape, e.g. '\x07'.
    return f"\\x{byte:02x}"


class ByteTokenizer:
    """Text <-> byte ids. Stateless; `TOKENIZER` below is the shared instance."""

    vocab_size = VOCAB_SIZE
    _labels = tuple(_label(b) for b in range(VOCAB_SIZE))

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def token_label(self, token_id: int) -> str:
        """A short printable label for one token, for axis ticks ('␣' for space, '⏎' for newline)."""
        token_id = int(token_id)
        if not 0 <= token_id < VOCAB_SIZE:
            raise ValueError(f"token id {token_id} is outside the byte vocabulary 0..{VOCAB_SIZE - 1}")
        return self._labels[token_id]

    def token_labels(self, ids: Iterable[int]) -> list[str]:
        return [self.token_label(i) for i in ids]


TOKENIZER = ByteTokenizer()
encode = TOKENIZER.encode
decode = TOKENIZER.decode
token_label = TOKENIZER.token_label
token_labels = TOKENIZER.token_labels
