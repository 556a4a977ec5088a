"""The Llama-family model's configuration: plain data, no torch, so pricing a model (schema/budget.py)
and the window's budget view need no torch in the GUI process (training runs in a child process).

`from_hf_dict` reads a Hugging Face `config.json` of model_type llama, mistral or qwen2, as
transformers 5 reads it (its defaults for missing keys, both RoPE layouts), checking each field's
type and range; `to_hf_dict` writes one that transformers 4 and 5 both read back the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
ROPE_TYPES = ("default", "linear", "llama3")  # what RotaryEmbedding implements
_ROPE_KEYS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
# transformers' defaults for keys a config.json leaves out (LlamaConfig, MistralConfig, Qwen2Config).
_HF_DEFAULTS = {
    "llama": dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=None,
        max_position_embeddings=2048,
    ),
    "mistral": dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096 * 32,
    ),
    "qwen2": dict(
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=22016,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=32768,
    ),
}
_LAYER_TYPES = ("full_attention", "sliding_attention")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class LlamaConfig:
    vocab_size: int = 256
    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Llama's: a bias on q, k, v and o
    mlp_bias: bool = False
    head_dim: int | None = None
    model_type: str = "llama"
    # None (plain RoPE), {"rope_type": "linear", "factor"} or {"rope_type": "llama3", "factor",
    # "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}
    rope_scaling: dict | None = None
    qkv_bias: bool = False  # Qwen2's: a bias on q, k and v only
    sliding_window: int | None = None  # keys within this many positions (Mistral, Qwen2)
    sliding_window_layers: tuple[int, ...] | None = None  # the layers that slide; None: all
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None and _is_int(self.hidden_size) and _is_int(self.num_attention_heads):
            self.head_dim = self.hidden_size // max(1, self.num_attention_heads)
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
            "head_dim",
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name}={value!r} must be a whole number of at least 1")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads={self.num_key_value_heads} must divide "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even (RoPE rotates pairs)")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"model_type={self.model_type!r} is not supported: allowed {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        if not _is_number(self.rms_norm_eps) or self.rms_norm_eps <= 0:
            raise ValueError(f"rms_norm_eps={self.rms_norm_eps!r} must be a number > 0")
        if not _is_number(self.rope_theta) or self.rope_theta <= 1:
            raise ValueError(f"rope_theta={self.rope_theta!r} must be a number > 1")
        self.rope_theta = float(self.rope_theta)
        self.rope_scaling = check_rope_scaling(self.rope_scaling, self.max_position_embeddings)
        if self.sliding_window is not None and (not _is_int(self.sliding_window) or self.sliding_window < 1):
            raise ValueError(f"sliding_window={self.sliding_window!r} must be a whole number of at least 1 or null")
        if self.sliding_window_layers is not None:
            self.sliding_window_layers = tuple(self.sliding_window_layers)
            if not all(_is_int(i) and 0 <= i < self.num_hidden_layers for i in self.sliding_window_layers):
                raise ValueError(
                    f"sliding_window_layers={list(self.sliding_window_layers)} names a layer that is not there"
                )
        for name in ("bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{name}={value!r} must be a token id or null")

    def window_of(self, layer: int) -> int | None:
        """The sliding window of one layer, or None where it attends to every earlier position."""
        if self.sliding_window is None:
            return None
        if self.sliding_window_layers is None or layer in self.sliding_window_layers:
            return self.sliding_window
        return None

    @classmethod
    def from_hf_dict(cls, d: dict, where: str = "config.json") -> LlamaConfig:
        """A config.json's dict, checked field by field; ValueError starting with `where` otherwise."""
        try:
            return cls(**_read_hf(d))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def to_hf_dict(self) -> dict:
        d = {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            # transformers 4's layout, which transformers 5 reads too (rope_parameters is 5 only)
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "head_dim": self.head_dim,
            "model_type": self.model_type,
            "architectures": [_ARCHITECTURES[self.model_type]],
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "rope_scaling": None if self.rope_scaling is None else dict(self.rope_scaling),
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": True,
        }
        if self.model_type == "llama":
            d.update(attention_bias=self.attention_bias, mlp_bias=self.mlp_bias, pretraining_tp=1)
        elif self.model_type == "mistral":
            d["sliding_window"] = self.sliding_window
        else:
            layers = range(self.num_hidden_layers)
            d.update(
                use_sliding_window=self.sliding_window is not None,
                sliding_window=self.sliding_window,
                max_window_layers=self.num_hidden_layers,
                layer_types=[_LAYER_TYPES[self.window_of(i) is not None] for i in layers],
            )
        for name in ("bos_token_id", "eos_token_id"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        return d


CONFIG_MAX_BYTES = 4_000_000


def read_hf_config(path) -> LlamaConfig:
    """A config.json file (or a directory holding one) as a LlamaConfig; ValueError (one line) naming
    the file for anything unreadable or unsupported."""
    from pathlib import Path

    from explorer.schema.jsonio import read_json_file

    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model config.json")
    d = read_json_file(path, max_bytes=CONFIG_MAX_BYTES)  # size, UTF-8, depth, top-level type: named errors
    return LlamaConfig.from_hf_dict(d, where=str(path))


def check_rope_scaling(scaling, max_position_embeddings: int) -> dict | None:
    """The scaling in its one normalised form, or ValueError naming the key and what is allowed."""
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise ValueError(f"rope_parameters={scaling!r} must be an object (or null)")
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "default":
        return None
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope_type={rope_type!r} is not supported: allowed {', '.join(ROPE_TYPES)}")
    out = {"rope_type": rope_type}
    for key in _ROPE_KEYS[rope_type]:
        value = scaling.get(key)
        if key == "original_max_position_embeddings":
            value = max_position_embeddings if value is None else value
            if not _is_int(value) or value < 1:
                raise ValueError(f"rope {key}={value!r} must be a whole number of at least 1")
        elif value is None:
            raise ValueError(f"rope_type={rope_type!r} needs {key}, which is missing")
        elif not _is_number(value) or value <= 0:
            raise ValueError(f"rope {key}={value!r} must be a number > 0")
        out[key] = value
    if rope_type == "llama3" and out["high_freq_factor"] <= out["low_freq_factor"]:
        raise ValueError(
            f"rope high_freq_factor={out['high_freq_factor']!r} must be greater than "
            f"low_freq_factor={out['low_freq_factor']!r}"
        )
    return out


def _read_rope(d: dict) -> tuple:
    """(rope_theta, scaling) from either layout, with transformers 5's precedence: a truthy old
    `rope_scaling` wins over `rope_parameters`; theta from the dict, else top level, else 10000."""
    params = d.get("rope_scaling") or d.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise ValueError(f"rope_parameters={params!r} must be an object (or null)")
    if any(isinstance(v, dict) for v in params.values()):
        raise ValueError("rope_parameters per layer type are not supported: allowed one set for every layer")
    partial = params.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise ValueError(f"partial_rotary_factor={partial!r} is not supported: allowed 1.0 (RoPE on the whole head)")
    theta = params.get("rope_theta", d.get("rope_theta"))
    theta = 10000.0 if theta is None else theta
    if not _is_number(theta) or theta <= 1:
        raise ValueError(f"rope_theta={theta!r} must be a number > 1")
    scaling = dict(params)
    if "original_max_position_embeddings" in d and "original_max_position_embeddings" not in scaling:
        scaling["original_max_position_embeddings"] = d["original_max_position_embeddings"]
    return theta, scaling


def _read_hf(d) -> dict:
    """LlamaConfig's keyword arguments from a config.json dict, checking each field's type."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, found {type(d).__name__}")
    model_type = d.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model_type={model_type!r} is not supported: allowed {', '.join(SUPPORTED_MODEL_TYPES)} "
            "(Llama 1/2/3, TinyLlama, SmolLM, Code Llama, Mistral, Qwen2)"
        )
    act = d.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act={act!r} is not supported: allowed silu")

    def get(name, default, kind):
        value = d.get(name, default)
        if value is None and default is None:
            return None
        ok = {"int": _is_int, "number": _is_number, "bool": lambda v: isinstance(v, bool)}[kind](value)
        if not ok:
            what = {"int": "a whole number", "number": "a finite number", "bool": "true or false"}[kind]
            raise ValueError(f"{name}={value!r} must be {what}")
        return value

    kw = {name: get(name, default, "int") for name, default in _HF_DEFAULTS[model_type].items()}
    kw["head_dim"] = get("head_dim", None, "int")
    kw["rms_norm_eps"] = get("rms_norm_eps", 1e-6, "number")
    kw["tie_word_embeddings"] = get("tie_word_embeddings", False, "bool")
    kw["model_type"] = model_type
    kw["rope_theta"], kw["rope_scaling"] = _read_rope(d)
    if model_type == "llama":  # Mistral and Qwen2 have fixed biases whatever the file says
        kw["attention_bias"] = get("attention_bias", False, "bool")
        kw["mlp_bias"] = get("mlp_bias", False, "bool")
    elif model_type == "mistral":
        # MistralConfig's default is 4096; an explicit null turns the window off
        kw["sliding_window"] = None if d.get("sliding_window", 4096) is None else get("sliding_window", 4096, "int")
    else:
        kw["qkv_bias"] = True
        if get("use_sliding_window", False, "bool"):
            kw["sliding_window"] = get("sliding_window", 4096, "int")
            kw["sliding_window_layers"] = _qwen2_sliding_layers(d, kw["num_hidden_layers"], get)
    for name in ("bos_token_id", "eos_token_id"):
        value = d.get(name)
        if isinstance(value, list):  # several end tokens (Llama 3.1 instruct): the first one ends our samples
            value = value[0] if value else None
        if value is not None and not _is_int(value):
            raise ValueError(f"{name}={value!r} must be a token id")
        kw[name] = value
    return kw


def _qwen2_sliding_layers(d: dict, n_layers: int, get) -> tuple[int, ...]:
    types = d.get("layer_types")
    if types is None:  # Qwen2Config: the layers from max_window_layers on slide
        first = get("max_window_layers", 28, "int")
        return tuple(range(max(0, first), n_layers))
    if not isinstance(types, list) or len(types) != n_layers or any(t not in _LAYER_TYPES for t in types):
        raise ValueError(f"layer_types must list one of {', '.join(_LAYER_TYPES)} for each of the {n_layers} layers")
    return tuple(i for i, t in enumerate(types) if t == "sliding_attention")


def weight_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of this config holds, under transformers' names, with its shape
    (lm_head.weight left out when the embeddings are tied)."""
    c, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    q, kv = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    qkv_bias = config.attention_bias or config.qkv_bias
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, c)}
    for n in range(config.num_hidden_layers):
        p = f"model.layers.{n}."
        for name, shape, bias in (
            ("self_attn.q_proj", (q, c), qkv_bias),
            ("self_attn.k_proj", (kv, c), qkv_bias),
            ("self_attn.v_proj", (kv, c), qkv_bias),
            ("self_attn.o_proj", (c, q), config.attention_bias),
            ("mlp.gate_proj", (i, c), config.mlp_bias),
            ("mlp.up_proj", (i, c), config.mlp_bias),
            ("mlp.down_proj", (c, i), config.mlp_bias),
        ):
            out[p + name + ".weight"] = shape
            if bias:
                out[p + name + ".bias"] = (shape[0],)
        out[p + "input_layernorm.weight"] = (c,)
        out[p + "post_attention_layernorm.weight"] = (c,)
    out["model.norm.weight"] = (c,)
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = (v, c)
    return out
