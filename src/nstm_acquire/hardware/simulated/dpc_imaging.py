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

Rolling shutter (``docs/conventions.md``): row ``y`` opens ``slot(y) * row_time_s`` after the
frame start and integrates for ``exposure_s``. :func:`rolling_row_open_s` gives the openings,
:func:`row_integration_weights` the exact integral of each row's interval for images rendered
on a time grid (the sample interpolated linearly in time between the grid's instants), and
:func:`rolling_shutter_frame` combines them: every row sees the moving sample over its own
interval, whatever blocks a reconstruction later splits the frame into.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

from nstm_acquire.physics.dpc.illumination import led_pupils
from nstm_acquire.physics.optics import Optics

__all__ = [
    "dpc_background",
    "dpc_image_exact",
    "rolling_row_open_s",
    "rolling_shutter_frame",
    "rolling_shutter_mean",
    "row_integration_weights",
]

_DIRECTIONS = ("top_to_bottom", "bottom_to_top", "centre_out")

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


def rolling_row_open_s(n_rows: int, row_time_s: float, direction: str = "top_to_bottom") -> np.ndarray:
    """``(n_rows,)`` seconds from the frame start to each row's shutter opening.

    ``top_to_bottom``: row ``y`` opens at ``y * row_time_s``; ``bottom_to_top``: the last row
    first; ``centre_out``: the two middle rows first, then outwards in pairs (both halves read
    together), row ``y`` in slot ``floor(|y - (n_rows - 1) / 2|)``.
    """
    if int(n_rows) != n_rows or n_rows < 1:
        raise ValueError(f"n_rows={n_rows}; give the frame's number of rows (a positive integer)")
    if not (np.isfinite(row_time_s) and row_time_s > 0):
        raise ValueError(f"row_time_s={row_time_s}; give the line interval in seconds (> 0)")
    rows = np.arange(int(n_rows), dtype=np.float64)
    if direction == "top_to_bottom":
        slot = rows
    elif direction == "bottom_to_top":
        slot = rows[::-1].copy()
    elif direction == "centre_out":
        slot = np.floor(np.abs(2.0 * rows - (n_rows - 1)) / 2.0)
    else:
        raise ValueError(f"direction={direction!r}; give one of {_DIRECTIONS}")
    return slot * float(row_time_s)


def _hat_cumulative(u: np.ndarray) -> np.ndarray:
    """Integral from -inf to ``u`` of the unit hat function ``max(0, 1 - |u|)``."""
    u = np.clip(u, -1.0, 1.0)
    return np.where(u < 0, 0.5 * (u + 1.0) ** 2, 1.0 - 0.5 * (1.0 - u) ** 2)


def row_integration_weights(
    open_s: np.ndarray, exposure_s: float, grid_s: np.ndarray
) -> np.ndarray:
    """``(Y, T)`` weights of images rendered at the regular times ``grid_s`` ``(T,)``, seconds:
    ``Σ_j w[y, j] I_j`` is the mean over ``[open_s[y], open_s[y] + exposure_s]`` of the images
    interpolated linearly in time between the grid's instants (exact for a linear change).

    Every row's interval must lie inside ``[grid_s[0], grid_s[-1]]``; each row's weights sum to 1.
    """
    grid = np.asarray(grid_s, np.float64).reshape(-1)
    opened = np.asarray(open_s, np.float64).reshape(-1)
    if grid.size < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid_s must be at least 2 increasing times (s)")
    dt = float(np.mean(np.diff(grid)))
    if not np.allclose(np.diff(grid), dt, rtol=1e-6, atol=0.0):
        raise ValueError("grid_s must be regularly spaced")
    if not exposure_s > 0:
        raise ValueError(f"exposure_s={exposure_s}; give the row exposure in seconds (> 0)")
    tol = 1e-9 * max(1.0, abs(grid[-1]))
    if opened.min() < grid[0] - tol or opened.max() + exposure_s > grid[-1] + tol:
        raise ValueError("the time grid does not cover every row's open interval; extend grid_s")
    lo = (opened[:, None] - grid[None, :]) / dt
    hi = (opened[:, None] + exposure_s - grid[None, :]) / dt
    return (_hat_cumulative(hi) - _hat_cumulative(lo)) * dt / exposure_s


def rolling_shutter_frame(images: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(Y, X)`` rolling-shutter frame: row ``y`` is ``Σ_j weights[y, j] images[j, y]``
    (``images`` ``(T, Y, X)`` at a time grid's instants, ``weights`` ``(Y, T)`` from
    :func:`row_integration_weights`)."""
    images = np.asarray(images)
    weights = np.asarray(weights)
    if images.ndim != 3 or weights.shape != (images.shape[1], images.shape[0]):
        raise ValueError(
            f"images {images.shape} and weights {weights.shape} must be (T, Y, X) and (Y, T)"
        )
    return np.einsum("yt,tyx->yx", weights, images)


def rolling_shutter_mean(
    render_at: Callable[[float], np.ndarray],
    t_start_s: float,
    exposure_s: float,
    open_s: np.ndarray,
    steps_per_exposure: int,
) -> np.ndarray:
    """``(Y, X)`` rolling-shutter frame of a moving sample: ``render_at(t)`` (the ``(Y, X)``
    image at time ``t``, s) on a regular grid across the frame, ``steps_per_exposure`` grid
    steps per exposure (at least 2 in all), each row ``y`` integrated over
    ``[t_start + open_s[y], t_start + open_s[y] + exposure_s]``
    (:func:`row_integration_weights`)."""
    opened = np.asarray(open_s, np.float64)
    span = float(exposure_s) + float(opened.max())
    steps = max(2, int(np.ceil(int(steps_per_exposure) * span / float(exposure_s))))
    grid = float(t_start_s) + np.linspace(0.0, span, steps + 1)
    images = np.stack([render_at(float(t)) for t in grid])
    return rolling_shutter_frame(images, row_integration_weights(float(t_start_s) + opened, exposure_s, grid))
