"""What the language-model scenario trains on: its base model, tokenizer and data.

    model ""      the shipped 0.8M-parameter byte-level base (fp32 weights; bf16 runs autocast)
    model DIR     a Hugging Face checkpoint directory (explorer.core.checkpoint): its tokenizer.json,
                  the run's memory estimated and checked first, then the weights straight into the
                  run's dtype (bf16 runs hold bf16 weights) on the run's device
    data ""       the shipped domain corpus (windows at random offsets; 16 held-out windows)
    data PATH     explorer.core.datasets: .txt / folder / .jsonl / .json, text or instruction rows

Loaded models are kept per process (the shipped base per device; one user checkpoint, the latest),
never modified: each segment adapts a copy whose frozen weights are shared with it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from explorer.engine.scenarios import cpu_generator

N_HELDOUT = 16  # the shipped corpus's held-out windows
CORPUS = "domain"
_SHIPPED_CACHE: dict = {}
_USER_CACHE: dict = {}


def _shipped_base(device: torch.device):
    """The shipped base model on `device`, loaded once per process and device (never modified)."""
    key = str(device)
    if key not in _SHIPPED_CACHE:
        from explorer.core.resources import load_base_model

        _SHIPPED_CACHE[key] = load_base_model(device).requires_grad_(False)
    return _SHIPPED_CACHE[key]


class BaseSource:
    """The frozen base, its tokenizer and what describes it (config.json of a recording)."""

    def __init__(self, model, tokenizer, info: dict, directory: Path | None = None):
        self.model, self.tokenizer, self.info, self.directory = model, tokenizer, info, directory


def load_base(settings, device: torch.device, autocast, base_model=None) -> BaseSource:
    from explorer.core.tokenizer import TOKENIZER

    model_dir = getattr(settings, "model", "") or ""
    if base_model is not None:  # tests and callers that hold a model already
        return BaseSource(base_model, TOKENIZER, {})
    if not model_dir:
        return BaseSource(_shipped_base(device), TOKENIZER, _shipped_info())
    return _user_base(Path(model_dir), settings, device, autocast)


def _shipped_info() -> dict:
    info = {}
    try:
        from explorer.schema.resources import base_model_dir, base_training_info

        info["path"] = str(base_model_dir())
        info["training"] = base_training_info()
    except Exception:  # a checkout without the training record still runs
        pass
    return info


def _user_base(directory: Path, settings, device: torch.device, autocast) -> BaseSource:
    from explorer.core.checkpoint import fingerprint, load_checkpoint, read_config
    from explorer.core.hf_tokenizer import load_tokenizer
    from explorer.core.memory import RunShape, check_run_fits

    config = read_config(directory)  # cheap refusals first: config, tokenizer, memory, then weights
    tokenizer = load_tokenizer(directory, config.vocab_size, config.bos_token_id, config.eos_token_id)
    weight_dtype = autocast or torch.float32
    digest = fingerprint(directory)
    key = (str(directory.resolve()), digest, str(device), str(weight_dtype))
    model = _USER_CACHE.get(key)
    if model is None:
        check_run_fits(config, RunShape.of(settings), weight_dtype, weight_dtype, device, what=f"training {directory}")
        _USER_CACHE.clear()  # one user checkpoint at a time: the previous one's memory goes back first
        if device.type == "cuda":
            torch.cuda.empty_cache()
        model = load_checkpoint(directory, device=device, dtype=weight_dtype, check_memory=False)
        model.requires_grad_(False).eval()
        _USER_CACHE[key] = model
    info = {
        "path": str(directory.resolve()),
        "model_dir": str(directory.resolve()),
        "model_hash": digest,
        "model_type": config.model_type,
        "weights_dtype": str(weight_dtype).replace("torch.", ""),
        "tokenizer": str(tokenizer.path),
    }
    return BaseSource(model, tokenizer, info, directory)


def check_build_fits(source: BaseSource, settings, device: torch.device, autocast) -> None:
    """Before a segment adapts the base: the adapters, optimizer and activations of these settings
    fit beside the weights already loaded (a user checkpoint only; the shipped base is tiny)."""
    if source.directory is None:
        return
    from explorer.core.memory import RunShape, available_memory, check_run_fits, dtype_bytes

    weights = sum(p.numel() for p in source.model.parameters()) * dtype_bytes(autocast or torch.float32)
    free, _ = available_memory(device)
    if free is None:
        return
    dtype = autocast or torch.float32
    check_run_fits(
        source.model.config, RunShape.of(settings), dtype, dtype, device, f"training {source.directory}", free + weights
    )


# --- data ---------------------------------------------------------------------------------------


class ShippedCorpus:
    """Windows of seq_len + 1 tokens at random offsets of the domain train split (offsets from the
    data generator of (seed, step)); 16 fixed held-out windows evenly spaced over its held-out split."""

    def __init__(self, tokenizer, seq_len: int, device: torch.device):
        from explorer.schema.resources import load_corpus

        self.device, self.seq_len = device, seq_len
        self.train_tokens = _tokens(tokenizer, load_corpus(CORPUS, "train"), device)
        held = _tokens(tokenizer, load_corpus(CORPUS, "heldout"), device)
        span = seq_len + 1
        if held.numel() < span or self.train_tokens.numel() <= span:
            raise ValueError(f"seq_len={seq_len} is longer than the {CORPUS} corpus allows")
        starts = torch.linspace(0, held.numel() - span, N_HELDOUT).long().to(device)
        self.heldout = held[starts[:, None] + torch.arange(span, device=device)]
        self._offsets = torch.arange(span)

    def describe(self) -> dict:
        return {"corpus": CORPUS}

    def batch(self, seed: int, step: int, batch_size: int) -> torch.Tensor:
        g = cpu_generator(seed, "data", step)
        starts = torch.randint(0, self.train_tokens.numel() - self.seq_len - 1, (batch_size,), generator=g)
        return self.train_tokens[(starts[:, None] + self._offsets).to(self.device)]

    def heldout_batches(self, batch_size: int):
        yield self.heldout


def _tokens(tokenizer, text: str, device) -> torch.Tensor:
    from explorer.core.tokenizer import ByteTokenizer

    if isinstance(tokenizer, ByteTokenizer):  # the bytes themselves: no Python list of a megabyte
        data = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8)
    else:
        data = torch.tensor(tokenizer.encode(text))
    return data.to(device=device, dtype=torch.long)


class UserData:
    """A user's data set (explorer.core.datasets); batches (inputs, targets) on the device."""

    def __init__(self, settings, tokenizer, seq_len: int, device: torch.device):
        from explorer.core.datasets import load_dataset

        self.device = device
        self.dataset = load_dataset(
            settings.data,
            tokenizer,
            seq_len,
            cpu_generator(settings.seed, "heldout-split"),
            eval_path=getattr(settings, "eval_data", "") or None,
            loss_on=getattr(settings, "loss_on", "response"),
        )

    def describe(self) -> dict:
        d = self.dataset
        return {
            "data": str(Path(d.source).resolve()),
            "eval_data": None if d.eval_source is None else str(Path(d.eval_source).resolve()),
            "data_kind": d.kind,
            "loss_on": d.loss_on,
            "train_rows": len(d.train),
            "heldout_rows": len(d.heldout),
        }

    def batch(self, seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.dataset.batch(cpu_generator(seed, "data", step), batch_size)
        return inputs.to(self.device), targets.to(self.device)

    def heldout_batches(self, batch_size: int):
        rows = self.dataset.heldout
        for start in range(0, len(rows), batch_size):
            index = torch.arange(start, min(start + batch_size, len(rows)))
            inputs, targets = rows.inputs_targets(index)
            yield inputs.to(self.device), targets.to(self.device)
