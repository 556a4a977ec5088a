"""Text generated from a fixed prompt by the adapted model, beside the frozen base model's, as it learns.

Monospace, the prompt highlighted, the step it was generated at; redrawn only when `snapshot.samples`
changes (generation is occasional, snapshots are 30 Hz).
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui.views.base import View

PROMPT_BACKGROUND = QtGui.QColor(230, 159, 0, 90)     # Okabe-Ito orange, translucent: readable on light and dark


class _TextPanel(QtWidgets.QWidget):
    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.title = QtWidgets.QLabel(title, self)
        self.title.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.text = QtWidgets.QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setUndoRedoEnabled(False)
        lay.addWidget(self.title)
        lay.addWidget(self.text, 1)

    def show_text(self, prompt: str, full: str) -> None:
        """`full` may or may not start with the prompt; the prompt is shown highlighted either way."""
        continuation = full[len(prompt):] if prompt and full.startswith(prompt) else full
        if prompt and not full.startswith(prompt) and continuation and not continuation[:1].isspace() \
                and not prompt[-1:].isspace():
            continuation = " " + continuation
        doc = self.text.document()
        self.text.clear()
        cursor = QtGui.QTextCursor(doc)
        plain = QtGui.QTextCharFormat()
        if prompt:
            marked = QtGui.QTextCharFormat()
            marked.setBackground(PROMPT_BACKGROUND)
            marked.setFontWeight(QtGui.QFont.Weight.Bold)
            cursor.insertText(prompt, marked)
        cursor.insertText(continuation, plain)

    def plain_text(self) -> str:
        return self.text.toPlainText()


class SamplesView(View):
    view_id = "samples"
    title = "Samples"
    formula_tooltip = "greedy continuation of a fixed prompt: the adapted model (W₀ + ΔW, gated prompt) beside the frozen base model"

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        self.header = QtWidgets.QLabel(content)
        self.header.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        lay.addWidget(self.header)
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, content)
        split.setChildrenCollapsible(False)
        self.adapted = _TextPanel("<b>Adapted</b>", split)
        self.base = _TextPanel("<b>Base model</b> (frozen)", split)
        split.addWidget(self.adapted)
        split.addWidget(self.base)
        lay.addWidget(split, 1)
        self.set_content(content)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def texts(self) -> tuple[str, str]:
        """(adapted, base) as shown, prompt included."""
        return self.adapted.plain_text(), self.base.plain_text()

    def sample_step(self) -> int | None:
        return None if self._key is None else self._key[1]

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snapshot) -> None:
        samples = snapshot.samples
        if not samples:
            if (snapshot.settings or {}).get("scenario") == "matrix":
                self.show_message("No text in the matrix scenario: samples come from the language model.")
            else:
                self.show_message("Samples appear here once the adapted model has generated text.")
            self._key = None
            return
        prompt = str(samples.get("prompt", ""))
        adapted = str(samples.get("adapted", ""))
        base = str(samples.get("base", ""))
        step = samples.get("step", snapshot.step)
        key = (snapshot.segment, step, prompt, adapted, base)
        if key == self._key:
            return
        self._key = key
        self.hide_message()
        method = (snapshot.settings or {}).get("method", "")
        name = {"lora": "LoRA", "prefix": "prefix", "lora+prefix": "LoRA + prefix", "full": "full FT"}.get(method, method)
        self.adapted.title.setText(f"<b>Adapted</b> ({name}, step {int(step):,})" if name else
                                   f"<b>Adapted</b> (step {int(step):,})")
        self.adapted.show_text(prompt, adapted)
        self.base.show_text(prompt, base)
        same = adapted == base
        self.header.setText(f"Generated at step <b>{int(step):,}</b> from the highlighted prompt"
                            + (" · <i>identical to the base model so far</i>" if same else ""))
        self.draw_count += 1

    def _clear(self) -> None:
        self._key = None
        self.adapted.text.clear()
        self.base.text.clear()
        self.header.setText("")

    def _apply_style(self) -> None:
        s = self.style_
        mono = s.font(10, mono=True)
        for panel in (self.adapted, self.base):
            panel.text.setFont(mono)
            panel.title.setFont(s.font(9.5))
        self.header.setFont(s.font(9.5))
        self._key = None
