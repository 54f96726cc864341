"""Images for the panel: display contrast, numpy -> QImage, motion arrows, composed pixmaps.

The array functions are pure numpy (tested without Qt); :func:`gray_qimage` and
:func:`compose_pixmap` turn their results into Qt images. Images are ``(y, x)`` arrays;
displacements are ``(2, y, x)`` arrays ``(dy, dx)`` in image pixels.

Motion convention (``docs/conventions.md``): the reconstruction's ``motion`` is the
backward-warp displacement ``d`` with ``scene(x, t) = template(x + d(x, t))``, so a feature of
the template sits at ``x = p - d`` at time ``t``. Between render times ``t0`` and ``t`` the
content therefore moves by ``d(t0) - d(t)``: that is what the arrows show
(:func:`content_displacement`).
"""

from __future__ import annotations

import math

import numpy as np
from PyQt6.QtCore import QPointF, Qt
from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap

__all__ = [
    "arrow_field",
    "arrow_gain",
    "compose_pixmap",
    "content_displacement",
    "display_limits",
    "gray_qimage",
    "scale_bar_length_um",
    "to_uint8",
]


def display_limits(
    image: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.5
) -> tuple[float, float]:
    """Robust display range ``(low, high)`` of ``image`` from percentiles of its finite values.

    Units are those of ``image``. A constant (or all non-finite) image gets a range of width
    1e-6 around its value (0 if nothing is finite), so the mapping never divides by zero.
    """
    if not 0 <= low_percentile < high_percentile <= 100:
        raise ValueError(
            f"low_percentile={low_percentile}, high_percentile={high_percentile}: need "
            "0 <= low < high <= 100"
        )
    values = np.asarray(image, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1e-6
    low, high = np.percentile(values, [low_percentile, high_percentile])
    if not high > low:
        return float(low), float(low) + 1e-6
    return float(low), float(high)


def to_uint8(image: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """Map ``image`` ``(y, x)`` linearly from ``limits`` to 0..255 (clipped); NaN -> 0."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image has shape {image.shape}; give one (y, x) image")
    low, high = float(limits[0]), float(limits[1])
    if not high > low:
        raise ValueError(f"limits={limits}: the upper limit must exceed the lower one")
    scaled = (image - low) * (255.0 / (high - low))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def gray_qimage(image8: np.ndarray) -> QImage:
    """An 8-bit grayscale ``QImage`` owning a copy of ``image8`` ``(y, x)`` uint8."""
    image8 = np.ascontiguousarray(image8, dtype=np.uint8)
    if image8.ndim != 2:
        raise ValueError(f"image8 has shape {image8.shape}; give one (y, x) uint8 image")
    ny, nx = image8.shape
    qimage = QImage(image8.data, nx, ny, nx, QImage.Format.Format_Grayscale8)
    return qimage.copy()  # detach from the numpy buffer


def rgb_qimage(image8: np.ndarray) -> QImage:
    """A 24-bit colour ``QImage`` owning a copy of ``image8`` ``(3, y, x)`` uint8 (red, green, blue)."""
    image8 = np.asarray(image8, dtype=np.uint8)
    if image8.ndim != 3 or image8.shape[0] != 3:
        raise ValueError(f"image8 has shape {image8.shape}; give (3, y, x) uint8 red, green, blue planes")
    _, ny, nx = image8.shape
    interleaved = np.ascontiguousarray(np.moveaxis(image8, 0, -1))
    qimage = QImage(interleaved.data, nx, ny, 3 * nx, QImage.Format.Format_RGB888)
    return qimage.copy()  # detach from the numpy buffer


def content_displacement(motion: np.ndarray, t: int, z: int = 0, t_ref: int = 0) -> np.ndarray:
    """How far the sample content moved from render time ``t_ref`` to ``t``: ``(2, y, x)`` px.

    ``motion`` is a reconstruction's ``(T, D, Z, y, x)`` backward-warp displacement in output
    pixels (D = 2: dy, dx; D = 3: dz, dy, dx; the last two are used). Returns
    ``motion[t_ref] - motion[t]`` for plane ``z`` as ``(dy, dx)``.
    """
    motion = np.asarray(motion)
    if motion.ndim != 5 or motion.shape[1] not in (2, 3):
        raise ValueError(f"motion has shape {motion.shape}; expected (T, D, Z, Y, X) with D = 2 or 3")
    n_t, _, n_z = motion.shape[:3]
    for name, value, size in (("t", t, n_t), ("t_ref", t_ref, n_t), ("z", z, n_z)):
        if not 0 <= value < size:
            raise ValueError(f"{name}={value} is out of range 0..{size - 1}")
    return (motion[t_ref, -2:, z] - motion[t, -2:, z]).astype(np.float64)


def arrow_field(displacement: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrows on a regular grid: ``(origins, vectors)``, each ``(N, 2)`` as ``(y, x)`` pixels.

    Grid points are pixel centres ``(i, j)`` with ``i = step//2, step//2 + step, ...`` (same in
    x); each vector is ``displacement[:, i, j]``. ``displacement`` is ``(2, y, x)`` ``(dy, dx)``.
    """
    displacement = np.asarray(displacement, dtype=np.float64)
    if displacement.ndim != 3 or displacement.shape[0] != 2:
        raise ValueError(f"displacement has shape {displacement.shape}; expected (2, Y, X) (dy, dx)")
    if int(step) < 1:
        raise ValueError(f"step={step} must be at least 1 pixel")
    step = int(step)
    _, ny, nx = displacement.shape
    iy, ix = np.meshgrid(np.arange(step // 2, ny, step), np.arange(step // 2, nx, step), indexing="ij")
    origins = np.stack([iy.ravel(), ix.ravel()], axis=1).astype(np.float64)
    vectors = np.stack([displacement[0][iy, ix].ravel(), displacement[1][iy, ix].ravel()], axis=1)
    return origins, vectors


def arrow_gain(vectors: np.ndarray, step: int, max_gain: float = 10.0, fill: float = 0.9) -> float:
    """Magnification of arrow lengths: the longest arrow spans ``fill * step`` pixels.

    Never more than ``max_gain`` (so noise in a still sample does not become long arrows) and
    never less than 1 (true length) unless the longest arrow is longer than ``fill * step``, in
    which case the gain is below 1 to keep arrows from overlapping. 0 if there is no motion.
    """
    vectors = np.asarray(vectors, dtype=np.float64).reshape(-1, 2)
    lengths = np.hypot(vectors[:, 0], vectors[:, 1])
    lengths = lengths[np.isfinite(lengths)]
    longest = float(lengths.max()) if lengths.size else 0.0
    if longest <= 0:
        return 0.0
    return float(min(max_gain, fill * step / longest))


def scale_bar_length_um(field_um: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k µm) near a fifth of ``field_um``."""
    if not (math.isfinite(field_um) and field_um > 0):
        raise ValueError(f"field_um={field_um} must be a positive width in µm")
    target = field_um / 5.0
    power = 10.0 ** math.floor(math.log10(target))
    for mantissa in (5.0, 2.0, 1.0):
        if mantissa * power <= target:
            return mantissa * power
    return power  # unreachable: mantissa 1 always fits


def compose_pixmap(
    image: np.ndarray,
    limits: tuple[float, float],
    *,
    displacement: np.ndarray | None = None,
    arrow_step: int | None = None,
    max_gain: float = 10.0,
    pixel_size_um: float | None = None,
    min_display_px: int = 512,
) -> tuple[QPixmap, float]:
    """The displayed picture of ``image`` ``(y, x)`` (gray levels) or ``(3, y, x)`` (red, green,
    blue, each mapped from the same ``limits``): arrows, scale bar.

    The image is enlarged by an integer factor (nearest neighbour, so pixels stay honest) until
    its longer side is at least ``min_display_px``; arrows and the scale bar are drawn at that
    size. ``displacement`` ``(2, y, x)`` (dy, dx) in image pixels adds arrows every
    ``arrow_step`` pixels (default: about 10 across, at least 4 pixels apart), magnified by :func:`arrow_gain`.
    ``pixel_size_um`` adds a scale bar (bottom left). Returns ``(pixmap, gain)``; the gain is 0
    without arrows.
    """
    image = np.asarray(image)
    if image.ndim == 3:  # a colour image
        planes = np.stack([to_uint8(plane, limits) for plane in image])
        ny, nx = planes.shape[1:]
        base = rgb_qimage(planes)
    else:
        image8 = to_uint8(image, limits)
        ny, nx = image8.shape
        base = gray_qimage(image8)
    factor = max(1, math.ceil(min_display_px / max(ny, nx)))
    qimage = base.scaled(
        nx * factor,
        ny * factor,
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.FastTransformation,
    )
    pixmap = QPixmap.fromImage(qimage)
    gain = 0.0
    painter = QPainter(pixmap)
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if displacement is not None:
            step = arrow_step or max(4, round(max(ny, nx) / 10))
            origins, vectors = arrow_field(displacement, step)
            gain = arrow_gain(vectors, step, max_gain=max_gain)
            if gain > 0:
                _draw_arrows(painter, origins, vectors * gain, factor)
        if pixel_size_um is not None and pixel_size_um > 0:
            _draw_scale_bar(painter, nx, ny, factor, pixel_size_um)
    finally:
        painter.end()
    return pixmap, gain


def _draw_arrows(painter: QPainter, origins: np.ndarray, vectors: np.ndarray, factor: int) -> None:
    """Arrows from pixel centres along ``vectors`` (image px), at ``factor`` display px per px."""
    shadow = QPen(QColor(0, 0, 0, 130), 3.0)
    pen = QPen(QColor(255, 215, 0, 220), 1.5)
    for p in (shadow, pen):
        p.setCapStyle(Qt.PenCapStyle.RoundCap)
    segments = []
    for (y0, x0), (vy, vx) in zip(origins, vectors):
        length = math.hypot(vy, vx) * factor
        if not math.isfinite(length) or length < 2.0:
            continue
        start = QPointF((x0 + 0.5) * factor, (y0 + 0.5) * factor)
        end = QPointF(start.x() + vx * factor, start.y() + vy * factor)
        head = min(0.35 * length, 3.0 + 0.6 * factor)
        angle = math.atan2(end.y() - start.y(), end.x() - start.x())
        barbs = [
            QPointF(end.x() - head * math.cos(angle - s), end.y() - head * math.sin(angle - s))
            for s in (0.45, -0.45)
        ]
        segments.append((start, end, barbs))
    for p in (shadow, pen):
        painter.setPen(p)
        for start, end, barbs in segments:
            painter.drawLine(start, end)
            for b in barbs:
                painter.drawLine(end, b)


def _draw_scale_bar(painter: QPainter, nx: int, ny: int, factor: int, pixel_size_um: float) -> None:
    bar_um = scale_bar_length_um(nx * pixel_size_um)
    bar_px = bar_um / pixel_size_um * factor
    margin = 0.04 * nx * factor
    y = ny * factor - margin
    painter.setPen(QPen(QColor(0, 0, 0, 160), 7.0))
    painter.drawLine(QPointF(margin, y), QPointF(margin + bar_px, y))
    painter.setPen(QPen(QColor(255, 255, 255), 4.0))
    painter.drawLine(QPointF(margin, y), QPointF(margin + bar_px, y))
    font = QFont()
    font.setPixelSize(max(12, int(0.035 * ny * factor)))
    font.setBold(True)
    painter.setFont(font)
    label = f"{bar_um:g} µm"
    text_pos = QPointF(margin, y - 8)
    painter.setPen(QColor(0, 0, 0, 200))
    painter.drawText(text_pos + QPointF(1, 1), label)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(text_pos, label)
