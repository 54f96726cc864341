"""Conventional SIM reconstruction: generalised Wiener filter (2D two-beam, 3D three-beam), numpy.

The static-sample baseline (``conventional`` in the reconstruction output, FORMAT.md) and the
comparison for the NSTM. Written from Gustafsson et al. (2000, 2008) and the fairSIM
description (Müller et al. 2016); conventions from ``docs/conventions.md``.

Method, per orientation ``d`` (illumination complete, e.g. from
:func:`~nstm_acquire.physics.sim.estimation.resolve_sim_parameters`):

1. Separate the orders with the convention's phase steps
   (:func:`~nstm_acquire.physics.sim.estimation.separate_orders`); order ``m`` holds
   ``T_m(q) ρ̃(q - m k_m)`` with ``T_m = c_m e^{i m φ_d} H_m`` (``c_0 = 1``; two-beam
   ``c_{±1} = m/2``, lateral frequency ``k``; three-beam ``c_{±1} = m1/2`` at ``± k/2`` with
   the axially modulated transfer, ``c_{±2} = m2/2`` at ``± k``). ``H_m`` is the detection OTF
   times the camera-pixel integration (:mod:`.sim_otf`). Three-beam: the stack is first
   zero-padded along z (:func:`z_padding_planes`) so the 3D FFT does not wrap one end plane's
   blur onto the other; the 3D transfers over the padded stack (PSF planes out to half its
   length) are scaled to one widefield depth of field (``Σ_planes`` times ``Δz`` times the
   axial cut-off), so that ``|T|`` and the Wiener constant do not depend on the number or
   spacing of the planes.
2. Place every band on the finer output grid (zero padding of its spectrum: the output grid has
   ``upsample`` times more pixels per axis, pixel ``(0, 0)`` centred on raw pixel ``(0, 0)``,
   pixel size ``optics.pixel_size_um / upsample``), move it to its true position by the
   real-space phase ramp ``exp(-i 2π m k_m·r)`` on that grid (exact for sub-pixel shifts), and
   weight it by ``conj(T_m(q + m k_m))``.
3. Sum over orders and orientations, divide by ``Σ |T_m(q + m k_m)|² + w²``, multiply by an
   apodisation that falls to 0 at the extended support (lateral ``2NA/λ + max |k|``; three-beam
   times an axial profile to ``(n - sqrt(n² - NA²))/λ + k_z1``, separable because the 3D OTF
   reaches its largest axial frequencies at mid lateral ones, where an ellipsoid would cut
   them), and transform back.

Units: the output is in raw intensity units: a uniform sample reconstructs with the mean of its
raw frames (two-beam), a thin in-focus layer with the intensity one raw frame shows of it
(three-beam). Negative values (ringing of the band-limited result) are kept unless
``clip_negative=True``. The edges are periodic (FFT): ``edge_taper`` fades the raw frames to 0
at the borders to suppress the seams that a non-periodic field produces (off by default, so the
result is the plain linear reconstruction of the whole field).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.sim.estimation import edge_taper_window, embed_spectrum, separate_orders
from nstm_acquire.physics.sim.illumination import SimIllumination, three_beam_axial_k_per_um
from nstm_acquire.physics.sim.otf import (
    MeasuredPsf,
    OrderTransfer,
    axial_cutoff_per_um,
    lateral_cutoff_per_um,
)

__all__ = [
    "widefield_from_sim",
    "wiener_sim_2d",
    "wiener_sim_3d",
    "wiener_widefield_2d",
    "wiener_widefield_3d",
    "sim_support_per_um",
    "apodisation_filter",
    "z_padding_planes",
]

Apodisation = Literal["cosine", "triangle", "otf", "none"]


# ----------------------------------------------------------------------------- helpers
def _fourier_upsample(image: np.ndarray, upsample: int) -> np.ndarray:
    """Band-limited interpolation of the last two axes onto a grid ``upsample`` x finer."""
    ny, nx = image.shape[-2:]
    out_shape = (ny * upsample, nx * upsample)
    spec = embed_spectrum(np.fft.fft2(image), out_shape)
    return np.fft.ifft2(spec).real * (upsample * upsample)


def widefield_from_sim(raw: np.ndarray, upsample: int = 1) -> np.ndarray:
    """The widefield image of a SIM window: the mean over all shots (float32).

    ``raw`` ``(S, Y, X)`` or ``(S, Z, Y, X)``; every orientation's phases average the pattern to
    its mean 1, so the mean over all shots is the image under uniform illumination. With
    ``upsample > 1`` the result is Fourier-interpolated onto the Wiener output grid (pixel
    ``(0, 0)`` on raw pixel ``(0, 0)``): ``(Y u, X u)`` or ``(Z, Y u, X u)``.
    """
    data = np.asarray(raw, dtype=np.float64)
    if data.ndim not in (3, 4) or data.shape[0] < 1:
        raise ValueError(f"raw must be (S, Y, X) or (S, Z, Y, X), got shape {data.shape}")
    upsample = _check_upsample(upsample, minimum=1)
    mean = data.mean(axis=0)
    if upsample > 1:
        mean = _fourier_upsample(mean, upsample)
    return mean.astype(np.float32)


def _check_upsample(upsample: int, minimum: int) -> int:
    if isinstance(upsample, bool) or int(upsample) != upsample or upsample < minimum:
        raise ValueError(
            f"upsample={upsample!r} must be an int >= {minimum} (the output grid's refinement)"
        )
    return int(upsample)


def apodisation_filter(radius: np.ndarray, kind: Apodisation) -> np.ndarray:
    """Apodisation as a function of the normalised radius ``ρ`` (1 = support edge), 0 beyond.

    ``"cosine"``: ``cos(π ρ / 2)``; ``"triangle"``: ``1 - ρ``; ``"otf"``: the incoherent OTF
    shape ``(2/π)(acos ρ - ρ sqrt(1 - ρ²))``; ``"none"``: 1 everywhere (no apodisation).
    """
    rho = np.asarray(radius, dtype=np.float64)
    if kind == "none":
        return np.ones_like(rho)
    r = np.minimum(rho, 1.0)
    if kind == "cosine":
        out = np.cos(0.5 * np.pi * r)
    elif kind == "triangle":
        out = 1.0 - r
    elif kind == "otf":
        out = (2.0 / np.pi) * (np.arccos(r) - r * np.sqrt(1.0 - r * r))
    else:
        raise ValueError(
            f"apodisation={kind!r} must be 'cosine', 'triangle', 'otf' or 'none'"
        )
    return np.where(rho < 1.0, out, 0.0)


def sim_support_per_um(
    optics: Optics, ill: SimIllumination, z_step_um: float | None = None
) -> tuple[float, float | None]:
    """Extended support of the SIM reconstruction: ``(lateral, axial)`` cut-offs, cycles/µm.

    Lateral ``2NA/λ + max_d |k_d|``. Three-beam: axial ``(n - sqrt(n² - NA²))/λ + k_z1`` (the
    widefield OTF's axial extent plus order 1's axial shift, largest over orientations);
    two-beam: ``None``.
    """
    ks = [math.hypot(*k) for k in ill._require("k_per_um")]
    lateral = lateral_cutoff_per_um(optics) + max(ks)
    if not ill.three_beam:
        return lateral, None
    kz = max(_axial_k(ill, optics, d) for d in range(ill.n_orientations))
    return lateral, axial_cutoff_per_um(optics) + kz


def _axial_k(ill: SimIllumination, optics: Optics, d: int) -> float:
    if ill.axial_k_per_um is not None:
        return float(ill.axial_k_per_um)
    ky, kx = ill._require("k_per_um")[d]
    return three_beam_axial_k_per_um(
        math.hypot(ky, kx), ill.excitation_wavelength_um, optics.immersion_index
    )


def _order_coefficients(ill: SimIllumination, d: int) -> dict[int, tuple[complex, tuple[float, float]]]:
    """For each order ``m`` (signed): ``(c_m e^{i m φ}, lateral frequency of the order)``."""
    ky, kx = ill._require("k_per_um")[d]
    phi = float(ill._require("phase_rad")[d])
    mod = ill._require("modulation")[d]
    out: dict[int, tuple[complex, tuple[float, float]]] = {0: (1.0 + 0j, (0.0, 0.0))}
    if ill.three_beam:
        per_order = {1: (float(mod[0]) / 2.0, (ky / 2.0, kx / 2.0)), 2: (float(mod[1]) / 2.0, (ky, kx))}
    else:
        per_order = {1: (float(mod[0]) / 2.0, (ky, kx))}
    for m, (c, (qy, qx)) in per_order.items():
        for sign in (1, -1):
            out[sign * m] = (c * np.exp(1j * sign * m * phi), (sign * qy, sign * qx))
    return out


def z_padding_planes(n_planes: int, z_step_um: float | None, optics: Optics) -> int:
    """Empty planes appended to a three-beam stack before its 3D FFT (the z axis is periodic).

    At least the stack's own length, and enough that the padded stack spans six widefield
    depths of field (``6 / axial_cutoff_per_um``, about 4.4 µm at NA 1.2 in water): the
    transfer then holds the defocused PSF out to half that on either side (measured: the
    end planes' correlation with the truth stops rising there), and the blur of either end
    plane falls on empty planes instead of wrapping onto the other end. Rounded up so the
    padded length has no prime factor above 5.
    """
    if z_step_um is None:
        return 0
    span = int(math.ceil(6.0 / (axial_cutoff_per_um(optics) * float(z_step_um))))
    total = int(n_planes) + max(int(n_planes), span - int(n_planes))
    return _smooth_size(total) - int(n_planes)  # a fast FFT length


def _mirror(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``a(-Q)`` from ``a(Q)`` on an FFT-ordered grid (index ``i`` -> ``-i mod N``) over ``axes``."""
    for ax in axes:
        a = np.roll(np.flip(a, axis=ax), 1, axis=ax)
    return a


def _smooth_size(n: int) -> int:
    """The smallest ``N >= n`` with no prime factor above 5 (fast FFT lengths)."""
    size = max(1, int(n))
    while True:
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 1


# ----------------------------------------------------------------------------- core
def _check_inputs(
    raw: np.ndarray, optics: Optics, ill: SimIllumination, three_beam: bool, wiener: float
) -> np.ndarray:
    if not isinstance(optics, Optics):
        raise TypeError(f"optics must be an nstm_acquire.physics.optics.Optics, got {type(optics).__name__}")
    if not isinstance(ill, SimIllumination):
        raise TypeError(f"ill must be a SimIllumination, got {type(ill).__name__}")
    if ill.three_beam != three_beam:
        what = "wiener_sim_3d (three-beam)" if ill.three_beam else "wiener_sim_2d (two-beam)"
        raise ValueError(f"ill.three_beam={ill.three_beam}: use {what} for this illumination")
    for name in ("k_per_um", "phase_rad", "modulation"):
        if getattr(ill, name) is None:
            raise ValueError(
                f"ill.{name} is None: the Wiener reconstruction needs the complete pattern; "
                "estimate it (estimate_sim_parameters + resolve_sim_parameters) or configure it"
            )
    if not (math.isfinite(wiener) and wiener > 0):
        raise ValueError(f"wiener={wiener} must be finite and > 0 (typically 0.01-0.1)")
    data = np.asarray(raw, dtype=np.float64)
    if data.shape[0] != ill.n_shots:
        raise ValueError(
            f"raw has {data.shape[0]} shots but the illumination has {ill.n_shots} "
            f"({ill.n_orientations} orientations x {ill.n_phases} phases); pass one whole window"
        )
    if not np.all(np.isfinite(data)):
        raise ValueError("raw contains NaN or inf; pass complete windows only")
    return data


def _wiener(
    data: np.ndarray,
    optics: Optics,
    ill: SimIllumination,
    z_step_um: float | None,
    wiener: float,
    apodisation: Apodisation,
    upsample: int,
    clip_negative: bool,
    edge_taper: float,
    widefield_only: bool,
    psf: MeasuredPsf | None = None,
) -> np.ndarray:
    """Generalised Wiener filter on ``data`` ``(S, Z, Y, X)``; returns ``(Z, Y u, X u)`` float32."""
    three_beam = ill.three_beam
    _, nz, ny, nx = data.shape
    # three-beam: zero-pad the stack along z so the 3D FFT's periodic z does not wrap the
    # out-of-focus light (and order 1's axial modulation) of one end plane onto the other
    nzp = nz + (z_padding_planes(nz, z_step_um, optics) if three_beam else 0)
    if nzp > nz:
        data = np.concatenate([data, np.zeros((data.shape[0], nzp - nz, ny, nx))], axis=1)
    fine = (ny * upsample, nx * upsample)
    fine_pixel = optics.pixel_size_um / upsample
    fy = (np.arange(fine[0]) * fine_pixel)[:, None]
    fx = (np.arange(fine[1]) * fine_pixel)[None, :]
    fqy = np.fft.fftfreq(fine[0], d=fine_pixel)[:, None]
    fqx = np.fft.fftfreq(fine[1], d=fine_pixel)[None, :]
    nyquist = 0.5 / optics.pixel_size_um
    transfer = OrderTransfer(optics, three_beam, nzp, z_step_um, psf=psf)
    n_orders = 2 if three_beam else 1
    taper = edge_taper_window((ny, nx), edge_taper) if edge_taper > 0 else None
    zk = nzp if three_beam else 1
    numerator = np.zeros((nzp, *fine), dtype=np.complex128)
    denominator = np.zeros((zk, *fine), dtype=np.float64)
    # three-beam: the transfers per depth of field (OrderTransfer's H/Z times Z dz / DOF), so
    # that |T| and therefore the Wiener constant mean the same whatever the stack's size and
    # spacing; the bands are scaled alike so that the output stays in raw intensity units
    depth = (nzp * z_step_um * axial_cutoff_per_um(optics)) if (three_beam and z_step_um is not None) else 1.0
    scale = float(upsample * upsample) * (depth / nzp if three_beam else 1.0)
    axes = (-3, -2, -1) if three_beam else (-2, -1)
    n = ill.n_phases
    # order -m is the mirror of order m (real frames and a real PSF: band_{-m} = conj(band_m),
    # T_{-m}(Q) = conj(T_m(-Q))), so its terms are those of order m at -Q, conjugated: the
    # theoretical transfer computes orders >= 0 only (a measured PSF's interpolated OTF is
    # not exactly Hermitian: every order); order 0's transfer is the same for all orientations
    mirror = psf is None
    num_pos = np.zeros_like(numerator) if mirror else numerator
    den_pos = np.zeros_like(denominator) if mirror else denominator
    h0: np.ndarray | None = None
    for d in range(ill.n_orientations):
        frames = data[d * n : (d + 1) * n]
        if taper is not None:
            frames = frames * taper
        bands = separate_orders(frames, n_orders)
        coefficients = _order_coefficients(ill, d)
        kz1 = _axial_k(ill, optics, d) if three_beam else 0.0
        for m, (coef, (ky, kx)) in coefficients.items():
            if (widefield_only and m != 0) or (mirror and m < 0):
                continue
            band = bands[m] if m >= 0 else np.conj(bands[-m])
            spec: np.ndarray = embed_spectrum(np.fft.fftn(band, axes=axes), fine) * scale
            if m != 0:
                shifted = np.fft.ifft2(spec) * np.exp(-2j * np.pi * (ky * fy + kx * fx))
                spec = np.fft.fft2(shifted)
            qy, qx = fqy + ky, fqx + kx  # the raw frequency each output frequency came from
            if m == 0 and h0 is not None:
                h = h0
            else:
                h = transfer(qy, qx, kz1 if (three_beam and abs(m) == 1) else 0.0)
                h = h * ((np.abs(qy) < nyquist) & (np.abs(qx) < nyquist))
                if m == 0:
                    h0 = h
            t = coef * h * depth
            if m == 0:
                numerator += np.conj(t) * spec
                denominator += np.abs(t) ** 2
            else:
                num_pos += np.conj(t) * spec
                den_pos += np.abs(t) ** 2
    if mirror and not widefield_only:
        numerator += num_pos + np.conj(_mirror(num_pos, axes))
        denominator += den_pos + _mirror(den_pos, axes)
    estimate = numerator / (denominator + wiener**2)
    # apodisation to the extended support
    # (three-beam: separable, lateral disc x axial profile; an ellipsoid would cut the
    # widefield OTF's lobes, which reach their largest axial frequency at mid lateral ones)
    if widefield_only:
        lateral = lateral_cutoff_per_um(optics)
        axial = axial_cutoff_per_um(optics) if three_beam else None
    else:
        lateral, axial = sim_support_per_um(optics, ill, z_step_um)
    estimate *= apodisation_filter(np.hypot(fqy, fqx) / lateral, apodisation)
    if three_beam:
        assert z_step_um is not None  # three-beam callers pass the plane spacing
        kz = np.fft.fftfreq(nzp, d=z_step_um)[:, None, None]
        estimate *= apodisation_filter(np.abs(kz) / axial, apodisation)
    out = np.fft.ifftn(estimate, axes=axes).real[:nz]
    if clip_negative:
        np.maximum(out, 0.0, out=out)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- public
def _as_stack_2d(raw: np.ndarray) -> np.ndarray:
    data = np.asarray(raw)
    if data.ndim == 3:
        return data[:, None]
    if data.ndim == 4 and data.shape[1] == 1:
        return data
    raise ValueError(
        f"raw must be (S, Y, X) (or (S, 1, Y, X)) for 2D SIM, got shape {data.shape}"
    )


def wiener_sim_2d(
    raw: np.ndarray,
    optics: Optics,
    ill: SimIllumination,
    wiener: float = 0.05,
    apodisation: Apodisation = "cosine",
    upsample: int = 2,
    clip_negative: bool = False,
    edge_taper: float = 0.0,
    psf: MeasuredPsf | None = None,
) -> np.ndarray:
    """Two-beam (2D) SIM Wiener reconstruction of one window, float32 ``(Y u, X u)``.

    Parameters
    ----------
    raw
        ``(S, Y, X)`` (or ``(S, 1, Y, X)``) frames, offset removed, shot ``s = d n_phases + p``.
    optics
        Emission wavelength, NA, camera pixel (µm).
    ill
        Complete two-beam illumination (``k_per_um`` cycles/µm, ``phase_rad`` rad,
        ``modulation``).
    wiener
        Wiener constant ``w`` (the denominator is ``Σ|T|² + w²``, ``T`` normalised to 1 at DC).
    apodisation
        ``"cosine"``, ``"triangle"``, ``"otf"`` or ``"none"`` (:func:`apodisation_filter`) to
        the extended support ``2NA/λ + max|k|``.
    upsample
        Output refinement (>= 2): pixel size ``optics.pixel_size_um / upsample`` µm, pixel
        ``(0, 0)`` centred on raw pixel ``(0, 0)``.
    clip_negative
        Set negative values to 0 (off: the linear estimate, ringing included).
    edge_taper
        Fraction of each side of the raw frames faded to 0 before the FFTs (0: none).
    psf
        A measured PSF (:class:`~nstm_acquire.physics.sim.otf.MeasuredPsf`) instead of the
        theoretical OTF.

    Returns
    -------
    np.ndarray
        The fluorescence density in raw intensity units (module docstring).
    """
    return _run(
        _as_stack_2d(raw), optics, ill, None, wiener, apodisation, upsample, clip_negative, edge_taper, False, psf
    )[0]


def wiener_widefield_2d(
    raw: np.ndarray,
    optics: Optics,
    ill: SimIllumination,
    wiener: float = 0.05,
    apodisation: Apodisation = "cosine",
    upsample: int = 2,
    clip_negative: bool = False,
    edge_taper: float = 0.0,
    psf: MeasuredPsf | None = None,
) -> np.ndarray:
    """Widefield Wiener deconvolution of the same frames (order 0 only), ``(Y u, X u)`` float32.

    The same filter as :func:`wiener_sim_2d` restricted to the order-0 bands and apodised to
    the widefield support ``2NA/λ``: the fair widefield baseline for resolution comparisons.
    Only ``ill.n_orientations`` and ``n_phases`` are used, so the pattern may be unknown.
    """
    return _run(
        _as_stack_2d(raw), optics, ill, None, wiener, apodisation, upsample, clip_negative, edge_taper, True, psf
    )[0]


def _check_stack(raw: np.ndarray) -> np.ndarray:
    data = np.asarray(raw)
    if data.ndim != 4:
        raise ValueError(f"raw must be (S, Z, Y, X) for 3D SIM, got shape {data.shape}")
    return data


def _z_step(optics: Optics, z_step_um: float | None) -> float:
    step = optics.z_step_um if z_step_um is None else z_step_um
    if step is None:
        raise ValueError("3D SIM needs the plane spacing: pass z_step_um or set optics.z_step_um")
    step = float(step)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"z_step_um={z_step_um} must be finite and > 0 (µm)")
    return step


def wiener_sim_3d(
    raw: np.ndarray,
    optics: Optics,
    ill: SimIllumination,
    z_step_um: float | None = None,
    wiener: float = 0.05,
    apodisation: Apodisation = "cosine",
    upsample: int = 2,
    clip_negative: bool = False,
    edge_taper: float = 0.0,
    psf: MeasuredPsf | None = None,
) -> np.ndarray:
    """Three-beam (3D) SIM Wiener reconstruction of one z stack, float32 ``(Z, Y u, X u)``.

    ``raw`` ``(S, Z, Y, X)``: shot ``s`` (pattern fixed to the focal plane) at ``Z`` focal planes
    ``z_step_um`` apart (default ``optics.z_step_um``). The stack is zero-padded along z
    (:func:`z_padding_planes`) before its 3D FFT, so nothing wraps between the end planes; the
    output planes are the input planes. ``wiener`` is relative to the transfers scaled to one
    depth of field (module docstring), the same for any stack size. Other parameters as
    :func:`wiener_sim_2d`; the apodisation is the lateral one times the same profile along the
    axial frequency, to the extended support (:func:`sim_support_per_um`).
    """
    return _run(
        _check_stack(raw), optics, ill, _z_step(optics, z_step_um), wiener, apodisation, upsample,
        clip_negative, edge_taper, False, psf,
    )


def wiener_widefield_3d(
    raw: np.ndarray,
    optics: Optics,
    ill: SimIllumination,
    z_step_um: float | None = None,
    wiener: float = 0.05,
    apodisation: Apodisation = "cosine",
    upsample: int = 2,
    clip_negative: bool = False,
    edge_taper: float = 0.0,
    psf: MeasuredPsf | None = None,
) -> np.ndarray:
    """3D widefield Wiener deconvolution of the stack (order 0 only), ``(Z, Y u, X u)`` float32.

    The widefield baseline of :func:`wiener_sim_3d`, apodised to the widefield 3D support.
    """
    return _run(
        _check_stack(raw), optics, ill, _z_step(optics, z_step_um), wiener, apodisation, upsample,
        clip_negative, edge_taper, True, psf,
    )


def _run(
    stack: np.ndarray,
    optics: Optics,
    ill: SimIllumination,
    z_step_um: float | None,
    wiener: float,
    apodisation: Apodisation,
    upsample: int,
    clip_negative: bool,
    edge_taper: float,
    widefield_only: bool,
    psf: MeasuredPsf | None,
) -> np.ndarray:
    """The checks every public reconstruction shares, then :func:`_wiener` (``z_step_um``
    None: two-beam 2D; widefield: the pattern may be unknown, order 0 does not use it)."""
    if widefield_only:
        ill = _placeholder_pattern(ill)
    data = _check_inputs(stack, optics, ill, z_step_um is not None, wiener)
    upsample = _check_upsample(upsample, minimum=2)
    return _wiener(
        data, optics, ill, z_step_um, wiener, apodisation, upsample, clip_negative, edge_taper, widefield_only, psf
    )


def _placeholder_pattern(ill: SimIllumination) -> SimIllumination:
    """``ill`` with any unknown pattern fields filled (order 0 does not depend on them)."""
    if not isinstance(ill, SimIllumination):
        raise TypeError(f"ill must be a SimIllumination, got {type(ill).__name__}")
    changes: dict[str, Any] = {}
    nd = ill.n_orientations
    if ill.k_per_um is None:
        changes["k_per_um"] = [[0.0, 1.0]] * nd
    if ill.phase_rad is None:
        changes["phase_rad"] = [0.0] * nd
    if ill.modulation is None:
        changes["modulation"] = [[0.0, 0.0] if ill.three_beam else [0.0]] * nd
    if ill.three_beam and ill.axial_k_per_um is None:
        changes["axial_k_per_um"] = 0.0
    return ill.replace(**changes) if changes else ill
