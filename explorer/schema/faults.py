"""Faults: what can stop a training run or a comparison, as plain data shared by the trainer, the
workers, the recordings and the GUI.

A `Fault` says what kind of stop it was (so the GUI decides what to do by `kind` and `setting`, not by
reading the message), the one line the user reads, and the setting it names when a change was refused.
"""

from __future__ import annotations

from dataclasses import dataclass

# Faults a test or a demo can inject into the next training step (Trainer.inject_fault).
FAULT_KINDS = ("exception", "nan", "oom")

# What stopped the run (Fault.kind).
START = "start"  # the engine could not build the run (a bad device, a missing base, a spec that does not fit)
SETTING = "setting"  # a change could not be applied; the previous settings stay in force (Fault.setting names it)
DIVERGED = "diverged"  # the loss went non-finite
MEMORY = "memory"  # the device ran out of memory
ERROR = "error"  # anything else a step, a snapshot or sampling raised (and faults read from old recordings)
ALL_STOPPED = "all-stopped"  # a comparison: every run has stopped
DIED = "died"  # the engine's thread or process ended unexpectedly
KINDS = (START, SETTING, DIVERGED, MEMORY, ERROR, ALL_STOPPED, DIED)


@dataclass(frozen=True)
class Fault:
    kind: str  # one of KINDS
    message: str  # one line for the user
    setting: str | None = None  # the setting a refused change named (kind SETTING), else None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"fault kind={self.kind!r} is unknown: allowed {', '.join(KINDS)}")
        if not isinstance(self.message, str):
            raise ValueError(f"fault message must be a string, got {type(self.message).__name__}")
        if self.setting is not None and not isinstance(self.setting, str):
            raise ValueError(f"fault setting must be a setting's name or None, got {type(self.setting).__name__}")

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "setting": self.setting}

    @classmethod
    def read(cls, message, kind=None, setting=None) -> Fault | None:
        """A fault as a recording stores it: the message (what old readers read) with its kind and
        setting beside it when the writer knew them. An old recording has only the message: ERROR."""
        if message is None:
            return None
        if not isinstance(message, str):
            raise ValueError(f"fault={message!r} must be a message string")
        if kind is None:
            kind = ERROR
        elif kind not in KINDS:
            raise ValueError(f"fault_kind={kind!r} is unknown: allowed {', '.join(KINDS)}")
        if setting is not None and not isinstance(setting, str):
            raise ValueError(f"fault_setting={setting!r} must be a setting's name")
        return cls(kind, message, setting)
