"""A simulated lensless rolling-shutter camera (DiffuserCam) over a moving RGB scene.

Written independently of :mod:`nstm_acquire.physics.rolling_shutter` (which it is used to judge):
its own row timing, its own caustic PSF, spatial-domain scene rendering at the exact object
positions, convolution by ``scipy.signal.fftconvolve`` and a per-row time integration at fine
time steps, then Poisson-Gaussian noise.

* :func:`caustic_psf` -- a pseudo-random caustic PSF: a plane wave through a thin diffuser (a
  smooth random phase screen, phase scaled by 1/λ) propagated by Fresnel diffraction to the
  sensor; one PSF per colour channel, each normalised to sum 1.
* :class:`MovingRgbScene` -- a faint static coloured background plus a few bright Gaussian
  objects moving on known paths (uniform drift plus circular motion): the truth.
* :class:`LenslessCamera` and :func:`simulate_lensless_video` -- the sensor (rows, row time,
  exposure, readout direction, noise) and its frames.

Conventions: arrays ``(C, y, x)`` with C = 3 (red, green, blue); positions ``(y, x)`` in
sensor pixels (pixel ``i`` centred at ``i``); times in seconds; sensor pixel ``i`` looks at
scene pixel ``i`` (scene and sensor grids coincide) and a scene point at ``p`` puts the PSF's
centre pixel ``(Hp // 2, Wp // 2)`` on sensor pixel ``p``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.signal import fftconvolve

__all__ = ["LenslessCamera", "LenslessVideo", "MovingRgbScene", "caustic_psf", "simulate_lensless_video"]

WAVELENGTHS_UM = (0.61, 0.53, 0.46)  # red, green, blue


def caustic_psf(
    shape: tuple[int, int],
    seed: int = 0,
    correlation_px: float = 6.0,
    phase_rms_rad: float = 40.0,
    distance: float = 6.0,
    wavelengths_um: tuple[float, ...] = WAVELENGTHS_UM,
) -> np.ndarray:
    """Caustic PSFs ``(len(wavelengths_um), Hp, Wp)``, each summing to 1.

    A random phase screen (white noise smoothed by a Gaussian of ``correlation_px`` pixels,
    scaled to ``phase_rms_rad`` at the first wavelength, and by ``λ0 / λ`` for the others)
    inside a circular aperture of 0.8 x the field, propagated over ``distance`` (in units of
    pixel² / λ0: the Fresnel transfer function ``exp(-iπ distance (λ/λ0) |f|²)``, f in
    cycles/pixel) on a grid twice the PSF's size; the intensity's central ``shape`` is the PSF.
    """
    hp, wp = int(shape[0]), int(shape[1])
    n0, n1 = 2 * hp, 2 * wp
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(n0)[:, None]
    fx = np.fft.fftfreq(n1)[None, :]
    f2 = fy**2 + fx**2
    noise = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n0, n1))) * np.exp(-2 * (np.pi * correlation_px) ** 2 * f2)).real
    phase = noise / noise.std() * phase_rms_rad
    yy, xx = np.mgrid[0:n0, 0:n1]
    r = np.hypot((yy - n0 / 2) / (0.4 * hp), (xx - n1 / 2) / (0.4 * wp))
    aperture = (r <= 1.0).astype(np.float64)
    out = []
    lam0 = wavelengths_um[0]
    for lam in wavelengths_um:
        field = aperture * np.exp(1j * phase * lam0 / lam)
        prop = np.fft.ifft2(np.fft.fft2(field) * np.exp(-1j * np.pi * distance * (lam / lam0) * f2))
        intensity = np.abs(prop) ** 2
        crop = intensity[n0 // 2 - hp // 2 : n0 // 2 - hp // 2 + hp, n1 // 2 - wp // 2 : n1 // 2 - wp // 2 + wp]
        out.append(crop / crop.sum())
    return np.stack(out)


@dataclasses.dataclass(frozen=True)
class MovingRgbScene:
    """Bright Gaussian objects on known paths over a faint static background, RGB.

    Object ``i`` is centred at ``start_yx[i] + velocity_px_per_s[i] * t +
    radius_px[i] * (sin(ω_i t + φ_i) - sin φ_i, cos(ω_i t + φ_i) - cos φ_i)`` (pixels, t in
    seconds), with peak brightness ``colour[i]`` (3,) and width ``sigma_px[i]``.
    """

    shape: tuple[int, int]
    start_yx: np.ndarray  # (N, 2) px at t = 0
    velocity_px_per_s: np.ndarray  # (N, 2)
    radius_px: np.ndarray  # (N,)
    angular_rad_per_s: np.ndarray  # (N,)
    phase_rad: np.ndarray  # (N,)
    colour: np.ndarray  # (N, 3)
    sigma_px: np.ndarray  # (N,)
    background: np.ndarray  # (3, H, W)

    @classmethod
    def random(
        cls,
        shape: tuple[int, int],
        n_objects: int = 3,
        speed_px_per_s: float = 200.0,
        duration_s: float = 0.1,
        seed: int = 0,
        background_level: float = 0.05,
        min_separation_px: float = 6.0,
        drift: bool = True,
    ) -> MovingRgbScene:
        """Objects whose whole paths over ``[0, duration_s]`` stay 15 % inside the field and at
        least ``min_separation_px`` apart (they never cross).

        ``speed_px_per_s``: typical speed (drift plus circular motion). ``drift=False``: circles
        only, all with one angular speed (``speed_px_per_s`` over the typical radius) and so one
        period, checked over a whole period: the objects stay inside and apart at any time
        (``duration_s`` is then not used), as a simulated camera running for any time needs."""
        rng = np.random.default_rng(seed)
        h, w = shape
        lo, hi = 0.15 * np.array([h, w]), 0.85 * np.array([h, w])
        omega = speed_px_per_s / (0.12 * min(h, w))
        if not drift:
            duration_s = 2 * np.pi / omega if omega > 0 else 0.0
        objs: dict[str, list] = {k: [] for k in ("start", "vel", "rad", "ang", "ph")}
        for _ in range(n_objects):
            for _try in range(200):
                vel = rng.normal(size=2)
                vel *= 0.6 * speed_px_per_s / np.linalg.norm(vel)
                rad = rng.uniform(0.1, 0.25) * min(h, w)
                ang = 0.4 * speed_px_per_s / rad * rng.choice([-1, 1])
                if not drift:
                    rad = rng.uniform(0.08, 0.16) * min(h, w)
                    vel, ang = np.zeros(2), omega * rng.choice([-1, 1])
                ph = rng.uniform(0, 2 * np.pi)
                start = rng.uniform(lo, hi)
                t = np.linspace(0, duration_s, 50 if drift else 200)
                path = _path(start, vel, rad, ang, ph, t)
                others = [
                    _path(objs["start"][i], objs["vel"][i], objs["rad"][i], objs["ang"][i], objs["ph"][i], t)
                    for i in range(len(objs["start"]))
                ]
                apart = all(np.min(np.linalg.norm(path - o, axis=1)) >= min_separation_px for o in others)
                if np.all(path >= lo) and np.all(path <= hi) and apart:
                    break
            else:
                raise ValueError(
                    f"speed_px_per_s={speed_px_per_s} over duration_s={duration_s} leaves a {shape} field or "
                    f"brings objects closer than min_separation_px={min_separation_px}; lower the speed, the "
                    "duration or n_objects"
                )
            for k, v in zip(("start", "vel", "rad", "ang", "ph"), (start, vel, rad, ang, ph)):
                objs[k].append(v)
        palette = np.array([[1.0, 0.3, 0.2], [0.2, 1.0, 0.3], [0.3, 0.4, 1.0], [1.0, 0.9, 0.2], [0.9, 0.3, 1.0]])
        colour = palette[np.arange(n_objects) % len(palette)]
        yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
        bg = np.stack(
            [
                1.0 + 0.5 * np.sin(2 * np.pi * (yy + 0.3 * c)) * np.cos(2 * np.pi * (xx - 0.2 * c))
                for c in range(3)
            ]
        )
        return cls(
            (int(h), int(w)),
            np.array(objs["start"]),
            np.array(objs["vel"]),
            np.array(objs["rad"]),
            np.array(objs["ang"]),
            np.array(objs["ph"]),
            colour,
            rng.uniform(1.3, 1.8, n_objects),
            background_level * bg,
        )

    def positions_yx(self, times_s: np.ndarray | float) -> np.ndarray:
        """Object centres ``(T, N, 2)`` (pixels) at ``times_s`` (T,) (a scalar: ``(N, 2)``)."""
        t = np.asarray(times_s, np.float64)
        out = np.stack(
            [
                _path(self.start_yx[i], self.velocity_px_per_s[i], self.radius_px[i], self.angular_rad_per_s[i],
                      self.phase_rad[i], t.reshape(-1))
                for i in range(len(self.start_yx))
            ],
            axis=1,
        )
        return out[0] if t.ndim == 0 else out

    def render(self, time_s: float) -> np.ndarray:
        """The scene ``(3, H, W)`` at ``time_s`` (brightness, >= 0)."""
        h, w = self.shape
        yy = np.arange(h, dtype=np.float64)[:, None]
        xx = np.arange(w, dtype=np.float64)[None, :]
        out = self.background.copy()
        for (py, px), col, s in zip(self.positions_yx(time_s), self.colour, self.sigma_px):
            blob = np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * s * s))
            out += col[:, None, None] * blob[None]
        return out


def _path(start, vel, rad, ang, ph, t):
    t = np.asarray(t, np.float64)[:, None]
    circ = rad * np.concatenate([np.sin(ang * t + ph) - np.sin(ph), np.cos(ang * t + ph) - np.cos(ph)], axis=1)
    return start[None] + vel[None] * t + circ


@dataclasses.dataclass(frozen=True)
class LenslessCamera:
    """A colour rolling-shutter sensor behind a diffuser.

    ``shape`` (rows, columns) pixels; ``row_time_s`` between consecutive readout slots;
    ``exposure_s`` per row; ``direction`` ``"top_to_bottom"``, ``"bottom_to_top"`` or
    ``"centre_out"``; ``frame_interval_s`` between frame starts (None: back to back, the last
    row closing as the next frame's first opens); noise: ``photons`` expected photo-electrons
    for brightness 1, ``read_noise_e`` RMS electrons.
    """

    shape: tuple[int, int]
    row_time_s: float
    exposure_s: float
    direction: str = "top_to_bottom"
    frame_interval_s: float | None = None
    photons: float = 2000.0
    read_noise_e: float = 2.0

    def __post_init__(self) -> None:
        if self.direction not in ("top_to_bottom", "bottom_to_top", "centre_out"):
            raise ValueError(f"direction={self.direction!r}; use top_to_bottom, bottom_to_top or centre_out")
        if not (self.row_time_s > 0 and self.exposure_s > 0 and self.photons > 0):
            raise ValueError("row_time_s, exposure_s and photons must be > 0")

    def row_open_s(self) -> np.ndarray:
        """``(H,)`` seconds from the frame start to each row's opening."""
        h = self.shape[0]
        rows = np.arange(h)
        if self.direction == "top_to_bottom":
            order = rows
        elif self.direction == "bottom_to_top":
            order = h - 1 - rows
        elif h % 2 == 0:  # both halves from the middle outwards, rows h/2 - 1 - k and h/2 + k in slot k
            order = np.where(rows < h // 2, h // 2 - 1 - rows, rows - h // 2)
        else:  # odd: the middle row alone in slot 0
            order = np.abs(rows - h // 2)
        return order * self.row_time_s

    def span_s(self) -> float:
        """Seconds from a frame's first row opening to its last row closing."""
        return float(self.row_open_s().max() + self.exposure_s)

    def interval_s(self) -> float:
        return self.frame_interval_s if self.frame_interval_s is not None else self.span_s()


@dataclasses.dataclass
class LenslessVideo:
    """Simulated frames and their truth.

    ``frames`` ``(F, 3, H, W)`` in scene-brightness units (photo-electrons / ``photons``),
    noisy; ``clean`` the same without noise; ``frame_starts_s`` ``(F,)``; ``psf`` ``(3, Hp, Wp)``.
    """

    frames: np.ndarray
    clean: np.ndarray
    frame_starts_s: np.ndarray
    psf: np.ndarray
    camera: LenslessCamera
    scene: MovingRgbScene


def simulate_lensless_video(
    camera: LenslessCamera,
    scene: MovingRgbScene,
    psf: np.ndarray,
    n_frames: int,
    start_s: float = 0.0,
    steps_per_row: int = 2,
    seed: int = 0,
) -> LenslessVideo:
    """Frames of ``scene`` through ``psf`` on ``camera``: every row integrates its own open interval.

    Time is cut into steps of ``row_time_s / steps_per_row``; the scene is rendered at each
    step's midpoint, convolved with the PSF (linear convolution, cropped to the sensor) and
    added to every row in proportion to how much of the step falls in its open interval.
    """
    h, w = camera.shape
    if scene.shape != (h, w):
        raise ValueError(f"scene.shape={scene.shape} must equal camera.shape={camera.shape}")
    psf = np.asarray(psf, np.float64)
    if psf.ndim == 2:
        psf = np.broadcast_to(psf, (3, *psf.shape))
    cy, cx = psf.shape[1] // 2, psf.shape[2] // 2
    opened = camera.row_open_s()
    dt = camera.row_time_s / steps_per_row
    n_steps = int(np.ceil(camera.span_s() / dt - 1e-9))
    starts = start_s + np.arange(n_frames) * camera.interval_s()
    clean = np.zeros((n_frames, 3, h, w))
    for f, s0 in enumerate(starts):
        for m in range(n_steps):
            lo, hi = m * dt, (m + 1) * dt
            frac = np.clip(np.minimum(hi, opened + camera.exposure_s) - np.maximum(lo, opened), 0, None) / camera.exposure_s
            rows = np.flatnonzero(frac > 0)
            if rows.size == 0:
                continue
            obj = scene.render(s0 + 0.5 * (lo + hi))
            for c in range(3):
                full = fftconvolve(obj[c], psf[c], mode="full")
                img = full[cy : cy + h, cx : cx + w]
                clean[f, c, rows] += frac[rows, None] * img[rows]
    rng = np.random.default_rng(seed)
    electrons = rng.poisson(np.clip(clean, 0, None) * camera.photons) + rng.normal(
        0.0, camera.read_noise_e, clean.shape
    )
    return LenslessVideo(electrons / camera.photons, clean, starts, psf.copy(), camera, scene)
