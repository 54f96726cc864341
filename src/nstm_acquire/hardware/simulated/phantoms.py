"""Time-independent sample templates with known ground truth (the simulator's phantoms).

Coordinates follow ``docs/conventions.md``: ``(y, x)`` (3D: ``(z, y, x)``) in µm, the camera
field of view ``field_um = (h, w)`` has its origin at the centre of camera pixel ``(0, 0)``
and covers ``[0, h] x [0, w]``. So that content can move into view, every phantom generates
structure over the field **padded by 25 % on every side**, ``[-h/4, 5h/4] x [-w/4, 5w/4]``.

Evaluation. Each phantom is rasterised once at construction on a fine grid of pitch
``raster_pixel_um`` (at least 4x finer than its narrowest structure; defaults: cells 0.1 µm
= 1/5 of the smallest 0.5 µm granules, beads FWHM/8, filaments FWHM/6) that covers the padded
region plus a margin holding the tails of structures near its edge; the outermost raster
rows/columns are zero. ``evaluate`` interpolates bilinearly (a few ms for a 512 x 512 grid);
outside the raster it returns the background, 0. Bilinear interpolation of a Gaussian of
standard deviation σ sampled at pitch p lowers a peak that falls between raster samples by
up to ``p² / (8 σ²)`` per axis, at most ~2 % (beads) and ~4 % (filaments, ~2 % across a
straight stretch) in all, averaging half that. The raster *is* the ground truth:
:meth:`MovingSample.truth` returns exactly what the camera images.

3D fluorescent phantoms (``z_range_um`` given) rasterise one lateral plane per requested
``z`` on first use (about 1 ms for beads, up to ~25 ms for filaments) and keep planes in a
cache; motion is lateral, so the camera asks for the same planes again and again.

Phantoms:

* :class:`CellPhantom` (DPC): smooth elongated phase cells with a nucleus and granules and
  weak absorption; ``evaluate`` returns ``(mu, phi)``.
* :class:`BeadPhantom` (SIM): sub-resolution Gaussian beads, with pairs at set separations.
* :class:`FilamentPhantom` (SIM): smooth curved microtubule-like filaments.

All draw from ``numpy.random.default_rng(seed)`` and are deterministic.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "PADDING_FRACTION",
    "Phantom",
    "CellGeometry",
    "CellPhantom",
    "BeadPhantom",
    "FilamentPhantom",
    "bilinear_sample",
]

PADDING_FRACTION = 0.25
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548
_GAUSS_CUTOFF_SIGMA = 4.5  # Gaussians are truncated at 4.5 σ (relative value 4e-5)
_MAX_RASTER_PIXELS = 64_000_000
_PLANE_CACHE_BYTES = 256_000_000


# ----------------------------------------------------------------------------- helpers


def _check_field(field_um: tuple[float, float]) -> tuple[float, float]:
    try:
        h, w = (float(v) for v in field_um)
    except (TypeError, ValueError):
        raise ValueError(f"field_um={field_um!r} must be a pair (h, w) of lengths in µm") from None
    if not (h > 0 and w > 0 and math.isfinite(h) and math.isfinite(w)):
        raise ValueError(f"field_um={field_um!r} must be positive and finite (h, w) in µm")
    return h, w


def _check_z_range(z_range_um: tuple[float, float] | None) -> tuple[float, float] | None:
    if z_range_um is None:
        return None
    try:
        z0, z1 = (float(v) for v in z_range_um)
    except (TypeError, ValueError):
        raise ValueError(
            f"z_range_um={z_range_um!r} must be a pair (z0, z1) in µm or None"
        ) from None
    if not (math.isfinite(z0) and math.isfinite(z1) and z1 >= z0):
        raise ValueError(f"z_range_um={z_range_um!r} must be finite with z0 <= z1 (µm)")
    return z0, z1


def _range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a pair (min, max) in µm") from None
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"{name}={value!r} must satisfy 0 < min <= max (µm)")
    return lo, hi


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name}={value} must be a positive, finite number")
    return value


@dataclass(frozen=True)
class _RasterGrid:
    """A regular grid: sample ``(k, l)`` sits at ``(y0 + k p, x0 + l p)`` µm."""

    y0: float
    x0: float
    pixel_um: float
    ny: int
    nx: int

    @classmethod
    def covering(
        cls, y_lo: float, y_hi: float, x_lo: float, x_hi: float, pixel_um: float, what: str
    ) -> _RasterGrid:
        # one zero border sample on each side beyond the covered range
        ny = int(math.ceil((y_hi - y_lo) / pixel_um)) + 3
        nx = int(math.ceil((x_hi - x_lo) / pixel_um)) + 3
        if ny * nx > _MAX_RASTER_PIXELS:
            raise ValueError(
                f"{what}: raster of {ny} x {nx} samples at raster_pixel_um={pixel_um:g} is too "
                f"large (limit {_MAX_RASTER_PIXELS}); use a smaller field_um or a coarser "
                "raster_pixel_um"
            )
        return cls(y_lo - pixel_um, x_lo - pixel_um, pixel_um, ny, nx)

    @property
    def y(self) -> np.ndarray:
        return self.y0 + np.arange(self.ny) * self.pixel_um

    @property
    def x(self) -> np.ndarray:
        return self.x0 + np.arange(self.nx) * self.pixel_um


def bilinear_sample(
    raster: np.ndarray,
    y0_um: float,
    x0_um: float,
    pixel_um: float,
    y_um: np.ndarray,
    x_um: np.ndarray,
) -> np.ndarray:
    """Bilinear interpolation of ``raster`` (``(ny, nx)``, sample ``(k, l)`` at
    ``(y0 + k p, x0 + l p)`` µm) at the points ``(y_um, x_um)`` (broadcastable arrays, µm).

    Points are clamped onto the raster, so a raster whose outermost rows and columns are
    zero returns 0 outside itself. Returns an array of the broadcast shape with the
    raster's dtype (float32 or complex64 rasters give float32/complex64 results).
    """
    ny, nx = raster.shape
    inv = 1.0 / pixel_um
    fy = (np.asarray(y_um, dtype=np.float64) - y0_um) * inv
    fx = (np.asarray(x_um, dtype=np.float64) - x0_um) * inv
    np.clip(fy, 0.0, ny - 1.0, out=fy)
    np.clip(fx, 0.0, nx - 1.0, out=fx)
    iy = fy.astype(np.intp)
    ix = fx.astype(np.intp)
    np.minimum(iy, ny - 2, out=iy)
    np.minimum(ix, nx - 2, out=ix)
    wdtype = np.float32
    wy = (fy - iy).astype(wdtype)
    wx = (fx - ix).astype(wdtype)
    iy *= nx
    k = iy + ix  # broadcast flat index of the (top, left) corner
    flat = raster.ravel()
    v00 = np.take(flat, k)
    v01 = np.take(flat[1:], k)
    v10 = np.take(flat[nx:], k)
    v11 = np.take(flat[nx + 1 :], k)
    v01 -= v00
    v01 *= wx
    v00 += v01  # top row
    v11 -= v10
    v11 *= wx
    v10 += v11  # bottom row
    v10 -= v00
    v10 *= wy
    v00 += v10
    return v00


@dataclass(frozen=True)
class _Plane:
    """A raster holding all content of one plane: sample ``(k, l)`` at
    ``(y0 + k p, x0 + l p)`` µm; its outermost rows/columns are zero and it is zero outside."""

    raster: np.ndarray
    y0: float
    x0: float
    pixel_um: float
    empty: bool

    def sample(self, y_um: np.ndarray, x_um: np.ndarray) -> np.ndarray:
        if self.empty:
            shape = np.broadcast_shapes(np.shape(y_um), np.shape(x_um))
            return np.zeros(shape, dtype=self.raster.dtype)
        return bilinear_sample(self.raster, self.y0, self.x0, self.pixel_um, y_um, x_um)


def _splat_gaussians(
    grid: _RasterGrid,
    pos_y: np.ndarray,
    pos_x: np.ndarray,
    amplitude: np.ndarray,
    sigma_um: float,
) -> _Plane:
    """Rasterise ``Σ a_n exp(-|r - p_n|² / (2σ²))`` (each Gaussian truncated at 4.5 σ) on
    the part of ``grid`` that holds content, clipped to the grid's interior.

    Returns a float32 :class:`_Plane` covering the bounding box of the content plus a zero
    border sample on every side.
    """
    p = grid.pixel_um
    half = int(math.ceil(_GAUSS_CUTOFF_SIGMA * sigma_um / p))
    offsets = np.arange(-half, half + 1)
    cy = np.rint((pos_y - grid.y0) / p).astype(np.intp)
    cx = np.rint((pos_x - grid.x0) / p).astype(np.intp)
    # keep points whose patch touches the grid interior [1, n - 2]
    keep = (
        (cy + half >= 1)
        & (cy - half <= grid.ny - 2)
        & (cx + half >= 1)
        & (cx - half <= grid.nx - 2)
    )
    keep &= amplitude != 0
    if not np.any(keep):
        return _Plane(np.zeros((2, 2), np.float32), grid.y0, grid.x0, p, True)
    pos_y, pos_x, amplitude, cy, cx = pos_y[keep], pos_x[keep], amplitude[keep], cy[keep], cx[keep]
    # bounding box (grid indices) of all patches, within the interior, plus a zero border
    i_lo = max(1, int(cy.min()) - half) - 1
    i_hi = min(grid.ny - 2, int(cy.max()) + half) + 1
    j_lo = max(1, int(cx.min()) - half) - 1
    j_hi = min(grid.nx - 2, int(cx.max()) + half) + 1
    by, bx = i_hi - i_lo + 1, j_hi - j_lo + 1
    accum = np.zeros(by * bx)
    m = offsets.size
    chunk = max(1, 4_000_000 // (m * m))
    inv2s2 = 0.5 / sigma_um**2
    for start in range(0, pos_y.size, chunk):
        sl = slice(start, start + chunk)
        py, px, amp = pos_y[sl], pos_x[sl], amplitude[sl]
        iy = cy[sl, None] + offsets
        ix = cx[sl, None] + offsets
        gy = np.exp(-inv2s2 * (grid.y0 + iy * p - py[:, None]) ** 2)
        gx = np.exp(-inv2s2 * (grid.x0 + ix * p - px[:, None]) ** 2)
        gy[(iy < i_lo + 1) | (iy > i_hi - 1)] = 0.0
        gx[(ix < j_lo + 1) | (ix > j_hi - 1)] = 0.0
        iy = np.clip(iy, i_lo, i_hi) - i_lo
        ix = np.clip(ix, j_lo, j_hi) - j_lo
        weights = amp[:, None, None] * gy[:, :, None] * gx[:, None, :]
        flat = iy[:, :, None] * bx + ix[:, None, :]
        accum += np.bincount(flat.ravel(), weights.ravel(), minlength=accum.size)
    raster = accum.reshape(by, bx).astype(np.float32)
    return _Plane(raster, grid.y0 + i_lo * p, grid.x0 + j_lo * p, p, False)


class Phantom:
    """Base of the phantoms: a template rasterised over the padded field.

    Attributes
    ----------
    field_um
        ``(h, w)`` camera field of view in µm, origin at the centre of pixel ``(0, 0)``.
    contrast
        ``"phase"`` (``evaluate`` returns ``(mu, phi)``) or ``"fluorescence"`` (density).
    raster_pixel_um
        Pitch of the internal raster, µm.
    is_3d
        Whether ``evaluate`` takes (and requires) ``z_um``.
    """

    contrast: Literal["phase", "fluorescence"]
    field_um: tuple[float, float]
    raster_pixel_um: float
    is_3d: bool = False
    _grid: _RasterGrid

    @property
    def padded_region_um(self) -> tuple[float, float, float, float]:
        """``(y_min, y_max, x_min, x_max)`` in µm of the region structure is generated in."""
        h, w = self.field_um
        return (
            -PADDING_FRACTION * h,
            (1 + PADDING_FRACTION) * h,
            -PADDING_FRACTION * w,
            (1 + PADDING_FRACTION) * w,
        )

    @property
    def extent_um(self) -> tuple[float, float, float, float]:
        """``(y_min, y_max, x_min, x_max)`` in µm of the raster; outside it the template is 0."""
        g = self._grid
        return (g.y0, g.y0 + (g.ny - 1) * g.pixel_um, g.x0, g.x0 + (g.nx - 1) * g.pixel_um)

    @property
    def field_centre_um(self) -> tuple[float, float]:
        """``(h / 2, w / 2)`` µm, the default centre of rotations and swirls."""
        return (0.5 * self.field_um[0], 0.5 * self.field_um[1])

    def _check_z(self, z_um) -> None:
        if self.is_3d and z_um is None:
            raise ValueError(
                f"{type(self).__name__} is 3D (z_range_um given): pass z_um (µm) to evaluate"
            )
        if not self.is_3d and z_um is not None:
            raise ValueError(
                f"{type(self).__name__} is 2D (z_range_um=None): z_um must be None; build it "
                "with z_range_um=(z0, z1) for a 3D sample"
            )


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class CellGeometry:
    """Ground-truth geometry of one cell of a :class:`CellPhantom` (µm, rad).

    ``orientation_rad`` is the angle of the major axis from +x toward +y (array frame).
    ``granules_um`` is ``(n, 2)`` granule centres ``(y, x)``.
    """

    centre_um: tuple[float, float]
    semi_axes_um: tuple[float, float]
    orientation_rad: float
    nucleus_centre_um: tuple[float, float]
    nucleus_semi_axes_um: tuple[float, float]
    nucleus_orientation_rad: float
    granules_um: np.ndarray
    granule_fwhm_um: np.ndarray
    shape_harmonics: tuple[float, float, float, float]  # (eps2, phase2, eps3, phase3)


def _ellipse_terms(
    yy: np.ndarray,
    xx: np.ndarray,
    centre: tuple[float, float],
    semi: tuple[float, float],
    angle: float,
    harmonics: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius ρ (1 on the boundary) and approximate signed distance (µm,
    negative inside) of a (harmonically perturbed) ellipse."""
    a, b = semi
    c, s = math.cos(angle), math.sin(angle)
    dy = yy - centre[0]
    dx = xx - centre[1]
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    rho = np.sqrt(u * u + v * v)
    psi = np.arctan2(v, u)
    eps2, ph2, eps3, ph3 = harmonics
    scale = 1.0 + eps2 * np.cos(2 * psi + ph2) + eps3 * np.cos(3 * psi + ph3)
    rho_eff = rho / scale
    # |∇ρ| of an ellipse depends only on the direction ψ: sqrt(cos²ψ/a² + sin²ψ/b²)
    grad = np.sqrt((np.cos(psi) / a) ** 2 + (np.sin(psi) / b) ** 2)
    signed_distance = (rho_eff - 1.0) * scale / grad
    return rho_eff, signed_distance


def _smooth_inside(signed_distance: np.ndarray, edge_width_um: float) -> np.ndarray:
    """1 inside, 0 outside, with a tanh edge whose 10-90 % width is ``edge_width_um``."""
    w = edge_width_um / (2.0 * math.atanh(0.8))
    return 0.5 * (1.0 - np.tanh(signed_distance / w))


class CellPhantom(Phantom):
    """DPC sample: smooth elongated phase cells with nuclei, granules and weak absorption.

    Each cell is a smooth, slightly irregular ellipse (semi-major axis drawn from
    ``cell_radius_um``, aspect 0.45-0.8, random orientation) whose thickness profile is a
    dome (1 at the centre, 0.35 at the rim) with a tanh edge of 10-90 % width
    ``edge_width_um``. A nucleus (about a third of the cell, its own 0.6 µm edge) and 3-8
    Gaussian granules (FWHM drawn from ``granule_fwhm_um``) sit inside. With unit-peak
    component maps
    ``body``, ``nucleus`` and ``granules``::

        phi = phase_rad  * (body + 0.6 nucleus + 0.35 granules)     (rad; peak ≈ 1.6 phase_rad)
        mu  = absorption * (body + 1.0 nucleus + 1.5 granules)      (dimensionless)

    Overlapping cells add (stacked thickness). Cell centres are spread over the padded
    field by rejection sampling (centres at least the sum of the minor semi-axes apart);
    when the field is too crowded for that, later cells are allowed to overlap.

    ``evaluate(y_um, x_um)`` returns ``(mu, phi)`` float32 arrays of the broadcast shape.
    ``cells`` holds each cell's :class:`CellGeometry`.

    Sampling: the template is point-sampled by :meth:`MovingSample.on_grid`; its finest
    content (edges, granules) has spectral weight up to about ``1 / min(edge_width_um,
    granule FWHM)`` cycles/µm, so on a camera grid coarser than ~0.25 µm pass
    ``upsample`` or larger ``granule_fwhm_um`` / ``edge_width_um`` to avoid aliasing.
    """

    contrast = "phase"

    def __init__(
        self,
        field_um: tuple[float, float],
        n_cells: int = 12,
        seed: int = 0,
        phase_rad: float = 1.0,
        absorption: float = 0.05,
        cell_radius_um: tuple[float, float] = (4.0, 9.0),
        edge_width_um: float = 0.8,
        granule_fwhm_um: tuple[float, float] = (0.5, 0.9),
        raster_pixel_um: float | None = None,
    ) -> None:
        self.field_um = _check_field(field_um)
        if int(n_cells) != n_cells or n_cells < 0:
            raise ValueError(f"n_cells={n_cells} must be a non-negative integer")
        self.n_cells = int(n_cells)
        self.seed = int(seed)
        self.phase_rad = float(phase_rad)
        if not (math.isfinite(self.phase_rad) and self.phase_rad >= 0):
            raise ValueError(f"phase_rad={phase_rad} must be finite and >= 0 (radians)")
        self.absorption = float(absorption)
        if not (math.isfinite(self.absorption) and self.absorption >= 0):
            raise ValueError(f"absorption={absorption} must be finite and >= 0")
        self.cell_radius_um = _range("cell_radius_um", cell_radius_um)
        self.granule_fwhm_um = _range("granule_fwhm_um", granule_fwhm_um)
        self.edge_width_um = _positive("edge_width_um", edge_width_um)
        finest = min(self.edge_width_um, self.granule_fwhm_um[0])  # narrowest structure
        if raster_pixel_um is None:
            raster_pixel_um = finest / 5.0
        self.raster_pixel_um = _positive("raster_pixel_um", raster_pixel_um)
        if self.raster_pixel_um > finest / 4.0:
            raise ValueError(
                f"raster_pixel_um={raster_pixel_um} must be at most {finest / 4.0:g} µm (a quarter "
                "of the narrowest structure: edge_width_um or the smallest granule_fwhm_um)"
            )

        rng = np.random.default_rng(self.seed)
        self.cells = self._draw_cells(rng)
        y_lo, y_hi, x_lo, x_hi = self.padded_region_um
        margin = self.cell_radius_um[1] * 1.25 + 3.0 * self.edge_width_um
        self._grid = _RasterGrid.covering(
            y_lo - margin,
            y_hi + margin,
            x_lo - margin,
            x_hi + margin,
            self.raster_pixel_um,
            "CellPhantom",
        )
        self._raster = self._rasterise()

    def _draw_cells(self, rng: np.random.Generator) -> list[CellGeometry]:
        y_lo, y_hi, x_lo, x_hi = self.padded_region_um
        r0, r1 = self.cell_radius_um
        cells: list[CellGeometry] = []
        for _ in range(self.n_cells):
            a = rng.uniform(r0, r1)
            b = a * rng.uniform(0.45, 0.8)
            for _attempt in range(200):
                cy, cx = rng.uniform(y_lo, y_hi), rng.uniform(x_lo, x_hi)
                if all(
                    math.hypot(cy - c.centre_um[0], cx - c.centre_um[1]) >= b + c.semi_axes_um[1]
                    for c in cells
                ):
                    break
            angle = rng.uniform(0.0, math.pi)
            harmonics = (
                rng.uniform(0, 0.08),
                rng.uniform(0, 2 * math.pi),
                rng.uniform(0, 0.06),
                rng.uniform(0, 2 * math.pi),
            )
            an = a * rng.uniform(0.3, 0.4)
            bn = min(b * rng.uniform(0.55, 0.7), an)
            off_u = rng.uniform(-0.5, 0.5) * max(0.0, 0.7 * a - an)
            off_v = rng.uniform(-0.5, 0.5) * max(0.0, 0.7 * b - bn)
            c, s = math.cos(angle), math.sin(angle)
            nucleus_centre = (cy + off_u * s + off_v * c, cx + off_u * c - off_v * s)
            nucleus_angle = angle + rng.uniform(-0.3, 0.3)
            n_granules = int(rng.integers(3, 9))
            granules = []
            for _attempt in range(50 * n_granules):
                if len(granules) == n_granules:
                    break
                rho = 0.8 * math.sqrt(rng.uniform(0.0, 1.0))
                psi = rng.uniform(0.0, 2 * math.pi)
                u, v = rho * a * math.cos(psi), rho * b * math.sin(psi)
                gy, gx = cy + u * s + v * c, cx + u * c - v * s
                rn, _ = _ellipse_terms(
                    np.array(gy), np.array(gx), nucleus_centre, (an, bn), nucleus_angle
                )
                if float(rn) > 1.2:
                    granules.append((gy, gx))
            granules_arr = np.array(granules, dtype=np.float64).reshape(-1, 2)
            fwhm = rng.uniform(*self.granule_fwhm_um, size=len(granules_arr))
            cells.append(
                CellGeometry(
                    centre_um=(cy, cx),
                    semi_axes_um=(a, b),
                    orientation_rad=angle,
                    nucleus_centre_um=nucleus_centre,
                    nucleus_semi_axes_um=(an, bn),
                    nucleus_orientation_rad=nucleus_angle,
                    granules_um=granules_arr,
                    granule_fwhm_um=fwhm,
                    shape_harmonics=harmonics,
                )
            )
        return cells

    def components(
        self, cell: CellGeometry, y_um: np.ndarray, x_um: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Analytic unit-peak ``(body, nucleus, granules)`` maps of one cell at ``(y_um, x_um)``."""
        rho, dist = _ellipse_terms(
            y_um,
            x_um,
            cell.centre_um,
            cell.semi_axes_um,
            cell.orientation_rad,
            cell.shape_harmonics,
        )
        body = (0.35 + 0.65 * (1.0 - np.minimum(rho, 1.0) ** 2)) * _smooth_inside(
            dist, self.edge_width_um
        )
        rn, dn = _ellipse_terms(
            y_um,
            x_um,
            cell.nucleus_centre_um,
            cell.nucleus_semi_axes_um,
            cell.nucleus_orientation_rad,
        )
        nucleus = (0.7 + 0.3 * (1.0 - np.minimum(rn, 1.0) ** 2)) * _smooth_inside(dn, 0.6)
        granules = np.zeros(np.broadcast_shapes(np.shape(y_um), np.shape(x_um)))
        for (gy, gx), fwhm in zip(cell.granules_um, cell.granule_fwhm_um, strict=True):
            sigma = fwhm / _FWHM_PER_SIGMA
            granules = granules + np.exp(-((y_um - gy) ** 2 + (x_um - gx) ** 2) / (2 * sigma**2))
        return body, nucleus, granules

    def _rasterise(self) -> np.ndarray:
        g = self._grid
        raster = np.zeros((g.ny, g.nx), dtype=np.complex64)  # mu + i phi
        ys, xs = g.y, g.x
        for cell in self.cells:
            reach = cell.semi_axes_um[0] * 1.2 + 3.0 * self.edge_width_um
            cy, cx = cell.centre_um
            i0 = max(1, int(math.floor((cy - reach - g.y0) / g.pixel_um)))
            i1 = min(g.ny - 1, int(math.ceil((cy + reach - g.y0) / g.pixel_um)) + 1)
            j0 = max(1, int(math.floor((cx - reach - g.x0) / g.pixel_um)))
            j1 = min(g.nx - 1, int(math.ceil((cx + reach - g.x0) / g.pixel_um)) + 1)
            if i1 <= i0 or j1 <= j0:
                continue
            yy = ys[i0:i1, None]
            xx = xs[None, j0:j1]
            body, nucleus, granules = self.components(cell, yy, xx)
            phi = self.phase_rad * (body + 0.6 * nucleus + 0.35 * granules)
            mu = self.absorption * (body + 1.0 * nucleus + 1.5 * granules)
            raster[i0:i1, j0:j1] += (mu + 1j * phi).astype(np.complex64)
        return raster

    def evaluate(
        self, y_um: np.ndarray, x_um: np.ndarray, z_um: None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Absorption ``mu`` and phase ``phi`` (rad) at ``(y_um, x_um)`` (µm, broadcastable).

        Returns two float32 arrays of the broadcast shape; 0 outside the raster.
        """
        self._check_z(z_um)
        g = self._grid
        t = bilinear_sample(self._raster, g.y0, g.x0, g.pixel_um, y_um, x_um)
        return np.ascontiguousarray(t.real), np.ascontiguousarray(t.imag)


# ----------------------------------------------------------------------------- fluorescence


class _FluorescentPhantom(Phantom):
    """Shared machinery of bead and filament phantoms: Gaussian point clouds splatted on
    the raster (2D once; 3D one plane per z, cached)."""

    contrast = "fluorescence"
    _points_zyx: np.ndarray  # (N, 3) or (N, 2) splat centres
    _point_amplitude: np.ndarray
    _sigma_um: float

    def _init_raster(self, margin_um: float, what: str) -> None:
        y_lo, y_hi, x_lo, x_hi = self.padded_region_um
        self._grid = _RasterGrid.covering(
            y_lo - margin_um,
            y_hi + margin_um,
            x_lo - margin_um,
            x_hi + margin_um,
            self.raster_pixel_um,
            what,
        )
        self._planes: OrderedDict[float, _Plane] = OrderedDict()
        self._planes_bytes = 0
        self._lock = threading.Lock()
        if not self.is_3d:
            self._plane2d = self._plane_raster(None)

    def _plane_raster(self, z_um: float | None) -> _Plane:
        pts = self._points_zyx
        amp = self._point_amplitude
        if z_um is not None:
            dz = pts[:, 0] - z_um
            near = np.abs(dz) <= _GAUSS_CUTOFF_SIGMA * self._sigma_um
            amp = amp[near] * np.exp(-0.5 * (dz[near] / self._sigma_um) ** 2)
            pts = pts[near]
        return _splat_gaussians(self._grid, pts[:, -2], pts[:, -1], amp, self._sigma_um)

    def plane(self, z_um: float | None) -> _Plane:
        """The rasterised plane at ``z_um`` (µm; None for a 2D phantom).

        3D planes are built on first use and cached (least recently used first out, up to
        256 MB of rasters).
        """
        if not self.is_3d:
            return self._plane2d
        key = round(float(z_um), 9)
        with self._lock:
            plane = self._planes.get(key)
            if plane is not None:
                self._planes.move_to_end(key)
                return plane
        plane = self._plane_raster(key)
        with self._lock:
            if key not in self._planes:
                self._planes[key] = plane
                self._planes_bytes += plane.raster.nbytes
            while self._planes_bytes > _PLANE_CACHE_BYTES and len(self._planes) > 1:
                _, old = self._planes.popitem(last=False)
                self._planes_bytes -= old.raster.nbytes
        return plane

    def evaluate(
        self, y_um: np.ndarray, x_um: np.ndarray, z_um: np.ndarray | float | None = None
    ) -> np.ndarray:
        """Fluorescence density (peak 1 per isolated structure) at ``(y_um, x_um[, z_um])``, µm.

        Arrays broadcast together; ``z_um`` is required for a 3D phantom (a scalar plane or
        an array; distinct z values are evaluated plane by plane) and must be None for 2D.
        Returns float32 of the broadcast shape; 0 outside the raster.
        """
        self._check_z(z_um)
        if not self.is_3d:
            return self._plane2d.sample(y_um, x_um)
        z = np.asarray(z_um, dtype=np.float64)
        if z.size == 1:
            out = self.plane(float(z.reshape(()))).sample(y_um, x_um)
            return np.broadcast_to(out, np.broadcast_shapes(out.shape, z.shape)).copy()
        shape = np.broadcast_shapes(np.shape(y_um), np.shape(x_um), z.shape)
        yb = np.broadcast_to(np.asarray(y_um, dtype=np.float64), shape)
        xb = np.broadcast_to(np.asarray(x_um, dtype=np.float64), shape)
        zb = np.broadcast_to(z, shape)
        out = np.zeros(shape, dtype=np.float32)
        levels, inverse = np.unique(zb, return_inverse=True)
        inverse = inverse.reshape(shape)
        for index, level in enumerate(levels):
            mask = inverse == index
            out[mask] = self.plane(float(level)).sample(yb[mask], xb[mask])
        return out


class BeadPhantom(_FluorescentPhantom):
    """SIM sample: sub-resolution fluorescent beads with resolution-test pairs.

    Every bead is a Gaussian of peak 1 and FWHM ``diameter_um`` (isotropic in 3D). For each
    separation in ``pair_separations_um`` there are ``n_pairs_each`` pairs (random
    orientation, both beads in the same z plane) centred inside the inner 80 % of the field,
    at least ``5 * diameter + max separation`` from any other pair or bead; then
    ``n_beads`` further single beads are spread uniformly over the padded field
    (so the total is ``n_beads + 2 * n_pairs``), kept the same clearance from the pairs.
    With ``z_range_um=(z0, z1)`` the beads are 3D with z uniform in the range.

    ``positions_um`` is ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` in µm (pairs first);
    ``pairs`` lists ``(i, j, separation_um)`` with indices into ``positions_um``.
    """

    def __init__(
        self,
        field_um: tuple[float, float],
        n_beads: int = 60,
        diameter_um: float = 0.19,
        seed: int = 0,
        pair_separations_um: tuple[float, ...] = (0.12, 0.16, 0.20, 0.25),
        n_pairs_each: int = 3,
        z_range_um: tuple[float, float] | None = None,
        raster_pixel_um: float | None = None,
    ) -> None:
        self.field_um = _check_field(field_um)
        if int(n_beads) != n_beads or n_beads < 0:
            raise ValueError(f"n_beads={n_beads} must be a non-negative integer")
        if int(n_pairs_each) != n_pairs_each or n_pairs_each < 0:
            raise ValueError(f"n_pairs_each={n_pairs_each} must be a non-negative integer")
        self.diameter_um = _positive("diameter_um", diameter_um)
        seps = tuple(float(s) for s in pair_separations_um)
        if any(not (s > 0 and math.isfinite(s)) for s in seps):
            raise ValueError(
                f"pair_separations_um={pair_separations_um!r} must all be positive (µm)"
            )
        self.pair_separations_um = seps
        self.seed = int(seed)
        self.z_range_um = _check_z_range(z_range_um)
        self.is_3d = self.z_range_um is not None
        self._set_raster_pixel(raster_pixel_um)
        rng = np.random.default_rng(self.seed)
        positions, pairs = self._place(rng, int(n_beads), int(n_pairs_each))
        self._finish(positions, pairs)

    @classmethod
    def from_positions(
        cls,
        field_um: tuple[float, float],
        positions_um: np.ndarray,
        diameter_um: float = 0.19,
        raster_pixel_um: float | None = None,
    ) -> BeadPhantom:
        """Beads at given positions, µm: ``(N, 2)`` ``(y, x)`` or ``(N, 3)`` ``(z, y, x)`` (3D).

        ``pairs`` is empty; a 3D phantom's ``z_range_um`` is the range of the given z.
        """
        pos = np.asarray(positions_um, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] not in (2, 3) or not np.all(np.isfinite(pos)):
            raise ValueError(
                f"positions_um of shape {pos.shape} must be finite, (N, 2) (y, x) or "
                "(N, 3) (z, y, x)"
            )
        self = cls.__new__(cls)
        self.field_um = _check_field(field_um)
        self.diameter_um = _positive("diameter_um", diameter_um)
        self.pair_separations_um = ()
        self.seed = None
        self.is_3d = pos.shape[1] == 3
        self.z_range_um = (
            (float(pos[:, 0].min()), float(pos[:, 0].max())) if self.is_3d and len(pos) else None
        )
        if self.is_3d and self.z_range_um is None:
            self.z_range_um = (0.0, 0.0)
        self._set_raster_pixel(raster_pixel_um)
        self._finish(pos, [])
        return self

    def _set_raster_pixel(self, raster_pixel_um: float | None) -> None:
        if raster_pixel_um is None:
            raster_pixel_um = self.diameter_um / 8.0
        self.raster_pixel_um = _positive("raster_pixel_um", raster_pixel_um)
        if self.raster_pixel_um > self.diameter_um / 4.0:
            raise ValueError(
                f"raster_pixel_um={raster_pixel_um} must be at most diameter_um/4 = "
                f"{self.diameter_um / 4.0:g} µm"
            )

    def _finish(self, positions: np.ndarray, pairs: list) -> None:
        self.positions_um = positions
        self.pairs = pairs
        self._sigma_um = self.diameter_um / _FWHM_PER_SIGMA
        self._points_zyx = positions
        self._point_amplitude = np.ones(len(positions))
        self._init_raster(
            _GAUSS_CUTOFF_SIGMA * self._sigma_um + self.raster_pixel_um, "BeadPhantom"
        )

    def _place(
        self, rng: np.random.Generator, n_beads: int, n_pairs_each: int
    ) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
        h, w = self.field_um
        clearance = 5.0 * self.diameter_um + max(self.pair_separations_um, default=0.0)
        pair_centres: list[tuple[float, float]] = []
        lateral: list[tuple[float, float]] = []
        zs: list[float] = []
        pairs: list[tuple[int, int, float]] = []

        def draw_z() -> float:
            return float(rng.uniform(*self.z_range_um)) if self.is_3d else 0.0

        for sep in self.pair_separations_um:
            for _ in range(n_pairs_each):
                for _attempt in range(2000):
                    cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
                    if all(math.hypot(cy - py, cx - px) >= clearance for py, px in pair_centres):
                        break
                else:
                    raise ValueError(
                        f"field_um={self.field_um} is too small to place "
                        f"{len(self.pair_separations_um) * n_pairs_each} bead pairs "
                        f"{clearance:.2f} µm apart; reduce n_pairs_each or enlarge the field"
                    )
                pair_centres.append((cy, cx))
                angle = rng.uniform(0.0, math.pi)
                oy, ox = 0.5 * sep * math.sin(angle), 0.5 * sep * math.cos(angle)
                z = draw_z()
                i = len(lateral)
                lateral += [(cy - oy, cx - ox), (cy + oy, cx + ox)]
                zs += [z, z]
                pairs.append((i, i + 1, sep))
        y_lo, y_hi, x_lo, x_hi = self.padded_region_um
        for _ in range(n_beads):
            for _attempt in range(2000):
                by, bx = rng.uniform(y_lo, y_hi), rng.uniform(x_lo, x_hi)
                if all(math.hypot(by - py, bx - px) >= clearance for py, px in pair_centres):
                    break
            else:
                raise ValueError(
                    f"field_um={self.field_um} is too small to keep {n_beads} single beads "
                    f"{clearance:.2f} µm from the pairs; reduce n_beads or n_pairs_each"
                )
            lateral.append((by, bx))
            zs.append(draw_z())
        lat = np.array(lateral, dtype=np.float64).reshape(-1, 2)
        positions = np.column_stack([np.array(zs), lat]) if self.is_3d else lat
        return positions, pairs


class FilamentPhantom(_FluorescentPhantom):
    """SIM sample: smooth curved filaments (microtubule-like), optionally tilted in 3D.

    Each filament's centre line has a Gaussian cross-section of FWHM ``width_um`` and peak
    1 (crossings add). Curvature varies smoothly along the line, with radius of curvature
    at least ``min_curvature_radius_um`` (default ``max(2, 0.4 min(h, w))`` µm); lines run
    through the field and across the whole padded region. Filament 1 starts on filament 0
    at a 30-150° angle, so at least one crossing exists (when ``n_filaments >= 2``). The
    last ``n_parallel_pairs`` (default ``n_filaments // 4``) filaments are offset copies
    of others, 0.15-0.3 µm apart (``parallel_pairs``: ``(i, j, separation_um)``).
    With ``z_range_um=(z0, z1)`` each filament is tilted: its z varies linearly along its
    length between two values drawn in the range (a parallel partner shares its z).

    ``centerlines_um`` lists each filament's centre line, ``(n, 2)`` ``(y, x)`` or ``(n, 3)``
    ``(z, y, x)`` in µm, sampled every ``step_um`` (<= 0.1 µm).
    """

    def __init__(
        self,
        field_um: tuple[float, float],
        n_filaments: int = 8,
        width_um: float = 0.05,
        seed: int = 0,
        z_range_um: tuple[float, float] | None = None,
        n_parallel_pairs: int | None = None,
        min_curvature_radius_um: float | None = None,
        raster_pixel_um: float | None = None,
    ) -> None:
        self.field_um = _check_field(field_um)
        if int(n_filaments) != n_filaments or n_filaments < 0:
            raise ValueError(f"n_filaments={n_filaments} must be a non-negative integer")
        n_filaments = int(n_filaments)
        if n_parallel_pairs is None:
            n_parallel_pairs = n_filaments // 4
        if (
            int(n_parallel_pairs) != n_parallel_pairs
            or not 0 <= n_parallel_pairs <= n_filaments // 2
        ):
            raise ValueError(
                f"n_parallel_pairs={n_parallel_pairs} must be an integer in [0, n_filaments // 2 = "
                f"{n_filaments // 2}]"
            )
        self.n_filaments = n_filaments
        self.width_um = _positive("width_um", width_um)
        self.seed = int(seed)
        self.z_range_um = _check_z_range(z_range_um)
        self.is_3d = self.z_range_um is not None
        h, w = self.field_um
        if min_curvature_radius_um is None:
            min_curvature_radius_um = max(2.0, 0.4 * min(h, w))
        self.min_curvature_radius_um = _positive("min_curvature_radius_um", min_curvature_radius_um)
        if raster_pixel_um is None:
            raster_pixel_um = self.width_um / 6.0
        self.raster_pixel_um = _positive("raster_pixel_um", raster_pixel_um)
        if self.raster_pixel_um > self.width_um / 4.0:
            raise ValueError(
                f"raster_pixel_um={raster_pixel_um} must be at most width_um/4 = "
                f"{self.width_um / 4.0:g} µm"
            )
        self._sigma_um = self.width_um / _FWHM_PER_SIGMA
        self.step_um = min(0.1, 0.005 * min(h, w))
        margin = 1.0 + _GAUSS_CUTOFF_SIGMA * self._sigma_um
        rng = np.random.default_rng(self.seed)
        self.centerlines_um, self.parallel_pairs = self._draw(rng, int(n_parallel_pairs), margin)
        self._points_zyx, self._point_amplitude = self._densify()
        self._init_raster(margin, "FilamentPhantom")

    def _trace(
        self, rng: np.random.Generator, start: tuple[float, float], heading: float, margin: float
    ) -> np.ndarray:
        """A smooth curve through ``start`` (µm) with initial heading (rad from +x toward +y),
        cropped to the padded region plus ``margin``; ``(n, 2)`` (y, x)."""
        y_lo, y_hi, x_lo, x_hi = self.padded_region_um
        y_lo, y_hi, x_lo, x_hi = y_lo - margin, y_hi + margin, x_lo - margin, x_hi + margin
        half_length = math.hypot(y_hi - y_lo, x_hi - x_lo)
        n_half = int(math.ceil(half_length / self.step_um))
        s = np.arange(-n_half, n_half + 1) * self.step_um
        kappa_max = 1.0 / self.min_curvature_radius_um
        theta = np.full_like(s, heading)
        for weight in (0.6, 0.4):
            period = rng.uniform(0.5, 1.5) * half_length
            phase = rng.uniform(0, 2 * math.pi)
            k = 2 * math.pi / period
            # heading = ∫ κ ds with κ(s) = kappa_max * weight * sin(k s + phase)
            theta -= kappa_max * weight / k * (np.cos(k * s + phase) - math.cos(phase))
        dy = np.sin(theta) * self.step_um
        dx = np.cos(theta) * self.step_um
        y = start[0] + np.concatenate(([0.0], np.cumsum(dy[:-1])))
        x = start[1] + np.concatenate(([0.0], np.cumsum(dx[:-1])))
        y -= y[n_half] - start[0]
        x -= x[n_half] - start[1]
        inside = (y >= y_lo) & (y <= y_hi) & (x >= x_lo) & (x <= x_hi)
        # the contiguous run through the start point
        lo = n_half
        while lo > 0 and inside[lo - 1]:
            lo -= 1
        hi = n_half
        while hi < len(s) - 1 and inside[hi + 1]:
            hi += 1
        return np.column_stack([y[lo : hi + 1], x[lo : hi + 1]])

    def _draw(self, rng: np.random.Generator, n_pairs: int, margin: float):
        h, w = self.field_um
        n_independent = self.n_filaments - n_pairs
        lines: list[np.ndarray] = []
        for index in range(n_independent):
            if index == 1:
                # start on filament 0, inside the field, at a clear angle: a crossing
                base = lines[0]
                in_field = np.flatnonzero(
                    (base[:, 0] > 0.2 * h)
                    & (base[:, 0] < 0.8 * h)
                    & (base[:, 1] > 0.2 * w)
                    & (base[:, 1] < 0.8 * w)
                )
                k = int(rng.choice(in_field)) if in_field.size else len(base) // 2
                k = min(max(k, 1), len(base) - 2)
                tangent = base[k + 1] - base[k - 1]
                heading = math.atan2(tangent[0], tangent[1]) + rng.uniform(
                    math.pi / 6, 5 * math.pi / 6
                )
                start = (float(base[k, 0]), float(base[k, 1]))
            else:
                start = (rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w))
                heading = rng.uniform(0.0, 2 * math.pi)
            lines.append(self._trace(rng, start, heading, margin))
        pairs: list[tuple[int, int, float]] = []
        for p in range(n_pairs):
            source = n_independent - 1 - p
            base = lines[source]
            tangent = np.gradient(base, axis=0)
            tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
            normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
            sep = float(rng.uniform(0.15, 0.3))
            sign = 1.0 if rng.uniform() < 0.5 else -1.0
            lines.append(base + sign * sep * normal)
            pairs.append((source, len(lines) - 1, sep))
        if self.is_3d:
            z0, z1 = self.z_range_um
            tilts = [rng.uniform(z0, z1, size=2) for _ in range(n_independent)]
            for p in range(n_pairs):
                tilts.append(tilts[n_independent - 1 - p])
            out = []
            for line, (za, zb) in zip(lines, tilts, strict=True):
                z = np.linspace(za, zb, len(line))
                out.append(np.column_stack([z, line]))
            lines = out
        return lines, pairs

    def _densify(self) -> tuple[np.ndarray, np.ndarray]:
        """Resample every centre line at ~0.8 σ; each point carries ds / (√(2π) σ) so a
        straight line's cross-section peaks at 1."""
        spacing = 0.8 * self._sigma_um
        points, amps = [], []
        for line in self.centerlines_um:
            seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
            arc = np.concatenate(([0.0], np.cumsum(seg)))
            if arc[-1] <= 0:
                continue
            n = int(math.ceil(arc[-1] / spacing)) + 1
            s = np.linspace(0.0, arc[-1], n)
            ds = arc[-1] / (n - 1)
            dense = np.column_stack([np.interp(s, arc, line[:, k]) for k in range(line.shape[1])])
            weight = np.full(n, ds / (math.sqrt(2 * math.pi) * self._sigma_um))
            weight[[0, -1]] *= 0.5
            points.append(dense)
            amps.append(weight)
        dim = 3 if self.is_3d else 2
        if not points:
            return np.zeros((0, dim)), np.zeros(0)
        return np.concatenate(points), np.concatenate(amps)
