"""SIM illumination parameters from the data: band separation, cross-correlation, plausibility.

What is estimated, per orientation ``d`` (``docs/conventions.md`` "SIM illumination",
FORMAT.md SIM ``illumination``): the finest lateral pattern frequency ``k_per_um[d] = [k_y, k_x]``
(cycles/µm), the phase of shot ``p = 0`` of the fundamental order ``phase_rad[d]`` (rad) and the
modulation of each order (two-beam ``[m]``, three-beam ``[m1, m2]``), comparable to the
pattern's true modulation (the OTF and camera-pixel attenuation are divided out).

Method (in the spirit of fairSIM; written from the equations)
-------------------------------------------------------------
1. The orders of orientation ``d`` are separated with the known phase steps:
   ``b_m = (1/N) Σ_p D_p exp(-i 2π m p / N)``. Order ``m`` then holds
   ``c_m e^{i m φ} H_m(q) ρ̃(q - m k_m)`` (``c_0 = 1``, two-beam ``c_1 = m/2``; three-beam
   ``c_1 = m1/2`` at ``k/2``, ``c_2 = m2/2`` at ``k``), ``H_m`` the order's transfer (OTF times
   the camera pixel integration; three-beam: the 3D transfer of :mod:`.sim_otf` over the whole
   stack, order 1 with its axial modulation).
2. With ``Y1(q) = b_m(q) H_0(q - k)`` and ``Y0(q) = b_0(q - k) H_m(q)``, both equal
   ``a H_0(q - k) H_m(q) ρ̃(q - k)`` (resp. without ``a = c_m e^{i m φ}``) when ``k`` is the
   true shift, so the normalised cross-correlation ``|<Y1, Y0>| / (|Y1| |Y0|)`` reaches its
   maximum (1 without noise) there. Its numerator is the Fourier transform at ``k`` of the
   real-space product of the two OTF-weighted bands on a 2x finer grid (no aliasing), so the
   coarse search is one FFT; the denominators are FFT correlations of ``|b|²`` with ``H²``.
   The lowest frequencies of ``b_0`` (``|q| < low_frequency_cut`` of the cut-off: background and
   haze that the pattern does not modulate) are left out.
3. Coarse peak, on edge-tapered frames (``edge_taper``): on the integer frequency grid, in a ring
   around the expected ``|k|`` (configured ``k_per_um``, else ``expected``'s, else
   ``expected_fraction_of_cutoff``), or over the whole passband ``[0.1, 0.98] × 2NA/λ`` when
   nothing is expected; then sub-pixel by Nelder-Mead with an exact direct DFT at the off-grid
   ``k``. Around an expected ``|k|`` the three highest coarse peaks are refined (step 4) and
   the one with the highest untapered correlation is kept: on a sparse bead sample a peak of
   the sample's own spectrum can outshine the pattern's on the tapered frames (measured on the
   simulated microscope's static 128 x 128 x 8 three-beam store: two of three orientations
   locked 10 % below ``|k|`` at correlation 0.74-0.75; the pattern's peak refines to 0.95).
4. Refinement without the taper's bias (a taper does not commute with the blur): in real space
   ``Y1 = a Y0`` point by point at the true shift, so ``Y1 conj(Y0)`` at ``k + δ`` carries the
   phase ramp ``exp(-i 2π δ·r)``; ``δ`` maximises the modulus of the Fourier transform of that
   product weighted by an interior window (which excludes the field edges, where the periodic
   FFT of non-periodic frames is wrong). A few passes converge to the exact shift on
   noise-free data (tested to 1e-4 of a frequency pixel).
5. ``a = <Y1, Y0>_w / <Y0, Y0>_w`` at the refined ``k``: modulation ``2|a|``, phase ``arg a``.
   Three-beam: ``k`` from order 2 (the finest), then order 1 at ``k/2`` (axial frequency
   ``axial_k_per_um`` or the beam geometry's) gives ``φ`` and ``m1``; order 2 gives ``m2`` and a
   consistency check ``arg a_2 ≈ 2 φ``. Finally each shot's own pattern phase is measured (shot
   minus order 0, correlated with the shifted order 0) and compared with ``φ + 2π p / N``.

Plausibility (motion breaks the separation; a public fairSIM port on a vibrating sample
locked onto a spurious peak and reconstructed anyway). An orientation is implausible when

* ``|k|`` is more than ``k_tolerance`` off the expected value, or its angle (mod π) more than
  ``angle_tolerance_rad`` off the expected one;
* the orientations disagree: ``|k|`` more than ``k_tolerance / 2`` from their median, or an
  angle not a multiple of ``π / n`` away from the others;
* a modulation is beyond the physical limits, with ``max_contrast`` as the noise margin
  (two-beam ``m <= 1``; three-beam ``m1 <= √2``, ``m2 <= 1`` and the pair reachable by some
  beam ratio, i.e. the contrast ``m2 + m1²/(8 m2) <= 1``, see the ``illumination`` module: a
  pattern beyond them would be negative, which is what order-0 leakage from a moving sample
  produces); or an order's contrast (two-beam ``m``; three-beam ``m1 / (4/3)``,
  ``m2 / (2/3)``, relative to the equal-beam values) is below ``min_contrast``; or a
  modulation is more than ``modulation_tolerance`` off the configured one when one is given;
* the correlation peak is less than ``min_peak_to_background`` times the RMS of the
  correlation over the rest of the search ring;
* a shot's pattern phase deviates more than ``phase_step_tolerance_rad`` from the phase steps,
  or (three-beam) the phases of orders 1 and 2 disagree by more than 30°.

:func:`resolve_sim_parameters` turns an estimate and the configured values into the
illumination to reconstruct with, or a :class:`SimParameterError`.

Orientation indices are 0-based, as in the shot index ``s = d * n_phases + p``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize

from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.sim.illumination import (
    IDEAL_THREE_BEAM_MODULATION,
    THREE_BEAM_MAX_M1,
    SimIllumination,
    physical_modulation,
    three_beam_axial_k_per_um,
    three_beam_contrast,
)
from nstm_acquire.physics.sim.otf import MeasuredPsf, OrderTransfer, lateral_cutoff_per_um

__all__ = [
    "SimEstimate",
    "SimParameterError",
    "SimParameterPolicy",
    "estimate_sim_parameters",
    "resolve_sim_parameters",
    "separate_orders",
    "embed_spectrum",
    "edge_taper_window",
]

_PHASE_CONSISTENCY_RAD = math.radians(30.0)
_CANDIDATES = 3  # coarse peaks refined around an expected |k|; the best refined correlation wins
_FULL_SEARCH = (0.1, 0.98)  # fraction of 2NA/λ searched without an expected |k|
_FIX = (
    "the sample may have moved during the window; give illumination.{field} in the store or "
    "reconstruct with --sim-parameters configured"
)


class SimParameterError(ValueError):
    """Estimated SIM illumination parameters are implausible and no configured value can stand in."""


# ----------------------------------------------------------------------------- array helpers
def separate_orders(frames: np.ndarray, n_orders: int) -> np.ndarray:
    """Separate the pattern orders of one orientation with the convention's phase steps.

    Parameters
    ----------
    frames
        ``(N, ...)`` the ``N = n_phases`` frames of one orientation, shot phase
        ``ψ_p = φ + 2π p / N`` (any trailing axes, e.g. ``(Z, Y, X)``).
    n_orders
        Highest order ``M`` kept (two-beam 1, three-beam 2); needs ``N >= 2M + 1``.

    Returns
    -------
    np.ndarray
        complex128 ``(M + 1, ...)``: ``b_m = (1/N) Σ_p D_p exp(-i 2π m p / N)`` for
        ``m = 0 … M``; order ``-m`` is ``conj(b_m)`` (real frames).
    """
    d = np.asarray(frames, dtype=np.float64)
    n = d.shape[0]
    if n < 2 * n_orders + 1:
        raise ValueError(
            f"{n} phase frames cannot separate orders up to {n_orders}; n_phases must be at least "
            f"{2 * n_orders + 1}"
        )
    p = np.arange(n)
    weights = np.exp(-2j * np.pi * np.outer(np.arange(n_orders + 1), p) / n) / n
    return np.tensordot(weights, d, axes=(1, 0))


def embed_spectrum(spectrum: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Place an FFT-order spectrum (last two axes) onto a larger FFT grid (zero padding).

    Frequency ``f`` keeps its physical value: the inverse FFT on ``out_shape`` of the result
    times ``(Yo Xo) / (Y X)`` samples the same band-limited function on a finer grid whose
    sample 0 coincides with the input's sample 0. The Nyquist row/column of an even-sized
    input is dropped (it carries no signal when the camera samples the passband).
    """
    s = np.asarray(spectrum)
    *lead, ny, nx = s.shape
    oy, ox = out_shape
    if oy < ny or ox < nx:
        raise ValueError(f"out_shape={out_shape} must be at least the spectrum's ({ny}, {nx})")
    out = np.zeros((*lead, oy, ox), dtype=np.result_type(s.dtype, np.complex64))

    def ranges(n: int, o: int) -> list[tuple[slice, slice]]:
        pos = (n + 1) // 2  # indices 0 … pos-1 are f >= 0
        neg = n // 2 - (1 if n % 2 == 0 else 0)  # negative frequencies kept (Nyquist dropped)
        parts = [(slice(0, pos), slice(0, pos))]
        if neg > 0:
            parts.append((slice(n - neg, n), slice(o - neg, o)))
        return parts

    for sy_in, sy_out in ranges(ny, oy):
        for sx_in, sx_out in ranges(nx, ox):
            out[..., sy_out, sx_out] = s[..., sy_in, sx_in]
    return out


def edge_taper_window(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """Separable cosine edge taper ``(Y, X)``: 1 inside, falling to 0 over ``fraction`` of each side."""
    if not 0.0 <= fraction <= 0.5:
        raise ValueError(f"edge_taper={fraction} must be in [0, 0.5] (fraction of each side)")

    def axis(n: int) -> np.ndarray:
        w = np.ones(n)
        width = int(round(fraction * n))
        if width > 0:
            t = (np.arange(width) + 0.5) / width
            ramp = 0.5 - 0.5 * np.cos(np.pi * t)
            w[:width] = ramp
            w[n - width :] = ramp[::-1]
        return w

    return axis(shape[0])[:, None] * axis(shape[1])[None, :]


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def _axis_angle(ky: float, kx: float) -> float:
    """Angle of a pattern's k from the x axis towards y, folded to [0, π) (a line orientation)."""
    return math.atan2(ky, kx) % math.pi


def _angle_difference(a: float, b: float) -> float:
    """Distance between two orientations mod π, in [0, π/2]."""
    d = abs(a - b) % math.pi
    return min(d, math.pi - d)


def _band_spectra(bands: np.ndarray, three_beam: bool) -> np.ndarray:
    """Lateral (two-beam) or 3D (three-beam) FFT of real-space bands ``(M+1, Z, Y, X)``."""
    axes = (-3, -2, -1) if three_beam else (-2, -1)
    return np.fft.fftn(bands, axes=axes)


def _correlate_fft(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``R[k] = Σ_q a[q + k] c[q]`` (circular, last two axes, summed over leading axes), real inputs."""
    fa = np.fft.fft2(a)
    fc = np.fft.fft2(c)
    return np.fft.ifft2(np.sum(fa * np.conj(fc), axis=tuple(range(a.ndim - 2)))).real


def _bilinear_form(ey: np.ndarray, matrix: np.ndarray, ex: np.ndarray) -> complex:
    """``ey @ matrix @ ex`` without BLAS (small products: BLAS threading costs ms on busy hosts)."""
    return complex(np.sum(np.sum(matrix * ex[None, :], axis=1) * ey))


def _quadratic_interpolant(values: np.ndarray, iy: int, ix: int):
    """Least-squares quadratic through the 3x3 neighbourhood of ``(iy, ix)`` (circular indices)."""
    ny, nx = values.shape
    pts, vals = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            pts.append((dy, dx))
            vals.append(values[(iy + dy) % ny, (ix + dx) % nx])
    a = np.array([[1, x, y, x * x, y * y, x * y] for y, x in pts], dtype=np.float64)
    coef, *_ = np.linalg.lstsq(a, np.array(vals), rcond=None)

    def f(dy: float, dx: float) -> float:
        return float(coef @ np.array([1, dx, dy, dx * dx, dy * dy, dx * dy]))

    return f


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SimEstimate:
    """Illumination parameters estimated from one window, with quality measures.

    Per orientation ``d`` (tuples indexed by ``d``):

    * ``k_per_um[d] = (k_y, k_x)`` finest lateral pattern frequency, cycles/µm;
    * ``phase_rad[d]`` phase of shot ``p = 0`` of the fundamental order, rad in ``(-π, π]``;
    * ``modulation[d]``: two-beam ``(m,)``, three-beam ``(m1, m2)``, OTF- and pixel-corrected;
    * ``correlation[d]``: normalised cross-correlation of the separated bands at the estimated
      shift, in ``[0, 1]`` (1 = noise-free, static);
    * ``peak_to_background[d]``: correlation peak over the RMS of the correlation in the rest
      of the search region;
    * ``phase_step_error_rad[d]``: largest deviation of a shot's measured pattern phase from
      ``phase_rad[d] + 2π p / n_phases`` (phase-stepping errors; noise and the sample's own
      cross-correlations add a floor of a few to ~30 degrees, see ``phase_step_tolerance_rad``);
    * ``plausible[d]`` and ``orientation_problems[d]`` (one-line messages; empty when plausible);
    * ``expected_k_magnitude_per_um[d]``: the ``|k|`` the checks compared with (``None``: none).

    ``notes`` are observations that do not make an orientation implausible.
    """

    three_beam: bool
    k_per_um: tuple[tuple[float, float], ...]
    phase_rad: tuple[float, ...]
    modulation: tuple[tuple[float, ...], ...]
    correlation: tuple[float, ...]
    peak_to_background: tuple[float, ...]
    phase_step_error_rad: tuple[float, ...]
    plausible: tuple[bool, ...]
    orientation_problems: tuple[tuple[str, ...], ...]
    expected_k_magnitude_per_um: tuple[float | None, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def n_orientations(self) -> int:
        return len(self.k_per_um)

    @property
    def problems(self) -> list[str]:
        """Every orientation's problems, in orientation order (empty when all are plausible)."""
        return [p for probs in self.orientation_problems for p in probs]

    @property
    def all_plausible(self) -> bool:
        return all(self.plausible)

    def as_illumination(self, base: SimIllumination) -> SimIllumination:
        """``base`` with ``k_per_um``, ``phase_rad`` and ``modulation`` replaced by the estimate."""
        return base.replace(
            k_per_um=[list(k) for k in self.k_per_um],
            phase_rad=list(self.phase_rad),
            modulation=[list(m) for m in self.modulation],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (plain lists and floats) for the reconstruction attributes."""
        return {
            "k_per_um": [[float(a), float(b)] for a, b in self.k_per_um],
            "phase_rad": [float(p) for p in self.phase_rad],
            "modulation": [[float(v) for v in m] for m in self.modulation],
            "correlation": [float(c) for c in self.correlation],
            "peak_to_background": [float(r) for r in self.peak_to_background],
            "phase_step_error_rad": [float(e) for e in self.phase_step_error_rad],
            "plausible": [bool(p) for p in self.plausible],
            "problems": self.problems,
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- estimation
@dataclass
class _OrientationResult:
    k: tuple[float, float]
    phase: float
    modulation: tuple[float, ...]
    correlation: float
    peak_to_background: float
    order_phase_mismatch: float | None
    phase_step_error: float


class _Estimator:
    """Shared state for one call: grids, transfers, taper."""

    def __init__(
        self,
        raw: np.ndarray,
        optics: Optics,
        ill: SimIllumination,
        z_step_um: float | None,
        edge_taper: float,
        low_frequency_cut: float,
        psf: MeasuredPsf | None = None,
    ):
        self.raw = raw
        self.optics = optics
        self.ill = ill
        self.three_beam = ill.three_beam
        self.n_orders = 2 if ill.three_beam else 1
        _, self.nz, self.ny, self.nx = raw.shape
        self.pixel = optics.pixel_size_um
        self.cutoff = lateral_cutoff_per_um(optics)
        self.transfer = OrderTransfer(optics, ill.three_beam, self.nz, z_step_um, psf=psf)
        self.edge_taper = edge_taper
        self.taper = edge_taper_window((self.ny, self.nx), edge_taper)
        # camera frequency grid and the 2x grid
        self.qy = np.fft.fftfreq(self.ny, d=self.pixel)[:, None]
        self.qx = np.fft.fftfreq(self.nx, d=self.pixel)[None, :]
        self.fine_shape = (2 * self.ny, 2 * self.nx)
        self.fine_pixel = self.pixel / 2.0
        self.fqy = np.fft.fftfreq(self.fine_shape[0], d=self.fine_pixel)[:, None]
        self.fqx = np.fft.fftfreq(self.fine_shape[1], d=self.fine_pixel)[None, :]
        nyq = 0.5 / self.pixel
        self.raw_band = (np.abs(self.fqy) < nyq) & (np.abs(self.fqx) < nyq)
        self.low_cut = low_frequency_cut * self.cutoff
        self.low_mask = np.hypot(self.qy, self.qx) >= self.low_cut
        self.low_mask_fine = np.hypot(self.fqy, self.fqx) >= self.low_cut
        self.fy = (np.arange(self.fine_shape[0]) * self.fine_pixel)[:, None]
        self.fx = (np.arange(self.fine_shape[1]) * self.fine_pixel)[None, :]
        self.step = 1.0 / (self.ny * self.pixel), 1.0 / (self.nx * self.pixel)  # frequency pixel

    # -------------------------------------------------------------- per orientation
    def spectra(self, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Spectra of orientation ``d``: orders from tapered frames (search), orders from the
        plain frames, and every plain frame (``(N, Zk, Y, X)``)."""
        n = self.ill.n_phases
        frames = self.raw[d * n : (d + 1) * n]
        bands = separate_orders(frames, self.n_orders)
        return (
            _band_spectra(bands * self.taper, self.three_beam),
            _band_spectra(bands, self.three_beam),
            _band_spectra(frames, self.three_beam),
        )

    def shot_phase_errors(
        self, d: int, shots: np.ndarray, plain: np.ndarray, k: tuple[float, float], phase: float
    ) -> np.ndarray:
        """Deviation (rad) of every shot's measured pattern phase from ``phase + 2π p / N``.

        Shot ``p`` minus the widefield band holds the pattern orders with phases ``m ψ_p``;
        its correlation with the widefield band shifted by the fundamental's frequency
        (two-beam ``k``, three-beam ``k/2`` with order 1's transfer) measures ``ψ_p`` in the
        camera frame. Errors of the
        phase stepping show up directly; a sample that changes between shots decorrelates the
        shots from the widefield band, which scatters the measured phases.
        """
        n = shots.shape[0]
        b_0 = plain[0] * self.low_mask
        if self.three_beam:  # the fundamental (order 1, at k/2, axially modulated) is strongest
            shift = (k[0] / 2.0, k[1] / 2.0)
            axial = self.axial_k(d, math.hypot(*k))
        else:
            shift, axial = k, 0.0
        errors = np.empty(n)
        for p in range(n):
            a_p, _ = self.coefficient(shots[p] - plain[0], b_0, shift, axial)
            errors[p] = _wrap(float(np.angle(a_p)) - phase - 2.0 * math.pi * p / n)
        return errors

    def axial_k(self, d: int, k_mag: float) -> float:
        if not self.three_beam:
            return 0.0
        if self.ill.axial_k_per_um is not None:
            return float(self.ill.axial_k_per_um)
        return three_beam_axial_k_per_um(
            k_mag, self.ill.excitation_wavelength_um, self.optics.immersion_index
        )

    def coarse_maps(
        self, b_m: np.ndarray, b_0: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Correlation of the finest order with order 0 for every integer shift (2x grid).

        ``b_m``, ``b_0``: band spectra ``(Zk, Y, X)`` (``b_0`` with the low frequencies removed);
        both orders have the plain transfer ``H`` (two-beam order 1, three-beam order 2).
        Returns the real-space product ``g_m conj(g_0)`` (``g = F⁻¹[b H]`` on the 2x grid,
        summed over the axial frequencies), the numerator ``Σ_q b_m H(q) conj(b_0 H)(q - k)``
        and the denominators ``D1(k) = Σ |b_m(q)|² H(q - k)²``, ``D0(k) = Σ |b_0(q)|² H(q + k)²``
        as maps over ``k`` in FFT order.
        """
        h_fine = self.transfer(self.fqy, self.fqx) * self.raw_band
        g_m = np.fft.ifft2(embed_spectrum(b_m * self.h0_camera, self.fine_shape))
        g_0 = np.fft.ifft2(embed_spectrum(b_0 * self.h0_camera, self.fine_shape))
        product = np.sum(g_m * np.conj(g_0), axis=0)
        n2 = self.fine_shape[0] * self.fine_shape[1]
        numerator = np.fft.fft2(product) * n2
        pow_m = np.abs(embed_spectrum(b_m, self.fine_shape)) ** 2
        pow_0 = np.abs(embed_spectrum(b_0, self.fine_shape)) ** 2
        h0sq = np.broadcast_to((h_fine * self.low_mask_fine) ** 2, pow_m.shape)
        hmsq = np.broadcast_to(h_fine**2, pow_0.shape)
        d1 = _correlate_fft(pow_m, h0sq)
        d0 = _correlate_fft(hmsq, pow_0)
        return product, numerator, d1, d0

    def matched_pair(
        self, b_m: np.ndarray, b_0: np.ndarray, k: tuple[float, float], axial_k: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Real-space ``Y1``, ``Y0`` on the 2x grid (lateral; three-beam per axial frequency).

        ``Y1 = F⁻¹[b_m(q) H_0(q - k)]`` and ``Y0 = F⁻¹[b_0(q - k) H_m(q)]`` (``H_m`` with the
        axial modulation ``axial_k``), ``b_0`` shifted by an exact real-space phase ramp; at the
        true shift ``Y1 = a Y0`` point by point (away from the field edges).
        """
        ky, kx = k
        ramp = np.exp(2j * np.pi * (ky * self.fy + kx * self.fx))
        shifted0 = np.fft.ifft2(embed_spectrum(b_0, self.fine_shape)) * ramp
        h_m = self.transfer(self.fqy, self.fqx, axial_k) * self.raw_band
        y0 = np.fft.ifft2(np.fft.fft2(shifted0) * h_m)
        h_0 = self.transfer(self.fqy - ky, self.fqx - kx)
        h_0 = h_0 * (np.hypot(self.fqy - ky, self.fqx - kx) >= self.low_cut)
        y1 = np.fft.ifft2(embed_spectrum(b_m, self.fine_shape) * h_0)
        return y1, y0

    def coefficient(
        self, b_m: np.ndarray, b_0: np.ndarray, k: tuple[float, float], axial_k: float
    ) -> tuple[complex, float]:
        """``a = <Y1, Y0>_w / <Y0, Y0>_w`` and the normalised correlation at the shift ``k``.

        Inner products weighted by the interior window ``w`` (zero at the field edges, where
        the periodic FFT filtering of non-periodic frames is wrong).
        """
        y1, y0 = self.matched_pair(b_m, b_0, k, axial_k)
        w = self.product_window
        cross = np.sum(w * y1 * np.conj(y0))
        p0 = float(np.sum(w * np.abs(y0) ** 2))
        p1 = float(np.sum(w * np.abs(y1) ** 2))
        if p0 <= 0 or p1 <= 0:
            return 0j, 0.0
        return complex(cross / p0), float(abs(cross) / math.sqrt(p0 * p1))

    def refine(
        self, b_m: np.ndarray, b_0: np.ndarray, k: tuple[float, float], iterations: int = 4
    ) -> tuple[float, float]:
        """Refine ``k`` on the untapered bands: flatten the phase of the windowed ``Y1 conj(Y0)``.

        Near the true shift ``k``, ``Y1 conj(Y0)(r; k + δ) ≈ a |Y0|² exp(-i 2π δ·r)``: the offset
        ``δ`` maximises the modulus of the Fourier transform of the windowed product at ``δ``
        (an exact direct DFT). Each pass recomputes the pair at the updated ``k``.
        """
        w = self.product_window
        sy, sx = self.step
        yv = self.fy[:, 0]
        xv = self.fx[0]
        for _ in range(iterations):
            y1, y0 = self.matched_pair(b_m, b_0, k, 0.0)
            product = np.sum(w * y1 * np.conj(y0), axis=0)

            def negative(offset: np.ndarray, product: np.ndarray = product) -> float:
                ey = np.exp(-2j * np.pi * float(offset[0]) * sy * yv)
                ex = np.exp(-2j * np.pi * float(offset[1]) * sx * xv)
                return -abs(_bilinear_form(ey, product, ex))

            res = minimize(
                negative,
                np.zeros(2),
                method="Nelder-Mead",
                options={
                    "initial_simplex": np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1]]),
                    "xatol": 1e-5,
                    "fatol": 1e-14,
                    "maxiter": 300,
                },
            )
            off = res.x
            if not np.all(np.abs(off) <= 1.0):
                break  # no nearby optimum: keep the coarse estimate
            k = (k[0] + float(off[0]) * sy, k[1] + float(off[1]) * sx)
            if float(np.max(np.abs(off))) < 1e-4:
                break
        return k

    @property
    def product_window(self) -> np.ndarray:
        if not hasattr(self, "_window"):
            self._window = edge_taper_window(self.fine_shape, self.edge_taper) ** 2
        return self._window

    def search(
        self, d: int, spectra: np.ndarray, ring: tuple[float, float], n_candidates: int = 1
    ) -> list[tuple[tuple[float, float], float]]:
        """Coarse + sub-pixel search of the finest order's shift ``k`` in the ring (cycles/µm).

        Returns ``[(k, peak-to-background)]`` for the ``n_candidates`` highest coarse peaks
        (each more than 3 frequency pixels from the higher ones), highest first: the peak is
        the sub-pixel maximum, the background the RMS of the correlation over the rest of the
        ring (more than 3 frequency pixels from the peak). A sparse sample's own spectrum can
        put a spurious coarse peak above the pattern's on the tapered frames; the caller
        keeps the candidate whose refined, untapered correlation is highest.
        """
        product, numerator, d1, d0 = self.coarse_maps(
            spectra[self.n_orders], spectra[0] * self.low_mask
        )
        scale = np.sqrt(np.maximum(d1, 0.0) * np.maximum(d0, 0.0))
        floor = 1e-9 * scale.max() if scale.max() > 0 else 1.0
        ncc = np.abs(numerator) / np.maximum(scale, floor)
        k_mag = np.hypot(self.fqy, self.fqx)
        region = (k_mag >= ring[0]) & (k_mag <= ring[1]) & (scale > floor)
        if not region.any():
            raise ValueError(
                f"orientation {d}: the search ring {ring[0]:.3g}-{ring[1]:.3g} cycles/µm holds no "
                "frequency of the camera grid; check k_per_um and the optics"
            )
        masked = np.where(region, ncc, -np.inf)
        found = []
        for _ in range(max(1, n_candidates)):
            if not np.isfinite(masked.max()):
                break
            iy, ix = (int(i) for i in np.unravel_index(int(np.argmax(masked)), masked.shape))
            found.append(self._subpixel(ncc, region, product, d1, d0, floor, iy, ix))
            k0 = (float(self.fqy[iy, 0]), float(self.fqx[0, ix]))
            masked = np.where(np.hypot(self.fqy - k0[0], self.fqx - k0[1]) > 3.0 * max(self.step), masked, -np.inf)
        return found

    def _subpixel(
        self,
        ncc: np.ndarray,
        region: np.ndarray,
        product: np.ndarray,
        d1: np.ndarray,
        d0: np.ndarray,
        floor: float,
        iy: int,
        ix: int,
    ) -> tuple[tuple[float, float], float]:
        """The sub-pixel peak ``k`` near the coarse peak ``(iy, ix)`` and its peak-to-background."""
        peak = float(ncc[iy, ix])
        k0 = (float(self.fqy[iy, 0]), float(self.fqx[0, ix]))
        # background: the search region away from the peak
        dist = np.hypot(self.fqy - k0[0], self.fqx - k0[1])
        away = region & (dist > 3.0 * max(self.step))
        background = float(np.sqrt(np.mean(ncc[away] ** 2))) if away.any() else 0.0
        # sub-pixel: exact DFT numerator, quadratic interpolants of the smooth denominators
        d1f = _quadratic_interpolant(d1, iy, ix)
        d0f = _quadratic_interpolant(d0, iy, ix)
        n2 = self.fine_shape[0] * self.fine_shape[1]
        sy, sx = self.step
        ey0 = np.exp(-2j * np.pi * k0[0] * self.fy[:, 0])
        ex0 = np.exp(-2j * np.pi * k0[1] * self.fx[0])

        def negative_ncc(offset: np.ndarray) -> float:
            dy, dx = float(offset[0]), float(offset[1])
            ey = ey0 * np.exp(-2j * np.pi * dy * sy * self.fy[:, 0])
            ex = ex0 * np.exp(-2j * np.pi * dx * sx * self.fx[0])
            num = abs(_bilinear_form(ey, product, ex)) * n2
            den = math.sqrt(max(d1f(dy, dx), 0.0)) * math.sqrt(max(d0f(dy, dx), 0.0))
            return -num / den if den > floor else 0.0

        start = np.zeros(2)
        simplex = np.array([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3]])
        res = minimize(
            negative_ncc,
            start,
            method="Nelder-Mead",
            options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-12, "maxiter": 400},
        )
        inside = bool(np.all(np.abs(res.x) <= 1.0))
        off = res.x if inside else np.zeros(2)
        k = (k0[0] + float(off[0]) * sy, k0[1] + float(off[1]) * sx)
        peak = max(peak, -float(res.fun)) if inside else peak
        ptb = peak / background if background > 0 else math.inf
        return k, ptb

    def estimate_orientation(self, d: int, ring: tuple[float, float], n_candidates: int = 1) -> _OrientationResult:
        """Estimate orientation ``d`` in the ``ring`` (cycles/µm); ``n_candidates`` coarse peaks
        are refined and the one with the highest untapered correlation is kept."""
        tapered, plain, shots = self.spectra(d)
        m = self.n_orders
        b_0 = plain[0] * self.low_mask
        best: tuple[float, tuple[float, float], float] | None = None
        for k_coarse, ptb_c in self.search(d, tapered, ring, n_candidates=n_candidates):
            k_c = self.refine(plain[m], b_0, k_coarse)
            _, corr_c = self.coefficient(plain[m], b_0, k_c, 0.0)
            if best is None or corr_c > best[0]:
                best = (corr_c, k_c, ptb_c)
        assert best is not None  # search() returns at least one candidate
        _, k, ptb = best
        if not self.three_beam:
            a, corr = self.coefficient(plain[1], b_0, k, 0.0)
            phase = float(np.angle(a))
            modulation: tuple[float, ...] = (2.0 * abs(a),)
            mismatch = None
        else:
            kz = self.axial_k(d, math.hypot(*k))
            a2, corr = self.coefficient(plain[2], b_0, k, 0.0)
            half = (k[0] / 2.0, k[1] / 2.0)
            a1, _ = self.coefficient(plain[1], b_0, half, kz)
            phase = float(np.angle(a1))
            mismatch = abs(_wrap(float(np.angle(a2)) - 2.0 * phase))
            modulation = (2.0 * abs(a1), 2.0 * abs(a2))
        step_error = float(np.max(np.abs(self.shot_phase_errors(d, shots, plain, k, phase))))
        return _OrientationResult(k, phase, modulation, corr, ptb, mismatch, step_error)

    @property
    def h0_camera(self) -> np.ndarray:
        if not hasattr(self, "_h0"):
            self._h0 = self.transfer(self.qy, self.qx)
        return self._h0


def _expected_magnitudes(
    ill: SimIllumination,
    expected: SimIllumination | None,
    fraction: float | None,
    cutoff: float,
) -> tuple[list[float | None], list[tuple[float, float] | None]]:
    mags: list[float | None] = []
    vecs: list[tuple[float, float] | None] = []
    for d in range(ill.n_orientations):
        vec = None
        if ill.k_per_um is not None:
            vec = tuple(ill.k_per_um[d])
        elif expected is not None and expected.k_per_um is not None:
            vec = tuple(expected.k_per_um[d])
        if vec is not None:
            mags.append(math.hypot(*vec))
            vecs.append((float(vec[0]), float(vec[1])))
        elif fraction is not None:
            mags.append(fraction * cutoff)
            vecs.append(None)
        else:
            mags.append(None)
            vecs.append(None)
    return mags, vecs


def estimate_sim_parameters(
    raw: np.ndarray,
    optics: Optics,
    ill: SimIllumination,
    expected: SimIllumination | None = None,
    *,
    z_step_um: float | None = None,
    expected_fraction_of_cutoff: float | None = None,
    search_ring: float = 0.25,
    k_tolerance: float = 0.1,
    angle_tolerance_rad: float = math.radians(5.0),
    min_contrast: float = 0.3,
    max_contrast: float = 1.1,
    modulation_tolerance: float = 0.5,
    min_peak_to_background: float = 3.0,
    phase_step_tolerance_rad: float = math.radians(40.0),
    edge_taper: float = 0.1,
    low_frequency_cut: float = 0.05,
    psf: MeasuredPsf | None = None,
) -> SimEstimate:
    """Estimate ``k_per_um``, ``phase_rad`` and ``modulation`` of every orientation from one window.

    Parameters
    ----------
    raw
        ``(S, Z, Y, X)`` frames of one window (``(S, Y, X)`` is taken as ``Z = 1``), camera
        offset removed, shot ``s = d * n_phases + p``. Three-beam: ``Z`` planes ``z_step_um``
        apart (the whole stack is used with the 3D transfers); two-beam: every plane is treated
        as in focus.
    optics
        Emission wavelength, detection NA, camera pixel (µm), immersion index (and
        ``z_step_um`` for 3D).
    ill
        The configured illumination: ``n_orientations``, ``n_phases``, ``three_beam``,
        excitation wavelength; ``k_per_um``/``phase_rad``/``modulation`` may be ``None``. A
        configured ``k_per_um`` centres the search ring and the plausibility checks.
    expected
        Nominal illumination (for example the hardware's) used for the ring and the checks
        when ``ill.k_per_um`` is ``None``.
    z_step_um
        Three-beam plane spacing, µm (default ``optics.z_step_um``).
    expected_fraction_of_cutoff
        Without any expected ``k``: the expected ``|k|`` as a fraction of ``2 NA / λ_em``.
    search_ring
        Relative half-width of the coarse search ring around the expected ``|k|``.
    k_tolerance
        Largest plausible relative deviation of ``|k|`` from the expected value (and,
        halved, from the median over orientations).
    angle_tolerance_rad
        Largest plausible deviation (rad) of a pattern angle (mod π) from the expected angle,
        and of the angles between orientations from multiples of ``π / n_orientations``.
    min_contrast, max_contrast
        ``min_contrast``: smallest plausible contrast of each order (two-beam ``m``;
        three-beam ``m1/(4/3)``, ``m2/(2/3)``). ``max_contrast``: noise margin on the
        physical limits (two-beam ``m <= 1``; three-beam ``m1 <= √2``, ``m2 <= 1``,
        ``m2 + m1²/(8 m2) <= 1``); beyond them the pattern would be negative, which happens
        when motion leaks order 0 into the separated bands.
    modulation_tolerance
        Largest plausible relative deviation of a modulation from the configured one (or
        ``expected``'s) when that is known.
    min_peak_to_background
        Smallest plausible ratio of the correlation peak to the correlation background.
    phase_step_tolerance_rad
        Largest plausible deviation (rad) of a shot's measured pattern phase from the
        ``2π p / n_phases`` steps. With ``n_phases = 2M + 1`` the per-shot phase can only be
        measured against the sample's own random cross-correlations, so it has a
        sample-dependent floor: a few degrees for dense 2D samples, up to ~30° for sparse 3D
        bead samples.
    edge_taper
        Fraction of each image side tapered to 0 (cosine) before the Fourier transforms.
    low_frequency_cut
        Order-0 frequencies below this fraction of ``2 NA / λ_em`` are left out of the
        correlation.
    psf
        A measured PSF (:class:`~nstm_acquire.physics.sim.otf.MeasuredPsf`) to use instead of
        the theoretical OTF when dividing out the attenuation.

    Returns
    -------
    SimEstimate
        Values per orientation (cycles/µm, rad, modulation) with quality and plausibility.
    """
    data, z_step_um = _checked_window(raw, optics, ill, expected, z_step_um)
    _check_search_settings(search_ring, k_tolerance, edge_taper, low_frequency_cut, expected_fraction_of_cutoff)
    est = _Estimator(data, optics, ill, z_step_um, edge_taper, low_frequency_cut, psf)
    cutoff = est.cutoff
    mags, vecs = _expected_magnitudes(ill, expected, expected_fraction_of_cutoff, cutoff)
    # around an expected |k|, several coarse peaks are refined (a sparse sample's spectrum can
    # outshine the pattern on the tapered frames); a full search relies on searching again
    results = [
        est.estimate_orientation(
            d, _search_ring(d, mags[d], cutoff, search_ring), _CANDIDATES if mags[d] is not None else 1
        )
        for d in range(ill.n_orientations)
    ]
    expected_modulation = _expected_modulation(ill, expected)
    tolerances = _Tolerances(
        k_tolerance,
        angle_tolerance_rad,
        min_contrast,
        max_contrast,
        modulation_tolerance,
        min_peak_to_background,
        phase_step_tolerance_rad,
    )
    problems, notes = _check_plausibility(results, ill, mags, vecs, expected_modulation, tolerances)
    failed = [d for d in range(ill.n_orientations) if problems[d] and mags[d] is None]
    good = [d for d in range(ill.n_orientations) if not problems[d]]
    if failed and 2 * len(good) >= ill.n_orientations:
        k_ring = _search_failed_again(est, results, failed, good, cutoff, search_ring)
        problems, notes = _check_plausibility(results, ill, mags, vecs, expected_modulation, tolerances)
        notes = list(notes) + [
            f"orientation {d}: searched again around the other orientations' |k| = {k_ring:.4g} cycles/µm"
            for d in failed
        ]
    return _as_estimate(ill, results, problems, notes, mags)


def _checked_window(
    raw: np.ndarray,
    optics: Optics,
    ill: SimIllumination,
    expected: SimIllumination | None,
    z_step_um: float | None,
) -> tuple[np.ndarray, float | None]:
    """The window as float64 ``(S, Z, Y, X)`` and the plane spacing (three-beam), both checked."""
    if not isinstance(optics, Optics):
        raise TypeError(f"optics must be an nstm_acquire.physics.optics.Optics, got {type(optics).__name__}")
    if not isinstance(ill, SimIllumination):
        raise TypeError(f"ill must be a SimIllumination, got {type(ill).__name__}")
    if expected is not None and not isinstance(expected, SimIllumination):
        raise TypeError(f"expected must be a SimIllumination or None, got {type(expected).__name__}")
    if expected is not None and expected.n_orientations != ill.n_orientations:
        raise ValueError(
            f"expected has {expected.n_orientations} orientations but ill has "
            f"{ill.n_orientations}; give the same orientations"
        )
    data = np.asarray(raw, dtype=np.float64)
    if data.ndim == 3:
        data = data[:, None]
    if data.ndim != 4:
        raise ValueError(f"raw must be (S, Z, Y, X) (or (S, Y, X)), got shape {data.shape}")
    if data.shape[0] != ill.n_shots:
        raise ValueError(
            f"raw has {data.shape[0]} shots but the illumination has {ill.n_shots} "
            f"({ill.n_orientations} orientations x {ill.n_phases} phases); pass one whole window"
        )
    if min(data.shape[-2:]) < 16:
        raise ValueError(f"raw frames {data.shape[-2:]} are too small; need at least 16 x 16 pixels")
    if not np.all(np.isfinite(data)):
        raise ValueError("raw contains NaN or inf; pass complete windows only")
    if ill.three_beam:
        if z_step_um is None:
            z_step_um = optics.z_step_um
        if z_step_um is None:
            raise ValueError(
                "three-beam SIM needs the plane spacing: set optics.z_step_um or pass z_step_um"
            )
        if not (math.isfinite(z_step_um) and z_step_um > 0):
            raise ValueError(f"z_step_um={z_step_um} must be finite and > 0 (µm)")
    return data, z_step_um


def _check_search_settings(
    search_ring: float,
    k_tolerance: float,
    edge_taper: float,
    low_frequency_cut: float,
    expected_fraction_of_cutoff: float | None,
) -> None:
    """The search and windowing settings of :func:`estimate_sim_parameters` are in range."""
    for name, value, lo, hi in (
        ("search_ring", search_ring, 0.0, 1.0),
        ("k_tolerance", k_tolerance, 0.0, 1.0),
        ("edge_taper", edge_taper, 0.0, 0.5),
        ("low_frequency_cut", low_frequency_cut, 0.0, 0.5),
    ):
        if not (lo <= value <= hi):
            raise ValueError(f"{name}={value} must be in [{lo}, {hi}]")
    if expected_fraction_of_cutoff is not None and not 0 < expected_fraction_of_cutoff < 1:
        raise ValueError(
            f"expected_fraction_of_cutoff={expected_fraction_of_cutoff} must be in (0, 1) "
            "(the pattern must lie inside the detection passband)"
        )


def _search_ring(d: int, magnitude: float | None, cutoff: float, search_ring: float) -> tuple[float, float]:
    """The ``|k|`` range (cycles/µm) searched for orientation ``d``: around the expected
    magnitude when there is one, else most of the passband."""
    if magnitude is None:
        return (_FULL_SEARCH[0] * cutoff, _FULL_SEARCH[1] * cutoff)
    if magnitude >= cutoff:
        raise ValueError(
            f"orientation {d}: the expected |k| = {magnitude:.4g} cycles/µm is at or beyond "
            f"the detection cut-off 2NA/λ = {cutoff:.4g}; the pattern cannot be seen in "
            "the raw frames"
        )
    return (magnitude * (1.0 - search_ring), min(magnitude * (1.0 + search_ring), cutoff))


def _expected_modulation(
    ill: SimIllumination, expected: SimIllumination | None
) -> tuple[tuple[float, ...], ...] | None:
    """The modulation to check the estimate against: configured, else ``expected``'s, else None."""
    if ill.modulation is not None:
        return ill.modulation
    if expected is not None and expected.modulation is not None:
        return expected.modulation
    return None


def _search_failed_again(
    est: _Estimator,
    results: list[_OrientationResult],
    failed: list[int],
    good: list[int],
    cutoff: float,
    search_ring: float,
) -> float:
    """Search the ``failed`` orientations again around the plausible ones' median ``|k|``.

    A full search can lock onto a spurious peak of a sparse sample in one orientation. The
    pattern's ``|k|`` is the same for every orientation, so the ring around the ``good``
    orientations' ``|k|`` is searched instead. Replaces ``results[d]`` in place; returns that
    ``|k|`` (cycles/µm).
    """
    k_ring = float(np.median([math.hypot(*results[d].k) for d in good]))
    ring = (k_ring * (1.0 - search_ring), min(k_ring * (1.0 + search_ring), cutoff))
    for d in failed:
        results[d] = est.estimate_orientation(d, ring)
    return k_ring


def _as_estimate(
    ill: SimIllumination,
    results: list[_OrientationResult],
    problems: list[list[str]],
    notes: list[str],
    mags: list[float | None],
) -> SimEstimate:
    """The per-orientation results, their plausibility and notes as a :class:`SimEstimate`."""
    return SimEstimate(
        three_beam=ill.three_beam,
        k_per_um=tuple(r.k for r in results),
        phase_rad=tuple(float(_wrap(r.phase)) for r in results),
        modulation=tuple(tuple(float(v) for v in r.modulation) for r in results),
        correlation=tuple(float(r.correlation) for r in results),
        peak_to_background=tuple(float(r.peak_to_background) for r in results),
        phase_step_error_rad=tuple(float(r.phase_step_error) for r in results),
        plausible=tuple(not p for p in problems),
        orientation_problems=tuple(tuple(p) for p in problems),
        expected_k_magnitude_per_um=tuple(mags),
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class _Tolerances:
    k: float
    angle: float
    min_contrast: float
    max_contrast: float
    modulation: float
    min_ptb: float
    phase_step: float


def _check_plausibility(
    results: list[_OrientationResult],
    ill: SimIllumination,
    mags: list[float | None],
    vecs: list[tuple[float, float] | None],
    expected_modulation: tuple[tuple[float, ...], ...] | None,
    tol: _Tolerances,
) -> tuple[list[list[str]], list[str]]:
    n = len(results)
    problems: list[list[str]] = [[] for _ in range(n)]
    notes: list[str] = []
    k_est = [math.hypot(*r.k) for r in results]
    angles = [_axis_angle(*r.k) for r in results]
    ideal = IDEAL_THREE_BEAM_MODULATION if ill.three_beam else (1.0,)
    names = ("m1", "m2") if ill.three_beam else ("m",)
    for d, r in enumerate(results):
        mag, vec = mags[d], vecs[d]
        if mag is not None:
            off = abs(k_est[d] - mag) / mag
            if off > tol.k:
                problems[d].append(
                    f"orientation {d}: estimated k = {k_est[d]:.3f} cycles/µm is {100 * off:.0f} % "
                    f"off the expected {mag:.3f}"
                )
        if vec is not None:
            exp_angle = _axis_angle(*vec)
            diff = _angle_difference(angles[d], exp_angle)
            if diff > tol.angle:
                problems[d].append(
                    f"orientation {d}: estimated pattern angle {math.degrees(angles[d]):.1f}° is "
                    f"{math.degrees(diff):.1f}° off the expected {math.degrees(exp_angle):.1f}°"
                )
            elif r.k[0] * vec[0] + r.k[1] * vec[1] < 0:
                notes.append(
                    f"orientation {d}: the estimated k points opposite to the configured one "
                    "(the phase steps run the other way round); the estimate follows the data"
                )
        beyond = _beyond_physical_limits(r.modulation, ill.three_beam, tol.max_contrast)
        if beyond:
            problems[d].append(
                f"orientation {d}: estimated modulation {beyond} (the separated orders are not "
                "those of a static sample)"
            )
        for j, (name, m, full) in enumerate(zip(names, r.modulation, ideal, strict=True)):
            if m / full < tol.min_contrast:
                problems[d].append(
                    f"orientation {d}: estimated modulation {name} = {m:.2f} is below the "
                    f"plausible minimum {tol.min_contrast * full:.2f}"
                )
            elif beyond:
                continue
            elif expected_modulation is not None and expected_modulation[d][j] > 0:
                ref = expected_modulation[d][j]
                dev = abs(m - ref) / ref
                if dev > tol.modulation:
                    problems[d].append(
                        f"orientation {d}: estimated modulation {name} = {m:.2f} is "
                        f"{100 * dev:.0f} % off the expected {ref:.2f}"
                    )
        if r.peak_to_background < tol.min_ptb:
            problems[d].append(
                f"orientation {d}: the correlation peak is not clearly above the background "
                f"(peak/background {r.peak_to_background:.1f} < {tol.min_ptb:g})"
            )
        if r.phase_step_error > tol.phase_step:
            problems[d].append(
                f"orientation {d}: the shots' pattern phases deviate up to "
                f"{math.degrees(r.phase_step_error):.0f}° from the 2π/{ill.n_phases} steps (phase "
                "stepping off, or the sample changed between shots)"
            )
        if r.order_phase_mismatch is not None and r.order_phase_mismatch > _PHASE_CONSISTENCY_RAD:
            problems[d].append(
                f"orientation {d}: the phases of orders 1 and 2 disagree by "
                f"{math.degrees(r.order_phase_mismatch):.0f}° (expected order 2 = 2 x order 1)"
            )
    if n >= 2:
        median = float(np.median(k_est))
        for d in range(n):
            spread = abs(k_est[d] - median) / median
            if spread > tol.k / 2.0:
                problems[d].append(
                    f"orientation {d}: estimated k = {k_est[d]:.3f} cycles/µm differs by "
                    f"{100 * spread:.0f} % from the other orientations' median {median:.3f}"
                )
        step = math.pi / n
        for d in range(n):
            bad = 0
            for e in range(n):
                if e == d:
                    continue
                diff = _angle_difference(angles[d], angles[e])
                nearest = min(abs(diff - j * step) for j in range(1, n // 2 + 1))
                if nearest > tol.angle:
                    bad += 1
            if bad > (n - 1) / 2.0:
                problems[d].append(
                    f"orientation {d}: the pattern angle {math.degrees(angles[d]):.1f}° is not "
                    f"{math.degrees(step):.0f}° (π/{n}) apart from the other orientations"
                )
    return problems, notes


def _beyond_physical_limits(modulation: tuple[float, ...], three_beam: bool, max_contrast: float) -> str:
    """Why an estimated modulation is beyond the physical limits (with ``max_contrast`` as
    the noise margin on the contrast), or ``""``.

    Two-beam: ``m <= 1``. Three-beam (``illumination`` module docstring): ``m1 <= √2``,
    ``m2 <= 1`` and the pair reachable by some beam ratio and contrast, i.e. the contrast
    ``c = m2 + m1² / (8 m2) <= 1`` (which also keeps the pattern non-negative).
    """
    if not three_beam:
        m = modulation[0]
        if m > max_contrast:
            return f"m = {m:.2f} is above the physical maximum 1 (the pattern would be negative)"
        return ""
    m1, m2 = modulation
    c = three_beam_contrast(m1, m2)
    if m1 > THREE_BEAM_MAX_M1 * max_contrast:
        return f"m1 = {m1:.2f} is above the physical maximum √2 = {THREE_BEAM_MAX_M1:.3f}"
    if m2 > max_contrast:
        return f"m2 = {m2:.2f} is above the physical maximum 1"
    if c > max_contrast:
        return (
            f"[m1, m2] = [{m1:.2f}, {m2:.2f}] fits no beam ratio: its fringe contrast "
            f"m2 + m1²/(8 m2) = {c:.2f} is above 1 (the pattern would be negative)"
        )
    return ""


# ----------------------------------------------------------------------------- resolution
SimParameterPolicy = Literal["configured", "fallback", "error", "estimate"]
"""How :func:`resolve_sim_parameters` chooses between the estimate and the configured pattern."""


#: Largest store/estimate differences that count as agreement (``resolve_sim_parameters``):
#: ``|Δk|`` relative to ``|k|`` (0.5 %: about 0.02 cycles/µm at 4 cycles/µm, several times
#: the static estimator's error), phase (rad) and modulation (relative).
AGREEMENT_K_REL = 0.005
AGREEMENT_PHASE_RAD = math.radians(20.0)
AGREEMENT_MODULATION_REL = 0.25


def _compare_with_estimate(estimate: SimEstimate, configured: SimIllumination) -> dict[str, Any]:
    """How the store's (configured) pattern fields differ from the estimate, per orientation.

    ``k_difference_per_um`` (``|k_store - k_est|``, cycles/µm, sign of ``k`` ignored: the
    phase steps may run the other way round), ``phase_difference_rad`` (wrapped, with the sign
    of ``k`` followed), ``modulation_difference`` (per order, relative to the store's) and
    ``disagreements`` (one line each, beyond ``AGREEMENT_*``); ``None`` where the store has no
    value. ``estimate_plausible`` tells whether the estimate itself passed its checks.
    """
    nd = configured.n_orientations
    out: dict[str, Any] = {
        "k_difference_per_um": [None] * nd,
        "phase_difference_rad": [None] * nd,
        "modulation_difference": [None] * nd,
        "estimate_plausible": [bool(p) for p in estimate.plausible],
        "disagreements": [],
    }
    flips = [False] * nd
    for d in range(nd):
        note = "" if estimate.plausible[d] else " (the estimate is itself implausible)"
        if configured.k_per_um is not None:
            kc = np.asarray(configured.k_per_um[d], dtype=np.float64)
            ke = np.asarray(estimate.k_per_um[d], dtype=np.float64)
            same, flipped = float(np.hypot(*(kc - ke))), float(np.hypot(*(kc + ke)))
            flips[d] = flipped < same
            dk = min(same, flipped)
            out["k_difference_per_um"][d] = dk
            if dk > AGREEMENT_K_REL * float(np.hypot(*kc)):
                out["disagreements"].append(
                    f"orientation {d}: the store's k_per_um {[round(float(v), 4) for v in kc]} and the "
                    f"data's estimate {[round(float(v), 4) for v in ke]} differ by {dk:.3g} cycles/µm{note}"
                )
        if configured.phase_rad is not None:
            pe = -estimate.phase_rad[d] if flips[d] else estimate.phase_rad[d]
            dp = abs(_wrap(float(configured.phase_rad[d]) - pe))
            out["phase_difference_rad"][d] = dp
            if dp > AGREEMENT_PHASE_RAD:
                out["disagreements"].append(
                    f"orientation {d}: the store's phase_rad {configured.phase_rad[d]:.3f} and the data's "
                    f"estimate {pe:.3f} differ by {math.degrees(dp):.0f}°{note}"
                )
        if configured.modulation is not None:
            mc, me = configured.modulation[d], estimate.modulation[d]
            rel = [abs(e - c) / c if c > 0 else abs(e - c) for c, e in zip(mc, me, strict=True)]
            out["modulation_difference"][d] = rel
            if max(rel) > AGREEMENT_MODULATION_REL:
                out["disagreements"].append(
                    f"orientation {d}: the store's modulation {[round(v, 3) for v in mc]} and the data's "
                    f"estimate {[round(v, 3) for v in me]} differ by up to {100 * max(rel):.0f} %{note}"
                )
    return out


def resolve_sim_parameters(
    estimate: SimEstimate,
    configured: SimIllumination,
    policy: SimParameterPolicy = "configured",
) -> tuple[SimIllumination, dict[str, Any]]:
    """The complete illumination to reconstruct with, and a report of where each value came from.

    ``configured`` is the store's illumination (FORMAT.md: a present field is what the writer
    measured or calibrated). Policies (per orientation and field):

    * ``"configured"`` (default): the store's values where present, checked against the
      estimate: the differences go into the report's ``check`` and each disagreement beyond
      ``AGREEMENT_K_REL`` / ``AGREEMENT_PHASE_RAD`` / ``AGREEMENT_MODULATION_REL`` is warned
      about (``UserWarning``, the store's value is still used); the estimate (when
      plausible) for what is missing; a missing value whose estimate is implausible raises.
    * ``"fallback"``: the estimate where it is plausible; where it is not, the configured
      values (reported); an implausible orientation without configured values raises.
    * ``"error"``: the estimate; any implausible orientation raises.
    * ``"estimate"``: the estimate everywhere, plausible or not (an explicit override; the
      problems are reported and warned about).

    In ``"fallback"``, ``"error"`` and ``"estimate"`` the three fields of an orientation move
    together. An estimated modulation is moved to the nearest physical one
    (:func:`~nstm_acquire.physics.sim.illumination.physical_modulation`), never capped at 1.

    Raises
    ------
    SimParameterError
        One line naming the orientation, the implausible value and the fix.

    Returns
    -------
    (SimIllumination, dict)
        The complete illumination (``configured`` with the chosen values) and the report:
        ``policy``, ``estimated`` (:meth:`SimEstimate.to_dict`), ``configured`` (the
        configured illumination's store fields), ``source`` (per field and orientation:
        ``"estimate"`` or ``"configured"``), ``problems``, ``check`` (the store compared with
        the estimate, every policy; see above) and ``used`` (the resolved store fields).
    """
    if policy not in ("fallback", "error", "estimate", "configured"):
        raise ValueError(
            f"policy={policy!r} must be 'fallback', 'error', 'estimate' or 'configured'"
        )
    if not isinstance(configured, SimIllumination):
        raise TypeError(f"configured must be a SimIllumination, got {type(configured).__name__}")
    nd = configured.n_orientations
    if estimate.n_orientations != nd or estimate.three_beam != configured.three_beam:
        raise ValueError(
            f"the estimate ({estimate.n_orientations} orientations, three_beam="
            f"{estimate.three_beam}) does not match the configured illumination ({nd}, "
            f"three_beam={configured.three_beam})"
        )
    fields = ("k_per_um", "phase_rad", "modulation")
    est_values: dict[str, list[Any]] = {
        "k_per_um": [list(k) for k in estimate.k_per_um],
        "phase_rad": list(estimate.phase_rad),
        # Noise can push an estimate slightly beyond the physical limits (two-beam m <= 1;
        # three-beam m1 <= √2, m2 <= 1, contrast <= 1): the nearest physical pattern is used
        # (the raw estimate stays in the report).
        "modulation": [physical_modulation(m, estimate.three_beam) for m in estimate.modulation],
    }
    chosen: dict[str, list[Any]] = {f: [None] * nd for f in fields}
    source: dict[str, list[str]] = {f: [""] * nd for f in fields}

    def fail(d: int, missing: str | None) -> SimParameterError:
        first = estimate.orientation_problems[d][0]
        fix = _FIX.format(field=missing or "k_per_um")
        return SimParameterError(f"{first}; {fix}")

    for d in range(nd):
        ok = estimate.plausible[d]
        for f in fields:
            conf = getattr(configured, f)
            conf_value = None if conf is None else conf[d]
            if policy == "estimate":
                use_estimate = True
            elif policy == "error":
                if not ok:
                    raise fail(d, f if conf is None else None)
                use_estimate = True
            elif policy == "fallback":
                if ok:
                    use_estimate = True
                elif conf_value is not None:
                    use_estimate = False
                else:
                    raise fail(d, f)
            else:  # configured
                if conf_value is not None:
                    use_estimate = False
                elif ok:
                    use_estimate = True
                else:
                    raise fail(d, f)
            if use_estimate:
                chosen[f][d] = est_values[f][d]
                source[f][d] = "estimate"
            else:
                assert conf_value is not None  # only a configured value is used instead
                chosen[f][d] = list(conf_value) if f != "phase_rad" else float(conf_value)
                source[f][d] = "configured"
    if policy == "estimate" and not estimate.all_plausible:
        warnings.warn(
            "SIM parameters: using implausible estimates (policy 'estimate'): "
            + "; ".join(estimate.problems),
            UserWarning,
            stacklevel=2,
        )
    check = _compare_with_estimate(estimate, configured)
    if policy == "configured" and check["disagreements"]:
        # only a plausible estimate is evidence against the store's values; an implausible one
        # (too little structure, or motion, in the window) just leaves them unconfirmed
        implausible = [d for d in range(nd) if not estimate.plausible[d]]
        evidence = [
            line for line in check["disagreements"]
            if int(line.split(":", 1)[0].split()[-1]) not in implausible
        ]  # fmt: skip
        if evidence:
            warnings.warn(
                "SIM parameters: the store's pattern disagrees with the data's estimate (the store's "
                "values are used; --sim-parameters fallback prefers a plausible estimate): "
                + "; ".join(evidence),
                UserWarning,
                stacklevel=2,
            )
        else:
            warnings.warn(
                "SIM parameters: the store's pattern is used unconfirmed: the window's own estimate "
                f"was implausible in orientation{'s' if len(implausible) > 1 else ''} "
                f"{', '.join(map(str, implausible))} (too little structure or too much motion to "
                "estimate from; the comparison is in the reconstruction's sim_parameters attributes)",
                UserWarning,
                stacklevel=2,
            )
    resolved = configured.replace(**chosen)
    report = {
        "policy": policy,
        "estimated": estimate.to_dict(),
        "configured": configured.to_store(),
        "source": source,
        "problems": estimate.problems,
        "check": check,
        "used": resolved.to_store(),
    }
    return resolved, report
