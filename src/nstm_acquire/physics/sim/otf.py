"""Transfer functions of SIM image formation (numpy), shared by estimation, Wiener and forward models.

Everything here is a pure function of arrays and :class:`~nstm_acquire.physics.optics.Optics`; it
reproduces the image formation of the simulated camera
(``nstm_acquire.hardware.simulated.fluorescence_imaging``, which this package must not import) and is
tested against it.

Conventions (``docs/conventions.md``): lateral frequencies ``q = (q_y, q_x)`` and axial
frequencies ``k_z`` in cycles/µm, lengths in µm, arrays ``(..., z, y, x)``, grids in FFT order
(``numpy.fft.fftfreq``). ``λ = optics.wavelength_um`` is the **emission** wavelength,
``n = optics.immersion_index``.

Models
------
* In-focus widefield OTF of a circular, aberration-free pupil of radius ``NA/λ``: the
  normalised pupil autocorrelation ``(2/π)(acos ν - ν sqrt(1 - ν²))``, ``ν = |q| / (2 NA/λ)``,
  0 for ``ν >= 1``; ``OTF(0) = 1``.
* Defocused OTF ``T(q; Δz)``: the normalised autocorrelation of the pupil carrying the
  angular-spectrum defocus phase ``exp(i 2π Δz w(u))``, ``w(u) = sqrt((n/λ)² - |u|²)``. It is
  real and even in ``Δz`` and every plane carries the same energy (``T(0; Δz) = 1``).
* Camera pixel integration over a square pixel of side ``P``: ``sinc(P q_y) sinc(P q_x)``
  (``sinc(t) = sin(πt)/(πt)``). A pattern of modulation ``m`` at ``k`` is therefore seen in
  raw frames with modulation ``m · OTF(k) · sinc(P k_y) sinc(P k_x)``.
* A z stack of ``Z`` planes ``z_step_um`` apart, in which plane ``z_f`` records
  ``Σ_j T(z_j - z_f) ρ_j`` (the pattern fixed to the focal plane), is modelled as a
  *circular* convolution along z. Its transfer is the DFT over the plane offsets
  ``Δz_n = n · z_step_um`` (``n`` in FFT order, :func:`stack_defocus_um`) of the per-plane OTFs,
  **unnormalised**: ``OTF3(q, k_z) = Σ_n T(q; Δz_n) exp(-i 2π k_z Δz_n)``, so
  ``OTF3(0, 0) = Z`` and ``ifftn(fftn(ρ) · OTF3)`` is the stack (what a forward model needs;
  divide by ``Z`` for a transfer with unit DC). It is real because ``T`` is even in ``Δz``.
* Three-beam SIM (``docs/conventions.md``): order 1 of the pattern carries
  ``cos(2π k_z1 Δz)``; its effective 3D transfer is the DFT of ``T(q; Δz_n) cos(2π k_z1 Δz_n)``,
  which is ``½ [OTF3(q, k_z - k_z1) + OTF3(q, k_z + k_z1)]`` (the widefield 3D OTF shifted
  by ``± k_z1`` along the axial frequency) evaluated exactly on the discrete stack. Orders 0 and
  2 use ``OTF3`` itself.

Defocused OTFs on a grid are tabulated on ``n_table`` radial frequencies and interpolated
linearly, exactly like the simulator (error below 1e-4); the in-focus plane is analytic.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from nstm_acquire.physics.optics import Optics

__all__ = [
    "lateral_cutoff_per_um",
    "axial_cutoff_per_um",
    "otf_in_focus",
    "otf_2d",
    "otf_radial",
    "defocused_otf_2d",
    "pixel_transfer_at",
    "camera_pixel_transfer",
    "stack_defocus_um",
    "otf_3d",
    "three_beam_order_otfs",
    "order_transfer",
    "OrderTransfer",
    "MeasuredPsf",
    "load_psf",
    "measured_three_beam_order_otfs",
]

_DEFAULT_TABLE = 1024


# ----------------------------------------------------------------------------- checks
def _check_optics(optics: Optics) -> None:
    if not isinstance(optics, Optics):
        raise TypeError(
            f"optics must be an nstm_acquire.physics.optics.Optics, got {type(optics).__name__}"
        )


def _positive(value: float, name: str, unit: str = "µm") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a finite number > 0 ({unit})") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}={value!r} must be finite and > 0 ({unit})")
    return v


def _shape(shape: tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{name}={shape!r} must be a tuple of {n} positive ints") from None
    if len(out) != n or any(s < 1 for s in out) or any(int(s) != s for s in shape):
        raise ValueError(f"{name}={shape!r} must be a tuple of {n} positive ints")
    return out


def _finite(value: float, name: str, unit: str) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}={value!r} must be finite ({unit})")
    return v


# ----------------------------------------------------------------------------- cut-offs
def lateral_cutoff_per_um(optics: Optics) -> float:
    """Incoherent lateral cut-off ``2 NA / λ_em``, cycles/µm."""
    _check_optics(optics)
    return 2.0 * optics.na_detection / optics.wavelength_um


def axial_cutoff_per_um(optics: Optics) -> float:
    """Largest axial frequency of the widefield 3D OTF, ``(n - sqrt(n² - NA²)) / λ_em``, cycles/µm.

    Reached at the lateral frequency ``NA/λ``; the widefield OTF is zero beyond it.
    """
    _check_optics(optics)
    n, na = optics.immersion_index, optics.na_detection
    return (n - math.sqrt(n * n - na * na)) / optics.wavelength_um


# ----------------------------------------------------------------------------- in focus
def otf_in_focus(q_per_um: np.ndarray | float, optics: Optics) -> np.ndarray:
    """Analytic in-focus OTF at radial frequencies ``|q|`` (cycles/µm, any shape), float64.

    ``(2/π)(acos ν - ν sqrt(1 - ν²))`` with ``ν = |q| / (2 NA/λ)``; 0 for ``ν >= 1``.
    """
    _check_optics(optics)
    nu = np.abs(np.asarray(q_per_um, dtype=np.float64)) / lateral_cutoff_per_um(optics)
    nu = np.minimum(nu, 1.0)
    return (2.0 / np.pi) * (np.arccos(nu) - nu * np.sqrt(1.0 - nu * nu))


def otf_2d(shape: tuple[int, int], pixel_size_um: float, optics: Optics) -> np.ndarray:
    """In-focus widefield OTF on the FFT grid of ``shape`` pixels of ``pixel_size_um`` µm.

    Real float64 ``(Y, X)`` in FFT order, ``OTF(0) = 1`` (:func:`otf_in_focus`).
    """
    ny, nx = _shape(shape, 2, "shape")
    px = _positive(pixel_size_um, "pixel_size_um")
    qy = np.fft.fftfreq(ny, d=px)[:, None]
    qx = np.fft.fftfreq(nx, d=px)[None, :]
    return otf_in_focus(np.hypot(qy, qx), optics)


# ----------------------------------------------------------------------------- defocus
def _defocus_nodes(optics: Optics, defocus_um: float) -> int:
    """Gauss-Legendre nodes per axis for the defocused autocorrelation (grows with the phase span)."""
    k_medium = optics.immersion_index / optics.wavelength_um
    radius = optics.cutoff_per_um
    span_cycles = 2.0 * (k_medium - math.sqrt(k_medium**2 - radius**2)) * abs(defocus_um)
    return int(min(40 + 4 * math.ceil(span_cycles), 900))


def otf_radial(
    q_per_um: np.ndarray | float, optics: Optics, defocus_um: float = 0.0
) -> np.ndarray:
    """Widefield OTF at radial frequencies ``|q|`` (cycles/µm) and defocus ``defocus_um`` (µm).

    ``T(q; Δz) = 1/(π R²) ∬ P(u + q/2) P(u - q/2) cos(2π Δz [w(u + q/2) - w(u - q/2)]) d²u``
    with ``R = NA/λ``, ``w(u) = sqrt((n/λ)² - |u|²)`` (emission wavelength, immersion index).
    With ``q`` along x the integrand is even in both ``u_x`` and ``u_y``; on the quarter
    ``u_x, u_y >= 0`` the lens is bounded by the circle ``|u + q/2| = R``, parametrised by its
    angle: ``u_x = R cos φ - q/2`` (``φ ∈ [0, acos(q / 2R)]``), ``u_y = s R sin φ``
    (``s ∈ [0, 1]``), area element ``R² sin²φ dφ ds``. The integrand is analytic in ``(φ, s)``,
    so Gauss-Legendre quadrature converges spectrally (to ~1e-13 in focus).
    ``defocus_um = 0`` returns the analytic OTF. Real float64, shape of ``q``; 0 for
    ``|q| >= 2 NA/λ``.
    """
    _check_optics(optics)
    q = np.abs(np.asarray(q_per_um, dtype=np.float64))
    dz = _finite(defocus_um, "defocus_um", "µm")
    if dz == 0.0:
        return otf_in_focus(q, optics)
    radius = optics.cutoff_per_um
    k2 = (optics.immersion_index / optics.wavelength_um) ** 2
    n = _defocus_nodes(optics, dz)
    nodes, weights = np.polynomial.legendre.leggauss(n)
    t01 = (nodes + 1.0) / 2.0  # [0, 1]
    w01 = weights / 2.0
    flat = q.reshape(-1)
    out = np.zeros(flat.shape, dtype=np.float64)
    inside = np.flatnonzero(flat < 2.0 * radius)
    chunk = max(1, 3_000_000 // (n * n))
    for start in range(0, inside.size, chunk):
        idx = inside[start : start + chunk]
        half = flat[idx, None] / 2.0  # (m, 1)
        phi_max = np.arccos(np.minimum(half / radius, 1.0))  # (m, 1)
        phi = phi_max * t01  # (m, nφ)
        ux = radius * np.cos(phi) - half  # (m, nφ)
        y_len = radius * np.sin(phi)  # (m, nφ)
        uy = y_len[..., None] * t01  # (m, nφ, ns)
        rest = k2 - uy**2
        w_plus = np.sqrt(rest - ((ux + half) ** 2)[..., None])
        w_minus = np.sqrt(rest - ((ux - half) ** 2)[..., None])
        inner = np.cos(2.0 * np.pi * dz * (w_plus - w_minus)) @ w01  # (m, nφ)
        out[idx] = ((inner * y_len**2) @ w01) * phi_max[:, 0]
    out *= 4.0 / (np.pi * radius**2)
    return out.reshape(q.shape)


@functools.lru_cache(maxsize=256)
def _radial_table(optics: Optics, defocus_um: float, n_table: int) -> tuple[np.ndarray, np.ndarray]:
    q_table = np.linspace(0.0, 2.0 * optics.cutoff_per_um, n_table)
    table = otf_radial(q_table, optics, defocus_um)
    q_table.setflags(write=False)
    table.setflags(write=False)
    return q_table, table


def _plane_otf(radius: np.ndarray, optics: Optics, defocus_um: float, n_table: int) -> np.ndarray:
    """``T(|q|; Δz)`` at radii ``radius``: analytic in focus, else the interpolated table."""
    if defocus_um == 0.0:
        return otf_in_focus(radius, optics)
    q_table, table = _radial_table(optics, float(defocus_um), int(n_table))
    return np.interp(radius, q_table, table, right=0.0)


def defocused_otf_2d(
    shape: tuple[int, int],
    pixel_size_um: float,
    optics: Optics,
    defocus_um: float | np.ndarray,
    n_table: int = _DEFAULT_TABLE,
) -> np.ndarray:
    """Widefield OTFs ``T(q; Δz)`` at the given defoci on an FFT grid, float64 ``(N, Y, X)``.

    In focus analytic; out of focus :func:`otf_radial` tabulated on ``n_table`` radial
    frequencies in ``[0, 2 NA/λ]`` and interpolated linearly. ``T(0) = 1`` on every plane.
    """
    _check_optics(optics)
    ny, nx = _shape(shape, 2, "shape")
    px = _positive(pixel_size_um, "pixel_size_um")
    dz = np.atleast_1d(np.asarray(defocus_um, dtype=np.float64))
    if dz.ndim != 1 or not np.all(np.isfinite(dz)):
        raise ValueError(f"defocus_um must be a finite scalar or 1D array (µm), got {dz.shape}")
    radius = np.hypot(np.fft.fftfreq(ny, d=px)[:, None], np.fft.fftfreq(nx, d=px)[None, :])
    out = np.empty((dz.size, ny, nx), dtype=np.float64)
    for i, z in enumerate(dz):
        out[i] = _plane_otf(radius, optics, float(z), n_table)
    return out


# ----------------------------------------------------------------------------- pixel
def pixel_transfer_at(
    q_y: np.ndarray | float, q_x: np.ndarray | float, camera_pixel_um: float
) -> np.ndarray:
    """Camera pixel integration ``sinc(P q_y) sinc(P q_x)`` at frequencies (cycles/µm, broadcast).

    ``P = camera_pixel_um`` (µm); ``sinc(t) = sin(πt)/(πt)``.
    """
    p = _positive(camera_pixel_um, "camera_pixel_um")
    return np.sinc(p * np.asarray(q_y, dtype=np.float64)) * np.sinc(
        p * np.asarray(q_x, dtype=np.float64)
    )


def camera_pixel_transfer(
    shape: tuple[int, int], pixel_size_um: float, camera_pixel_um: float
) -> np.ndarray:
    """:func:`pixel_transfer_at` on the FFT grid of ``shape`` pixels of ``pixel_size_um`` µm.

    Real float64 ``(Y, X)``, FFT order. The grid may be finer than the camera (a simulator's or
    reconstruction's fine grid) or the camera grid itself (``pixel_size_um == camera_pixel_um``).
    """
    ny, nx = _shape(shape, 2, "shape")
    px = _positive(pixel_size_um, "pixel_size_um")
    qy = np.fft.fftfreq(ny, d=px)[:, None]
    qx = np.fft.fftfreq(nx, d=px)[None, :]
    return pixel_transfer_at(qy, qx, camera_pixel_um)


# ----------------------------------------------------------------------------- 3D
def stack_defocus_um(n_planes: int, z_step_um: float) -> np.ndarray:
    """Plane offsets ``Δz_n = n · z_step_um`` in FFT order (``n = 0, 1, …, -1``), µm, ``(Z,)``."""
    if isinstance(n_planes, bool) or int(n_planes) != n_planes or n_planes < 1:
        raise ValueError(f"n_planes={n_planes!r} must be an int >= 1")
    dz = _positive(z_step_um, "z_step_um")
    return np.fft.fftfreq(int(n_planes), d=1.0 / int(n_planes)) * dz


def _axial_weights(n_planes: int, z_step_um: float, axial_k_per_um: float) -> tuple[np.ndarray, np.ndarray]:
    dz = stack_defocus_um(n_planes, z_step_um)
    kz = _finite(axial_k_per_um, "axial_k_per_um", "cycles/µm")
    return dz, np.cos(2.0 * np.pi * kz * dz)


def _dft_over_planes(per_plane: np.ndarray) -> np.ndarray:
    """Unnormalised DFT over axis 0 of values that are even in Δz: real float64."""
    return np.fft.fft(per_plane, axis=0).real


def otf_3d(
    shape_zyx: tuple[int, int, int],
    pixel_size_um: float,
    z_step_um: float,
    optics: Optics,
    axial_k_per_um: float = 0.0,
    camera_pixel_um: float | None = None,
    n_table: int = _DEFAULT_TABLE,
) -> np.ndarray:
    """3D transfer of a z stack, real float64 ``(Z, Y, X)``, FFT order in all axes.

    ``Σ_n T(q; Δz_n) cos(2π k_z1 Δz_n) exp(-i 2π k_z Δz_n)`` over the plane offsets
    ``Δz_n`` (:func:`stack_defocus_um`), lateral grid ``(Y, X)`` of ``pixel_size_um`` µm. With
    ``axial_k_per_um = 0`` this is the widefield 3D OTF (DC ``Z``, module docstring); with the
    three-beam ``k_z1`` it is order 1's transfer. ``camera_pixel_um`` multiplies by the camera
    pixel integration (:func:`camera_pixel_transfer`).
    """
    nz, ny, nx = _shape(shape_zyx, 3, "shape_zyx")
    dz, weight = _axial_weights(nz, z_step_um, axial_k_per_um)
    per_plane = defocused_otf_2d((ny, nx), pixel_size_um, optics, dz, n_table)
    per_plane *= weight[:, None, None]
    out = _dft_over_planes(per_plane)
    if camera_pixel_um is not None:
        out *= camera_pixel_transfer((ny, nx), pixel_size_um, camera_pixel_um)
    return out


def three_beam_order_otfs(
    shape_zyx: tuple[int, int, int],
    pixel_size_um: float,
    z_step_um: float,
    optics: Optics,
    axial_k_per_um: float,
    camera_pixel_um: float | None = None,
    n_table: int = _DEFAULT_TABLE,
) -> np.ndarray:
    """Per-order 3D transfers of three-beam SIM, real float64 ``(3, Z, Y, X)`` for orders 0, 1, 2.

    Orders 0 and 2: the widefield 3D OTF; order 1: the same with its axial modulation
    ``cos(2π k_z1 Δz)`` (``axial_k_per_um``, cycles/µm), i.e. the OTF shifted by ``± k_z1`` in
    the axial frequency (module docstring). Unnormalised (order 0 DC = ``Z``), lateral grid of
    ``pixel_size_um`` µm, camera pixel integration included when ``camera_pixel_um`` is given.
    These multiply the 3D spectrum of ``density × lateral order field`` in a forward model.
    """
    base = otf_3d(shape_zyx, pixel_size_um, z_step_um, optics, 0.0, camera_pixel_um, n_table)
    first = otf_3d(
        shape_zyx, pixel_size_um, z_step_um, optics, axial_k_per_um, camera_pixel_um, n_table
    )
    return np.stack([base, first, base])


def measured_three_beam_order_otfs(
    psf: MeasuredPsf, shape_zyx: tuple[int, int, int], pixel_size_um: float, z_step_um: float, axial_k_per_um: float
) -> np.ndarray:
    """:func:`three_beam_order_otfs` from a measured PSF, complex128 ``(3, Z, Y, X)``.

    The same construction (DFT over the stack's plane offsets of the per-plane transfers, order
    1 weighted by ``cos(2π k_z1 Δz)``) with the measured per-plane OTFs; the camera pixel
    integration is part of the measurement.
    """
    nz, ny, nx = _shape(shape_zyx, 3, "shape_zyx")
    qy = np.fft.fftfreq(ny, d=_positive(pixel_size_um, "pixel_size_um"))[:, None]
    qx = np.fft.fftfreq(nx, d=pixel_size_um)[None, :]
    base = _measured_stack_transfer(psf, qy, qx, nz, z_step_um, 0.0)
    first = _measured_stack_transfer(psf, qy, qx, nz, z_step_um, axial_k_per_um)
    return np.stack([base, first, base])


def _measured_stack_transfer(
    psf: MeasuredPsf, qy: np.ndarray, qx: np.ndarray, n_planes: int, z_step_um: float, axial_k_per_um: float
) -> np.ndarray:
    """DFT over the stack's plane offsets of the measured OTFs weighted by ``cos(2π k_z1 Δz)``,
    complex ``(Z, *broadcast(qy, qx))`` (:func:`otf_3d`'s construction)."""
    dz, weight = _axial_weights(n_planes, z_step_um, axial_k_per_um)
    per_plane = np.stack([psf.plane_otf(float(z), qy, qx) * w for z, w in zip(dz, weight)])
    return np.fft.fft(per_plane, axis=0)


def order_transfer(
    q_y: np.ndarray,
    q_x: np.ndarray,
    optics: Optics,
    n_planes: int | None = None,
    z_step_um: float | None = None,
    axial_k_per_um: float = 0.0,
    camera_pixel_um: float | None = None,
    n_table: int = _DEFAULT_TABLE,
    psf: MeasuredPsf | None = None,
) -> np.ndarray:
    """Transfer at arbitrary (off-grid) lateral frequencies, for shifted SIM bands.

    ``n_planes=None``: the in-focus 2D OTF at ``(q_y, q_x)`` (cycles/µm, broadcast), shape of
    the broadcast. With ``n_planes = Z`` and ``z_step_um``: the 3D transfer of :func:`otf_3d`
    (unnormalised, ``axial_k_per_um`` modulation) at those lateral frequencies and every axial
    frequency bin, shape ``(Z, *broadcast)`` with the axial frequency first in FFT order.
    ``camera_pixel_um`` multiplies by the pixel integration. Frequencies beyond the lateral
    cut-off give 0. With a measured ``psf`` its per-plane OTFs replace the theoretical ones
    (complex; the camera pixel integration is part of the measurement, ``camera_pixel_um`` is
    ignored).
    """
    _check_optics(optics)
    qy = np.asarray(q_y, dtype=np.float64)
    qx = np.asarray(q_x, dtype=np.float64)
    if psf is not None:
        if n_planes is None:
            return psf.plane_otf(0.0, qy, qx)
        if z_step_um is None:
            raise ValueError("z_step_um is required with n_planes (the stack's plane spacing, µm)")
        return _measured_stack_transfer(psf, qy, qx, n_planes, z_step_um, axial_k_per_um)
    radius = np.hypot(qy, qx)
    if n_planes is None:
        out = otf_in_focus(radius, optics)
    else:
        if z_step_um is None:
            raise ValueError("z_step_um is required with n_planes (the stack's plane spacing, µm)")
        dz, weight = _axial_weights(n_planes, z_step_um, axial_k_per_um)
        per_plane = np.empty((dz.size, *radius.shape), dtype=np.float64)
        for i, z in enumerate(dz):
            per_plane[i] = _plane_otf(radius, optics, float(z), n_table) * weight[i]
        out = _dft_over_planes(per_plane)
    if camera_pixel_um is not None:
        out = out * pixel_transfer_at(qy, qx, camera_pixel_um)
    return out


class OrderTransfer:
    """Transfers of the separated SIM bands at arbitrary lateral frequencies, camera pixel included.

    ``OrderTransfer(optics, three_beam, n_planes, z_step_um)(q_y, q_x, axial_k_per_um)``
    returns an array with a leading axis:

    * two-beam: length 1, the in-focus OTF times the camera pixel integration
      (``optics.pixel_size_um``); it broadcasts over the planes of a stack, each treated as in
      focus; with a measured ``psf``, its in-focus OTF (complex);
    * three-beam: the ``n_planes`` axial-frequency bins (FFT order) of :func:`order_transfer`
      for a stack ``z_step_um`` apart, **divided by** ``n_planes`` so that order 0 has unit DC;
      ``axial_k_per_um`` is order 1's axial modulation (0 for orders 0 and 2).
    """

    def __init__(
        self,
        optics: Optics,
        three_beam: bool,
        n_planes: int,
        z_step_um: float | None,
        psf: MeasuredPsf | None = None,
    ) -> None:
        _check_optics(optics)
        if three_beam and z_step_um is None:
            raise ValueError("three-beam transfers need z_step_um (the stack's plane spacing, µm)")
        self.optics = optics
        self.three_beam = bool(three_beam)
        self.n_planes = int(n_planes)
        self.z_step_um = z_step_um
        self.camera_pixel_um = optics.pixel_size_um
        self.psf = psf

    def __call__(
        self, q_y: np.ndarray, q_x: np.ndarray, axial_k_per_um: float = 0.0
    ) -> np.ndarray:
        if self.three_beam:
            out = order_transfer(
                q_y,
                q_x,
                self.optics,
                n_planes=self.n_planes,
                z_step_um=self.z_step_um,
                axial_k_per_um=axial_k_per_um,
                camera_pixel_um=self.camera_pixel_um,
                psf=self.psf,
            )
            return out / self.n_planes
        out = order_transfer(q_y, q_x, self.optics, camera_pixel_um=self.camera_pixel_um, psf=self.psf)
        return out[None]


# ----------------------------------------------------------------------------- measured PSF
class MeasuredPsf:
    """A measured point-spread function (an image of one sub-resolution bead) as the transfer.

    ``psf`` ``(Y, X)`` or ``(Z, Y, X)`` camera counts, laterally ``pixel_size_um`` µm apart (the
    camera pixel, usually) and axially ``z_step_um`` (stacks; plane ``i`` with the focus
    ``(i - i_focus) z_step_um`` beyond the bead). The median of the array's border is taken as
    background and subtracted, negatives set to 0; the in-focus plane is the one holding the
    brightest pixel, that pixel becomes the lateral origin (an integer shift; any sub-pixel
    offset stays in the OTF's phase), and every plane is divided by the in-focus plane's total,
    so ``OTF(0) = 1`` in focus. The camera pixel's integration is part of the measurement.

    :meth:`plane_otf` interpolates the per-plane OTFs (bilinear in frequency, linear in
    defocus; 0 beyond the measured frequencies and planes).
    """

    def __init__(self, psf: np.ndarray, pixel_size_um: float, z_step_um: float | None = None) -> None:
        a = np.asarray(psf, dtype=np.float64)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"psf must be (Y, X) or (Z, Y, X), got shape {np.shape(psf)}")
        if min(a.shape[1:]) < 8:
            raise ValueError(f"psf frames {a.shape[1:]} are too small; give at least 8 x 8 pixels around the bead")
        if not np.all(np.isfinite(a)):
            raise ValueError("psf contains NaN or inf")
        self.pixel_size_um = _positive(pixel_size_um, "psf_pixel_size_um")
        if a.shape[0] > 1 and z_step_um is None:
            raise ValueError("a PSF stack needs its plane spacing: set optics.psf_z_step_um (or z_step_um)")
        self.z_step_um = None if z_step_um is None else _positive(z_step_um, "psf_z_step_um")
        border = np.concatenate([a[:, 0].ravel(), a[:, -1].ravel(), a[:, :, 0].ravel(), a[:, :, -1].ravel()])
        a = np.maximum(a - np.median(border), 0.0)
        z0, y0, x0 = np.unravel_index(int(np.argmax(a)), a.shape)
        total = float(a[z0].sum())
        if not total > 0:
            raise ValueError("psf is empty after removing the background (the median of its border)")
        a = np.roll(a / total, (-y0, -x0), axis=(1, 2))
        self.focus_index = int(z0)
        self._otf = np.fft.fftshift(np.fft.fft2(a), axes=(1, 2))  # (Zp, Y, X), centred
        ny, nx = a.shape[1:]
        # index of frequency q on the centred grid: q * N * pixel + N // 2
        self._scale = (ny * self.pixel_size_um, nx * self.pixel_size_um)
        self._centre = (ny // 2, nx // 2)

    @property
    def n_planes(self) -> int:
        return int(self._otf.shape[0])

    def _lateral(self, plane: int, q_y: np.ndarray, q_x: np.ndarray) -> np.ndarray:
        from scipy.ndimage import map_coordinates

        iy = np.asarray(q_y, np.float64) * self._scale[0] + self._centre[0]
        ix = np.asarray(q_x, np.float64) * self._scale[1] + self._centre[1]
        iy, ix = np.broadcast_arrays(iy, ix)
        coords = np.stack([iy.ravel(), ix.ravel()])
        grid = self._otf[plane]
        re = map_coordinates(grid.real, coords, order=1, mode="constant", cval=0.0)
        im = map_coordinates(grid.imag, coords, order=1, mode="constant", cval=0.0)
        return (re + 1j * im).reshape(iy.shape)

    def plane_otf(self, defocus_um: float, q_y: np.ndarray, q_x: np.ndarray) -> np.ndarray:
        """The OTF at ``defocus_um`` (µm from focus) and lateral frequencies (cycles/µm), complex."""
        if self.n_planes == 1 or self.z_step_um is None:
            if defocus_um != 0.0:
                return np.zeros(np.broadcast_shapes(np.shape(q_y), np.shape(q_x)), np.complex128)
            return self._lateral(0, q_y, q_x)
        f = self.focus_index + float(defocus_um) / self.z_step_um
        if f < -1e-9 or f > self.n_planes - 1 + 1e-9:
            return np.zeros(np.broadcast_shapes(np.shape(q_y), np.shape(q_x)), np.complex128)
        lo = int(np.clip(np.floor(f + 1e-9), 0, self.n_planes - 1))
        frac = f - lo
        out = self._lateral(lo, q_y, q_x)
        if frac > 1e-9 and lo + 1 < self.n_planes:
            out = (1.0 - frac) * out + frac * self._lateral(lo + 1, q_y, q_x)
        return out

    def otf_2d(self, shape: tuple[int, int], pixel_size_um: float) -> np.ndarray:
        """In-focus OTF on the FFT grid of ``shape`` pixels of ``pixel_size_um`` µm, complex128."""
        ny, nx = _shape(shape, 2, "shape")
        px = _positive(pixel_size_um, "pixel_size_um")
        return self.plane_otf(0.0, np.fft.fftfreq(ny, d=px)[:, None], np.fft.fftfreq(nx, d=px)[None, :])


def load_psf(optics: Optics, folder: str | None = None) -> MeasuredPsf | None:
    """The measured PSF named by ``optics.psf_file`` (None when it names none).

    A relative path is taken from ``folder`` (the folder holding the store). ``.npy`` files are
    read with numpy, ``.tif``/``.tiff`` with tifffile. Sampling: ``optics.psf_pixel_size_um``
    (default the camera pixel) and ``optics.psf_z_step_um`` (default ``optics.z_step_um``).
    """
    if optics.psf_file is None:
        return None
    from pathlib import Path

    path = Path(optics.psf_file)
    if not path.is_absolute() and folder is not None:
        path = Path(folder) / path
    if not path.exists():
        raise FileNotFoundError(
            f"optics.psf_file: {path} does not exist; give an absolute path or one relative to the folder of the store"
        )
    if path.suffix.lower() == ".npy":
        data = np.load(path)
    elif path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        data = tifffile.imread(path)
    else:
        raise ValueError(f"optics.psf_file: {path.name} must be .npy, .tif or .tiff")
    return MeasuredPsf(
        data,
        optics.psf_pixel_size_um or optics.pixel_size_um,
        optics.psf_z_step_um or optics.z_step_um,
    )
