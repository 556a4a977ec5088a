"""Finding the shipped files (base model directory, corpora, decks): plain paths and text, no torch.

They live in `resources/` at the top of a checkout and in `explorer/resources/` inside an installed
wheel (pyproject force-includes one as the other). An editable install has only the former.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import zlib
from pathlib import Path

CORPUS_SPLITS = ("train", "heldout")
MAX_CORPUS_BYTES = 256 * 1024 * 1024  # decompressed; the shipped ones are a few MB


class DamagedInstallation(ValueError):
    """A shipped file that is there but unreadable: one line naming it."""

    def __init__(self, path, reason: str):
        super().__init__(f"the installation is damaged: {path} ({reason}); reinstall peft-explorer")


def _candidates() -> list[Path]:
    """Where resources may be, in order: inside the installed package, then beside it in a checkout."""
    out = []
    try:
        packaged = importlib.resources.files("explorer") / "resources"
        # A zip-imported package has no real directory; such a Traversable is not a Path and is skipped.
        if isinstance(packaged, Path):
            out.append(packaged)
    except (ModuleNotFoundError, TypeError):
        pass
    import explorer

    out.append(Path(explorer.__file__).resolve().parent.parent / "resources")
    return out


def resources_dir() -> Path:
    """The directory of shipped resources (base model, corpora, decks)."""
    candidates = _candidates()
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError("no resources directory found; looked in " + ", ".join(str(p) for p in candidates))


def base_model_dir() -> Path:
    """The shipped base model: an HF Llama directory (config.json + model.safetensors)."""
    path = resources_dir() / "base"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path / 'config.json'}: the base model is missing (train it with scripts/train_base.py)"
        )
    return path


def base_training_info() -> dict:
    """What scripts/train_base.py recorded: steps, seconds, losses, corpus, seed, command."""
    from explorer.schema.jsonio import JsonFileError, read_json_file

    path = base_model_dir() / "training.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training record beside the base model")
    try:
        return read_json_file(path, max_bytes=16 * 1024 * 1024)
    except JsonFileError as exc:
        raise DamagedInstallation(path, str(exc).removeprefix(f"{path}: ")) from None


def _corpora_dir() -> Path:
    return resources_dir() / "corpora"


def corpus_names() -> list[str]:
    """Names of the shipped corpora ('base', 'domain'), i.e. those with a train split."""
    return sorted(p.name.split(".")[0] for p in _corpora_dir().glob("*.train.txt.gz"))


def corpus_path(name: str, split: str = "train") -> Path:
    if split not in CORPUS_SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join(CORPUS_SPLITS)}")
    path = _corpora_dir() / f"{name}.{split}.txt.gz"
    if not path.is_file():
        known = ", ".join(corpus_names()) or "none"
        raise FileNotFoundError(f"{path}: no {split} split of corpus {name!r} (shipped corpora: {known})")
    return path


@functools.lru_cache(maxsize=8)
def load_corpus(name: str, split: str = "train") -> str:
    """The text of a shipped corpus split (cached: the base corpus is ~1.3 MB). A damaged file
    (truncated, not gzip, not UTF-8) is DamagedInstallation naming it."""
    path = corpus_path(name, split)
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(MAX_CORPUS_BYTES + 1)
        if len(data) > MAX_CORPUS_BYTES:
            raise DamagedInstallation(path, f"it unpacks to more than {MAX_CORPUS_BYTES} bytes")
        return data.decode("utf-8")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DamagedInstallation(path, f"not a whole gzip file: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DamagedInstallation(path, f"not UTF-8 text at byte {exc.start}") from None
