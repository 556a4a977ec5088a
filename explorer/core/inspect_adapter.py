"""What is inside a PEFT adapter: the analysis report as plain data.

`inspect_adapter(DIR, base=None)` reads an adapter directory (explorer.core.peft_files, strict) and
returns an `AdapterReport`: per LoRA module its shape, rank, alpha, scaling, the singular values of
ΔW = scaling · B @ A computed from the factors (QR of the factors, never a dense ΔW), energies,
effective and stable rank, DoRA magnitude statistics; a layer x module grid of ||ΔW||_F; for
AdaptionPrompt adapters the prompt length, layers, gates and prompt norms; and, given an HF Llama
base directory, the LoRA paper's amplification factor per module. `to_json_dict()` is what
`python -m explorer inspect --json` prints; `matrix_snapshot` / `prefix_snapshots` hand a module to
the same views that draw live training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

from explorer.core.analysis import (
    amplification,
    cumulative_energy,
    pooled_delta,
    spectrum_from_factors,
    spectrum_summary,
)
from explorer.core.peft_files import (
    AdapterFileError,
    LoraFactors,
    PeftAdapter,
    load_safetensors,
    read_adapter,
    read_safetensors_header,
)
from explorer.schema.adapter_report import (
    AdapterReport,
    AdaptionPromptReport,
    DoraStats,
    ModuleReport,
    NormGrid,
    PromptLayerReport,
    TrainableParts,
)
from explorer.schema.jsonio import need_int, read_json_file
from explorer.schema.text import printable

K_VALUES = (1, 2, 4, 8, 16)


# --- analysis ------------------------------------------------------------------------------


@torch.no_grad()
def module_report(f: LoraFactors, base_weight: torch.Tensor | None = None, k_values=K_VALUES) -> ModuleReport:
    """Everything about one LoRA module, from its factors. `base_weight` (as stored in the base
    model: (out, in), or (in, out) for fan_in_fan_out / embeddings) adds amplification and DoRA row
    scales."""
    A, B = f.A.float(), f.B.float()
    spec = spectrum_from_factors(A, B, f.scaling)
    values = spec.values
    summary = spectrum_summary(values, f.shape)
    cum = cumulative_energy(values)
    n = cum.shape[0]
    energies = torch.stack([cum[min(k, n) - 1] for k in k_values]).tolist()
    report = ModuleReport(
        name=f.name,
        shape=f.shape,
        rank=f.rank,
        alpha=f.alpha,
        scaling=f.scaling,
        fro_norm=summary["fro_norm"],
        singular_values=values.tolist(),
        effective_rank=summary["effective_rank"],
        stable_rank=summary["stable_rank"],
        layer=f.layer,
        module=f.kind,
        spectral_norm=summary["spectral_norm"],
        nuclear_norm=summary["nuclear_norm"],
        numerical_rank=summary["numerical_rank"],
        energy_top_k=dict(zip(k_values, energies)),
        cumulative_energy=cum.tolist(),
        parameters=f.parameters(),
        lora_A_norm=float(torch.linalg.norm(A)),
        lora_B_norm=float(torch.linalg.norm(B)),
        fan_in_fan_out=f.fan_in_fan_out,
        embedding=f.embedding,
    )
    if f.bias is not None:
        b = f.bias.float()
        report.lora_bias = {
            "count": b.numel(),
            "norm": float(torch.linalg.norm(b)),
            "min": float(b.min()),
            "max": float(b.max()),
            "merged_norm": float(abs(f.scaling) * torch.linalg.norm(b)),  # what a merge adds to the bias: s·b
        }
    W0 = None
    if base_weight is not None:
        W0 = base_weight.float()
        if f.weight_layout_transposed:
            W0 = W0.T
        report.amplification = amplification(W0, A, B, f.scaling)
    if f.magnitude is not None:
        m = f.magnitude.float()
        report.dora = DoraStats(
            count=m.numel(),
            min=float(m.min()),
            max=float(m.max()),
            mean=float(m.mean()),
            std=float(m.std()) if m.numel() > 1 else 0.0,
            norm=float(torch.linalg.norm(m)),
        )
        if W0 is not None:
            scale = m / _row_norms(W0, A, B, f.scaling).clamp_min(torch.finfo(torch.float32).tiny)
            report.dora.row_scale_min = float(scale.min())
            report.dora.row_scale_max = float(scale.max())
            report.dora.row_scale_mean = float(scale.mean())
    return report


def _checked_report(adapter: PeftAdapter, f: LoraFactors, base_weight, k_values) -> ModuleReport:
    """module_report, with values too large to analyse (finite factors whose product overflows)
    reported against the adapter's weights file instead of surfacing as a torch error."""
    from explorer.core.peft_files import WEIGHTS_NAME

    where = adapter.path / WEIGHTS_NAME
    try:
        report = module_report(f, base_weight, k_values)
    except (RuntimeError, OverflowError, ZeroDivisionError) as exc:
        raise AdapterFileError(where, f"module {f.name} cannot be analysed ({type(exc).__name__}: {exc})") from None
    if not all(
        math.isfinite(v) for v in (report.fro_norm, *report.singular_values, report.lora_A_norm, report.lora_B_norm)
    ):
        raise AdapterFileError(
            where, f"module {f.name}: ΔW overflows float32 (its factors hold values too large to analyse)"
        )
    return report


def _row_norms(W0, A, B, s):
    """||W0 + s B A||_row without forming B A:
    ||w_i||^2 + 2 s <w_i A^T, b_i> + s^2 b_i (A A^T) b_i^T."""
    WA = W0 @ A.T  # (out, r)
    G = A @ A.T  # (r, r)
    sq = W0.square().sum(1) + 2 * s * (WA * B).sum(1) + s * s * ((B @ G) * B).sum(1)
    return sq.clamp_min(0).sqrt()


def norm_grid(modules: list[ModuleReport]) -> NormGrid | None:
    """Layer x module-kind grid of ||ΔW||_F (modules outside numbered layers are left out)."""
    layered = [m for m in modules if m.layer is not None]
    if not layered:
        return None
    layers = sorted({m.layer for m in layered})
    kinds = sorted({m.module for m in layered}, key=_kind_order)
    grid: list[list[float | None]] = [[None] * len(kinds) for _ in layers]
    li = {layer: i for i, layer in enumerate(layers)}
    ki = {k: j for j, k in enumerate(kinds)}
    for m in layered:
        grid[li[m.layer]][ki[m.module]] = m.fro_norm
    return NormGrid(layers, kinds, grid)


_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _kind_order(kind: str):
    return (_ORDER.index(kind) if kind in _ORDER else len(_ORDER), kind)


def prompt_report(adapter: PeftAdapter) -> AdaptionPromptReport | None:
    if not adapter.prompts:
        return None
    layers = [
        PromptLayerReport(
            layer=p.layer,
            name=p.name,
            gate=float(p.gate.float()[0]),
            prompt_norm=float(torch.linalg.norm(p.prompt.float())),
            vector_norms=torch.linalg.norm(p.prompt.float(), dim=1).tolist(),
        )
        for p in adapter.prompts
    ]
    cfg = adapter.config
    return AdaptionPromptReport(
        adapter_len=cfg["adapter_len"],
        adapter_layers=cfg["adapter_layers"],
        hidden_size=int(adapter.prompts[0].prompt.shape[1]),
        layers=layers,
    )


_CONFIG_FIELDS = {
    "LORA": (
        "r",
        "lora_alpha",
        "use_rslora",
        "use_dora",
        "fan_in_fan_out",
        "target_modules",
        "layers_to_transform",
        "rank_pattern",
        "alpha_pattern",
        "base_model_name_or_path",
        "init_lora_weights",
        "lora_dropout",
        "bias",
        "lora_bias",
        "modules_to_save",
    ),
    "ADAPTION_PROMPT": ("adapter_len", "adapter_layers", "target_modules", "base_model_name_or_path"),
}


def trainable_parts(adapter: PeftAdapter) -> TrainableParts:
    """Count what the adapter trains, part by part (TrainableParts). Tensors beside the LoRA factors
    and prompts count as modules_to_save when their module is named in the config's modules_to_save
    (PEFT matches a name or a path ending in it), as biases when the config trains biases
    (bias="all" / "lora_only"); anything else stays uncounted in other_tensors."""
    parts = TrainableParts()
    for f in adapter.lora:
        parts.lora_A += f.A.numel()
        parts.lora_B += f.B.numel()
        parts.lora_magnitude_vector += f.magnitude.numel() if f.magnitude is not None else 0
        parts.lora_bias += f.bias.numel() if f.bias is not None else 0
    for p in adapter.prompts:
        parts.adaption_prompt += p.prompt.numel()
        parts.adaption_gate += p.gate.numel()
    saved = adapter.config.get("modules_to_save") or []
    trains_bias = adapter.config.get("bias", "none") in ("all", "lora_only")
    for name, info in adapter.other_tensors.items():
        module = name.rsplit(".", 1)[0]
        count = math.prod(info.shape)
        if any(module == m or module.endswith("." + m) for m in saved):
            parts.modules_to_save += count
            parts.modules_to_save_tensors.append(name)
        elif trains_bias and name.endswith(".bias"):
            parts.bias += count
            parts.bias_tensors.append(name)
    return parts


def inspect_adapter(
    source: str | Path | PeftAdapter,
    base: str | Path | None = None,
    *,
    k_values=K_VALUES,
    progress: Callable[[int, int], None] | None = None,
    views: int | None = None,
) -> AdapterReport:
    """Read (if given a path) and analyse a PEFT adapter. `base`: an HF Llama directory whose
    weights give amplification factors (and DoRA row scales). `progress(done, total)` is called
    after each module, for a progress bar. `views`: also pool every LoRA module for the views at
    this display size (report.matrices). Raises AdapterFileError / FileNotFoundError (one line)."""
    import time

    t0 = time.perf_counter()
    adapter = source if isinstance(source, PeftAdapter) else read_adapter(source)
    base_weights = {}
    if base is not None and adapter.lora:
        base_weights = read_base_weights(base, adapter.lora)
    modules = []
    total = len(adapter.lora)
    for i, f in enumerate(adapter.lora):
        modules.append(_checked_report(adapter, f, base_weights.get(f.name), k_values))
        if progress is not None:
            progress(i + 1, total)
    prompts = prompt_report(adapter)
    if base is not None and adapter.prompts:
        _check_prompt_base(base, adapter)
    parts = trainable_parts(adapter)
    config = {k: adapter.config.get(k) for k in _CONFIG_FIELDS[adapter.peft_type]}
    matrices = {}
    if views is not None:
        for f in adapter.lora:
            matrices[f.name] = matrix_snapshot(adapter, f.name, views, base_weights.get(f.name))
    return AdapterReport(
        matrices=matrices,
        path=str(adapter.path),
        peft_type=adapter.peft_type,
        config=config,
        modules=modules,
        grid=norm_grid(modules),
        adaption_prompt=prompts,
        trainable_parameters=parts.total(),
        trainable_parts=parts,
        file_bytes=adapter.file_bytes,
        dtypes=list(adapter.dtypes),
        other_tensors={k: list(v.shape) for k, v in adapter.other_tensors.items()},
        base=None if base is None else str(base),
        seconds=time.perf_counter() - t0,
        adapter=adapter,
    )


def inspect_for_views(source: str | Path, base: str | Path | None = None, *, display_size: int = 128, progress=None):
    """inspect_adapter with every LoRA module pooled for the views (report.matrices) and without the
    factors: plain data for a process that imports no torch (the app's inspector runs this in a
    child process, engine/jobs.py). Modules drawn without a base share one zero W0 per shape."""
    report = inspect_adapter(source, base, progress=progress, views=int(display_size))
    report.adapter = None
    zeros: dict = {}
    for m in report.matrices.values():
        if base is None:
            m.base = zeros.setdefault(m.base.shape, m.base)
    return report


# --- base model weights --------------------------------------------------------------------


def _base_files(base: str | Path) -> tuple[Path, dict]:
    """(directory, {tensor name: safetensors file}) of an HF model directory; refuses pickles."""
    base = Path(base)
    if not base.exists():
        raise FileNotFoundError(f"{base}: no such base model directory")
    if not base.is_dir():
        raise ValueError(f"{base}: is not a model directory (expected config.json and model.safetensors)")
    single = base / "model.safetensors"
    index = base / "model.safetensors.index.json"
    if single.is_file():
        infos, _, _ = read_safetensors_header(single)
        return base, {name: single for name in infos}
    if index.is_file():
        weight_map = read_json_file(index, max_bytes=64 * 1024 * 1024).get("weight_map")
        if not isinstance(weight_map, dict) or not all(
            isinstance(v, str) and "/" not in v and "\\" not in v for v in weight_map.values()
        ):
            raise ValueError(f"{index}: weight_map must map tensor names to shard file names in this directory")
        return base, {k: base / v for k, v in weight_map.items()}
    for pickle_name in ("pytorch_model.bin", "pytorch_model.bin.index.json"):
        if (base / pickle_name).exists():
            raise ValueError(
                f"{base / pickle_name}: refused: pickled weights can run arbitrary code when "
                "loaded; convert the model to safetensors"
            )
    raise FileNotFoundError(f"{single}: missing: the base model directory holds no safetensors weights")


def read_base_weights(base: str | Path, modules: list[LoraFactors]) -> dict[str, torch.Tensor]:
    """The base weight of each LoRA module (as stored), read tensor by tensor from an HF directory."""
    base, where = _base_files(base)
    wanted: dict[str, str] = {}
    for f in modules:
        for candidate in (f"{f.name}.weight", f"model.{f.name}.weight", f"{f.name}.base_layer.weight"):
            if candidate in where:
                wanted[f.name] = candidate
                break
        else:
            if f.name.endswith("lm_head") and "model.embed_tokens.weight" in where:
                wanted[f.name] = "model.embed_tokens.weight"  # tied output embedding
            else:
                raise ValueError(
                    f"{base}: the base model has no weight for adapter module {f.name} "
                    "(is this the base the adapter was trained on?)"
                )
    by_file: dict[Path, list[str]] = {}
    for tensor_name in set(wanted.values()):
        by_file.setdefault(where[tensor_name], []).append(tensor_name)
    loaded = {}
    for path, names in by_file.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing shard of the base model")
        tensors, _, _ = load_safetensors(path, names)
        loaded.update(tensors)
    out = {}
    for f in modules:
        w = loaded[wanted[f.name]]
        out_f, in_f = f.shape
        expected = (in_f, out_f) if f.weight_layout_transposed else (out_f, in_f)
        if tuple(w.shape) != expected:
            if f.fan_in_fan_out and tuple(w.shape) == (out_f, in_f):
                # PEFT turns fan_in_fan_out off on an nn.Linear (Llama): the weight is (out, in) after all.
                f.fan_in_fan_out = False
            else:
                raise ValueError(
                    f"{base}: base weight {wanted[f.name]} has shape {list(w.shape)} but adapter "
                    f"module {f.name} needs {list(expected)}"
                )
        out[f.name] = w
    return out


def _check_prompt_base(base, adapter: PeftAdapter) -> None:
    cfg_path = Path(base) / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: missing: the base model directory needs config.json")
    cfg = read_json_file(cfg_path, max_bytes=16 * 1024 * 1024)
    n_layers = need_int(cfg.get("num_hidden_layers"), str(cfg_path), "num_hidden_layers", 1, 1 << 20)
    hidden = need_int(cfg.get("hidden_size"), str(cfg_path), "hidden_size", 1, 1 << 24)
    top = adapter.prompts[-1].layer
    if top != n_layers - 1:
        raise ValueError(
            f"{adapter.path}: prompts end at layer {top} but the base model has {n_layers} layers "
            "(PEFT adapts the top layers)"
        )
    if adapter.prompts[0].prompt.shape[1] != hidden:
        raise ValueError(
            f"{adapter.path}: prompts have hidden size {adapter.prompts[0].prompt.shape[1]} but the "
            f"base model has {hidden}"
        )


# --- for the views -------------------------------------------------------------------------


@torch.no_grad()
def matrix_snapshot(
    source: AdapterReport | PeftAdapter, name: str, display_size: int = 128, base_weight: torch.Tensor | None = None
):
    """One module as the live views' MatrixSnapshot: ΔW pooled from the factors (never dense, in
    the base weight's own layout), W0 pooled the same way (read from the report's base directory
    when there is one and `base_weight` is not given; zeros without a base), the spectrum."""
    import numpy as np

    from explorer.core.analysis import dora_effective_update, effective_rank, pool_matrix, stable_rank, update_spectrum
    from explorer.schema.snapshot import MatrixSnapshot

    adapter = source.adapter if isinstance(source, AdapterReport) else source
    f = adapter.module(name)
    if base_weight is None and isinstance(source, AdapterReport) and source.base is not None:
        base_weight = read_base_weights(source.base, [f])[f.name]
    A, B = f.A.float(), f.B.float()
    if f.weight_layout_transposed:  # ΔW^T = s · A^T B^T: swap the roles of the factors
        A, B = B.T, A.T
    delta = pooled_delta(A, B, f.scaling, display_size, display_size)
    shape = (B.shape[0], A.shape[1])
    base = pool_matrix(base_weight, display_size, display_size) if base_weight is not None else torch.zeros_like(delta)
    values = spectrum_from_factors(f.A.float(), f.B.float(), f.scaling).values
    effective = {}
    if f.magnitude is not None and base_weight is not None and not f.embedding:
        # DoRA with its base: the effective update W_eff - W0 (what a merge adds), in (out, in), then in
        # the base weight's own layout like the other arrays
        W0 = base_weight.float().T if f.weight_layout_transposed else base_weight.float()
        eff = dora_effective_update(W0, f.A, f.B, f.scaling, f.magnitude)
        e_values, e_method, e_partial = update_spectrum(eff)
        e_fro = torch.linalg.matrix_norm(eff)
        eff = eff.T if f.weight_layout_transposed else eff
        effective = dict(
            effective_update=pool_matrix(eff, display_size, display_size).numpy().astype(np.float32),
            effective_update_spectrum=e_values.numpy(),
            effective_update_fro_norm=float(e_fro),
            effective_update_effective_rank=float(effective_rank(e_values)),
            effective_update_stable_rank=float(e_fro.square() / e_values.max().square()) if e_values.max() > 0 else 0.0,
            effective_update_method=e_method,
            effective_update_partial=e_partial,
        )
    return MatrixSnapshot(
        name=f.name,
        shape=shape,
        delta=delta.numpy().astype(np.float32),
        base=base.numpy().astype(np.float32),
        spectrum=values.numpy(),
        fro_norm=float(values.square().sum().sqrt()),
        effective_rank=float(effective_rank(values)),
        stable_rank=float(stable_rank(values)),
        spectrum_method="QR of the factors",
        **effective,
    )


def prefix_snapshots(source: AdapterReport | PeftAdapter) -> list:
    """AdaptionPrompt layers as the live views' PrefixSnapshots (one gate per layer, no attention)."""
    import numpy as np

    from explorer.schema.snapshot import PrefixSnapshot

    adapter = source.adapter if isinstance(source, AdapterReport) else source
    return [
        PrefixSnapshot(
            layer=p.layer,
            gates=p.gate.float().numpy().astype(np.float32),
            attention=None,
            prompt_norm=float(torch.linalg.norm(p.prompt.float())),
        )
        for p in adapter.prompts
    ]


# --- text ----------------------------------------------------------------------------------


def format_report(report: AdapterReport) -> str:
    """A readable summary for the terminal."""
    lines = []
    mb = report.file_bytes / 1e6
    what = (
        f"{len(report.modules)} LoRA modules"
        if report.peft_type == "LORA"
        else f"{report.adaption_prompt.adapter_layers} prompt layers"
    )
    lines.append(
        f"{printable(report.path)}: {report.peft_type}, {what}, {report.trainable_parameters:,} parameters, "
        f"{', '.join(report.dtypes)}, {mb:.1f} MB"
    )
    counts = report.trainable_parts.counts()
    if counts:
        lines.append("  trainable: " + " + ".join(f"{k} {v:,}" for k, v in counts.items()))
    if report.trainable_parts.modules_to_save_tensors:
        lines.append("  modules_to_save: " + _names(report.trainable_parts.modules_to_save_tensors))
    if report.trainable_parts.bias_tensors:
        lines.append(f"  biases (bias={report.config.get('bias')}): " + _names(report.trainable_parts.bias_tensors))
    cfg = report.config
    if report.peft_type == "LORA":
        extras = [
            f"r={cfg['r']}",
            f"lora_alpha={cfg['lora_alpha']:g}",
            f"use_rslora={cfg['use_rslora']}",
            f"use_dora={cfg['use_dora']}",
            f"target_modules={_compact(cfg['target_modules'])}",
        ]
        for key in ("rank_pattern", "alpha_pattern"):
            if cfg[key]:
                extras.append(f"{key}={_compact(cfg[key])}")
        if cfg["layers_to_transform"] is not None:
            extras.append(f"layers_to_transform={_compact(cfg['layers_to_transform'])}")
        if cfg["fan_in_fan_out"]:
            extras.append("fan_in_fan_out=True")
        lines.append("  " + "  ".join(extras))
        amp = any(m.amplification for m in report.modules)
        head = (
            f"  {'module':<40} {'shape':>11} {'r':>4} {'alpha':>7} {'scaling':>8} {'|dW|_F':>10} "
            f"{'s1':>10} {'top1':>6} {'eff.rk':>7} {'st.rk':>6}" + (f" {'amplif.':>8}" if amp else "")
        )
        lines.append(head)
        for m in report.modules:
            row = (
                f"  {printable(m.name)[-40:]:<40} {m.shape[0]:>5}x{m.shape[1]:<5} {m.rank:>4} {m.alpha:>7.4g} "
                f"{m.scaling:>8.4g} {m.fro_norm:>10.4g} {m.spectral_norm:>10.4g} "
                f"{m.energy_top_k.get(1, 0):>6.1%} {m.effective_rank:>7.3f} {m.stable_rank:>6.3f}"
            )
            if amp:
                f = m.amplification["factor"] if m.amplification else float("nan")
                row += f" {f:>8.3g}"
            lines.append(row)
            if m.lora_bias is not None:
                b = m.lora_bias
                lines.append(
                    f"  {'':<40} lora_bias: {b['count']} values, |b| {b['norm']:.4g}, min {b['min']:.4g}, "
                    f"max {b['max']:.4g}; a merge adds scaling·b, |scaling·b| {b['merged_norm']:.4g}"
                )
            if m.dora is not None:
                d = m.dora
                extra = (
                    f", row scale m/||W0+dW|| {d.row_scale_min:.4g}..{d.row_scale_max:.4g} "
                    f"(mean {d.row_scale_mean:.4g})"
                    if d.row_scale_mean is not None
                    else ""
                )
                lines.append(
                    f"  {'':<40} DoRA magnitude: mean {d.mean:.4g}, std {d.std:.3g}, "
                    f"min {d.min:.4g}, max {d.max:.4g}{extra}"
                )
        if report.grid is not None and len(report.grid.layers) > 0:
            g = report.grid
            lines.append("")
            lines.append("  ||dW||_F by layer and module:")
            lines.append("  " + f"{'layer':>5} " + " ".join(f"{printable(k):>10}" for k in g.modules))
            for layer, row in zip(g.layers, g.fro_norm):
                lines.append(
                    "  " + f"{layer:>5} " + " ".join(f"{v:>10.4g}" if v is not None else f"{'-':>10}" for v in row)
                )
    if report.adaption_prompt is not None:
        ap = report.adaption_prompt
        lines.append(
            f"  adapter_len K={ap.adapter_len}, adapter_layers L={ap.adapter_layers}, "
            f"hidden size {ap.hidden_size}, gate: one per layer, identity"
        )
        lines.append(f"  {'layer':>5} {'gate':>10} {'|P|_F':>10} {'min |p_k|':>10} {'max |p_k|':>10}")
        for p in ap.layers:
            lines.append(
                f"  {p.layer:>5} {p.gate:>10.4g} {p.prompt_norm:>10.4g} {min(p.vector_norms):>10.4g} "
                f"{max(p.vector_norms):>10.4g}"
            )
    counted = {*report.trainable_parts.modules_to_save_tensors, *report.trainable_parts.bias_tensors}
    others = [n for n in report.other_tensors if n not in counted]
    if others:
        lines.append(f"  other tensors (not analysed, not counted): {_names(others)}")
    # Names from the file are escaped (in _names and above); this pass keeps any other field from
    # reaching the terminal with a control character (an ANSI escape, a line break that forges a line).
    return "\n".join(printable(line) for line in lines)


def _names(names: list[str], shown: int = 5) -> str:
    return ", ".join(printable(n) for n in names[:shown]) + (
        f" and {len(names) - shown} more" if len(names) > shown else ""
    )


def _compact(value) -> str:
    s = json.dumps(value, separators=(",", ":"))  # JSON escapes control characters itself
    return s if len(s) <= 80 else s[:77] + "..."


__all__ = [
    "AdapterFileError",
    "AdapterReport",
    "AdaptionPromptReport",
    "DoraStats",
    "ModuleReport",
    "NormGrid",
    "TrainableParts",
    "PromptLayerReport",
    "format_report",
    "inspect_adapter",
    "inspect_for_views",
    "matrix_snapshot",
    "module_report",
    "norm_grid",
    "prefix_snapshots",
    "prompt_report",
    "read_base_weights",
    "trainable_parts",
]
