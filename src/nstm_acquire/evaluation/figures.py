"""PNG figures of reconstructions: raw shots, conventional, NSTM, truth, motion.

Used by ``nstm-acquire demo`` and the benchmarks. Matplotlib with the Agg backend (no
display needed). Images are ``(Y, X)``; the motion is ``(2, Y, X)`` (dy, dx) in pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["comparison_figure", "robust_limits"]


def robust_limits(images: Sequence[np.ndarray], low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Shared display range from percentiles of all ``images``."""
    values = np.concatenate([np.asarray(i, np.float64).ravel() for i in images if i is not None])
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi) if hi > lo else float(lo + 1e-6)


def _motion_quiver(ax, motion: np.ndarray, step: int) -> None:
    dy, dx = motion
    ny, nx = dy.shape
    y, x = np.mgrid[step // 2 : ny : step, step // 2 : nx : step]
    # the sample content at x came from x + d: draw where it moves, i.e. -d; the longest arrow
    # is 0.8 of the arrow spacing (directions and relative lengths; the true length is in pixels)
    u, v = -dx[y, x], -dy[y, x]
    longest = float(np.max(np.hypot(u, v))) if u.size else 0.0
    if longest >= 0.5:  # below half a pixel the directions are noise: no arrows
        scale = longest / (0.8 * step)
        ax.quiver(x, y, u, v, color="yellow", angles="xy", scale_units="xy", scale=scale, width=0.004)
    ax.text(0.02 * nx, 0.06 * ny, f"motion: max {longest:.1f} px", color="yellow", fontsize=7)


def scale_bar_um(field_um: float) -> float:
    """A round scale-bar length (µm) of at most about a third of a field ``field_um`` wide."""
    for length in (50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1):
        if length <= field_um / 3:
            return length
    return 0.1


def comparison_figure(
    path: str | Path,
    panels: Sequence[tuple[str, np.ndarray | None]],
    motion: np.ndarray | None = None,
    motion_on: int | None = None,
    title: str | None = None,
    pixel_size_um: float | None = None,
    shared_range: Sequence[int] | None = None,
    cmap: str = "gray",
    quiver_step: int | None = None,
    ncols: int | None = None,
    floor: float | None = None,
    limits: Mapping[int, tuple[float, float]] | None = None,
) -> Path:
    """Labelled images in a row (or rows of ``ncols``), optionally with the motion drawn as arrows on one panel.

    Parameters
    ----------
    path
        Output PNG.
    panels
        ``(label, image)`` pairs; ``None`` images are left blank.
    motion
        ``(2, Y, X)`` displacement (pixels) drawn on panel ``motion_on``: arrows scaled so the
        longest is 0.8 of their spacing, its length in pixels written on the panel.
    shared_range
        Indices of panels sharing one display range (default: all but the first).
    pixel_size_um
        Adds a scale bar (a round length, :func:`scale_bar_um`) to the first panel.
    ncols
        Panels per row (default all in one row); panel ``i`` goes to row ``i // ncols``.
    floor
        Lowest value of every display range (e.g. 0 for fluorescence densities: the negative
        lobes of band-limited images show as black, not as dark holes in a grey background).
    limits
        Display ranges ``(low, high)`` of chosen panels by index, overriding the shared and the
        per-panel ranges (e.g. one plane of a stack shown in the whole stack's range, so a plane
        holding only the faint axial tails of structures in other planes looks dark).
    """
    n = len(panels)
    cols = n if not ncols else max(1, min(int(ncols), n))
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows + 0.3), squeeze=False)
    axes = grid.ravel()
    for ax in axes[n:]:
        ax.axis("off")
    idx = list(range(1, n)) if shared_range is None else list(shared_range)
    shared = robust_limits([panels[i][1] for i in idx if panels[i][1] is not None]) if idx else None
    for i, (ax, (label, img)) in enumerate(zip(axes, panels)):
        ax.set_title(label, fontsize=10)
        ax.axis("off")
        if img is None:
            continue
        lim = limits[i] if limits and i in limits else shared if i in idx else robust_limits([img])
        if floor is not None and lim is not None and lim[0] < floor:
            lim = (floor, max(lim[1], floor + 1e-6))
        ax.imshow(img, cmap=cmap, vmin=lim[0], vmax=lim[1], interpolation="nearest")
        if motion is not None and motion_on == i:
            _motion_quiver(ax, motion, quiver_step or max(4, img.shape[0] // 8))
    if pixel_size_um and panels and panels[0][1] is not None:
        ny, nx = panels[0][1].shape
        length_um = scale_bar_um(nx * pixel_size_um)
        bar = length_um / pixel_size_um
        axes[0].plot([nx * 0.06, nx * 0.06 + bar], [ny * 0.93] * 2, color="white", lw=3)
        axes[0].text(nx * 0.06, ny * 0.89, f"{length_um:g} µm", color="white", fontsize=8)
        axes[0].set_xlim(-0.5, nx - 0.5)
        axes[0].set_ylim(ny - 0.5, -0.5)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
