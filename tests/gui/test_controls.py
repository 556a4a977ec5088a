"""The settings panel: generated from SETTINGS_SPEC, enforcing ranges, labelled hot or cold, showing
what applies to the scenario and method, and showing (never raising) what the engine refuses."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from explorer.gui.controls import (
    ELSEWHERE,
    INT_MAX,
    ControlsPanel,
    LogSpinBox,
    format_layers,
    is_relevant,
    parse_layers,
    setting_named_in,
)
from explorer.schema.settings import COLD, HOT, SETTINGS_SPEC, TrainSettings, changed_kinds


@pytest.fixture
def panel(qtbot):
    calls = []

    def configure(**changes):
        calls.append(changes)
        return {k: SETTINGS_SPEC[k].kind for k in changes}

    p = ControlsPanel(TrainSettings(), configure=configure)
    p.calls = calls
    qtbot.addWidget(p)
    p.resize(360, 900)
    p.show()
    qtbot.waitExposed(p)
    return p


def test_every_setting_has_a_control_and_its_hot_or_cold_tag(panel):
    assert set(panel.rows) == set(SETTINGS_SPEC) - ELSEWHERE
    for name, row in panel.rows.items():
        kind = SETTINGS_SPEC[name].kind
        assert kind in (HOT, COLD)
        assert row.tag.text() == kind
        assert row.tag.property("role") == kind
        tip = row.editor.toolTip()
        assert SETTINGS_SPEC[name].help.split(":")[0] in tip
        assert ("applies at once" in tip) == (kind == HOT)
        assert ("restarts the adapters" in tip) == (kind == COLD)
    assert panel.rows["lr"].tag.text() == "hot" and panel.rows["rank"].tag.text() == "cold"


def test_widgets_enforce_the_ranges_and_choices_of_the_spec(panel):
    for name, row in panel.rows.items():
        spec, ed = SETTINGS_SPEC[name], row.editor
        if isinstance(ed, QComboBox):
            assert [ed.itemData(i) for i in range(ed.count())] == list(spec.choices)
        elif isinstance(ed, (QSpinBox, QDoubleSpinBox)):
            assert ed.minimum() == pytest.approx(spec.low)
            assert ed.maximum() == pytest.approx(min(spec.high, INT_MAX)), name
        elif isinstance(ed, QCheckBox):
            assert isinstance(getattr(TrainSettings(), name), bool)
        elif name == "targets":
            assert set(row._checks) == set(spec.choices)
        else:
            assert isinstance(ed, QLineEdit) and name in ("layers", "rank_pattern", "alpha_pattern")


def test_out_of_range_values_are_refused(qtbot, panel):
    batch = panel.rows["batch_size"].editor
    batch.setValue(10**6)
    assert batch.value() == SETTINGS_SPEC["batch_size"].high
    assert panel.settings.batch_size == SETTINGS_SPEC["batch_size"].high
    batch.setValue(0)
    assert panel.settings.batch_size == SETTINGS_SPEC["batch_size"].low
    # typed text past the maximum is not accepted by the box
    seq = panel.rows["seq_len"].editor
    seq.selectAll()
    qtbot.keyClicks(seq, "9999")
    qtbot.keyClick(seq, Qt.Key_Return)
    assert panel.settings.seq_len <= SETTINGS_SPEC["seq_len"].high
    lr = panel.rows["lr"].editor
    lr.lineEdit().selectAll()
    qtbot.keyClicks(lr.lineEdit(), "50")
    qtbot.keyClick(lr, Qt.Key_Return)
    assert panel.settings.lr <= SETTINGS_SPEC["lr"].high
    # an empty target list is refused with a message next to the control, and the settings stay
    before = panel.settings
    for c in before.targets:
        panel.rows["targets"]._checks[c].click()
    assert panel.settings.targets  # never empty
    assert panel.rows["targets"].error.isVisibleTo(panel)
    assert "targets is empty" in panel.rows["targets"].error.text()


def test_a_change_goes_to_configure_and_reports_its_kind(qtbot, panel):
    seen = []
    panel.applied.connect(lambda changes, kinds: seen.append((changes, kinds)))
    panel.rows["rank"].editor.setValue(4)
    panel.rows["lr"].editor.setValue(0.02)
    panel.rows["lr"].editor.editingFinished.emit()
    assert panel.calls == [{"rank": 4}, {"lr": 0.02}]
    assert seen == [({"rank": 4}, {"rank": "cold"}), ({"lr": 0.02}, {"lr": "hot"})]
    assert panel.settings.rank == 4 and panel.settings.lr == 0.02


def test_engine_errors_show_next_to_the_named_control_and_nothing_changes(qtbot):
    def configure(**changes):
        raise ValueError("rank=48 is out of range: allowed 1 to 32 for this model")

    p = ControlsPanel(TrainSettings(), configure=configure)
    qtbot.addWidget(p)
    p.show()
    rejected = []
    p.rejected.connect(lambda name, msg: rejected.append((name, msg)))
    p.rows["rank"].editor.setValue(48)
    assert p.settings == TrainSettings()
    assert p.rows["rank"].editor.value() == TrainSettings().rank
    assert p.rows["rank"].error.isVisibleTo(p)
    assert "allowed 1 to 32" in p.rows["rank"].error.text()
    assert rejected == [("rank", "rank=48 is out of range: allowed 1 to 32 for this model")]


def test_only_relevant_settings_show(panel):
    def shown(name):
        return panel.rows[name].isVisibleTo(panel)

    assert panel.settings.scenario == "lm" and panel.settings.method == "lora"
    assert shown("rank") and shown("targets") and shown("seq_len")
    assert not shown("prefix_len") and not shown("size_in")
    assert not panel.groups["Prefix (zero-init, gated)"].isVisibleTo(panel)
    panel.request({"method": "prefix"})
    assert shown("prefix_len") and shown("gate_fn") and not shown("rank")
    panel.request({"method": "full"})
    assert not shown("rank") and not shown("prefix_len") and shown("lr")
    assert not panel.groups["LoRA"].isVisibleTo(panel)
    for name in SETTINGS_SPEC:
        if name in panel.rows:
            assert shown(name) == is_relevant(name, panel.settings), name


def test_matrix_scenario_offers_lora_or_full_and_caps_ranks_by_the_matrix(panel):
    panel.request({"method": "prefix"})
    combo = panel.rows["scenario"].editor
    combo.setCurrentIndex(combo.findData("matrix"))
    combo.activated.emit(combo.currentIndex())
    assert panel.settings.scenario == "matrix"
    assert panel.settings.method == "lora"  # prefix is not offered in the matrix scenario
    method = panel.rows["method"].editor
    model = method.model()
    assert not model.item(method.findData("prefix")).isEnabled()
    assert model.item(method.findData("full")).isEnabled()
    assert panel.rows["size_in"].isVisibleTo(panel) and not panel.rows["seq_len"].isVisibleTo(panel)
    cap = min(panel.settings.size_in, panel.settings.size_out)
    assert panel.rows["rank"].editor.maximum() == cap
    panel.request({"rank": 16, "target_rank": 16})
    panel.rows["size_out"].editor.setValue(8)  # a smaller matrix brings the ranks down with it
    assert panel.settings.size_out == 8 and panel.settings.rank == 8 and panel.settings.target_rank == 8
    assert panel.rows["rank"].editor.maximum() == 8


def test_model_limit_caps_rank(panel):
    panel.set_model_limit("rank", 16)
    assert panel.rows["rank"].editor.maximum() == 16
    panel.rows["rank"].editor.setValue(100)
    assert panel.settings.rank == 16
    assert "1 to 16" in panel.rows["rank"].editor.toolTip()
    panel.set_model_limit("rank", None)
    assert panel.rows["rank"].editor.maximum() == SETTINGS_SPEC["rank"].high


def test_layers_and_targets_editors(qtbot, panel):
    ed = panel.rows["layers"].editor
    ed.setText("0, 2-4")
    ed.editingFinished.emit()
    assert panel.settings.layers == (0, 2, 3, 4)
    assert ed.text() == "0,2-4"
    ed.setText("two")
    ed.editingFinished.emit()
    assert panel.settings.layers == (0, 2, 3, 4)
    assert panel.rows["layers"].error.isVisibleTo(panel)
    ed.setText("")
    ed.editingFinished.emit()
    assert panel.settings.layers is None
    panel.rows["targets"]._checks["o_proj"].click()
    assert panel.settings.targets == ("q_proj", "v_proj", "o_proj")
    assert parse_layers("all") is None and parse_layers("3,1,1") == (1, 3)
    assert format_layers((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    with pytest.raises(ValueError, match="layers"):
        parse_layers("1-x")


def test_log_spin_box_steps_along_its_ladder(qtbot):
    box = LogSpinBox((1.0, 2.0, 5.0))
    qtbot.addWidget(box)
    box.setRange(1e-7, 10.0)
    box.setValue(1e-3)
    box.stepBy(1)
    assert box.value() == pytest.approx(2e-3)
    box.stepBy(2)
    assert box.value() == pytest.approx(1e-2)
    box.stepBy(-3)
    assert box.value() == pytest.approx(1e-3)
    assert box.textFromValue(3e-4) == "0.0003"
    box.setValue(100.0)
    assert box.value() == 10.0


def test_set_settings_shows_new_values_without_calling_configure(panel):
    new = panel.settings.with_changes(rank=12, lr=0.02, method="lora+prefix")
    panel.set_settings(new)
    assert panel.calls == []
    assert panel.rows["rank"].editor.value() == 12
    assert panel.rows["prefix_len"].isVisibleTo(panel)
    assert changed_kinds(new, panel.settings) == {}


def test_setting_named_in_messages():
    assert setting_named_in("rank=300 is out of range: allowed 1 to 64") == "rank"
    assert setting_named_in("targets is empty: allowed one or more") == "targets"
    assert setting_named_in("could not apply prefix_len=9: too long") == "prefix_len"
    assert setting_named_in("something else") is None


def test_pattern_editors_take_pattern_value_pairs(panel):
    row = panel.rows["rank_pattern"]
    assert row.tag.text() == "cold" and row.isVisibleTo(panel)
    row.editor.setText("down_proj=4, model.layers.0.self_attn.q_proj: 16")
    row.editor.editingFinished.emit()
    assert panel.settings.rank_pattern == {"down_proj": 4, "model.layers.0.self_attn.q_proj": 16}
    assert panel.calls[-1] == {"rank_pattern": {"down_proj": 4, "model.layers.0.self_attn.q_proj": 16}}
    assert row.editor.text() == "down_proj=4, model.layers.0.self_attn.q_proj=16"
    row.editor.setText("down_proj=0")  # out of range: refused, the error shown, the value in force kept
    row.editor.editingFinished.emit()
    assert panel.settings.rank_pattern == {"down_proj": 4, "model.layers.0.self_attn.q_proj": 16}
    assert "rank_pattern['down_proj']=0 is out of range" in row.error.text() and row.error.isVisibleTo(panel)
    alpha = panel.rows["alpha_pattern"]
    alpha.editor.setText("v_proj=32")
    alpha.editor.editingFinished.emit()
    assert panel.settings.alpha_pattern == {"v_proj": 32.0}
    panel.request({"scenario": "matrix"})  # a setting of the language-model scenario only
    assert not row.isVisibleTo(panel)
