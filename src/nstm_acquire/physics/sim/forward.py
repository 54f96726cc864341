"""SIM forward models for the NSTM: every shot rendered in real space at its own time.

No band separation, so no static-sample assumption: the fluorescence density on the output grid
(``upsample`` x finer than the camera, pixel (0, 0) centred on camera pixel (0, 0)) is
multiplied by the shot's illumination pattern, blurred by the detection OTF (times the camera
pixel's integration, a sinc), and sampled at the camera pixels. Sampling every ``u``-th fine
pixel is done exactly in Fourier space: the fine spectrum's ``u x u`` aliases are summed onto
the camera's frequency grid (what real-space subsampling does), then one small inverse FFT.

* :class:`Sim2DForward`: scenes ``(K, 1, Yf, Xf)`` -> camera images ``(K, Y, X)``.
* :class:`Sim3DForward` (three-beam): scenes ``(K, 1, Z, Yf, Xf)``, one volume per
  (orientation, phase) shot rendered at one time (the 3D speed-up: 15 renders per time point
  whatever the number of planes) -> the shot's z stack ``(K, Z, Y, X)``. The pattern is fixed
  to the focal plane, so each order's term is a 3D convolution with ``PSF(r, u) cos(2π kz_m u)``
  (``u`` the defocus): its OTF is the widefield 3D OTF shifted by ``±kz_m`` along the axial
  frequency (:mod:`nstm_acquire.physics.sim.otf`).

Patterns follow docs/conventions.md (2D: ``1 + m cos(2π k·r + ψ)``; 3D: order m at ``m k/2``
with phase ``m ψ``). Arrays are float32/complex64; everything in ``render`` is JAX.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nstm_acquire.physics.sim.illumination import SimIllumination, pattern_orders

__all__ = ["Sim2DForward", "Sim3DForward", "fold_spectrum", "lateral_order_fields", "sim_patterns_2d"]


def fold_spectrum(spectrum: jax.Array, upsample: int) -> jax.Array:
    """DFT of ``f[..., ::u, ::u]`` from the DFT of ``f`` (last two axes): the sum of aliases / u².

    For a fine grid of ``u N`` samples, subsampling gives ``G[k] = (1/u) Σ_j F[k + j N]``
    along each axis.
    """
    if upsample == 1:
        return spectrum
    *lead, ny, nx = spectrum.shape
    u = upsample
    s = spectrum.reshape(*lead, u, ny // u, u, nx // u)
    return s.sum(axis=(-4, -2)) / (u * u)


def sim_patterns_2d(ill: SimIllumination, fine_shape: tuple[int, int], fine_pixel_um: float) -> np.ndarray:
    """Illumination of every shot on the fine grid, ``(S, Yf, Xf)`` float32 (mean 1)."""
    y = np.arange(fine_shape[0])[:, None] * fine_pixel_um
    x = np.arange(fine_shape[1])[None, :] * fine_pixel_um
    out = np.empty((ill.n_shots, *fine_shape), np.float32)
    for s in range(ill.n_shots):
        total = np.zeros(fine_shape)
        for term in pattern_orders(ill, s):
            ky, kx = term.k_per_um
            total = total + term.amplitude * np.cos(2 * np.pi * (ky * y + kx * x) + term.phase_rad)
        out[s] = total
    return out


def lateral_order_fields(
    ill: SimIllumination, fine_shape: tuple[int, int], fine_pixel_um: float, immersion_index: float
) -> np.ndarray:
    """Three-beam lateral patterns ``(S, 2, Yf, Xf)`` float32, grouped by axial transfer.

    Order ``m``'s lateral pattern is ``a_m cos(2π m k/2·r + m ψ_s)`` (order 0: 1). Orders 0 and 2
    share the widefield 3D transfer and are summed into group 0; order 1 (axially modulated, its
    own transfer) is group 1. The stack is ``Σ_g T_g ⊛ (ρ · group_g)`` with the real, even
    transfers ``T_g`` (:func:`nstm_acquire.physics.sim.otf.three_beam_order_otfs`).
    """
    y = np.arange(fine_shape[0])[:, None] * fine_pixel_um
    x = np.arange(fine_shape[1])[None, :] * fine_pixel_um
    out = np.zeros((ill.n_shots, 2, *fine_shape), np.float64)
    for s in range(ill.n_shots):
        for term in pattern_orders(ill, s, immersion_index):
            ky, kx = term.k_per_um
            group = 1 if term.order == 1 else 0
            out[s, group] += term.amplitude * np.cos(2 * np.pi * (ky * y + kx * x) + term.phase_rad)
    return out.astype(np.float32)


def axial_dft_matrices(n_planes: int, z_pad: int) -> tuple[np.ndarray, np.ndarray]:
    """DFT over a stack of ``n_planes`` zero-padded by ``z_pad`` planes each side, as matrices.

    Returns ``(forward (P, Z), inverse (Z, P))`` complex64 with ``P = Z + 2 z_pad``: plane ``i``
    sits at padded position ``i + z_pad``; ``forward @ x`` is the padded stack's FFT over z and
    ``inverse @ X`` the inverse FFT read back at the stack's planes only (the crop). With a few
    planes these small products are cheaper than FFTs of the padded stack.
    """
    p = n_planes + 2 * z_pad
    f = np.fft.fftfreq(p, d=1.0 / p)[:, None]  # integer frequencies
    pos = (np.arange(n_planes) + z_pad)[None, :]
    forward = np.exp(-2j * np.pi * f * pos / p)
    return forward.astype(np.complex64), (forward.conj().T / p).astype(np.complex64)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["patterns", "transfer"], meta_fields=["upsample"])
@dataclasses.dataclass(frozen=True)
class Sim2DForward:
    """2D SIM: ``patterns`` ``(S, Yf, Xf)``; ``transfer`` ``(Yf, Xf)`` = OTF x pixel transfer (FFT
    order; real from the optics, complex from a measured PSF)."""

    patterns: jax.Array
    transfer: jax.Array
    upsample: int

    channels = 1
    channel_names = ("density",)
    nonnegative = True

    def render(self, scenes: jax.Array, shots: jax.Array) -> jax.Array:
        emission = scenes[:, 0] * self.patterns[shots]
        return self._camera(emission)

    def widefield(self, scene: jax.Array) -> jax.Array:
        """Camera image of ``scene`` ``(Yf, Xf)`` under uniform illumination ``(Y, X)``."""
        return self._camera(scene)

    def _camera(self, emission: jax.Array) -> jax.Array:
        # a camera pixel collects the emission of its u x u fine pixels: photons per unit density
        spectrum = jnp.fft.fft2(emission) * self.transfer
        folded = fold_spectrum(spectrum, self.upsample) * (self.upsample**2)
        return jnp.real(jnp.fft.ifft2(folded))


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["fields", "transfer", "z_forward", "z_inverse"],
    meta_fields=["upsample"],
)
@dataclasses.dataclass(frozen=True)
class Sim3DForward:
    """Three-beam 3D SIM, every (orientation, phase) stack rendered as one volume.

    ``fields`` ``(S, 2, Yf, Xf)`` real lateral patterns of the two transfer groups
    (:func:`lateral_order_fields`); ``transfer`` ``(2, P, Yf, Xf // 2 + 1)`` the groups' 3D
    transfers (real from the optics, complex from a measured PSF) on the z-padded stack (``P = Z + 2 z_pad`` planes; axial frequency first, FFT
    order, lateral half spectrum of ``rfft2``; camera pixel transfer included);
    ``z_forward``/``z_inverse``: :func:`axial_dft_matrices`. Build with :meth:`create`.

    The stack is padded with empty planes before the axial transform and cropped after, so
    light from one end of the stack does not wrap round to the other: with ``z_pad >= Z / 2``
    the axial convolution is the linear one for a sample inside the stack (the simulated
    microscope's image formation); fluorescence outside the acquired stack is taken as zero.
    The lateral transforms are real (``rfft2``) and run on the ``Z`` acquired planes only; the
    axial ones are small matrix products.
    """

    fields: jax.Array
    transfer: jax.Array
    z_forward: jax.Array
    z_inverse: jax.Array
    upsample: int

    channels = 1
    channel_names = ("density",)
    nonnegative = True

    @classmethod
    def create(cls, fields: np.ndarray, otf: np.ndarray, upsample: int, n_planes: int) -> Sim3DForward:
        """From full transfers ``otf`` ``(2, P, Yf, Xf)`` on the padded stack (``P - n_planes``
        even: the padding is split equally above and below)."""
        otf = np.asarray(otf)
        pad2 = otf.shape[1] - int(n_planes)
        if pad2 < 0 or pad2 % 2:
            raise ValueError(f"otf has {otf.shape[1]} planes; need n_planes={n_planes} plus an even padding")
        forward, inverse = axial_dft_matrices(int(n_planes), pad2 // 2)
        half = otf[..., : otf.shape[-1] // 2 + 1]
        return cls(
            jnp.asarray(fields, jnp.float32),
            jnp.asarray(half, jnp.complex64 if np.iscomplexobj(half) else jnp.float32),
            jnp.asarray(forward),
            jnp.asarray(inverse),
            int(upsample),
        )

    def render(self, scenes: jax.Array, shots: jax.Array) -> jax.Array:
        rho = scenes[:, 0]  # (K, Z, Yf, Xf)
        u = self.upsample
        emission = rho[:, None] * self.fields[shots][:, :, None]  # (K, 2, Z, Yf, Xf) real
        lateral = jnp.fft.rfft2(emission)  # (K, 2, Z, Yf, Xh)
        spectrum = jnp.einsum("pz,kgzyx->kgpyx", self.z_forward, lateral)  # padded stack's axial DFT
        total = jnp.sum(spectrum * self.transfer[None], axis=1)  # (K, P, Yf, Xh)
        planes = jnp.einsum("zp,kpyx->kzyx", self.z_inverse, total)  # (K, Z, Yf, Xh): inverse, cropped
        k, z, yf, xh = planes.shape
        ny = yf // u
        folded = planes.reshape(k, z, u, ny, xh).sum(axis=2) / u  # DFT of every u-th row
        fine_x = jnp.fft.irfft2(folded, s=(ny, self.fields.shape[-1]))  # (K, Z, Y, Xf)
        return fine_x[..., ::u] * (u * u)  # every u-th column; a camera pixel collects u x u
