"""What a PEFT setting costs on a Llama-shaped model: trainable parameters, storage, optimizer memory.

Pure arithmetic on a `LlamaConfig` (nothing is allocated), so it prices a 70B model instantly.
Counts follow docs/reference.md: LoRA trains r·(in + out) per adapted matrix, plus `out` for DoRA's
magnitude vector; zero-init prefix tuning trains L·(K·C + gates) (the prompt vectors and the gates;
the base projections stay frozen). These are the counts of PEFT's `get_nb_trainable_parameters`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from explorer.schema.format import format_bytes
from explorer.schema.llama_config import LlamaConfig
from explorer.schema.peft_patterns import pattern_key

MB = 1_000_000  # storage is quoted in decimal megabytes, as in the papers (8.4 MB for 4.2M fp16)

# Published Hugging Face configs (meta-llama/Llama-2-7b-hf etc.; LLaMA-1 7B/13B share the shapes).
PRESETS: dict[str, LlamaConfig] = {
    "llama-7b": LlamaConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    "llama-13b": LlamaConfig(
        vocab_size=32000,
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=40,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    "llama-2-70b": LlamaConfig(
        vocab_size=32000,
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
}

ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
TARGETS = ATTENTION_TARGETS + MLP_TARGETS
METHODS = ("lora", "prefix", "lora+prefix", "full")
GATE_SHAPES = ("head", "layer")

# Adam keeps two fp32 moments per trainable parameter, and training holds an fp32 gradient.
OPTIMIZER_BYTES_PER_PARAM = 4 + 4 + 4


def module_shapes(config: LlamaConfig) -> dict[str, tuple[int, int]]:
    """(out, in) of each adaptable linear layer, as `nn.Linear.weight`; GQA shrinks k and v."""
    c, i = config.hidden_size, config.intermediate_size
    q = config.num_attention_heads * config.head_dim
    kv = config.num_key_value_heads * config.head_dim
    return {
        "q_proj": (q, c),
        "k_proj": (kv, c),
        "v_proj": (kv, c),
        "o_proj": (c, q),
        "gate_proj": (i, c),
        "up_proj": (i, c),
        "down_proj": (c, i),
    }


def module_path(target: str, layer: int) -> str:
    """The HF Llama module name, e.g. model.layers.3.self_attn.q_proj."""
    block = "self_attn" if target in ATTENTION_TARGETS else "mlp"
    return f"model.layers.{layer}.{block}.{target}"


def count_model_params(config: LlamaConfig) -> int:
    """Parameters of LlamaForCausalLM with this config (a tied lm_head counts once)."""
    c, v = config.hidden_size, config.vocab_size
    shapes = module_shapes(config)
    per_layer = sum(o * i for o, i in shapes.values()) + 2 * c  # linears + two RMSNorm weights
    if config.attention_bias:
        per_layer += sum(shapes[t][0] for t in ATTENTION_TARGETS)
    elif config.qkv_bias:  # Qwen2: q, k and v only
        per_layer += sum(shapes[t][0] for t in ("q_proj", "k_proj", "v_proj"))
    if config.mlp_bias:
        per_layer += sum(shapes[t][0] for t in MLP_TARGETS)
    total = v * c + config.num_hidden_layers * per_layer + c  # embeddings, layers, final norm
    if not config.tie_word_embeddings:
        total += v * c
    return total


@dataclass
class Budget:
    """The cost of one setting. `breakdown` maps each adapted part to its own figures."""

    method: str
    trainable_params: int
    base_params: int
    total_params: int  # base + adapter parameters (the base itself for "full")
    share: float  # trainable / base
    storage_bytes_fp16: int  # the trainable weights as saved in fp16 / bf16
    storage_bytes_fp32: int
    optimizer_bytes: int  # Adam: 2 fp32 moments + 1 fp32 gradient = 12 bytes per trainable param
    breakdown: dict[str, dict] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_range(name: str, value: int, low: int, high: int, what: str = "") -> None:
    if not (low <= value <= high):
        raise ValueError(f"{name}={value} is out of range{what}: allowed {low}..{high}")


def _rank_for(name: str, rank: int, rank_pattern: dict | None) -> tuple[int, str]:
    """The rank for one module path and the setting it came from, PEFT-style: the first
    rank_pattern key matching the end of the path (peft.utils.other.get_pattern_key), else rank."""
    key = pattern_key(rank_pattern or {}, name)
    if key is not None:
        return int(rank_pattern[key]), f"rank_pattern[{key!r}]"
    return rank, "rank"


def compute_budget(
    config: LlamaConfig,
    method: str,
    rank: int = 8,
    targets: tuple[str, ...] | list[str] | str = ("q_proj", "v_proj"),
    layers: list[int] | None = None,
    prefix_len: int = 10,
    prefix_layers: int = 30,
    gate_shape: str = "head",
    rank_pattern: dict[str, int] | None = None,
    use_dora: bool = False,
) -> Budget:
    """Price a PEFT setting on `config`.

    method: "lora" (rank, targets, layers = layers_to_transform or None for all, rank_pattern as in
    PEFT; use_dora adds each adapted matrix's magnitude vector, `out` parameters), "prefix"
    (prefix_len K prompt vectors on the top prefix_layers L layers, gates per "head" or per "layer"), "lora+prefix" (both), or "full" (every base parameter trains).
    Only the settings the method uses are validated; a bad one raises ValueError naming the
    setting, its value and the allowed range.

    optimizer_bytes assumes Adam/AdamW: two fp32 moment estimates per trainable parameter plus its
    fp32 gradient (12 bytes per trainable parameter); the frozen base and activations are not counted.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown: allowed {', '.join(METHODS)}")
    n_layers = config.num_hidden_layers
    base = count_model_params(config)
    breakdown: dict[str, dict] = {}
    settings: dict = {"method": method}

    if method in ("lora", "lora+prefix"):
        if isinstance(targets, str):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        targets = list(dict.fromkeys(targets))  # drop repeats, keep order
        if not targets:
            raise ValueError(f"targets is empty: allowed any of {', '.join(TARGETS)}")
        for t in targets:
            if t not in TARGETS:
                raise ValueError(f"targets: {t!r} is unknown: allowed {', '.join(TARGETS)}")
        if layers is None:
            layer_ids = range(n_layers)  # not a list: a config may claim millions of layers
        else:
            layer_ids = sorted(set(int(i) for i in layers))
            if not layer_ids:
                raise ValueError(f"layers is empty: allowed indices 0..{n_layers - 1}")
            for i in layer_ids:
                _check_range("layers", i, 0, n_layers - 1)
        shapes = module_shapes(config)
        for t in targets:
            out_f, in_f = shapes[t]
            params, ranks = 0, set()
            if not rank_pattern:  # one rank everywhere: no per-layer pattern matching needed
                _check_range("rank", rank, 1, min(in_f, out_f), f" for {t} ({out_f}x{in_f})")
                params, ranks = rank * (in_f + out_f) * len(layer_ids), {rank}
            else:
                for i in layer_ids:
                    r, setting = _rank_for(module_path(t, i), rank, rank_pattern)
                    _check_range(setting, r, 1, min(in_f, out_f), f" for {t} ({out_f}x{in_f})")
                    params += r * (in_f + out_f)
                    ranks.add(r)
            dora = out_f * len(layer_ids) if use_dora else 0  # one magnitude per output row
            breakdown[t] = {
                "shape": [out_f, in_f],
                "layers": len(layer_ids),
                "rank": ranks.pop() if len(ranks) == 1 else sorted(ranks),
                "params": params + dora,
            }
            if use_dora:
                breakdown[t]["dora_params"] = dora
        settings.update(
            rank=rank,
            targets=targets,
            layers=None if layers is None else layer_ids,
            rank_pattern=rank_pattern or None,
            use_dora=bool(use_dora),
        )

    if method in ("prefix", "lora+prefix"):
        if prefix_len < 1:
            raise ValueError(f"prefix_len={prefix_len} is out of range: allowed 1 or more")
        _check_range("prefix_layers", prefix_layers, 1, n_layers)
        if gate_shape not in GATE_SHAPES:
            raise ValueError(f"gate_shape={gate_shape!r} is unknown: allowed {', '.join(GATE_SHAPES)}")
        gates = config.num_attention_heads if gate_shape == "head" else 1
        prompt = prefix_layers * prefix_len * config.hidden_size
        breakdown["prefix"] = {
            "layers": prefix_layers,
            "prefix_len": prefix_len,
            "hidden": config.hidden_size,
            "prompt_params": prompt,
            "gate_params": prefix_layers * gates,
            "params": prompt + prefix_layers * gates,
        }
        settings.update(prefix_len=prefix_len, prefix_layers=prefix_layers, gate_shape=gate_shape)

    if method == "full":
        trainable = base
        breakdown["full"] = {"params": base}
        total = base
    else:
        trainable = sum(part["params"] for part in breakdown.values())
        total = base + trainable
    return Budget(
        method=method,
        trainable_params=trainable,
        base_params=base,
        total_params=total,
        share=trainable / base,
        storage_bytes_fp16=2 * trainable,
        storage_bytes_fp32=4 * trainable,
        optimizer_bytes=OPTIMIZER_BYTES_PER_PARAM * trainable,
        breakdown=breakdown,
        settings=settings,
    )


def price_presets(method: str, **settings) -> dict[str, dict]:
    """The setting priced on every preset (`compute_budget(PRESETS[name], method, **settings)` as a
    dict), leaving out the presets it does not fit (a rank or layer beyond a preset's size)."""
    out = {}
    for name, config in PRESETS.items():
        try:
            out[name] = compute_budget(config, method, **settings).to_dict()
        except ValueError:
            continue
    return out


def format_budget(budget: Budget, model_name: str | None = None) -> str:
    """Human-readable lines: what trains, how much of the model that is, what it costs to keep."""
    s = budget.settings
    what = budget.method
    if "rank" in s:
        scope = "all layers" if s["layers"] is None else f"layers {','.join(map(str, s['layers']))}"
        what += f", r={s['rank']} on {', '.join(s['targets'])} ({scope})"
        if s["rank_pattern"]:
            what += f", rank_pattern {s['rank_pattern']}"
        if s.get("use_dora"):
            what += ", DoRA (+ a magnitude vector per matrix)"
    if "prefix_len" in s:
        what += (
            f", K={s['prefix_len']} prompt vectors on the top {s['prefix_layers']} layers, gates per {s['gate_shape']}"
        )
    lines = []
    if model_name:
        lines.append(f"model       {model_name} ({budget.base_params:,} parameters)")
    lines += [
        f"method      {what}",
        f"trainable   {budget.trainable_params:,} parameters ({100 * budget.share:.4g}% of {budget.base_params:,})",
        f"total       {budget.total_params:,} parameters (base + adapters)",
        f"storage     {format_bytes(budget.storage_bytes_fp16)} fp16, {format_bytes(budget.storage_bytes_fp32)} fp32",
        f"optimizer   {format_bytes(budget.optimizer_bytes)} "
        f"(Adam: 2 fp32 moments + fp32 gradient per trainable parameter)",
    ]
    for name, part in budget.breakdown.items():
        if name == "prefix":
            lines.append(
                f"  prefix     {part['layers']} layers x {part['prefix_len']} x {part['hidden']} "
                f"= {part['prompt_params']:,} + {part['gate_params']:,} gates "
                f"= {part['params']:,}"
            )
        elif name != "full":
            out_f, in_f = part["shape"]
            dora = f" (incl. {part['dora_params']:,} DoRA magnitudes)" if part.get("dora_params") else ""
            lines.append(
                f"  {name:<10} {out_f}x{in_f} x {part['layers']} layers, r={part['rank']}: {part['params']:,}{dora}"
            )
    return "\n".join(lines)
