"""DPC physics: exact partially coherent imaging, weak-object transfer functions, Tikhonov.

Optics: λ = 0.52 µm, NA = 0.25, pixel 0.5 µm (below λ / (4 NA) = 0.52 µm, so the sampled
intensity carries its whole band); a 9x9 LED array, 4 mm pitch, 70 mm below the sample.
"""

import jax
import numpy as np
import pytest

from nstm_acquire.hardware.simulated.dpc_imaging import dpc_background, dpc_image_exact
from nstm_acquire.physics.dpc.forward import (
    dpc_normalise,
    dpc_regulariser,
    dpc_render,
    dpc_tikhonov,
    dpc_transfer_functions,
    dpc_transfer_functions_for,
)
from nstm_acquire.physics.dpc.illumination import (
    DpcIllumination,
    LedArrayGeometry,
    brightfield_leds,
    dpc_half_circle_patterns,
)
from nstm_acquire.physics.optics import Optics, frequency_grid, pupil

OPTICS = Optics(wavelength_um=0.52, na_detection=0.25, pixel_size_um=0.5)
LED_NA = LedArrayGeometry(rows=9, cols=9, pitch_mm=4.0, distance_mm=70.0).led_na()
HALF_CIRCLES = DpcIllumination.half_circles(LED_NA, OPTICS.na_detection)
N = 96


def flip_frequencies(a):
    """a(-u) on the FFT grid (index k -> -k mod n) along the last two axes."""
    return np.roll(np.flip(a, axis=(-2, -1)), shift=(1, 1), axis=(-2, -1))


def smooth_field(seed, n=N, sigma_per_um=0.15):
    """Random real field with a Gaussian spectrum, max |value| = 1."""
    uy, ux = frequency_grid((n, n), OPTICS.pixel_size_um)
    white = np.random.default_rng(seed).normal(size=(n, n))
    field = np.real(
        np.fft.ifft2(np.fft.fft2(white) * np.exp(-(uy**2 + ux**2) / (2 * sigma_per_um**2)))
    )
    return field / np.abs(field).max()


def exact_normalised(mu, phi, illumination):
    images = []
    for s in range(illumination.n_shots):
        na, b = illumination.lit(s)
        images.append(
            dpc_image_exact(mu, phi, OPTICS, na, b) / dpc_background(mu.shape, OPTICS, na, b) - 1
        )
    return np.stack(images)


@pytest.fixture(scope="module")
def transfer():
    return dpc_transfer_functions_for((N, N), OPTICS, HALF_CIRCLES)


# ---------------------------------------------------------------- exact simulation


def test_exact_image_matches_tilted_plane_wave_for_on_grid_led():
    """Independent check of the sign convention: t * exp(i2π u_j·r), then the unshifted pupil."""
    n = 64
    bin_per_um = 1.0 / (n * OPTICS.pixel_size_um)
    na = np.array([[2 * bin_per_um * OPTICS.wavelength_um, -5 * bin_per_um * OPTICS.wavelength_um]])
    rng = np.random.default_rng(0)
    mu, phi = 0.3 * rng.random((n, n)), 2.0 * rng.random((n, n))
    y, x = np.meshgrid(np.arange(n) * 0.5, np.arange(n) * 0.5, indexing="ij")
    wave = np.exp(2j * np.pi * (na[0, 0] * y + na[0, 1] * x) / OPTICS.wavelength_um)
    field = np.fft.ifft2(np.fft.fft2(np.exp(-mu + 1j * phi) * wave) * pupil((n, n), OPTICS))
    expected = np.abs(field) ** 2
    got = dpc_image_exact(mu, phi, OPTICS, na)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * expected.max())
    # the opposite tilt gives a different image, so the check above can tell the sign
    assert np.abs(dpc_image_exact(mu, phi, OPTICS, -na) - expected).max() > 0.05 * expected.max()


def test_blank_object_gives_background_and_brightness_adds_incoherently():
    na = np.array([[0.0, 0.0], [0.0731, -0.1234], [0.3, 0.0]])  # off-grid, the last dark-field
    brightness = np.array([1.0, 2.5, 4.0])
    blank = dpc_image_exact(np.zeros((N, N)), np.zeros((N, N)), OPTICS, na, brightness)
    background = dpc_background((N, N), OPTICS, na, brightness)
    np.testing.assert_allclose(background, 3.5)  # the dark-field LED adds nothing
    np.testing.assert_allclose(blank, background, rtol=1e-5)
    mu, phi = 0.1 * smooth_field(1), 0.5 * smooth_field(2)
    total = dpc_image_exact(mu, phi, OPTICS, na, brightness)
    parts = sum(
        b * dpc_image_exact(mu, phi, OPTICS, na[j : j + 1]) for j, b in enumerate(brightness)
    )
    np.testing.assert_allclose(total, parts, rtol=1e-4)
    # a dark-field LED sees the object's scatter only: nonzero signal on a zero background
    assert dpc_image_exact(mu, phi, OPTICS, na[2:]).max() > 0
    with pytest.raises(ValueError, match="brightness"):
        dpc_image_exact(mu, phi, OPTICS, na, brightness[:2])
    with pytest.raises(ValueError, match="led_na_lit"):
        dpc_image_exact(mu, phi, OPTICS, np.zeros((2, 3)))


# ---------------------------------------------------------------- transfer functions


@pytest.mark.parametrize("which", ["phase", "absorption", "both"])
def test_linear_model_agrees_with_exact_to_first_order(transfer, which):
    h_mu, h_phi = transfer
    errors = []
    for amplitude in (0.02, 0.01):
        mu = amplitude * smooth_field(11) * (which != "phase")
        phi = amplitude * smooth_field(12) * (which != "absorption")
        exact = exact_normalised(mu, phi, HALF_CIRCLES)
        linear = np.asarray(dpc_render(mu, phi, h_mu, h_phi))
        assert linear.shape == (4, N, N) and np.isrealobj(linear)
        errors.append(np.linalg.norm(linear - exact) / np.linalg.norm(exact))
    assert errors[0] < 0.05
    # first order: the residual is second order, so halving the object halves the relative error
    assert 0.4 < errors[1] / errors[0] < 0.6, errors


def test_transfer_function_symmetries(transfer):
    h_mu, h_phi = transfer
    # real kernels: H(-u) = conj H(u) for both
    np.testing.assert_allclose(flip_frequencies(h_mu), np.conj(h_mu), atol=1e-6)
    np.testing.assert_allclose(flip_frequencies(h_phi), np.conj(h_phi), atol=1e-6)
    # absorption: real and even; phase: imaginary and odd (i times the anti-Hermitian part of C/B)
    assert np.abs(h_mu.imag).max() < 1e-6 and np.abs(h_phi.real).max() < 1e-6
    np.testing.assert_allclose(flip_frequencies(h_phi), -h_phi, atol=1e-6)
    # every shot: H_mu(0) = -2, H_phi(0) = 0; phase contrast exists away from DC
    np.testing.assert_allclose(h_mu[:, 0, 0], -2.0, atol=1e-6)
    np.testing.assert_allclose(h_phi[:, 0, 0], 0.0, atol=1e-6)
    assert np.abs(h_phi).max() > 0.5
    # left (shot 2) and right (shot 3): mirror images along x, and of opposite sign
    top, bottom, left, right = h_phi
    np.testing.assert_allclose(right, np.roll(np.flip(left, axis=-1), 1, axis=-1), atol=1e-6)
    np.testing.assert_allclose(right, -left, atol=1e-6)
    np.testing.assert_allclose(bottom, -top, atol=1e-6)
    # the top/bottom pair is the left/right pair turned by 90 degrees
    np.testing.assert_allclose(np.swapaxes(top, 0, 1), left, atol=1e-6)
    # phase sign: a left shot (na_x < 0) sees +i at small positive u_x (image ∝ +dphi/dx)
    assert left[0, 1].imag > 0


def test_symmetric_brightfield_source_has_no_phase_contrast():
    full = [brightfield_leds(LED_NA, OPTICS.na_detection).tolist()]
    h_mu, h_phi = dpc_transfer_functions((N, N), OPTICS, LED_NA, full)
    assert h_mu[0, 0, 0] == pytest.approx(-2.0, abs=1e-6)
    assert np.abs(h_phi).max() < 1e-6
    # absorption passes up to 2 NA / λ and nothing beyond
    uy, ux = frequency_grid((N, N), OPTICS.pixel_size_um)
    radius = np.hypot(uy, ux)
    assert np.all(h_mu[0][radius > 2 * OPTICS.cutoff_per_um] == 0)
    assert np.all(np.abs(h_mu[0][radius < 0.9 * OPTICS.cutoff_per_um]) > 0.1)


def test_brightness_weights_transfer_functions():
    lit = dpc_half_circle_patterns(LED_NA, OPTICS.na_detection)["left"]
    brightness = np.ones(len(LED_NA))
    brightness[lit[0]] = 5.0
    h_mu, h_phi = dpc_transfer_functions((N, N), OPTICS, LED_NA, [lit], brightness)
    mu, phi = 0.01 * smooth_field(3), 0.01 * smooth_field(4)
    exact = dpc_image_exact(mu, phi, OPTICS, LED_NA[lit], brightness[lit])
    exact = exact / dpc_background((N, N), OPTICS, LED_NA[lit], brightness[lit]) - 1
    unweighted = dpc_transfer_functions((N, N), OPTICS, LED_NA, [lit])
    linear = np.asarray(dpc_render(mu, phi, h_mu, h_phi))[0]
    linear_unweighted = np.asarray(dpc_render(mu, phi, *unweighted))[0]
    err = np.linalg.norm(linear - exact)
    assert err < 0.05 * np.linalg.norm(exact)
    assert err < 0.5 * np.linalg.norm(linear_unweighted - exact)


def test_dark_shot_is_rejected():
    with pytest.raises(ValueError, match="brightfield"):
        dpc_transfer_functions((N, N), OPTICS, np.array([[0.0, 0.3]]), [[0]])


# ---------------------------------------------------------------- render, normalise, Tikhonov


def test_render_matches_direct_two_fft_formula_and_broadcasts(transfer):
    h_mu, h_phi = transfer
    mu = np.stack([0.05 * smooth_field(20 + k) for k in range(4)])
    phi = np.stack([0.3 * smooth_field(30 + k) for k in range(4)])
    direct = np.real(np.fft.ifft2(h_mu * np.fft.fft2(mu) + h_phi * np.fft.fft2(phi)))
    got = np.asarray(jax.jit(dpc_render)(mu, phi, h_mu, h_phi))
    np.testing.assert_allclose(got, direct, atol=1e-5 * np.abs(direct).max())
    single = np.asarray(dpc_render(mu[1], phi[1], h_mu, h_phi))
    np.testing.assert_allclose(single[1], direct[1], atol=1e-5 * np.abs(direct).max())
    with pytest.raises(ValueError, match="mu and phi"):
        dpc_render(mu, phi[0], h_mu, h_phi)


def test_normalise():
    rng = np.random.default_rng(5)
    background = 100 + 10 * rng.random((2, 8, 8))
    signal = 1 + 0.1 * rng.standard_normal((2, 8, 8))
    raw = 20 + (background - 20) * signal
    np.testing.assert_allclose(dpc_normalise(raw, background, offset_adu=20), signal - 1, atol=1e-6)
    per_frame = dpc_normalise(raw.astype(np.uint16))
    np.testing.assert_allclose(per_frame.mean(axis=(-2, -1)), 0, atol=1e-6)
    frame = raw[1].astype(np.uint16).astype(np.float64)
    np.testing.assert_allclose(per_frame[1], frame / frame.mean() - 1, atol=1e-6)
    with pytest.raises(ValueError, match="offset_adu"):
        dpc_normalise(raw, background, offset_adu=200)
    with pytest.raises(ValueError, match="background shape"):
        dpc_normalise(raw, background[:, :4])


def test_tikhonov_recovers_weak_phase_object(transfer):
    h_mu, h_phi = transfer
    phi = 0.1 * smooth_field(7)
    mu = np.zeros_like(phi)
    raw = np.stack([dpc_image_exact(mu, phi, OPTICS, *HALF_CIRCLES.lit(s)) for s in range(4)])
    background = np.stack([dpc_background((N, N), OPTICS, *HALF_CIRCLES.lit(s)) for s in range(4)])
    normalised = dpc_normalise(raw, background)
    mu_rec, phi_rec = jax.jit(dpc_tikhonov)(normalised, h_mu, h_phi)
    mu_rec, phi_rec = np.asarray(mu_rec), np.asarray(phi_rec)
    uy, ux = frequency_grid((N, N), OPTICS.pixel_size_um)
    visible = (
        np.hypot(uy, ux) >= 0.1 * OPTICS.cutoff_per_um
    )  # DPC cannot see the lowest frequencies

    def high_pass(a):
        return np.real(np.fft.ifft2(np.fft.fft2(a) * visible))

    truth, rec = high_pass(phi), high_pass(phi_rec)
    correlation = np.corrcoef(truth.ravel(), rec.ravel())[0, 1]
    assert correlation > 0.95  # positive: the sign is right
    slope = np.sum(rec * truth) / np.sum(truth * truth)
    assert 0.8 < slope < 1.2
    assert np.abs(mu_rec).max() < 0.1 * np.abs(phi).max()  # little cross-talk into absorption
    with pytest.raises(ValueError, match="reg_mu"):
        dpc_tikhonov(normalised, h_mu, h_phi, reg_mu=0.0)


def test_tikhonov_minimises_the_regularised_loss():
    """The closed form is the minimiser of Σ (render - data)² + penalty: its gradient vanishes.

    Top, right and one brightened LED: an asymmetric set, so absorption and phase couple.
    """
    patterns = dpc_half_circle_patterns(LED_NA, OPTICS.na_detection, axes=("top", "right"))
    brightness = np.ones(len(LED_NA))
    brightness[patterns["top"][0]] = 4.0
    shots = [*patterns.values(), patterns["top"][:3]]
    h_mu, h_phi = dpc_transfer_functions((N, N), OPTICS, LED_NA, shots, brightness)
    assert np.abs(np.sum(np.conj(h_mu) * h_phi, axis=0)).max() > 0.1  # coupled 2x2 system
    rng = np.random.default_rng(9)
    data = 0.01 * rng.standard_normal((3, N, N)).astype(np.float32)
    reg = 1e-2
    mu, phi = dpc_tikhonov(data, h_mu, h_phi, reg, reg)

    def loss(m, p):
        return np.float32(0.5) * (
            jax.numpy.sum((dpc_render(m, p, h_mu, h_phi) - data) ** 2)
            + dpc_regulariser(m, p, reg, reg)
        )

    grad_mu, grad_phi = jax.grad(loss, argnums=(0, 1))(mu, phi)
    grad0_mu, grad0_phi = jax.grad(loss, argnums=(0, 1))(np.zeros_like(mu), np.zeros_like(phi))
    assert np.abs(grad_mu).max() < 1e-3 * np.abs(grad0_mu).max()
    assert np.abs(grad_phi).max() < 1e-3 * np.abs(grad0_phi).max()


def test_phase_step_left_right_images():
    """Phase 0 left, 0.3 rad right (smoothed), imaged exactly under left and right half circles."""
    n = 128
    x = np.arange(n)
    _, ux = frequency_grid((1, n), OPTICS.pixel_size_um)
    step = np.real(
        np.fft.ifft(np.fft.fft((x >= n // 2).astype(float)) * np.exp(-(ux[0] ** 2) / (2 * 0.2**2)))
    )
    phi = np.tile(0.3 * step, (n, 1))  # rises at x0 = n/2 - 0.5 px (falls again at the wrap)
    mu = np.zeros_like(phi)
    patterns = dpc_half_circle_patterns(LED_NA, OPTICS.na_detection, axes=("left", "right"))
    images = {}
    for side, lit in patterns.items():
        raw = dpc_image_exact(mu, phi, OPTICS, LED_NA[lit])
        images[side] = (raw / dpc_background((n, n), OPTICS, LED_NA[lit]) - 1)[n // 2]  # one row
    difference = images["left"] - images["right"]
    total = images["left"] + images["right"]
    mirror = slice(None, None, -1)  # index i -> n - 1 - i, the reflection about x0
    # mirror-antisymmetric pair: left(x0 + s) = -right(x0 - s), up to second order
    assert (
        np.abs(images["left"] + images["right"][mirror]).max() < 0.05 * np.abs(images["left"]).max()
    )
    # the sum is second order (small); the difference is a derivative-like bump, even about x0
    assert np.abs(total).max() < 0.05 * np.abs(difference).max()
    np.testing.assert_allclose(difference, difference[mirror], atol=0.01 * np.abs(difference).max())
    # positive at the rising edge (the left shot brightens where phi increases along +x)
    assert np.argmax(difference) in (n // 2 - 1, n // 2)
    assert difference[n // 2] > 0.1
    assert difference[0] < -0.1  # and negative at the falling edge at the wrap
    # the linear model predicts the same difference
    h_mu, h_phi = dpc_transfer_functions((n, n), OPTICS, LED_NA, list(patterns.values()))
    linear = np.asarray(dpc_render(mu, phi, h_mu, h_phi))[:, n // 2]
    np.testing.assert_allclose(
        linear[0] - linear[1], difference, atol=0.03 * np.abs(difference).max()
    )


def test_exact_image_in_led_batches_equals_one_batch(monkeypatch):
    import nstm_acquire.hardware.simulated.dpc_imaging as dpc_imaging

    na, b = HALF_CIRCLES.lit(0)
    mu, phi = 0.1 * smooth_field(40), 0.5 * smooth_field(41)
    whole = dpc_image_exact(mu, phi, OPTICS, na, b)
    monkeypatch.setattr(dpc_imaging, "_BATCH_ELEMENTS", 4 * N * N)  # 4 LEDs per batch
    np.testing.assert_allclose(dpc_image_exact(mu, phi, OPTICS, na, b), whole, rtol=1e-5)
