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
