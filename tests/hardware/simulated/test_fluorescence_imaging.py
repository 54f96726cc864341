"""SIM illumination patterns and the simulated camera's fluorescence imaging (2D and 3D).

Known answers: the analytic incoherent OTF and the Airy FWHM, a pupil autocorrelation computed
here by brute-force quadrature, the explicit interference of three plane waves, Fourier
coefficients of images measured by direct (windowed) DFTs at off-grid frequencies, and photon
conservation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import j1

from nstm_acquire.hardware.simulated.fluorescence_imaging import (
    SimImager,
    camera_pixel_transfer,
    defocused_otf_2d,
    defocused_psf_2d,
    sim_image_2d,
    sim_image_3d,
    widefield_otf_2d,
    widefield_otf_radial,
    widefield_psf_3d,
)
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.sim.illumination import (
    SimIllumination,
    check_illumination_for_optics,
    default_sim_illumination,
    illumination_pattern,
    pattern_orders,
)

# emission 0.5 µm, NA 1.0 water: incoherent cutoff 2NA/λ = 4 cycles/µm, Nyquist pixel 0.125 µm
OPTICS = Optics(wavelength_um=0.5, na_detection=1.0, pixel_size_um=0.1, immersion_index=1.33)
# lower NA for the defocus tests, so out-of-focus OTFs stay measurable
OPTICS_3D = Optics(wavelength_um=0.5, na_detection=0.9, pixel_size_um=0.1, immersion_index=1.33)
EXCITATION_UM = 0.45


# ---------------------------------------------------------------- helpers (independent of the code)
def pupil_autocorrelation_otf(
    optics: Optics, q_per_um: float, defocus_um: float, n: int = 1400
) -> float:
    """OTF(|q|) at defocus by midpoint quadrature of the defocused pupil's autocorrelation."""
    r = optics.na_detection / optics.wavelength_um
    k = optics.immersion_index / optics.wavelength_um
    g = (np.arange(n) + 0.5) / n * 2 * r - r
    uy, ux = np.meshgrid(g, g, indexing="ij")
    a = ux + q_per_um / 2
    b = ux - q_per_um / 2
    overlap = (uy**2 + a**2 < r**2) & (uy**2 + b**2 < r**2)
    wa = np.sqrt(np.maximum(k**2 - uy**2 - a**2, 0.0))
    wb = np.sqrt(np.maximum(k**2 - uy**2 - b**2, 0.0))
    integrand = np.where(overlap, np.cos(2 * np.pi * defocus_um * (wa - wb)), 0.0)
    return float(integrand.sum() * (2 * r / n) ** 2 / (np.pi * r**2))


def windowed_coefficient(image: np.ndarray, k: tuple[float, float], pixel_um: float) -> complex:
    """Fourier coefficient of ``image`` at ``k`` relative to its mean (Hann-windowed direct DFT)."""
    ny, nx = image.shape
    y = np.arange(ny)[:, None] * pixel_um
    x = np.arange(nx)[None, :] * pixel_um
    w = np.hanning(ny)[:, None] * np.hanning(nx)[None, :]
    kernel = np.exp(-2j * np.pi * (k[0] * y + k[1] * x))
    return complex(np.sum(w * image * kernel) / np.sum(w * image))


def pixel_box(k: tuple[float, float], pixel_um: float) -> float:
    return float(np.sinc(pixel_um * k[0]) * np.sinc(pixel_um * k[1]))


def fwhm(profile: np.ndarray, pixel_um: float) -> float:
    """Full width at half maximum of a single-peaked profile, linear interpolation, µm."""
    i = int(np.argmax(profile))
    half = profile[i] / 2
    right = i + np.nonzero(profile[i:] < half)[0][0]
    left = i - np.nonzero(profile[: i + 1][::-1] < half)[0][0]
    xr = right - 1 + (profile[right - 1] - half) / (profile[right - 1] - profile[right])
    xl = left + 1 - (profile[left + 1] - half) / (profile[left + 1] - profile[left])
    return (xr - xl) * pixel_um


def wrap(angle: float) -> float:
    return (angle + np.pi) % (2 * np.pi) - np.pi


# ---------------------------------------------------------------- OTF and PSF
def test_otf_matches_lens_area_at_half_cutoff_and_vanishes_beyond_cutoff():
    shape, px = (64, 64), 0.0625  # frequency step 0.25 cycles/µm: index 8 is 2.0 = half cutoff
    otf = widefield_otf_2d(shape, px, OPTICS)
    # overlap of two unit circles whose centres are 1 apart, over the area of one circle
    lens_area = 2 * math.acos(0.5) - 0.5 * math.sqrt(3.0)
    assert otf[0, 8] == pytest.approx(lens_area / math.pi, rel=1e-12)
    assert otf[8, 0] == pytest.approx(lens_area / math.pi, rel=1e-12)
    assert otf[0, 0] == pytest.approx(1.0)
    uy, ux = np.meshgrid(np.fft.fftfreq(64, px), np.fft.fftfreq(64, px), indexing="ij")
    radius = np.hypot(uy, ux)
    assert np.all(otf[radius >= 4.0] == 0.0)
    assert np.all(otf[radius < 3.99] > 0.0)
    assert np.all(np.diff(otf[0, :16]) < 0)  # decreasing out to the cutoff


def test_defocused_otf_matches_analytic_in_focus_and_brute_force_quadrature_out_of_focus():
    q = np.linspace(0, 2 * OPTICS_3D.cutoff_per_um * 1.1, 300)
    nu = np.minimum(q / (2 * OPTICS_3D.cutoff_per_um), 1)
    analytic = (2 / np.pi) * (np.arccos(nu) - nu * np.sqrt(1 - nu**2))
    # a vanishing defocus goes through the quadrature, which must reproduce the lens area
    np.testing.assert_allclose(widefield_otf_radial(q, OPTICS_3D, 1e-9), analytic, atol=1e-9)
    shape, px = (128, 128), 0.05
    otf = defocused_otf_2d(shape, px, OPTICS_3D, [0.0, 0.3, 0.7])
    np.testing.assert_array_equal(otf[0], widefield_otf_2d(shape, px, OPTICS_3D))
    np.testing.assert_allclose(otf[:, 0, 0], 1.0, rtol=1e-12)
    f = np.fft.fftfreq(128, px)
    for plane, dz in ((1, 0.3), (2, 0.7)):
        for j in (6, 14, 22):  # 0.94, 2.2, 3.4 cycles/µm
            expected = pupil_autocorrelation_otf(OPTICS_3D, f[j], dz)
            assert otf[plane, 0, j] == pytest.approx(expected, abs=1e-3)
            assert otf[plane, j, 0] == pytest.approx(expected, abs=1e-3)
            assert otf[plane, j, j] == pytest.approx(
                widefield_otf_radial(math.hypot(f[j], f[j]), OPTICS_3D, dz), abs=1e-4
            )
    # defocus lowers the transfer of mid frequencies
    assert np.all(np.abs(otf[1, 0, 3:20]) < otf[0, 0, 3:20])
    psf = defocused_psf_2d(shape, px, OPTICS_3D, [0.0, 0.7])
    np.testing.assert_allclose(psf.sum(axis=(-2, -1)), 1.0, rtol=1e-12)
    assert psf.min() > -1e-6 * psf.max()
    assert psf[1].max() < 0.5 * psf[0].max()


def test_point_source_images_to_airy_spot_fwhm():
    v_half = brentq(lambda v: (2 * j1(v) / v) ** 2 - 0.5, 0.5, 3.0)
    airy_fwhm = 2 * v_half / (2 * np.pi) * OPTICS.wavelength_um / OPTICS.na_detection  # 0.5145 λ/NA
    px = 0.02
    optics = OPTICS.model_copy(update={"pixel_size_um": px})
    ill = default_sim_illumination(optics, EXCITATION_UM, modulation=0.0)  # uniform light
    density = np.zeros((128, 128))
    density[64, 64] = 1.0
    image = sim_image_2d(density, px, ill, 0, optics, upsample=1)
    assert np.unravel_index(np.argmax(image), image.shape) == (64, 64)
    assert fwhm(image[64], px) == pytest.approx(airy_fwhm, rel=0.02)
    assert fwhm(image[:, 64], px) == pytest.approx(airy_fwhm, rel=0.02)
    psf = widefield_psf_3d((3, 128, 128), px, 0.5, OPTICS)
    assert np.unravel_index(np.argmax(psf), psf.shape) == (1, 64, 64)
    assert fwhm(psf[1, 64], px) == pytest.approx(airy_fwhm, rel=0.02)
    np.testing.assert_allclose(psf.sum(axis=(-2, -1)), 1.0, rtol=1e-12)


@pytest.mark.parametrize("upsample", [2, 3])
def test_camera_pixel_centres_sit_on_fine_pixels_i_times_u(upsample):
    fine_px = OPTICS.pixel_size_um / upsample
    ill = default_sim_illumination(OPTICS, EXCITATION_UM)
    imager = SimImager(OPTICS, ill, (48 * upsample,) * 2, fine_px)
    density = np.zeros(imager.fine_shape)
    density[20 * upsample, 30 * upsample] = 1.0  # on the centre of camera pixel (20, 30)
    image = imager.widefield(density)
    assert np.unravel_index(np.argmax(image), image.shape) == (20, 30)
    assert image[21, 30] == pytest.approx(image[19, 30], rel=1e-9)
    assert image[20, 31] == pytest.approx(image[20, 29], rel=1e-9)
    if upsample == 2:
        # a source on the border between camera rows 20 and 21 lights both equally
        density[:] = 0.0
        density[20 * upsample + 1, 30 * upsample] = 1.0
        image = imager.widefield(density)
        assert image[20, 30] == pytest.approx(image[21, 30], rel=1e-9)
        assert image[19, 30] == pytest.approx(image[22, 30], rel=1e-9)


# ---------------------------------------------------------------- 2D patterns seen by the camera
def test_uniform_layer_shows_pattern_at_k_with_phase_steps_and_modulation_m_otf():
    upsample = 2
    ill = default_sim_illumination(OPTICS, EXCITATION_UM, angle0_rad=0.23, modulation=0.7)
    ill = ill.replace(phase_rad=[0.4, -1.3, 2.6])
    imager = SimImager(OPTICS, ill, (256, 256), OPTICS.pixel_size_um / upsample)
    density = np.ones(imager.fine_shape)
    bin_um = 1.0 / (128 * OPTICS.pixel_size_um)
    for d in range(ill.n_orientations):
        k = ill.k_per_um[d]
        k_mag = math.hypot(*k)
        assert k_mag == pytest.approx(0.85 * 4.0)
        nu = k_mag / 4.0
        otf_k = (2 / np.pi) * (math.acos(nu) - nu * math.sqrt(1 - nu**2))
        expected_depth = 0.7 * otf_k * pixel_box(k, OPTICS.pixel_size_um)
        coefficients = []
        for p in range(ill.n_phases):
            image = imager.image(density, d * ill.n_phases + p)
            c = windowed_coefficient(image, k, OPTICS.pixel_size_um)
            coefficients.append(c)
            assert 2 * abs(c) == pytest.approx(expected_depth, rel=1e-3)
            shot_phase = ill.phase_rad[d] + 2 * np.pi * p / 3
            assert wrap(np.angle(c) - shot_phase) == pytest.approx(0, abs=1e-3)
            # the spectral peak sits at k to a fraction of a Fourier bin
            for dk in ((0.25, 0), (-0.25, 0), (0, 0.25), (0, -0.25)):
                shifted = (k[0] + dk[0] * bin_um, k[1] + dk[1] * bin_um)
                off_peak = windowed_coefficient(image, shifted, OPTICS.pixel_size_um)
                assert abs(off_peak) < 0.99 * abs(c)
        for p in range(ill.n_phases):
            step = np.angle(coefficients[(p + 1) % 3] / coefficients[p])
            assert wrap(step - 2 * np.pi / 3) == pytest.approx(0, abs=1e-3)


def test_widefield_image_of_uniform_layer_has_no_modulation():
    imager = SimImager(OPTICS, default_sim_illumination(OPTICS, EXCITATION_UM), (128, 128), 0.05)
    image = imager.widefield(np.ones(imager.fine_shape))
    np.testing.assert_allclose(image, 4.0, rtol=1e-9)


# ---------------------------------------------------------------- three-beam patterns, 3D imaging
def test_three_beam_pattern_equals_interference_of_three_plane_waves():
    ill = default_sim_illumination(OPTICS, EXCITATION_UM, three_beam=True, modulation=1.0)
    ill = ill.replace(phase_rad=[0.7, -0.2, 1.9])
    n, lam = OPTICS.immersion_index, EXCITATION_UM
    rng = np.random.default_rng(3)
    y, x, z = rng.uniform(-3, 3, size=(3, 200))
    for shot in (0, 3, 7, 14):
        d, p = divmod(shot, 5)
        ky, kx = ill.k_per_um[d]
        psi = ill.phase_rad[d] + 2 * np.pi * p / 5
        # centre beam along z; side beams with lateral wavevector ±k/2 in the medium n/λ
        side_axial = math.sqrt((n / lam) ** 2 - (ky**2 + kx**2) / 4)
        lateral = ky / 2 * y + kx / 2 * x
        field = (
            np.exp(2j * np.pi * (n / lam) * z)
            + np.exp(1j * (2 * np.pi * (lateral + side_axial * z) + psi))
            + np.exp(1j * (2 * np.pi * (-lateral + side_axial * z) - psi))
        )
        expected = np.abs(field) ** 2 / 3
        pattern = illumination_pattern(ill, shot, y, x, z)
        np.testing.assert_allclose(pattern, expected, atol=1e-9)
        assert ill.axial_k_per_um == pytest.approx(n / lam - side_axial, rel=1e-12)


def test_three_beam_pattern_has_lateral_components_at_half_k_and_k_only():
    n_px, px = 64, 0.05
    bin_um = 1 / (n_px * px)
    ill = SimIllumination(
        n_phases=5,
        excitation_wavelength_um=EXCITATION_UM,
        n_orientations=1,
        k_per_um=[[6 * bin_um, 10 * bin_um]],  # k/2 on bin (3, 5)
        phase_rad=[0.9],
        modulation=[[1.0, 0.5]],
        three_beam=True,
        axial_k_per_um=0.8,
    )
    y = (np.arange(n_px) * px)[:, None]
    x = (np.arange(n_px) * px)[None, :]
    z = 0.2
    axial = math.cos(2 * np.pi * 0.8 * z)
    for p in range(5):
        pattern = illumination_pattern(ill, p, y, x, z)
        assert pattern.min() >= 0
        spectrum = np.fft.fft2(pattern) / n_px**2
        psi = 0.9 + 2 * np.pi * p / 5
        assert spectrum[0, 0].real == pytest.approx(1.0)
        assert spectrum[3, 5] == pytest.approx(0.5 * axial * np.exp(1j * psi), abs=1e-12)
        assert spectrum[6, 10] == pytest.approx(0.25 * np.exp(2j * psi), abs=1e-12)
        assert spectrum[-3, -5] == pytest.approx(np.conj(spectrum[3, 5]), abs=1e-12)
        assert spectrum[-6, -10] == pytest.approx(np.conj(spectrum[6, 10]), abs=1e-12)
        others = np.abs(spectrum).copy()
        for idx in ((0, 0), (3, 5), (6, 10), (-3, -5), (-6, -10)):
            others[idx] = 0
        assert others.max() < 1e-12


def test_ideal_three_beam_pattern_touches_zero_and_stays_non_negative():
    ill = default_sim_illumination(OPTICS, EXCITATION_UM, three_beam=True, modulation=1.0)
    g = np.linspace(0, 2, 301)
    y, x, z = g[:, None, None], g[None, :, None], np.linspace(-1, 1, 41)[None, None, :]
    pattern = illumination_pattern(ill, 0, y, x, z)
    assert pattern.min() >= 0.0
    assert pattern.min() < 2e-3
    assert pattern.mean() == pytest.approx(1.0, abs=0.02)


def test_thin_layer_order_one_follows_axial_cosine_times_defocused_otf():
    upsample = 2
    ill = default_sim_illumination(OPTICS_3D, EXCITATION_UM, three_beam=True, angle0_rad=0.31)
    ill = ill.replace(phase_rad=[1.1, -0.6, 0.2])
    kz = ill.axial_k_per_um
    m1, m2 = ill.modulation[0]
    layer_z = 0.3
    fine_px = OPTICS_3D.pixel_size_um / upsample
    imager = SimImager(OPTICS_3D, ill, (256, 256), fine_px, z_um=[layer_z])
    density = np.ones((1, *imager.fine_shape))
    d, p = 0, 2
    shot = d * 5 + p
    k = ill.k_per_um[d]
    k_half = (k[0] / 2, k[1] / 2)
    psi = ill.phase_rad[d] + 2 * np.pi * p / 5
    depth_k = []
    for defocus in (0.0, 0.2, 0.45, 0.8):
        image = imager.image(density, shot, focal_z_um=layer_z - defocus)
        c1 = windowed_coefficient(image, k_half, OPTICS_3D.pixel_size_um)
        c2 = windowed_coefficient(image, k, OPTICS_3D.pixel_size_um)
        otf1 = pupil_autocorrelation_otf(OPTICS_3D, math.hypot(*k_half), defocus)
        otf2 = pupil_autocorrelation_otf(OPTICS_3D, math.hypot(*k), defocus)
        expected1 = m1 / 2 * math.cos(2 * np.pi * kz * defocus) * otf1 * pixel_box(k_half, 0.1)
        expected2 = m2 / 2 * otf2 * pixel_box(k, 0.1)
        assert c1 == pytest.approx(expected1 * np.exp(1j * psi), abs=1e-4)
        assert c2 == pytest.approx(expected2 * np.exp(2j * psi), abs=5e-5)
        depth_k.append(abs(c2))
    # the order-1 sign flips once the axial cosine does (2π kz 0.8 > π/2)
    assert math.cos(2 * np.pi * kz * 0.8) < 0
    # out of focus the layer shows less modulation
    assert depth_k[0] > depth_k[1] > depth_k[2] > depth_k[3]


def test_plane_just_out_of_focus_matches_in_focus_2d_image():
    ill = default_sim_illumination(OPTICS_3D, EXCITATION_UM, three_beam=True)
    rng = np.random.default_rng(5)
    density = rng.random((128, 128))
    image_2d = sim_image_2d(density, 0.05, ill, 4, OPTICS_3D, upsample=2)
    near = np.array([1e-4])
    image_3d = sim_image_3d(density[None], near, 0.0, 0.05, ill, 4, OPTICS_3D, upsample=2)
    np.testing.assert_allclose(image_3d, image_2d, rtol=0, atol=1e-4 * image_2d.mean())
    far = sim_image_3d(density[None], np.array([0.5]), 0.0, 0.05, ill, 4, OPTICS_3D, upsample=2)
    assert np.std(far) < 0.8 * np.std(image_2d)  # out of focus: blurred


# ---------------------------------------------------------------- photon conservation
def test_total_photons_equal_total_emission_2d_and_3d():
    rng = np.random.default_rng(7)
    ill = default_sim_illumination(OPTICS, EXCITATION_UM, angle0_rad=0.4, modulation=0.9)
    density = rng.random((96, 128))
    y = (np.arange(96) * 0.05)[:, None]
    x = (np.arange(128) * 0.05)[None, :]
    for shot in range(ill.n_shots):
        image = sim_image_2d(density, 0.05, ill, shot, OPTICS, upsample=2)
        assert image.shape == (48, 64)
        emission = density * illumination_pattern(ill, shot, y, x)
        assert image.sum() == pytest.approx(emission.sum(), rel=1e-10)

    ill3 = default_sim_illumination(OPTICS_3D, EXCITATION_UM, three_beam=True)
    z_um = np.array([-0.4, 0.1, 0.5])
    density3 = rng.random((3, 96, 128))
    for shot, focal in ((0, 0.0), (7, 0.25), (13, -0.3)):
        image = sim_image_3d(density3, z_um, focal, 0.05, ill3, shot, OPTICS_3D, upsample=2)
        emission = density3 * illumination_pattern(
            ill3, shot, y[None], x[None], (z_um - focal)[:, None, None]
        )
        assert image.sum() == pytest.approx(emission.sum(), rel=1e-10)


def test_camera_pixel_transfer_vanishes_at_multiples_of_inverse_pixel():
    t = camera_pixel_transfer((40, 40), 0.025, 0.1)  # frequency step 1 cycle/µm
    assert t[0, 0] == 1.0
    assert abs(t[0, 10]) < 1e-15 and abs(t[10, 0]) < 1e-15  # u = 10 cycles/µm = 1/P
    assert t[0, 5] == pytest.approx(2 / np.pi)  # sinc(1/2)


# ---------------------------------------------------------------- configuration and validation
def test_default_illumination_geometry():
    ill = default_sim_illumination(OPTICS, EXCITATION_UM, angle0_rad=0.1)
    angles = [math.atan2(ky, kx) for ky, kx in ill.k_per_um]
    np.testing.assert_allclose(np.diff(angles) % np.pi, np.pi / 3, atol=1e-12)
    assert angles[0] == pytest.approx(0.1)
    for ky, kx in ill.k_per_um:
        assert math.hypot(ky, kx) == pytest.approx(0.85 * 2 * 1.0 / 0.5)
    assert ill.n_phases == 3 and ill.modulation == ((0.8,),) * 3 and ill.axial_k_per_um is None
    ill3 = default_sim_illumination(OPTICS, EXCITATION_UM, three_beam=True, modulation=0.6)
    assert ill3.n_phases == 5
    assert ill3.modulation[0] == pytest.approx((0.6 * 4 / 3, 0.6 * 2 / 3))
    orders = pattern_orders(ill3, 6)
    assert [o.order for o in orders] == [0, 1, 2]
    assert orders[1].k_per_um == pytest.approx(tuple(v / 2 for v in ill3.k_per_um[1]))
    assert orders[2].phase_rad == pytest.approx(2 * orders[1].phase_rad)


def test_store_round_trip():
    ill = default_sim_illumination(OPTICS, EXCITATION_UM, three_beam=True)
    stored = ill.to_store()
    assert set(stored) >= {"n_orientations", "n_phases", "excitation_wavelength_um", "k_per_um",
                           "phase_rad", "modulation", "three_beam", "axial_k_per_um"}
    assert isinstance(stored["k_per_um"][0], list)
    assert SimIllumination.from_store(stored) == ill
    # a store written by another program: no extras, an unknown field, modality gives three_beam
    minimal = {"n_orientations": 3, "n_phases": 3, "excitation_wavelength_um": 0.488, "vendor": "x"}
    read = SimIllumination.from_store(minimal, modality="sim2d")
    assert not read.three_beam and read.k_per_um is None and not read.is_complete
    with pytest.raises(ValueError, match="modality"):
        SimIllumination.from_store(minimal)
    with pytest.raises(ValueError, match="k_per_um is None"):
        SimImager(OPTICS, read, (64, 64), 0.05)


def test_validation_names_the_field():
    base = default_sim_illumination(OPTICS, EXCITATION_UM).model_dump()
    with pytest.raises(ValueError, match="k_per_um"):
        SimIllumination.model_validate({**base, "k_per_um": [[1.0, 2.0]] * 2})
    with pytest.raises(ValueError, match="phase_rad"):
        SimIllumination.model_validate({**base, "phase_rad": [0.0]})
    with pytest.raises(ValueError, match="modulation"):
        SimIllumination.model_validate({**base, "modulation": [[0.5, 0.2]] * 3})
    with pytest.raises(ValueError, match="modulation"):
        SimIllumination.model_validate({**base, "modulation": [[1.2]] * 3})
    with pytest.raises(ValueError, match="n_phases"):
        SimIllumination.model_validate({**base, "n_phases": 2})
    with pytest.raises(ValueError, match="n_phases"):
        SimIllumination.model_validate({**base, "three_beam": True, "modulation": [[1.0, 0.5]] * 3})
    with pytest.raises(ValueError, match="modulation"):  # negative three-beam pattern
        SimIllumination.model_validate(
            {**base, "n_phases": 5, "three_beam": True, "modulation": [[1.5, 0.5]] * 3}
        )
    with pytest.raises(ValueError, match="axial_k_per_um"):
        SimIllumination.model_validate({**base, "axial_k_per_um": 0.5})
    with pytest.raises(ValueError, match="excitation_wavelength_um"):
        SimIllumination.model_validate({**base, "excitation_wavelength_um": 488.0})
    ill = SimIllumination.model_validate(base)
    with pytest.raises(ValueError, match="shot"):
        ill.orientation_and_phase(9)
    # pattern beyond what the objective can form: error; beyond the detection OTF: warning
    too_fine = ill.replace(k_per_um=[[0.0, 2 * 1.0 / EXCITATION_UM * 1.01]] * 3)
    with pytest.raises(ValueError, match="k_per_um"):
        check_illumination_for_optics(too_fine, OPTICS)
    invisible = ill.replace(k_per_um=[[0.0, 4.2]] * 3)  # 2NA/λ_em = 4 < 4.2 < 2NA/λ_ex = 4.44
    with pytest.warns(UserWarning, match="detection cutoff"):
        check_illumination_for_optics(invisible, OPTICS)
    with pytest.raises(ValueError, match="fraction_of_cutoff"):
        default_sim_illumination(OPTICS, EXCITATION_UM, fraction_of_cutoff=-0.1)


def test_imager_rejects_mismatched_grids():
    ill = default_sim_illumination(OPTICS, EXCITATION_UM)
    with pytest.raises(ValueError, match="whole number"):
        SimImager(OPTICS, ill, (64, 64), 0.04)
    with pytest.raises(ValueError, match="fine_shape"):
        SimImager(OPTICS, ill, (63, 64), 0.05)
    coarse = OPTICS.model_copy(update={"pixel_size_um": 0.2})
    with pytest.raises(ValueError, match="fine_pixel_um"):
        SimImager(coarse, ill, (64, 64), 0.2)
    with pytest.raises(ValueError, match="upsample"):
        sim_image_2d(np.ones((64, 64)), 0.04, ill, 0, OPTICS, upsample=2)
    imager = SimImager(OPTICS, ill, (64, 64), 0.05)
    with pytest.raises(ValueError, match="density"):
        imager.image(np.ones((32, 32)), 0)
    with pytest.raises(ValueError, match="z_um"):
        imager.image(np.ones((2, 64, 64)), 0)
