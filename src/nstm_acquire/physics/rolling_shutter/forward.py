"""Lensless (DiffuserCam) rolling-shutter forward model for the NSTM, in JAX.

Image formation (``docs/rolling_shutter.md``). A diffuser maps a scene point to a large caustic
PSF ``h`` on the sensor, shift-invariantly: the sensor sees ``crop(h * o)``, a linear
convolution (zero padded, never circular) cropped to the sensor, the PSF's centre pixel
``(Hp // 2, Wp // 2)`` marking where an on-axis point lands. The scene grid ``(Hs, Ws)`` is
centred on the sensor ``(H, W)``: sensor pixel ``i`` sits over scene pixel
``i + (Hs - H) // 2`` (same for x). Each channel (RGB) has its own PSF or shares one; every PSF
channel is normalised to sum 1, so a uniform scene of brightness 1 gives 1 on the sensor (away
from the edges).

Rolling shutter. Row ``r`` integrates over its own open interval ``[a_r, a_r + E)``
(:class:`~nstm_acquire.physics.rolling_shutter.timing.RowTiming`)::

    y[r] = (1/E) ∫_{a_r}^{a_r+E} crop(h * o(t))[r] dt

The scene is sampled at ``n_time`` time points per frame, evenly spread from the first row
opening to the last row closing, and taken piecewise linear in time between them, which makes
the integral an exact weighted sum: row ``r`` gets weight
``w_rj = (1/E) ∫_{a_r}^{a_r+E} hat_j(t) dt`` on time point ``j`` (``hat_j`` the linear
interpolation basis). The rows are grouped, in readout order, into ``n_time`` blocks of
``n_rows / n_time`` rows; the NSTM's measurement ``k = f * n_time + j`` is block ``j`` of frame
``f`` and is rendered from only the few time points whose weights reach its rows
(``n_contrib``), every time point convolved once.

Axis order: scenes ``(K, C, Hs, Ws)`` with ``K = F * n_time`` time points (frame major),
measurements ``(K, C, B, W)`` with ``B = n_rows / n_time`` rows of block ``k``, in the row order
given by :attr:`RollingShutterForward.block_rows`. Times in seconds.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nstm_acquire.physics.rolling_shutter.timing import RowTiming

__all__ = [
    "LenslessConvolution",
    "RollingShutterForward",
    "hat_weights",
]


def _fast_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (FFT-friendly)."""
    best = 1 << int(np.ceil(np.log2(max(n, 1))))
    for a in range(0, best.bit_length() + 1):
        for b in range(0, 12):
            for c in range(0, 8):
                v = (2**a) * (3**b) * (5**c)
                if n <= v < best:
                    best = v
    return best


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["psf_f"],
    meta_fields=["scene_shape", "sensor_shape", "pad_shape", "crop_start"],
)
@dataclasses.dataclass(frozen=True)
class LenslessConvolution:
    """``scene (…, C, Hs, Ws) -> crop(h * scene) (…, C, H, W)`` by zero-padded FFTs.

    Build with :meth:`build`. ``psf_f`` is the PSF's real FFT on the padded grid
    ``pad_shape >= (Hs + Hp - 1, Ws + Wp - 1)``, ``(C or 1, P0, P1 // 2 + 1)``.
    """

    psf_f: jax.Array
    scene_shape: tuple[int, int]
    sensor_shape: tuple[int, int]
    pad_shape: tuple[int, int]
    crop_start: tuple[int, int]

    @classmethod
    def build(
        cls, psf: np.ndarray, sensor_shape: tuple[int, int], scene_shape: tuple[int, int] | None = None
    ) -> LenslessConvolution:
        """From a PSF ``(Hp, Wp)`` or ``(C, Hp, Wp)`` (non-negative; each channel normalised to sum 1).

        ``sensor_shape`` ``(H, W)`` pixels; ``scene_shape`` ``(Hs, Ws)`` >= the sensor (default: the sensor).
        """
        h = np.asarray(psf, np.float64)
        if h.ndim == 2:
            h = h[None]
        if h.ndim != 3 or min(h.shape) < 1:
            raise ValueError(f"psf has shape {np.shape(psf)}; give (Hp, Wp) or (C, Hp, Wp)")
        if not np.all(np.isfinite(h)) or np.any(h < 0):
            raise ValueError("psf must be finite and non-negative (an intensity PSF)")
        total = h.sum(axis=(-2, -1), keepdims=True)
        if np.any(total <= 0):
            raise ValueError("psf has a channel that sums to 0; give a measured intensity PSF")
        h = h / total
        sensor = (int(sensor_shape[0]), int(sensor_shape[1]))
        scene = sensor if scene_shape is None else (int(scene_shape[0]), int(scene_shape[1]))
        if scene[0] < sensor[0] or scene[1] < sensor[1]:
            raise ValueError(f"scene_shape={scene} must be at least the sensor_shape={sensor} along each axis")
        pad = (_fast_size(scene[0] + h.shape[1] - 1), _fast_size(scene[1] + h.shape[2] - 1))
        # sensor pixel i <- full-convolution index i + (Hs - H) // 2 + Hp // 2
        start = ((scene[0] - sensor[0]) // 2 + h.shape[1] // 2, (scene[1] - sensor[1]) // 2 + h.shape[2] // 2)
        psf_f = np.fft.rfft2(h, s=pad).astype(np.complex64)
        return cls(jnp.asarray(psf_f), scene, sensor, pad, start)

    @property
    def channels(self) -> int:
        """PSF channels (1: shared by every scene channel)."""
        return int(self.psf_f.shape[0])

    def __call__(self, scene: jax.Array) -> jax.Array:
        """``(…, C, Hs, Ws)`` -> sensor image ``(…, C, H, W)``."""
        spec = jnp.fft.rfft2(scene, s=self.pad_shape) * self.psf_f
        full = jnp.fft.irfft2(spec, s=self.pad_shape)
        y0, x0 = self.crop_start
        return full[..., y0 : y0 + self.sensor_shape[0], x0 : x0 + self.sensor_shape[1]]

    def adjoint(self, image: jax.Array) -> jax.Array:
        """The exact adjoint: sensor image ``(…, C, H, W)`` -> scene ``(…, C, Hs, Ws)``."""
        y0, x0 = self.crop_start
        lead = image.shape[:-2]
        full = jnp.zeros((*lead, *self.pad_shape), image.dtype)
        full = full.at[..., y0 : y0 + self.sensor_shape[0], x0 : x0 + self.sensor_shape[1]].set(image)
        spec = jnp.fft.rfft2(full) * jnp.conj(self.psf_f)
        back = jnp.fft.irfft2(spec, s=self.pad_shape)
        return back[..., : self.scene_shape[0], : self.scene_shape[1]]

    def lipschitz(self) -> float:
        """An upper bound of ``||A||²`` (max |PSF spectrum|²; 1 for a normalised PSF)."""
        return float(jnp.max(jnp.abs(self.psf_f)) ** 2)


def _hat_integral(u: np.ndarray) -> np.ndarray:
    """Antiderivative of the unit hat ``max(0, 1 - |u|)``, 0 at -inf, 1 at +inf."""
    u = np.clip(u, -1.0, 1.0)
    return np.where(u <= 0, 0.5 * (u + 1.0) ** 2, 1.0 - 0.5 * (1.0 - u) ** 2)


def hat_weights(open_s: np.ndarray, exposure_s: float, times_s: np.ndarray) -> np.ndarray:
    """Weights ``(R, J)`` of time points ``times_s`` (J,, evenly spaced) for rows opening at ``open_s`` (R,).

    ``w[r, j] = (1/E) ∫_{open_r}^{open_r + E} hat_j(t) dt``: the exact exposure average of a
    scene that is piecewise linear between the time points (each row's weights sum to 1 when
    its interval lies inside ``[times_s[0], times_s[-1]]``).
    """
    t = np.asarray(times_s, np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise ValueError("times_s must hold at least 2 evenly spaced time points")
    dt = float(t[1] - t[0])
    a = np.asarray(open_s, np.float64)[:, None]
    lo = (a - t[None]) / dt
    hi = (a + exposure_s - t[None]) / dt
    return (_hat_integral(hi) - _hat_integral(lo)) * dt / exposure_s


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["conv", "weights", "time_index", "block_rows"],
    meta_fields=["n_time", "channels"],
)
@dataclasses.dataclass(frozen=True)
class RollingShutterForward:
    """The rolling-shutter lensless camera as an NSTM forward model (:class:`nstm_acquire.nstm.fit.ForwardModel`).

    Attributes
    ----------
    conv
        The PSF convolution and sensor crop.
    weights
        ``(n_time, n_contrib, B)`` float32: weight of contributing time point ``c`` on row ``b``
        of block ``j`` (each row's weights sum to 1).
    time_index
        ``(n_time, n_contrib)`` int32: the time points (within a frame) contributing to block ``j``.
    block_rows
        ``(n_time, B)`` int32: sensor rows of block ``j``, in readout order.
    n_time
        Time points (and row blocks) per frame.
    channels
        Scene channels ``C`` (3 for RGB).
    """

    conv: LenslessConvolution
    weights: jax.Array
    time_index: jax.Array
    block_rows: jax.Array
    n_time: int
    channels: int = 3

    nonnegative = True
    channel_names = ("red", "green", "blue")

    @classmethod
    def build(
        cls,
        psf: np.ndarray,
        timing: RowTiming,
        n_cols: int,
        n_time: int,
        scene_shape: tuple[int, int] | None = None,
        channels: int = 3,
    ) -> RollingShutterForward:
        """The forward model of a sensor ``(timing.n_rows, n_cols)`` with ``n_time`` time points per frame.

        ``n_time`` must divide ``timing.n_rows`` (rows per block) and be >= 2.
        """
        n_rows = timing.n_rows
        if int(n_time) != n_time or n_time < 2 or n_rows % n_time:
            raise ValueError(
                f"n_time={n_time} must be an integer >= 2 dividing the {n_rows} sensor rows "
                "(time points per frame = row blocks per frame)"
            )
        if channels < 1:
            raise ValueError(f"channels={channels} must be >= 1 (3 for RGB)")
        conv = LenslessConvolution.build(psf, (n_rows, int(n_cols)), scene_shape)
        if conv.channels not in (1, channels):
            raise ValueError(f"psf has {conv.channels} channels; give 1 (shared) or {channels} (one per channel)")
        offsets = cls.time_offsets_s(timing, n_time)
        opened = timing.open_offsets_s()
        order = np.lexsort((np.arange(n_rows), opened))  # readout order, ties by row
        rows = order.reshape(n_time, n_rows // n_time)
        w_all = hat_weights(opened, timing.exposure_s, offsets)  # (R, J)
        w_blocks = w_all[rows]  # (J_block, B, J)
        reach = np.any(w_blocks > 1e-12, axis=1)  # (J_block, J)
        first = np.argmax(reach, axis=1)
        last = n_time - 1 - np.argmax(reach[:, ::-1], axis=1)
        n_contrib = int(np.max(last - first + 1))
        start = np.minimum(first, n_time - n_contrib)
        index = start[:, None] + np.arange(n_contrib)[None]
        weights = np.take_along_axis(w_blocks, index[:, None, :], axis=2)  # (J_block, B, n_contrib)
        if not np.allclose(weights.sum(axis=2), 1.0, atol=1e-6):
            raise AssertionError("row weights do not sum to 1: the time grid misses part of an exposure")
        return cls(
            conv,
            jnp.asarray(np.moveaxis(weights, 2, 1), jnp.float32),
            jnp.asarray(index, jnp.int32),
            jnp.asarray(rows, jnp.int32),
            int(n_time),
            int(channels),
        )

    @staticmethod
    def time_offsets_s(timing: RowTiming, n_time: int) -> np.ndarray:
        """``(n_time,)`` seconds after the frame start of the time points: first opening to last closing."""
        return np.linspace(0.0, timing.frame_span_s, int(n_time))

    def times_s(self, timing: RowTiming, frame_starts_s: np.ndarray) -> np.ndarray:
        """``(F * n_time,)`` seconds: the scene's time points for frames starting at ``frame_starts_s`` (F,)."""
        starts = np.asarray(frame_starts_s, np.float64).reshape(-1, 1)
        return (starts + self.time_offsets_s(timing, self.n_time)[None]).reshape(-1)

    @property
    def n_contrib(self) -> int:
        """Time points rendered for each row block."""
        return int(self.time_index.shape[1])

    @property
    def rows_per_block(self) -> int:
        return int(self.block_rows.shape[1])

    def frames_to_blocks(self, frames: np.ndarray) -> np.ndarray:
        """Sensor frames ``(F, C, H, W)`` -> measurements ``(F * n_time, C, B, W)`` (row blocks)."""
        f = np.asarray(frames)
        if f.ndim != 4 or f.shape[-2:] != self.conv.sensor_shape:
            raise ValueError(f"frames have shape {f.shape}; give (F, C, H, W) with (H, W) = {self.conv.sensor_shape}")
        rows = np.asarray(self.block_rows)
        g = f[:, :, rows, :]  # (F, C, J, B, W)
        return np.ascontiguousarray(np.moveaxis(g, 2, 1).reshape(-1, f.shape[1], rows.shape[1], f.shape[-1]))

    def blocks_to_frames(self, blocks: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`frames_to_blocks`: ``(F * n_time, C, B, W)`` -> ``(F, C, H, W)``."""
        b = np.asarray(blocks)
        rows = np.asarray(self.block_rows)
        nf = b.shape[0] // self.n_time
        g = np.moveaxis(b.reshape(nf, self.n_time, *b.shape[1:]), 1, 2)  # (F, C, J, B, W)
        out = np.empty((nf, b.shape[1], *self.conv.sensor_shape), b.dtype)
        out[:, :, rows, :] = g
        return out

    def render(self, scenes: jax.Array, shots: jax.Array | None = None) -> jax.Array:
        """Row blocks ``(K, C, B, W)`` of the scenes ``(K, C, Hs, Ws)`` at the ``K = F * n_time`` time points.

        ``shots`` is not needed (the block of measurement ``k`` is ``k mod n_time``): the
        scenes must be every time point of whole frames, frame major.
        """
        k, c = scenes.shape[0], scenes.shape[1]
        if k % self.n_time:
            raise ValueError(f"{k} scenes are not whole frames of n_time={self.n_time} time points")
        nf = k // self.n_time
        sensor = self.conv(scenes)  # (K, C, H, W): every time point convolved once
        stack = jnp.moveaxis(sensor.reshape(nf, self.n_time, c, *sensor.shape[-2:]), (1, 3), (0, 1))
        # stack: (n_time, H, F, C, W); gather each block's rows from its contributing time points only
        out = jnp.zeros((self.n_time, self.rows_per_block, nf, c, sensor.shape[-1]), sensor.dtype)
        for i in range(self.n_contrib):
            g = stack[self.time_index[:, i][:, None], self.block_rows]  # (n_time, B, F, C, W)
            out = out + self.weights[:, i, :, None, None, None] * g
        return jnp.moveaxis(out, (0, 1), (1, 3)).reshape(k, c, self.rows_per_block, sensor.shape[-1])
