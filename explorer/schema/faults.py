"""Faults: what can stop a training run, as plain data shared by the trainer, the workers and the GUI."""

from __future__ import annotations

# Faults a test or a demo can inject into the next training step (Trainer.inject_fault).
FAULT_KINDS = ("exception", "nan", "oom")
