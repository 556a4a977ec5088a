"""Hostile input and faults (issues 12 and 18): one table of (file kind, case, expected message).

Each row builds a hostile file, flag or output path in a temporary directory and runs the command
line (in this process, through `explorer.cli.main`) or a reader on it. A command must end with ONE
line on stderr naming what was wrong and exit code 2 (a training fault: 3); a reader must raise one
ValueError / FileNotFoundError line that names the file. Rows marked `untouched` also check that
nothing in the directory changed. The fuzz tests per reader are in tests/schema/test_hostile_fuzz.py
and tests/core/test_hostile_state_fuzz.py; the behaviours (locks, atomic writes, diverging runs) in
tests/commands/test_hostile_outputs.py.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.cli import main
from explorer.schema.dirlock import LOCK_NAME

RUN = [
    "run",
    "--scenario",
    "matrix",
    "--method",
    "lora",
    "--rank",
    "2",
    "--size",
    "8",
    "--target-rank",
    "2",
    "--steps",
    "2",
    "--device",
    "cpu",
    "--quiet",
]


@dataclass
class Case:
    kind: str  # the file or flag
    case: str  # what is wrong with it
    build: Callable  # (tmp_path, monkeypatch) -> argv list for main, or a zero-argument reader call
    expected: str  # in the one line
    code: int = 2  # the exit code (commands only)
    untouched: bool = False  # nothing under tmp_path may change


# ---- builders --------------------------------------------------------------------------------------


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _model_dir(tmp: Path) -> Path:
    d = tmp / "model"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "llama", "hidden_size": 8}')
    (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (d / "notes.txt").write_text("my notes")
    return d


def _recording(tmp: Path) -> Path:
    out = tmp / "rec"
    assert main(RUN + ["--out", str(out)]) == 0
    return out


def _edit_config(rec: Path, change) -> Path:
    cfg = json.loads((rec / "config.json").read_text())
    change(cfg)
    (rec / "config.json").write_text(json.dumps(cfg))
    return rec


def _reader(rec: Path):
    from explorer.schema.recording import RecordingReader

    return lambda: RecordingReader(rec)


class Raw(str):
    """A metrics field written as this raw JSON text (so `Infinity` reaches the file as it is)."""


def _metrics_line(rec: Path, **fields) -> Path:
    """Append a copy of the first record with `fields` changed."""
    lines = (rec / "metrics.jsonl").read_text().splitlines()
    record = {**json.loads(lines[0]), **fields}
    text = json.dumps({k: (f"@{k}@" if isinstance(v, Raw) else v) for k, v in record.items()})
    for k, v in record.items():
        if isinstance(v, Raw):
            text = text.replace(f'"@{k}@"', v)
    (rec / "metrics.jsonl").write_text("\n".join(lines + [text]) + "\n")
    return rec


def _bad_metrics_is_skipped(rec: Path, **fields):
    """The reader skips and counts the hostile record; it never raises or hands it on."""
    from explorer.schema.recording import RecordingReader

    _metrics_line(rec, **fields)

    def read():
        r = RecordingReader(rec)
        assert r.skipped_lines == 1 and r.steps == [0, 1, 2], (r.skipped_lines, r.steps)
        raise ValueError(f"{rec}: {r.problems[0]}")  # the reason, as the table checks it

    return read


def _snapshot_meta(rec: Path, change) -> Callable:
    from safetensors.numpy import load_file, save_file

    from explorer.schema.recording import RecordingReader

    path = rec / "snapshots" / "000002.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata()
    arrays = load_file(str(path))
    d = json.loads(meta["snapshot"])
    change(d, arrays)
    meta["snapshot"] = json.dumps(d)
    save_file(arrays, str(path), metadata=meta)
    return lambda: RecordingReader(rec).snapshot(2)


def _state(tmp: Path, change_meta=None, change_tensors=None) -> Path:
    from safetensors.torch import load_file, save_file

    rec = _recording(tmp)
    path = rec / "state.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    if change_meta:
        change_meta(meta)
    if change_tensors:
        change_tensors(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def _load_into_trainer(path: Path):
    """Load a state into a trainer; on refusal, the trainer must be exactly as it was."""
    from explorer.engine.trainer import Trainer
    from explorer.schema.recording import RecordingReader

    t = Trainer(RecordingReader(path.parent).settings)
    t.train_step()
    before = {k: v.clone() for k, v in t.trained_tensors().items()}
    step, seg = t.step, t._seg

    def load():
        try:
            t.load_state(path)
        finally:
            assert t._seg is seg and t.step == step
            assert all(torch.equal(before[k], v) for k, v in t.trained_tensors().items())
        t.train_step()  # a load that "succeeded" must leave a trainer that trains

    return load


def _adapter(tmp: Path, **config_changes) -> Path:
    from explorer.core.peft_files import write_lora_adapter

    d = tmp / "adapter"
    g = torch.Generator().manual_seed(0)
    modules = {
        f"model.layers.{i}.self_attn.{k}": {"A": torch.randn(2, 8, generator=g), "B": torch.randn(8, 2, generator=g)}
        for i in range(2)
        for k in ("q_proj", "v_proj")
    }
    write_lora_adapter(d, modules, r=2, lora_alpha=4)
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg.update(config_changes)
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    return d


def _adapter_with_name(tmp: Path, name: str) -> Path:
    from explorer.core.peft_files import write_lora_adapter

    d = tmp / "adapter"
    write_lora_adapter(d, {name: {"A": torch.ones(2, 8), "B": torch.ones(8, 2)}}, r=2, lora_alpha=4)
    return d


def _deck(tmp: Path, text: str | bytes) -> Callable:
    from explorer.schema.deck import load_deck

    path = tmp / "deck.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return lambda: load_deck(path)


def _corpus(tmp: Path, monkeypatch, data: bytes) -> Callable:
    from explorer.schema import resources

    (tmp / "corpora").mkdir()
    (tmp / "corpora" / "base.train.txt.gz").write_bytes(data)
    monkeypatch.setattr(resources, "resources_dir", lambda: tmp)
    resources.load_corpus.cache_clear()
    return lambda: resources.load_corpus("base")


def _fail_os(monkeypatch, module, name: str, code: int, under: Path | None = None, after: int = 0):
    """Make `module`'s os.<name> fail with `code` (after `after` good calls; only for paths under
    `under` when given): a read-only directory or a full disk, whoever runs the tests (root too)."""
    import types

    real = getattr(os, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        path = args[0] if args and isinstance(args[0], (str, os.PathLike)) else None
        if under is None or (path is not None and str(path).startswith(str(under))):
            calls["n"] += 1
            if calls["n"] > after:
                raise OSError(code, os.strerror(code), None if path is None else str(path))
        return real(*args, **kwargs)

    proxy = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    setattr(proxy, name, failing)
    monkeypatch.setattr(module, "os", proxy)


def _read_only(tmp, monkeypatch):
    import explorer.schema.dirlock as dirlock
    import explorer.schema.files as files

    out = tmp / "ro"
    out.mkdir()
    _fail_os(monkeypatch, dirlock, "open", errno.EACCES, under=out)
    _fail_os(monkeypatch, files, "mkdir", errno.EACCES, under=out)
    return RUN + ["--out", str(out / "x")]


def _full_disk(tmp, monkeypatch):
    import explorer.schema.files as files

    _fail_os(monkeypatch, files, "write", errno.ENOSPC, after=3)
    return RUN + ["--out", str(tmp / "full")]


def _locked(tmp):
    from explorer.schema.dirlock import DirLock

    rec = _recording(tmp)
    DirLock(rec, "run").acquire()  # held by this (live) process, as by a first run
    return RUN + ["--overwrite", "--out", str(rec)]


def _export_full_disk(tmp, monkeypatch):
    import explorer.schema.files as files
    from explorer.engine.trainer import Trainer
    from explorer.schema.settings import TrainSettings

    state = tmp / "state.safetensors"
    Trainer(TrainSettings(rank=2, seq_len=8, batch_size=1, device="cpu")).save_state(state)
    _fail_os(monkeypatch, files, "write", errno.ENOSPC)
    return ["export", str(state), "--out", str(tmp / "exp")]


def _export_half_done(tmp: Path) -> None:
    assert not (tmp / "exp" / "adapter").exists() and not (tmp / "exp" / "base").exists()


def _internal_error(tmp, monkeypatch):
    from explorer.engine import trainer

    def broken(self, *a, **k):
        raise TypeError("a bug of ours")

    monkeypatch.setattr(trainer.Trainer, "eval_loss", broken)
    return RUN + ["--out", str(tmp / "bug")]


def _deep(n: int = 100_000) -> str:
    return "[" * n + "]" * n


# ---- the table -------------------------------------------------------------------------------------

CASES = [
    # command-line flags and output paths
    Case(
        "run --out",
        "a regular file",
        lambda t, m: (t / "f").write_text("x") and RUN + ["--out", str(t / "f")],
        "is a file",
        untouched=True,
    ),
    Case(
        "run --out",
        "its parent is a regular file",
        lambda t, m: (t / "f").write_text("x") and RUN + ["--out", str(t / "f" / "rec")],
        "Not a directory",
        untouched=True,
    ),
    Case("run --out", "a read-only directory", _read_only, "Permission denied"),
    Case(
        "run --out",
        "a 300-character name",
        lambda t, m: RUN + ["--out", str(t / ("r" * 300))],
        "File name too long",
        untouched=True,
    ),
    Case(
        "run --out",
        "under /sys",
        lambda t, m: RUN + ["--out", "/sys/kernel/peft-explorer-test"],
        "/sys/kernel/peft-explorer-test",
    ),
    Case("run --out", "a full disk mid-run", _full_disk, "No space left on device"),
    Case(
        "run --threads",
        "-1",
        lambda t, m: RUN + ["--threads", "-1", "--out", str(t / "rec")],
        "threads=-1 is out of range",
        untouched=True,
    ),
    Case(
        "run --threads",
        "1000000 (crashed OpenMP)",
        lambda t, m: RUN + ["--threads", "1000000", "--out", str(t / "rec")],
        "threads=1000000 is out of range",
        untouched=True,
    ),
    Case(
        "compare --threads",
        "1000000",
        lambda t, m: (
            ["compare", "--scenario", "matrix", "--runs", "lora:r=2", "--steps", "1", "--threads", "1000000"]
            + ["--out", str(t / "cmp")]
        ),
        "threads=1000000 is out of range",
        untouched=True,
    ),
    Case("export --out", "a full disk", _export_full_disk, "adapter_model.safetensors: No space left on device"),
    Case(
        "run --overwrite --out",
        "a model directory, not a recording",
        lambda t, m: RUN + ["--overwrite", "--out", str(_model_dir(t))],
        "not a recording of peft-explorer",
        untouched=True,
    ),
    Case(
        "run --overwrite --out",
        "a recording with someone's notes in it",
        lambda t, m: (_recording(t) / "notes.txt").write_text("x") and RUN + ["--overwrite", "--out", str(t / "rec")],
        "holds 'notes.txt'",
    ),
    Case(
        "run --overwrite --out",
        "a recording another run is writing",
        lambda t, m: _locked(t),
        "in use by a run process",
    ),
    Case(
        "compare --overwrite --out",
        "a model directory",
        lambda t, m: [
            "compare",
            "--runs",
            "lora",
            "--scenario",
            "matrix",
            "--size",
            "8",
            "--overwrite",
            "--out",
            str(_model_dir(t)),
        ],
        "not a comparison of peft-explorer",
        untouched=True,
    ),
    Case("the command line", "a bug of ours", _internal_error, "internal error: TypeError: a bug of ours", code=1),
    Case(
        "budget --model config.json",
        "not UTF-8",
        lambda t, m: (
            (t / "config.json").write_bytes(b'{"hidden_size": "\xff"}')
            and ["budget", "--model", str(t / "config.json")]
        ),
        "config.json: not UTF-8",
    ),
    Case(
        "budget --model config.json",
        "nested 100,000 levels",
        lambda t, m: (t / "config.json").write_text(_deep()) and ["budget", "--model", str(t / "config.json")],
        "nested too deeply",
    ),
    Case(
        "budget --model config.json",
        "a list at the top level",
        lambda t, m: (t / "config.json").write_text("[1]") and ["budget", "--model", str(t / "config.json")],
        "top level is a JSON array",
    ),
    # recordings
    Case(
        "recording config.json",
        "not UTF-8",
        lambda t, m: (_recording(t) / "config.json").write_bytes(b"\xff\xfe{}") and _reader(t / "rec"),
        "config.json: not UTF-8",
    ),
    Case(
        "recording config.json",
        "nested 100,000 levels",
        lambda t, m: (_recording(t) / "config.json").write_text(_deep()) and _reader(t / "rec"),
        "nested too deeply",
    ),
    Case(
        "recording config.json",
        "a list at the top level",
        lambda t, m: (_recording(t) / "config.json").write_text("[]") and _reader(t / "rec"),
        "top level is a JSON array",
    ),
    Case(
        "recording config.json",
        'settings.rank "128"',
        lambda t, m: _reader(_edit_config(_recording(t), lambda c: c["settings"].update(rank="128"))),
        "rank='128'",
    ),
    Case(
        "recording config.json",
        "settings.rank 128.5",
        lambda t, m: _reader(_edit_config(_recording(t), lambda c: c["settings"].update(rank=128.5))),
        "must be a whole number",
    ),
    Case(
        "recording config.json",
        "settings.use_rslora 1",
        lambda t, m: _reader(_edit_config(_recording(t), lambda c: c["settings"].update(use_rslora=1))),
        "use_rslora=1 is not true or false",
    ),
    Case(
        "recording config.json",
        "final_step -1",
        lambda t, m: _reader(_edit_config(_recording(t), lambda c: c.update(final_step=-1))),
        "final_step is -1",
    ),
    Case(
        "recording metrics.jsonl",
        "step Infinity",
        lambda t, m: _bad_metrics_is_skipped(_recording(t), step=Raw("Infinity")),
        "not valid JSON",
    ),
    Case(
        "recording metrics.jsonl",
        'step "3"',
        lambda t, m: _bad_metrics_is_skipped(_recording(t), step="3"),
        'step is "3"',
    ),
    Case(
        "recording metrics.jsonl",
        "step 128.5",
        lambda t, m: _bad_metrics_is_skipped(_recording(t), step=128.5),
        "step is 128.5",
    ),
    Case(
        "recording metrics.jsonl",
        "loss a string",
        lambda t, m: _bad_metrics_is_skipped(_recording(t), step=7, loss="low"),
        'loss is "low"',
    ),
    Case(
        "recording metrics.jsonl",
        "snapshot outside the recording",
        lambda t, m: _bad_metrics_is_skipped(_recording(t), step=7, snapshot="../../etc/passwd"),
        "expected snapshots/NNNNNN.safetensors",
    ),
    Case(
        "recording metrics.jsonl",
        "step a list",
        lambda t, m: _bad_metrics_is_skipped(_recording(t), step=Raw("[1]")),
        "step is [1]",
    ),
    Case(
        "recording snapshot",
        "fro_norm a string",
        lambda t, m: _snapshot_meta(_recording(t), lambda d, a: d["matrices"][0].update(fro_norm="x")),
        'fro_norm is "x"',
    ),
    Case(
        "recording snapshot",
        "a matrix shape of three numbers",
        lambda t, m: _snapshot_meta(_recording(t), lambda d, a: d["matrices"][0].update(shape=[1, 2, 3])),
        "expected [rows, columns]",
    ),
    Case(
        "recording snapshot",
        "an array of the wrong rank",
        lambda t, m: _snapshot_meta(
            _recording(t), lambda d, a: a.update({"m/W/spectrum": np.zeros((2, 2), np.float32)})
        ),
        "expected 1 dimensions",
    ),
    Case(
        "recording snapshot",
        "a constants file outside snapshots/",
        lambda t, m: _snapshot_meta(
            _recording(t), lambda d, a: d["matrices"][0]["arrays"].update(base="../../config.json")
        ),
        "not a constants file",
    ),
    Case(
        "recording snapshot",
        "state an int",
        lambda t, m: _snapshot_meta(_recording(t), lambda d, a: d.update(state=3)),
        "state is 3",
    ),
    # saved states
    Case(
        "state.safetensors",
        "settings nested 100,000 levels",
        lambda t, m: (lambda p: lambda: _load_state(p))(
            _state(t, change_meta=lambda meta: meta.update(settings=_deep()))
        ),
        "nested too deeply",
    ),
    Case(
        "state.safetensors",
        "settings a list",
        lambda t, m: (lambda p: lambda: _load_state(p))(
            _state(t, change_meta=lambda meta: meta.update(settings="[1]"))
        ),
        "top level is a JSON array",
    ),
    Case(
        "state.safetensors",
        "step not a number",
        lambda t, m: (lambda p: lambda: _load_state(p))(_state(t, change_meta=lambda meta: meta.update(step="1e400"))),
        "step is '1e400'",
    ),
    Case(
        "state.safetensors",
        "optimizer moments of int dtype",
        lambda t, m: _load_into_trainer(
            _state(
                t,
                change_tensors=lambda ts: ts.update(
                    {
                        "resume/optimizer/W.lora_A.weight/exp_avg": ts["resume/optimizer/W.lora_A.weight/exp_avg"].to(
                            torch.int32
                        )
                    }
                ),
            )
        ),
        "exp_avg is torch.int32",
    ),
    Case(
        "state.safetensors",
        "optimizer moments of the wrong shape",
        lambda t, m: _load_into_trainer(
            _state(
                t, change_tensors=lambda ts: ts.update({"resume/optimizer/W.lora_B.weight/exp_avg_sq": torch.zeros(3)})
            )
        ),
        "exp_avg_sq is torch.float32 (3,)",
    ),
    Case(
        "state.safetensors",
        "negative second moments",
        lambda t, m: _load_into_trainer(
            _state(t, change_tensors=lambda ts: ts["resume/optimizer/W.lora_A.weight/exp_avg_sq"].fill_(-1.0))
        ),
        "exp_avg_sq has negative values",
    ),
    Case(
        "state.safetensors",
        "an optimizer step of -3",
        lambda t, m: _load_into_trainer(
            _state(t, change_tensors=lambda ts: ts["resume/optimizer/W.lora_A.weight/step"].fill_(-3.0))
        ),
        "step is -3.0",
    ),
    Case(
        "state.safetensors",
        "a history out of order",
        lambda t, m: _load_into_trainer(
            _state(
                t,
                change_tensors=lambda ts: ts.update(
                    {"resume/history/loss_steps": ts["resume/history/loss_steps"].flip(0) + 1}
                ),
            )
        ),
        "history is damaged",
    ),
    Case(
        "state.safetensors",
        "an integer trained tensor",
        lambda t, m: (lambda p: lambda: _load_state(p))(
            _state(t, change_tensors=lambda ts: ts.update({"W.lora_A.weight": ts["W.lora_A.weight"].to(torch.int64)}))
        ),
        "trained tensors are floating point",
    ),
    # decks
    Case(
        "deck",
        "runs = [{label = [1]}]",
        lambda t, m: _deck(t, 'title="d"\n[[scene]]\ntitle="a"\ncaption="b"\nviews=["compare"]\nruns=[{label=[1]}]\n'),
        "runs[0].label: must be text",
    ),
    Case(
        "deck",
        "a title that is a table",
        lambda t, m: _deck(t, 'title={a=1}\n[[scene]]\ntitle="a"\ncaption="b"\nviews=["loss"]\n'),
        "title must be text",
    ),
    Case(
        "deck",
        "settings.use_dora = 1",
        lambda t, m: _deck(t, '[[scene]]\ntitle="a"\ncaption="b"\nviews=["loss"]\n[scene.settings]\nuse_dora=1\n'),
        "use_dora=1 is not true or false",
    ),
    Case("deck", "not UTF-8", lambda t, m: _deck(t, b'[[scene]]\ntitle="\xff"\n'), "not UTF-8"),
    Case("deck", "arrays nested 100,000 levels", lambda t, m: _deck(t, "x = " + _deep()), "deck.toml: not valid TOML"),
    # PEFT adapters
    Case(
        "adapter_config.json",
        "nested 100,000 levels",
        lambda t, m: (_adapter(t) / "adapter_config.json").write_text(_deep()) and ["inspect", str(t / "adapter")],
        "nested too deeply",
    ),
    Case(
        "adapter_config.json",
        "target_modules ((a+))+",
        lambda t, m: ["inspect", str(_adapter(t, target_modules="((a+))+"))],
        "has a nested repetition",
    ),
    Case(
        "adapter_config.json",
        "target_modules (a|a)*",
        lambda t, m: ["inspect", str(_adapter(t, target_modules="(a|a)*"))],
        "alternatives that can start alike",
    ),
    Case(
        "adapter_config.json",
        "rank_pattern key ((a+))+",
        lambda t, m: ["inspect", str(_adapter(t, rank_pattern={"((a+))+": 2}))],
        "rank_pattern key '((a+))+' has a nested repetition",
    ),
    Case(
        "adapter_config.json",
        "alpha_pattern key with a backreference",
        lambda t, m: ["inspect", str(_adapter(t, alpha_pattern={r"(q)\1": 2}))],
        "backreferences are not supported",
    ),
    Case(
        "adapter_config.json",
        "layers_pattern a regex",
        lambda t, m: ["inspect", str(_adapter(t, layers_pattern="(a+)+", layers_to_transform=[0]))],
        "layers_pattern '(a+)+' is refused",
    ),
    Case("adapter_config.json", "r a string", lambda t, m: ["inspect", str(_adapter(t, r="2"))], 'r is "2"'),
    # shipped files
    Case(
        "shipped corpus",
        "truncated",
        lambda t, m: _corpus(t, m, gzip.compress(b"x" * 10_000)[:40]),
        "the installation is damaged",
    ),
    Case("shipped corpus", "not gzip", lambda t, m: _corpus(t, m, b"plain text"), "the installation is damaged"),
]


def _load_state(path):
    from explorer.core.state_file import load_state

    return load_state(path)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}: {c.case}" for c in CASES])
def test_hostile_input_is_refused_in_one_line(case, tmp_path, monkeypatch, capsys):
    target = case.build(tmp_path, monkeypatch)
    capsys.readouterr()
    before = _tree(tmp_path) if case.untouched else None
    if isinstance(target, list):
        code = main(target)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == case.code, err
        assert len(lines) == 1 and "Traceback" not in err, err
        assert case.expected in lines[0], lines[0]
    else:
        with pytest.raises((ValueError, FileNotFoundError)) as info:
            target()
        message = str(info.value)
        assert "\n" not in message and len(message) < 700, message
        assert case.expected in message, message
        assert str(tmp_path) in message, message  # it names the file
    if before is not None:
        assert _tree(tmp_path) == before  # nothing touched
    leftovers = [p for p in tmp_path.rglob("*") if ".peft-tmp." in p.name or p.name.startswith(LOCK_NAME)]
    assert not leftovers or case.case.startswith("a recording another run"), leftovers
    if case.kind.startswith("export"):
        _export_half_done(tmp_path)
