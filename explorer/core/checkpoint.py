"""Reading a Hugging Face checkpoint directory: config.json, safetensors weights (one file or shards
named by model.safetensors.index.json), checked before anything large is allocated.

    config.json           model_type llama / mistral / qwen2 (explorer.schema.llama_config)
    model.safetensors     or model.safetensors.index.json + the shards it names (inside the directory)

Order of the checks, so a hostile directory costs nothing: the config's fields; the weights' size in
the run's dtype against the memory available; the index (every shard a file inside the directory);
each file's header (names, shapes, float dtypes against what the config implies). Only then is the
model built, on the meta device, and each tensor read from the memory-mapped file straight into the
run's dtype on the run's device, one at a time. Pickle weights (*.bin, *.pt, ...) are never opened.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from explorer.schema.llama_config import LlamaConfig, read_hf_config, weight_shapes

# the file names, limits and fingerprint are plain file reading, shared with the GUI process
from explorer.schema.model_files import (  # noqa: F401 (fingerprint: this module's API too)
    INDEX,
    INDEX_MAX_BYTES,
    SINGLE,
    fingerprint,
    model_dir,
)
from explorer.schema.model_files import refuse_pickles as _refuse_pickles

FLOAT_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
# Tensors older checkpoints carry that the model recomputes.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def read_json_file(path: Path, limit: int, what: str):
    """A JSON file of at most `limit` bytes; ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what}")
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{path}: {size:,} bytes is too large for a {what} (at most {limit:,})")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a valid JSON {what} ({str(exc).splitlines()[0]})") from None


def read_config(directory) -> LlamaConfig:
    """The directory's config.json as a LlamaConfig (refusing other model types, naming the supported ones)."""
    return read_hf_config(model_dir(directory) / "config.json")


def weight_files(directory) -> list[Path]:
    """The safetensors files holding the weights: the single file, or every shard the index names
    (each checked to be a file inside the directory, symlinks resolved)."""
    directory = model_dir(directory)
    if (directory / SINGLE).is_file():
        return [directory / SINGLE]
    if not (directory / INDEX).is_file():
        _refuse_pickles(directory)
    _, files = _read_index(directory)
    return files


def _read_index(directory: Path) -> tuple[dict[str, Path], list[Path]]:
    path = directory / INDEX
    index = read_json_file(path, INDEX_MAX_BYTES, "weights index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f'{path}: expected an object with a non-empty "weight_map" of tensor name -> shard file')
    root = directory.resolve()
    shards: dict[str, Path] = {}
    out: dict[str, Path] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise ValueError(f"{path}: weight_map[{name!r}] must be a shard file name, found {shard!r}")
        if shard not in shards:
            target = (directory / shard).resolve()
            if not target.is_relative_to(root):
                raise ValueError(f"{path}: shard {shard!r} lies outside the model directory; refused")
            if not shard.endswith(".safetensors"):
                raise ValueError(f"{path}: shard {shard!r} is not a .safetensors file; refused")
            if not target.is_file():
                raise FileNotFoundError(f"{path}: shard {shard!r} is missing from {directory}")
            shards[shard] = target
        out[name] = shards[shard]
    return out, list(shards.values())


def _headers(files: list[Path]) -> dict[str, tuple[Path, str, tuple[int, ...]]]:
    """{tensor name: (file, safetensors dtype, shape)} from the files' headers (no tensor read)."""
    from safetensors import safe_open

    out = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                names = f.keys()  # a safe_open handle is not iterable itself
                for name in names:
                    sl = f.get_slice(name)
                    if name in out:
                        raise ValueError(f"{path}: tensor {name} is also in {out[name][0].name}")
                    out[name] = (path, sl.get_dtype(), tuple(int(x) for x in sl.get_shape()))
        except ValueError:
            raise
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise ValueError(f"{path}: unreadable safetensors file ({str(exc).splitlines()[0]})") from None
    return out


def check_weights(config: LlamaConfig, directory: Path, headers: dict, mapped: dict | None = None) -> dict:
    """{name: (file, dtype, shape)} for exactly the tensors the config implies; ValueError (one line)
    naming the first tensor that is missing, unexpected, of another shape or not a float."""
    expected = weight_shapes(config)
    have = {n: h for n, h in headers.items() if not n.endswith(IGNORED_SUFFIXES)}
    if config.tie_word_embeddings:
        have.pop("lm_head.weight", None)  # tied: the embeddings serve as the output layer (as transformers)
    cfg = directory / "config.json"
    if mapped is not None:
        for name, path in mapped.items():
            if name in expected and name in headers and headers[name][0] != path:
                raise ValueError(
                    f"{directory / INDEX}: says {name} is in {path.name}, but {path.name} does not hold it"
                )
    missing = [n for n in expected if n not in have]
    if missing:
        hint = ""
        if missing[0] == "lm_head.weight":
            hint = " and tie_word_embeddings is false"
        elif mapped is not None and missing[0] in mapped:
            hint = f" from {mapped[missing[0]].name}, where the index puts it"
        raise ValueError(
            f"{directory}: tensor {missing[0]} is missing{hint} ({len(missing)} of {len(expected)} missing); "
            f"the weights do not match {cfg}"
        )
    unexpected = [n for n in have if n not in expected]
    if unexpected:
        raise ValueError(
            f"{have[unexpected[0]][0]}: holds tensor {unexpected[0]}, which a {config.model_type} model with "
            f"this {cfg.name} does not have ({len(unexpected)} such)"
        )
    for name, shape in expected.items():
        path, dtype, got = have[name]
        if got != shape:
            raise ValueError(f"{path}: tensor {name} has shape {list(got)}, but {cfg} implies {list(shape)}")
        if dtype not in FLOAT_DTYPES:
            raise ValueError(
                f"{path}: tensor {name} is {dtype}, not a float (quantized checkpoints are not supported): "
                f"allowed {', '.join(FLOAT_DTYPES)}"
            )
    return have


def check_weights_fit(config: LlamaConfig, dtype: torch.dtype, device, where: str) -> None:
    """Refuse, before allocating, weights that cannot fit the device (an absurd config among them)."""
    from explorer.core.memory import FIT_SHARE, available_memory, dtype_bytes
    from explorer.schema.budget import count_model_params, format_bytes

    need = count_model_params(config) * dtype_bytes(dtype)
    available, what = available_memory(torch.device(device))
    if available is not None and need > FIT_SHARE * available:
        raise ValueError(
            f"{where}: the weights alone need {format_bytes(need)} in {str(dtype).replace('torch.', '')} "
            f"({count_model_params(config):,} parameters from {config.num_hidden_layers:,} layers of "
            f"{config.hidden_size:,}), but {what}"
        )


def load_checkpoint(directory, device="cpu", dtype: torch.dtype = torch.float32, check_memory: bool = True):
    """Our LlamaForCausalLM with the directory's weights in `dtype` on `device`; ValueError (one line)
    or FileNotFoundError for anything that does not fit, before the model is allocated."""
    from safetensors import safe_open

    from explorer.core.llama import LlamaForCausalLM, RotaryEmbedding

    directory = model_dir(directory)
    config = read_config(directory)
    device = torch.device(device)
    if check_memory:
        check_weights_fit(config, dtype, device, str(directory))
    mapped = None
    if (directory / SINGLE).is_file():
        files = [directory / SINGLE]
    elif (directory / INDEX).is_file():
        mapped, files = _read_index(directory)
    else:
        _refuse_pickles(directory)
    tensors = check_weights(config, directory, _headers(files), mapped)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    state = {}
    open_on = "cpu" if device.type == "cpu" else str(device)
    for path in files:
        names = [n for n, (p, _, _) in tensors.items() if p == path]
        try:
            with safe_open(str(path), framework="pt", device=open_on) as f:
                for name in names:  # one tensor at a time: read, cast, keep only the cast copy
                    state[name] = f.get_tensor(name).to(device=device, dtype=dtype)
        except Exception as exc:
            raise ValueError(f"{path}: unreadable safetensors file ({str(exc).splitlines()[0]})") from None
    model.load_state_dict(state, strict=False, assign=True)
    del state
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.model.rotary_emb = RotaryEmbedding(config, device=device)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # cannot happen after check_weights; a guard against a half-loaded model all the same
        raise ValueError(f"{directory}: tensor {left[0]} was not loaded")
    return model
