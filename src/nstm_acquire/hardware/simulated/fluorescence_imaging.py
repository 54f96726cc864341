"""Fluorescence image formation for the simulated SIM camera (numpy).

A camera frame of shot ``s`` with the focus at ``z_f`` is::

    I(R) = Σ_j  ∫_{pixel R} [ h_{z_j - z_f} ⊛ (ρ_j · pattern_s(·, z_j - z_f)) ](r) dr

``ρ_j`` the density of sample plane ``j`` (at ``z_j``) on a fine grid, ``h_Δz`` the widefield
intensity PSF at defocus ``Δz`` (emission wavelength ``optics.wavelength_um``), the pattern from
:func:`nstm_acquire.physics.sim.illumination.illumination_pattern`, fixed to the focal plane. A 2D
density is one plane at ``z = 0`` (in focus when ``focal_z_um = 0``).

Grids and the half-pixel offset
-------------------------------
* Fine pixel ``(a, b)`` is centred at ``(a, b) * fine_pixel_um`` and camera pixel ``(i, j)`` at
  ``(i, j) * pixel_size_um`` (FORMAT.md), with ``pixel_size_um = upsample * fine_pixel_um``; so
  fine pixel ``(0, 0)`` sits on camera pixel ``(0, 0)`` and camera pixel ``(i, j)`` is centred on
  fine pixel ``(i u, j u)``. Camera pixel ``(i, j)`` covers ``[i P - P/2, i P + P/2)`` in each axis:
  for odd ``u`` exactly ``u`` fine pixels, for even ``u`` ``u - 1`` whole fine pixels and half of
  the two at its edges. Summing ``u x u`` blocks (``reshape(...).sum``) would shift the image
  by half a fine pixel when ``u`` is even; instead the camera pixel integrates the continuous
  (band-limited) image over its area: in Fourier space a multiplication by
  ``sinc(P u_y) sinc(P u_x)`` (:func:`camera_pixel_transfer`), then sampling at the camera
  pixel centres (every ``u``-th fine sample, starting at 0). This is exact for every ``u``.
* Each fine pixel emits ``ρ · pattern`` photons (per unit density); a camera pixel collects
  the photons that land on its area, so the image is in photons per unit density and its total
  equals ``Σ ρ · pattern`` (OTF(0) = 1 and the pixel transfer vanishes at every non-zero
  multiple of ``1/P``, so no alias folds onto the total).
* Boundaries are periodic (FFT convolution): light blurred across an edge re-enters on the
  other side. Give the sample a margin of a few PSF widths when that matters.
* The camera pixel transfer attenuates the pattern too: the modulation seen at ``k`` is
  ``m · OTF(k) · sinc(P k_y) sinc(P k_x)``.

PSFs and OTFs
-------------
* The OTF at defocus ``Δz`` is the normalised autocorrelation of the scalar, unapodised,
  aberration-free pupil ``|u| < NA/λ`` carrying the angular-spectrum defocus phase
  ``exp(i 2π Δz sqrt((n/λ)² - |u|²))`` in the immersion medium (``n = optics.immersion_index``,
  ``λ = optics.wavelength_um``, the emission wavelength), evaluated by spectrally converging
  quadrature (:func:`widefield_otf_radial`); in focus it is the analytic OTF
  (:func:`widefield_otf_2d`), which the quadrature reproduces to ~1e-12.
* The OTF is band-limited to ``2 NA/λ``, so the fine grid must sample that passband:
  ``fine_pixel_um <= λ / (4 NA)``. The PSFs are then the exact samples of the periodised PSF.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict

import numpy as np
import scipy.fft

from nstm_acquire.physics.optics import Optics, frequency_grid
from nstm_acquire.physics.sim.illumination import (
    SimIllumination,
    check_illumination_for_optics,
    pattern_orders,
)

__all__ = [
    "widefield_otf_2d",
    "widefield_otf_radial",
    "defocused_psf_2d",
    "defocused_otf_2d",
    "widefield_psf_3d",
    "camera_pixel_transfer",
    "SimImager",
    "sim_image_2d",
    "sim_image_3d",
]

_FFT_WORKERS = 2


def _check_shape(shape: tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise ValueError(f"{name}={shape!r} must be a tuple of {n} positive ints") from exc
    if len(out) != n or any(s < 1 for s in out) or any(int(s) != s for s in shape):
        raise ValueError(f"{name}={shape!r} must be a tuple of {n} positive ints")
    return out


def _check_positive(value: float, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}={value!r} must be finite and > 0 (µm)")
    return v


def _check_optics(optics: Optics) -> None:
    if not isinstance(optics, Optics):
        raise TypeError(
            f"optics must be an nstm_acquire.physics.optics.Optics, got {type(optics).__name__}"
        )


def _check_passband(pixel_size_um: float, optics: Optics, name: str) -> None:
    limit = optics.wavelength_um / (4.0 * optics.na_detection)
    if pixel_size_um > limit * (1.0 + 1e-9):
        raise ValueError(
            f"{name}={pixel_size_um:.4g} µm is too coarse for the detection passband 2 NA/λ="
            f"{2 * optics.na_detection / optics.wavelength_um:.4g} cycles/µm; it must be at most "
            f"λ/(4 NA)={limit:.4g} µm (raise upsample or lower the pixel size)"
        )


def widefield_otf_2d(
    shape: tuple[int, int], pixel_size_um: float, optics: Optics
) -> np.ndarray:
    """In-focus incoherent OTF of a circular pupil, real float64 ``(Y, X)`` in FFT order.

    ``OTF = (2/π)(acos ν - ν sqrt(1 - ν²))`` with ``ν = |u| / (2 NA / λ)`` for ``ν < 1`` and 0
    beyond; ``u`` the frequencies (cycles/µm) of the grid of ``shape`` and ``pixel_size_um`` (µm),
    ``λ = optics.wavelength_um`` (emission). ``OTF(0) = 1``.
    """
    _check_optics(optics)
    shape = _check_shape(shape, 2, "shape")
    pixel_size_um = _check_positive(pixel_size_um, "pixel_size_um")
    uy, ux = frequency_grid(shape, pixel_size_um)
    nu = np.hypot(uy, ux) / (2.0 * optics.na_detection / optics.wavelength_um)
    inside = nu < 1.0
    nu_in = nu[inside]
    otf = np.zeros(shape, dtype=np.float64)
    otf[inside] = (2.0 / np.pi) * (np.arccos(nu_in) - nu_in * np.sqrt(1.0 - nu_in**2))
    return otf


def widefield_otf_radial(
    q_per_um: np.ndarray | float, optics: Optics, defocus_um: float = 0.0
) -> np.ndarray:
    """Widefield OTF at radial frequencies ``|q|`` (cycles/µm) and defocus ``defocus_um`` (µm).

    The normalised autocorrelation of the defocused pupil (scalar, unapodised, aberration-free,
    ``|u| < NA/λ``, angular-spectrum defocus phase ``exp(i 2π Δz w(u))`` with
    ``w(u) = sqrt((n/λ)² - |u|²)``, ``n = optics.immersion_index``, ``λ = optics.wavelength_um``)::

        OTF(q) = 1/(π R²) ∫ P(u + q/2) P(u - q/2) exp(i 2π Δz [w(u + q/2) - w(u - q/2)]) d²u

    The integrand is symmetric, so the integral is 4 times that over the quarter of the lens
    ``x, y >= 0`` (``q`` along x), computed by Gauss-Legendre quadrature after substituting
    ``x = a (1 - τ²)``, ``a = R - q/2``, which removes the square-root edge of the lens: the
    result converges spectrally (about 1e-12 in focus; the node count grows with the defocus
    phase). ``defocus_um = 0`` gives the analytic in-focus OTF exactly. Real, same shape as ``q``;
    0 for ``|q| >= 2 NA/λ``.
    """
    _check_optics(optics)
    q = np.abs(np.asarray(q_per_um, dtype=np.float64))
    dz = float(defocus_um)
    if not math.isfinite(dz):
        raise ValueError(f"defocus_um={defocus_um!r} must be finite (µm)")
    radius = optics.cutoff_per_um
    if dz == 0.0:
        nu = np.minimum(q / (2.0 * radius), 1.0)
        return (2.0 / np.pi) * (np.arccos(nu) - nu * np.sqrt(1.0 - nu**2))
    k_medium = optics.immersion_index / optics.wavelength_um
    span_cycles = 2.0 * (k_medium - math.sqrt(k_medium**2 - radius**2)) * abs(dz)
    n_nodes = min(24 + int(math.ceil(2.0 * span_cycles)), 600)
    t, w = np.polynomial.legendre.leggauss(n_nodes)
    tau = (t + 1.0) / 2.0
    weight = w / 2.0
    flat = q.reshape(-1)
    out = np.zeros(flat.shape, dtype=np.float64)
    inside = np.nonzero(flat < 2.0 * radius)[0]
    chunk = max(1, 2_000_000 // (n_nodes * n_nodes))
    for start in range(0, inside.size, chunk):
        idx = inside[start : start + chunk]
        half_q = flat[idx, None] / 2.0
        a = radius - half_q  # (m, 1)
        x = a * (1.0 - tau**2)  # (m, n)
        y_max = tau * np.sqrt(a * (2.0 * radius - a * tau**2))  # (m, n)
        y = y_max[..., None] * tau  # (m, n, n)
        y2 = y * y
        w_plus = np.sqrt(k_medium**2 - y2 - ((x + half_q) ** 2)[..., None])
        w_minus = np.sqrt(k_medium**2 - y2 - ((x - half_q) ** 2)[..., None])
        inner = np.cos(2.0 * np.pi * dz * (w_plus - w_minus)) @ weight * y_max
        out[idx] = (inner * (2.0 * a * tau)) @ weight
    out *= 4.0 / (np.pi * radius**2)
    return out.reshape(q.shape)


def defocused_otf_2d(
    shape: tuple[int, int],
    pixel_size_um: float,
    optics: Optics,
    defocus_um: float | np.ndarray,
) -> np.ndarray:
    """Widefield OTFs at the given defoci, real float64 ``(N, Y, X)`` in FFT order, OTF(0) = 1.

    :func:`widefield_otf_radial` on the frequencies of the grid of ``shape`` and
    ``pixel_size_um`` (cycles/µm); out of focus it is tabulated on 1024 radial frequencies and
    interpolated linearly (error below 1e-4), in focus it is the analytic OTF.
    """
    _check_optics(optics)
    shape = _check_shape(shape, 2, "shape")
    pixel_size_um = _check_positive(pixel_size_um, "pixel_size_um")
    dz = np.atleast_1d(np.asarray(defocus_um, dtype=np.float64))
    if dz.ndim != 1 or not np.all(np.isfinite(dz)):
        raise ValueError(
            f"defocus_um must be a finite scalar or 1D array (µm), got shape {dz.shape}"
        )
    uy, ux = frequency_grid(shape, pixel_size_um)
    radius = np.hypot(uy, ux)
    table_q = np.linspace(0.0, 2.0 * optics.cutoff_per_um, 1024)
    out = np.empty((dz.size, *shape), dtype=np.float64)
    for n, z in enumerate(dz):
        if z == 0.0:
            out[n] = widefield_otf_radial(radius, optics, 0.0)
        else:
            table = widefield_otf_radial(table_q, optics, float(z))
            out[n] = np.interp(radius, table_q, table, right=0.0)
    return out


def defocused_psf_2d(
    shape: tuple[int, int],
    pixel_size_um: float,
    optics: Optics,
    defocus_um: float | np.ndarray,
) -> np.ndarray:
    """Widefield intensity PSFs at the given defoci, float64 ``(N, Y, X)``, FFT order.

    The PSF of plane ``n`` is that of a point source ``defocus_um[n]`` µm from the focal plane,
    periodic over the field ``shape * pixel_size_um``, origin at pixel ``(0, 0)`` (FFT order;
    ``numpy.fft.fftshift`` centres it), each plane summing to 1 (defocus only changes the
    phase in the pupil, so every plane carries the same energy). It is the inverse DFT of
    :func:`defocused_otf_2d`, which is exact sampling because the OTF is band-limited to
    ``2 NA/λ``: ``pixel_size_um`` must be at most ``λ/(4 NA)``.
    """
    pixel_size_um = _check_positive(pixel_size_um, "pixel_size_um")
    _check_optics(optics)
    _check_passband(pixel_size_um, optics, "pixel_size_um")
    otf = defocused_otf_2d(shape, pixel_size_um, optics, defocus_um)
    return scipy.fft.ifft2(otf, axes=(-2, -1), workers=_FFT_WORKERS).real


def widefield_psf_3d(
    shape_zyx: tuple[int, int, int],
    pixel_size_um: float,
    z_step_um: float,
    optics: Optics,
) -> np.ndarray:
    """3D widefield intensity PSF, float64 ``(Z, Y, X)``, centred.

    Plane ``iz`` is at defocus ``(iz - Z//2) * z_step_um`` µm (plane ``Z//2`` in focus); the
    point source sits at pixel ``(Y//2, X//2)`` of every plane. Each plane sums to 1 (the
    energy of an out-of-focus plane is the same as in focus; ``psf.sum()`` is ``Z``). Lateral
    sampling ``pixel_size_um`` (at most ``λ/(4 NA)``), emission wavelength and immersion index
    from ``optics``; see :func:`defocused_psf_2d`.
    """
    nz, ny, nx = _check_shape(shape_zyx, 3, "shape_zyx")
    z_step_um = _check_positive(z_step_um, "z_step_um")
    defocus = (np.arange(nz) - nz // 2) * z_step_um
    psf = defocused_psf_2d((ny, nx), pixel_size_um, optics, defocus)
    return np.fft.fftshift(psf, axes=(-2, -1))


def camera_pixel_transfer(
    shape: tuple[int, int], fine_pixel_um: float, camera_pixel_um: float
) -> np.ndarray:
    """Transfer function of integrating over a square camera pixel, real ``(Y, X)`` FFT order.

    ``sinc(P u_y) sinc(P u_x)`` (``sinc(t) = sin(πt)/(πt)``) on the frequencies of the fine grid
    (``shape``, ``fine_pixel_um``), ``P = camera_pixel_um``: multiplying a fine-grid spectrum by
    it and sampling at the camera pixel centres gives the pixel's mean over its area.
    """
    shape = _check_shape(shape, 2, "shape")
    fine_pixel_um = _check_positive(fine_pixel_um, "fine_pixel_um")
    camera_pixel_um = _check_positive(camera_pixel_um, "camera_pixel_um")
    uy = np.fft.fftfreq(shape[0], d=fine_pixel_um)
    ux = np.fft.fftfreq(shape[1], d=fine_pixel_um)
    return np.sinc(camera_pixel_um * uy)[:, None] * np.sinc(camera_pixel_um * ux)[None, :]


class SimImager:
    """Camera frames of a fluorescent sample under SIM illumination, with cached transfers.

    Parameters
    ----------
    optics
        Detection optics; ``optics.pixel_size_um`` is the camera pixel (µm).
    ill
        The illumination (``k_per_um``, ``phase_rad`` and ``modulation`` must be known); checked
        against the optics (:func:`~nstm_acquire.physics.sim.illumination.check_illumination_for_optics`).
    fine_shape
        ``(Yf, Xf)`` of the density grid, multiples of ``upsample``.
    fine_pixel_um
        Density grid spacing, µm; ``upsample = optics.pixel_size_um / fine_pixel_um`` must be an
        integer and ``fine_pixel_um <= λ/(4 NA)``.
    z_um
        3D samples: the axial position of every sample plane ``(Zs,)``, µm (same origin as the
        focus position). ``None`` for 2D samples (one plane at ``z = 0``).

    Images are ``(Y, X) = fine_shape / upsample`` in photons per unit density (module
    docstring). Transfers for each defocus and patterns for each shot are computed on first
    use and cached (bounded); instances are safe to share between threads.
    """

    _CACHE_BYTES = 256 * 2**20

    def __init__(
        self,
        optics: Optics,
        ill: SimIllumination,
        fine_shape: tuple[int, int],
        fine_pixel_um: float,
        z_um: np.ndarray | None = None,
    ):
        _check_optics(optics)
        if not isinstance(ill, SimIllumination):
            raise TypeError(f"ill must be a SimIllumination, got {type(ill).__name__}")
        for name in ("k_per_um", "phase_rad", "modulation"):
            if getattr(ill, name) is None:
                raise ValueError(
                    f"ill.{name} is None: the simulator needs a fully known pattern; set {name}"
                )
        self.optics = optics
        self.ill = ill
        self.fine_shape = _check_shape(fine_shape, 2, "fine_shape")
        self.fine_pixel_um = _check_positive(fine_pixel_um, "fine_pixel_um")
        ratio = optics.pixel_size_um / self.fine_pixel_um
        upsample = int(round(ratio))
        if upsample < 1 or abs(ratio - upsample) > 1e-6 * ratio:
            raise ValueError(
                f"optics.pixel_size_um / fine_pixel_um = {ratio:.6g} must be a whole number "
                "(the upsample factor); set fine_pixel_um = pixel_size_um / upsample"
            )
        self.upsample = upsample
        if any(s % upsample for s in self.fine_shape):
            raise ValueError(
                f"fine_shape={self.fine_shape} must be a multiple of upsample={upsample} "
                "in both axes"
            )
        self.camera_shape = (self.fine_shape[0] // upsample, self.fine_shape[1] // upsample)
        _check_passband(self.fine_pixel_um, optics, "fine_pixel_um")
        check_illumination_for_optics(ill, optics)
        nyquist = 0.5 / self.fine_pixel_um
        for shot in range(ill.n_shots):
            for term in pattern_orders(ill, shot, optics.immersion_index):
                if max(abs(term.k_per_um[0]), abs(term.k_per_um[1])) >= nyquist:
                    raise ValueError(
                        f"pattern order {term.order} of shot {shot} at k={term.k_per_um} cycles/µm "
                        f"is beyond the fine grid's Nyquist {nyquist:.4g}; raise upsample"
                    )
        if z_um is None:
            self.z_um: np.ndarray | None = None
        else:
            z = np.asarray(z_um, dtype=np.float64)
            if z.ndim != 1 or z.size == 0 or not np.all(np.isfinite(z)):
                raise ValueError(
                    f"z_um must be a non-empty finite 1D array (µm), got shape {z.shape}"
                )
            self.z_um = z.copy()
            self.z_um.setflags(write=False)
        self._half = self.fine_shape[1] // 2 + 1
        u2 = float(upsample * upsample)
        self._pixel = (
            camera_pixel_transfer(self.fine_shape, self.fine_pixel_um, optics.pixel_size_um)[
                :, : self._half
            ]
            * u2
        )
        self._in_focus = (
            widefield_otf_2d(self.fine_shape, self.fine_pixel_um, optics)[:, : self._half]
            * self._pixel
        )
        self._in_focus.setflags(write=False)
        self._lock = threading.Lock()
        self._transfers: OrderedDict[float, np.ndarray] = OrderedDict()
        self._max_transfers = max(4, self._CACHE_BYTES // self._in_focus.nbytes)
        self._patterns: dict[int, list[tuple[float, np.ndarray]]] = {}

    # ------------------------------------------------------------------ public
    def image(self, density: np.ndarray, shot: int, focal_z_um: float = 0.0) -> np.ndarray:
        """Camera frame ``(Y, X)`` of shot ``s`` with the focus at ``focal_z_um`` (µm).

        ``density``: ``(Yf, Xf)`` for a 2D sample (at ``z = 0``) or ``(Zs, Yf, Xf)`` on the
        planes ``z_um`` given at construction. Photons per unit density, float64.
        """
        self.ill.orientation_and_phase(shot)
        return self._render(density, shot, focal_z_um)

    def widefield(self, density: np.ndarray, focal_z_um: float = 0.0) -> np.ndarray:
        """Camera frame ``(Y, X)`` under uniform illumination (pattern = 1); see :meth:`image`."""
        return self._render(density, None, focal_z_um)

    def illumination(self, shot: int, focal_z_um: float = 0.0) -> np.ndarray:
        """The pattern of shot ``s`` on the fine grid: ``(Yf, Xf)`` (2D) or ``(Zs, Yf, Xf)``."""
        self.ill.orientation_and_phase(shot)
        planes = np.zeros(1) if self.z_um is None else self.z_um
        groups = self._pattern_groups(shot)
        out = np.zeros((planes.size, *self.fine_shape))
        for kz, lateral in groups:
            out += np.cos(2.0 * np.pi * kz * (planes - focal_z_um))[:, None, None] * lateral
        np.maximum(out, 0.0, out=out)
        return out[0] if self.z_um is None else out

    def transfer(self, defocus_um: float) -> np.ndarray:
        """``OTF_Δz · pixel transfer · upsample²`` on the fine grid, rfft layout (Yf, Xf//2+1)."""
        key = round(float(defocus_um), 9)
        if key == 0.0:
            return self._in_focus
        with self._lock:
            hit = self._transfers.get(key)
            if hit is not None:
                self._transfers.move_to_end(key)
                return hit
        otf = defocused_otf_2d(self.fine_shape, self.fine_pixel_um, self.optics, key)[0]
        value = otf[:, : self._half] * self._pixel
        value.setflags(write=False)
        with self._lock:
            self._transfers[key] = value
            while len(self._transfers) > self._max_transfers:
                self._transfers.popitem(last=False)
        return value

    # ------------------------------------------------------------------ internals
    def _pattern_groups(self, shot: int) -> list[tuple[float, np.ndarray]]:
        """The pattern as ``[(axial_k, lateral map)]``: pattern(z) = Σ cos(2π kz z) map."""
        with self._lock:
            hit = self._patterns.get(shot)
        if hit is not None:
            return hit
        y = (np.arange(self.fine_shape[0]) * self.fine_pixel_um)[:, None]
        x = (np.arange(self.fine_shape[1]) * self.fine_pixel_um)[None, :]
        by_kz: dict[float, np.ndarray] = {}
        for term in pattern_orders(self.ill, shot, self.optics.immersion_index):
            if term.order == 0:
                lateral = np.full(self.fine_shape, term.amplitude)
            else:
                lateral = term.amplitude * np.cos(
                    2.0 * np.pi * (term.k_per_um[0] * y + term.k_per_um[1] * x) + term.phase_rad
                )
            if term.axial_k_per_um in by_kz:
                by_kz[term.axial_k_per_um] = by_kz[term.axial_k_per_um] + lateral
            else:
                by_kz[term.axial_k_per_um] = lateral
        groups = [(kz, m) for kz, m in by_kz.items()]
        for _, m in groups:
            m.setflags(write=False)
        with self._lock:
            self._patterns[shot] = groups
        return groups

    def _render(self, density: np.ndarray, shot: int | None, focal_z_um: float) -> np.ndarray:
        rho = np.asarray(density, dtype=np.float64)
        focal = float(focal_z_um)
        if not math.isfinite(focal):
            raise ValueError(f"focal_z_um={focal_z_um!r} must be finite (µm)")
        if rho.ndim == 2:
            if rho.shape != self.fine_shape:
                raise ValueError(
                    f"density has shape {rho.shape}; this imager expects the fine grid "
                    f"{self.fine_shape}"
                )
            rho = rho[None]
            planes = np.zeros(1)
        elif rho.ndim == 3:
            if self.z_um is None:
                raise ValueError(
                    "density is 3D (Zs, Yf, Xf) but the imager has no z_um; pass the sample "
                    "planes' z_um when creating the SimImager"
                )
            if rho.shape != (self.z_um.size, *self.fine_shape):
                raise ValueError(
                    f"density has shape {rho.shape}; expected (len(z_um), Yf, Xf) = "
                    f"{(self.z_um.size, *self.fine_shape)}"
                )
            planes = self.z_um
        else:
            raise ValueError(f"density must be (Yf, Xf) or (Zs, Yf, Xf), got shape {rho.shape}")
        if not np.all(np.isfinite(rho)):
            raise ValueError("density contains NaN or inf")
        groups = None if shot is None else self._pattern_groups(shot)
        spectrum = np.zeros((self.fine_shape[0], self._half), dtype=np.complex128)
        for j, z in enumerate(planes):
            plane = rho[j]
            if not plane.any():
                continue
            dz = float(z) - focal
            if groups is None:
                emission = plane
            else:
                pattern = None
                for kz, lateral in groups:
                    term = lateral if kz == 0.0 else math.cos(2.0 * math.pi * kz * dz) * lateral
                    pattern = term if pattern is None else pattern + term
                emission = plane * pattern
            spectrum += scipy.fft.rfft2(emission, workers=_FFT_WORKERS) * self.transfer(dz)
        fine = scipy.fft.irfft2(spectrum, s=self.fine_shape, workers=_FFT_WORKERS)
        u = self.upsample
        return np.ascontiguousarray(fine[::u, ::u])


@functools.lru_cache(maxsize=4)
def _cached_imager(
    optics: Optics,
    ill: SimIllumination,
    fine_shape: tuple[int, int],
    fine_pixel_um: float,
    z_um: tuple[float, ...] | None,
) -> SimImager:
    planes = None if z_um is None else np.array(z_um)
    return SimImager(optics, ill, fine_shape, fine_pixel_um, planes)


def _check_upsample(fine_pixel_um: float, optics: Optics, upsample: int) -> None:
    if isinstance(upsample, bool) or int(upsample) != upsample or upsample < 1:
        raise ValueError(f"upsample={upsample!r} must be an int >= 1")
    expected = optics.pixel_size_um / upsample
    if abs(fine_pixel_um - expected) > 1e-6 * expected:
        raise ValueError(
            f"fine_pixel_um={fine_pixel_um} does not match optics.pixel_size_um / upsample = "
            f"{expected:.6g} µm; give the fine grid spacing of the density"
        )


def sim_image_2d(
    density: np.ndarray,
    fine_pixel_um: float,
    ill: SimIllumination,
    shot: int,
    optics: Optics,
    upsample: int,
) -> np.ndarray:
    """Camera frame ``(Y, X)`` of a 2D density ``(Y*u, X*u)`` (in focus) under shot ``s``.

    ``bin_u(PSF ⊛ (density × pattern))`` in photons per unit density; fine pixel ``(0, 0)``
    centred on camera pixel ``(0, 0)``, ``fine_pixel_um * upsample == optics.pixel_size_um``.
    See the module docstring; repeated calls reuse a cached :class:`SimImager`.
    """
    _check_optics(optics)
    _check_upsample(fine_pixel_um, optics, upsample)
    rho = np.asarray(density)
    if rho.ndim != 2:
        raise ValueError(f"density must be 2D (Y*u, X*u), got shape {rho.shape}")
    imager = _cached_imager(optics, ill, tuple(rho.shape), float(fine_pixel_um), None)
    return imager.image(rho, shot, 0.0)


def sim_image_3d(
    density: np.ndarray,
    z_um: np.ndarray,
    focal_z_um: float,
    fine_pixel_um: float,
    ill: SimIllumination,
    shot: int,
    optics: Optics,
    upsample: int,
) -> np.ndarray:
    """Camera frame ``(Y, X)`` focused at ``focal_z_um`` of a 3D density ``(Zs, Y*u, X*u)``.

    ``Σ_j PSF_{z_j - z_f} ⊛ (density_j × pattern(z_j - z_f))`` binned to camera pixels, photons
    per unit density; ``z_um`` ``(Zs,)`` are the sample planes' positions (µm), the pattern is
    fixed to the focal plane. Repeated calls reuse a cached :class:`SimImager`.
    """
    _check_optics(optics)
    _check_upsample(fine_pixel_um, optics, upsample)
    rho = np.asarray(density)
    z = np.asarray(z_um, dtype=np.float64)
    if rho.ndim != 3 or z.shape != (rho.shape[0],):
        raise ValueError(
            f"density must be (Zs, Y*u, X*u) and z_um (Zs,); got {rho.shape} and {z.shape}"
        )
    imager = _cached_imager(
        optics, ill, tuple(rho.shape[1:]), float(fine_pixel_um), tuple(float(v) for v in z)
    )
    return imager.image(rho, shot, focal_z_um)
