"""The replay bar (explorer.gui.replay): play / pause, the step slider and label, the speed, the
recording's name, Back to live; while following a run, a "Head" button that returns to the newest record."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtCore import Qt

from explorer.schema.format import format_rate

SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0)


class JumpSlider(QtWidgets.QSlider):
    """A slider that jumps to where it is clicked (Qt's default pages by a tenth per click), and
    then drags from there."""

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton and self.maximum() > self.minimum():
            opt = QtWidgets.QStyleOptionSlider()
            self.initStyleOption(opt)
            style = self.style()
            cc = QtWidgets.QStyle.ComplexControl.CC_Slider
            handle = style.subControlRect(cc, opt, QtWidgets.QStyle.SubControl.SC_SliderHandle, self)
            point = event.position().toPoint()
            if not handle.contains(point):
                groove = style.subControlRect(cc, opt, QtWidgets.QStyle.SubControl.SC_SliderGroove, self)
                span = max(1, groove.width() - handle.width())
                x = point.x() - groove.x() - handle.width() // 2
                value = QtWidgets.QStyle.sliderValueFromPosition(
                    self.minimum(), self.maximum(), max(0, min(span, x)), span, opt.upsideDown
                )
                self.setValue(value)
        super().mousePressEvent(event)


class ReplayBar(QtWidgets.QToolBar):
    """Play / pause, the step slider and label, the speed, the recording's name, Back to live."""

    def __init__(self, ctl):
        super().__init__("Replay")
        self.setObjectName("replay_bar")
        self.setMovable(False)
        self.setFloatable(False)
        self.ctl = ctl
        index = ctl.reader
        self.name = QtWidgets.QLabel(f"  {'Following' if ctl.follow else 'Replay'}  {index.dir.name}  ")
        self.name.setObjectName("replay_name")
        self.name.setStyleSheet("font-weight: 600;")
        self.addWidget(self.name)
        self.play_button = QtWidgets.QToolButton()
        self.play_button.setObjectName("replay_play")
        self.play_button.clicked.connect(ctl.toggle_play)
        self.addWidget(self.play_button)
        self.slider = JumpSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("replay_slider")
        self.slider.setMinimumWidth(240)
        self.slider.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.slider.setToolTip("The recorded steps: click to jump (Left / Right: one record; Home / End)")
        self.slider.valueChanged.connect(self._slider_moved)
        self.addWidget(self.slider)
        self.step_label = QtWidgets.QLabel()
        self.step_label.setObjectName("replay_step")
        self.addWidget(self.step_label)
        self.head_button = QtWidgets.QPushButton("Head ⏭")
        self.head_button.setObjectName("replay_head")
        self.head_button.setToolTip("Back to the newest record; the views then follow the run again (End)")
        self.head_button.clicked.connect(ctl.go_to_head)
        self.head_button.setVisible(ctl.follow)
        self.addWidget(self.head_button)
        self.addWidget(QtWidgets.QLabel(" Speed "))
        self.speed_box = QtWidgets.QComboBox()
        self.speed_box.setObjectName("replay_speed")
        self.speed_box.activated.connect(lambda _i: ctl.set_speed(float(self.speed_box.currentData())))
        self.addWidget(self.speed_box)
        self.fault_label = QtWidgets.QLabel()
        self.fault_label.setObjectName("replay_fault")
        self.fault_label.setProperty("role", "error")
        self.addWidget(self.fault_label)
        self.addSeparator()
        self.live_button = QtWidgets.QPushButton("Back to live")
        self.live_button.setObjectName("replay_back")
        self.live_button.setToolTip("Leave the replay: the views follow the training run again")
        self.live_button.clicked.connect(ctl.back_requested.emit)
        self.addWidget(self.live_button)
        self.update_range()
        self.sync()

    def update_range(self) -> None:
        """The records known changed (a followed run grew): the slider, the label's width, the speeds."""
        ctl = self.ctl
        count, last = ctl.count, ctl.steps[ctl.count - 1]
        with QtCore.QSignalBlocker(self.slider):
            self.slider.setRange(0, max(0, count - 1))
            self.slider.setPageStep(max(1, count // 10))
        self.step_label.setMinimumWidth(
            QtGui.QFontMetrics(self.step_label.font()).horizontalAdvance(f"step {last:,} of {last:,} ({count}/{count})")
            + 16
        )
        state = "finished" if ctl.reader.finished else "being written" if ctl.follow else "cut off"
        self.name.setToolTip(
            f"{ctl.reader.dir}\n{count} recorded steps, {ctl.steps[0]} to {last} ({state}); "
            f"{ctl.reader.settings.scenario} · {ctl.reader.settings.method}"
        )
        with QtCore.QSignalBlocker(self.speed_box):
            self.speed_box.clear()
            for s in SPEEDS:
                self.speed_box.addItem(f"{s:g}x  ({format_rate(ctl.rate * s)} steps/s)", s)
            self.speed_box.setCurrentIndex(max(0, self.speed_box.findData(ctl.speed)))
        self.speed_box.setToolTip(
            f"1x plays the recording at the pace it was trained ({format_rate(ctl.rate)} steps per second)"
        )

    def _slider_moved(self, value: int) -> None:
        if value != self.ctl.index:
            self.ctl.request_index(value)  # first: pause() syncs the slider, which keeps a requested value
            if self.slider.isSliderDown() or not self.ctl.playing:
                self.ctl.pause()

    def sync(self, fault: str | None = None) -> None:
        ctl = self.ctl
        if ctl.pending_index is None:  # else the slider shows where it was moved, drawn next
            with QtCore.QSignalBlocker(self.slider):
                self.slider.setValue(ctl.index)
        self.play_button.setText("❚❚ Pause" if ctl.playing else "▶ Play")
        self.play_button.setToolTip("Pause the replay (Space)" if ctl.playing else "Play the replay (Space)")
        step, last = ctl.steps[ctl.index], ctl.steps[ctl.count - 1]
        self.step_label.setText(f"step {step:,} of {last:,} ({ctl.index + 1}/{ctl.count})")
        self.head_button.setEnabled(ctl.index < ctl.count - 1)
        i = self.speed_box.findData(ctl.speed)
        if i >= 0 and i != self.speed_box.currentIndex():
            self.speed_box.setCurrentIndex(i)
        if fault is not None or ctl.shown_step == step:
            self.fault_label.setText(f"  ▲ {fault}" if fault else "")
            self.fault_label.setToolTip(fault or "")
