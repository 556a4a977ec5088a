"""Scene decks for talks: an ordered list of scenes, each a known starting state for the app.

A deck is a TOML file:

    title = "What LoRA does"
    [[scene]]
    title = "ΔW starts at zero"
    caption = "LoRA: ΔW = scaling · B · A is exactly zero at step 0, then grows."
    views = ["delta", "spectrum", "loss"]     # which views are visible, in this order
    layout = "grid"                           # grid | row | column | focus (first view large)
    play = true                               # a scene that trains: it holds at step 0 until P ...
    hold = 3                                  # ... or starts by itself after this many seconds
    log_y = ["compare"]                       # views whose loss axis is logarithmic (loss, compare)
    [scene.settings]                          # TrainSettings fields; the rest keep their defaults (lr: the method's)
    scenario = "matrix"
    rank = 4
    # optional: several runs overlaid on the same data and seed (the compare view)
    # [[scene.runs]]  label = "r=1"  settings = { rank = 1 }

Entering a scene always starts from these settings and step 0, so a deck plays the same every time.
Errors name the scene and the field: "scene 2 ('rank against fit'): settings.rank=0 is out of range ...".
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from explorer.schema.compare import SHARED
from explorer.schema.jsonio import read_regular_file, shown
from explorer.schema.settings import TrainSettings, with_method_defaults
from explorer.schema.text import one_line

VIEW_IDS = ("delta", "spectrum", "attention", "gates", "loss", "budget", "samples", "tokens", "compare")
LAYOUTS = ("grid", "row", "column", "focus")
SCENE_FIELDS = {"title", "caption", "views", "layout", "play", "hold", "settings", "runs", "focus", "log_y"}
LOG_Y_VIEWS = ("loss", "compare")  # the views with a loss axis that can be logarithmic
MAX_HOLD_S = 600.0
MAX_DECK_BYTES = 1024 * 1024  # the default deck is 4 kB
MAX_SCENES = 500
MAX_TEXT = 10_000  # a title or a caption
MAX_LABEL = 64


@dataclass
class Run:
    label: str
    settings: TrainSettings


@dataclass
class Scene:
    title: str
    caption: str
    views: list[str]
    layout: str
    play: bool
    settings: TrainSettings
    runs: list[Run] = field(default_factory=list)
    focus: str | None = None  # delta view: which matrix to show (e.g. "W" or "model.layers.3.self_attn.q_proj")
    # A playing scene holds at step 0 until the presenter presses P, or for `hold` seconds when given
    hold: float | None = None
    # The views (of LOG_Y_VIEWS) whose loss axis is logarithmic in this scene; the others' is linear
    log_y: list[str] = field(default_factory=list)


@dataclass
class Deck:
    title: str
    scenes: list[Scene]
    path: Path | None = None


def default_deck_path() -> Path:
    from explorer.schema.resources import resources_dir

    return resources_dir() / "decks" / "default.toml"


def load_deck(path: str | Path | None = None) -> Deck:
    path = Path(path) if path is not None else default_deck_path()
    if not path.is_file():  # a FIFO or a device is not a file either: never opened
        raise FileNotFoundError(f"{path}: no such deck file")
    raw = read_regular_file(path, MAX_DECK_BYTES)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({one_line(exc)})") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid TOML here (nested too deeply)") from None
    deck = parse_deck(data, str(path))
    deck.path = path
    return deck


def parse_deck(data: dict, source: str = "deck") -> Deck:
    scenes_data = data.get("scene")
    if not isinstance(scenes_data, list) or not scenes_data:
        raise ValueError(f"{source}: a deck needs at least one [[scene]]")
    unknown_top = sorted(set(data) - {"title", "scene"})
    if unknown_top:
        raise ValueError(f"{source}: unknown field {unknown_top[0]!r} at the top level: allowed title, scene")
    if len(scenes_data) > MAX_SCENES:
        raise ValueError(f"{source}: {len(scenes_data)} scenes, more than the {MAX_SCENES} a deck may hold")
    title = data.get("title", "peft-explorer")
    if not isinstance(title, str) or len(title) > MAX_TEXT:
        raise ValueError(f"{source}: title must be text of at most {MAX_TEXT} characters")
    scenes = [_parse_scene(i + 1, s, source) for i, s in enumerate(scenes_data)]
    return Deck(title=title, scenes=scenes)


def _parse_scene(number: int, s: dict, source: str) -> Scene:
    title = s.get("title") if isinstance(s, dict) else None
    name = f"scene {number}" + (f" ({title[:60]!r})" if isinstance(title, str) and title else "")

    def fail(field_name: str, problem: str):
        raise ValueError(f"{source}: {name}: {field_name}: {problem}")

    if not isinstance(s, dict):
        fail("scene", "must be a table")
    unknown = sorted(set(s) - SCENE_FIELDS)
    if unknown:
        fail(unknown[0], f"unknown field: allowed {', '.join(sorted(SCENE_FIELDS))}")
    for required in ("title", "caption", "views"):
        if required not in s:
            fail(required, "missing (every scene needs title, caption and views)")
    for name_ in ("title", "caption"):
        if not isinstance(s[name_], str) or len(s[name_]) > MAX_TEXT:
            fail(name_, f"must be text of at most {MAX_TEXT} characters")
    views = s["views"]
    if not isinstance(views, list) or not views or not all(isinstance(v, str) for v in views):
        fail("views", f"must be a non-empty list of view names: allowed {', '.join(VIEW_IDS)}")
    for v in views:
        if v not in VIEW_IDS:
            fail("views", f"unknown view {v!r}: allowed {', '.join(VIEW_IDS)}")
    layout = s.get("layout", "grid")
    if layout not in LAYOUTS:
        fail("layout", f"unknown layout {layout!r}: allowed {', '.join(LAYOUTS)}")
    play = s.get("play", False)
    if not isinstance(play, bool):
        fail("play", "must be true or false")
    hold = s.get("hold")
    if hold is not None:
        if isinstance(hold, bool) or not isinstance(hold, (int, float)) or not 0 <= hold <= MAX_HOLD_S:
            fail("hold", f"must be a number of seconds from 0 to {MAX_HOLD_S:g}, got {shown(hold)}")
        if not play:
            fail("hold", "holds a playing scene: set play = true (a still scene never starts)")
        hold = float(hold)
    settings = _settings(s.get("settings", {}), "settings", fail)
    runs = []
    runs_data = s.get("runs", [])
    if not isinstance(runs_data, list):
        fail("runs", "must be a list of tables with label and settings")
    for j, r in enumerate(runs_data):
        if not isinstance(r, dict) or "label" not in r:
            fail(f"runs[{j}]", "needs a label")
        unknown_run = sorted(set(r) - {"label", "settings"})
        if unknown_run:
            fail(f"runs[{j}].{unknown_run[0]}", "unknown field: allowed label, settings")
        label = r["label"]
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL or not label.isprintable():
            fail(f"runs[{j}].label", f"must be text of 1 to {MAX_LABEL} printable characters, got {shown(label)}")
        run_settings = r.get("settings", {})
        if not isinstance(run_settings, dict):
            fail(f"runs[{j}].settings", "must be a table of settings")
        shared = sorted(set(run_settings) & set(SHARED))
        if shared:
            fail(
                f"runs[{j}].settings.{shared[0]}",
                "is shared by every run of a comparison: set it in the scene's settings",
            )
        merged = {**settings.to_dict(), **_method_defaults(settings, run_settings)}
        runs.append(Run(label, _settings(merged, f"runs[{j}].settings", fail)))
    if runs and "compare" not in views:
        fail("runs", 'runs are shown by the compare view: add "compare" to views')
    focus = s.get("focus")
    if focus is not None and not isinstance(focus, str):
        fail("focus", "must be a matrix name")
    log_y = _log_y(s.get("log_y", []), views, fail)
    return Scene(s["title"], s["caption"], list(views), layout, play, settings, runs, focus, hold, log_y)


def _log_y(value, views: list[str], fail) -> list[str]:
    allowed = ", ".join(LOG_Y_VIEWS)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail("log_y", f"must be a list of view names (of {allowed}), got {shown(value)}")
    for v in value:
        if v not in LOG_Y_VIEWS:
            fail("log_y", f"{v!r} has no loss axis to make logarithmic: allowed {allowed}")
        if v not in views:
            fail("log_y", f"{v!r} is not among the scene's views: add it to views")
    return list(dict.fromkeys(value))


def _settings(d, where, fail) -> TrainSettings:
    if not isinstance(d, dict):
        fail(where, "must be a table of settings")
    try:
        return TrainSettings.from_dict(_method_defaults(TrainSettings(), d))
    except (ValueError, TypeError) as exc:
        fail(where, str(exc))


def _method_defaults(base: TrainSettings, changes: dict) -> dict:
    """A scene or run of another method than `base` without an lr of its own trains at that method's
    default rate (settings.with_method_defaults); a malformed method is left to the settings' check."""
    try:
        return with_method_defaults(base, changes)
    except TypeError:  # e.g. method = [1]: unhashable, reported by TrainSettings.from_dict
        return dict(changes)
