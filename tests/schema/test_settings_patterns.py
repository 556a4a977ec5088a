"""rank_pattern / alpha_pattern as settings: validation naming the setting, text forms, round trips."""

import json

import pytest

from explorer.schema.compare import parse_run_spec
from explorer.schema.settings import SETTINGS_SPEC, TrainSettings, format_pattern, parse_pattern


def test_patterns_round_trip_through_dicts_json_and_text():
    s = TrainSettings(
        rank_pattern={"down_proj": 4, "model.layers.0.self_attn.q_proj": 16}, alpha_pattern={"v_proj": 32.0}
    )
    d = json.loads(json.dumps(s.to_dict()))
    assert TrainSettings.from_dict(d) == s
    assert TrainSettings.from_dict({k: v for k, v in d.items() if "pattern" not in k}).rank_pattern == {}
    assert parse_pattern("rank_pattern", format_pattern(s.rank_pattern)) == s.rank_pattern
    assert parse_pattern("alpha_pattern", format_pattern(s.alpha_pattern, "+")) == s.alpha_pattern
    assert parse_pattern("rank_pattern", "q_proj:4 v_proj=2") == {"q_proj": 4, "v_proj": 2}
    assert parse_pattern("rank_pattern", '{"a|b": 3}') == {"a|b": 3}
    assert parse_pattern("rank_pattern", "none") == {} == parse_pattern("alpha_pattern", "  ")
    assert SETTINGS_SPEC["rank_pattern"].kind == "cold" and SETTINGS_SPEC["alpha_pattern"].kind == "cold"


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(rank_pattern={"q_proj": 0}), r"rank_pattern\['q_proj'\]=0 is out of range: allowed 1 to 4096"),
        (dict(rank_pattern={"q_proj": 2.5}), r"rank_pattern\['q_proj'\]=2.5 is not a whole number"),
        (dict(rank_pattern={"q_proj": True}), r"rank_pattern\['q_proj'\]=True is not a whole number"),
        (dict(alpha_pattern={"q_proj": float("nan")}), r"alpha_pattern\['q_proj'\]=nan is not a finite number"),
        (dict(alpha_pattern={"q_proj": 0.0}), r"alpha_pattern\['q_proj'\]=0.0 is out of range"),
        (dict(rank_pattern={"(a+)+": 2}), "rank_pattern: key '\\(a\\+\\)\\+' has .*exponential time"),
        (dict(rank_pattern={"[q": 2}), "rank_pattern: key '\\[q' is refused: it is not a valid pattern"),
        (dict(rank_pattern={"": 2}), "rank_pattern: key '' is not a non-empty string"),
        (dict(rank_pattern=["q_proj"]), "rank_pattern=\\['q_proj'\\] is not an object"),
    ],
)
def test_bad_patterns_name_the_setting(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings().with_changes(**changes)


@pytest.mark.parametrize("text", ["q_proj", "q_proj=x", "=3", "{nope"])
def test_bad_pattern_text(text):
    with pytest.raises(ValueError, match="rank_pattern"):
        parse_pattern("rank_pattern", text)


def test_run_specs_take_patterns_joined_with_plus():
    spec = parse_run_spec(
        "lora:r=8,rank_pattern=down_proj=4+model.layers.0.self_attn.q_proj=16,alpha_pattern=v_proj=32"
    )
    assert spec.overrides["rank_pattern"] == {"down_proj": 4, "model.layers.0.self_attn.q_proj": 16}
    assert spec.overrides["alpha_pattern"] == {"v_proj": 32.0}
    with pytest.raises(ValueError, match="does not apply to method 'prefix'"):
        parse_run_spec("prefix:rank_pattern=down_proj=3")
    with pytest.raises(ValueError, match="rank_pattern\\['q_proj'\\]=0 is out of range"):
        parse_run_spec("lora:rank_pattern=q_proj=0")
