"""Export what the explorer trained as a PEFT adapter plus the HF Llama base it was trained on.

    export_state(RECORDING_OR_STATE, OUT)  writes  OUT/adapter/  (adapter_config.json + adapter_model.safetensors)
                                                   OUT/base/     (config.json + model.safetensors, an HF Llama dir)
                                                   OUT/export.json (provenance and how to load it)

so that `LlamaForCausalLM.from_pretrained(OUT/base)` + `PeftModel.from_pretrained(model, OUT/adapter)`
computes the explorer's logits. The adapted model is rebuilt exactly as the trainer built it (same
injection code on the same base), then the trained tensors are loaded into it: for PiSSA that
rebuild yields the residual base W0 - scaling·B0·A0 the adapter trained on, which is what goes to
OUT/base (PEFT would otherwise redo PiSSA's SVD on load, so the config says init_lora_weights=true).

What exports, and what is refused (PEFT cannot express it):
- LoRA in the lm scenario: plain, rsLoRA, DoRA, any init (kaiming, gaussian, PiSSA), any targets/layers.
- prefix with gate_shape "layer" and gate_fn "identity": PEFT's AdaptionPrompt (one identity gate per
  layer, prompt (1, K, C), the top L layers, keys/values from the frozen k_proj/v_proj).
- refused: prefix with per-head gates (AdaptionPrompt has one gate per layer), prefix with a tanh
  gate (AdaptionPrompt applies its gate as is), lora+prefix (a PEFT adapter holds one method),
  full fine-tuning (not an adapter), and the matrix scenario (a single matrix, no language model).
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from explorer.core.state_file import TrainedState, load_state
from explorer.schema.dirlock import DirLock
from explorer.schema.exportable import EXPORTABLE, check_exportable, export_problem
from explorer.schema.files import atomic_write_text, private_temp_dir
from explorer.schema.jsonio import read_json_file
from explorer.schema.outdir import marker_problem

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
)
BASE_KEYS = ("base_model_dir", "base_model", "base")


@dataclass
class ExportResult:
    out: Path
    adapter_dir: Path
    base_dir: Path
    peft_type: str  # "LORA" or "ADAPTION_PROMPT"
    modules: list[str]  # LoRA module paths, or the prompt layers' attention paths
    step: int
    base_source: str  # where the base came from

    def summary(self) -> str:
        what = f"{len(self.modules)} LoRA modules" if self.peft_type == "LORA" else f"{len(self.modules)} prompt layers"
        return (
            f"exported step {self.step} as a PEFT {self.peft_type} adapter ({what}) to {self.adapter_dir}\n"
            f"base model (trained on: {self.base_source}) to {self.base_dir}"
        )


# --- rebuilding the trained model ----------------------------------------------------------


def _load_source(source) -> tuple[TrainedState, Path | None]:
    if isinstance(source, TrainedState):
        return source, None
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such recording or saved state")
    return load_state(path), path


def _recorded_base(state: TrainedState, path: Path | None) -> tuple[str | None, dict | None, str]:
    """What the run says about its base: (a directory named by the state's extra or the recording's
    config.json, the recording's description of the base {"path", "config", "training", ...}, where
    that was read)."""
    if isinstance(state.extra, dict):
        for key in BASE_KEYS:
            value = state.extra.get(key)
            if isinstance(value, str) and value:
                return value, None, f"the state's extra[{key!r}]"
            if isinstance(value, dict):
                return None, value, f"the state's extra[{key!r}]"
    if path is not None and path.is_dir() and (path / "config.json").is_file():
        cfg_path = path / "config.json"
        cfg = read_json_file(cfg_path, max_bytes=16 * 1024 * 1024)  # ValueError naming the file
        if isinstance(cfg, dict):
            for key in BASE_KEYS:
                value = cfg.get(key)
                if isinstance(value, str) and value:
                    return value, None, str(cfg_path)
                if isinstance(value, dict):  # the run command's {"kind", "path", "config", "training", ...}
                    return None, value, str(cfg_path)
    return None, None, ""


def _resolve_base(base, state: TrainedState, path: Path | None):
    """(our LlamaForCausalLM, a copy we may modify; description; source directory or None)."""
    from explorer.core.checkpoint import load_checkpoint
    from explorer.core.llama import LlamaForCausalLM

    if isinstance(base, LlamaForCausalLM):
        model = copy.deepcopy(base).float().cpu().eval()
        if any(".base_layer." in n or "lora_" in n or ".prefix." in n for n, _ in model.named_parameters()):
            raise ValueError("the base model given for export already carries adapters; pass the plain base")
        return model, "the model given to export", None
    if base is not None:
        base_dir = Path(base)
        if not base_dir.is_dir():
            raise FileNotFoundError(f"{base_dir}: no such base model directory")
        return load_checkpoint(base_dir).eval(), str(base_dir), base_dir
    named, described, where = _recorded_base(state, path)
    if named is not None:
        base_dir = Path(named)
        if not base_dir.is_dir():
            raise FileNotFoundError(
                f"{base_dir}: no such base model directory (named by {where}); "
                "pass the base the run trained on with --base DIR"
            )
        return load_checkpoint(base_dir).eval(), str(base_dir), base_dir
    if described is not None and isinstance(described.get("path"), str) and Path(described["path"]).is_dir():
        base_dir = Path(described["path"])
        model = load_checkpoint(base_dir).eval()
        _check_described(described, model, base_dir, where)
        return model, str(base_dir), base_dir
    from explorer.schema.resources import base_model_dir

    base_dir = base_model_dir()
    model = load_checkpoint(base_dir).eval()
    if described is not None:
        _check_described(described, model, base_dir, where)
    return model, f"the shipped base model ({base_dir})", base_dir


def _check_described(described: dict, model, base_dir: Path, where: str) -> None:
    """Refuse a base that is not the one the recording describes (other config or training record)."""
    recorded_cfg = described.get("config")
    if isinstance(recorded_cfg, dict):
        ours = model.config.to_hf_dict()
        differs = sorted(k for k in recorded_cfg if k in ours and recorded_cfg[k] != ours[k])
        if differs:
            raise ValueError(
                f"{base_dir}: is not the base the run trained on ({where} records "
                f"{differs[0]}={recorded_cfg[differs[0]]!r}, this base has {ours[differs[0]]!r}); "
                "pass that base with --base DIR"
            )
    recorded_hash = described.get("model_hash")
    if isinstance(recorded_hash, str):
        from explorer.core.checkpoint import fingerprint

        if fingerprint(base_dir) != recorded_hash:
            raise ValueError(
                f"{base_dir}: is not the checkpoint the run trained on (its config.json or weights index "
                f"changed since {where} was written); pass that checkpoint with --model DIR"
            )
    recorded_training = described.get("training")
    info_path = base_dir / "training.json"
    if isinstance(recorded_training, dict) and info_path.is_file():
        try:
            training = read_json_file(info_path, max_bytes=16 * 1024 * 1024)
        except ValueError:
            training = None
        if training != recorded_training:
            raise ValueError(
                f"{base_dir}: is not the base the run trained on (its training.json differs from the "
                f"one {where} records); pass that base with --base DIR"
            )


def build_trained_model(source, base=None):
    """Our LlamaForCausalLM with the trained adapter of `source` (a recording directory, a saved
    state file, or a TrainedState) loaded into it, rebuilt on `base` (our model, an HF Llama dir, or
    None: the base recorded in the state, else the shipped one). Returns (model, settings dict, state,
    base description, base directory or None). Raises ValueError when the run cannot be exported."""
    from explorer.schema.settings import TrainSettings

    state, path = _load_source(source)
    where = str(path) if path is not None else "trained state"
    try:
        settings = TrainSettings.from_dict(state.settings)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: the state's settings are not valid ({exc})") from None
    check_exportable(settings)
    model, base_desc, base_dir = _resolve_base(base, state, path)
    # The generator only feeds initial values that the trained tensors overwrite (PiSSA's SVD is
    # deterministic and needs none).
    gen = torch.Generator().manual_seed(int(settings.seed))
    from explorer.core.adapters import inject_adapters

    inject_adapters(model, settings, gen, gen)
    _load_trained(model, state.tensors, where)
    return model.eval(), settings.to_dict(), state, base_desc, base_dir


def _load_trained(model, tensors: dict[str, torch.Tensor], where: str) -> None:
    from explorer.core.adapters import is_adapter_parameter

    own = model.state_dict()
    for name, t in tensors.items():
        if name not in own:
            raise ValueError(
                f"{where}: tensor {name} does not belong to the model these settings build "
                "(was it trained on a different base?)"
            )
        if tuple(t.shape) != tuple(own[name].shape):
            raise ValueError(
                f"{where}: tensor {name} has shape {list(t.shape)} but the model built from these "
                f"settings has {list(own[name].shape)} (was it trained on a different base?)"
            )
    missing = [n for n, _ in model.named_parameters() if is_adapter_parameter(n) and n not in tensors]
    if missing:
        raise ValueError(
            f"{where}: the state lacks trained tensor {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    with torch.no_grad():
        for name, t in tensors.items():
            own[name].copy_(t.to(own[name].dtype))


# --- writing -------------------------------------------------------------------------------


def _adapter_tensors(model, settings: dict):
    from explorer.core.lora import lora_modules
    from explorer.core.prefix import prefix_adapters

    if settings["method"] == "lora":
        modules = {}
        for name, m in lora_modules(model).items():
            parts = {"A": m.lora_A.weight.detach(), "B": m.lora_B.weight.detach()}
            if m.lora_magnitude_vector is not None:
                parts["magnitude"] = m.lora_magnitude_vector.detach()
            modules[name] = parts
        return "LORA", modules
    prompts = {i: (a.prompt.detach(), a.gate.detach().reshape(1)) for i, a in prefix_adapters(model).items()}
    return "ADAPTION_PROMPT", prompts


def _base_name(source_base_dir: Path | None, settings: dict, out: Path) -> str:
    """What the adapter says it adapts: the checkpoint directory the run trained on, or OUT/base
    where that is the only base it fits (PiSSA's residual, or a base given as a model object)."""
    if source_base_dir is not None and not (settings.get("method") == "lora" and settings.get("init") == "pissa"):
        return str(Path(source_base_dir).resolve())
    return str((out / "base").resolve())


def export_summary(source, out: str | Path, *, base=None, overwrite: bool = False) -> str:
    """export_state, answered with its summary: plain text for a process that imports no torch (the
    app's File > Export runs this in a child process, engine/jobs.py)."""
    return export_state(source, out, base=base, overwrite=overwrite).summary()


def export_state(source, out: str | Path, *, base=None, overwrite: bool = False) -> ExportResult:
    """Write OUT/adapter (PEFT) and OUT/base (HF Llama) for a trained state; see the module docstring.

    `source`: a recording directory, a saved state file, or a TrainedState. `base`: our
    LlamaForCausalLM, an HF Llama directory, or None (the base recorded with the state, else the
    shipped base model). Existing OUT/adapter or OUT/base are replaced only with overwrite=True.
    The two directories appear complete or not at all; OUT is locked while they are written, and an
    earlier export is replaced only when OUT/export.json says it is one of ours."""
    out = Path(out)
    adapter_dir, base_dir = out / "adapter", out / "base"
    _check_replaceable(out, overwrite)
    model, settings, state, base_desc, source_base_dir = build_trained_model(source, base)
    peft_type, payload = _adapter_tensors(model, settings)
    with DirLock(out, "export"):
        _check_replaceable(out, overwrite)  # again, under the lock
        names = _write_export(out, model, settings, state, base_desc, source_base_dir, peft_type, payload)
    return ExportResult(
        out=out,
        adapter_dir=adapter_dir,
        base_dir=base_dir,
        peft_type=peft_type,
        modules=names,
        step=state.step,
        base_source=base_desc,
    )


EXPORT_FORMAT = "peft-explorer-export"
EXPORT_NAMES = ("adapter", "base", "export.json")


def _check_replaceable(out: Path, overwrite: bool) -> None:
    """OUT may be new or any directory; OUT/adapter, OUT/base and OUT/export.json are replaced only
    with `overwrite` and only when OUT/export.json says they are an export of ours. Nothing is touched
    when refused."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    present = [out / n for n in EXPORT_NAMES if (out / n).exists() or (out / n).is_symlink()]
    if not present:
        return
    if not overwrite:
        raise ValueError(f"{present[0]}: already exists; choose another output directory or overwrite it (--force)")
    problem = marker_problem(out / "export.json", EXPORT_FORMAT)
    if problem is None and not all(
        (out / n).is_dir() and not (out / n).is_symlink() for n in ("adapter", "base") if (out / n).exists()
    ):
        problem = "its adapter or base is not a directory"
    if problem is not None:
        raise ValueError(
            f"{out}: not an export of peft-explorer ({problem}): refused to replace {present[0].name}, nothing changed"
        )


def _write_export(out, model, settings, state, base_desc, source_base_dir, peft_type, payload) -> list[str]:
    """Build the export in a private directory inside OUT, then move each part into place."""
    from explorer.core.llama import save_pretrained
    from explorer.core.peft_files import read_adapter, write_adaption_prompt_adapter, write_lora_adapter

    tmp = private_temp_dir(out, "export")
    try:
        if peft_type == "LORA":
            write_lora_adapter(
                tmp / "adapter",
                payload,
                r=settings["rank"],
                lora_alpha=settings["alpha"],
                use_rslora=settings["use_rslora"],
                use_dora=settings["use_dora"],
                target_modules=list(settings["targets"]),
                layers_to_transform=settings["layers"],
                lora_dropout=settings["dropout"],
                base_model_name_or_path=_base_name(source_base_dir, settings, out),
                # as PEFT writes them: the keys as given, matched by PEFT's own rule on load
                rank_pattern=settings.get("rank_pattern") or {},
                alpha_pattern=settings.get("alpha_pattern") or {},
            )
            names = list(payload)
        else:
            write_adaption_prompt_adapter(
                tmp / "adapter", payload, base_model_name_or_path=_base_name(source_base_dir, settings, out)
            )
            names = [f"model.layers.{i}.self_attn" for i in sorted(payload)]
        # Our own output goes through the same strict reader as any adapter.
        read_adapter(tmp / "adapter")
        save_pretrained(model, tmp / "base")  # base weights only: for PiSSA the residual base
        if source_base_dir is not None:
            for fname in TOKENIZER_FILES:
                if (source_base_dir / fname).is_file():
                    shutil.copy2(source_base_dir / fname, tmp / "base" / fname)
        info = {
            "format": "peft-explorer-export",
            "version": 1,
            "step": state.step,
            "peft_type": peft_type,
            "base": base_desc,
            "settings": settings,
            "load": (
                "model = transformers.LlamaForCausalLM.from_pretrained(OUT/base); "
                "model = peft.PeftModel.from_pretrained(model, OUT/adapter)"
            ),
        }
        atomic_write_text(tmp / "export.json", json.dumps(info, indent=2) + "\n")
        for name in EXPORT_NAMES:
            dest = out / name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            (tmp / name).replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return names


__all__ = [
    "EXPORTABLE",
    "ExportResult",
    "build_trained_model",
    "check_exportable",
    "export_problem",
    "export_state",
    "export_summary",
]
