"""DPC forward model: weak-object transfer functions, linear rendering, Tikhonov reconstruction.

Conventions (``docs/conventions.md``): object ``t = exp(-mu + i*phi)``; an LED at illumination
NA ``na_j`` sits at ``u_j = na_j / λ`` (cycles/µm) and the exact coherent image under it is
``|ifft2(T(u) P(u + u_j))|²`` with numpy's FFT. A shot is the brightness-weighted sum over its lit
LEDs; its normalised image is ``image / background - 1``.

Linearising ``t ≈ 1 + ε`` with ``ε = -mu + i*phi`` (first order in mu and phi), the coherent
field under LED j is ``P(u_j) + ifft2(E(u) P(u + u_j))`` (``E = fft2(ε)``), and the image gains
``2 Re[conj(P(u_j)) ifft2(E P_j)]``. With ``C(u) = Σ_j b_j conj(P(u_j)) P(u + u_j)`` and the DC
``B = Σ_j b_j |P(u_j)|²``, the spectrum of the normalised image is
``H_mu(u) M(u) + H_phi(u) Φ(u)`` (``M = fft2(mu)``, ``Φ = fft2(phi)``) with::

    H_mu(u)  = -(C(u) + conj C(-u)) / B      (real, even for a real pupil; H_mu(0) = -2)
    H_phi(u) = i (C(u) - conj C(-u)) / B     (imaginary, odd for a real pupil; H_phi(0) = 0)

Both are Hermitian, ``H(-u) = conj H(u)``: their real-space kernels are real, so real mu and phi
give a real image. ``H_phi / i`` is the anti-Hermitian part of ``C / B``. Here ``-u`` is taken on
the discrete FFT grid (index ``-k mod n``), which makes these the exact derivative of the
sampled exact model in :mod:`nstm_acquire.hardware.simulated.dpc_imaging`.

Transfer functions are built once in numpy; :func:`dpc_render` and :func:`dpc_tikhonov` are
``jax.numpy`` and traceable (``jit``, ``grad``, ``vmap``).

Rolling shutter (row-exact timing, ``docs/model.md``): a sCMOS in rolling-shutter mode exposes
each row over its own interval, so one shot's rows see the moving sample at different times.
:func:`dpc_render_row_blocks` predicts such a frame from the scene at a few times per shot:
the rows are split into blocks of consecutive readout slots, and each block of rows is taken
from the render of the scene at that block's time. In an NSTM fit the same model is a data
layout (``nstm_acquire.recon.row_timing``): one measurement row per (shot, block), rendered by
:class:`DpcForward` at the block's time, with the block's rows as loss weights.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nstm_acquire.physics.dpc.illumination import DpcIllumination, led_pupils
from nstm_acquire.physics.optics import Optics

__all__ = [
    "dpc_transfer_functions",
    "dpc_transfer_functions_for",
    "dpc_render",
    "dpc_render_row_blocks",
    "row_block_masks",
    "dpc_normalise",
    "dpc_tikhonov",
    "dpc_regulariser",
    "DpcForward",
]


def _flip_frequencies(a: np.ndarray) -> np.ndarray:
    """``a(-u)`` on the FFT grid: index ``k -> -k mod n`` along the last two axes."""
    return np.roll(np.flip(a, axis=(-2, -1)), shift=(1, 1), axis=(-2, -1))


def dpc_transfer_functions(
    shape: tuple[int, int],
    optics: Optics,
    led_na: np.ndarray | Sequence[Sequence[float]],
    shots: Sequence[Sequence[int]],
    led_brightness: np.ndarray | Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weak-object transfer functions of absorption and phase for every shot.

    The source of a shot is a sum of delta functions at ``u_j = na_j / λ`` weighted by the LED
    brightness; the pupil is ``optics``' binary circular pupil evaluated at the off-grid
    shifted frequencies ``u + u_j``. The result is normalised by the shot's DC, so it predicts
    the normalised image ``image / background - 1`` (see the module docstring).

    Parameters
    ----------
    shape
        ``(Y, X)`` image size in pixels (pixel ``optics.pixel_size_um``, µm).
    optics
        Wavelength (µm), detection NA, pixel size (µm).
    led_na
        ``(N, 2)`` illumination NA ``[na_y, na_x]`` of every LED of the array.
    shots
        For every shot, the indices into ``led_na`` of its lit LEDs.
    led_brightness
        ``(N,)`` relative brightness per LED (default 1).

    Returns
    -------
    H_mu, H_phi
        complex64 arrays ``(S, Y, X)`` in FFT order (frequency in cycles/µm from
        :func:`nstm_acquire.physics.optics.frequency_grid`).

    Raises
    ------
    ValueError
        If a shot lights no brightfield LED (it has no background to normalise by).
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape={shape} must be (Y, X) with positive sizes")
    illumination = DpcIllumination.model_validate(
        {
            "led_na": [
                tuple(map(float, row)) for row in np.asarray(led_na, dtype=np.float64).reshape(-1, 2)
            ],
            "shots": [tuple(int(i) for i in lit) for lit in shots],
            "led_brightness": None if led_brightness is None else [float(b) for b in led_brightness],
        }
    )
    na_all = illumination.led_na_array()
    brightness_all = illumination.brightness_array()
    h_mu = np.empty((illumination.n_shots, *shape), dtype=np.complex64)
    h_phi = np.empty_like(h_mu)
    for s, lit in enumerate(illumination.shots):
        idx = np.asarray(lit, dtype=np.int64)
        na, b = na_all[idx], brightness_all[idx]
        p_at_led = (np.sum(na**2, axis=1) < optics.na_detection**2).astype(np.float64)  # P(u_j)
        dc = float(np.sum(b * p_at_led**2))
        if dc <= 0:
            raise ValueError(
                f"shots[{s}] lights no brightfield LED (all |na| >= na_detection="
                f"{optics.na_detection}); a DPC shot needs brightfield LEDs"
            )
        weights = b * p_at_led  # b_j conj(P(u_j)); dark-field LEDs drop out at first order
        c = np.zeros(shape, dtype=np.float64)  # C(u)
        for j in np.flatnonzero(weights > 0):
            c += weights[j] * led_pupils(shape, optics, na[j : j + 1])[0]
        c_neg = np.conj(_flip_frequencies(c))  # conj C(-u)
        h_mu[s] = -(c + c_neg) / dc
        h_phi[s] = 1j * (c - c_neg) / dc
    return h_mu, h_phi


def dpc_transfer_functions_for(
    shape: tuple[int, int], optics: Optics, illumination: DpcIllumination
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dpc_transfer_functions` for a store's :class:`DpcIllumination`."""
    return dpc_transfer_functions(
        shape, optics, illumination.led_na_array(), illumination.shots, illumination.led_brightness
    )


def dpc_render(
    mu: jnp.ndarray, phi: jnp.ndarray, H_mu: jnp.ndarray, H_phi: jnp.ndarray
) -> jnp.ndarray:
    """Normalised DPC images predicted by the weak-object (linear) model.

    ``image_s = ifft2(H_mu[s] fft2(mu) + H_phi[s] fft2(phi))``, computed with one complex FFT
    of ``mu + i*phi`` and one inverse FFT per shot as
    ``Re ifft2(fft2(mu + i*phi) (H_mu - i H_phi))``, which is exact when both transfer
    functions are Hermitian (real kernels), as :func:`dpc_transfer_functions` returns.

    Parameters
    ----------
    mu, phi
        Absorption and phase (rad), ``(Y, X)`` or ``(K, Y, X)``; a stack pairs with the shots
        (``K == S``, or either is 1).
    H_mu, H_phi
        ``(S, Y, X)`` or ``(Y, X)`` transfer functions from :func:`dpc_transfer_functions`.

    Returns
    -------
    jnp.ndarray
        Real normalised images (``image / background - 1``), shape the broadcast of the leading
        axes followed by ``(Y, X)``.
    """
    mu = jnp.asarray(mu)
    phi = jnp.asarray(phi)
    if mu.shape != phi.shape or mu.ndim not in (2, 3):
        raise ValueError(
            f"mu and phi must share a (Y, X) or (K, Y, X) shape, got {mu.shape}, {phi.shape}"
        )
    if H_mu.shape != H_phi.shape or H_mu.shape[-2:] != mu.shape[-2:]:
        raise ValueError(
            f"H_mu {H_mu.shape} and H_phi {H_phi.shape} must match each other and end in the image "
            f"shape {mu.shape[-2:]}"
        )
    spectrum = jnp.fft.fft2(_complex(mu, phi))
    combined = jnp.asarray(H_mu) - 1j * jnp.asarray(H_phi)
    return jnp.real(jnp.fft.ifft2(spectrum * combined))


def row_block_masks(block_of_row: np.ndarray | Sequence[int], n_blocks: int) -> np.ndarray:
    """``(B, Y)`` float32 one-hot masks: ``masks[b, y] = 1`` where sensor row ``y`` belongs to
    block ``b`` (``block_of_row`` ``(Y,)`` ints in ``[0, n_blocks)``)."""
    rows = np.asarray(block_of_row)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"block_of_row must be (Y,) integers, got {rows.dtype} {rows.shape}")
    if int(n_blocks) < 1 or rows.min() < 0 or rows.max() >= int(n_blocks):
        raise ValueError(
            f"block_of_row has values {rows.min()}..{rows.max()}; give block indices in [0, n_blocks={n_blocks})"
        )
    return (rows[None, :] == np.arange(int(n_blocks))[:, None]).astype(np.float32)


def dpc_render_row_blocks(
    mu: jnp.ndarray,
    phi: jnp.ndarray,
    H_mu: jnp.ndarray,
    H_phi: jnp.ndarray,
    block_of_row: np.ndarray | Sequence[int],
) -> jnp.ndarray:
    """Row-exact normalised DPC frames of rolling-shutter shots from each shot's scene at B times.

    Row ``y`` of shot ``s`` is row ``y`` of :func:`dpc_render` of the scene
    ``(mu[s, b], phi[s, b])`` with ``b = block_of_row[y]``: every block of sensor rows sees the
    sample at its own time. With one block (or a static scene) this is :func:`dpc_render`.

    Parameters
    ----------
    mu, phi
        ``(S, B, Y, X)`` absorption and phase (rad) of every shot at its B block times.
    H_mu, H_phi
        ``(S, Y, X)`` transfer functions of the shots (:func:`dpc_transfer_functions`).
    block_of_row
        ``(Y,)`` int: the block (time) of every sensor row, values in ``[0, B)``.

    Returns
    -------
    jnp.ndarray
        ``(S, Y, X)`` real normalised images (``image / background - 1``).
    """
    mu = jnp.asarray(mu)
    phi = jnp.asarray(phi)
    if mu.ndim != 4 or mu.shape != phi.shape:
        raise ValueError(f"mu and phi must share an (S, B, Y, X) shape, got {mu.shape}, {phi.shape}")
    s, b, ny, nx = mu.shape
    if H_mu.shape != (s, ny, nx) or H_phi.shape != H_mu.shape:
        raise ValueError(f"H_mu {H_mu.shape} and H_phi {H_phi.shape} must be (S, Y, X) = {(s, ny, nx)}")
    if np.shape(block_of_row) != (ny,):
        raise ValueError(f"block_of_row has shape {np.shape(block_of_row)}; give one block per row ({ny},)")
    masks = jnp.asarray(row_block_masks(block_of_row, b))  # (B, Y)
    frames = dpc_render(
        mu.reshape(s * b, ny, nx),
        phi.reshape(s * b, ny, nx),
        jnp.repeat(jnp.asarray(H_mu), b, axis=0),
        jnp.repeat(jnp.asarray(H_phi), b, axis=0),
    ).reshape(s, b, ny, nx)
    return jnp.sum(frames * masks[None, :, :, None], axis=1)


def _complex(real: jnp.ndarray, imag: jnp.ndarray) -> jnp.ndarray:
    """``real + i*imag`` as a complex JAX array (complex64 unless x64 is enabled)."""
    return jnp.asarray(real) + 1j * jnp.asarray(imag)


def dpc_normalise(
    raw: np.ndarray, background: np.ndarray | None = None, offset_adu: float = 0.0
) -> np.ndarray:
    """Normalised DPC images ``(raw - offset) / (background - offset) - 1``.

    Parameters
    ----------
    raw
        ``(S, Y, X)`` (or ``(Y, X)``) frames in camera counts (ADU), any real dtype.
    background
        Frames of the empty field, broadcastable to ``raw`` (``(S, Y, X)`` per shot); ``None``
        divides each frame by its own mean instead (good when the sample is sparse or weak).
    offset_adu
        Camera dark offset subtracted from raw and background first (``camera.offset_adu``).

    Returns
    -------
    np.ndarray
        float32 array, shape of ``raw``.
    """
    raw_f = np.asarray(raw, dtype=np.float64) - float(offset_adu)
    if raw_f.ndim not in (2, 3):
        raise ValueError(f"raw must be (S, Y, X) or (Y, X), got shape {raw_f.shape}")
    if background is None:
        mean = raw_f.mean(axis=(-2, -1), keepdims=True)
        if np.any(mean <= 0):
            raise ValueError(
                "a raw frame has mean <= offset_adu; check offset_adu or that the LEDs were on"
            )
        return (raw_f / mean - 1.0).astype(np.float32)
    bg = np.asarray(background, dtype=np.float64) - float(offset_adu)
    try:
        np.broadcast_shapes(bg.shape, raw_f.shape)
    except ValueError as exc:
        raise ValueError(
            f"background shape {bg.shape} does not broadcast to raw shape {raw_f.shape}; "
            "give (S, Y, X)"
        ) from exc
    if np.any(bg <= 0):
        raise ValueError(
            "background - offset_adu has pixels <= 0; check offset_adu and that the background "
            "frames were taken with the LEDs on"
        )
    return (raw_f / bg - 1.0).astype(np.float32)


def dpc_tikhonov(
    normalised: jnp.ndarray,
    H_mu: jnp.ndarray,
    H_phi: jnp.ndarray,
    reg_mu: float = 1e-4,
    reg_phi: float = 1e-4,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Closed-form Tikhonov DPC reconstruction of absorption and phase.

    At every frequency ``u``, minimises
    ``Σ_s |H_mu[s] M + H_phi[s] Φ - Y_s|² + reg_mu |M|² + reg_phi |Φ|²`` with
    ``Y_s = fft2(normalised[s])``, by solving the 2x2 normal equations.

    Parameters
    ----------
    normalised
        ``(S, Y, X)`` normalised images (``image / background - 1``, :func:`dpc_normalise`).
    H_mu, H_phi
        ``(S, Y, X)`` transfer functions of the same shots.
    reg_mu, reg_phi
        Tikhonov weights (> 0), relative to ``|H|²`` which is O(1).

    Returns
    -------
    mu, phi
        Real ``(Y, X)`` absorption and phase (rad). Frequencies DPC does not see (the phase at
        DC, everything beyond ``2 NA / λ``) come out zero.
    """
    for name, value in (("reg_mu", reg_mu), ("reg_phi", reg_phi)):
        if isinstance(value, (int, float)) and not value > 0:
            raise ValueError(f"{name}={value} must be > 0 (the 2x2 system is singular without it)")
    normalised = jnp.asarray(normalised)
    if normalised.ndim != 3 or normalised.shape != H_mu.shape or H_mu.shape != H_phi.shape:
        raise ValueError(
            f"normalised {normalised.shape}, H_mu {H_mu.shape} and H_phi {H_phi.shape} must all be "
            "(S, Y, X) with the same shape"
        )
    H_mu = jnp.asarray(H_mu)
    H_phi = jnp.asarray(H_phi)
    data = jnp.fft.fft2(normalised)
    a = jnp.sum(jnp.abs(H_mu) ** 2, axis=0) + reg_mu
    d = jnp.sum(jnp.abs(H_phi) ** 2, axis=0) + reg_phi
    b = jnp.sum(jnp.conj(H_mu) * H_phi, axis=0)
    y_mu = jnp.sum(jnp.conj(H_mu) * data, axis=0)
    y_phi = jnp.sum(jnp.conj(H_phi) * data, axis=0)
    det = a * d - jnp.abs(b) ** 2
    mu_spectrum = (d * y_mu - b * y_phi) / det
    phi_spectrum = (a * y_phi - jnp.conj(b) * y_mu) / det
    return jnp.real(jnp.fft.ifft2(mu_spectrum)), jnp.real(jnp.fft.ifft2(phi_spectrum))


def dpc_regulariser(
    mu: jnp.ndarray, phi: jnp.ndarray, reg_mu: float = 1e-4, reg_phi: float = 1e-4
) -> jnp.ndarray:
    """The Tikhonov penalty in real space, matching :func:`dpc_tikhonov` under Parseval.

    ``(reg_mu Σ mu² + reg_phi Σ phi²)`` summed over pixels (and any leading axes). Adding it
    to ``Σ_s Σ_pixels (dpc_render(...) - normalised)²`` gives a loss whose minimiser for a
    static scene is the :func:`dpc_tikhonov` solution.
    """
    return reg_mu * jnp.sum(jnp.square(mu)) + reg_phi * jnp.sum(jnp.square(phi))


@functools.partial(jax.tree_util.register_dataclass, data_fields=["h_mu", "h_phi"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class DpcForward:
    """The DPC forward model for the NSTM (:class:`nstm_acquire.nstm.fit.ForwardModel`).

    Scenes are ``(K, 2, Y, X)``: channel 0 absorption ``mu``, channel 1 phase ``phi`` (rad),
    each at its shot's time; ``render`` returns the normalised images ``(K, Y, X)`` of the
    shots ``shots`` (K,) through their transfer functions ``h_mu``/``h_phi`` ``(S, Y, X)``.
    """

    h_mu: jnp.ndarray
    h_phi: jnp.ndarray

    channels = 2
    channel_names = ("absorption", "phase_rad")

    @classmethod
    def for_illumination(cls, shape: tuple[int, int], optics: Optics, illumination: DpcIllumination) -> DpcForward:
        h_mu, h_phi = dpc_transfer_functions_for(shape, optics, illumination)
        return cls(jnp.asarray(h_mu), jnp.asarray(h_phi))

    def render(self, scenes: jnp.ndarray, shots: jnp.ndarray) -> jnp.ndarray:
        return dpc_render(scenes[:, 0], scenes[:, 1], self.h_mu[shots], self.h_phi[shots])

    def conventional(self, normalised: jnp.ndarray, reg: float = 1e-4) -> jnp.ndarray:
        """Tikhonov reconstruction of all shots ``(S, Y, X)`` -> ``(2, Y, X)`` (mu, phi)."""
        mu, phi = dpc_tikhonov(normalised, self.h_mu, self.h_phi, reg, reg)
        return jnp.stack([mu, phi])
