"""Text generated from a fixed prompt by the adapted model, beside the frozen base model's, as it learns.

Code as code: monospace at a reading size, whitespace kept, long lines wrapped at the column's edge
(nothing hides off to the side), diff lines coloured the way a code-review tool colours them (+ green,
- red, @@ cyan, `# review:` comments highlighted), the prompt marked, the two columns scrolling
together; a dock too narrow for two columns of code stacks them (adapted above base). "step N" says
when the samples were generated and their age at the step shown ("40 steps old"); the engine makes
new ones every few seconds of training, after every reset and cold change, and when "Sample now"
is pressed (`sample_requested`, which the window hands to the worker). A "no change yet" hint shows
only while the adapted model still writes exactly what the base model writes.

Redrawn only when `snapshot.samples` changes (generation is occasional, snapshots are 30 Hz); the
age label follows every snapshot.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui.views.base import View
from explorer.schema.format import format_age

SIDE_BY_SIDE_CHARS = 40  # each column shows this many characters of code, or the columns stack
TEXT_POINTS = 11.5  # the samples are read, not glanced at: larger than the other views' text
PROMPT_BACKGROUND = QtGui.QColor(230, 159, 0, 90)  # Okabe-Ito orange, translucent: readable on light and dark

# Line kinds of a unified diff (and the review comments of the lm corpus) -> (foreground, line tint) per theme.
# Dark colours follow GitHub's dark diff, light ones its light diff; the tints are translucent.
DIFF_COLOURS = {
    True: {  # dark
        "added": ("#7ee787", QtGui.QColor(46, 160, 67, 46)),
        "removed": ("#ff7b72", QtGui.QColor(248, 81, 73, 46)),
        "hunk": ("#56d4dd", QtGui.QColor(56, 139, 253, 26)),
        "review": ("#f2cc60", QtGui.QColor(187, 128, 9, 46)),
        "file": (None, None),
    },
    False: {  # light
        "added": ("#116329", QtGui.QColor(46, 160, 67, 40)),
        "removed": ("#a40e26", QtGui.QColor(248, 81, 73, 40)),
        "hunk": ("#0b7285", QtGui.QColor(84, 174, 255, 40)),
        "review": ("#7d4e00", QtGui.QColor(212, 167, 44, 60)),
        "file": (None, None),
    },
}


def line_kind(line: str) -> str:
    """'file' (--- a/x, +++ b/x), 'added' (+), 'removed' (-), 'hunk' (@@), 'review' (# review:) or ''."""
    if line.startswith(("+++ ", "--- ")) or line in ("+++", "---"):
        return "file"
    if line.startswith("+"):
        return "added"
    if line.startswith("-"):
        return "removed"
    if line.startswith("@@"):
        return "hunk"
    if line.lstrip().startswith("# review:"):
        return "review"
    return ""


class _TextPanel(QtWidgets.QWidget):
    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self._dark = True
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.title = QtWidgets.QLabel(title, self)
        self.title.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.text = QtWidgets.QPlainTextEdit(self)
        self.text.setReadOnly(True)
        # wrapped at the column's edge: a sample read sideways through a scroll bar is not read
        self.text.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setWordWrapMode(QtGui.QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.text.setUndoRedoEnabled(False)
        self.text.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.text.setTextInteractionFlags(
            QtCore.Qt.TextInteractionFlag.TextSelectableByMouse | QtCore.Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        lay.addWidget(self.title)
        lay.addWidget(self.text, 1)
        self._prompt = ""
        self._full = ""

    def set_dark(self, dark: bool) -> None:
        self._dark = bool(dark)

    def set_font(self, font: QtGui.QFont) -> None:
        self.text.setFont(font)
        self.text.document().setDefaultFont(font)
        self.text.setTabStopDistance(4 * QtGui.QFontMetricsF(font).horizontalAdvance(" "))

    def show_text(self, prompt: str, full: str) -> None:
        """`full` may or may not start with the prompt; the prompt is shown highlighted either way."""
        continuation = full[len(prompt) :] if prompt and full.startswith(prompt) else full
        if (
            prompt
            and not full.startswith(prompt)
            and continuation
            and not continuation[:1].isspace()
            and not prompt[-1:].isspace()
        ):
            continuation = " " + continuation
        self._prompt, self._full = prompt, prompt + continuation
        self._render()

    def _render(self) -> None:
        text = self._full.replace("\r\n", "\n")
        prompt_end = len(self._prompt)
        colours = DIFF_COLOURS[self._dark]
        doc = self.text.document()
        self.text.clear()
        cursor = QtGui.QTextCursor(doc)
        cursor.beginEditBlock()
        pos = 0
        for i, line in enumerate(text.split("\n")):
            kind = line_kind(line)
            fg, tint = colours.get(kind, (None, None))
            block = QtGui.QTextBlockFormat()
            if tint is not None:
                block.setBackground(tint)  # the whole line, as a review tool tints it
            plain = QtGui.QTextCharFormat()
            if fg is not None:
                plain.setForeground(QtGui.QColor(fg))
            if kind in ("file", "review"):
                plain.setFontWeight(QtGui.QFont.Weight.Bold)
            if i == 0:
                cursor.setBlockFormat(block)
            else:
                cursor.insertBlock(block)
                pos += 1
            # the prompt's part of this line, marked
            cut = min(len(line), max(0, prompt_end - pos))
            if cut:
                marked = QtGui.QTextCharFormat(plain)
                marked.setBackground(PROMPT_BACKGROUND)
                marked.setFontWeight(QtGui.QFont.Weight.Bold)
                cursor.insertText(line[:cut], marked)
            if cut < len(line):
                cursor.insertText(line[cut:], plain)
            pos += len(line)
        cursor.endEditBlock()
        self.text.moveCursor(QtGui.QTextCursor.MoveOperation.Start)

    def plain_text(self) -> str:
        return self.text.toPlainText()


class SamplesView(View):
    view_id = "samples"
    title = "Samples"
    formula_tooltip = (
        "greedy continuation of a fixed prompt (no 16-byte run repeated): the adapted model (W₀ + ΔW, "
        "gated prompt) beside the frozen base model, by the same rule, so what differs is the adapter's doing"
    )
    sample_requested = QtCore.Signal()  # "Sample now": the window asks the worker for samples at this step

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self._key = None
        content = QtWidgets.QWidget(self)
        lay = QtWidgets.QVBoxLayout(content)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        top = QtWidgets.QHBoxLayout()
        top.setSpacing(8)
        self.step_label = QtWidgets.QLabel(content)
        self.step_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.step_label.setToolTip("The training step the samples were generated at")
        top.addWidget(self.step_label)
        self.age_label = QtWidgets.QLabel(content)
        self.age_label.setToolTip("How many training steps ago the samples were generated")
        top.addWidget(self.age_label)
        self.header = QtWidgets.QLabel(content)
        self.header.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        # on a line of its own: beside the badge and the button it squeezed them to "no cha" in a
        # 330 px column (1280 x 720)
        self.same_hint = QtWidgets.QLabel("no change yet", content)
        self.same_hint.setToolTip("The adapted model still writes exactly what the frozen base model writes")
        self.same_hint.hide()
        top.addWidget(self.same_hint)
        self.sample_button = QtWidgets.QPushButton("Sample now", content)
        self.sample_button.setObjectName("sample_now")
        self.sample_button.setToolTip("Generate both texts again at the current training step")
        self.sample_button.setEnabled(False)
        self.sample_button.clicked.connect(self.sample_requested)
        top.addStretch(1)
        top.addWidget(self.sample_button)
        lay.addLayout(top)
        lay.addWidget(self.header)
        self.split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal, content)
        self.split.setChildrenCollapsible(False)
        self.adapted = _TextPanel("<b>Adapted</b>", self.split)
        self.base = _TextPanel("<b>Base model</b> · frozen", self.split)
        self.split.addWidget(self.adapted)
        self.split.addWidget(self.base)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 1)
        lay.addWidget(self.split, 1)
        # the columns scroll together: the start of the adapted text stays beside the start of the base text
        for a, b in ((self.adapted.text, self.base.text), (self.base.text, self.adapted.text)):
            a.verticalScrollBar().valueChanged.connect(b.verticalScrollBar().setValue)
        self.set_content(content)
        self._restyle()

    # ---- public ----------------------------------------------------------------------------------
    def texts(self) -> tuple[str, str]:
        """(adapted, base) as shown, prompt included."""
        return self.adapted.plain_text(), self.base.plain_text()

    def sample_step(self) -> int | None:
        return None if self._key is None else self._key[1]

    def age(self) -> str:
        """The age label's text: 'new', '40 steps old', or '' with no samples."""
        return self.age_label.text()

    def orientation(self) -> QtCore.Qt.Orientation:
        """Horizontal: the columns side by side; vertical: adapted above base (a dock too narrow for two
        columns of code)."""
        return self.split.orientation()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._orient(event.size().width())

    def _orient(self, width: int) -> None:
        chars = QtGui.QFontMetricsF(self.adapted.text.font()).horizontalAdvance("x" * SIDE_BY_SIDE_CHARS)
        wanted = QtCore.Qt.Orientation.Horizontal if width >= 2 * chars + 40 else QtCore.Qt.Orientation.Vertical
        if wanted != self.split.orientation():
            self.split.setOrientation(wanted)
            half = (width if wanted == QtCore.Qt.Orientation.Horizontal else self.split.height()) // 2
            self.split.setSizes([max(1, half), max(1, half)])

    def identical(self) -> bool:
        """True while the "no change yet" hint shows (the adapted text is the base text)."""
        return self.same_hint.isVisibleTo(self)

    # ---- drawing ---------------------------------------------------------------------------------
    def _draw(self, snapshot) -> None:
        samples = snapshot.samples
        lm = (snapshot.settings or {}).get("scenario") != "matrix"
        # live only: a replay shows what was recorded
        self.sample_button.setEnabled(lm and snapshot.state not in ("replay", "fault"))
        if not samples:
            if not lm:
                self.show_message("No text in the matrix scenario: samples come from the language model.")
            else:
                self.show_message("Samples appear here once the adapted model has generated text.")
            self._key = None
            self.age_label.setText("")
            return
        prompt = str(samples.get("prompt", ""))
        adapted = str(samples.get("adapted", ""))
        base = str(samples.get("base", ""))
        step = samples.get("step", snapshot.step)
        age = format_age(step, snapshot.step)
        if self.age_label.text() != age:
            self.age_label.setText(age)
        key = (snapshot.segment, step, prompt, adapted, base)
        if key == self._key:
            return
        self._key = key
        self.hide_message()
        method = (snapshot.settings or {}).get("method", "")
        name = {"lora": "LoRA", "prefix": "prefix", "lora+prefix": "LoRA + prefix", "full": "full FT"}.get(
            method, method
        )
        self.adapted.title.setText(f"<b>Adapted</b> · {name}" if name else "<b>Adapted</b>")
        self.adapted.show_text(prompt, adapted)
        self.base.show_text(prompt, base)
        self.step_label.setText(f"step <b>{int(step):,}</b>")
        # the prompt is marked in both texts: the header does not spend lines repeating a long one
        self.header.setText("continuing the marked prompt" if prompt else "generated text")
        self.header.setToolTip(f"The prompt: {prompt.strip()}" if prompt else "")
        self.same_hint.setVisible(adapted == base)
        self.draw_count += 1

    def _clear(self) -> None:
        self._key = None
        self.adapted.text.clear()
        self.base.text.clear()
        self.header.setText("")
        self.step_label.setText("")
        self.age_label.setText("")
        self.same_hint.hide()

    def _apply_style(self) -> None:
        s = self.style_
        mono = s.font(TEXT_POINTS, mono=True)
        for panel in (self.adapted, self.base):
            panel.set_dark(s.dark)
            panel.set_font(mono)
            panel.title.setFont(s.font(9.5))
        self._orient(self.width())
        self.header.setFont(s.font(9.5))
        self.header.setStyleSheet(f"color: {s.muted};")
        self.step_label.setFont(s.font(11))
        self.age_label.setFont(s.font(10))
        self.age_label.setStyleSheet(f"color: {s.muted};")
        self.sample_button.setFont(s.font(9.5))
        hint_bg = "#3a3f47" if s.dark else "#e8eaee"
        self.same_hint.setFont(s.font(9, bold=True))
        self.same_hint.setStyleSheet(
            f"color: {s.foreground}; background: {hint_bg}; border-radius: 3px; padding: 1px 6px;"
        )
        self._key = None
