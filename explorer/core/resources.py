"""The shipped base model as a torch module (its files are found by `explorer.schema.resources`)."""

from __future__ import annotations

import torch

from explorer.core.checkpoint import load_checkpoint
from explorer.core.llama import LlamaForCausalLM
from explorer.schema.resources import base_model_dir


def load_base_model(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    """A fresh copy of the shipped base model, in eval mode (callers freeze or adapt it)."""
    return load_checkpoint(base_model_dir(), device=device, dtype=dtype).eval()
