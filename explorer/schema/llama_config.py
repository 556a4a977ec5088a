"""The Llama model's configuration: plain data, no torch, so pricing a model (schema/budget.py) and
the window's budget view need no torch in the GUI process (training runs in a child process)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


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
    attention_bias: bool = False
    mlp_bias: bool = False
    head_dim: int | None = None

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads={self.num_key_value_heads} must divide "
                f"num_attention_heads={self.num_attention_heads}"
            )

    @classmethod
    def from_hf_dict(cls, d: dict) -> LlamaConfig:
        if d.get("model_type", "llama") not in ("llama", "mistral"):
            raise ValueError(f"model_type={d.get('model_type')!r} is not a Llama model")
        if d.get("rope_scaling"):
            raise ValueError(f"rope_scaling={d['rope_scaling']!r} is not supported (plain RoPE only)")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_hf_dict(self) -> dict:
        d = asdict(self)
        d.update(
            model_type="llama",
            architectures=["LlamaForCausalLM"],
            hidden_act="silu",
            torch_dtype="float32",
            rope_scaling=None,
            attention_dropout=0.0,
            initializer_range=0.02,
            use_cache=True,
            pretraining_tp=1,
        )
        return d
