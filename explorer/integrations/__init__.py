"""Record a user's own PEFT training run in the explorer's recording format.

- `Recorder(model, out_dir, ...)`: for plain torch / accelerate loops (explorer.integrations.recorder).
- `ExplorerCallback(out_dir, ...)`: a transformers `TrainerCallback` (explorer.integrations.callback);
  transformers is imported only when it is used, so the Recorder works without it.
No Qt here: this runs inside training jobs.
"""

from __future__ import annotations

from explorer.integrations.recorder import Recorder

__all__ = ["ExplorerCallback", "Recorder"]


def __getattr__(name: str):
    if name == "ExplorerCallback":
        from explorer.integrations.callback import ExplorerCallback

        return ExplorerCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
