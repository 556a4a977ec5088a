"""Each method starts from its own learning rate (issue 16: full fine-tuning at LoRA's 1e-2 diverged in
the lm scenario and ended worse than the untouched base; bench/bench_default_lr.py measured the
defaults), unless the user set the rate by hand."""

from __future__ import annotations

import pytest

from explorer.schema.compare import parse_run_spec
from explorer.schema.settings import (
    DEFAULT_LR,
    METHODS,
    SCENARIOS,
    SETTINGS_SPEC,
    TrainSettings,
    default_lr,
    with_method_defaults,
)


def test_the_defaults_agree_with_the_settings_and_their_range():
    s = TrainSettings()
    assert s.lr == default_lr(s.scenario, s.method)  # the app's first run starts at its method's rate
    spec = SETTINGS_SPEC["lr"]
    for (scenario, method), lr in DEFAULT_LR.items():
        assert scenario in SCENARIOS and method in METHODS
        assert spec.low <= lr <= spec.high
    # full fine-tuning moves every weight: a far gentler rate than the adapters in both scenarios
    for scenario in SCENARIOS:
        assert default_lr(scenario, "full") <= default_lr(scenario, "lora") / 3


def test_a_new_method_brings_its_rate():
    s = TrainSettings()
    assert with_method_defaults(s, {"method": "full"}) == {"method": "full", "lr": default_lr("lm", "full")}
    full = s.with_changes(method="full", lr=default_lr("lm", "full"))
    assert with_method_defaults(full, {"method": "lora"}) == {"method": "lora", "lr": default_lr("lm", "lora")}
    # the scenario counts too: full fine-tuning of one matrix has a rate of its own
    matrix_full = with_method_defaults(full, {"scenario": "matrix"})
    assert matrix_full == {"scenario": "matrix", "lr": default_lr("matrix", "full")}


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "full", "lr": 0.05},  # the change sets the rate itself
        {"rank": 16},  # no new method
        {"method": "lora+prefix"},  # the same rate
    ],
)
def test_nothing_else_changes_the_rate(changes):
    assert with_method_defaults(TrainSettings(), changes) == changes


def test_a_rate_set_by_hand_is_kept():
    by_hand = TrainSettings(lr=5e-3)
    assert with_method_defaults(by_hand, {"method": "full"}) == {"method": "full"}


def test_compare_runs_use_their_methods_rate():
    base = TrainSettings()
    runs = {spec.label: spec.settings(base) for spec in map(parse_run_spec, ["lora:r=8", "full", "full:lr=1e-3"])}
    assert runs["lora-r8"].lr == default_lr("lm", "lora")
    assert runs["full"].lr == default_lr("lm", "full")
    assert runs["full-lr1e-3"].lr == 1e-3
    # a base rate set by hand is every run's
    assert parse_run_spec("full").settings(base.with_changes(lr=5e-3)).lr == 5e-3


def test_a_deck_scene_or_run_of_a_method_trains_at_its_rate(tmp_path):
    from explorer.schema.deck import load_deck

    deck = tmp_path / "d.toml"
    deck.write_text(
        '[[scene]]\ntitle = "a"\ncaption = "c"\nviews = ["loss", "compare"]\n'
        '[scene.settings]\nmethod = "full"\n'
        '[[scene.runs]]\nlabel = "lora"\nsettings = { method = "lora" }\n'
        '[[scene.runs]]\nlabel = "own"\nsettings = { method = "lora", lr = 0.05 }\n'
        '[[scene]]\ntitle = "b"\ncaption = "c"\nviews = ["loss"]\n'
        '[scene.settings]\nmethod = "full"\nlr = 0.02\n',
        encoding="utf-8",
    )
    first, second = load_deck(deck).scenes
    assert first.settings.lr == default_lr("lm", "full")
    assert [r.settings.lr for r in first.runs] == [default_lr("lm", "lora"), 0.05]
    assert second.settings.lr == 0.02
