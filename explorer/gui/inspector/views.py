"""The live ΔW and spectrum views, as the inspector uses them: one module of an adapter file (a
Snapshot holding that module's MatrixSnapshot), drawn by the SAME code as live training.
"""

from __future__ import annotations

from explorer.gui.views.delta_view import DeltaView, caption_head
from explorer.gui.views.spectrum_view import SpectrumView


class InspectorDeltaView(DeltaView):
    """DeltaView drawing one module of an adapter file: no matrix picker (the grid and the table
    pick), and a caption without a training step."""

    def _caption(self, snapshot, m, mode, data, level):
        parts, (out_f, in_f) = caption_head(m, mode, data, level)
        if data.shape != (out_f, in_f):
            parts.append(f"mean-pooled to {data.shape[0]}×{data.shape[1]} from the factors")
        if mode in ("base", "merged") and not getattr(snapshot, "has_base", False):
            parts.append("no base model: W₀ shown as 0 (Compare with base model… loads it)")
        if mode == "delta" and m.fro_norm == 0.0:
            parts.append("ΔW is exactly 0 (B is zero: an untrained adapter)")
        return " · ".join(parts)


class InspectorSpectrumView(SpectrumView):
    """SpectrumView for one module of an adapter file: no picker, no waterfall (a file has one step)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.glw.ci.layout.removeItem(self.waterfall_plot)
        self.waterfall_plot.hide()
        self.glw.ci.layout.setRowStretchFactor(1, 0)
        self.plot.getAxis("bottom").setStyle(showValues=True)
        self.plot.setLabel("bottom", "index i")

    def _draw_spectrum(self, snapshot, m):
        super()._draw_spectrum(snapshot, m)
        if self.rank_line.isVisible():
            # pyqtgraph's InfLineLabel skips updates while hidden, and the base view shows the
            # line after setting its text: refresh it, or the first module reads "r" alone
            self.rank_line.label.valueChanged()
        self.caption.setText(
            f"{m.name} · {m.shape[0]}×{m.shape[1]} · ‖ΔW‖F = {m.fro_norm:.4g} · "
            "spectrum: exact, from the QR of B and A (no dense ΔW)"
        )

    def _draw_waterfall(self, snapshot, name):
        pass
