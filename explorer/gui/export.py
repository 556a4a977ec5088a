"""Export a view as PNG (at twice its on-screen resolution) or SVG, and the metrics as CSV.

    export_view(view, "loss.png")      # 2x the on-screen pixels, under a title line
    export_view(view, "loss.svg")      # the item's scene through QSvgGenerator (SVG 1.1, clip paths)
    write_metrics_csv(snapshot, "metrics.csv")

What is exported is what the view hands out (`view.export_item()`): the pyqtgraph item that holds the
plots (a GraphicsLayout or PlotItem), or the view widget itself for views that are plain Qt widgets
(budget, samples). Both are painted into a QImage with a device pixel ratio of 2 (x the screen's), so
everything is twice as large, type and legends included (pyqtgraph's ImageExporter widened the plot
area but left the legend and its type at screen size). A PNG carries a title line above the picture
(`export_title`: the view, its matrix, the step and the run), so a figure pasted into a slide or a
paper says what it shows.

SVG: pyqtgraph 0.14.0's SVGExporter cannot parse the closed paths ("... Z") that Qt 6 writes
(pyqtgraph issue 3495), so the scene is painted into a QSvgGenerator instead. Its resolution is set to
the one QPicture records at, because pyqtgraph's axes replay a QPicture, and QPicture scales by the
ratio of the two resolutions (at the generator's default 72 dpi the axes came out at 3/4 size).
Qt writes a curve in its data coordinates under the plot's transform (e.g. matrix(2.1,0,0,-91,...))
with vector-effect="non-scaling-stroke"; a renderer without that effect (librsvg, Inkscape) drew the
1-unit pen 91 px wide, a band instead of a line. `bake_stroke_transforms` applies such transforms to
the coordinates, so every renderer draws the same lines.

Every file is written atomically (a temporary file beside it, renamed over it when complete).
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from explorer.gui.views.base import uncached
from explorer.schema.files import atomic_replace, atomic_write_bytes, atomic_write_text

SCALE = 2.0  # PNG: this many times the on-screen resolution
FORMATS = {".png": "PNG image", ".svg": "SVG drawing"}
FILTERS = "PNG image (*.png);;SVG drawing (*.svg)"


def suffix_for(path: str, chosen_filter: str = "", default: str = ".png") -> str:
    """`path` with the suffix of the file-dialog filter the user picked when they typed none."""
    if Path(path).suffix.lower() in FORMATS or Path(path).suffix.lower() == ".csv":
        return path
    low = (chosen_filter or "").lower()
    for suffix in (".svg", ".png", ".csv"):
        if f"*{suffix}" in low:
            return path + suffix
    return path + default


def _export_target(view):
    """(what to draw, whether it is a pyqtgraph item)."""
    refresh = getattr(view, "refresh", None)
    if refresh is not None:
        refresh()  # a hidden view draws its last snapshot first
    item = view.export_item() if hasattr(view, "export_item") else view
    return item, not isinstance(item, QtWidgets.QWidget)


def on_screen_size(view) -> QtCore.QSize:
    """The size in device-independent pixels of what `export_view` exports, as shown now."""
    item = view.export_item() if hasattr(view, "export_item") else view
    if isinstance(item, QtWidgets.QWidget):
        return item.size()
    return item.sceneBoundingRect().size().toSize()


def _pixel_ratio(view) -> float:
    widget = view if isinstance(view, QtWidgets.QWidget) else None
    return float(widget.devicePixelRatioF()) if widget is not None else 1.0


TITLE_PX = 22  # the title line's height on screen (doubled with everything else)


def export_title(view) -> str:
    """What the picture shows, in one line: 'ΔW heatmap · W · step 120 · matrix · lora r=4'."""
    parts = [getattr(view, "title", "") or type(view).__name__]
    current = getattr(view, "current_matrix", None)
    matrix = current() if callable(current) else None
    if matrix:
        parts.append(str(matrix))
    snap = getattr(view, "snapshot", None)
    if snap is not None:
        parts.append(f"step {snap.step}")
        settings = getattr(snap, "settings", None) or {}
        if settings:
            method = str(settings.get("method", ""))
            run = f"{settings.get('scenario', '')} · {method}"
            if method in ("lora", "lora+prefix") and "rank" in settings:
                run += f" r={settings['rank']}"
            parts.append(run)
    return " · ".join(p for p in parts if p)


def _with_title(image: QtGui.QImage, title: str, factor: float, background: QtGui.QColor, colour: QtGui.QColor):
    """`image` under a band of TITLE_PX x factor pixels that holds `title`."""
    band = max(1, round(TITLE_PX * factor))
    out = QtGui.QImage(image.width(), image.height() + band, QtGui.QImage.Format.Format_ARGB32_Premultiplied)
    out.fill(background)
    painter = QtGui.QPainter(out)
    try:
        painter.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing)
        font = QtGui.QFont(QtWidgets.QApplication.font())
        font.setPixelSize(max(6, round(TITLE_PX * 0.6 * factor)))
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(colour)
        margin = round(6 * factor)
        painter.drawText(
            QtCore.QRect(margin, 0, image.width() - 2 * margin, band),
            int(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignVCenter),
            QtGui.QFontMetrics(font).elidedText(title, QtCore.Qt.TextElideMode.ElideRight, image.width() - 2 * margin),
        )
        painter.drawImage(0, band, image)
    finally:
        painter.end()
    return out


def view_image(view, scale: float = SCALE, title: str | None = None) -> QtGui.QImage:
    """The view at `scale` times its on-screen resolution (its size x the screen's pixel ratio), under
    a title line (`title`, default export_title(view); "" for none)."""
    item, is_item = _export_target(view)
    factor = scale * _pixel_ratio(view)
    if is_item:
        rect = item.sceneBoundingRect()
        w, h = max(1.0, rect.width()), max(1.0, rect.height())
        image = QtGui.QImage(
            max(1, round(w * factor)), max(1, round(h * factor)), QtGui.QImage.Format.Format_ARGB32_Premultiplied
        )
        image.setDevicePixelRatio(factor)
        bg = _background(item)
        image.fill(bg if bg is not None else QtGui.QColor("white"))
        painter = QtGui.QPainter(image)
        try:
            painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
            with uncached(view, item.scene()):
                item.scene().render(painter, QtCore.QRectF(0, 0, w, h), rect)
        finally:
            painter.end()
        background = bg if bg is not None else QtGui.QColor("white")
    else:
        size = item.size()
        image = QtGui.QImage(
            max(1, round(size.width() * factor)),
            max(1, round(size.height() * factor)),
            QtGui.QImage.Format.Format_ARGB32_Premultiplied,
        )
        image.setDevicePixelRatio(factor)
        image.fill(item.palette().color(item.backgroundRole()))
        painter = QtGui.QPainter(image)
        try:
            with uncached(item):
                item.render(
                    painter,
                    QtCore.QPoint(0, 0),
                    QtGui.QRegion(),
                    QtWidgets.QWidget.RenderFlag.DrawChildren | QtWidgets.QWidget.RenderFlag.DrawWindowBackground,
                )
        finally:
            painter.end()
        background = item.palette().color(item.backgroundRole())
    if image is None or image.isNull():
        raise ValueError("the view rendered an empty image")
    image.setDevicePixelRatio(1.0)
    title = export_title(view) if title is None else title
    if title:
        colour = QtGui.QColor("black") if background.lightness() > 128 else QtGui.QColor("white")
        image = _with_title(image, title, factor, background, colour)
    return image


def _background(item) -> QtGui.QColor | None:
    scene = item.scene()
    for gv in scene.views() if scene is not None else ():
        brush = gv.backgroundBrush()
        if brush.style() != QtCore.Qt.BrushStyle.NoBrush:
            return brush.color()
    return None


def view_svg(view, title: str = "") -> bytes:
    """The view as an SVG 1.1 document (vector curves, axes and text; images embedded as PNG)."""
    from PySide6.QtSvg import QSvgGenerator

    item, is_item = _export_target(view)
    if is_item:
        source = item.sceneBoundingRect()
    else:
        source = QtCore.QRectF(QtCore.QPointF(0, 0), QtCore.QSizeF(item.size()))
    w, h = max(1.0, source.width()), max(1.0, source.height())
    buf = QtCore.QBuffer()
    buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    gen = QSvgGenerator(QSvgGenerator.SvgVersion.Svg11)
    gen.setResolution(QtGui.QPicture().logicalDpiX())
    gen.setOutputDevice(buf)
    gen.setSize(QtCore.QSize(math.ceil(w), math.ceil(h)))
    gen.setViewBox(QtCore.QRectF(0, 0, w, h))
    gen.setTitle(title or "peft-explorer view")
    gen.setDescription("Exported by peft-explorer")
    painter = QtGui.QPainter(gen)
    try:
        if is_item:
            bg = _background(item)
            if bg is not None:
                painter.fillRect(QtCore.QRectF(0, 0, w, h), bg)
            with uncached(view, item.scene()):
                item.scene().render(painter, QtCore.QRectF(0, 0, w, h), source)
        else:
            painter.fillRect(QtCore.QRectF(0, 0, w, h), item.palette().color(item.backgroundRole()))
            with uncached(item):
                item.render(painter, QtCore.QPoint(0, 0), QtGui.QRegion(), QtWidgets.QWidget.RenderFlag.DrawChildren)
    finally:
        painter.end()
    data = bytes(buf.data())
    buf.close()
    if b"<svg" not in data[:1000]:
        raise ValueError("the SVG generator wrote no document")
    return data


_GROUP = re.compile(r'(<g [^>]*?)\s*transform="matrix\(([^)]*)\)"([^>]*>)(.*?)(</g>)', re.S)
_STROKE_ONLY = re.compile(r'^(\s*<(path|polyline) [^>]*vector-effect="non-scaling-stroke"[^>]*/>\s*)+$', re.S)
_PAIR = re.compile(r"(-?[\d.]+(?:e-?\d+)?),(-?[\d.]+(?:e-?\d+)?)")


def bake_stroke_transforms(svg: str) -> str:
    """Groups of non-scaling strokes under a matrix transform: the transform applied to their points
    (Qt writes absolute M / L / C coordinates as x,y pairs) and removed, so a renderer without
    vector-effect support does not scale the pen with the data."""

    def bake(m: re.Match) -> str:
        head, matrix, rest, body, tail = m.groups()
        if not _STROKE_ONLY.match(body):
            return m.group(0)
        try:
            a, b, c, d, e, f = (float(v) for v in matrix.split(","))
        except ValueError:
            return m.group(0)

        def point(p: re.Match) -> str:
            x, y = float(p.group(1)), float(p.group(2))
            return f"{a * x + c * y + e:.6g},{b * x + d * y + f:.6g}"

        body = re.sub(r'(d|points)="([^"]*)"', lambda q: f'{q.group(1)}="{_PAIR.sub(point, q.group(2))}"', body)
        return f"{head}{rest}{body}{tail}"

    return _GROUP.sub(bake, svg)


def export_view(view, path, scale: float = SCALE) -> Path:
    """Write `view` to `path` (.png at `scale` x its on-screen resolution, or .svg); atomic."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        image = view_image(view, scale)
        with atomic_replace(path) as tmp:
            if not image.save(str(tmp), "PNG"):
                raise OSError(f"could not write {path}")
    elif suffix == ".svg":
        title = getattr(view, "title", "") or ""
        svg = bake_stroke_transforms(view_svg(view, title).decode("utf-8"))
        atomic_write_bytes(path, svg.encode("utf-8"))
    else:
        raise ValueError(f"{path.name}: unknown image type {suffix or '(none)'!r}: allowed .png or .svg")
    return path


# ---------------------------------------------------------------------------------------- metrics
def _short(name: str) -> str:
    """'model.layers.0.self_attn.q_proj' -> 'L0.q_proj'; 'W' -> 'W'."""
    from explorer.gui.views.base import split_matrix_name

    layer, module = split_matrix_name(name)
    return module if layer is None else f"L{layer}.{module}"


def _effective_rank(values: np.ndarray) -> float:
    s = np.abs(np.asarray(values, np.float64))
    total = s.sum()
    if not np.isfinite(total) or total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def metrics_table(snapshot) -> tuple[list[str], list[list]]:
    """(header, rows) of the snapshot's histories, one row per step that has any value:
    step, loss, eval_loss, gate per prefix layer (and head, for per-head gates), the effective
    rank of ΔW per adapted matrix (from the spectrum history), and the learning rate."""
    h = snapshot.history
    columns: dict[str, dict[int, float]] = {"loss": {}, "eval_loss": {}}
    for s, v in zip(np.asarray(h.steps), np.asarray(h.loss)):
        columns["loss"][int(s)] = float(v)
    for s, v in zip(np.asarray(h.eval_steps), np.asarray(h.eval_loss)):
        columns["eval_loss"][int(s)] = float(v)
    gates = np.asarray(h.gates)
    if gates.ndim == 3 and gates.shape[0] and gates.shape[1]:
        layers = (
            [p.layer for p in snapshot.prefixes]
            if len(snapshot.prefixes) == gates.shape[1]
            else list(range(gates.shape[1]))
        )
        per_layer = (snapshot.settings or {}).get("gate_shape") == "layer" or gates.shape[2] == 1
        steps = [int(s) for s in np.asarray(h.gate_steps)]
        for li, layer in enumerate(layers):
            heads = [0] if per_layer else range(gates.shape[2])
            for hd in heads:
                name = f"gate_L{layer}" if per_layer else f"gate_L{layer}_h{hd}"
                columns[name] = {s: float(gates[i, li, hd]) for i, s in enumerate(steps)}
    spectrum_steps = [int(s) for s in np.asarray(h.spectrum_steps)]
    for name, values in (h.spectra or {}).items():
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[0] != len(spectrum_steps):
            continue
        columns[f"effective_rank_{_short(name)}"] = {
            s: _effective_rank(values[i]) for i, s in enumerate(spectrum_steps)
        }
    steps = sorted(set().union(*(c.keys() for c in columns.values())))
    # The learning rate in force (no schedule: constant in a segment; the engine keeps no history of
    # it, so after a hot change every row shows the rate of the exported snapshot)
    lr = getattr(snapshot, "lr", None)
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        columns["lr"] = dict.fromkeys(steps, float(lr))
    header = ["step", *columns]
    rows = [[s, *(_cell(c.get(s)) for c in columns.values())] for s in steps]
    return header, rows


def _cell(v):
    if v is None:
        return ""
    return "" if not math.isfinite(v) else repr(float(v))


def write_metrics_csv(snapshot, path) -> int:
    """Write the snapshot's histories as CSV (atomic); returns the number of rows."""
    header, rows = metrics_table(snapshot)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())
    return len(rows)
