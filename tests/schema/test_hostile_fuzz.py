"""Fuzz tests, one per plain-data reader (hypothesis): whatever a file holds, a reader gives back checked
data or refuses with one ValueError / FileNotFoundError line naming the file, never another exception,
and the linear-time pattern matcher agrees with Python's re. The table of known hostile cases is
tests/test_hostile.py."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.schema.jsonio import JsonFileError, parse_json, read_json_file
from explorer.schema.safe_regex import UnsafePattern, compile_safe

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
FUZZ = settings(
    max_examples=150, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _one_line(exc: BaseException, where: str) -> None:
    message = str(exc)
    assert "\n" not in message and len(message) < 1000, message
    assert where in message, (where, message)


@FUZZ
@given(data=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_json_reader_gives_checked_objects_or_one_line(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.json"
        path.write_bytes(data)
        try:
            value = read_json_file(path)
        except JsonFileError as exc:
            _one_line(exc, str(path))
            return
        assert isinstance(value, dict)


def test_json_reader_refuses_depth_before_recursion():
    with pytest.raises(JsonFileError, match="nested more than 64 levels"):
        parse_json("[" * 70 + "]" * 70, "x", expect=None)
    with pytest.raises(JsonFileError, match="nested too deeply"):
        parse_json('{"a":' * 100_000 + "1" + "}" * 100_000, "x")


# ---- recordings --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from explorer.cli import main

    out = tmp_path_factory.mktemp("fuzz") / "rec"
    assert (
        main(
            ["run", "--scenario", "matrix", "--size", "8", "--rank", "2", "--target-rank", "2", "--steps", "2"]
            + ["--device", "cpu", "--quiet", "--out", str(out)]
        )
        == 0
    )
    return out


def _copy(rec: Path, tmp: str) -> Path:
    import shutil

    return Path(shutil.copytree(rec, Path(tmp) / "rec"))


@FUZZ
@given(
    field=st.sampled_from(["settings", "final_step", "steps", "display_size", "completed", "compare", "base"]),
    value=JSON,
)
def test_recording_config_fields(recording, field, value):
    from explorer.schema.recording import RecordingReader

    with tempfile.TemporaryDirectory() as tmp:
        rec = _copy(recording, tmp)
        cfg = json.loads((rec / "config.json").read_text())
        cfg[field] = value
        (rec / "config.json").write_text(json.dumps(cfg))
        try:
            reader = RecordingReader(rec)
        except (ValueError, FileNotFoundError) as exc:
            _one_line(exc, str(rec))
            return
        assert reader.steps == [0, 1, 2]


@FUZZ
@given(
    lines=st.lists(
        st.dictionaries(
            st.sampled_from(["step", "loss", "snapshot", "state", "gates", "spectra", "samples", "time", "fault"]),
            JSON,
            max_size=5,
        )
        | st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
        max_size=4,
    )
)
def test_recording_metrics_lines_are_checked_or_skipped(recording, lines):
    from explorer.schema.recording import RecordingReader
    from explorer.schema.recording_checks import check_metrics_line

    with tempfile.TemporaryDirectory() as tmp:
        rec = _copy(recording, tmp)
        extra = [x if isinstance(x, str) else json.dumps(x) for x in lines]
        with open(rec / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write("\n".join(extra).replace("\n\n", "\n") + "\n")
        reader = RecordingReader(rec)  # never raises for a bad record
        for m in reader.metrics:
            assert check_metrics_line(m, "again") == m  # every record handed on passes the checks
            assert isinstance(m["step"], int) and not isinstance(m["step"], bool)
        for step in reader.steps:
            try:
                reader.snapshot(step)
            except ValueError as exc:
                _one_line(exc, str(rec))


@FUZZ
@given(
    path=st.sampled_from(
        [
            ("step",),
            ("loss",),
            ("settings",),
            ("probe_tokens",),
            ("samples",),
            ("matrices",),
            ("matrices", 0, "name"),
            ("matrices", 0, "shape"),
            ("matrices", 0, "arrays"),
            ("matrices", 0, "arrays", "base"),
            ("prefixes",),
            ("spectra_names",),
            ("state",),
        ]
    ),
    value=JSON,
)
def test_recording_snapshot_metadata(recording, path, value):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from explorer.schema.recording import RecordingReader

    with tempfile.TemporaryDirectory() as tmp:
        rec = _copy(recording, tmp)
        snap = rec / "snapshots" / "000001.safetensors"
        with safe_open(str(snap), framework="np") as fh:
            meta = fh.metadata()
        d = json.loads(meta["snapshot"])
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        meta["snapshot"] = json.dumps(d)
        save_file(load_file(str(snap)), str(snap), metadata=meta)
        try:
            RecordingReader(rec).snapshot(1)
        except ValueError as exc:
            _one_line(exc, str(snap))


# ---- decks, settings, comparisons ------------------------------------------------------------------


@FUZZ
@given(
    scene=st.dictionaries(
        st.sampled_from(["title", "caption", "views", "layout", "play", "settings", "runs", "focus"]),
        JSON,
        max_size=8,
    ),
    labels=st.lists(JSON, max_size=3),
    title=JSON,
)
def test_deck_scenes(scene, labels, title):
    from explorer.schema.deck import parse_deck

    base = {"title": "t", "caption": "c", "views": ["compare"], "runs": [{"label": x} for x in labels]}
    try:
        deck = parse_deck({"title": title, "scene": [{**base, **scene}]}, "deck.toml")
    except ValueError as exc:
        _one_line(exc, "deck.toml")
        return
    # what was accepted is exactly what the file said, with the types the app relies on
    assert deck.title == title and isinstance(deck.title, str)
    (parsed,) = deck.scenes
    assert isinstance(parsed.title, str) and isinstance(parsed.caption, str) and isinstance(parsed.play, bool)
    runs = scene.get("runs", base["runs"])
    assert [r.label for r in parsed.runs] == [r["label"] for r in runs]
    assert all(isinstance(r.label, str) and 0 < len(r.label) <= 64 for r in parsed.runs)


@FUZZ
@given(
    d=st.dictionaries(
        st.sampled_from(
            ["rank", "alpha", "use_rslora", "targets", "layers", "method", "lr", "seed", "device", "prefix_len", "x"]
        ),
        JSON,
        max_size=5,
    )
    | JSON
)
def test_settings_from_a_file(d):
    from explorer.schema.settings import TrainSettings

    try:
        TrainSettings.from_dict(d)
    except ValueError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(
    part=st.sampled_from(["manifest", "analysis"]),
    key=st.sampled_from(["runs", "similarity", "amplification", "intrinsic", "modules", "step"]),
    value=JSON,
)
def test_comparison_files(tmp_path_factory, part, key, value):
    from explorer.schema.compare import load_comparison

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = {"format": "peft-explorer-compare", "runs": [], "base_settings": {"scenario": "matrix"}}
        analysis = {"similarity": [], "amplification": {}, "intrinsic": [], "modules": []}
        (manifest if part == "manifest" else analysis)[key] = value
        (root / "compare.json").write_text(json.dumps(manifest))
        (root / "analysis.json").write_text(json.dumps(analysis))
        try:
            load_comparison(root)
        except (ValueError, FileNotFoundError) as exc:
            _one_line(exc, str(root))


# ---- patterns from files ---------------------------------------------------------------------------

ATOMS = ["a", "b", ".", r"\.", "[ab]", "[^a]", r"\d", r"\w", r"\s", "(a|b)", "(ab|a)", "^", "$", r"\b", r"\B", r"\Z"]
PATTERN = st.lists(
    st.tuples(st.sampled_from(ATOMS), st.sampled_from(["", "*", "+", "?", "{2}", "{1,3}", "*?", "{0}"])),
    min_size=1,
    max_size=5,
).map(lambda parts: "".join(a + q for a, q in parts))


@FUZZ
@given(pattern=PATTERN | st.text(max_size=12), wrap=st.booleans(), text=st.text(alphabet="ab.1_ \né", max_size=10))
def test_the_linear_matcher_agrees_with_re(pattern, wrap, text):
    if wrap:
        pattern = f"({pattern})+"
    try:
        re.compile(pattern)
    except re.error:
        with pytest.raises(UnsafePattern):
            compile_safe(pattern)
        return
    try:
        p = compile_safe(pattern)
    except UnsafePattern:
        return  # backreferences, lookaround, flags...: refused, never guessed at
    assert p.fullmatch(text) == bool(re.fullmatch(pattern, text))
    assert p.match(text) == bool(re.match(pattern, text))


def test_catastrophic_patterns_answer_in_linear_time():
    import time

    name = "model.layers.0.self_attn." + "a" * 20_000 + "!"
    for pattern in ("((a+))+", "(a|a)*", "(a*)*b", ".*.*.*.*.*.*x"):
        start = time.perf_counter()
        p = compile_safe(pattern)
        assert not p.fullmatch(name) and p.backtracking
        assert time.perf_counter() - start < 5.0, pattern
