"""What is inside a PEFT adapter, as plain data: the report `explorer.core.inspect_adapter` computes
(per LoRA module its shape, rank, scaling, spectrum, energies, ranks, DoRA statistics; the layer x
module grid of ||ΔW||_F; AdaptionPrompt layers; what the adapter trains, part by part) and
`to_json_dict()`, what `inspect --json` prints. No torch: the GUI process receives these from the
child process that read the adapter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from explorer.schema.snapshot import MatrixSnapshot

JSON_FORMAT = "peft-explorer-inspect"
JSON_VERSION = 1


# --- report data ---------------------------------------------------------------------------


@dataclass
class DoraStats:
    """Statistics of a DoRA magnitude vector m (out,). With a base model, also of the per-row factor
    m / ||W0 + ΔW||_row that DoRA multiplies each output row by (1 everywhere at initialisation)."""

    count: int
    min: float
    max: float
    mean: float
    std: float
    norm: float
    row_scale_min: float | None = None
    row_scale_max: float | None = None
    row_scale_mean: float | None = None


@dataclass
class ModuleReport:
    name: str  # module path, e.g. "model.layers.0.self_attn.q_proj"
    shape: tuple[int, int]  # (out, in) of ΔW
    rank: int
    alpha: float
    scaling: float
    fro_norm: float  # ||ΔW||_F
    singular_values: list[float]  # of ΔW, descending, r values
    effective_rank: float
    stable_rank: float
    layer: int | None = None
    module: str = ""  # last path component, e.g. "q_proj"
    spectral_norm: float = 0.0
    nuclear_norm: float = 0.0
    numerical_rank: int = 0
    energy_top_k: dict[int, float] = field(default_factory=dict)
    cumulative_energy: list[float] = field(default_factory=list)
    parameters: int = 0
    lora_A_norm: float = 0.0
    lora_B_norm: float = 0.0
    fan_in_fan_out: bool = False
    embedding: bool = False
    dora: DoraStats | None = None
    amplification: dict | None = None
    lora_bias: dict | None = None  # PEFT's lora_bias: lora_B's bias b (out,): count, norm, min, max, merged_norm


@dataclass
class TrainableParts:
    """What an adapter trains, part by part, as PEFT's get_nb_trainable_parameters counts it: every
    tensor PEFT saved for the adapter, except embedding layers saved only because the vocabulary was
    resized (listed in other_tensors, not counted)."""

    lora_A: int = 0
    lora_B: int = 0
    lora_magnitude_vector: int = 0  # DoRA
    lora_bias: int = 0  # lora_B's bias (lora_bias=true)
    bias: int = 0  # the base model's biases (bias="all" or "lora_only")
    modules_to_save: int = 0  # full copies of whole modules (modules_to_save)
    adaption_prompt: int = 0
    adaption_gate: int = 0
    modules_to_save_tensors: list[str] = field(default_factory=list)
    bias_tensors: list[str] = field(default_factory=list)

    def total(self) -> int:
        return sum(v for v in asdict(self).values() if isinstance(v, int))

    def counts(self) -> dict[str, int]:
        """The non-zero parts by name."""
        return {k: v for k, v in asdict(self).items() if isinstance(v, int) and v}


@dataclass
class NormGrid:
    """||ΔW||_F per (layer, module kind); None where that module carries no adapter."""

    layers: list[int]
    modules: list[str]
    fro_norm: list[list[float | None]]


@dataclass
class PromptLayerReport:
    layer: int
    name: str
    gate: float  # PEFT's gate, applied as is (identity)
    prompt_norm: float  # ||P||_F of the (K, C) prompt
    vector_norms: list[float]  # ||p_k|| per prompt vector


@dataclass
class AdaptionPromptReport:
    adapter_len: int
    adapter_layers: int
    hidden_size: int
    layers: list[PromptLayerReport]


@dataclass
class AdapterReport:
    path: str
    peft_type: str
    config: dict
    modules: list[ModuleReport]
    grid: NormGrid | None
    adaption_prompt: AdaptionPromptReport | None
    trainable_parameters: int
    file_bytes: int
    dtypes: list[str]
    other_tensors: dict[str, list[int]]
    base: str | None = None
    seconds: float = 0.0
    trainable_parts: TrainableParts = field(default_factory=TrainableParts)
    # the factors (core.peft_files.PeftAdapter) while the report stays in the process that read them
    adapter: object | None = field(default=None, repr=False, compare=False)
    # each LoRA module as the live views draw it (MatrixSnapshot), when the report crosses a process
    # boundary without its factors (core.inspect_adapter.inspect_for_views)
    matrices: dict[str, MatrixSnapshot] = field(default_factory=dict, repr=False, compare=False)

    def module(self, name: str) -> ModuleReport:
        for m in self.modules:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_json_dict(self) -> dict:
        """The `inspect --json` object. Fixed fields (README): peft_type, modules[].{name, shape,
        rank, alpha, scaling, fro_norm, singular_values, effective_rank, stable_rank}. Non-finite
        floats (an infinite amplification factor) become null, so the output is strict JSON."""
        d = {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "path": self.path,
            "peft_type": self.peft_type,
            "config": self.config,
            "dtypes": list(self.dtypes),
            "file_bytes": self.file_bytes,
            "trainable_parameters": self.trainable_parameters,
            "trainable_parts": {
                **self.trainable_parts.counts(),
                "modules_to_save_tensors": list(self.trainable_parts.modules_to_save_tensors),
                "bias_tensors": list(self.trainable_parts.bias_tensors),
            },
            "base": self.base,
            "modules": [_module_json(m) for m in self.modules],
            "grid": asdict(self.grid) if self.grid is not None else None,
            "adaption_prompt": asdict(self.adaption_prompt) if self.adaption_prompt is not None else None,
            "other_tensors": {k: list(v) for k, v in self.other_tensors.items()},
        }
        return _finite(d)


def _module_json(m: ModuleReport) -> dict:
    d = asdict(m)
    d["shape"] = list(m.shape)
    d["energy_top_k"] = {str(k): v for k, v in m.energy_top_k.items()}
    return d


def _finite(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x
