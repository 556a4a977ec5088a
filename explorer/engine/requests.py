"""What a caller asks of an engine, checked on the caller's side and written once for the worker
threads (engine/worker.py, engine/compare/worker.py) and the process relay (engine/process_worker.py);
imports no torch.

SettingsRequests, the training run's settings: `settings` are those in force (as last known); the settings asked for are those plus the changes not
yet applied, and every `configure` is checked against them here, before anything is sent, so a bad
value is the caller's ValueError naming the setting. A change the engine then refuses (a rank above
the model's) comes back as a fault, and the engine resets what is asked for to what is in force.

RunsRequests, a comparison's runs: the run specs, checked against the shared settings before any
thread or process is asked to build them.
"""

from __future__ import annotations

from explorer.schema.compare import checked_specs
from explorer.schema.faults import FAULT_KINDS
from explorer.schema.settings import TrainSettings, changed_kinds, validate


def checked_fault_kind(kind: str) -> str:
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault={kind!r} is unknown: allowed {', '.join(FAULT_KINDS)}")
    return kind


class SettingsRequests:
    """Mixed into a worker that has `_lock` and `_command(name, *args)`, and says how a configure is
    queued (`_queue_configure`, called under the lock so that changes are sent in the order asked)."""

    def _init_settings(self, settings: TrainSettings | None) -> TrainSettings:
        settings = settings if settings is not None else TrainSettings()
        validate(settings)
        self._running_settings = settings  # what the trainer runs
        self._requested = settings  # with the changes not yet applied
        return settings

    @property
    def settings(self) -> TrainSettings:
        with self._lock:
            return self._running_settings

    def configure(self, **changes) -> dict[str, str]:
        """Validate here (ValueError naming the setting), apply in the engine before its next step.
        Returns {setting: 'hot'|'cold'} for the settings that change."""
        after = None
        with self._lock:
            new = self._requested.with_changes(**changes)
            kinds = changed_kinds(self._requested, new)
            if kinds:
                self._requested = new
                after = self._queue_configure({k: getattr(new, k) for k in kinds})
        if after is not None:
            after()
        return kinds

    def inject_fault(self, kind: str) -> None:
        """Make the next training step fail this way (tests, demos): one of FAULT_KINDS."""
        self._command("inject_fault", checked_fault_kind(kind))

    def _queue_configure(self, changes: dict):
        """Under the lock: queue the changes; returns what to do once the lock is released (or None)."""
        raise NotImplementedError


class RunsRequests:
    """Mixed into a comparison's worker that has `_lock` and `_command(name, *args)`."""

    def _init_runs(self, base_settings: TrainSettings, specs: list) -> None:
        self._base, self._specs = base_settings, checked_specs(base_settings, specs)

    @property
    def labels(self) -> list[str]:
        with self._lock:
            return [s.label for s in self._specs]

    def set_runs(self, base_settings: TrainSettings | None = None, specs: list | None = None) -> None:
        """Replace the comparison (validated here; rebuilt by the engine, paused, at step 0)."""
        base = base_settings if base_settings is not None else self._base
        new = checked_specs(base, specs if specs is not None else self._specs)
        with self._lock:
            self._base, self._specs = base, new
        self._command("set_runs", base, new)
