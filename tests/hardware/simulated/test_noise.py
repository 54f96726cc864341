"""Camera noise: sample mean and variance against the analytic model, clipping, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from nstm_acquire.hardware.simulated.noise import CameraNoise

N_PIXELS = 400_000


@pytest.mark.parametrize(
    ("photons", "noise"),
    [
        (20.0, CameraNoise()),
        (300.0, CameraNoise(gain_e_per_adu=2.0, read_noise_e=3.0, offset_adu=50.0)),
        (
            300.0,
            CameraNoise(gain_e_per_adu=0.8, read_noise_e=1.0, quantum_efficiency=0.6, bit_depth=12),
        ),
    ],
)
def test_mean_and_variance_match_the_analytic_model(photons, noise):
    frame = noise.apply(np.full(N_PIXELS, photons), np.random.default_rng(7))
    assert frame.dtype == np.uint16 and frame.shape == (N_PIXELS,)
    counts = frame.astype(np.float64)
    mean = float(noise.expected_adu(np.array(photons)))
    var = float(noise.variance_adu(np.array(photons)))
    assert mean == pytest.approx(
        noise.quantum_efficiency * photons / noise.gain_e_per_adu + noise.offset_adu
    )
    # within 5 standard errors of the sample mean and of the sample variance
    assert abs(counts.mean() - mean) < 5 * math.sqrt(var / N_PIXELS)
    assert abs(counts.var(ddof=1) - var) < 5 * var * math.sqrt(2 / (N_PIXELS - 1))


def test_mean_follows_the_expected_photons_per_pixel():
    noise = CameraNoise(read_noise_e=2.0)
    photons = np.linspace(0.0, 1000.0, 11)[:, None] * np.ones((1, 20_000))
    frame = noise.apply(photons, np.random.default_rng(3)).astype(np.float64)
    sem = np.sqrt(noise.variance_adu(photons[:, 0]) / photons.shape[1])
    assert np.all(np.abs(frame.mean(axis=1) - noise.expected_adu(photons[:, 0])) < 5 * sem)


def test_no_noise_no_light_gives_exactly_the_offset():
    noise = CameraNoise(read_noise_e=0.0, offset_adu=100.0)
    frame = noise.apply(np.zeros((4, 5)), np.random.default_rng(0))
    np.testing.assert_array_equal(frame, np.full((4, 5), 100, dtype=np.uint16))


def test_clipping_at_full_scale_and_at_zero():
    bright = np.full((64, 64), 1e7)
    assert np.all(CameraNoise().apply(bright, np.random.default_rng(0)) == 65535)
    assert np.all(CameraNoise(bit_depth=12).apply(bright, np.random.default_rng(0)) == 4095)
    # dark, no offset, read noise 5 e at 1 e/count: negative counts clip to 0 instead of wrapping;
    # a count rounds to 0 when e < 0.5, probability Φ(0.5 / 5)
    noise = CameraNoise(gain_e_per_adu=1.0, read_noise_e=5.0, offset_adu=0.0)
    frame = noise.apply(np.zeros(N_PIXELS), np.random.default_rng(1))
    p_zero = 0.5 * (1 + math.erf(0.1 / math.sqrt(2)))
    assert abs(np.mean(frame == 0) - p_zero) < 5 * math.sqrt(p_zero * (1 - p_zero) / N_PIXELS)
    assert frame.max() < 40  # nothing wrapped around to 65535
    assert noise.full_scale_adu == 65535


def test_same_generator_state_same_frame():
    photons = np.random.default_rng(0).uniform(0, 100, (32, 32))
    a = CameraNoise().apply(photons, np.random.default_rng(11))
    b = CameraNoise().apply(photons, np.random.default_rng(11))
    c = CameraNoise().apply(photons, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gain_e_per_adu": 0.0}, "gain_e_per_adu"),
        ({"read_noise_e": -1.0}, "read_noise_e"),
        ({"bit_depth": 7}, "bit_depth"),
        ({"bit_depth": 17}, "bit_depth"),
        ({"quantum_efficiency": 1.5}, "quantum_efficiency"),
        ({"offset_adu": float("nan")}, "offset_adu"),
        ({"gain": 1.0}, "gain"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        CameraNoise(**kwargs)


def test_bad_photon_arrays_are_rejected():
    for bad in (np.array([1.0, -0.5]), np.array([np.nan])):
        with pytest.raises(ValueError, match="expected_photons"):
            CameraNoise().apply(bad, np.random.default_rng(0))


def test_store_attributes():
    assert CameraNoise(gain_e_per_adu=0.25, read_noise_e=1.1, offset_adu=90).to_store() == {
        "offset_adu": 90.0,
        "gain_e_per_adu": 0.25,
        "read_noise_e": 1.1,
    }
