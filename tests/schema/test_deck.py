"""Scene decks: the default deck parses, and every mistake names the scene and the field."""

import pytest

from explorer.schema.deck import load_deck, parse_deck


def test_default_deck_tells_the_seed_story():
    deck = load_deck()
    assert len(deck.scenes) == 5
    first, ranks, seed_exp, gates, paper = deck.scenes
    assert first.settings.scenario == "matrix" and first.settings.rank == 4 and first.play
    assert [r.settings.rank for r in ranks.runs] == [1, 4, 16] and ranks.settings.target_rank == 4
    assert ranks.log_y == ["compare"]  # r = 4 and r = 16 end near 1e-5: apart on a log axis only
    assert first.log_y == [] and seed_exp.log_y == ["compare"]
    assert seed_exp.settings.preset == "seed" and [r.settings.method for r in seed_exp.runs] == ["lora", "full"]
    assert gates.settings.method == "prefix" and "gates" in gates.views and "attention" in gates.views
    assert "tokens" in gates.views  # "nothing changes at step 0": every token's Δ log p is exactly 0
    assert [r.settings.method for r in paper.runs] == ["lora", "lora", "prefix"]
    assert paper.views == ["compare"]  # its table prices every run on LLaMA-7B


def _deck(**scene):
    base = {"title": "t", "caption": "c", "views": ["loss"]}
    base.update(scene)
    return {"scene": [{"title": "ok", "caption": "c", "views": ["loss"]}, base]}


@pytest.mark.parametrize(
    "scene, message",
    [
        ({"views": ["loss", "heatmap"]}, "scene 2 ('t'): views: unknown view 'heatmap'"),
        ({"settings": {"rank": 0}}, "scene 2 ('t'): settings: rank=0 is out of range"),
        ({"settings": {"lr": -1.0}}, "scene 2 ('t'): settings: lr=-1.0 is out of range"),
        ({"settings": {"colour": 1}}, "scene 2 ('t'): settings: unknown setting 'colour'"),
        ({"layout": "spiral"}, "scene 2 ('t'): layout: unknown layout 'spiral'"),
        ({"play": "yes"}, "scene 2 ('t'): play: must be true or false"),
        ({"wobble": 1}, "scene 2 ('t'): wobble: unknown field"),
        ({"play": True, "hold": -1}, "scene 2 ('t'): hold: must be a number of seconds from 0 to 600"),
        ({"play": True, "hold": "3"}, "scene 2 ('t'): hold: must be a number of seconds"),
        ({"play": True, "hold": float("nan")}, "scene 2 ('t'): hold: must be a number of seconds"),
        ({"hold": 2}, "scene 2 ('t'): hold: holds a playing scene"),
        ({"log_y": "loss"}, "scene 2 ('t'): log_y: must be a list of view names (of loss, compare), got \"loss\""),
        ({"log_y": [1]}, "scene 2 ('t'): log_y: must be a list of view names"),
        ({"views": ["delta"], "log_y": ["delta"]}, "scene 2 ('t'): log_y: 'delta' has no loss axis"),
        ({"log_y": ["compare"]}, "scene 2 ('t'): log_y: 'compare' is not among the scene's views"),
        (
            {"runs": [{"label": "a", "settings": {"rank": 2}}]},
            "scene 2 ('t'): runs: runs are shown by the compare view",
        ),
        (
            {"views": ["compare"], "runs": [{"label": "a", "settings": {"rank": -2}}]},
            "scene 2 ('t'): runs[0].settings: rank=-2 is out of range",
        ),
        (
            {"views": ["compare"], "runs": [{"label": "a", "settings": {"size_in": 64}}]},
            "scene 2 ('t'): runs[0].settings.size_in: is shared by every run",
        ),
    ],
)
def test_errors_name_the_scene_and_the_field(scene, message):
    with pytest.raises(ValueError) as info:
        parse_deck(_deck(**scene), "my.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("my.toml: ")


def test_missing_field_is_named():
    with pytest.raises(ValueError, match=r"scene 1 \('x'\): caption: missing"):
        parse_deck({"scene": [{"title": "x", "views": ["loss"]}]})


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[scene]\ntitle = ")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        load_deck(bad)
    with pytest.raises(FileNotFoundError, match="nope.toml: no such deck file"):
        load_deck(tmp_path / "nope.toml")
    with pytest.raises(ValueError, match="at least one"):
        parse_deck({"title": "empty"})


def test_a_scene_holds_until_p_unless_it_says_how_long():
    deck = parse_deck(_deck(play=True, hold=2.5))
    assert deck.scenes[0].hold is None and deck.scenes[1].hold == 2.5
