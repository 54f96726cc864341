"""Exact partially coherent LED-array imaging for the simulated DPC camera (numpy).

Not linearised: the object is the full complex transmission ``t = exp(-mu + i*phi)`` and each
lit LED forms a coherent image; the shot is their brightness-weighted incoherent sum
(``docs/conventions.md``)::

    I(r) = Σ_j b_j |ifft2(T(u) P(u + u_j))|²,   T = fft2(t),   u_j = na_j / λ.

The pupil is evaluated analytically at the shifted frequencies ``u + u_j``, so LEDs that do not
sit on the FFT grid are handled exactly. The image is exact for the periodic, sampled object on
the grid: the pixel must be at most ``λ / (4 NA)`` (``Optics.nyquist_pixel_um``) for the
sampled intensity to carry its whole band, and for dark-field LEDs (``|na_j| >= NA``) the
shifted pupil must also fit inside the grid's frequency range (``|na_j| + NA < λ / (2 pixel)``).

Units: intensities are relative; an LED of brightness ``b`` on a blank object (``t = 1``) gives
``b`` for every pixel if it is in the brightfield, 0 otherwise (:func:`dpc_background`).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from nstm_acquire.physics.dpc.illumination import led_pupils
from nstm_acquire.physics.optics import Optics

__all__ = ["dpc_image_exact", "dpc_background"]

_BATCH_ELEMENTS = 1 << 23


def _check_lit(
    led_na_lit: np.ndarray, brightness: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    na = np.asarray(led_na_lit, dtype=np.float64)
    if na.ndim == 1 and na.shape == (2,):
        na = na[None, :]
    if na.ndim != 2 or na.shape[1] != 2 or na.shape[0] == 0:
        raise ValueError(
            f"led_na_lit must have shape (M, 2) of [na_y, na_x] with M >= 1, got {na.shape}"
        )
    if not np.all(np.isfinite(na)):
        raise ValueError("led_na_lit must be finite")
    if brightness is None:
        b = np.ones(na.shape[0], dtype=np.float64)
    else:
        b = np.asarray(brightness, dtype=np.float64).reshape(-1)
        if b.shape != (na.shape[0],):
            raise ValueError(
                f"brightness has shape {np.shape(brightness)}; "
                f"give one value per lit LED ({na.shape[0]},)"
            )
        if not np.all(np.isfinite(b)) or np.any(b < 0):
            raise ValueError("brightness must be finite and >= 0")
    return na, b


def dpc_background(
    shape: tuple[int, int],
    optics: Optics,
    led_na_lit: np.ndarray,
    brightness: np.ndarray | None = None,
) -> np.ndarray:
    """Image of a blank object (``t = 1``) for one shot: uniform ``Σ_j b_j P(u_j)²``.

    Parameters
    ----------
    shape
        ``(Y, X)`` image size in pixels.
    optics
        Wavelength, NA and pixel size.
    led_na_lit
        ``(M, 2)`` illumination NA ``[na_y, na_x]`` of the lit LEDs.
    brightness
        ``(M,)`` relative brightness, default 1.

    Returns
    -------
    np.ndarray
        float32 ``(Y, X)``, every pixel equal to the summed brightness of the lit brightfield LEDs.
    """
    na, b = _check_lit(led_na_lit, brightness)
    inside = np.sum(na**2, axis=1) < optics.na_detection**2  # P(u_j), same strict rule as the pupil
    return np.full(tuple(shape), float(np.sum(b * inside)), dtype=np.float32)


def dpc_image_exact(
    mu: np.ndarray,
    phi: np.ndarray,
    optics: Optics,
    led_na_lit: np.ndarray,
    brightness: np.ndarray | None = None,
) -> np.ndarray:
    """Exact partially coherent image of one DPC shot.

    Parameters
    ----------
    mu, phi
        ``(Y, X)`` absorption (dimensionless) and phase (rad) of the object
        ``t = exp(-mu + i*phi)``, sampled at ``optics.pixel_size_um``.
    optics
        Wavelength (µm), detection NA and pixel size (µm).
    led_na_lit
        ``(M, 2)`` illumination NA ``[na_y, na_x]`` of the LEDs lit in this shot.
    brightness
        ``(M,)`` relative brightness of those LEDs, default 1.

    Returns
    -------
    np.ndarray
        float32 ``(Y, X)`` intensity ``Σ_j b_j |ifft2(T(u) P(u + u_j))|²``; a blank object gives
        :func:`dpc_background`. Computed in complex64 with one forward FFT and one batched
        inverse FFT over the lit LEDs (``scipy.fft``, all cores).
    """
    mu = np.asarray(mu)
    phi = np.asarray(phi)
    if mu.ndim != 2 or mu.shape != phi.shape:
        raise ValueError(
            f"mu and phi must be 2D arrays of the same (Y, X) shape, got {mu.shape}, {phi.shape}"
        )
    na, b = _check_lit(led_na_lit, brightness)
    keep = b > 0
    na, b = na[keep], b[keep]
    if na.shape[0] == 0:
        return np.zeros(mu.shape, dtype=np.float32)
    log_t = np.empty(mu.shape, dtype=np.complex64)
    log_t.real = -mu
    log_t.imag = phi
    spectrum = scipy.fft.fft2(np.exp(log_t), workers=-1)  # complex64 in, complex64 out
    image = np.zeros(mu.shape, dtype=np.float32)
    # LEDs in batches of at most _BATCH_ELEMENTS pixels (64 MB of complex64) per inverse FFT
    batch = max(1, _BATCH_ELEMENTS // mu.size)
    for start in range(0, na.shape[0], batch):
        stop = start + batch
        filtered = spectrum[None, :, :] * led_pupils(mu.shape, optics, na[start:stop])  # (m, Y, X)
        coherent = scipy.fft.ifft2(filtered, axes=(-2, -1), overwrite_x=True, workers=-1)
        intensity = coherent.real**2 + coherent.imag**2
        image += np.tensordot(b[start:stop].astype(np.float32), intensity, axes=(0, 0))
    return image
