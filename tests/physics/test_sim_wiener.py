"""Conventional (Wiener) SIM reconstruction against known answers.

Known answers: beads at set positions imaged by the simulated microscope's SIM camera with
camera noise; emission 0.52 µm at NA 1.2, so the widefield limit is about 0.22 µm and the
two-beam SIM support (2NA/λ + |k| = 8.5 cycles/µm) about 0.12 µm.
"""

from __future__ import annotations

import numpy as np
import pytest
from sim_data import OPTICS, illumination, simulate_2d, simulate_3d

from nstm_acquire.hardware.simulated import fluorescence_imaging as sim_imaging
from nstm_acquire.hardware.simulated.phantoms import BeadPhantom
from nstm_acquire.hardware.simulated.sample import MovingSample
from nstm_acquire.physics.sim.otf import (
    camera_pixel_transfer,
    defocused_otf_2d,
    lateral_cutoff_per_um,
    otf_2d,
)
from nstm_acquire.physics.sim.wiener import (
    widefield_from_sim,
    wiener_sim_2d,
    wiener_sim_3d,
    wiener_widefield_2d,
    wiener_widefield_3d,
)

N = 128
FIELD = (12.8, 12.8)


def fwhm(profile: np.ndarray, step: float) -> float:
    """Full width at half maximum of a single peak, linear interpolation between samples."""
    p = profile / profile.max()
    i = int(np.argmax(p))

    def crossing(direction: int) -> float:
        j = i
        while 0 <= j + direction < len(p) and p[j + direction] >= 0.5:
            j += direction
        k = j + direction
        assert 0 <= k < len(p), "the peak does not fall to half maximum inside the profile"
        return j + direction * (p[j] - 0.5) / (p[j] - p[k])

    return (crossing(1) - crossing(-1)) * step


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_otf_helpers_equal_the_simulators():
    for shape, px in (((64, 48), 0.1), ((96, 96), 0.05)):
        np.testing.assert_allclose(
            otf_2d(shape, px, OPTICS), sim_imaging.widefield_otf_2d(shape, px, OPTICS), atol=1e-12
        )
        np.testing.assert_allclose(
            camera_pixel_transfer(shape, px, 0.1),
            sim_imaging.camera_pixel_transfer(shape, px, 0.1),
            atol=1e-12,
        )
        dz = np.array([-0.6, 0.0, 0.25])
        np.testing.assert_allclose(
            defocused_otf_2d(shape, px, OPTICS, dz),
            sim_imaging.defocused_otf_2d(shape, px, OPTICS, dz),
            atol=1e-6,
        )
    assert lateral_cutoff_per_um(OPTICS) == pytest.approx(2 * 1.2 / 0.52)


def test_wiener_2d_resolves_a_bead_pair_the_widefield_image_does_not():
    # a pair 0.15 µm apart along x (below the 0.22 µm widefield limit), centred on output
    # pixel (256, 256) at upsample 4 (25 nm pixels: the beads sit at ±3 pixels)
    rng = np.random.default_rng(5)
    others = rng.uniform(1.0, 11.8, size=(20, 2))
    others = others[np.hypot(*(others - 6.4).T) > 1.5]
    positions = np.vstack([[[6.4, 6.325], [6.4, 6.475]], others])
    phantom = BeadPhantom.from_positions(FIELD, positions, diameter_um=0.05)
    ill = illumination(False)
    raw = simulate_2d(ill, phantom, n=N)
    c = 256

    def dip(image: np.ndarray) -> float:
        row = image[c, c - 6 : c + 7]
        left, right = row[2:5].max(), row[8:11].max()  # around the beads at c - 3, c + 3
        return float(row[6] / min(left, right))

    sim = wiener_sim_2d(raw, OPTICS, ill, upsample=4)
    wide = wiener_widefield_2d(raw, OPTICS, ill, upsample=4)
    assert sim.shape == wide.shape == (4 * N, 4 * N)
    assert dip(sim) < 0.85, dip(sim)  # two maxima with a dip between them
    assert dip(wide) > 0.95, dip(wide)  # one blob
    plain = widefield_from_sim(raw[:, 0], upsample=4)
    assert dip(plain) > 0.95


def test_wiener_2d_matches_the_truth_band_limited_to_the_sim_passband_better_than_widefield():
    phantom = BeadPhantom(FIELD, n_beads=80, diameter_um=0.1, seed=3)
    ill = illumination(False)
    raw = simulate_2d(ill, phantom, n=N)
    truth = MovingSample(phantom, "static").on_grid(0.0, (N, N), 0.1, upsample=2)
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(2 * N, 0.05), np.fft.fftfreq(2 * N, 0.05)))
    k = float(np.hypot(*ill.k_per_um[0]))
    band = np.fft.ifft2(np.fft.fft2(truth) * (q < lateral_cutoff_per_um(OPTICS) + k)).real
    sim = wiener_sim_2d(raw, OPTICS, ill)
    wide = wiener_widefield_2d(raw, OPTICS, ill)
    r_sim, r_wide = correlation(sim, band), correlation(wide, band)
    assert r_sim > 0.93, r_sim  # measured 0.955
    assert r_sim > r_wide + 0.1, (r_sim, r_wide)  # measured 0.79 for widefield


def test_wiener_2d_of_a_uniform_sample_is_its_mean_intensity():
    ill = illumination(False)
    raw = np.full((ill.n_shots, 32, 32), 250.0, np.float32)
    out = wiener_sim_2d(raw, OPTICS, ill)
    # up to the Wiener filter's own bias at DC, w² / (Σ|T|² + w²) of a few 1e-3
    np.testing.assert_allclose(out, 250.0, rtol=3e-3)
    assert np.ptp(out) < 1e-3 * 250.0


def test_wiener_3d_narrows_an_isolated_bead_laterally_and_axially():
    ill = illumination(True)
    n, nz, dz = 64, 16, 0.1
    positions = np.array(
        [[0.0, 3.2, 3.2], [0.0, 1.5, 1.6], [0.0, 4.9, 1.4], [0.0, 1.4, 5.0], [0.0, 5.1, 4.8]]
    )
    phantom = BeadPhantom.from_positions((6.4, 6.4), positions, diameter_um=0.05)
    raw = simulate_3d(ill, phantom, [0.0], nz, dz, n)
    widths = {}
    for name, recon in (
        ("sim", wiener_sim_3d(raw, OPTICS, ill, dz)),
        ("wide", wiener_widefield_3d(raw, OPTICS, ill, dz)),
    ):
        assert recon.shape == (nz, 2 * n, 2 * n)
        # the bead at (0, 3.2, 3.2) µm: plane nz // 2, fine pixel (64, 64)
        z, y, x = np.unravel_index(np.argmax(recon[:, 60:69, 60:69]), (nz, 9, 9))
        assert (z, y + 60, x + 60) == (nz // 2, 64, 64)
        widths[name] = (fwhm(recon[nz // 2, 64, :], 0.05), fwhm(recon[:, 64, 64], dz))
    (lat_sim, ax_sim), (lat_wide, ax_wide) = widths["sim"], widths["wide"]
    # measured: lateral 0.149 vs 0.220 µm, axial 0.457 vs 0.646 µm
    assert lat_sim < 0.8 * lat_wide, widths
    assert ax_sim < 0.8 * ax_wide, widths


def test_wiener_rejects_incomplete_parameters_and_bad_shapes_with_the_fix():
    ill = illumination(False)
    with pytest.raises(ValueError, match="k_per_um"):
        wiener_sim_2d(np.ones((9, 16, 16)), OPTICS, ill.replace(k_per_um=None))
    with pytest.raises(ValueError, match="shots"):
        wiener_sim_2d(np.ones((8, 16, 16)), OPTICS, ill)
    with pytest.raises(ValueError, match="z_step_um"):
        wiener_sim_3d(np.ones((15, 4, 16, 16)), OPTICS, illumination(True))


# ----------------------------------------------------------------------------- 3D against a textbook
def textbook_wiener_3d(raw: np.ndarray, ill, dz: float, wiener: float, pad: int) -> np.ndarray:
    """A plainly written generalised Wiener reconstruction of three-beam SIM (Gustafsson 2008).

    Independent of ``wiener.py``: the frames are Fourier-interpolated onto a 2x finer grid; the
    five orders m = -2..2 of each orientation are separated by inverting the 5 x 5 phase matrix
    ``exp(i m ψ_p)`` (``ψ_p = φ + 2πp/5``: order ±1 at ±k/2 with phase ±ψ, order ±2 at ±k with
    ±2ψ); each band is moved back to its place by multiplying it by ``exp(-i 2π f_m·r)`` in real
    space, and its transfer is the 3D Fourier transform of the same ramp (about the PSF's centre) times the detection
    PSF stack (order ±1 also times the axial profile ``cos(2π k_z1 z)``) times ``c_m``; the
    stack is zero-padded by ``pad`` planes; cosine apodisation (separable lateral x axial).
    """
    s_n, nz, n, _ = raw.shape
    u, big = 2, 2 * n
    px = OPTICS.pixel_size_um / u
    spec = np.fft.fftshift(np.fft.fft2(raw), axes=(-2, -1))
    spec_big = np.zeros((s_n, nz, big, big), complex)
    o = (big - n) // 2
    spec_big[..., o : o + n, o : o + n] = spec
    fine = np.fft.ifft2(np.fft.ifftshift(spec_big, axes=(-2, -1))).real * u * u
    nzp = nz + pad
    fine = np.concatenate([fine, np.zeros((s_n, pad, big, big))], axis=1)
    z = np.fft.fftfreq(nzp, 1.0 / nzp) * dz  # PSF plane offsets, FFT order
    otf = sim_imaging.defocused_otf_2d((big, big), px, OPTICS, z)
    otf *= sim_imaging.camera_pixel_transfer((big, big), px, OPTICS.pixel_size_um)
    psf = np.fft.ifft2(otf).real  # (nzp, big, big), each plane sums to 1
    yy, xx = np.meshgrid(np.arange(big) * px, np.arange(big) * px, indexing="ij")
    centred = np.fft.fftfreq(big, 1.0 / big) * px  # the PSF's offsets (FFT order), for its ramp
    cy, cx = np.meshgrid(centred, centred, indexing="ij")
    depth = dz * ((1.33 - np.sqrt(1.33**2 - 1.2**2)) / 0.52)  # transfers per depth of field
    kz1 = ill.axial_k_per_um
    num = np.zeros((nzp, big, big), complex)
    den = np.zeros((nzp, big, big))
    for d in range(ill.n_orientations):
        ky, kx = ill.k_per_um[d]
        m1, m2 = ill.modulation[d]
        psi = ill.phase_rad[d] + 2 * np.pi * np.arange(5) / 5
        orders = np.arange(-2, 3)
        mix = np.exp(1j * np.outer(psi, orders))  # frame p = sum_m mix[p, m] band_m
        frames = fine[d * 5 : (d + 1) * 5].reshape(5, -1)
        bands = np.linalg.solve(mix, frames.astype(complex)).reshape(5, nzp, big, big)
        for j, m in enumerate(orders):
            c = {0: 1.0, 1: m1 / 2, 2: m2 / 2}[abs(m)]
            f = (m / 2) * np.array([ky, kx])  # order m's lateral frequency
            ramp = np.exp(-2j * np.pi * (f[0] * yy + f[1] * xx))
            h = psf * (np.cos(2 * np.pi * kz1 * z)[:, None, None] if abs(m) == 1 else 1.0)
            t = np.fft.fftn(c * h * np.exp(-2j * np.pi * (f[0] * cy + f[1] * cx))) * depth
            num += np.conj(t) * np.fft.fftn(bands[j] * ramp) * depth
            den += np.abs(t) ** 2
    q = np.hypot(*np.meshgrid(np.fft.fftfreq(big, px), np.fft.fftfreq(big, px), indexing="ij"))
    kz = np.abs(np.fft.fftfreq(nzp, dz))[:, None, None]
    lateral = 2 * 1.2 / 0.52 + float(np.hypot(*ill.k_per_um[0]))
    axial = (1.33 - np.sqrt(1.33**2 - 1.2**2)) / 0.52 + kz1
    apod = np.cos(0.5 * np.pi * np.minimum(q / lateral, 1)) * np.cos(0.5 * np.pi * np.minimum(kz / axial, 1))
    return np.fft.ifftn(num / (den + wiener**2) * apod).real[:nz]


def _beads_3d(nz: int, dz: float, n: int, seed: int = 2):
    """Static beads (100 nm) within the stack's central planes: 2 planes free above and below."""
    rng = np.random.default_rng(seed)
    zmax = (nz // 2 - 2) * dz
    field = n * OPTICS.pixel_size_um
    pos = np.column_stack([rng.uniform(-zmax, zmax, 25), rng.uniform(0.5, field - 0.5, (25, 2))])
    return BeadPhantom.from_positions((field, field), pos, diameter_um=0.1)


def test_wiener_3d_equals_a_textbook_reconstruction_and_the_apodised_truth_to_the_end_planes():
    from nstm_acquire.evaluation.metrics import sim_truth
    from nstm_acquire.physics.sim.wiener import z_padding_planes

    ill = illumination(True)
    n, nz, dz = 48, 10, 0.12
    planes = (np.arange(nz) - nz // 2) * dz
    phantom = _beads_3d(nz, dz, n)
    raw = simulate_3d(ill, phantom, planes, nz, dz, n)
    rho = MovingSample(phantom, "static").on_grid(0.0, (n, n), OPTICS.pixel_size_um, upsample=2, z_um=planes)
    truth = sim_truth(rho, 0.05, OPTICS, ill, dz)
    ours = wiener_sim_3d(raw, OPTICS, ill, dz)
    book = textbook_wiener_3d(raw, ill, dz, 0.05, z_padding_planes(nz, dz, OPTICS))
    m = 8
    c = lambda a, b: correlation(a[..., m:-m, m:-m], b[..., m:-m, m:-m])  # noqa: E731
    planes_ours = np.array([c(ours[i], truth[i]) for i in range(nz)])
    planes_book = np.array([c(book[i], truth[i]) for i in range(nz)])
    # the same reconstruction as the textbook one (measured 0.99999)
    assert c(ours, book) > 0.9999, c(ours, book)
    np.testing.assert_allclose(planes_ours, planes_book, atol=0.005)
    # against the apodised truth (measured 0.984 over the stack; planes 0.72 0.96 0.98 ... 0.98
    # 0.94, the end planes hold only the tails of beads 2 and 1 planes away; before the z
    # padding and the depth-of-field scaling: 0.973, end planes 0.44 and 0.90)
    assert c(ours, truth) > 0.98, c(ours, truth)
    assert planes_ours[2:-2].min() > 0.97, planes_ours
    assert planes_ours[0] > 0.65 and planes_ours[-1] > 0.9 and planes_ours[1] > 0.93, planes_ours


def test_wiener_3d_central_planes_do_not_depend_on_how_many_planes_were_acquired():
    # the Wiener constant is relative to transfers per depth of field: 8 planes or the same
    # 8 with 2 more on each side give the same central planes
    ill = illumination(True)
    n, dz = 32, 0.12
    phantom = _beads_3d(8, dz, n, seed=4)
    planes = (np.arange(12) - 6) * dz
    raw = simulate_3d(ill, phantom, planes, 12, dz, n)
    full = wiener_sim_3d(raw, OPTICS, ill, dz)[2:10]
    part = wiener_sim_3d(raw[:, 2:10], OPTICS, ill, dz)
    r = [correlation(full[i], part[i]) for i in range(2, 6)]
    assert min(r) > 0.97, r
    assert np.std(part[2:6]) == pytest.approx(np.std(full[2:6]), rel=0.1)
