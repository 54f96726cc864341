"""The simulated microscope's three-beam pattern: FORMAT.md's 3D pattern, physically possible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nstm_acquire.hardware.config import default_config_path, load_hardware_config
from nstm_acquire.hardware.simulated.world import sim_illumination_from_config
from nstm_acquire.physics.sim.illumination import (
    THREE_BEAM_MAX_M1,
    illumination_pattern,
    three_beam_contrast,
)


def test_the_simulators_three_beam_pattern_is_formats_and_physically_possible():
    cfg = load_hardware_config(default_config_path()).sim3d
    ill = sim_illumination_from_config(cfg, three_beam=True)
    assert ill.three_beam and ill.n_phases == 5
    for m1, m2 in ill.modulation:
        assert three_beam_contrast(m1, m2) <= 1.0 + 1e-12  # some beam ratio and contrast give it
        assert m1 <= THREE_BEAM_MAX_M1 and m2 <= 1.0
    # FORMAT.md: 1 + m1 cos(2π kz z) cos(2π (k/2)·r + ψ) + m2 cos(2π k·r + 2ψ), ψ = phase_rad[d] + 2πp/N
    y = np.linspace(0.0, 1.5, 61)[:, None, None]
    x = np.linspace(0.0, 1.5, 61)[None, :, None]
    z = np.linspace(-0.6, 0.6, 7)[None, None, :]
    kz = ill.axial_k_per_um
    for shot in range(ill.n_shots):
        d, p = divmod(shot, ill.n_phases)
        (ky, kx), (m1, m2) = ill.k_per_um[d], ill.modulation[d]
        psi = ill.phase_rad[d] + 2 * math.pi * p / ill.n_phases
        lateral = 2 * math.pi * (ky * y + kx * x)
        expected = 1 + m1 * np.cos(2 * math.pi * kz * z) * np.cos(lateral / 2 + psi) + m2 * np.cos(lateral + 2 * psi)
        got = illumination_pattern(ill, shot, y, x, z)
        assert got == pytest.approx(expected, abs=1e-12)
        assert got.min() >= 0.0
