"""The LoRA paper's analyses of a comparison, one tab each (subspace φ, amplification, intrinsic
rank), under one module picker and, for φ, a picker of the pair of LoRA runs."""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from explorer.gui.views.base import Style
from explorer.gui.views.compare.amplification import AmplificationTab
from explorer.gui.views.compare.intrinsic import IntrinsicTab
from explorer.gui.views.compare.runs import short_module
from explorer.gui.views.compare.similarity import SimilarityTab

TABS = ("similarity", "amplification", "intrinsic")


class AnalysisPanel(QtWidgets.QWidget):
    pairChanged = QtCore.Signal(str, str)
    moduleChanged = QtCore.Signal(str)

    def __init__(self, style: Style, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.style_ = style
        self.snapshot = None  # the CompareSnapshot whose analysis is drawn
        self._pair: tuple[str, str] = ("", "")
        self._module = ""
        self._drawn_key = None
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        pick = QtWidgets.QHBoxLayout()
        pick.addWidget(QtWidgets.QLabel("Module", self))
        self.module_box = QtWidgets.QComboBox(self)
        self.module_box.setToolTip("The adapted matrix the analyses look at")
        self.module_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.module_box.currentIndexChanged.connect(self._module_picked)
        pick.addWidget(self.module_box)
        pick.addSpacing(12)
        self.pair_label = QtWidgets.QLabel("φ of", self)
        pick.addWidget(self.pair_label)
        self.run_a_box = QtWidgets.QComboBox(self)
        self.run_b_box = QtWidgets.QComboBox(self)
        for box in (self.run_a_box, self.run_b_box):
            box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
            box.setToolTip("A LoRA run (rows of φ: the first; columns: the second)")
            box.currentIndexChanged.connect(self._pair_picked)
        pick.addWidget(self.run_a_box)
        self.vs_label = QtWidgets.QLabel("vs", self)
        pick.addWidget(self.vs_label)
        pick.addWidget(self.run_b_box)
        pick.addStretch(1)
        lay.addLayout(pick)
        self.tabs = QtWidgets.QTabWidget(self)
        self.tabs.setDocumentMode(True)
        lay.addWidget(self.tabs, 1)
        self.similarity = SimilarityTab(style)
        self.amplification = AmplificationTab(style)
        self.intrinsic = IntrinsicTab(style)
        self.tabs.addTab(self.similarity, "Subspace φ")
        self.tabs.addTab(self.amplification, "Amplification")
        self.tabs.addTab(self.intrinsic, "Intrinsic rank")
        self.tabs.currentChanged.connect(lambda _i: self.draw(force=True))

    # ---- what is picked
    def pair(self) -> tuple[str, str]:
        return self._pair

    def set_pair(self, a: str, b: str) -> bool:
        labels = [self.run_a_box.itemText(i) for i in range(self.run_a_box.count())]
        if a not in labels or b not in labels:
            return False
        with QtCore.QSignalBlocker(self.run_a_box), QtCore.QSignalBlocker(self.run_b_box):
            self.run_a_box.setCurrentText(a)
            self.run_b_box.setCurrentText(b)
        self._pair_picked()
        return True

    def module(self) -> str:
        return self._module

    def modules(self) -> list[str]:
        return [self.module_box.itemData(i) for i in range(self.module_box.count())]

    def set_module(self, name: str) -> bool:
        i = self.module_box.findData(name)
        if i < 0:
            return False
        self.module_box.setCurrentIndex(i)
        return True

    def tab(self) -> str:
        return TABS[self.tabs.currentIndex()]

    def set_tab(self, name: str) -> None:
        if name not in TABS:
            raise ValueError(f"tab={name!r} is unknown: allowed {', '.join(TABS)}")
        self.tabs.setCurrentIndex(TABS.index(name))

    def phi(self) -> np.ndarray | None:
        return self.similarity.phi

    # ---- drawing
    def show_snapshot(self, snap) -> None:
        """Fill the pickers from `snap`'s runs and analysis, and draw the tab shown."""
        self.snapshot = snap
        self._fill_pickers(snap)
        self.draw()

    def _fill_pickers(self, snap) -> None:
        a = snap.analysis
        lora = [r.label for r in snap.runs if r.method in ("lora", "lora+prefix")]
        modules: list[str] = []
        if a is not None:
            modules = list(a.modules)
            for per in list(a.intrinsic.values()) + [rows for rows in a.similarity.values()]:
                for m in per:
                    if m not in modules:
                        modules.append(m)
            for rows in a.amplification.values():
                for row in rows:
                    if row["module"] not in modules:
                        modules.append(row["module"])
        if modules != self.modules():
            with QtCore.QSignalBlocker(self.module_box):
                self.module_box.clear()
                for m in modules:
                    self.module_box.addItem(short_module(m), m)
                keep = self._module if self._module in modules else (modules[0] if modules else "")
                if keep:
                    self.module_box.setCurrentIndex(self.module_box.findData(keep))
            if keep != self._module:
                self._module = keep
                self.moduleChanged.emit(keep)
        current = [self.run_a_box.itemText(i) for i in range(self.run_a_box.count())]
        if current != lora:
            a0, b0 = self._pair
            with QtCore.QSignalBlocker(self.run_a_box), QtCore.QSignalBlocker(self.run_b_box):
                self.run_a_box.clear()
                self.run_b_box.clear()
                self.run_a_box.addItems(lora)
                self.run_b_box.addItems(lora)
                if a0 in lora and b0 in lora and (a0 != b0 or len(lora) < 2):  # a pair, not one run twice
                    na, nb = a0, b0
                elif len(lora) >= 2:
                    na, nb = lora[0], lora[1]
                else:
                    na = nb = lora[0] if lora else ""
                if na:
                    self.run_a_box.setCurrentText(na)
                    self.run_b_box.setCurrentText(nb)
            new_pair = (na, nb) if lora else ("", "")
            if new_pair != self._pair:
                self._pair = new_pair
                self.pairChanged.emit(*new_pair)

    def _module_picked(self, _index: int = 0) -> None:
        name = self.module_box.currentData() or ""
        if name != self._module:
            self._module = name
            self.moduleChanged.emit(name)
            self.draw(force=True)

    def _pair_picked(self, _index: int = 0) -> None:
        pair = (self.run_a_box.currentText(), self.run_b_box.currentText())
        if pair != self._pair:
            self._pair = pair
            self.pairChanged.emit(*pair)
            self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        """The tab shown, unless nothing it depends on changed since it was drawn."""
        snap = self.snapshot
        a = None if snap is None else snap.analysis
        key = (id(a), self._module, self._pair, self.tabs.currentIndex(), self.style_.high_contrast, self.style_.dark)
        if key == self._drawn_key and not force:
            return
        self._drawn_key = key
        tab = self.tab()
        for w in (self.pair_label, self.run_a_box, self.vs_label, self.run_b_box):
            w.setVisible(tab == "similarity")
        if tab == "similarity":
            self.similarity.draw(a, self._pair, self._module, self.run_a_box.count())
        elif tab == "amplification":
            self.amplification.draw(snap, a, self._module)
        else:
            self.intrinsic.draw(snap, a, self._module)

    def clear(self) -> None:
        self.snapshot = None
        self._drawn_key = None
        self.similarity.clear()
        self.amplification.clear()

    def apply_style(self) -> None:
        for tab in (self.similarity, self.amplification, self.intrinsic):
            tab.apply_style()
        self._drawn_key = None
