"""A user's training data, read with bounds, tokenized into fixed-length rows with loss masks.

    .txt, or a folder of .txt files   plain text: the texts, each ended by the end token, packed into
                                      windows of seq_len + 1 tokens; every token is a target
    .jsonl / .json with "text"        the same, one text per record
    .jsonl / .json with "instruction", optional "input", "output"  (Alpaca-style)
                                      one row per record: the Alpaca prompt, then the response; loss on
                                      the response tokens only (loss_on="response") or on all ("all")

Anything else is refused with one line naming the fields looked for and the line (or record) where
reading failed. Reading is bounded: a file of more than MAX_DATA_BYTES, a JSONL line of more than
MAX_LINE_BYTES (never read further), a NUL byte or invalid UTF-8 (binary) are refused.

Held out: the rows of `eval_path`, or HELDOUT_SHARE of the rows chosen by the split generator the
caller seeds (at most MAX_HELDOUT rows either way). Training batches are rows drawn by a generator
the caller seeds from the run's seed and the step alone, so every method sees the same batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

MAX_DATA_BYTES = 1_000_000_000
MAX_JSON_BYTES = 256_000_000  # a .json file is parsed whole; larger data belongs in .jsonl
MAX_LINE_BYTES = 16_000_000
HELDOUT_SHARE = 0.1
MAX_HELDOUT = 32
PROMPT_TOKENS = 16  # a text row's first tokens are its prompt (samples, probe)
LOSS_ON = ("response", "all")
IGNORE = -100  # cross_entropy's ignore_index
FIELDS = '"text", or "instruction", "input" (optional) and "output" (Alpaca-style)'
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    if input_text:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_NO_INPUT.format(instruction=instruction)


# --- reading ---------------------------------------------------------------------------------


def _decode(raw: bytes, where: str) -> str:
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"{where}: a NUL byte at byte {nul:,}: a binary file, not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text (binary?) at byte {exc.start:,}") from None


def _check_size(path: Path, limit: int, hint: str = "") -> int:
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{path}: {size:,} bytes is more than the {limit:,} allowed{hint}")
    return size


def _read_text(path: Path) -> str:
    _check_size(path, MAX_DATA_BYTES)
    return _decode(path.read_bytes(), str(path))


def _jsonl_records(path: Path):
    """(line number, record) for each non-blank line, reading at most MAX_LINE_BYTES + 1 bytes a line."""
    _check_size(path, MAX_DATA_BYTES)
    with open(path, "rb") as fh:
        n = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            n += 1
            where = f"{path}, line {n}"
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(f"{where}: longer than {MAX_LINE_BYTES:,} bytes; refused (one record a line)")
            text = _decode(raw, where).strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"{where}: not valid JSON ({str(exc).splitlines()[0]})") from None
            yield where, record


def _json_records(path: Path):
    _check_size(path, MAX_JSON_BYTES, " for a .json file (use .jsonl for larger data)")
    try:
        data = json.loads(_decode(path.read_bytes(), str(path)))
    except (ValueError, RecursionError) as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records with {FIELDS}, found {type(data).__name__}")
    for i, record in enumerate(data):
        yield f"{path}, record {i + 1}", record


def _record(where: str, record) -> tuple[str, tuple[str, ...]]:
    """("text", (text,)) or ("instruction", (instruction, input, output)); ValueError otherwise."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with {FIELDS}, found {type(record).__name__}")
    if "text" in record:
        if not isinstance(record["text"], str):
            raise ValueError(f'{where}: "text" must be a string, found {type(record["text"]).__name__}')
        return "text", (record["text"],)
    if "instruction" in record and "output" in record:
        values = []
        for key in ("instruction", "input", "output"):
            value = record.get(key)
            value = "" if value is None and key == "input" else value
            if not isinstance(value, str):
                raise ValueError(f'{where}: "{key}" must be a string, found {type(value).__name__}')
            values.append(value)
        if not values[2]:
            raise ValueError(f'{where}: "output" is empty; an instruction record needs a response to learn')
        return "instruction", tuple(values)
    found = ", ".join(map(str, list(record)[:8])) or "none"
    raise ValueError(f"{where}: expected the fields {FIELDS}; found {found}")


def read_records(path) -> tuple[str, list[tuple[str, ...]]]:
    """("text" | "instruction", records) from a .txt file, a folder of .txt files, .jsonl or .json."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"{path}: a folder with no .txt files (a data folder holds plain-text .txt files)")
        total = sum(p.stat().st_size for p in files)
        if total > MAX_DATA_BYTES:
            raise ValueError(f"{path}: its .txt files hold {total:,} bytes, more than the {MAX_DATA_BYTES:,} allowed")
        return "text", [(_read_text(p),) for p in files]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file or folder")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "text", [(_read_text(path),)]
    if suffix not in (".jsonl", ".json"):
        raise ValueError(
            f"{path}: unknown data format {suffix or '(no extension)'!r}: allowed .txt (or a folder of them), "
            f".jsonl or .json with {FIELDS}"
        )
    kind, records, first = None, [], ""
    for where, raw in _jsonl_records(path) if suffix == ".jsonl" else _json_records(path):
        this, values = _record(where, raw)
        if kind is None:
            kind, first = this, where
        elif this != kind:
            raise ValueError(f"{where}: an {this} record, but {first} was a {kind} record; use one kind per file")
        records.append(values)
    if not records:
        raise ValueError(f"{path}: no records (expected one JSON object with {FIELDS} per line)")
    return kind, records


# --- tokenizing --------------------------------------------------------------------------------


@dataclass
class Rows:
    """Fixed-length rows of seq_len + 1 tokens; `mask[i, j]` says token j of row i is a loss target;
    row i's prompt (samples, probe) is its first `prompt_len[i]` tokens."""

    ids: torch.Tensor  # (N, L) int32
    mask: torch.Tensor  # (N, L) bool; column 0 is never a target
    prompt_len: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return self.ids.shape[0]

    def take(self, index: torch.Tensor) -> Rows:
        index = index.long()
        return Rows(self.ids[index], self.mask[index], self.prompt_len[index])

    def prompt(self, i: int) -> list[int]:
        return self.ids[i, : int(self.prompt_len[i])].tolist()

    def inputs_targets(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs (B, L-1), targets (B, L-1) with IGNORE where no loss is taken), int64."""
        ids, mask = (self.ids, self.mask) if index is None else (self.ids[index], self.mask[index])
        ids = ids.long()
        targets = ids[:, 1:].masked_fill(~mask[:, 1:], IGNORE)
        return ids[:, :-1], targets


ENCODE_CHUNK_CHARS = 1_000_000


def _encode_long(tokenizer, text: str) -> torch.Tensor:
    """Token ids (int32) of a text of any length, encoded in pieces of about ENCODE_CHUNK_CHARS cut
    after a newline, so neither the tokenizer nor a Python list ever holds a whole large file."""
    pieces, start = [], 0
    while start < len(text):
        end = len(text)
        if end - start > ENCODE_CHUNK_CHARS:
            cut = text.rfind("\n", start, start + ENCODE_CHUNK_CHARS)
            end = cut + 1 if cut > start else start + ENCODE_CHUNK_CHARS
        pieces.append(torch.tensor(tokenizer.encode(text[start:end]), dtype=torch.int32))
        start = end
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.int32)


def _text_rows(texts: list[str], tokenizer, span: int, where: str) -> Rows:
    bos, eos = getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)
    parts = []
    for text in texts:
        if bos is not None:
            parts.append(torch.tensor([bos], dtype=torch.int32))
        parts.append(_encode_long(tokenizer, text))
        if eos is not None:
            parts.append(torch.tensor([eos], dtype=torch.int32))
    stream = torch.cat(parts)
    n = stream.numel() // span
    if n < 1:
        raise ValueError(f"{where}: {stream.numel():,} tokens, fewer than one window of seq_len + 1 = {span}")
    ids = stream[: n * span].view(n, span)
    mask = torch.ones(n, span, dtype=torch.bool)
    mask[:, 0] = False
    return Rows(ids, mask, torch.full((n,), min(PROMPT_TOKENS, span - 1), dtype=torch.long))


def _instruction_rows(records, tokenizer, span: int, loss_on: str) -> Rows:
    bos, eos = getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)
    pad = eos if eos is not None else 0
    ids = torch.full((len(records), span), pad, dtype=torch.int32)
    mask = torch.zeros(len(records), span, dtype=torch.bool)
    prompt_len = torch.zeros(len(records), dtype=torch.long)
    for i, (instruction, input_text, output) in enumerate(records):
        prompt = ([bos] if bos is not None else []) + tokenizer.encode(alpaca_prompt(instruction, input_text))
        response = tokenizer.encode(output) + ([eos] if eos is not None else [])
        if len(prompt) + len(response) > span:  # keep the prompt's end and at least half a row of response
            prompt = prompt[-max(span // 2, span - len(response)) :]
        row = (prompt + response)[:span]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.int32)
        first = 1 if loss_on == "all" else len(prompt)
        mask[i, first : len(row)] = True
        prompt_len[i] = len(prompt)
    return Rows(ids, mask, prompt_len)


def tokenize(kind: str, records, tokenizer, seq_len: int, loss_on: str, where: str) -> Rows:
    if loss_on not in LOSS_ON:
        raise ValueError(f"loss_on={loss_on!r} is unknown: allowed {', '.join(LOSS_ON)}")
    span = seq_len + 1
    if kind == "text":
        return _text_rows([r[0] for r in records], tokenizer, span, where)
    return _instruction_rows(records, tokenizer, span, loss_on)


# --- the data set of a run ----------------------------------------------------------------------


@dataclass
class Dataset:
    kind: str  # "text" or "instruction"
    train: Rows
    heldout: Rows
    source: str
    eval_source: str | None
    loss_on: str

    @property
    def prompt_ids(self) -> list[int]:
        """The default prompt for samples and the attention probe: the first held-out row's."""
        return self.heldout.prompt(0)

    def batch(self, generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows drawn by `generator` alone: (inputs, targets), int64 on the CPU."""
        index = torch.randint(0, len(self.train), (batch_size,), generator=generator)
        return self.train.inputs_targets(index)

    def describe(self) -> str:
        held = f"{len(self.heldout)} held out" + (f" from {self.eval_source}" if self.eval_source else "")
        loss = "; loss on the responses" if self.kind == "instruction" and self.loss_on == "response" else ""
        return f"{self.source}: {len(self.train)} {self.kind} rows for training, {held}{loss}"


def load_dataset(
    path,
    tokenizer,
    seq_len: int,
    split_generator: torch.Generator,
    eval_path=None,
    loss_on: str = "response",
) -> Dataset:
    """Read, tokenize and split; see the module docstring. ValueError (one line) on bad data."""
    kind, records = read_records(path)
    rows = tokenize(kind, records, tokenizer, seq_len, loss_on, str(path))
    if eval_path:
        eval_kind, eval_records = read_records(eval_path)
        if eval_kind != kind:
            raise ValueError(f"{eval_path}: holds {eval_kind} records but {path} holds {kind} records")
        held = tokenize(eval_kind, eval_records, tokenizer, seq_len, loss_on, str(eval_path))
        held = held.take(torch.arange(min(len(held), MAX_HELDOUT)))
        return Dataset(kind, rows, held, str(path), str(eval_path), loss_on)
    if len(rows) < 2:
        raise ValueError(
            f"{path}: {len(rows)} row of seq_len + 1 = {seq_len + 1} tokens; at least 2 are needed to hold one "
            "out (or give held-out data of its own)"
        )
    n_held = min(MAX_HELDOUT, max(1, round(HELDOUT_SHARE * len(rows))))
    order = torch.randperm(len(rows), generator=split_generator)
    held_index, _ = order[:n_held].sort()
    train_index, _ = order[n_held:].sort()
    return Dataset(kind, rows.take(train_index), rows.take(held_index), str(path), None, loss_on)
