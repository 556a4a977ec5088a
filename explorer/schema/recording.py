"""Recordings of headless runs: written as the run goes, readable whenever it stops.

    DIR/config.json                  every setting resolved, format/version, device, base model
    DIR/metrics.jsonl                one JSON object per recorded step, flushed per line
    DIR/snapshots/000120.safetensors the snapshot of step 120: its arrays, and its other fields as
                                     JSON in the metadata (written atomically, one file per record)
    DIR/snapshots/const-000.safetensors
                                     arrays that stay the same from record to record (pooled W0, the
                                     planted target), written once and referred to by the records
    DIR/state.safetensors            the trained state at the end (explorer.core.state_file)

A record's snapshot file is complete before its metrics line is written, so a run killed at any
moment leaves a recording whose every metrics line has its snapshot; a torn last line and a missing
final state are tolerated by the reader. `RecordingReader.snapshot(step)` gives back the Snapshot
that was recorded, field for field and array for array.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from explorer.schema.files import atomic_replace, atomic_write_text
from explorer.schema.snapshot import History, MatrixSnapshot, PrefixSnapshot, Snapshot

FORMAT = "peft-explorer-recording"
VERSION = 1
SNAPSHOT_FORMAT = "peft-explorer-snapshot"

_SCALARS = (
    "step",
    "time",
    "segment",
    "loss",
    "eval_loss",
    "lr",
    "steps_per_second",
    "device",
    "memory_bytes",
    "settings",
    "budget",
    "samples",
    "probe_tokens",
    "state",
    "fault",
)
_MATRIX_SCALARS = ("name", "fro_norm", "effective_rank", "stable_rank", "spectrum_method")
# Optional scalars (absent from older recordings): name -> (accepted types, value when absent).
_MATRIX_OPTIONAL = {
    "spectrum_partial": ((bool,), False),
    "effective_update_fro_norm": ((int, float, type(None)), None),
    "effective_update_effective_rank": ((int, float, type(None)), None),
    "effective_update_stable_rank": ((int, float, type(None)), None),
    "effective_update_method": ((str, type(None)), None),
    "effective_update_partial": ((bool,), False),
}
_MATRIX_ARRAYS = (
    "delta",
    "base",
    "spectrum",
    "target",
    "target_spectrum",
    "effective_update",
    "effective_update_spectrum",
)
_CONSTANT_ARRAYS = ("base", "target", "target_spectrum")
_HISTORY_ARRAYS = ("steps", "loss", "eval_steps", "eval_loss", "gate_steps", "gates", "spectrum_steps")


def _finite_or_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _strict(obj):
    """Replace NaN / infinity by null, so metrics.jsonl is strict JSON."""
    if isinstance(obj, float):
        return _finite_or_none(obj)
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def snapshot_file_name(step: int) -> str:
    return f"{int(step):06d}.safetensors"


def metrics_line(snap: Snapshot, fresh_samples: bool = False) -> dict:
    """The metrics.jsonl object of one record."""
    line = {
        "step": snap.step,
        "loss": snap.loss,
        "eval_loss": snap.eval_loss,
        "lr": snap.lr,
        "time": snap.time,
        "segment": snap.segment,
        "steps_per_second": snap.steps_per_second,
        "memory_bytes": snap.memory_bytes,
        "state": snap.state,
    }
    if snap.matrices:
        line["spectra"] = {name: m.spectrum.tolist() for name, m in snap.matrices.items()}
    if snap.prefixes:
        line["gates"] = [p.gates.tolist() for p in snap.prefixes]
    if fresh_samples and snap.samples is not None:
        line["samples"] = snap.samples
    if snap.fault:
        line["fault"] = snap.fault
    return _strict(line)


class RecordingWriter:
    def __init__(self, directory: str | Path, config: dict, overwrite: bool = False):
        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise ValueError(f"out={str(self.dir)!r} is a file: allowed a new or empty directory")
        if self.dir.is_dir() and any(self.dir.iterdir()):
            if not overwrite:
                raise ValueError(
                    f"out={str(self.dir)!r} is not empty: choose a new directory "
                    "(or pass --overwrite to replace the recording there)"
                )
            self._clear()
        (self.dir / "snapshots").mkdir(parents=True, exist_ok=True)
        self.config = {"format": FORMAT, "version": VERSION, **config}
        atomic_write_text(self.dir / "config.json", json.dumps(_strict(self.config), indent=2))
        self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (held open while recording; closed in close())
        self._constants: dict[str, tuple[np.ndarray, str]] = {}  # key -> (array, "const-000.safetensors")
        self._n_const = 0
        self.records = 0
        self.bytes_written = 0

    def _clear(self) -> None:
        for name in ("metrics.jsonl", "config.json", "state.safetensors"):
            (self.dir / name).unlink(missing_ok=True)
        snaps = self.dir / "snapshots"
        if snaps.is_dir():
            for p in snaps.glob("*.safetensors"):
                p.unlink()

    def _constant_refs(self, snap: Snapshot) -> dict[str, str]:
        """Write the constant arrays that changed since the last record into a new const file."""
        new, refs = {}, {}
        for name, m in snap.matrices.items():
            for field in _CONSTANT_ARRAYS:
                arr = getattr(m, field)
                if arr is None:
                    continue
                key = f"m/{name}/{field}"
                old = self._constants.get(key)
                if old is None or old[0].shape != arr.shape or not np.array_equal(old[0], arr):
                    new[key] = np.ascontiguousarray(arr)
                else:
                    refs[key] = old[1]
        if new:
            fname = f"const-{self._n_const:03d}.safetensors"
            self._n_const += 1
            self._save(self.dir / "snapshots" / fname, new, {"format": SNAPSHOT_FORMAT, "kind": "constants"})
            for key, arr in new.items():
                self._constants[key] = (arr.copy(), fname)
                refs[key] = fname
        return refs

    def _save(self, path: Path, tensors: dict, metadata: dict) -> None:
        from safetensors.numpy import save_file

        with atomic_replace(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        self.bytes_written += path.stat().st_size

    def write(self, snap: Snapshot, fresh_samples: bool = False) -> None:
        refs = self._constant_refs(snap)
        tensors: dict[str, np.ndarray] = {}
        matrices = []
        for name, m in snap.matrices.items():
            meta = {k: getattr(m, k) for k in (*_MATRIX_SCALARS, *_MATRIX_OPTIONAL)}
            meta["shape"] = list(m.shape)
            present = {}
            for field in _MATRIX_ARRAYS:
                arr = getattr(m, field)
                key = f"m/{name}/{field}"
                if arr is None:
                    present[field] = None
                elif key in refs:
                    present[field] = refs[key]
                else:
                    tensors[key] = np.ascontiguousarray(arr)
                    present[field] = ""
            meta["arrays"] = present
            matrices.append(meta)
        prefixes = []
        for i, p in enumerate(snap.prefixes):
            tensors[f"p/{i}/gates"] = np.ascontiguousarray(p.gates)
            if p.attention is not None:
                tensors[f"p/{i}/attention"] = np.ascontiguousarray(p.attention)
            prefixes.append({"layer": p.layer, "prompt_norm": p.prompt_norm, "attention": p.attention is not None})
        h = snap.history
        for field in _HISTORY_ARRAYS:
            tensors[f"h/{field}"] = np.ascontiguousarray(getattr(h, field))
        for name, arr in h.spectra.items():
            tensors[f"h/spectra/{name}"] = np.ascontiguousarray(arr)
        meta = {k: getattr(snap, k) for k in _SCALARS}
        meta.update(matrices=matrices, prefixes=prefixes, spectra_names=list(h.spectra))
        fname = snapshot_file_name(snap.step)
        self._save(
            self.dir / "snapshots" / fname,
            tensors,
            {"format": SNAPSHOT_FORMAT, "version": str(VERSION), "snapshot": json.dumps(meta)},
        )
        line = metrics_line(snap, fresh_samples)
        line["snapshot"] = f"snapshots/{fname}"
        text = json.dumps(line) + "\n"
        self._metrics.write(text)
        self._metrics.flush()
        self.bytes_written += len(text)
        self.records += 1

    def finish(self, **info) -> None:
        """Note in config.json how the run ended (final step, wall time, state file)."""
        self.config.update(info)
        atomic_write_text(self.dir / "config.json", json.dumps(_strict(self.config), indent=2))
        self.close()

    def close(self) -> None:
        if not self._metrics.closed:
            self._metrics.flush()
            os.fsync(self._metrics.fileno())
            self._metrics.close()


class RecordingReader:
    """A recording, possibly cut off mid-write. `.steps`, `.metrics`, `.snapshot(step)`, `.settings`."""

    def __init__(self, directory: str | Path):
        from explorer.schema.settings import TrainSettings

        self.dir = Path(directory)
        cfg = self.dir / "config.json"
        if not cfg.is_file():
            raise FileNotFoundError(f"{cfg}: not a recording (no config.json)")
        try:
            self.config = json.loads(cfg.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cfg}: damaged config ({exc})") from None
        if self.config.get("format") != FORMAT:
            raise ValueError(f"{cfg}: not a peft-explorer recording (format={self.config.get('format')!r})")
        if self.config.get("version") != VERSION:
            raise ValueError(
                f"{cfg}: recording version {self.config.get('version')!r} is not supported "
                f"(this peft-explorer reads version {VERSION})"
            )
        self.settings = TrainSettings.from_dict(self.config["settings"])
        self.metrics: list[dict] = []
        self.skipped_lines = 0
        path = self.dir / "metrics.jsonl"
        by_step: dict[int, dict] = {}
        if path.is_file():
            for raw in path.read_bytes().split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                    step = int(line["step"])
                except (ValueError, KeyError, TypeError):
                    self.skipped_lines += 1  # a line torn by a kill mid-write
                    continue
                if (self.dir / line.get("snapshot", snapshot_file_name(step))).is_file():
                    by_step[step] = line  # a later record of the same step (a fault) wins
        self.metrics = [by_step[s] for s in sorted(by_step)]
        self.steps = [m["step"] for m in self.metrics]
        self._const_cache: dict[str, dict] = {}

    @property
    def finished(self) -> bool:
        return "final_step" in self.config

    @property
    def state_path(self) -> Path | None:
        """The trained state at the end (read it with `explorer.core.state_file.load_state`), or None
        when the run did not get that far."""
        path = self.dir / "state.safetensors"
        return path if path.is_file() else None

    def _load(self, path: Path) -> tuple[dict, dict]:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="np") as fh:
                # safe_open is not a mapping: it has keys() but no iteration
                return {k: fh.get_tensor(k) for k in fh.keys()}, (fh.metadata() or {})  # noqa: SIM118
        except Exception as exc:
            raise ValueError(f"{path}: not a readable snapshot file ({exc})") from None

    def _const(self, fname: str) -> dict:
        if fname not in self._const_cache:
            self._const_cache[fname] = self._load(self.dir / "snapshots" / fname)[0]
        return self._const_cache[fname]

    def snapshot(self, step: int) -> Snapshot:
        line = next((m for m in self.metrics if m["step"] == step), None)
        if line is None:
            raise KeyError(f"step {step} is not in this recording (recorded: {_span(self.steps)})")
        tensors, meta = self._load(self.dir / line.get("snapshot", f"snapshots/{snapshot_file_name(step)}"))
        if meta.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot of step {step}: not a peft-explorer snapshot file")
        d = json.loads(meta["snapshot"])
        matrices = {}
        for m in d["matrices"]:
            arrays = {}
            for field, where in m["arrays"].items():
                if field not in _MATRIX_ARRAYS:
                    raise ValueError(f"snapshot of step {step}: matrix {m['name']!r} has an unknown array {field!r}")
                key = f"m/{m['name']}/{field}"
                arrays[field] = None if where is None else (tensors[key] if where == "" else self._const(where)[key])
            optional = {}
            for key, (types, default) in _MATRIX_OPTIONAL.items():
                value = m.get(key, default)
                if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                    raise ValueError(
                        f"snapshot of step {step}: matrix {m['name']!r} field {key}={value!r} has the wrong type"
                    )
                optional[key] = value
            matrices[m["name"]] = MatrixSnapshot(
                name=m["name"],
                shape=tuple(m["shape"]),
                fro_norm=m["fro_norm"],
                effective_rank=m["effective_rank"],
                stable_rank=m["stable_rank"],
                spectrum_method=m["spectrum_method"],
                **optional,
                **arrays,
            )
        prefixes = [
            PrefixSnapshot(
                layer=p["layer"],
                gates=tensors[f"p/{i}/gates"],
                attention=tensors[f"p/{i}/attention"] if p["attention"] else None,
                prompt_norm=p["prompt_norm"],
            )
            for i, p in enumerate(d["prefixes"])
        ]
        history = History(
            **{f: tensors[f"h/{f}"] for f in _HISTORY_ARRAYS},
            spectra={n: tensors[f"h/spectra/{n}"] for n in d["spectra_names"]},
        )
        return Snapshot(**{k: d[k] for k in _SCALARS}, matrices=matrices, prefixes=prefixes, history=history)

    def __len__(self) -> int:
        return len(self.steps)


def _span(steps: list[int]) -> str:
    if not steps:
        return "none"
    return f"{len(steps)} steps from {steps[0]} to {steps[-1]}"
