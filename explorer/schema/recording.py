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

metrics.jsonl is appended one line at a time and flushed after each, so a follower can tail it. Besides
the records (objects with "step" and "snapshot") it may hold event lines, objects with an "event" key:
{"event": "finished", "wall_time": unix seconds, "final_step": N, ...} is the last line of a run that
ended normally (config.json holds "final_step" by then), {"event": "failed", "wall_time": ...,
"step": N, "message": "..."} that of a run stopped by an exception. A recording with neither that
stops growing was cut off (killed, crashed) or is training slowly. Records may carry more keys than
`metrics_line` writes (`RecordingWriter.write(extra=...)`: a user run's "grad_norm" per module and
"wall_time"); the reader checks those it knows.

Writing takes the directory's lock (explorer.schema.dirlock) and replaces only a recording of ours
(`overwrite`); reading treats every file as hostile: config.json is refused with one line when any
field has the wrong type; a metrics line that is torn, not JSON or has a wrong field is skipped and
counted (`skipped_lines`, the first reasons in `problems`), never handed on; a snapshot whose metadata
or arrays are wrong is refused with one line naming its file (explorer/schema/recording_checks.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np

from explorer.schema import recording_checks as checks
from explorer.schema.faults import Fault
from explorer.schema.files import atomic_write_bytes, atomic_write_text
from explorer.schema.jsonio import JsonFileError, parse_json, read_json_file
from explorer.schema.model_files import fingerprint
from explorer.schema.outdir import claim_output_dir, entries, foreign_entries, housekeeping, marker_problem
from explorer.schema.snapshot import Snapshot
from explorer.schema.text import one_line

FORMAT = "peft-explorer-recording"
VERSION = 1
SNAPSHOT_FORMAT = "peft-explorer-snapshot"
EVENTS = ("finished", "failed")

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
    line.update(fault_fields(snap.fault))
    return _strict(line)


def fault_fields(fault: Fault | None) -> dict:
    """A fault as recorded: `fault` holds the message (what readers before structured faults read), its
    kind and setting go beside it."""
    if fault is None:
        return {}
    out = {"fault": fault.message, "fault_kind": fault.kind}
    if fault.setting is not None:
        out["fault_setting"] = fault.setting
    return out


MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_METRICS_LINE = 16 * 1024 * 1024  # one record's line; a real one is at most a few hundred kB
MAX_PROBLEMS = 5  # reasons kept for skipped metrics lines
_SNAPSHOT_NAME = re.compile(r"^(?:\d{6,}|const-\d{3,})\.safetensors$")
_OLD_TEMPORARY = re.compile(r"^\..+\.tmp$|^\.tmp[A-Za-z0-9_]{6,}$")  # earlier versions' and the safetensors library's
_TOP_FILES = ("config.json", "metrics.jsonl", "state.safetensors")


def _recording_entry(name: str, is_dir: bool) -> bool:
    if name == "snapshots":
        return is_dir
    return not is_dir and (name in _TOP_FILES or bool(_OLD_TEMPORARY.match(name)))


def _snapshot_entry(name: str, is_dir: bool) -> bool:
    return not is_dir and bool(_SNAPSHOT_NAME.match(name) or _OLD_TEMPORARY.match(name))


def recording_problem(directory: Path) -> str | None:
    """Why `directory` is not a recording of ours that --overwrite may replace (None when it is):
    config.json must carry our format and every entry must be one a recording holds."""
    directory = Path(directory)
    problem = marker_problem(directory / "config.json", FORMAT) or foreign_entries(directory, _recording_entry)
    if problem is None and (directory / "snapshots").is_dir():
        inner = foreign_entries(directory / "snapshots", _snapshot_entry)
        if inner is not None:
            problem = "snapshots/: " + inner
    return problem


def _recorded_model(directory: Path) -> tuple[Path, str | None, str | None]:
    """(its config.json, the model directory it names or None, the hash noted or None); ValueError
    naming the field when one is not what a recording writes."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        return config_path, None, None
    config = read_json_file(config_path, expect=dict, max_bytes=MAX_CONFIG_BYTES)
    base = config.get("base")
    settings = config.get("settings")
    model_dir = base.get("model_dir") if isinstance(base, dict) else None
    if not model_dir and isinstance(settings, dict):
        model_dir = settings.get("model")
    if model_dir is None or model_dir == "":
        return config_path, None, None
    if not isinstance(model_dir, str) or len(model_dir) > 4096:
        raise ValueError(f"{config_path}: model_dir is not a path")
    digest = base.get("model_hash") if isinstance(base, dict) else None
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise ValueError(f"{config_path}: base.model_hash is not a sha256 hex digest")
    return config_path, model_dir, digest


def recorded_model_problem(directory: str | Path) -> str | None:
    """Why the recording in `directory` cannot be shown with its model (None when it can): a run on a
    user's checkpoint names it (config.json's base.model_dir, or settings.model), and that directory
    must still hold a checkpoint. A recording of the shipped base (or one without config.json, which
    the reader reports itself) is no problem here."""
    directory = Path(directory)
    try:
        _, model_dir, _ = _recorded_model(directory)
    except ValueError as exc:
        return str(exc)
    if model_dir is not None and not (Path(model_dir) / "config.json").is_file():
        return (
            f"{directory}: recorded on the model in {model_dir}, which is missing "
            "(restore that directory, or replay on a machine that has it)"
        )
    return None


def recorded_model_change(directory: str | Path) -> str | None:
    """One line when the model directory a recording names no longer holds the model it was recorded
    on (its config.json and weights index hash differently from the hash the recording noted) or
    cannot be hashed; None when it matches, or when there is nothing to compare (the shipped base, a
    recording that noted no hash). The replay still shows the recording: it holds its own data."""
    directory = Path(directory)
    try:
        _, model_dir, recorded = _recorded_model(directory)
    except ValueError:
        return None  # recorded_model_problem says so
    if model_dir is None or recorded is None or not (Path(model_dir) / "config.json").is_file():
        return None
    try:
        now = fingerprint(model_dir)
    except (OSError, ValueError) as exc:
        return f"the model in {model_dir} could not be checked against this recording ({one_line(exc)})"
    if now != recorded:
        return (
            f"the model in {model_dir} changed since this recording was made (its config.json or weights "
            f"index hash {now[:12]}…, the recording noted {recorded[:12]}…)"
        )
    return None


class RecordingWriter:
    """Writes a recording into a new or empty directory (or, with `overwrite`, over a recording of
    ours), holding the directory's lock until `close()`."""

    def __init__(self, directory: str | Path, config: dict, overwrite: bool = False):
        self.dir = Path(directory)
        self._lock = claim_output_dir(self.dir, what="recording", overwrite=overwrite, ours=recording_problem)
        self._metrics = None
        try:
            if entries(self.dir):
                self._clear()
            (self.dir / "snapshots").mkdir(exist_ok=True)
            self.config = {"format": FORMAT, "version": VERSION, **config}
            atomic_write_text(self.dir / "config.json", json.dumps(_strict(self.config), indent=2))
            self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (held open while recording; closed in close())
        except BaseException:
            self._lock.release()
            raise
        self._constants: dict[str, tuple[np.ndarray, str]] = {}  # key -> (array, "const-000.safetensors")
        self._n_const = 0
        self.records = 0
        self.bytes_written = 0

    def _clear(self) -> None:
        """Remove the recording that was here; `recording_problem` has checked that every entry is one."""
        snaps = self.dir / "snapshots"
        if snaps.is_dir():
            for name in os.listdir(snaps):
                if _snapshot_entry(name, (snaps / name).is_dir()):
                    (snaps / name).unlink()
        for name in os.listdir(self.dir):
            if name != "snapshots" and not housekeeping(name) and _recording_entry(name, False):
                (self.dir / name).unlink(missing_ok=True)

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
        from safetensors.numpy import save

        data = save(tensors, metadata=metadata)  # bytes: no temporary file of the library's own
        atomic_write_bytes(path, data)
        self.bytes_written += len(data)

    def write(self, snap: Snapshot, fresh_samples: bool = False, extra: dict | None = None) -> None:
        """Write one record. `extra`: more keys for its metrics line (never replacing a record's own)."""
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
            entry = {"layer": p.layer, "prompt_norm": p.prompt_norm, "attention": p.attention is not None}
            if p.attention is not None and p.heads is not None:  # optional: older recordings hold every head
                entry["heads"] = [int(h) for h in p.heads]
            if p.attention is not None and p.attention_step is not None:  # optional: measured at the snapshot's step
                entry["attention_step"] = int(p.attention_step)
            prefixes.append(entry)
        h = snap.history
        for field in _HISTORY_ARRAYS:
            tensors[f"h/{field}"] = np.ascontiguousarray(getattr(h, field))
        for name, arr in h.spectra.items():
            tensors[f"h/spectra/{name}"] = np.ascontiguousarray(arr)
        meta = {k: getattr(snap, k) for k in _SCALARS if k != "fault"}
        meta.update({"fault": None, **fault_fields(snap.fault)})
        if snap.slow_reason:  # optional: recordings made before it was added have none
            meta["slow_reason"] = snap.slow_reason
        meta.update(matrices=matrices, prefixes=prefixes, spectra_names=list(h.spectra))
        if snap.token_delta is not None:
            td = snap.token_delta
            tensors["t/delta"] = np.ascontiguousarray(td["delta"], dtype=np.float32)
            meta["token_delta"] = {"context": td["context"], "tokens": list(td["tokens"]), "step": int(td["step"])}
        fname = snapshot_file_name(snap.step)
        self._save(
            self.dir / "snapshots" / fname,
            tensors,
            {"format": SNAPSHOT_FORMAT, "version": str(VERSION), "snapshot": json.dumps(meta)},
        )
        line = metrics_line(snap, fresh_samples)
        if extra:
            clash = sorted(set(extra) & (set(line) | {"snapshot", "event"}))
            if clash:
                raise ValueError(f"extra metrics key {clash[0]!r} would replace a record's own field")
            line.update(_strict(extra))
        line["snapshot"] = f"snapshots/{fname}"
        self._append(line)
        self.records += 1

    def _append(self, line: dict) -> None:
        text = json.dumps(line) + "\n"
        try:
            self._metrics.write(text)
            self._metrics.flush()  # one line at a time: a follower tailing the file sees whole lines
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.dir / "metrics.jsonl")) from None
        self.bytes_written += len(text)

    def event(self, kind: str, **fields) -> None:
        """Append an event line (see the module docstring): "finished" or "failed"."""
        if kind not in EVENTS:
            raise ValueError(f"event={kind!r} is unknown: allowed {', '.join(EVENTS)}")
        self._append(_strict({"event": kind, "wall_time": time.time(), **fields}))

    def finish(self, **info) -> None:
        """Note in config.json how the run ended (final step, wall time, state file), then the last
        line of metrics.jsonl, the "finished" event, so a follower knows the run is complete; close."""
        try:
            self.config.update(info)
            atomic_write_text(self.dir / "config.json", json.dumps(_strict(self.config), indent=2))
            if self._metrics is not None and not self._metrics.closed:
                self.event("finished", **{k: v for k, v in info.items() if k in ("final_step", "completed")})
        finally:
            self.close()

    def close(self) -> None:
        try:
            if self._metrics is not None and not self._metrics.closed:
                try:
                    self._metrics.flush()
                    os.fsync(self._metrics.fileno())
                finally:
                    self._metrics.close()
        finally:
            self._lock.release()


class RecordingReader:
    """A recording, possibly cut off mid-write. `.steps`, `.metrics`, `.snapshot(step)`, `.settings`.

    `skipped_lines` counts the metrics lines that were not used (torn, not JSON, a wrong field, a
    missing snapshot file); `problems` holds the first few reasons."""

    def __init__(self, directory: str | Path, scan: bool = True):
        """`scan=False`: read config.json only (explorer.schema.recording_index then indexes the
        metrics without holding them in memory)."""
        self.dir = Path(directory)
        cfg = self.dir / "config.json"
        if not cfg.is_file():
            raise FileNotFoundError(f"{cfg}: not a recording (no config.json)")
        self.config = read_json_file(cfg, max_bytes=MAX_CONFIG_BYTES)
        if self.config.get("format") != FORMAT:
            raise JsonFileError(
                f"{cfg}: not a peft-explorer recording (format={checks.shown(self.config.get('format'))})"
            )
        if self.config.get("version") != VERSION:
            raise JsonFileError(
                f"{cfg}: recording version {checks.shown(self.config.get('version'))} is not supported "
                f"(this peft-explorer reads version {VERSION})"
            )
        self.settings = checks.check_config(self.config, str(cfg))
        self.skipped_lines = 0
        self.problems: list[str] = []
        self.events: list[dict] = []  # "finished" / "failed" lines (see the module docstring)
        self._const_cache: dict[str, dict] = {}
        self.metrics: list[dict] = []
        self.steps: list[int] = []
        if not scan:
            return
        by_step: dict[int, dict] = {}
        for line in self.iter_metrics():
            if (self.dir / line["snapshot"]).is_file():
                by_step[line["step"]] = line  # a later record of the same step (a fault) wins
            else:
                self.skip(f"step {line['step']}: {line['snapshot']} is missing")
        self.metrics = [by_step[s] for s in sorted(by_step)]
        self.steps = [m["step"] for m in self.metrics]

    def skip(self, reason: str) -> None:
        self.skipped_lines += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(reason)

    def iter_metrics(self):
        """The valid records of metrics.jsonl in file order, read line by line (bounded memory per
        line); the others are skipped and counted."""
        path = self.dir / "metrics.jsonl"
        if not path.is_file():
            return
        with open(path, "rb") as fh:
            number = 0
            while True:
                raw = fh.readline(MAX_METRICS_LINE + 1)
                if not raw:
                    break
                number += 1
                if len(raw) > MAX_METRICS_LINE and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):  # skip the rest of an overlong line
                        raw = fh.readline(MAX_METRICS_LINE)
                    self.skip(f"{path.name} line {number}: longer than {MAX_METRICS_LINE} bytes")
                    continue
                line = self.parse_line(raw, f"{path} line {number}")
                if line is None:
                    continue
                yield line

    def parse_line(self, raw: bytes, where: str) -> dict | None:
        """One whole line of metrics.jsonl: the checked record, or None for a blank line, an event
        (kept in `.events`) or a bad line (skipped and counted)."""
        if not raw.strip():
            return None
        try:
            parsed = parse_json(raw, where)
            if isinstance(parsed, dict) and "event" in parsed:
                self.events.append(checks.check_event_line(parsed, where, EVENTS))
                return None
            return checks.check_metrics_line(parsed, where)
        except JsonFileError as exc:
            self.skip(str(exc))  # a line torn by a kill mid-write, or a hostile one
            return None

    @property
    def finished(self) -> bool:
        return "final_step" in self.config or any(e["event"] == "finished" for e in self.events)

    @property
    def state_path(self) -> Path | None:
        """The trained state at the end (read it with `explorer.core.state_file.load_state`), or None
        when the run did not get that far."""
        path = self.dir / "state.safetensors"
        return path if path.is_file() else None

    def _load(self, path: Path) -> tuple[dict, dict]:
        from safetensors import safe_open

        if not path.is_file():  # never open a FIFO or a device: it could block forever
            raise FileNotFoundError(f"{path}: no such snapshot file")
        try:
            with safe_open(str(path), framework="np") as fh:
                # safe_open is not a mapping: it has keys() but no iteration
                return {k: fh.get_tensor(k) for k in fh.keys()}, (fh.metadata() or {})  # noqa: SIM118
        except Exception as exc:
            raise ValueError(f"{path}: not a readable snapshot file ({checks.one_line(exc)})") from None

    def _const(self, fname: str) -> dict:
        if fname not in self._const_cache:
            self._const_cache[fname] = self._load(self.dir / "snapshots" / fname)[0]
        return self._const_cache[fname]

    def snapshot(self, step: int) -> Snapshot:
        """The Snapshot recorded at `step`; KeyError when there is none, ValueError (one line naming
        the file) when its file is damaged or hostile."""
        line = next((m for m in self.metrics if m["step"] == step), None)
        if line is None:
            raise KeyError(f"step {step} is not in this recording (recorded: {_span(self.steps)})")
        return self.load_record(line)

    def load_record(self, line: dict) -> Snapshot:
        """The Snapshot of a checked metrics record (`parse_line`); ValueError naming the file when
        that file is damaged or hostile."""
        path = self.dir / line["snapshot"]
        tensors, meta = self._load(path)
        where = str(path)
        if meta.get("format") != SNAPSHOT_FORMAT or not isinstance(meta.get("snapshot"), str):
            raise ValueError(f"{where}: not a peft-explorer snapshot file")
        d = parse_json(meta["snapshot"], f"{where} (metadata)", allow_nonfinite=True)
        return checks.snapshot_from(d, tensors, self._const_ref, where, _SCALARS, _HISTORY_ARRAYS, _MATRIX_OPTIONAL)

    def _const_ref(self, fname: str, key: str, where: str) -> np.ndarray:
        if not isinstance(fname, str) or not _SNAPSHOT_NAME.match(fname) or not fname.startswith("const-"):
            raise ValueError(f"{where}: array {key} refers to {checks.shown(fname)}, not a constants file")
        arrays = self._const(fname)
        if key not in arrays:
            raise ValueError(f"{where}: array {key} is missing from snapshots/{fname}")
        return arrays[key]

    def __len__(self) -> int:
        return len(self.steps)


def _span(steps: list[int]) -> str:
    if not steps:
        return "none"
    return f"{len(steps)} steps from {steps[0]} to {steps[-1]}"
