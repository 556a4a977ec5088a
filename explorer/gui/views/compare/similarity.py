"""Subspace similarity (LoRA paper, Fig. 3): φ(i, j) = ||U_a[:, :i]^T U_b[:, :j]||_F^2 / min(i, j) for
a pair of LoRA runs on one module, beside the control (run a against a random basis of run b's size),
as two heatmaps sharing one colour bar (0..1)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from explorer.gui import colormaps
from explorer.gui.views.base import Style, new_layout_widget, style_colorbar, style_plot
from explorer.gui.views.compare.runs import short_module


def zero_updates(a, pair: tuple[str, str], module: str) -> list[str]:
    """The runs of `pair` whose ΔW on `module` is exactly zero in the analysis `a` (LoRA at step 0:
    B = 0). φ is computed from A, which is random at step 0, so it would read as a similarity of
    updates that do not exist yet."""
    if a is None:
        return []
    zero = []
    for label in dict.fromkeys(pair):
        rows = [r for r in a.amplification.get(label, ()) if r.get("module") == module]
        if rows and all(r.get("delta_fro") == 0 for r in rows):
            zero.append(label)
    return zero


class SimilarityTab(QtWidgets.QWidget):
    def __init__(self, style: Style, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.style_ = style
        self.phi: np.ndarray | None = None  # drawn now: rows run a's i, columns run b's j
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.glw = new_layout_widget(style)
        self.phi_plot = self.glw.addPlot(row=0, col=0)
        self.control_plot = self.glw.addPlot(row=0, col=1)
        for p in (self.phi_plot, self.control_plot):
            p.hideButtons()
            p.invertY(True)
            p.setMouseEnabled(False, False)
            p.setLabel("left", "i")
        self.phi_image = pg.ImageItem(axisOrder="row-major")
        self.control_image = pg.ImageItem(axisOrder="row-major")
        self.phi_plot.addItem(self.phi_image)
        self.control_plot.addItem(self.control_image)
        self.bar = colormaps.colorbar(colormaps.SEQUENTIAL)
        self.glw.addItem(self.bar, row=0, col=2)
        lay.addWidget(self.glw, 1)
        self.caption = QtWidgets.QLabel(self)
        self.caption.setWordWrap(True)
        self.caption.setTextFormat(QtCore.Qt.TextFormat.RichText)
        lay.addWidget(self.caption)

    def draw(self, a, pair: tuple[str, str], module: str, lora_runs: int) -> None:
        """φ of `pair` on `module` from the analysis `a` (None: not computed yet); `lora_runs`: how many
        LoRA runs the comparison has (to say what is missing)."""
        ra, rb = pair
        phi = control = None
        control_of = ra
        still_zero = zero_updates(a, (ra, rb), module)
        if a is not None and ra and rb and ra != rb and not still_zero:
            phi = a.phi(ra, rb, module)
            if phi is not None:
                if (ra, rb) in a.control:
                    control = a.control[(ra, rb)].get(module)
                elif (rb, ra) in a.control:  # computed for the stored pair's first run
                    control, control_of = a.control[(rb, ra)].get(module), rb
        self.phi = phi
        cmap = colormaps.sequential_for(self.style_.high_contrast)
        for img, data, plot, title in (
            (self.phi_image, phi, self.phi_plot, f"{ra} vs {rb}"),
            (self.control_image, control, self.control_plot, f"{control_of} vs random"),
        ):
            img.setLookupTable(colormaps.lut(cmap))
            if data is None or data.size == 0:
                img.clear()
                plot.setTitle("")
                for axis in ("bottom", "left"):  # no i, j to count: not pyqtgraph's -0.4 ... 0.4
                    plot.getAxis(axis).setTicks([[], []])
                continue
            d = np.ascontiguousarray(data, np.float32)
            img.setImage(d, levels=(0.0, 1.0), autoLevels=False)
            img.setRect(QtCore.QRectF(0.5, 0.5, d.shape[1], d.shape[0]))
            plot.setTitle(title)
            plot.setLabel("bottom", "j")
            for axis, n in (("bottom", d.shape[1]), ("left", d.shape[0])):
                step = max(1, math.ceil(n / 8))
                plot.getAxis(axis).setTicks([[(v, str(v)) for v in range(1, n + 1, step)], []])
            plot.setRange(xRange=(0.5, d.shape[1] + 0.5), yRange=(0.5, d.shape[0] + 0.5), padding=0)
        self.bar.setColorMap(colormaps.colormap(cmap))
        style_plot(self.phi_plot, self.style_)
        style_plot(self.control_plot, self.style_)
        if a is None:
            text = "The analyses appear once the runs have trained (they are computed every few seconds)."
        elif lora_runs < 2 and not a.pairs:
            text = "φ needs two LoRA runs (e.g. lora:r=8 and lora:r=64, or two seeds: lora:r=8,seed=1)."
        elif still_zero:
            text = (
                f"ΔW of {' and '.join(still_zero)} is still exactly 0 (B starts at zero): φ compares the "
                f"directions the updates have learned, and is shown from the first step on · step {a.step:,}"
            )
        elif phi is None:
            text = "Pick two different LoRA runs that share this module."
        else:
            k = min(phi.shape)
            diag = np.diagonal(phi)
            text = f"φ(1,1) = <b>{phi[0, 0]:.3f}</b>, mean φ(i,i) for i ≤ {k} = <b>{diag.mean():.3f}</b>"
            if control is not None:
                text += (
                    f"; {control_of} against a random basis: φ(1,1) = {control[0, 0]:.3f}, mean φ(i,i) = "
                    f"{np.diagonal(control).mean():.3f}"
                )
            text += f" · {short_module(module)} · step {a.step:,}"
        self.caption.setText(text)

    def clear(self) -> None:
        self.phi = None
        for img in (self.phi_image, self.control_image):
            img.clear()

    def apply_style(self) -> None:
        s = self.style_
        self.glw.setBackground(s.background)
        for p in (self.phi_plot, self.control_plot):
            style_plot(p, s)
        style_colorbar(self.bar, s)
