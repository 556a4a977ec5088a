"""One matrix for the ΔW and spectrum views: their pickers share a selection, so the heatmap and the
spectrum beside it are of the same matrix; a "linked" box beside either picker unlinks them (and
links them again, the others then following the picker whose box was ticked)."""

from __future__ import annotations

from PySide6 import QtCore

LINKED_VIEWS = ("delta", "spectrum")


class MatrixSelection(QtCore.QObject):
    """The matrix the linked pickers show (`name`), and whether they are linked."""

    changed = QtCore.Signal(str)  # a linked picker chose this matrix
    linkedChanged = QtCore.Signal(bool)

    def __init__(self, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.name = ""
        self.linked = True

    def select(self, name: str) -> None:
        """A picker chose `name`: the other linked pickers follow."""
        if self.linked and name and name != self.name:
            self.name = name
            self.changed.emit(name)

    def set_linked(self, on: bool, leader: str = "") -> None:
        """Link (the others follow `leader`, the picker's matrix whose box was ticked) or unlink."""
        on = bool(on)
        if on == self.linked:
            return
        self.linked = on
        self.linkedChanged.emit(on)
        if on and leader:
            self.name = ""
            self.select(leader)


def link_matrix_views(views: dict, parent: QtCore.QObject | None = None) -> MatrixSelection | None:
    """Link the pickers of the views in LINKED_VIEWS that `views` has (two or more); the selection,
    or None when there is nothing to link."""
    pickers = [getattr(views.get(v), "picker", None) for v in LINKED_VIEWS]
    pickers = [p for p in pickers if p is not None and hasattr(p, "link")]
    if len(pickers) < 2:
        return None
    selection = MatrixSelection(parent)
    for picker in pickers:
        picker.link(selection)
    return selection
