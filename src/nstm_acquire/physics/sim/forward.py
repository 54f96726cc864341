"""SIM forward models for the NSTM: every shot rendered in real space at its own time.

No band separation, so no static-sample assumption: the fluorescence density on the output grid
(``upsample`` x finer than the camera, pixel (0, 0) centred on camera pixel (0, 0)) is
multiplied by the shot's illumination pattern, blurred by the detection OTF (times the camera
pixel's integration, a sinc), and sampled at the camera pixels. Sampling every ``u``-th fine
pixel is done exactly in Fourier space: the fine spectrum's ``u x u`` aliases are summed onto
the camera's frequency grid (what real-space subsampling does), then one small inverse FFT.

* :class:`Sim2DForward`: scenes ``(K, 1, Yf, Xf)`` -> camera images ``(K, Y, X)``.
* :class:`Sim3DForward` (three-beam): scenes ``(K, 1, Z, Yf, Xf)``, one volume per
  (orientation, phase) shot rendered at one time -> the shot's z stack ``(K, Z, Y, X)``.
* :class:`Sim3DFramesForward` (three-beam, what the NSTM fits): every acquired frame (shot,
  plane) predicted from the volume of its time bin -- frames taken close together in time
  share one volume, whatever the plane order (:func:`frame_time_bins`, docs/model.md) ->
  ``(K, M, Y, X)``, the M frames of each bin. The pattern is fixed
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

__all__ = [
    "Sim2DForward",
    "Sim3DForward",
    "Sim3DFramesForward",
    "fold_spectrum",
    "frame_time_bins",
    "lateral_order_fields",
    "sim_patterns_2d",
    "transfer_within_camera_band",
]


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


def _camera_pixels(half_spectra: jax.Array, upsample: int, fine_width: int) -> jax.Array:
    """Camera frames ``(K, N, Y, X)`` from fine-grid ``rfft2`` half spectra ``(K, N, Yf, Xh)``.

    Every ``u``-th fine row is taken in Fourier space (the row aliases summed), every ``u``-th
    column after the inverse transform; a camera pixel collects ``u x u`` fine pixels.
    """
    u = upsample
    k, n, yf, xh = half_spectra.shape
    ny = yf // u
    folded = half_spectra.reshape(k, n, u, ny, xh).sum(axis=2) / u  # DFT of every u-th row
    fine_x = jnp.fft.irfft2(folded, s=(ny, fine_width))  # (K, N, Y, Xf)
    return fine_x[..., ::u] * (u * u)


def _camera_band(half_spectra: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """The camera's half spectrum ``(..., Y, X // 2 + 1)`` cut from a fine-grid ``rfft2`` half
    spectrum ``(..., Yf, Xf // 2 + 1)``: its rows and columns of frequencies below the camera's
    Nyquist (FFT order). Where the transfer vanishes beyond that, nothing else reaches the camera."""
    ny, nx = shape
    yf = half_spectra.shape[-2]
    pos, neg = (ny + 1) // 2, ny // 2  # camera rows of frequencies >= 0 and < 0
    rows = jnp.concatenate([half_spectra[..., :pos, :], half_spectra[..., yf - neg :, :]], axis=-2)
    return rows[..., : nx // 2 + 1]


def _lateral_spectra(emission: jax.Array, upsample: int, band_limited: bool) -> jax.Array:
    """``rfft2`` of fine-grid images ``(..., Yf, Xf)``; cut to the camera's band
    ``(..., Y, X // 2 + 1)`` when the transfer is ``band_limited``."""
    half = jnp.fft.rfft2(emission)
    if not band_limited:
        return half
    yf, xf = emission.shape[-2:]
    return _camera_band(half, (yf // upsample, xf // upsample))


def _frames(planes: jax.Array, upsample: int, fine_width: int, band_limited: bool) -> jax.Array:
    """Camera frames ``(K, N, Y, X)`` from half spectra ``(K, N, ., .)`` on
    :func:`_lateral_spectra`'s grid."""
    if band_limited:
        return jnp.fft.irfft2(planes, s=(planes.shape[-2], fine_width // upsample))
    return _camera_pixels(planes, upsample, fine_width)


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


def transfer_within_camera_band(transfer: np.ndarray, upsample: int) -> bool:
    """Whether a fine-grid transfer ``(Yf, Xf)`` (FFT order) is zero at and beyond the camera's
    Nyquist frequency along both axes: then subsampling folds nothing, and the camera's spectrum
    is the central crop of the fine one (:class:`Sim2DForward` ``band_limited``)."""
    t = np.asarray(transfer)
    yf, xf = t.shape[-2:]
    fy = np.abs(np.fft.fftfreq(yf, d=1.0 / yf))[:, None]
    fx = np.abs(np.fft.fftfreq(xf, d=1.0 / xf))[None, :]
    outside = (fy >= yf // (2 * upsample)) | (fx >= xf // (2 * upsample))
    return bool(not np.any(np.abs(t[..., outside]) > 0))


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["patterns", "transfer"], meta_fields=["upsample", "band_limited"]
)
@dataclasses.dataclass(frozen=True)
class Sim2DForward:
    """2D SIM: ``patterns`` ``(S, Yf, Xf)``; ``transfer`` ``(Yf, Xf)`` = OTF x pixel transfer (FFT
    order; real from the optics, complex from a measured PSF).

    ``band_limited`` (set by :meth:`create` when it holds): the transfer is zero at and beyond
    the camera's Nyquist frequency, so the camera image is the inverse real FFT of the central
    crop of the emission's half spectrum (no aliases to fold, no full complex FFTs): exact, and
    about half the transform work of the general path.
    """

    patterns: jax.Array
    transfer: jax.Array
    upsample: int
    band_limited: bool = False

    channels = 1
    channel_names = ("density",)
    nonnegative = True

    @classmethod
    def create(cls, patterns: np.ndarray, transfer: np.ndarray, upsample: int) -> Sim2DForward:
        """With ``band_limited`` set from the transfer (:func:`transfer_within_camera_band`)."""
        t = np.asarray(transfer)
        dtype = jnp.complex64 if np.iscomplexobj(t) else jnp.float32
        return cls(
            jnp.asarray(patterns, jnp.float32),
            jnp.asarray(t, dtype),
            int(upsample),
            transfer_within_camera_band(t, int(upsample)),
        )

    def render(self, scenes: jax.Array, shots: jax.Array) -> jax.Array:
        emission = scenes[:, 0] * self.patterns[shots]
        return self._camera(emission)

    def widefield(self, scene: jax.Array) -> jax.Array:
        """Camera image of ``scene`` ``(Yf, Xf)`` under uniform illumination ``(Y, X)``."""
        return self._camera(scene)

    def _camera(self, emission: jax.Array) -> jax.Array:
        # a camera pixel collects the emission of its u x u fine pixels: photons per unit density
        u = self.upsample
        if self.band_limited:
            yf, xf = emission.shape[-2:]
            camera = (yf // u, xf // u)
            # the transfer's first X // 2 + 1 columns are its half spectrum's
            cropped = _lateral_spectra(emission, u, True) * _camera_band(self.transfer, camera)
            return jnp.fft.irfft2(cropped, s=camera)
        spectrum = jnp.fft.fft2(emission) * self.transfer
        folded = fold_spectrum(spectrum, u) * (u**2)
        return jnp.real(jnp.fft.ifft2(folded))


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["fields", "transfer", "z_forward", "z_inverse"],
    meta_fields=["upsample", "band_limited"],
)
@dataclasses.dataclass(frozen=True)
class Sim3DForward:
    """Three-beam 3D SIM, every (orientation, phase) stack rendered as one volume.

    ``fields`` ``(S, 2, Yf, Xf)`` real lateral patterns of the two transfer groups
    (:func:`lateral_order_fields`); ``transfer`` ``(2, P, Yf, Xf // 2 + 1)`` the groups' 3D
    transfers (real from the optics, complex from a measured PSF) on the z-padded stack (``P = Z + 2 z_pad`` planes; axial frequency first, FFT
    order, lateral half spectrum of ``rfft2``; camera pixel transfer included);
    ``z_forward``/``z_inverse``: :func:`axial_dft_matrices`. Build with :meth:`create`.

    ``band_limited`` (set by :meth:`create` when it holds): the transfers vanish at and beyond
    the camera's Nyquist frequency, so ``transfer`` is kept on the camera's half spectrum only
    ``(2, P, Y, X // 2 + 1)``; every lateral spectrum is cut to it right after its ``rfft2``
    (:func:`_camera_band`) and the axial products and the inverse transforms run at camera
    size, a quarter of the fine grid's (exact, as :class:`Sim2DForward` ``band_limited``).

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
    band_limited: bool = False

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
        u = int(upsample)
        band_limited = transfer_within_camera_band(otf, u)
        half = otf[..., : otf.shape[-1] // 2 + 1]
        if band_limited:
            half = np.asarray(_camera_band(jnp.asarray(half), (otf.shape[-2] // u, otf.shape[-1] // u)))
        return cls(
            jnp.asarray(fields, jnp.float32),
            jnp.asarray(half, jnp.complex64 if np.iscomplexobj(half) else jnp.float32),
            jnp.asarray(forward),
            jnp.asarray(inverse),
            u,
            band_limited,
        )

    def render(self, scenes: jax.Array, shots: jax.Array) -> jax.Array:
        rho = scenes[:, 0]  # (K, Z, Yf, Xf)
        emission = rho[:, None] * self.fields[shots][:, :, None]  # (K, 2, Z, Yf, Xf) real
        lateral = _lateral_spectra(emission, self.upsample, self.band_limited)  # (K, 2, Z, Yf or Y, Xh)
        spectrum = jnp.einsum("pz,kgzyx->kgpyx", self.z_forward, lateral)  # padded stack's axial DFT
        total = jnp.sum(spectrum * self.transfer[None], axis=1)  # (K, P, Yf, Xh)
        planes = jnp.einsum("zp,kpyx->kzyx", self.z_inverse, total)  # (K, Z, Yf, Xh): inverse, cropped
        return _frames(planes, self.upsample, self.fields.shape[-1], self.band_limited)


def frame_time_bins(midpoints_s: np.ndarray, max_spread_s: float) -> list[list[tuple[int, int]]]:
    """Frames ``(shot, plane)`` grouped into time bins, in time order.

    ``midpoints_s`` ``(S, Z)`` exposure midpoints, s. Frames are taken in time order and a new
    bin starts when a frame is more than ``max_spread_s`` after the bin's first frame
    (``max_spread_s = 0``: every frame its own bin, exact per-frame rendering).
    """
    t = np.asarray(midpoints_s, np.float64)
    if t.ndim != 2:
        raise ValueError(f"midpoints_s has shape {t.shape}; give (S, Z) exposure midpoints in s")
    order = np.argsort(t.reshape(-1), kind="stable")
    bins: list[list[tuple[int, int]]] = []
    start = -np.inf
    for flat in order:
        s, z = divmod(int(flat), t.shape[1])
        if not bins or t[s, z] - start > max_spread_s:
            bins.append([])
            start = t[s, z]
        bins[-1].append((s, z))
    return bins


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["axial", "basis", "coef", "planes"],
    meta_fields=["upsample", "band_limited"],
)
@dataclasses.dataclass(frozen=True)
class Sim3DFramesForward:
    """Three-beam 3D SIM, every frame predicted from the volume of its own time bin.

    Row ``b`` of ``render`` is time bin ``b`` (:func:`frame_time_bins`): one volume
    ``(1, Z, Yf, Xf)`` at the bin's time, and the bin's ``M`` frames (shot ``s_m``, plane
    ``z_m``; padded bins repeat a frame, for the fit to weight 0). The lateral patterns of a
    bin's shots span a few fields ``basis[b]`` ``(J, Yf, Xf)`` (one shot: 2; the 5 phases of
    an orientation: 5; every shot: 13); frame ``m``'s group-``g`` pattern is
    ``Σ_j coef[b, m, g, j] basis[b, j]``. So a bin costs ``J`` lateral transforms per plane
    whatever its number of frames; the axial transfer is a ``Z x Z`` matrix per lateral
    frequency (``axial``, the padded DFT, transfer and cropped inverse in one), and only each
    frame's own row of it is used. Exact (linear): with every frame
    in its own bin this is per-frame rendering, and with a bin per (orientation, phase) stack
    it equals :class:`Sim3DForward`. Build with :meth:`create`. ``band_limited``: as
    :class:`Sim3DForward`'s (the lateral spectra cut to the camera's band, ``axial`` on it).
    """

    axial: jax.Array  # (Z, 2, Z, Yf, Xh): [z, g, z'] from sample plane z' to stack plane z, group g
    basis: jax.Array  # (B, J, Yf, Xf) float32
    coef: jax.Array  # (B, M, 2, J) float32
    planes: jax.Array  # (B, M) int32
    upsample: int
    band_limited: bool = False

    channels = 1
    channel_names = ("density",)
    nonnegative = True

    @classmethod
    def create(cls, stack: Sim3DForward, bins: list[list[tuple[int, int]]]) -> Sim3DFramesForward:
        """The frames of ``bins`` (lists of ``(shot, plane)``) rendered with ``stack``'s patterns
        and transfers."""
        fields = np.asarray(stack.fields, np.float64)  # (S, 2, Yf, Xf)
        n_max = max(len(b) for b in bins)
        spans = []
        for frames in bins:
            shots = sorted({s for s, _ in frames})
            a = fields[shots].reshape(2 * len(shots), -1)
            u, sv, vt = np.linalg.svd(a, full_matrices=False)
            r = max(1, int(np.sum(sv > 1e-6 * sv[0])))
            index = {s: i for i, s in enumerate(shots)}
            spans.append((vt[:r] * sv[:r, None], u[:, :r].reshape(len(shots), 2, r), index))
        j_max = max(sp[0].shape[0] for sp in spans)
        yf, xf = fields.shape[-2:]
        basis = np.zeros((len(bins), j_max, yf, xf), np.float32)
        coef = np.zeros((len(bins), n_max, 2, j_max), np.float32)
        planes = np.zeros((len(bins), n_max), np.int32)
        for b, (frames, (vecs, c, index)) in enumerate(zip(bins, spans, strict=True)):
            r = vecs.shape[0]
            basis[b, :r] = vecs.reshape(r, yf, xf)
            padded = frames + [frames[-1]] * (n_max - len(frames))
            for m, (s, z) in enumerate(padded):
                coef[b, m, :, :r] = c[index[s]]
                planes[b, m] = z
        # the axial transfer as a Z x Z matrix per lateral frequency and group (padded DFT,
        # transfer, cropped inverse DFT): A_g[z, z'] = Σ_p inverse[z, p] T_g[p] forward[p, z']
        axial = jnp.einsum("zp,gpyx,pw->zgwyx", stack.z_inverse, stack.transfer.astype(jnp.complex64), stack.z_forward)
        return cls(
            axial, jnp.asarray(basis), jnp.asarray(coef), jnp.asarray(planes), stack.upsample, stack.band_limited
        )

    def render(self, scenes: jax.Array, shots: jax.Array) -> jax.Array:
        """Frames ``(K, M, Y, X)`` of bins ``shots`` ``(K,)`` from volumes ``(K, 1, Z, Yf, Xf)``."""
        u = self.upsample
        rho = scenes[:, 0]  # (K, Z, Yf, Xf)
        emission = rho[:, None] * self.basis[shots][:, :, None]
        lateral = _lateral_spectra(emission, u, self.band_limited)  # (K, J, Z, Yf or Y, Xh)
        k, j, z, yf, xh = lateral.shape
        coef = self.coef[shots]  # (K, M, 2, J)
        m = coef.shape[1]
        # frame m: Σ_g Σ_z' A_g[z_m, z'] Σ_j coef[m, g, j] lateral_j[z'] (a batched matrix
        # product over j, then the frame's row of the axial matrices)
        grouped = jnp.matmul(coef.reshape(k, m * 2, j).astype(lateral.dtype), lateral.reshape(k, j, -1))
        grouped = grouped.reshape(k, m, 2, z, yf, xh)
        planes = jnp.sum(grouped * self.axial[self.planes[shots]], axis=(2, 3))  # (K, M, Yf, Xh)
        return _frames(planes, u, self.basis.shape[-1], self.band_limited)
