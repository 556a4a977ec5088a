"""How exactly an exported PEFT adapter reproduces the explorer's logits, on the shipped base model.

    python scripts/export_equality.py

For plain LoRA, rsLoRA, DoRA, PiSSA (rank 8 on q_proj, v_proj) and per-layer identity-gated prefix
tuning (K = 10, L = 2): adapt the shipped base as the trainer does, move every trained tensor away from
its initial value (+0.1 N(0, 1), seed 1), export it (explorer.core.export_adapter), load the export
with transformers' LlamaForCausalLM (SDPA attention, as ours) and PeftModel, and print the largest
logit difference on 4 x 64 random bytes in float32 and float64. The README's export figures come from
here.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from explorer.core.adapters import mark_only_adapters_trainable
from explorer.core.export_adapter import export_state
from explorer.core.lora import LoraSettings, inject_lora
from explorer.core.prefix import PrefixSettings, inject_prefix
from explorer.core.resources import load_base_model
from explorer.core.state_file import save_state
from explorer.schema.settings import TrainSettings

CASES = {
    "LoRA": dict(rank=8),
    "rsLoRA": dict(rank=8, use_rslora=True),
    "DoRA": dict(rank=8, use_dora=True),
    "PiSSA": dict(rank=8, init="pissa"),
    "AdaptionPrompt": dict(method="prefix", prefix_len=10, prefix_layers=2, gate_shape="layer", gate_fn="identity"),
}


def trained(base, settings: TrainSettings):
    model = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    if settings.uses_lora():
        lora = LoraSettings(
            rank=settings.rank,
            alpha=settings.alpha,
            targets=settings.targets,
            use_rslora=settings.use_rslora,
            init=settings.init,
            use_dora=settings.use_dora,
        )
        inject_lora(model, lora, g)
    if settings.uses_prefix():
        prefix = PrefixSettings(
            length=settings.prefix_len,
            layers=settings.prefix_layers,
            gate_shape=settings.gate_shape,
            gate_fn=settings.gate_fn,
        )
        inject_prefix(model, prefix, g)
    names = mark_only_adapters_trainable(model)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval(), {n: p.detach() for n, p in model.named_parameters() if n in names}


def main() -> None:
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    torch.set_num_threads(1)
    base = load_base_model(torch.device("cpu")).eval()
    ids = torch.randint(0, 256, (4, 64), generator=torch.Generator().manual_seed(0))
    print("| adapter | max abs. logit difference, fp32 | fp64 | largest logit |\n|---|---:|---:|---:|")
    for name, changes in CASES.items():
        settings = TrainSettings(**changes)
        ours, tensors = trained(base, settings)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            save_state(d / "state.safetensors", tensors, settings.to_dict(), step=1)
            export_state(d / "state.safetensors", d / "out", base=base)
            diffs = []
            for dtype in (torch.float32, torch.float64):
                hf = LlamaForCausalLM.from_pretrained(d / "out" / "base", attn_implementation="sdpa", dtype=dtype)
                theirs = PeftModel.from_pretrained(hf.eval(), d / "out" / "adapter").eval().to(dtype)
                mine = copy.deepcopy(ours).to(dtype)
                with torch.no_grad():
                    expected = mine(ids)
                    diffs.append((theirs(input_ids=ids).logits - expected).abs().max().item())
                    top = expected.abs().max().item()
        print(f"| {name} | {diffs[0]:.2e} | {diffs[1]:.2e} | {top:.1f} |")


if __name__ == "__main__":
    main()
