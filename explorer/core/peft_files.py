"""PEFT adapter directories: read them strictly, write them exactly as PEFT does.

Why one file of ~900 lines: it is the one strict reader and writer of PEFT's format; every check
sits beside the field it guards, so a new field cannot be read without its validation. Its pattern
matching lives in schema/safe_regex.py and its JSON parsing in schema/jsonio.py.

A PEFT adapter directory holds `adapter_config.json` and `adapter_model.safetensors` (format in
docs/reference.md). This module reads LoRA (incl. rsLoRA, DoRA, rank/alpha patterns) and
AdaptionPrompt adapters into plain tensors, and writes both kinds.

Everything read is treated as hostile until checked:
- the safetensors header is parsed here, by hand, before the safetensors library sees the file: its
  8-byte length, a JSON header within the file and the size limit, known dtypes, shapes whose byte
  size equals their offsets, offsets inside the file that neither overlap nor leave holes. So a
  damaged or malicious file can neither make us allocate more than the file holds nor hang;
- `adapter_model.bin` (a pickle: loading it can run arbitrary code) is refused, never unpickled;
- every config field that changes the maths is type-checked; tensor shapes must agree with r and
  with each other; NaN or infinite values are refused.
Every problem is one `AdapterFileError` (a ValueError) or `FileNotFoundError` whose message is one
line: the file, then the problem.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from explorer.schema.format import short_json
from explorer.schema.jsonio import JsonFileError, parse_json, read_regular_file
from explorer.schema.peft_patterns import pattern_key, peft_key_regex
from explorer.schema.safe_regex import UnsafePattern, compile_safe

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAME = "adapter_model.bin"
PEFT_PREFIX = "base_model.model."

READ_TYPES = ("LORA", "ADAPTION_PROMPT")
# PEFT's other adapter types: named so that the refusal says "not read here", not "unknown".
OTHER_PEFT_TYPES = (
    "PROMPT_TUNING",
    "MULTITASK_PROMPT_TUNING",
    "P_TUNING",
    "PREFIX_TUNING",
    "ADALORA",
    "BOFT",
    "IA3",
    "LOHA",
    "LOKR",
    "OFT",
    "POLY",
    "LN_TUNING",
    "VERA",
    "FOURIERFT",
    "XLORA",
    "HRA",
    "VBLORA",
    "CPT",
    "BONE",
    "MISS",
    "RANDLORA",
    "SHIRA",
    "C3A",
    "ROAD",
    "WAVEFT",
    "DELORA",
    "OSF",
    "GRALORA",
    "TRAINABLE_TOKENS",
    "HIRA",
    "LILY",
)

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a real adapter_config.json is a few kB
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
FLOAT_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class AdapterFileError(ValueError):
    """A PEFT adapter file that cannot be used. The message is one line naming the file."""

    def __init__(self, path, problem: str):
        self.path, self.problem = Path(path), _one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 400 else text[:397] + "..."


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path}: {what}")


# --- data --------------------------------------------------------------------------------------


@dataclass
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class LoraFactors:
    """One LoRA module of an adapter file. ΔW = scaling · B @ A has shape (out, in)."""

    name: str  # module path, e.g. "model.layers.0.self_attn.q_proj"
    A: torch.Tensor  # (r, in)
    B: torch.Tensor  # (out, r)
    rank: int
    alpha: float
    scaling: float
    magnitude: torch.Tensor | None = None  # DoRA (out,)
    fan_in_fan_out: bool = False  # the base weight is stored (in, out) (GPT-2 Conv1D); ΔW is transposed to match
    embedding: bool = False  # lora_embedding_A/B: the base weight (num_embeddings, dim) is ΔW transposed
    layer: int | None = None
    kind: str = ""  # last path component, e.g. "q_proj"
    bias: torch.Tensor | None = None  # lora_B.bias when the adapter was trained with lora_bias

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.B.shape[0]), int(self.A.shape[1])

    @property
    def weight_layout_transposed(self) -> bool:
        """True when the base weight this ΔW adds to is stored as (in, out)."""
        return self.fan_in_fan_out or self.embedding

    def parameters(self) -> int:
        """What this module trains: A, B, DoRA's magnitude and lora_B's bias (PEFT's lora_bias)."""
        n = self.A.numel() + self.B.numel()
        n += self.magnitude.numel() if self.magnitude is not None else 0
        return n + (self.bias.numel() if self.bias is not None else 0)


@dataclass
class PromptLayer:
    """One AdaptionPrompt layer: K prompt vectors and the layer's gate."""

    name: str  # "model.layers.30.self_attn"
    layer: int
    prompt: torch.Tensor  # (K, C)
    gate: torch.Tensor  # (1,)


@dataclass
class PeftAdapter:
    path: Path
    peft_type: str
    config: dict  # the config as read (validated fields normalised)
    lora: list[LoraFactors] = field(default_factory=list)
    prompts: list[PromptLayer] = field(default_factory=list)
    other_tensors: dict[str, TensorInfo] = field(default_factory=dict)  # e.g. modules_to_save weights
    dtypes: tuple[str, ...] = ()
    file_bytes: int = 0

    def module(self, name: str) -> LoraFactors:
        for m in self.lora:
            if m.name == name:
                return m
        raise KeyError(name)


# --- safetensors, checked by hand ------------------------------------------------------------


def read_safetensors_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
    """Parse and validate a safetensors header without trusting it.

    Returns (tensors, metadata, data_start). Raises AdapterFileError for anything a safetensors
    reader could choke on or be misled by.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise AdapterFileError(
                    path, f"truncated safetensors file ({size} bytes; even the 8-byte header length is missing)"
                )
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise AdapterFileError(
                    path, f"corrupted safetensors file: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit"
                )
            if 8 + n > size:
                raise AdapterFileError(
                    path,
                    f"truncated or corrupted safetensors file: the header claims "
                    f"{n} bytes but the file holds only {size - 8} after the length",
                )
            raw = fh.read(n)
    except OSError as exc:
        raise AdapterFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AdapterFileError(
            path, f"corrupted safetensors file: the header is not valid JSON ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(header, dict):
        raise AdapterFileError(path, "corrupted safetensors file: the header is not a JSON object")
    data_start = 8 + n
    data_len = size - data_start
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise AdapterFileError(path, "corrupted safetensors file: __metadata__ must map strings to strings")
    tensors: dict[str, TensorInfo] = {}
    for name, info in header.items():
        where = f"corrupted safetensors file: tensor {name!r}"
        if not isinstance(info, dict):
            raise AdapterFileError(path, f"{where} has no header entry object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise AdapterFileError(path, f"{where} has unknown dtype {dtype!r}")
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise AdapterFileError(path, f"{where} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise AdapterFileError(path, f"{where} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise AdapterFileError(path, f"{where} has invalid data_offsets {offsets!r}")
        if end > data_len:
            raise AdapterFileError(
                path,
                f"truncated or corrupted safetensors file: tensor {name!r} claims "
                f"bytes up to {end} but the file holds {data_len} bytes of data",
            )
        nbytes = math.prod(shape) * DTYPE_SIZES[dtype]
        if nbytes != end - begin:
            raise AdapterFileError(
                path, f"{where} has shape {shape} ({dtype}, {nbytes} bytes) but data_offsets span {end - begin} bytes"
            )
        tensors[name] = TensorInfo(dtype, tuple(shape), begin, end)
    # The data buffer must be exactly covered, without overlaps or holes (as the safetensors spec says).
    pos = 0
    for name, info in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.begin < pos:
            raise AdapterFileError(path, f"corrupted safetensors file: tensor {name!r} overlaps another tensor's bytes")
        if info.begin > pos:
            raise AdapterFileError(
                path, f"corrupted safetensors file: {info.begin - pos} unaccounted bytes before tensor {name!r}"
            )
        pos = info.end
    if pos != data_len:
        raise AdapterFileError(
            path,
            f"corrupted safetensors file: {data_len - pos} bytes after the last tensor are not described by the header",
        )
    return tensors, metadata, data_start


def load_safetensors(
    path: str | Path, names=None, check_finite: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, TensorInfo], dict[str, str]]:
    """Validate the header, then read the tensors (all, or `names`). Never unpickles anything."""
    from safetensors import safe_open

    path = Path(path)
    infos, metadata, _ = read_safetensors_header(path)
    wanted = list(infos) if names is None else list(names)
    tensors = {}
    try:
        with safe_open(str(path), framework="pt") as fh:
            for name in wanted:
                tensors[name] = fh.get_tensor(name)
    except Exception as exc:  # the library's own error types; the header was checked, so rare
        raise AdapterFileError(path, f"unreadable safetensors file ({type(exc).__name__}: {exc})") from None
    if check_finite:
        for name, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise AdapterFileError(path, f"tensor {name!r} contains NaN or infinite values")
    return tensors, infos, metadata


# --- config --------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise _missing(path, f"missing: a {what} needs this file")
    if not path.is_file():
        raise AdapterFileError(path, "is not a file")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise AdapterFileError(path, f"is {size} bytes, too large for a {what} config (limit {MAX_CONFIG_BYTES})")
        raw = read_regular_file(path, MAX_CONFIG_BYTES)  # never blocks on a FIFO, never reads past the limit
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AdapterFileError(path, "invalid JSON: not UTF-8 text") from None
    except JsonFileError as exc:
        raise AdapterFileError(path, str(exc).removeprefix(f"{path}: ")) from None
    except OSError as exc:
        raise AdapterFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = parse_json(text, str(path), expect=None, allow_nonfinite=True)
    except JsonFileError as exc:
        problem = str(exc).removeprefix(f"{path}: ")
        if "nested" in problem:
            problem = "invalid JSON: nested too deeply"
        raise AdapterFileError(path, problem.replace("not valid JSON", "invalid JSON")) from None
    if not isinstance(data, dict):
        raise AdapterFileError(path, f"invalid config: the top level is a JSON {_json_kind(data)}, not an object")
    return data


def _json_kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    return {list: "array", str: "string", int: "number", float: "number"}.get(type(v), type(v).__name__)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _type_error(path, key, value, expected) -> AdapterFileError:
    shown = json.dumps(value) if _jsonable(value) else repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return AdapterFileError(path, f"wrong type: {key} is {shown}, expected {expected}")


def _jsonable(v) -> bool:
    try:
        json.dumps(v, allow_nan=True)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


def check_pattern_key(path, field_name, key) -> None:
    """A pattern from the config is matched as PEFT matches it, but refused when it is not a plain
    regular expression, or when PEFT's backtracking matcher would take exponential time on it
    (explorer.schema.safe_regex); the message names the field and the key."""
    if not isinstance(key, str):
        raise _type_error(path, f"a {field_name} key", key, "a pattern string")
    try:
        pattern = compile_safe(key)
        if field_name != "target_modules":
            compile_safe(peft_key_regex(key))  # as PEFT composes it (a stray ')' could change its meaning)
    except UnsafePattern as exc:
        raise AdapterFileError(path, f"{field_name} key {_shown_key(key)} is refused: {exc}") from None
    if pattern.backtracking:
        raise AdapterFileError(
            path,
            f"{field_name} key {_shown_key(key)} has {pattern.backtracking}; refused because matching "
            "it (as PEFT does, with Python's re) can take exponential time",
        )


def _shown_key(key: str) -> str:
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


def target_matches(target_modules, module_name: str) -> bool:
    """PEFT's `check_target_module_exists` for the cases a saved config holds: a list (the path
    equals an entry or ends with '.' + entry), a string (regex full match), or 'all-linear'."""
    if target_modules is None or target_modules == "all-linear":
        return True
    if isinstance(target_modules, str):
        return compile_safe(target_modules).fullmatch(module_name)
    return any(module_name == t or module_name.endswith("." + t) for t in target_modules)


_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


def layer_index(module_name: str, layers_pattern=None) -> int | None:
    """The layer a module is in, as PEFT finds it for layers_to_transform: the number after the
    first `<layers_pattern>.` (default: after `layers.`)."""
    if not layers_pattern:
        return _layer_of(module_name)
    parts = module_name.split(".")
    names = [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern
    for name in names:
        width = name.count(".") + 1
        for i in range(len(parts) - width - 1):
            if ".".join(parts[i : i + width]) == name and parts[i + width].isdecimal() and parts[i + width].isascii():
                return int(parts[i + width])
    return None


def validate_config(config: dict, path: Path) -> dict:
    """Type-check the fields that change the maths; fill PEFT's defaults. Returns a normalised copy."""
    cfg = dict(config)
    peft_type = cfg.get("peft_type")
    if peft_type is None:
        raise AdapterFileError(path, "missing field peft_type (expected one of LORA, ADAPTION_PROMPT)")
    if not isinstance(peft_type, str):
        raise _type_error(path, "peft_type", peft_type, 'a string such as "LORA"')
    if peft_type not in READ_TYPES:
        if peft_type in OTHER_PEFT_TYPES:
            raise AdapterFileError(
                path,
                f"peft_type {peft_type!r} is a PEFT adapter type this explorer does "
                f"not read (it reads {', '.join(READ_TYPES)})",
            )
        raise AdapterFileError(path, f"unknown peft_type {peft_type!r} (expected one of {', '.join(READ_TYPES)})")
    if peft_type == "LORA":
        defaults = {
            "r": 8,
            "lora_alpha": 8,
            "use_rslora": False,
            "use_dora": False,
            "fan_in_fan_out": False,
            "rank_pattern": {},
            "alpha_pattern": {},
            "target_modules": None,
            "layers_to_transform": None,
            "bias": "none",
            "lora_bias": False,
        }
        for key, value in defaults.items():
            if cfg.get(key) is None:
                cfg[key] = value
        if cfg["bias"] not in ("none", "all", "lora_only"):
            raise _type_error(path, "bias", cfg["bias"], '"none", "all" or "lora_only"')
        if not isinstance(cfg["lora_bias"], bool):
            raise _type_error(path, "lora_bias", cfg["lora_bias"], "true or false")
        mts = cfg.get("modules_to_save")
        if mts is not None and not (isinstance(mts, list) and all(isinstance(m, str) and m for m in mts)):
            raise _type_error(path, "modules_to_save", mts, "a list of module names or null")
        if not _is_int(cfg["r"]) or cfg["r"] < 1:
            raise _type_error(path, "r", cfg["r"], "a whole number >= 1")
        if not _is_number(cfg["lora_alpha"]):
            raise _type_error(path, "lora_alpha", cfg["lora_alpha"], "a finite number")
        for key in ("use_rslora", "use_dora", "fan_in_fan_out"):
            if not isinstance(cfg[key], bool):
                raise _type_error(path, key, cfg[key], "true or false")
        for key, check, expected in (
            ("rank_pattern", lambda v: _is_int(v) and v >= 1, "whole numbers >= 1"),
            ("alpha_pattern", _is_number, "finite numbers"),
        ):
            pat = cfg[key]
            if not isinstance(pat, dict):
                raise _type_error(path, key, pat, f"an object mapping module patterns to {expected}")
            for k, v in pat.items():
                if not check(v):
                    raise _type_error(path, f"{key}[{k!r}]", v, expected[:-1] if expected.endswith("s") else expected)
                check_pattern_key(path, key, k)
        tm = cfg["target_modules"]
        if isinstance(tm, str):
            if tm != "all-linear":
                check_pattern_key(path, "target_modules", tm)
        elif tm is not None and not (isinstance(tm, list) and all(isinstance(t, str) for t in tm)):
            raise _type_error(path, "target_modules", tm, "a list of module names or a pattern string")
        lp = cfg.get("layers_pattern")
        if lp is not None:
            names = [lp] if isinstance(lp, str) else lp
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) > 100:
                raise _type_error(path, "layers_pattern", lp, "a module name or a list of module names")
            for n in names:
                if len(n) > 200 or not _PLAIN_NAME.match(n):
                    raise AdapterFileError(
                        path,
                        f"layers_pattern {_shown_key(n)} is refused: allowed a plain module name such as "
                        '"layers" or "transformer.h" (PEFT reads it as a pattern; only plain names are read here)',
                    )
            cfg["layers_pattern"] = lp if lp else None
        lt = cfg["layers_to_transform"]
        if _is_int(lt):
            cfg["layers_to_transform"] = lt = [lt]
        if lt is not None and not (isinstance(lt, list) and all(_is_int(i) and i >= 0 for i in lt)):
            raise _type_error(path, "layers_to_transform", lt, "a layer index or a list of layer indices")
    else:
        for key in ("adapter_len", "adapter_layers"):
            if key not in cfg:
                raise AdapterFileError(path, f"missing field {key} (an ADAPTION_PROMPT config needs it)")
            if not _is_int(cfg[key]) or cfg[key] < 1:
                raise _type_error(path, key, cfg[key], "a whole number >= 1")
        tm = cfg.get("target_modules", "self_attn")
        if not isinstance(tm, str):
            raise _type_error(path, "target_modules", tm, "the attention module name, a string")
        cfg["target_modules"] = tm
    return cfg


# --- reading -------------------------------------------------------------------------------

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_LORA_KEY = re.compile(
    r"^(?P<module>.+)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_B\.bias|"
    r"lora_embedding_A|lora_embedding_B|lora_magnitude_vector(?:\.weight)?)$"
)
_PROMPT_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>adaption_prompt|adaption_gate)$")


def _layer_of(name: str) -> int | None:
    m = _LAYER.search(name + ".")
    return int(m.group(1)) if m else None


def adapter_paths(directory: str | Path) -> tuple[Path, Path, Path]:
    """(directory, config path, weights path); accepts the directory or a file inside it."""
    directory = Path(directory)
    if directory.is_file() and directory.name in (CONFIG_NAME, WEIGHTS_NAME, PICKLE_NAME):
        directory = directory.parent
    if not directory.exists():
        raise _missing(directory, "no such adapter directory")
    if not directory.is_dir():
        raise AdapterFileError(
            directory,
            f"is not a PEFT adapter directory (expected a directory holding {CONFIG_NAME} and {WEIGHTS_NAME})",
        )
    return directory, directory / CONFIG_NAME, directory / WEIGHTS_NAME


def read_adapter_config(directory: str | Path) -> dict:
    """The validated, defaults-filled adapter_config.json of an adapter directory."""
    _, cfg_path, _ = adapter_paths(directory)
    return validate_config(_read_json(cfg_path, "PEFT adapter"), cfg_path)


def read_adapter(directory: str | Path) -> PeftAdapter:
    """Read and validate a PEFT adapter directory (LoRA or AdaptionPrompt). Never unpickles."""
    directory, cfg_path, w_path = adapter_paths(directory)
    config = validate_config(_read_json(cfg_path, "PEFT adapter"), cfg_path)
    if not w_path.is_file():
        pickle_path = directory / PICKLE_NAME
        if pickle_path.exists():
            raise AdapterFileError(
                pickle_path,
                "refused: adapter_model.bin is a Python pickle, and loading a "
                "pickle can run arbitrary code; convert it to "
                f"{WEIGHTS_NAME} with a tool you trust",
            )
        if w_path.exists():
            raise AdapterFileError(w_path, "is not a file")
        raise _missing(w_path, f"missing: a PEFT adapter needs {WEIGHTS_NAME} beside {CONFIG_NAME}")
    tensors, infos, _ = load_safetensors(w_path)
    adapter = PeftAdapter(
        path=directory,
        peft_type=config["peft_type"],
        config=config,
        dtypes=tuple(sorted({i.dtype for i in infos.values()})),
        file_bytes=w_path.stat().st_size,
    )
    if not tensors:
        raise AdapterFileError(w_path, "holds no tensors")
    if config["peft_type"] == "LORA":
        _read_lora(adapter, tensors, infos, w_path, cfg_path)
    else:
        _read_prompts(adapter, tensors, infos, w_path, cfg_path)
    return adapter


def _strip(key: str) -> str:
    return key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key


def _float_matrix(w_path, key, t, info, ndim) -> torch.Tensor:
    if info.dtype not in FLOAT_DTYPES:
        raise AdapterFileError(
            w_path,
            f"tensor {key!r} has dtype {info.dtype}; adapter weights must be floating point (F16, BF16, F32, F64)",
        )
    if t.ndim != ndim:
        raise AdapterFileError(
            w_path,
            f"tensor {key!r} has shape {list(t.shape)}; expected {ndim} dimensions"
            + (" (only Linear and Embedding LoRA modules are read)" if ndim == 2 else ""),
        )
    if any(d == 0 for d in t.shape):
        raise AdapterFileError(w_path, f"tensor {key!r} has an empty dimension: shape {list(t.shape)}")
    return t


def _read_lora(adapter: PeftAdapter, tensors, infos, w_path: Path, cfg_path: Path) -> None:
    cfg = adapter.config
    parts: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, t in tensors.items():
        m = _LORA_KEY.match(key)
        if not m:
            adapter.other_tensors[_strip(key)] = infos[key]
            continue
        part = m.group("part").replace(".weight", "").replace("lora_embedding_", "emb_")
        module = _strip(m.group("module"))
        if part in parts.setdefault(module, {}):
            raise AdapterFileError(w_path, f"module {module} has two {m.group('part')} tensors")
        parts[module][part] = (key, t)
    if not parts:
        raise AdapterFileError(w_path, "holds no LoRA factors (no ...lora_A.weight / ...lora_B.weight tensors)")
    for module in sorted(parts, key=_module_sort_key):
        p = parts[module]
        embedding = "emb_A" in p or "emb_B" in p
        a_key, b_key = ("emb_A", "emb_B") if embedding else ("lora_A", "lora_B")
        if embedding and ("lora_A" in p or "lora_B" in p):
            raise AdapterFileError(w_path, f"module {module} mixes lora_A/lora_B with lora_embedding_A/B")
        for need in (a_key, b_key):
            if need not in p:
                have = ", ".join(sorted(p))
                raise AdapterFileError(
                    w_path, f"module {module} has {have} but no {need.replace('emb_', 'lora_embedding_')}"
                )
        (ka, A), (kb, B) = p[a_key], p[b_key]
        A = _float_matrix(w_path, ka, A, infos[ka], 2)
        B = _float_matrix(w_path, kb, B, infos[kb], 2)
        # PEFT's Embedding LoRA: lora_embedding_A (r, num_embeddings), lora_embedding_B (dim, r), and
        # ΔW (num_embeddings, dim) = scaling · (B @ A)^T: kept as the (A, B) of B @ A, flagged `embedding`.
        if A.shape[0] != B.shape[1]:
            raise AdapterFileError(
                w_path,
                f"module {module}: lora_A {list(A.shape)} (r, in) and lora_B "
                f"{list(B.shape)} (out, r) disagree on the rank",
            )
        rkey = pattern_key(cfg["rank_pattern"], module)
        akey = pattern_key(cfg["alpha_pattern"], module)
        rank = cfg["rank_pattern"][rkey] if rkey is not None else cfg["r"]
        alpha = float(cfg["alpha_pattern"][akey] if akey is not None else cfg["lora_alpha"])
        if A.shape[0] != rank:
            source = f"rank_pattern[{rkey!r}]" if rkey is not None else "r"
            raise AdapterFileError(
                w_path, f"module {module}: lora_A has rank {A.shape[0]} but {CONFIG_NAME} says {source}={rank}"
            )
        layer = _layer_of(module)
        if not target_matches(cfg["target_modules"], module):
            raise AdapterFileError(
                w_path,
                f"module {module} is not among target_modules={short_json(cfg['target_modules'], 60)} of {CONFIG_NAME}",
            )
        lt = cfg["layers_to_transform"]
        if lt is not None and cfg.get("layers_pattern"):
            layer = layer_index(module, cfg["layers_pattern"])
        if lt is not None and layer is not None and layer not in lt:
            raise AdapterFileError(
                w_path,
                f"module {module} is in layer {layer}, outside layers_to_transform={short_json(lt, 60)} of {CONFIG_NAME}",
            )
        magnitude = None
        if "lora_magnitude_vector" in p:
            km, magnitude = p["lora_magnitude_vector"]
            if not cfg["use_dora"]:
                raise AdapterFileError(
                    w_path, f"module {module} has a DoRA magnitude vector but {CONFIG_NAME} has use_dora=false"
                )
            magnitude = _float_matrix(w_path, km, magnitude, infos[km], 1)
            if magnitude.shape[0] != B.shape[0]:
                raise AdapterFileError(
                    w_path,
                    f"module {module}: lora_magnitude_vector has {magnitude.shape[0]} "
                    f"entries but lora_B has {B.shape[0]} output rows",
                )
        elif cfg["use_dora"] and not embedding:
            raise AdapterFileError(
                w_path, f"module {module} has no lora_magnitude_vector but {CONFIG_NAME} has use_dora=true"
            )
        bias = None
        if "lora_B.bias" in p:
            kbias, bias = p["lora_B.bias"]
            bias = _float_matrix(w_path, kbias, bias, infos[kbias], 1)
            if bias.shape[0] != B.shape[0]:
                raise AdapterFileError(
                    w_path,
                    f"module {module}: lora_B.bias has {bias.shape[0]} entries but lora_B has {B.shape[0]} output rows",
                )
        scaling = alpha / math.sqrt(rank) if cfg["use_rslora"] else alpha / rank
        adapter.lora.append(
            LoraFactors(
                name=module,
                A=A,
                B=B,
                rank=rank,
                alpha=alpha,
                scaling=scaling,
                magnitude=magnitude,
                fan_in_fan_out=cfg["fan_in_fan_out"] and not embedding,
                embedding=embedding,
                layer=layer,
                kind=module.rsplit(".", 1)[-1],
                bias=bias,
            )
        )


def _module_sort_key(name: str):
    layer = _layer_of(name)
    return (layer is None, layer if layer is not None else 0, name)


def _read_prompts(adapter: PeftAdapter, tensors, infos, w_path: Path, cfg_path: Path) -> None:
    cfg = adapter.config
    K, L = cfg["adapter_len"], cfg["adapter_layers"]
    found: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, t in tensors.items():
        m = _PROMPT_KEY.match(key)
        if not m:
            adapter.other_tensors[_strip(key)] = infos[key]
            continue
        module = _strip(m.group("module"))
        found.setdefault(module, {})[m.group("part")] = (key, t)
    if not found:
        raise AdapterFileError(w_path, "holds no adaption prompts (no ...self_attn.adaption_prompt tensors)")
    hidden = None
    for module in sorted(found, key=_module_sort_key):
        p = found[module]
        for need in ("adaption_prompt", "adaption_gate"):
            if need not in p:
                raise AdapterFileError(w_path, f"module {module} has {', '.join(sorted(p))} but no {need}")
        (kp, prompt), (kg, gate) = p["adaption_prompt"], p["adaption_gate"]
        prompt = _float_matrix(w_path, kp, prompt, infos[kp], 3)
        gate = _float_matrix(w_path, kg, gate, infos[kg], 1)
        if prompt.shape[0] != 1 or prompt.shape[1] != K:
            raise AdapterFileError(
                w_path,
                f"tensor {kp!r} has shape {list(prompt.shape)}; expected "
                f"[1, {K}, hidden] for adapter_len={K} in {CONFIG_NAME}",
            )
        if hidden is not None and prompt.shape[2] != hidden:
            raise AdapterFileError(
                w_path, f"tensor {kp!r} has hidden size {prompt.shape[2]} but other layers have {hidden}"
            )
        hidden = prompt.shape[2]
        if gate.shape[0] != 1:
            raise AdapterFileError(
                w_path, f"tensor {kg!r} has shape {list(gate.shape)}; expected [1] (one gate per layer)"
            )
        layer = _layer_of(module)
        if layer is None:
            raise AdapterFileError(w_path, f"module {module} is not inside a numbered layer (model.layers.N)")
        if module.rsplit(".", 1)[-1] != cfg["target_modules"]:
            raise AdapterFileError(
                w_path, f"module {module} is not the target_modules={cfg['target_modules']!r} of {CONFIG_NAME}"
            )
        adapter.prompts.append(PromptLayer(module, layer, prompt[0], gate))
    layers = [p.layer for p in adapter.prompts]
    if len(layers) != L:
        raise AdapterFileError(
            w_path, f"holds prompts for {len(layers)} layers but {CONFIG_NAME} says adapter_layers={L}"
        )
    if len(set(layers)) != len(layers):
        raise AdapterFileError(w_path, "holds two prompts for the same layer")
    if layers != list(range(layers[0], layers[0] + L)):
        raise AdapterFileError(w_path, f"prompts are in layers {layers}; PEFT adapts the top {L} consecutive layers")


# --- writing -------------------------------------------------------------------------------


def _peft_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("peft")
    except Exception:
        return None


def write_adapter_files(directory: str | Path, config: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write adapter_config.json and adapter_model.safetensors (each atomically) as PEFT lays them out;
    `tensors` are keyed as in the file. Refuses NaN or infinite values."""
    from safetensors.torch import save

    from explorer.schema.files import atomic_write_bytes, atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    host = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    for k, v in host.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ValueError(
                f"{directory / WEIGHTS_NAME}: refusing to write tensor {k!r}: it contains NaN or infinite values"
            )
    # Serialised to bytes and written by our atomic path: no temporary file of the library's own.
    atomic_write_bytes(directory / WEIGHTS_NAME, save(host, metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_lora_adapter(
    directory: str | Path,
    modules: dict[str, dict[str, torch.Tensor]],
    *,
    r: int,
    lora_alpha: float,
    use_rslora: bool = False,
    use_dora: bool = False,
    target_modules=None,
    layers_to_transform=None,
    lora_dropout: float = 0.0,
    rank_pattern: dict | None = None,
    alpha_pattern: dict | None = None,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write a PEFT LoRA adapter directory.

    `modules`: module path (e.g. "model.layers.0.self_attn.q_proj") -> {"A": (r, in), "B": (out, r),
    and for DoRA "magnitude": (out,)}. target_modules defaults to the modules' last path components.
    """
    directory = Path(directory)
    tensors = {}
    for name, parts in modules.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = parts["A"]
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = parts["B"]
        if use_dora:
            tensors[f"{PEFT_PREFIX}{name}.lora_magnitude_vector"] = parts["magnitude"]
    if target_modules is None:
        target_modules = sorted({n.rsplit(".", 1)[-1] for n in modules})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": int(r),
        "lora_alpha": float(lora_alpha),
        "lora_dropout": float(lora_dropout),
        "use_rslora": bool(use_rslora),
        "use_dora": bool(use_dora),
        "target_modules": list(target_modules),
        "layers_to_transform": (None if layers_to_transform is None else [int(i) for i in layers_to_transform]),
        "layers_pattern": None,
        "rank_pattern": dict(rank_pattern or {}),
        "alpha_pattern": dict(alpha_pattern or {}),
        "fan_in_fan_out": False,
        "bias": "none",
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
    }
    version = _peft_version()
    if version:
        config["peft_version"] = version
    write_adapter_files(directory, config, tensors)
    return directory


def write_adaption_prompt_adapter(
    directory: str | Path,
    prompts: dict[int, tuple[torch.Tensor, torch.Tensor]],
    *,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write a PEFT AdaptionPrompt adapter directory.

    `prompts`: layer index -> (prompt (K, C), gate (1,)); the layers must be the model's top L, consecutive.
    """
    directory = Path(directory)
    layers = sorted(prompts)
    if not layers or layers != list(range(layers[0], layers[0] + len(layers))):
        raise ValueError(f"adaption prompts need consecutive top layers, got {layers}")
    lengths = {prompts[i][0].shape[0] for i in layers}
    if len(lengths) != 1:
        raise ValueError(f"adaption prompts need one prompt length for all layers, got {sorted(lengths)}")
    tensors = {}
    for i in layers:
        prompt, gate = prompts[i]
        if tuple(gate.shape) != (1,):
            raise ValueError(f"layer {i}: AdaptionPrompt holds one gate per layer, got shape {list(gate.shape)}")
        tensors[f"{PEFT_PREFIX}model.layers.{i}.self_attn.adaption_prompt"] = prompt.reshape(1, *prompt.shape)
        tensors[f"{PEFT_PREFIX}model.layers.{i}.self_attn.adaption_gate"] = gate.reshape(1)
    config = {
        "peft_type": "ADAPTION_PROMPT",
        "task_type": "CAUSAL_LM",
        "adapter_len": int(lengths.pop()),
        "adapter_layers": len(layers),
        "target_modules": "self_attn",
        "inference_mode": True,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
    }
    version = _peft_version()
    if version:
        config["peft_version"] = version
    write_adapter_files(directory, config, tensors)
    return directory
