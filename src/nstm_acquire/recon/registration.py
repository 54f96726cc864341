"""Register the shots of one window against each other: how far the sample moved between them.

A cold NSTM fit has to discover the motion from zero; a motion of tens of pixels within one
window is beyond what its coarse-to-fine ramp finds (docs/model.md, "Large motion"). The shots
of a window share the sample, so their displacements can be measured directly and the motion
network started there (:mod:`nstm_acquire.nstm.prefit_motion`, :mod:`nstm_acquire.recon.start`).

What the shots share differs by modality:

* DPC: the half-circle shots see the same phase through different transfer functions ``H_k``
  (the phase term dominates a cell culture: phase ~0.5 rad against absorption ~0.03). Their
  cross-spectrum ``Y_b conj(Y_a) = H_b conj(H_a) |Φ|² exp(-2πi u·s)`` has the sign pattern of
  ``H_b conj(H_a)``; multiplying by ``conj(H_b conj(H_a))`` makes it positive, so the
  correlation peaks at the shift ``s`` even between shots of opposite or crossed contrast
  (:func:`pair_shift` with ``transfer``).
* SIM 2D: every shot is taken at its own time, so each is registered alone: what the shots
  share is their low band, below half the pattern frequency (:func:`sim_low_band`), where a
  shot is the widefield image of the sample plus weak, pattern-phase-dependent traces of its
  high frequencies; the pattern's own fringes (at the pattern frequency, fixed to the
  microscope, not to the sample) are left out. The band is passed as every shot's
  ``transfer`` (real and equal for all, it only masks).

Estimates: every pair of shots is registered (sub-pixel phase correlation, apodised), and the
per-shot shifts are the least-squares solution of the pairwise differences with zero mean
(:func:`shot_translations`); with the shot times, the pairs first vote for a constant
velocity, so pairs too weak to register alone still count. :func:`motion_fields` turns the
shifts into the model's backward displacement. Deformations (swirl, shear) are not registered
here: patch-wise registration was tried and did not help (docs/model.md, "Large motion").

Conventions: arrays ``(K, Y, X)``, shifts ``(dy, dx)`` in pixels of the given images. A content
shift ``c_k`` means shot ``k`` shows the reference at ``r - c_k``:
``shot_k(r) = ref(r - c_k)``; the NSTM's motion is the backward warp
``scene(r, t_k) = template(r + d(r, t_k))`` (FORMAT.md), so ``d = -c``. The reference is the
window's mean position (shifts sum to zero over the shots), which matches the motion network's
start (a coarse-to-fine fit starts from a motion that is the same at every time).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.model import NSTMModel, Params, TimeMap
from nstm_acquire.nstm.prefit_motion import prefit_motion
from nstm_acquire.recon.problem import WindowProblem

__all__ = [
    "exposure_blur_px",
    "largest_deviation_px",
    "motion_against_rendering",
    "motion_fields",
    "motion_from_registration",
    "normalised_row_times",
    "PREFIT_MIN_PX",
    "pair_shift",
    "PATCH_DEVIATION_PX",
    "PATCH_MIN_FIELD_PX",
    "patch_registration",
    "pattern_frequency",
    "prefit_registered_motion",
    "shot_translations",
    "SIM_LOW_BAND",
    "sim_low_band",
    "tukey_window",
    "window_motion",
]


def tukey_window(shape: tuple[int, int], taper: float = 0.25) -> np.ndarray:
    """2D separable Tukey window ``(Y, X)``: flat, with cosine tapers over ``taper`` of each side."""
    out = np.ones(shape, np.float64)
    for axis, n in enumerate(shape):
        w = np.ones(n)
        m = int(np.floor(taper * n / 2))
        if m > 0:
            ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(m) + 0.5) / m))
            w[:m], w[n - m :] = ramp, ramp[::-1]
        out *= w.reshape([-1 if a == axis else 1 for a in range(2)])
    return out


def _upsampled_peak(cross: np.ndarray, peak: np.ndarray, factor: int) -> tuple[np.ndarray, float]:
    """Refine an integer correlation peak to ``1 / factor`` px with a matrix DFT around it."""
    ny, nx = cross.shape
    offsets = np.arange(-factor, factor + 1) / factor  # +-1 px around the peak
    uy = np.fft.fftfreq(ny)
    ux = np.fft.fftfreq(nx)
    ey = np.exp(2j * np.pi * np.outer(peak[0] + offsets, uy))  # (P, Y)
    ex = np.exp(2j * np.pi * np.outer(ux, peak[1] + offsets))  # (X, P)
    surface = np.real(ey @ cross @ ex)
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    return peak + np.array([offsets[iy], offsets[ix]]), float(surface[iy, ix] / cross.size)


def pair_shift(
    a: np.ndarray,
    b: np.ndarray,
    transfer_a: np.ndarray | None = None,
    transfer_b: np.ndarray | None = None,
    taper: float = 0.25,
    upsample: int = 20,
    band: float = 0.05,
) -> tuple[np.ndarray, float]:
    """Sub-pixel shift ``s`` (dy, dx px) with ``b(r) ≈ a(r - s)``, and how significant it is.

    Parameters
    ----------
    a, b
        ``(Y, X)`` images.
    transfer_a, transfer_b
        ``(Y, X)`` complex transfer functions (numpy FFT order) through which each image saw
        the shared content (DPC: the phase transfer of each shot), or None (the same for both).
        The cross-spectrum is multiplied by ``conj(H_b conj(H_a))`` so that shots of different
        contrast correlate positively; frequencies where ``|H_b H_a|`` is below ``band`` x its
        maximum are left out.
    taper
        Tukey apodisation of each image (fraction of each side), against wrap-around edges.
    upsample
        Sub-pixel refinement factor.
    band
        Relative transfer below which a frequency is left out.

    Returns
    -------
    shift, significance
        ``(2,)`` float shift in pixels, within +-0.45 x the image size; the correlation peak in
        units of the correlation surface's standard deviation (images sharing nothing: about 4,
        the largest of many noise values; a clear match: 10 or more).
    """
    cross = _whitened_cross(a, b, transfer_a, transfer_b, taper, band)
    return _peak(cross, None, None, upsample)


def _whitened_cross(
    a: np.ndarray,
    b: np.ndarray,
    transfer_a: np.ndarray | None,
    transfer_b: np.ndarray | None,
    taper: float,
    band: float,
    whitening: float = 1.0,
) -> np.ndarray:
    """The whitened, transfer-corrected cross-spectrum of :func:`pair_shift` (FFT order):
    divided by its magnitude to the power ``whitening`` (1: phase correlation; less keeps some
    weight on the frequencies the shots share most strongly)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a {a.shape} and b {b.shape} must be (Y, X) images of the same shape")
    win = tukey_window(a.shape, taper)
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    cross = fb * np.conj(fa)
    mask = np.ones(a.shape, bool)
    if transfer_a is not None and transfer_b is not None:
        g = transfer_b * np.conj(transfer_a)
        mag = np.abs(g)
        mask = mag > band * mag.max()
        cross = cross * np.where(mask, np.conj(g) / np.maximum(mag, 1e-30), 0)
    mask[0, 0] = False
    norm = np.abs(cross)
    # whitened; frequencies at round-off level (1e-4 of the strongest) are left out, not amplified
    floor = 1e-4 * float(norm[mask].max()) if mask.any() else 0.0
    cross = np.where(mask & (norm > floor), cross / np.maximum(norm, 1e-30) ** whitening, 0)
    if whitening != 1.0 and mask.any():  # back to unit RMS over the kept frequencies
        cross = cross / max(float(np.sqrt(np.mean(np.abs(cross[mask]) ** 2))), 1e-30)
    return cross


def _zscored_surface(cross: np.ndarray) -> np.ndarray:
    """The correlation surface (FFT order) in units of its standard deviation."""
    surface = np.real(np.fft.ifft2(cross))
    return surface / max(float(np.std(surface)), 1e-30)


def _peak(
    cross: np.ndarray, around: np.ndarray | None, radius: float | None, upsample: int
) -> tuple[np.ndarray, float]:
    """Sub-pixel peak of the correlation surface of ``cross`` and its significance: the highest
    within +-0.45 x the size, or within ``radius`` px of ``around`` when given."""
    ny, nx = cross.shape
    surface = np.real(np.fft.ifft2(cross))
    noise = float(np.std(surface))
    yy = np.fft.fftfreq(ny) * ny
    xx = np.fft.fftfreq(nx) * nx
    if around is not None and radius is not None:
        # search near the expected shift, which may lie beyond half the field (periodic surface)
        wy = np.mod(yy - around[0] + ny / 2, ny) - ny / 2
        wx = np.mod(xx - around[1] + nx / 2, nx) - nx / 2
        allowed = (np.abs(wy)[:, None] <= radius) & (np.abs(wx)[None, :] <= radius)
    else:
        wy, wx = yy, xx
        allowed = (np.abs(yy)[:, None] <= 0.45 * ny) & (np.abs(xx)[None, :] <= 0.45 * nx)
    surface = np.where(allowed, surface, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    base = np.zeros(2) if around is None or radius is None else np.asarray(around, np.float64)
    peak0 = base + np.array([wy[iy], wx[ix]])
    shift, height = _upsampled_peak(cross, peak0, upsample)
    return shift, height / max(noise, 1e-30)


def _solve_shifts(n: int, pairs: list[tuple[int, int]], diffs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-shot shifts ``(n, 2)`` with zero mean from weighted pairwise differences
    ``c_b - c_a = diffs[p]`` (least squares)."""
    rows = np.zeros((len(pairs) + 1, n))
    for p, (i, j) in enumerate(pairs):
        rows[p, i], rows[p, j] = -weights[p], weights[p]
    rows[-1] = 1.0  # gauge: mean shift zero
    rhs = np.concatenate([diffs * weights[:, None], np.zeros((1, 2))])
    sol, *_ = np.linalg.lstsq(rows, rhs, rcond=None)
    return sol


def _pairs(n: int, max_gap: int | None) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n) if max_gap is None or j - i <= max_gap]


def _connected(n: int, pairs: list[tuple[int, int]], used: np.ndarray) -> bool:
    """Whether the used pairs link every shot to every other (so each shift is determined)."""
    label = list(range(n))

    def root(i: int) -> int:
        while label[i] != i:
            i = label[i]
        return i

    for (i, j), u in zip(pairs, used, strict=True):
        if u:
            label[root(i)] = root(j)
    return len({root(i) for i in range(n)}) == 1


# a pair counts when its correlation peak is this many standard deviations of the surface
# (the largest of 4-16 k noise values is about 4-4.5, 5.6 at most over the unregistrable swirls
# measured at 128 x 128; clear matches 7-40)
MIN_SIGNIFICANCE = 6.0

#: the whitening of a second try when a window's shots do not register (:func:`window_motion`):
#: a sample that moves 20 px within a 30 ms exposure blurs the shots' high frequencies away
#: along its path, and phase correlation weighs that noise as much as the sharp content (a 32 px
#: DPC translation at 128 x 128: its strongest shot pair 4.5 standard deviations, unregistered;
#: 8.3 with 0.75, registered; the swirls stay unregistered, 3.4-4.2; docs/model.md, "Large
#: motion: the blur within an exposure")
BLURRED_WHITENING = 0.75


def _register(
    shots: np.ndarray,
    transfer: np.ndarray | None,
    pairs: list[tuple[int, int]],
    min_significance: float,
    taper: float = 0.25,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Per-shot content shifts from the significant pairs, or None when they do not link every
    shot; and the significance of every pair."""
    n = shots.shape[0]
    diffs, sig = [], []
    for i, j in pairs:
        s, z = pair_shift(
            shots[i], shots[j], None if transfer is None else transfer[i], None if transfer is None else transfer[j],
            taper=taper,
        )
        diffs.append(s)
        sig.append(z)
    sig_a = np.asarray(sig)
    used = sig_a >= min_significance
    if not _connected(n, pairs, used):
        return None, sig_a
    return _solve_shifts(n, pairs, np.asarray(diffs), np.where(used, sig_a, 0.0)), sig_a


def shot_translations(
    shots: np.ndarray,
    transfer: np.ndarray | None = None,
    min_significance: float = MIN_SIGNIFICANCE,
    times_s: np.ndarray | None = None,
    whitening: float = 1.0,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Global content shift of every shot relative to the window's mean position.

    Parameters
    ----------
    shots
        ``(K, Y, X)`` images of the same sample (DPC: normalised shots; SIM: widefield sums).
    transfer
        ``(K, Y, X)`` complex transfer of the shared content per shot (see :func:`pair_shift`),
        or None.
    min_significance
        Pairs whose correlation peak is below this (in standard deviations of the correlation
        surface) are left out; with ``times_s``, the threshold of the velocity vote instead.
    times_s
        ``(K,)`` shot times (s), or None. Given, the pairs first vote for a constant velocity
        (:func:`_register_by_velocity`), so weak pairs help instead of being left out; the
        shots may still deviate from it by a few pixels.
    whitening
        With ``times_s``: the power of the cross-spectra's magnitude they are divided by (1:
        phase correlation; :data:`BLURRED_WHITENING` for shots blurred by their own motion).

    Returns
    -------
    shifts
        ``(K, 2)`` content shifts ``c_k`` (dy, dx) in pixels, ``shot_k(r) = ref(r - c_k)``,
        summing to zero over the shots (least squares over the significant pairs, weighted by
        their significance); None when the significant pairs do not link every shot (no
        common translation: a deformation, or nothing shared).
    significance
        ``(K*(K-1)/2,)`` significance of every pair, in :func:`itertools.combinations` order.
    """
    shots = np.asarray(shots, np.float64)
    if shots.ndim != 3 or shots.shape[0] < 2:
        raise ValueError(f"shots has shape {shots.shape}; give (K, Y, X) with at least 2 shots")
    if transfer is not None and transfer.shape != shots.shape:
        raise ValueError(f"transfer {transfer.shape} must match shots {shots.shape}")
    pairs = _pairs(shots.shape[0], None)
    if times_s is None:
        return _register(shots, transfer, pairs, min_significance)
    return _register_by_velocity(shots, transfer, pairs, np.asarray(times_s, np.float64), min_significance, whitening=whitening)


def _register_by_velocity(
    shots: np.ndarray,
    transfer: np.ndarray | None,
    pairs: list[tuple[int, int]],
    times_s: np.ndarray,
    min_significance: float,
    upsample: int = 20,
    whitening: float = 1.0,
) -> tuple[np.ndarray | None, np.ndarray]:
    """:func:`shot_translations` with a constant-velocity vote first.

    Every pair's z-scored correlation surface is read at ``v (t_j - t_i)`` for every candidate
    velocity ``v`` (one pixel apart along the pair farthest apart in time) and the readings
    summed: pairs too weak to register alone (DPC shots of crossed contrast, far apart) add
    up. Each pair's peak is then looked for within a few pixels of the voted shift (so the
    sample may accelerate), and the shifts solved as in :func:`shot_translations`.
    """
    n, ny, nx = shots.shape
    if times_s.shape != (n,) or not np.all(np.isfinite(times_s)):
        raise ValueError(f"times_s has shape {times_s.shape}; give ({n},) finite shot times in seconds")
    crosses = [
        _whitened_cross(
            shots[i], shots[j], None if transfer is None else transfer[i], None if transfer is None else transfer[j],
            0.25, 0.05, whitening,
        )
        for i, j in pairs
    ]
    dt = np.array([times_s[j] - times_s[i] for i, j in pairs])
    span = float(np.max(np.abs(dt)))
    if span <= 0:
        return _register(shots, transfer, pairs, min_significance)
    # candidate shifts of the pair one span apart: integer pixels up to 0.9 of the field (its own
    # surface wraps round there; the shorter pairs, read at fractions of it, tell the cases apart)
    cy = np.arange(-int(0.9 * ny), int(0.9 * ny) + 1)
    cx = np.arange(-int(0.9 * nx), int(0.9 * nx) + 1)
    vote = np.zeros((len(cy), len(cx)))
    for cross, d in zip(crosses, dt, strict=True):
        z = _zscored_surface(cross)
        sy = np.round(cy * d / span).astype(int) % ny
        sx = np.round(cx * d / span).astype(int) % nx
        vote += z[sy[:, None], sx[None, :]]
    vote /= np.sqrt(len(pairs))  # a sum of independent unit-variance surfaces, back to unit variance
    iy, ix = np.unravel_index(int(np.argmax(vote)), vote.shape)
    best = np.array([cy[iy], cx[ix]], np.float64)
    vote_sig = float(vote[iy, ix] / max(float(np.std(vote)), 1e-30))
    diffs, sig, weight = [], [], []
    for cross, d in zip(crosses, dt, strict=True):
        guess = best * d / span
        shift, z_pair = _peak(cross, guess, 2.0 + 0.1 * float(np.max(np.abs(guess))), upsample)
        diffs.append(shift)
        sig.append(z_pair)
        # a pair near the voted shift counts even when it is weak alone (weighted by its own
        # peak); one whose shots overlap by less than about half the field does not
        overlap = abs(guess[0]) <= 0.45 * ny and abs(guess[1]) <= 0.45 * nx
        weight.append(max(z_pair, 1e-3) if overlap else 0.0)
    sig_a = np.asarray(sig)
    if vote_sig < min_significance or not _connected(n, pairs, np.asarray(weight) > 0):
        return None, sig_a
    return _solve_shifts(n, pairs, np.asarray(diffs), np.asarray(weight)), sig_a


def motion_fields(shape: tuple[int, int], shifts: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The NSTM motion ``d = -c`` of every shot, uniform over an output grid ``(K, 2, Y, X)``
    (pixels), from content shifts ``shifts`` ``(K, 2)`` (:func:`shot_translations`).

    ``scale`` converts the registered images' pixels to output pixels (1 for DPC, whose output
    grid is the camera's).
    """
    d = -scale * np.asarray(shifts, np.float64)
    k = d.shape[0]
    return np.broadcast_to(d[:, :, None, None], (k, 2, *shape)).astype(np.float32)


def _dpc_shots(problem: WindowProblem, h_phi: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """DPC: the shared content of every frame is the phase, seen through the shot's ``h_phi``:
    the frames and their transfer ``(K, Y, X)``, and the scale from camera to output pixels (1)."""
    y = np.asarray(problem.data.measurements, np.float64)
    if y.shape[1:] != tuple(problem.scene_shape):
        raise ValueError(f"DPC shots {y.shape[1:]} and the scene grid {problem.scene_shape} differ")
    shots = np.asarray(problem.data.shots)
    return y, np.asarray(h_phi)[shots], shots, 1.0


def pattern_frequency(patterns: np.ndarray) -> np.ndarray:
    """Spatial frequency ``(S, 2)`` (cycles per pixel of ``patterns``' grid, ky kx) of the strongest
    non-constant component of every pattern ``(S, Y, X)``; zero for an unmodulated pattern."""
    spec = np.abs(np.fft.fft2(np.asarray(patterns, np.float64)))
    dc = spec[:, 0, 0].copy()
    spec[:, 0, 0] = 0.0
    ny, nx = patterns.shape[-2:]
    flat = spec.reshape(spec.shape[0], -1).argmax(axis=1)
    iy, ix = np.unravel_index(flat, (ny, nx))
    k = np.stack([np.fft.fftfreq(ny)[iy], np.fft.fftfreq(nx)[ix]], axis=1)
    modulated = spec.reshape(spec.shape[0], -1).max(axis=1) > 1e-6 * np.maximum(dc, 1e-30)
    return np.where(modulated[:, None], k, 0.0)


# SIM 2D: the fraction of the pattern frequency below which a shot's spectrum is registered; the
# pattern's own fringes (the sample's mean brought to +-k) and the shifted orders near them move
# with the pattern, not with the sample (docs/model.md, "SIM 2D: registration of the shots' low band")
SIM_LOW_BAND = 0.5


def sim_low_band(shape: tuple[int, int], k_per_px: np.ndarray, fraction: float = SIM_LOW_BAND) -> np.ndarray:
    """The low band ``(Y, X)`` (FFT order, 1 inside and 0 outside) of camera images ``shape``:
    frequencies below ``fraction`` x the smallest pattern frequency ``|k_per_px|`` (cycles per
    camera pixel, ``(S, 2)``) of the modulated patterns; every frequency when none is modulated
    (every shot is then a widefield image)."""
    k_all = np.hypot(k_per_px[:, 0], k_per_px[:, 1])
    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    if not np.any(k_all > 0):
        return np.ones(shape, np.float64)
    k = float(np.min(k_all[k_all > 0]))
    return (f < fraction * k).astype(np.float64)


def _sim2d_shots(problem: WindowProblem, fwd: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """SIM 2D: what every shot shares is its widefield-like low band (below half the pattern
    frequency): the frames, the low band as their transfer ``(K, Y, X)``, and the scale from
    camera to output pixels (the upsampling)."""
    y = np.asarray(problem.data.measurements, np.float64)
    u = int(fwd.upsample)
    if tuple(s * u for s in y.shape[1:]) != tuple(problem.scene_shape):
        raise ValueError(f"SIM shots {y.shape[1:]} x {u} and the scene grid {problem.scene_shape} differ")
    shots = np.asarray(problem.data.shots)
    k_cam = pattern_frequency(np.asarray(fwd.patterns)) * u  # cycles per camera pixel
    band = sim_low_band(y.shape[1:], k_cam)
    return y, np.broadcast_to(band, y.shape), shots, float(u)


def _shared_content(problem: WindowProblem, asked: str, fix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """What a window's shots share, by modality (:func:`_dpc_shots`, :func:`_sim2d_shots`); other
    forward models raise, naming the setting that ``asked`` for a registration and the ``fix``."""
    fwd = problem.forward
    h_phi = getattr(fwd, "h_phi", None)
    if h_phi is not None and len(problem.scene_shape) == 2:
        return _dpc_shots(problem, h_phi)
    if getattr(fwd, "patterns", None) is not None and len(problem.scene_shape) == 2:
        return _sim2d_shots(problem, fwd)
    raise ValueError(
        f"{asked} is implemented for DPC and 2D SIM windows only (this window's forward model is "
        f"{type(fwd).__name__}); set {fix}"
    )


def window_motion(problem: WindowProblem) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The registered motion of a window's shots on its output grid, ``(K, D, *scene_shape)``
    output pixels, or None when the shots do not register; and what was found (for the
    window's attributes).

    One translation per shot (:func:`shot_translations`, with the shots' exposure midpoints for
    the velocity vote), from what the shots share: DPC, the phase through every shot's phase
    transfer (``h_phi``); 2D SIM (a forward model with ``patterns`` and ``upsample``), the low
    band of every shot, below half the pattern frequency (:func:`sim_low_band`), registered on
    the camera grid and scaled to the output grid. No patch-wise (deformable) part: measured in
    the benchmark (docs/model.md, "Large motion"), patches of half the field (5 x 5) registered
    none of the DPC swirls of 16 px and more nor the shears of 24 px and more, and the one 8 px
    swirl patch they did started the fit worse (0.905 against 0.915 from zero). Other
    modalities raise.
    """
    if problem.registration is None:
        problem.registration = _window_motion(problem)
    motion, info = problem.registration
    return motion, dict(info)


def _frame_per_shot(problem: WindowProblem, shots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame per shot: with row-exact timing (a rolling-shutter camera) every shot's frame is
    in the data once per block of rows (recon.row_timing), each at its block's time. Returns the
    first row of every shot ``(S,)``, every row's shot ``(K,)`` and every shot's mean time ``(S,)`` (s)."""
    _, first, row_shot = np.unique(shots, return_index=True, return_inverse=True)
    times = problem.data.times_s.mean(axis=1)
    shot_times = np.array([times[row_shot == i].mean() for i in range(len(first))])
    return first, row_shot, shot_times


def normalised_row_times(problem: WindowProblem) -> np.ndarray:
    """Every row's time ``(K,)`` on the fit's normalised axis (its exposure samples averaged):
    where a motion measured for the window is pre-fitted."""
    times = problem.data.times_s
    return np.asarray(TimeMap.for_times(times).normalise(times.mean(axis=1)))


def _window_motion(problem: WindowProblem) -> tuple[np.ndarray | None, dict[str, Any]]:
    y, transfer, shots, scale = _shared_content(problem, "fit.motion_start='registration'", "fit.motion_start='zero'")
    first, row_shot, shot_times = _frame_per_shot(problem, shots)
    glob, sig = shot_translations(y[first], transfer[first], times_s=shot_times)
    info: dict[str, Any] = {
        "registered": glob is not None,
        "pair_significance": [round(float(v), 2) for v in sig],
    }
    if glob is None:  # blurred by a fast motion? weigh the frequencies the shots share most
        glob, sig_blurred = shot_translations(y[first], transfer[first], times_s=shot_times, whitening=BLURRED_WHITENING)
        if glob is not None:
            info.update(registered=True, whitening=BLURRED_WHITENING, pair_significance=[round(float(v), 2) for v in sig_blurred])
    if glob is None:
        return None, info
    info["shot_shift_px"] = [[round(float(v), 2) for v in row] for row in glob]
    if scale != 1.0:
        info["shot_shift_unit"] = "camera pixels"
    ny, nx = problem.scene_shape
    return motion_fields((ny, nx), glob[row_shot], scale=scale), info


#: fields at least this many pixels across are also registered in patches of half the field
#: (:func:`patch_registration`): a deformation confined to part of a large field (a swirl 64 px
#: across in a 256 x 256 field) registers as the still rest of it, and only a patch sees it
PATCH_MIN_FIELD_PX = 256

#: a patch whose shots register this many pixels (either axis) away from the whole field's
#: shifts moves unlike the whole
PATCH_DEVIATION_PX = 3.0


def patch_registration(problem: WindowProblem) -> dict[str, Any]:
    """Whether parts of a large field move unlike the whole: its shots registered in 3 x 3
    overlapping patches of half the field (each axis at least :data:`PATCH_MIN_FIELD_PX` px and
    even; else nothing is tried), as :func:`window_motion` registers the whole.

    Returns ``{"patches": n, "unregistered": m, "largest_deviation_px": d, "deformed": bool}``
    (``deformed``: a patch did not register, or registered more than :data:`PATCH_DEVIATION_PX`
    from the whole field's shifts), or ``{"patches": 0}`` where the field is too small. A patch's
    transfer functions are the field's at the patch's frequencies (every other one: exact for a
    patch of half an even field).
    """
    y, transfer, shots, scale = _shared_content(problem, "fit.deformation_start='velocity'", "fit.deformation_start='zero'")
    ny, nx = y.shape[1:]
    if min(ny, nx) < PATCH_MIN_FIELD_PX or ny % 2 or nx % 2:
        return {"patches": 0}
    first, _, shot_times = _frame_per_shot(problem, shots)
    frames, tf = y[first], transfer[first][:, ::2, ::2]
    # the whole field's shifts as window_motion found them (cached on the problem): d = -scale c
    motion, _ = window_motion(problem)
    whole = None if motion is None else -motion[first][:, :, 0, 0].astype(np.float64) / scale
    py, px = ny // 2, nx // 2
    unregistered, deviation = 0, 0.0
    for oy in (0, ny // 4, ny // 2):
        for ox in (0, nx // 4, nx // 2):
            patch = frames[:, oy : oy + py, ox : ox + px]
            shifts, _ = shot_translations(patch, tf, times_s=shot_times)
            if shifts is None:
                shifts, _ = shot_translations(patch, tf, times_s=shot_times, whitening=BLURRED_WHITENING)
            if shifts is None:
                unregistered += 1
            elif whole is not None:
                deviation = max(deviation, float(np.max(np.abs(shifts - whole))))
    return {
        "patches": 9,
        "unregistered": unregistered,
        "largest_deviation_px": round(deviation, 2),
        "deformed": bool(unregistered > 0 or deviation > PATCH_DEVIATION_PX),
    }


def motion_against_rendering(problem: WindowProblem, rendered: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The motion of a window's shots relative to a known scene, ``(K, D, *scene_shape)`` output
    pixels, or None when a shot does not register; and what was found.

    ``rendered`` ``(K, *measurement_shape)``: the scene (a previous window's template) rendered
    through every row's forward model with no motion. Each shot's frame is registered against
    its own rendering, which saw the scene through the same transfer and (SIM) the same pattern,
    so no pair votes and the shifts are absolute (relative to the scene, not to the window's
    mean). What is compared is what :func:`window_motion` compares: DPC the phase band, 2D SIM
    the low band below half the pattern frequency (the pattern's fringes, the same in both, would
    pull every shot to no shift). A shot below :data:`MIN_SIGNIFICANCE` makes the whole window
    unregistered (``None``).
    """
    y, transfer, shots, scale = _shared_content(
        problem, "fit.warm_motion_start='registration'", "fit.warm_motion_start='previous'"
    )
    rendered = np.asarray(rendered, np.float64)
    if rendered.shape != y.shape:
        raise ValueError(f"rendered has shape {rendered.shape}, the window's measurements {y.shape}")
    first, row_shot, _ = _frame_per_shot(problem, shots)
    shifts, sig = [], []
    for i in first:
        s, z = pair_shift(rendered[i], y[i], transfer[i], transfer[i])
        shifts.append(s)
        sig.append(z)
    info: dict[str, Any] = {
        "registered": bool(min(sig) >= MIN_SIGNIFICANCE),
        "significance": [round(float(v), 2) for v in sig],
    }
    if not info["registered"]:
        return None, info
    glob = np.asarray(shifts)
    info["shot_shift_px"] = [[round(float(v), 2) for v in row] for row in glob]
    ny, nx = problem.scene_shape
    return motion_fields((ny, nx), glob[row_shot], scale=scale), info


# registered motion (largest deviation from the window's mean position, output pixels) below
# which the motion network is not pre-fitted: up to 16 px the fit from zero recovers the motion
# (benchmarks.md, translation 8 and 16 px: 0.986 and 0.968), from 24 px it does not (0.435); a
# pre-fit of a small spurious shift (a shear registered as a 3 px translation) cost 0.003-0.005.
# 2D SIM (output pixels 2x finer than the camera's): the fit from zero follows up to about 19 px
# and loses 29 px; pre-fitted without the gate from 5 px on, no drift measured lost anything
# (docs/model.md, "SIM 2D: registration of the shots' low band"), and the same gate leaves
# today's vibrating beads (registered 3 px) exactly as they were
PREFIT_MIN_PX = 12.0


def largest_deviation_px(motion: np.ndarray) -> float:
    """The largest distance (output pixels) of any shot's registered ``motion`` ``(K, D, ...)``
    from the window's mean, along one axis: what :data:`PREFIT_MIN_PX` gates."""
    return float(np.max(np.abs(motion - motion.mean(axis=0))))


def exposure_blur_px(problem: WindowProblem, motion: np.ndarray) -> float:
    """How far (output pixels) the registered ``motion`` ``(K, D, *scene_shape)`` carries the
    sample within the longest exposure: the window's mean velocity (a straight line fitted to
    the rows' mean shifts against their times: steadier than row-to-row differences of shifts
    registered to within a pixel) times that exposure; 0 without exposures or distinct times."""
    data = problem.data
    times = data.times_s.mean(axis=1)
    if data.exposure_s is None or np.ptp(times) <= 0:
        return 0.0
    shift = motion.reshape(motion.shape[0], motion.shape[1], -1).mean(axis=2)  # (K, D)
    t = times - times.mean()
    velocity = (t @ (shift - shift.mean(axis=0))) / (t @ t)  # (D,) px / s
    return float(np.linalg.norm(velocity) * np.max(data.exposure_s))


def motion_from_registration(
    model: NSTMModel, problem: WindowProblem, config: NSTMConfig, params: Params | None = None
) -> Params | None:
    """``params`` (random networks when None) with the motion network pre-fitted to the
    window's registered motion (:func:`window_motion`, :func:`~nstm_acquire.nstm.prefit_motion.prefit_motion`).

    When the shots do not register (no significant correlation between them), or the registered
    motion is below :data:`PREFIT_MIN_PX` (which the fit from zero recovers by itself), the
    motion is left as it is and ``params`` returned unchanged; either way
    ``problem.info["motion_start"]`` says what was done.
    """
    motion, info = window_motion(problem)
    if motion is None:
        problem.info["motion_start"] = {**info, "prefit": False}
        return params
    largest = largest_deviation_px(motion)
    if largest < PREFIT_MIN_PX:  # the fit finds this by itself: start as without registration
        problem.info["motion_start"] = {**info, "prefit": False, "largest_px": round(largest, 2)}
        return params
    if params is None:
        params = model.init(jax.random.PRNGKey(config.fit.seed))
    # the cold fit starts its ramp at fit.start_alpha whenever it is given start parameters
    params, fit_info = prefit_registered_motion(model, problem, params, motion, config.fit.start_alpha)
    problem.info["motion_start"] = {**info, **fit_info}
    return params


def prefit_registered_motion(
    model: NSTMModel, problem: WindowProblem, params: Params, motion: np.ndarray, start_alpha: float
) -> tuple[Params, dict[str, Any]]:
    """``params`` with the motion network pre-fitted to a registered ``motion`` ``(K, D,
    *scene_shape)`` at the window's shot times (each row's exposure samples averaged, on the
    fit's normalised time axis), from granularity ``start_alpha`` on
    (:func:`~nstm_acquire.nstm.prefit_motion.prefit_motion`); and what the pre-fit reached, for
    the window's attributes (``prefit`` True and the rounded errors). Any motion measured for the
    window (a velocity field's flow, :mod:`nstm_acquire.recon.start`) is pre-fitted the same way."""
    tn = normalised_row_times(problem)
    params, fit_info = prefit_motion(model, params, tn, motion, start_alpha=start_alpha)
    return params, {"prefit": True, **{k: round(v, 4) for k, v in fit_info.items()}}
