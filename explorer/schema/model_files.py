"""A Hugging Face checkpoint directory's file names and its fingerprint: plain file reading, no torch,
so the GUI process can tell whether a recording's model directory still holds the model it trained on
(explorer.schema.recording.recorded_model_change) with the very hash the engine noted
(explorer.core.checkpoint loads the weights; it takes these names and this hash from here).
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from explorer.schema.llama_config import CONFIG_MAX_BYTES

SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
INDEX_MAX_BYTES = 64_000_000
HEADER_MAX_BYTES = 100_000_000  # safetensors' own limit
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
CONVERT_HINT = (
    "convert them to safetensors, e.g. with transformers: "
    "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)"
)


def model_dir(directory) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such model directory")
    return directory


def refuse_pickles(directory: Path) -> None:
    """The directory has neither weights file: ValueError naming a pickle file it holds instead (never
    opened), else FileNotFoundError."""
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{directory / pickles[0]}: pickled weights are never loaded (unpickling can run code); {CONVERT_HINT}"
        )
    raise FileNotFoundError(f"{directory}: no {SINGLE} or {INDEX} in this model directory")


def _small_file(path: Path, limit: int, what: str) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{path}: {size:,} bytes is too large for a {what} (at most {limit:,})")
    return path.read_bytes()


def fingerprint(directory) -> str:
    """sha256 of config.json and the weights' index (the index file, or the single file's header:
    names, dtypes, shapes and offsets), so a recording can tell whether a directory still holds the
    model it trained on without reading gigabytes. FileNotFoundError / ValueError (one line) for a
    directory that holds no such files, or files larger than a loader accepts."""
    directory = model_dir(directory)
    h = hashlib.sha256()
    h.update(_small_file(directory / "config.json", CONFIG_MAX_BYTES, "config.json"))
    if (directory / SINGLE).is_file():
        with open(directory / SINGLE, "rb") as fh:
            raw = fh.read(8)
            n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0
            if not 0 < n <= HEADER_MAX_BYTES:
                raise ValueError(f"{directory / SINGLE}: damaged safetensors header")
            header = fh.read(n)
            if len(header) != n:
                raise ValueError(f"{directory / SINGLE}: damaged safetensors header (the file ends inside it)")
            h.update(raw + header)
    elif (directory / INDEX).is_file():
        h.update(_small_file(directory / INDEX, INDEX_MAX_BYTES, "weights index"))
    else:
        refuse_pickles(directory)
    return h.hexdigest()
