"""Per-window trust report of an NSTM reconstruction: can this window be believed?

Three independent checks, each a pure function of arrays (docs/trust.md):

* **Held-out residual vs the camera's noise** (:func:`heldout_noise_ratio`): the fit never
  saw the held-out pixels, so the RMS of ``(measured - predicted) / sigma`` over them, with
  ``sigma`` the Poisson-Gaussian noise the camera model predicts
  (:func:`poisson_gaussian_sigma_adu`: variance = signal / gain + (read noise / gain)^2 in
  counts; DPC data divided by a measured sample-free frame carry that frame's noise too,
  :func:`divided_data_sigma_adu`), is ~1 for a model that explains the data down to the noise
  and grows when it does not.
* **Motion plausibility** (:func:`motion_plausibility`): the map ``x -> x + u(x, t)`` of the
  fitted motion must not fold (Jacobian determinant <= 0, :func:`jacobian_determinant`) where
  the sample has signal (a fold over an empty background moves nothing: independently moving
  objects on a dark field may fold the space between them), and the displacement within the
  window should stay a modest fraction of the field.
* **Agreement with the conventional result** (:func:`lowfreq_correlation`): in the band of
  low spatial frequencies both see, the window-mean NSTM scene and the static
  (conventional) reconstruction of the same window should correlate.

:func:`verdict` turns the numbers into ``"ok"`` / ``"doubtful"`` / ``"untrusted"`` with one
sentence per reason, using :class:`TrustThresholds` (measured: docs/benchmarks.md, "Trust
report"). :func:`assess_window` is the glue for one reconstructed window: it renders the fitted
model through the problem's forward model at the data's times to get the held-out residual.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from nstm_acquire.nstm.fit import FitData, FitResult, fit_masks, predict_rows

__all__ = [
    "TrustThresholds",
    "assess_window",
    "divided_data_sigma_adu",
    "FittedUnits",
    "LENSLESS_BAND_PER_PX",
    "estimated_sigma",
    "fitted_units",
    "heldout_noise_ratio",
    "jacobian_determinant",
    "lowfreq_correlation",
    "motion_plausibility",
    "poisson_gaussian_sigma_adu",
    "predict_measurements",
    "projected_lowfreq_correlation",
    "residual_map",
    "SIGNAL_FLOOR",
    "signal_weight",
    "verdict",
    "window_trust",
]

VERDICTS = ("ok", "doubtful", "untrusted")


@dataclasses.dataclass(frozen=True)
class TrustThresholds:
    """Where a number makes a window doubtful or untrusted (docs/trust.md says why).

    Attributes
    ----------
    residual_doubtful, residual_untrusted
        Held-out RMS of ``residual / predicted sigma`` (1 = explained down to the noise).
    folded_doubtful, folded_untrusted
        Share of the sample's signal (``folded_signal_fraction``; without it, of the (pixel,
        time) samples) where the motion's Jacobian determinant is <= 0.
    displacement_doubtful
        Largest displacement within the window (about its time mean) where the sample has
        signal (``max_signal_displacement_fraction``; without it, anywhere) as a fraction of
        the field's shorter side; None (the default): reported, not judged (on 45 benchmark
        windows it never flagged a bad window the residual had not, and flagged a good one).
    lowfreq_doubtful, lowfreq_untrusted
        Correlation of the window-mean NSTM scene with the conventional result in the shared
        low-frequency band.
    lowfreq_max_motion_periods
        The low-frequency agreement is judged only where the sample's motion within the window
        (``max_signal_displacement_px``: where the scene has signal) spans at most this many
        periods of the band's highest
        frequency (``lowfreq_motion_periods``): beyond that the conventional result, a static
        model's answer, is itself smeared in that band, and a right NSTM answer disagrees with it.
    """

    residual_doubtful: float = 1.3
    residual_untrusted: float = 2.0
    folded_doubtful: float = 0.001
    folded_untrusted: float = 0.02
    displacement_doubtful: float | None = None
    lowfreq_doubtful: float = 0.6
    lowfreq_untrusted: float = 0.3
    lowfreq_max_motion_periods: float = 1.0


# ------------------------------------------------------------------ noise and residual
def poisson_gaussian_sigma_adu(signal_adu: np.ndarray, gain_e_per_adu: float, read_noise_e: float) -> np.ndarray:
    """Noise standard deviation in counts of a pixel with expected ``signal_adu`` (offset
    removed): variance = signal / gain + (read noise / gain)^2 (electrons Poisson, read noise
    Gaussian). Negative signals count as 0."""
    if not (math.isfinite(gain_e_per_adu) and gain_e_per_adu > 0):
        raise ValueError(f"gain_e_per_adu={gain_e_per_adu}; give photo-electrons per count > 0")
    if not (math.isfinite(read_noise_e) and read_noise_e >= 0):
        raise ValueError(f"read_noise_e={read_noise_e}; give the read noise in electrons >= 0")
    s = np.maximum(np.asarray(signal_adu, np.float64), 0.0)
    return np.sqrt(s / gain_e_per_adu + (read_noise_e / gain_e_per_adu) ** 2)


def divided_data_sigma_adu(
    ratio: np.ndarray,
    scale_adu: np.ndarray,
    gain_e_per_adu: float,
    read_noise_e: float,
    scale_frames: int | None = None,
) -> np.ndarray:
    """Noise (ADU) of ``ratio x scale_adu`` for data measured as ``raw / scale`` (DPC: a frame
    divided by a sample-free frame, ``ratio = raw / background``): the raw frame's
    Poisson-Gaussian noise, plus, when ``scale`` is itself a measurement averaged over
    ``scale_frames`` frames, its noise carried through the division,
    ``ratio^2 x var(scale) / scale_frames``. ``scale_frames`` None: a noise-free scale."""
    ratio = np.asarray(ratio, np.float64)
    scale = np.asarray(scale_adu, np.float64)
    var = poisson_gaussian_sigma_adu(ratio * scale, gain_e_per_adu, read_noise_e) ** 2
    if scale_frames:
        var = var + ratio**2 * poisson_gaussian_sigma_adu(scale, gain_e_per_adu, read_noise_e) ** 2 / scale_frames
    return np.sqrt(var)


def estimated_sigma(measured: np.ndarray) -> np.ndarray:
    """Noise standard deviation per row of ``measured`` ``(K, ..., Y, X)`` estimated from the
    data alone (no camera model): robust spread (MAD) of each pixel minus the mean of its four
    neighbours, divided by sqrt(1.25) (exact for white noise; sample structure inflates it).
    Returns ``(K, ..., 1, 1)``."""
    a = np.asarray(measured, np.float64)
    d = a[..., 1:-1, 1:-1] - 0.25 * (a[..., :-2, 1:-1] + a[..., 2:, 1:-1] + a[..., 1:-1, :-2] + a[..., 1:-1, 2:])
    med = np.median(d, axis=(-2, -1), keepdims=True)
    mad = np.median(np.abs(d - med), axis=(-2, -1), keepdims=True)
    return 1.4826 * mad / math.sqrt(1.25)


def heldout_noise_ratio(normalised_residual: np.ndarray, held_mask: np.ndarray) -> float:
    """RMS of ``normalised_residual`` (residual / predicted sigma) over the pixels where
    ``held_mask`` (same shape, or broadcastable) is > 0: ~1 when the model explains the
    held-out data down to the noise. NaN when nothing is held out."""
    z = np.asarray(normalised_residual, np.float64)
    m = np.broadcast_to(np.asarray(held_mask) > 0, z.shape)
    if not m.any():
        return float("nan")
    return float(np.sqrt(np.mean(z[m] ** 2)))


def residual_map(normalised_residual: np.ndarray, held_mask: np.ndarray, block_px: int) -> np.ndarray:
    """``(ceil(Y / block_px), ceil(X / block_px))`` float32 map: RMS of the held-out
    normalised residual ``(..., Y, X)`` over all rows and each ``block_px`` square (NaN where a
    block holds no held-out pixel)."""
    if block_px < 1:
        raise ValueError(f"block_px={block_px}; give a block size >= 1 pixel")
    z = np.asarray(normalised_residual, np.float64)
    m = np.broadcast_to(np.asarray(held_mask) > 0, z.shape)
    ny, nx = z.shape[-2:]
    z2 = np.where(m, z**2, 0.0).reshape(-1, ny, nx).sum(0)
    cnt = m.reshape(-1, ny, nx).sum(0).astype(np.float64)
    by, bx = -(-ny // block_px), -(-nx // block_px)
    pad = ((0, by * block_px - ny), (0, bx * block_px - nx))
    z2 = np.pad(z2, pad).reshape(by, block_px, bx, block_px).sum((1, 3))
    cnt = np.pad(cnt, pad).reshape(by, block_px, bx, block_px).sum((1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt(z2 / cnt)
    return np.where(cnt > 0, out, np.nan).astype(np.float32)


# ------------------------------------------------------------------ motion
def jacobian_determinant(motion_px: np.ndarray) -> np.ndarray:
    """Determinant of the Jacobian of ``x -> x + u(x)`` for a displacement field.

    ``motion_px`` ``(D, *grid)``: ``D = 2`` components ``(dy, dx)`` on a ``(Y, X)`` or
    ``(Z, Y, X)`` grid (each plane on its own), or ``D = 3`` ``(dz, dy, dx)`` on ``(Z, Y, X)``;
    displacements in pixels of the grid's own axes. Returns the determinant on ``grid`` (1 for
    a rigid translation, <= 0 where the map folds)."""
    u = np.asarray(motion_px, np.float64)
    d = u.shape[0]
    if d not in (2, 3) or u.ndim - 1 < d or (d == 2 and u.ndim not in (3, 4)):
        raise ValueError(f"motion_px has shape {u.shape}; give (2, [Z,] Y, X) or (3, Z, Y, X)")
    lat = (-2, -1)
    if d == 2:
        duy_dy, duy_dx = np.gradient(u[0], axis=lat) if min(u.shape[-2:]) > 1 else (0 * u[0], 0 * u[0])
        dux_dy, dux_dx = np.gradient(u[1], axis=lat) if min(u.shape[-2:]) > 1 else (0 * u[1], 0 * u[1])
        return (1 + duy_dy) * (1 + dux_dx) - duy_dx * dux_dy
    axes = (-3, -2, -1)
    jac = np.empty((3, 3, *u.shape[1:]))
    for i in range(3):
        for j, ax in enumerate(axes):
            jac[i, j] = np.gradient(u[i], axis=ax) if u.shape[ax] > 1 else 0.0
        jac[i, i] += 1.0
    return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))


#: :func:`signal_weight` counts a sample as signal where its distance from the background is at
#: least this fraction of the window's largest (below it: background and its noise, which on a
#: sparse sample would otherwise outweigh the objects; docs/trust.md, "Lensless")
SIGNAL_FLOOR = 0.2


def signal_weight(scene: np.ndarray, floor: float = SIGNAL_FLOOR) -> np.ndarray:
    """Where a window's scene ``(T, C, Z, Y, X)`` has signal: ``(T, Z, Y, X)``, the sum over
    channels of each value's distance from its channel's median at that time (the background
    of a sparse sample, the mean level of a textured one), zero where it is below ``floor`` x
    its largest value in the window."""
    s = np.asarray(scene, np.float64)
    if s.ndim != 5:
        raise ValueError(f"scene has shape {s.shape}; give (T, C, Z, Y, X)")
    median = np.median(s.reshape(*s.shape[:2], -1), axis=-1)[..., None, None, None]
    w = np.sum(np.abs(s - median), axis=1)
    return np.where(w >= floor * w.max(), w, 0.0) if w.size else w


def motion_plausibility(
    motion_px: np.ndarray, margin_px: int = 0, weight: np.ndarray | None = None
) -> dict[str, float]:
    """Folding and size of a window's motion ``(T, D, Z, Y, X)`` (output pixels).

    Returns ``min_jacobian`` (smallest determinant), ``folded_fraction`` (share of (time,
    pixel) samples with determinant <= 0), ``max_displacement_px`` (largest distance of any
    pixel from its own time-mean position within the window: the motion the window has to
    explain, free of the model's arbitrary global offset) and ``max_displacement_fraction``
    (that over the field's shorter lateral side). ``margin_px`` border pixels are left out.
    With ``weight`` ``(T, Z, Y, X)`` (:func:`signal_weight`), also ``folded_signal_fraction``:
    the share of the weight on folded samples, and ``max_signal_displacement_px`` /
    ``_fraction``: the largest displacement where the weight is not zero (what :func:`verdict`
    judges when present: the motion of empty background is not seen, so not fitted)."""
    u = np.asarray(motion_px, np.float64)
    if u.ndim != 5:
        raise ValueError(f"motion_px has shape {u.shape}; give (T, D, Z, Y, X)")
    det = np.stack([jacobian_determinant(u[t]) for t in range(u.shape[0])])
    rel = u - u.mean(axis=0, keepdims=True)
    dist = np.sqrt(np.sum(rel**2, axis=1))  # (T, Z, Y, X)
    w = None
    if weight is not None:
        w = np.asarray(weight, np.float64)
        if w.shape != det.shape:
            raise ValueError(f"weight has shape {w.shape}; give one value per motion sample {det.shape}")
    if margin_px > 0 and min(u.shape[-2:]) > 2 * margin_px:
        sl = (..., slice(margin_px, -margin_px), slice(margin_px, -margin_px))
        det, dist = det[sl], dist[sl]
        w = None if w is None else w[sl]
    side = min(u.shape[-2:])
    max_disp = float(dist.max()) if dist.size else 0.0
    out = {
        "min_jacobian": float(det.min()),
        "folded_fraction": float(np.mean(det <= 0)),
        "max_displacement_px": max_disp,
        "max_displacement_fraction": max_disp / side,
    }
    if w is not None:
        total = float(np.sum(w))
        out["folded_signal_fraction"] = float(np.sum(w * (det <= 0)) / total) if total > 0 else 0.0
        seen = dist[w > 0]
        out["max_signal_displacement_px"] = float(seen.max()) if seen.size else 0.0
        out["max_signal_displacement_fraction"] = out["max_signal_displacement_px"] / side
    return out


# ------------------------------------------------------------------ agreement
def _bandpass(image: np.ndarray, pixel_size_um: float, low_per_um: float, high_per_um: float) -> np.ndarray:
    ny, nx = image.shape[-2:]
    uy = np.fft.fftfreq(ny, pixel_size_um)[:, None]
    ux = np.fft.fftfreq(nx, pixel_size_um)[None, :]
    r2 = uy**2 + ux**2
    filt = np.exp(-r2 / high_per_um**2)
    if low_per_um > 0:
        filt = filt * (1.0 - np.exp(-r2 / low_per_um**2))
    return np.real(np.fft.ifft2(np.fft.fft2(image) * filt))


def lowfreq_correlation(
    nstm: np.ndarray,
    conventional: np.ndarray,
    pixel_size_um: float,
    band_per_um: tuple[float, float],
    margin_px: int = 0,
) -> float:
    """Pearson correlation of two images ``(..., Y, X)`` after keeping only the band
    ``band_per_um = (low, high)`` cycles/µm (smooth Gaussian edges; low 0 keeps the mean out
    only through the correlation), ``margin_px`` border pixels left out. 0 when either is flat."""
    low, high = band_per_um
    if not (high > 0 and 0 <= low < high):
        raise ValueError(f"band_per_um={band_per_um}; give (low, high) cycles/µm with 0 <= low < high")
    a = _bandpass(np.asarray(nstm, np.float64), pixel_size_um, low, high)
    b = _bandpass(np.asarray(conventional, np.float64), pixel_size_um, low, high)
    if margin_px > 0:
        a = a[..., margin_px:-margin_px, margin_px:-margin_px]
        b = b[..., margin_px:-margin_px, margin_px:-margin_px]
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def projected_lowfreq_correlation(
    nstm: np.ndarray,
    conventional: np.ndarray,
    pixel_size_um: float,
    band_per_um: tuple[float, float],
    margin_px: int = 0,
) -> float:
    """:func:`lowfreq_correlation` of two volumes ``(Z, Y, X)`` through their axial projections.

    The projection is the kz = 0 plane of a volume's spectrum, which a 3D Wiener result and the
    NSTM both see fully; plane by plane, the Wiener's missing cone and axial blur are not the
    NSTM's (static 3D SIM windows agreed only to 0.81 plane by plane, 0.97 projected;
    docs/trust.md, "3D SIM"). A single plane is compared as it is.
    """
    a, b = np.asarray(nstm, np.float64), np.asarray(conventional, np.float64)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"nstm {a.shape} and conventional {b.shape} must be volumes (Z, Y, X) of one shape")
    return lowfreq_correlation(a.mean(axis=0), b.mean(axis=0), pixel_size_um, band_per_um, margin_px)


# ------------------------------------------------------------------ verdict
def verdict(numbers: dict[str, Any], thresholds: TrustThresholds | None = None) -> tuple[str, list[str]]:
    """``("ok" | "doubtful" | "untrusted", reasons)`` from the numbers of :func:`assess_window`
    (``heldout_noise_ratio``, ``folded_signal_fraction`` or else ``folded_fraction``,
    ``max_signal_displacement_fraction`` or else ``max_displacement_fraction``,
    ``lowfreq_correlation``, judged only where ``lowfreq_motion_periods`` is at most
    ``lowfreq_max_motion_periods`` or missing; a missing or NaN number is not judged). One
    sentence per reason."""
    th = thresholds or TrustThresholds()
    level, reasons = 0, []

    def flag(lvl: int, text: str) -> None:
        nonlocal level
        level = max(level, lvl)
        reasons.append(text)

    def num(key: str) -> float | None:
        v = numbers.get(key)
        return float(v) if v is not None and math.isfinite(float(v)) else None

    r = num("heldout_noise_ratio")
    if r is not None and r > th.residual_doubtful:
        lvl = 2 if r > th.residual_untrusted else 1
        limit = th.residual_untrusted if lvl == 2 else th.residual_doubtful
        flag(lvl, f"held-out residual is {r:.2f}x the predicted noise (limit {limit:g}x): "
                  "the model does not explain data it did not fit")  # fmt: skip
    f, share = num("folded_signal_fraction"), "under {:.2g}% of the sample's signal"
    if f is None:  # no signal weight: the share of the field
        f, share = num("folded_fraction"), "on {:.2g}% of the field"
    if f is not None and f > th.folded_doubtful:
        lvl = 2 if f > th.folded_untrusted else 1
        flag(lvl, f"the motion folds (Jacobian <= 0) {share.format(100 * f)}: "
                  "no physical deformation does that")  # fmt: skip
    d = num("max_signal_displacement_fraction")
    if d is None:  # no signal weight (a report stored before it): the whole field's
        d = num("max_displacement_fraction")
    if d is not None and th.displacement_doubtful is not None and d > th.displacement_doubtful:
        flag(1, f"motion within the window reaches {100 * d:.0f}% of the field "
                f"(limit {100 * th.displacement_doubtful:.0f}%): large motion is often not recovered")  # fmt: skip
    c = num("lowfreq_correlation")
    if not _lowfreq_judged(numbers, th):
        c = None
    if c is not None and c < th.lowfreq_doubtful:
        lvl = 2 if c < th.lowfreq_untrusted else 1
        flag(lvl, f"low frequencies correlate {c:.2f} with the conventional result "
                  f"(limit {th.lowfreq_untrusted if lvl == 2 else th.lowfreq_doubtful:g}): they should agree")  # fmt: skip
    return VERDICTS[level], reasons


def _lowfreq_judged(numbers: dict[str, Any], th: TrustThresholds) -> bool:
    """Whether the motion within the window is small enough for the conventional result to be a
    reference in the low band (a report stored before ``lowfreq_motion_periods`` existed: yes)."""
    periods = numbers.get("lowfreq_motion_periods")
    return periods is None or not math.isfinite(float(periods)) or float(periods) <= th.lowfreq_max_motion_periods


# ------------------------------------------------------------------ one window
def predict_measurements(forward: Any, fit_result: FitResult, times_s: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """The measurements the fitted model predicts, ``(K, *measurement_shape)``: the scene at
    each row's times ``times_s`` ``(K, n_sub)`` (s), averaged over the exposure, through
    ``forward.render`` for rows ``shots`` ``(K,)``."""
    t = np.asarray(times_s, np.float64)
    tn = np.asarray(fit_result.time_map.normalise(t.reshape(-1))).reshape(t.shape)
    pred, _ = predict_rows(fit_result.model, fit_result.params, forward, tn, shots)
    return np.asarray(pred, np.float64)


def assess_window(
    *,
    forward: Any,
    fit_result: FitResult,
    measurements: np.ndarray,
    times_s: np.ndarray,
    shots: np.ndarray,
    weights: np.ndarray | None,
    counts_per_unit: np.ndarray | float,
    counts_offset_units: float,
    gain_e_per_adu: float | None,
    read_noise_e: float | None,
    motion_px: np.ndarray,
    scene: np.ndarray,
    conventional: np.ndarray,
    channel: int | None,
    pixel_size_um: float,
    band_per_um: tuple[float, float],
    thresholds: TrustThresholds | None = None,
    map_side_px: int = 32,
    scale_noise_frames: int | None = None,
    held_out: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """The trust report of one window and its residual map.

    ``measurements`` ``(K, *measurement_shape)`` in the fitted units, with counts
    (offset removed) = ``counts_per_unit * (measurements + counts_offset_units)`` (DPC:
    background, 1; SIM: the normalisation scale, 0); ``times_s``, ``shots``, ``weights``, ``held_out`` as in
    :class:`~nstm_acquire.nstm.fit.FitData`. Camera ``gain_e_per_adu`` / ``read_noise_e``
    give the predicted noise; without them it is estimated from the frames
    (:func:`estimated_sigma`, recorded in ``noise_model``). ``motion_px`` ``(T, D, Z, Y, X)``,
    ``scene`` ``(T, C, Z, Y, X)``, ``conventional`` ``(C, Z, Y, X)``; ``channel`` is the one
    compared in ``band_per_um`` cycles/µm on the ``pixel_size_um`` grid (None: the sum of all
    channels).

    Returns the report (numbers, ``verdict``, ``reasons``, ``noise_model``, ``thresholds``) and
    the float32 residual map ``(Y / b, X / b)`` (RMS held-out residual / predicted sigma per
    ``b``-pixel block, ``b`` making the map's long side about ``map_side_px``).

    ``scale_noise_frames``: when ``counts_per_unit`` is itself a measurement (DPC divided by a
    measured background), the number of frames averaged in it; its Poisson-Gaussian noise then
    enters the data as ``(measurement + offset)^2 x var(counts_per_unit) / frames``. None: a
    noise-free scale (a frame mean, a computed background).
    """
    th = thresholds or TrustThresholds()
    cfg = fit_result.model.config.fit
    y = np.asarray(measurements, np.float64)
    pred = predict_measurements(forward, fit_result, times_s, shots)
    if pred.shape != y.shape:
        raise ValueError(f"the forward model predicts {pred.shape}, the measurements are {y.shape}")
    _, held = fit_masks(FitData(y, times_s, shots, weights, held_out=held_out), cfg)
    scale = np.broadcast_to(np.asarray(counts_per_unit, np.float64), y.shape)
    resid_adu = (y - pred) * scale
    if gain_e_per_adu is not None:
        sigma = divided_data_sigma_adu(
            pred + counts_offset_units, scale, gain_e_per_adu, read_noise_e or 0.0, scale_noise_frames
        )
        noise_model = f"camera: gain {gain_e_per_adu:g} e/ADU, read noise {read_noise_e or 0.0:g} e"
        if scale_noise_frames:
            noise_model += f", plus the noise of the {scale_noise_frames}-frame background the data are divided by"
    else:
        sigma = np.broadcast_to(estimated_sigma((y + counts_offset_units) * scale), y.shape)
        noise_model = "estimated from the frames (the store has no camera.gain_e_per_adu)"
    z = resid_adu / np.maximum(sigma, 1e-12)
    ratio = heldout_noise_ratio(z, held)
    block = max(1, -(-max(y.shape[-2:]) // map_side_px))
    rmap = residual_map(z, held, block)
    motion = motion_plausibility(np.asarray(motion_px), margin_px=0, weight=signal_weight(scene))
    mean_scene = np.asarray(scene, np.float64).mean(axis=0)  # (C, Z, Y, X)
    conv = np.asarray(conventional, np.float64)
    mean_scene, conv = (mean_scene.sum(0), conv.sum(0)) if channel is None else (mean_scene[channel], conv[channel])
    corr = projected_lowfreq_correlation(
        mean_scene, conv, pixel_size_um, band_per_um,
        margin_px=min(cfg.loss_margin_px, min(mean_scene.shape[-2:]) // 4),
    )  # fmt: skip
    numbers: dict[str, Any] = {
        "heldout_noise_ratio": ratio,
        "heldout_pixels": int(np.sum(np.broadcast_to(held > 0, y.shape))),
        **motion,
        "lowfreq_correlation": corr,
        "lowfreq_band_per_um": [float(band_per_um[0]), float(band_per_um[1])],
        # how many periods of the band's highest frequency the sample's motion within the window
        # spans (where it has signal: an empty background's motion smears nothing)
        "lowfreq_motion_periods": float(motion["max_signal_displacement_px"]) * pixel_size_um * float(band_per_um[1]),
        "lowfreq_channel": None if channel is None else int(channel),
        "residual_map_block_px": int(block),
    }
    label, reasons = verdict(numbers, th)
    not_judged = (
        [] if numbers["heldout_pixels"] else ["held-out residual: no held-out pixels (fit.validation_fraction is 0)"]
    )
    if not _lowfreq_judged(numbers, th):
        not_judged.append(
            f"low-frequency agreement: the motion within the window spans {numbers['lowfreq_motion_periods']:.1f} "
            f"periods of the band's highest frequency (limit {th.lowfreq_max_motion_periods:g}), so the "
            "conventional result is smeared there"
        )
    report = {
        "verdict": label,
        "reasons": reasons,
        "not_judged": not_judged,
        **numbers,
        "noise_model": noise_model,
        "thresholds": dataclasses.asdict(th),
    }
    return report, rmap


#: rolling_shutter: the band of the low-frequency check, cycles per scene pixel (DPC's 0.1-0.5 NA/λ
#: on a Nyquist-sampled camera); a lensless store's optics say nothing about its scene's sampling
LENSLESS_BAND_PER_PX = (0.025, 0.125)


@dataclasses.dataclass(frozen=True)
class FittedUnits:
    """How a window's fitted measurements relate to its camera counts, and what to compare.

    Camera counts (offset removed) = ``counts_per_unit * (measurements + offset_units)``, in the
    layout of ``problem.data.measurements``. ``channel`` is the scene channel the low-frequency
    check compares (None: the sum of all channels), in ``band_per_um`` cycles/µm;
    ``scale_noise_frames`` as in :func:`assess_window`.
    """

    counts_per_unit: np.ndarray | float
    offset_units: float
    channel: int | None
    band_per_um: tuple[float, float]
    scale_noise_frames: int | None


def fitted_units(problem: Any, raw_counts: np.ndarray, cutoff_per_um: float) -> FittedUnits:
    """The :class:`FittedUnits` of a :class:`~nstm_acquire.recon.problem.WindowProblem` whose
    frames are ``raw_counts`` ``(S, Z, Y, X)`` (counts, offset removed).

    DPC: ``y = raw / scale - 1`` with a per-pixel scale (the background), phase compared in
    0.1-0.5 ``cutoff_per_um`` (the coherent cutoff NA/λ). SIM: ``y = raw / mean(raw)``, compared
    in 0.2-1 of the incoherent cutoff ``2 cutoff_per_um``. Rolling shutter (lensless): row blocks
    of ``raw / scale_counts`` (the problem's ``info``), every colour compared in
    :data:`LENSLESS_BAND_PER_PX`.
    """
    data = problem.data
    raw = np.asarray(raw_counts, np.float64)
    y = np.asarray(data.measurements, np.float64)
    names = list(problem.channel_names)
    if "phase_rad" in names:  # DPC: counts = raw / (y + 1) x (y + 1)
        raw = raw[np.asarray(data.shots)]  # the frame of every data row (row-exact timing: one per row block)
        if raw.shape[0] != y.shape[0] or raw.shape[2:] != y.shape[1:]:
            raise ValueError(f"raw_counts {raw.shape} do not match the DPC measurements {y.shape}")
        denom = y + 1.0
        per_unit = np.where(np.abs(denom) > 1e-3, raw[:, 0] / np.where(denom == 0, 1, denom), 0.0)
        # divided by one measured sample-free frame per shot: its noise is in the data too
        scale_frames = 1 if problem.info.get("normalisation") == "background" else None
        band = (0.1 * cutoff_per_um, 0.5 * cutoff_per_um)
        return FittedUnits(per_unit, 1.0, names.index("phase_rad"), band, scale_frames)
    if "scale_counts" in problem.info:  # rolling shutter: y = row blocks of raw / scale
        px = float(problem.pixel_size_um)
        band = (LENSLESS_BAND_PER_PX[0] / px, LENSLESS_BAND_PER_PX[1] / px)
        return FittedUnits(float(problem.info["scale_counts"]), 0.0, None, band, None)
    # SIM: y = raw / mean(raw)
    return FittedUnits(float(raw.mean()), 0.0, 0, (0.2 * cutoff_per_um, cutoff_per_um), None)


def window_trust(
    problem: Any,
    result: Any,
    raw_counts: np.ndarray,
    cutoff_per_um: float,
    gain_e_per_adu: float | None,
    read_noise_e: float | None,
    thresholds: TrustThresholds | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`assess_window` for a :class:`~nstm_acquire.recon.problem.WindowProblem` and its
    :class:`~nstm_acquire.recon.arrays.WindowResult`.

    ``raw_counts`` ``(S, Z, Y, X)``: the window's frames, counts with the offset removed (they
    give the fitted units' scale, :func:`fitted_units`); ``cutoff_per_um`` the coherent cutoff
    NA/λ (the compared band is 0.1-0.5 of it for DPC, of the incoherent cutoff 2 NA/λ for SIM).
    """
    data = problem.data
    units = fitted_units(problem, raw_counts, cutoff_per_um)
    return assess_window(
        forward=problem.forward, fit_result=result.fit, measurements=np.asarray(data.measurements, np.float64),
        times_s=data.times_s, shots=data.shots, weights=data.weights, counts_per_unit=units.counts_per_unit,
        counts_offset_units=units.offset_units, gain_e_per_adu=gain_e_per_adu, read_noise_e=read_noise_e,
        motion_px=result.motion, scene=result.scene, conventional=problem.conventional, channel=units.channel,
        pixel_size_um=problem.pixel_size_um, band_per_um=units.band_per_um, thresholds=thresholds,
        scale_noise_frames=units.scale_noise_frames, held_out=data.held_out,
    )  # fmt: skip
