"""Scoring reconstructions against ground truth (simulated samples).

* :func:`highpass` removes the spatial frequencies a modality cannot see (DPC: below a
  fraction of NA/λ, where the phase transfer function vanishes) before comparing;
* :func:`correlation` and :func:`nrmse` compare images inside a margin;
* :func:`relative_motion_error_px` compares motion fields up to the template's arbitrary
  reference: NSTM's template is the sample warped by some fixed field, so displacements are
  compared after removing each field's mean over the shots.

Axis order ``(..., Y, X)``; lengths in pixels unless named otherwise.
"""

from __future__ import annotations

import numpy as np

__all__ = ["correlation", "crop", "highpass", "nrmse", "relative_motion_error_px", "structure_mask"]


def crop(a: np.ndarray, margin: int) -> np.ndarray:
    """``a[..., m:-m, m:-m]`` (no-op for margin 0)."""
    if margin <= 0:
        return a
    return a[..., margin:-margin, margin:-margin]


def highpass(image: np.ndarray, pixel_size_um: float, cutoff_per_um: float) -> np.ndarray:
    """Remove spatial frequencies below ``cutoff_per_um`` (smooth Gaussian-shaped edge).

    The filter is ``1 - exp(-(|u| / cutoff)^2)`` on the last two axes.
    """
    ny, nx = image.shape[-2:]
    uy = np.fft.fftfreq(ny, pixel_size_um)[:, None]
    ux = np.fft.fftfreq(nx, pixel_size_um)[None, :]
    filt = 1.0 - np.exp(-(uy**2 + ux**2) / cutoff_per_um**2)
    return np.real(np.fft.ifft2(np.fft.fft2(image) * filt))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images (means removed)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def nrmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Root-mean-square error normalised by the truth's standard deviation (means removed)."""
    e = np.asarray(estimate, np.float64) - np.mean(estimate)
    t = np.asarray(truth, np.float64) - np.mean(truth)
    return float(np.sqrt(np.mean((e - t) ** 2)) / (np.std(t) + 1e-12))


def relative_motion_error_px(
    estimate: np.ndarray, truth: np.ndarray, margin: int = 0, mask: np.ndarray | None = None
) -> float:
    """Mean end-point error (pixels) between motion fields, each relative to its shot mean.

    ``estimate``, ``truth``: ``(T, D, Y, X)`` displacements of the same convention. Returns the
    mean over shots and pixels of ``|(e_k - mean_k e) - (t_k - mean_k t)|``, over the pixels
    where ``mask`` ``(Y, X)`` is true (default all): motion is only observable where the
    sample has structure, so scoring uses :func:`structure_mask`.
    """
    e = crop(np.asarray(estimate, np.float64), margin)
    t = crop(np.asarray(truth, np.float64), margin)
    e = e - e.mean(axis=0, keepdims=True)
    t = t - t.mean(axis=0, keepdims=True)
    err = np.sqrt(np.sum((e - t) ** 2, axis=1))
    if mask is not None:
        m = crop(np.asarray(mask, bool), margin)
        return float(np.mean(err[:, m])) if m.any() else float("nan")
    return float(np.mean(err))


def structure_mask(image: np.ndarray, fraction: float = 0.1, grow_px: int = 2) -> np.ndarray:
    """Pixels where ``image`` ``(Y, X)`` has structure: gradient magnitude above ``fraction``
    of its maximum, grown by ``grow_px`` pixels."""
    gy, gx = np.gradient(np.asarray(image, np.float64))
    mag = np.hypot(gy, gx)
    m = mag > fraction * mag.max() if mag.max() > 0 else np.zeros(mag.shape, bool)
    for _ in range(grow_px):
        m = m | np.roll(m, 1, 0) | np.roll(m, -1, 0) | np.roll(m, 1, 1) | np.roll(m, -1, 1)
    return m
