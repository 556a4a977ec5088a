"""Model directories whose files only look like a checkpoint's, made without torch: enough for what reads
their names and headers (the fingerprint, a replay's model check), never for loading weights."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from explorer.schema.model_files import INDEX, SINGLE

CONFIG = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2}


def single_file_model(path: Path, config=CONFIG, names=("a", "b")) -> Path:
    """config.json and a model.safetensors whose header names `names` (the data is never read)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    header = {n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(names)}
    raw = json.dumps(header).encode()
    (path / SINGLE).write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4 * len(names))
    return path


def sharded_model(path: Path, shards=("model-00001.safetensors",)) -> Path:
    """config.json and a model.safetensors.index.json naming `shards` (which are not written)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(CONFIG))
    (path / INDEX).write_text(json.dumps({"weight_map": {f"w{i}": s for i, s in enumerate(shards)}}))
    return path
