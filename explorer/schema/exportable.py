"""Which runs export as a PEFT adapter, and why the others do not: plain checks on settings, shared by
the exporter (explorer.core.export_adapter), the export command and the app's File > Export (which
asks before it starts anything)."""

from __future__ import annotations

EXPORTABLE = (
    "LoRA (plain, rsLoRA or DoRA, any init including PiSSA) in the lm scenario, or prefix "
    "tuning with gate shape 'layer' and gate function 'identity' (PEFT AdaptionPrompt)"
)


def _settings_dict(settings) -> dict:
    return settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)


def export_problem(settings) -> str | None:
    """None when a run with these settings (TrainSettings or its dict) can be exported, else why
    not and what would: the line the command prints and the app shows on a greyed-out File > Export."""
    s = _settings_dict(settings)
    scenario, method = s.get("scenario", "lm"), s.get("method", "lora")
    if scenario != "lm":
        return (
            f"the {scenario!r} scenario trains a single matrix, not a language model, so there is nothing "
            f"PEFT could load it into; what exports: {EXPORTABLE}"
        )
    if method == "full":
        return (
            "full fine-tuning changes every weight and is not an adapter, so PEFT cannot hold it; "
            f"what exports: {EXPORTABLE}"
        )
    if method == "lora+prefix":
        return (
            "a PEFT adapter holds one method, and this run trained LoRA and a prefix together; "
            f"what exports: {EXPORTABLE}"
        )
    if method == "prefix":
        why = []
        if s.get("gate_shape", "head") != "layer":
            why.append("its gates are per head and PEFT's AdaptionPrompt has one gate per layer")
        if s.get("gate_fn", "tanh") != "identity":
            why.append("its gate goes through tanh and AdaptionPrompt applies its gate as is")
        if why:
            return (
                f"this prefix run cannot be expressed as a PEFT adapter: {'; '.join(why)}; what exports: {EXPORTABLE}"
            )
        return None
    if method == "lora":
        return None
    return f"method {method!r} is unknown; what exports: {EXPORTABLE}"


def check_exportable(settings) -> None:
    problem = export_problem(settings)
    if problem:
        raise ValueError(f"cannot export: {problem}")
