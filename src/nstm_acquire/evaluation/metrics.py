"""Scoring reconstructions against ground truth (simulated samples).

* :func:`sim_truth` is the ground truth a SIM reconstruction is scored against and shown
  next to: the density filtered by the SIM passband with the Wiener reconstruction's own
  apodisation (beads look like beads, not rings); the same filter brings an NSTM density
  into that band before it is compared;
* :func:`highpass` removes the spatial frequencies a modality cannot see (DPC: below a
  fraction of NA/λ, where the phase transfer function vanishes) before comparing;
* :func:`correlation` and :func:`nrmse` compare images inside a margin;
* :func:`pair_dip` and :func:`resolved_pairs` score two-point resolution (bead pairs);
  :func:`spurious_peaks` counts invented point sources (motion ghosts);
* :func:`relative_motion_error_px` compares motion fields up to the template's arbitrary
  reference: NSTM's template is the sample warped by some fixed field, so displacements are
  compared after removing each field's mean over the shots.

Axis order ``(..., Y, X)``; lengths in pixels unless named otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "correlation",
    "crop",
    "highpass",
    "nrmse",
    "pair_dip",
    "relative_motion_error_px",
    "resolved_pairs",
    "sim_truth",
    "spurious_peaks",
    "structure_mask",
]


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


def _bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    ny, nx = image.shape
    y = np.clip(y, 0, ny - 1.000001)
    x = np.clip(x, 0, nx - 1.000001)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    return (
        image[y0, x0] * (1 - fy) * (1 - fx)
        + image[y0 + 1, x0] * fy * (1 - fx)
        + image[y0, x0 + 1] * (1 - fy) * fx
        + image[y0 + 1, x0 + 1] * fy * fx
    )


def pair_dip(image: np.ndarray, pixel_size_um: float, a_um: np.ndarray, b_um: np.ndarray) -> float:
    """Depth of the dip between two point sources: ``min(middle) / min(peak a, peak b)``.

    ``image`` ``(Y, X)`` with pixel ``(i, j)`` centred at ``(i, j) * pixel_size_um`` µm; ``a_um``,
    ``b_um`` the two points ``(y, x)`` in µm. The profile along the segment is sampled
    (bilinear, 64 points per segment); each peak is the maximum within a quarter of the
    separation of its point, the middle the minimum over the central third. Below 1 there is a
    dip; the Rayleigh criterion for two Airy spots gives about 0.74.
    """
    img = np.asarray(image, np.float64)
    a = np.asarray(a_um, np.float64) / pixel_size_um
    b = np.asarray(b_um, np.float64) / pixel_size_um
    s = np.linspace(-0.25, 1.25, 97)
    prof = _bilinear(img, a[0] + s * (b[0] - a[0]), a[1] + s * (b[1] - a[1]))
    peak_a = prof[np.abs(s) <= 0.25].max()
    peak_b = prof[np.abs(s - 1) <= 0.25].max()
    middle = prof[(s >= 1 / 3) & (s <= 2 / 3)].min()
    low = min(peak_a, peak_b)
    return float(middle / low) if low > 0 else float("inf")


def resolved_pairs(
    image: np.ndarray,
    pixel_size_um: float,
    pairs_um: list[tuple[np.ndarray, np.ndarray]],
    dip: float = 0.8,
    min_peak: float = 0.25,
) -> int:
    """How many point pairs ``[(a_um, b_um), ...]`` are resolved where they are.

    Resolved: a dip below ``dip`` (:func:`pair_dip`) between two peaks that are both at least
    ``min_peak`` of the image's bright level (its 99.9th percentile), so a smeared or
    displaced pair whose profile runs through background ripple does not count.
    """
    img = np.asarray(image, np.float64)
    bright = float(np.percentile(img, 99.9))
    count = 0
    for a, b in pairs_um:
        ratio = pair_dip(img, pixel_size_um, a, b)
        peaks = [_bilinear(img, np.array([p[0]]) / pixel_size_um, np.array([p[1]]) / pixel_size_um)[0] for p in (a, b)]
        if ratio < dip and min(peaks) >= min_peak * bright:
            count += 1
    return count


def spurious_peaks(
    image: np.ndarray,
    pixel_size_um: float,
    true_positions_um: np.ndarray,
    tolerance_um: float = 0.1,
    min_peak: float = 0.25,
    margin: int = 0,
) -> int:
    """Local maxima of ``image`` ``(Y, X)`` farther than ``tolerance_um`` from every true point.

    Maxima (over the 3 x 3 neighbourhood) count when they reach ``min_peak`` of the image's
    bright level (99.9th percentile) and lie ``margin`` pixels or more inside the border;
    ``true_positions_um`` ``(N, 2)`` ``(y, x)`` µm, pixel ``(i, j)`` at ``(i, j) * pixel_size_um``.
    """
    img = np.asarray(image, np.float64)
    bright = float(np.percentile(img, 99.9))
    padded = np.pad(img, 1, mode="edge")
    neighbours = np.stack(
        [padded[1 + dy : 1 + dy + img.shape[0], 1 + dx : 1 + dx + img.shape[1]] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    )
    is_max = (img >= neighbours.max(axis=0)) & (img >= min_peak * bright)
    if margin > 0:
        is_max[:margin] = is_max[-margin:] = False
        is_max[:, :margin] = is_max[:, -margin:] = False
    peaks = np.argwhere(is_max) * pixel_size_um
    truth = np.asarray(true_positions_um, np.float64).reshape(-1, 2)
    if len(peaks) == 0:
        return 0
    if len(truth) == 0:
        return int(len(peaks))
    dist = np.sqrt(((peaks[:, None, :] - truth[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return int(np.sum(dist > tolerance_um))


def sim_truth(
    density: np.ndarray,
    pixel_size_um: float,
    optics: Any,
    ill: Any,
    z_step_um: float | None = None,
    apodisation: str = "cosine",
) -> np.ndarray:
    """The apodised, band-limited ground truth of a SIM reconstruction, float64, shape of ``density``.

    ``density`` ``(Y, X)`` (2D) or ``(Z, Y, X)`` on planes ``z_step_um`` µm apart (3D; a single
    plane is filtered laterally only), lateral pixel ``pixel_size_um`` µm (the output grid). It
    is multiplied in Fourier space by the same apodisation the Wiener reconstruction
    (:func:`~nstm_acquire.physics.sim.wiener.wiener_sim_2d` / ``wiener_sim_3d``) applies over
    the extended SIM support (:func:`~nstm_acquire.physics.sim.wiener.sim_support_per_um`):
    laterally to ``2NA/λ + |k|``, three-beam stacks also axially to the widefield axial
    cut-off plus ``k_z1``; 3D stacks are zero-padded along z like the Wiener's, so nothing
    wraps from one end plane to the other. A point source becomes the apodised passband's
    PSF (a compact peak with a shallow ring), the image an ideal SIM microscope would give.
    Applied to an NSTM density (sharper than the passband) it gives that reconstruction in the
    truth's band, which is how the NSTM is compared with this truth (docs/model.md, *Scoring 3D
    SIM*); the Wiener output already lies in it.
    ``optics``: :class:`~nstm_acquire.physics.optics.Optics`; ``ill``: the SIM pattern
    (:class:`~nstm_acquire.physics.sim.illumination.SimIllumination`, ``k_per_um`` known).
    """
    from nstm_acquire.physics.sim.wiener import apodisation_filter, sim_support_per_um, z_padding_planes

    rho = np.asarray(density, dtype=np.float64)
    if rho.ndim not in (2, 3):
        raise ValueError(f"density must be (Y, X) or (Z, Y, X), got shape {rho.shape}")
    if ill.k_per_um is None:
        raise ValueError("ill.k_per_um is None: the SIM support needs the pattern frequency; pass the true pattern")
    lateral, axial = sim_support_per_um(optics, ill, z_step_um)
    ny, nx = rho.shape[-2:]
    q = np.hypot(np.fft.fftfreq(ny, pixel_size_um)[:, None], np.fft.fftfreq(nx, pixel_size_um)[None, :])
    filt = apodisation_filter(q / lateral, apodisation)  # type: ignore[arg-type]
    if rho.ndim == 2 or rho.shape[0] == 1 or axial is None:
        return np.fft.ifft2(np.fft.fft2(rho) * filt).real
    if z_step_um is None:
        raise ValueError("a 3D density needs z_step_um (its plane spacing, µm) for the axial band limit")
    nz = rho.shape[0]
    nzp = nz + z_padding_planes(nz, z_step_um, optics)
    padded = np.concatenate([rho, np.zeros((nzp - nz, ny, nx))])
    kz = np.abs(np.fft.fftfreq(nzp, z_step_um))[:, None, None]
    filt3 = filt[None] * apodisation_filter(kz / axial, apodisation)  # type: ignore[arg-type]
    return np.fft.ifftn(np.fft.fftn(padded) * filt3).real[:nz]
