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
  frequency (:mod:`nstm_acquire.forward.sim_otf`).

Patterns follow docs/conventions.md (2D: ``1 + m cos(2π k·r + ψ)``; 3D: order m at ``m k/2``
with phase ``m ψ``). Arrays are float32/complex64; everything in ``render`` is JAX.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nstm_acquire.sim_illumination import SimIllumination, pattern_orders

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
    """Three-beam lateral factors ``(S, 2, Yf, Xf)`` complex64, grouped by axial transfer.

    Order ``m``'s lateral factor is ``a_m exp(i (2π m k/2·r + m ψ_s))`` (order 0: 1); its real
    part is the pattern's ``a_m cos(...)``. Orders 0 and 2 share the widefield 3D transfer and
    are summed into group 0; order 1 (axially modulated, its own transfer) is group 1. Since
    the transfers are those of real PSFs, ``Re ifftn(Σ_g OTF_g fftn(ρ field_g))`` is the stack.
    """
    y = np.arange(fine_shape[0])[:, None] * fine_pixel_um
    x = np.arange(fine_shape[1])[None, :] * fine_pixel_um
    out = np.zeros((ill.n_shots, 2, *fine_shape), np.complex64)
    for s in range(ill.n_shots):
        for term in pattern_orders(ill, s, immersion_index):
            ky, kx = term.k_per_um
            group = 1 if term.order == 1 else 0
            out[s, group] += term.amplitude * np.exp(1j * (2 * np.pi * (ky * y + kx * x) + term.phase_rad))
    return out


@functools.partial(jax.tree_util.register_dataclass, data_fields=["patterns", "transfer"], meta_fields=["upsample"])
@dataclasses.dataclass(frozen=True)
class Sim2DForward:
    """2D SIM: ``patterns`` ``(S, Yf, Xf)``; ``transfer`` ``(Yf, Xf)`` = OTF x pixel transfer (FFT order)."""

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
    jax.tree_util.register_dataclass, data_fields=["orders", "otf"], meta_fields=["upsample", "z_pad"]
)
@dataclasses.dataclass(frozen=True)
class Sim3DForward:
    """Three-beam 3D SIM: ``orders`` ``(S, 2, Yf, Xf)`` complex (:func:`lateral_order_fields`);
    ``otf`` ``(2, Z + 2 z_pad, Yf, Xf)`` real: the widefield 3D transfer (orders 0 and 2) and
    order 1's, axial frequency first, FFT order, camera pixel transfer included
    (:func:`nstm_acquire.forward.sim_otf.three_beam_order_otfs`, unnormalised).

    ``z_pad`` empty planes are added above and below the stack before the axial FFT and the
    rendered stack is cropped back, so light from one end of the stack does not wrap round to
    the other: with ``z_pad >= Z / 2`` the axial convolution is exactly the linear one for a
    sample inside the stack (the simulated microscope's image formation). The fluorescence
    outside the acquired stack is taken as zero.
    """

    orders: jax.Array
    otf: jax.Array
    upsample: int
    z_pad: int = 0

    channels = 1
    channel_names = ("density",)
    nonnegative = True

    def render(self, scenes: jax.Array, shots: jax.Array) -> jax.Array:
        rho = scenes[:, 0]  # (K, Z, Yf, Xf)
        p = self.z_pad
        if p:
            rho = jnp.pad(rho, ((0, 0), (p, p), (0, 0), (0, 0)))
        fields = self.orders[shots]  # (K, 2, Yf, Xf)
        emission = rho[:, None] * fields[:, :, None]  # (K, 2, Z + 2p, Yf, Xf)
        spectrum = jnp.fft.fftn(emission, axes=(-3, -2, -1))
        total = jnp.sum(spectrum * self.otf[None], axis=1)  # (K, Z + 2p, Yf, Xf)
        folded = fold_spectrum(total, self.upsample) * (self.upsample**2)  # pixel collects u x u
        stack = jnp.real(jnp.fft.ifftn(folded, axes=(-3, -2, -1)))
        return stack[:, p : stack.shape[1] - p] if p else stack
