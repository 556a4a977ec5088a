"""The budget view switching between a run priced on the LLaMA presets and one without presets (the
matrix scenario): the preset table empties, at any width (issue 18: "list index out of range")."""

from __future__ import annotations

import snapshot_factory as sf
from PySide6 import QtWidgets

from explorer.gui.views import VIEW_CLASSES


def budget_view(qtbot, w: int, h: int):
    view = VIEW_CLASSES["budget"]()
    qtbot.addWidget(view)
    view.resize(w, h)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_budget_empties_its_table_for_the_matrix_scenario_at_every_width(qtbot):
    for width in (40, 120, 380, 900):  # a dock squeezed to nothing, narrow, the default, wide
        view = budget_view(qtbot, width, 300)
        view.update_snapshot(sf.lora_snapshot(20, rank=4))
        QtWidgets.QApplication.processEvents()
        assert view.preset_rows()
        view.resize(8, 300)  # narrower than the margins: the width left for the table is negative
        QtWidgets.QApplication.processEvents()
        view.update_snapshot(sf.matrix_snapshot(segment=1))
        QtWidgets.QApplication.processEvents()
        assert view.preset_rows() == []
        assert view.preset_cells() == []
        view.resize(width, 300)
        QtWidgets.QApplication.processEvents()
        view.update_snapshot(sf.lora_snapshot(20, rank=8, segment=2))
        QtWidgets.QApplication.processEvents()
        assert len(view.preset_rows()) >= 3
