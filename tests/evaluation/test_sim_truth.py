"""The apodised, band-limited SIM ground truth (``evaluation.metrics.sim_truth``).

Known answers: emission 0.52 µm at NA 1.2 in water, pattern at 0.85 of the cut-off, so the
extended lateral support is K = 2NA/λ + |k| = 8.54 cycles/µm and the three-beam axial support
2.29 cycles/µm. A cosine-apodised disc of radius K has a PSF of FWHM about 0.9/K = 0.105 µm
and a first negative ring of about 5 % of its peak; axially (support K_z) the FWHM is
about 0.82/K_z = 0.36 µm.
"""

from __future__ import annotations

import numpy as np
import pytest
from sim_data import OPTICS, illumination

from nstm_acquire.evaluation.metrics import sim_truth
from nstm_acquire.physics.sim.wiener import sim_support_per_um


def fwhm(profile: np.ndarray, step: float) -> float:
    p = profile / profile.max()
    i = int(np.argmax(p))
    right = i + int(np.argmax(p[i:] < 0.5))
    left = i - int(np.argmax(p[i::-1] < 0.5))
    r = right - 1 + (p[right - 1] - 0.5) / (p[right - 1] - p[right])
    lft = left + 1 - (p[left + 1] - 0.5) / (p[left + 1] - p[left])
    return float((r - lft) * step)


def test_sim_truth_of_a_point_is_a_compact_peak_at_the_sim_resolution_with_a_shallow_ring():
    ill = illumination(False)
    lateral, _ = sim_support_per_um(OPTICS, ill)
    px = 0.02
    point = np.zeros((160, 160))
    point[80, 80] = 1.0
    t = sim_truth(point, px, OPTICS, ill)
    assert np.unravel_index(np.argmax(t), t.shape) == (80, 80)
    width = fwhm(t[80], px)
    assert 0.85 / lateral < width < 0.95 / lateral, (width, 1 / lateral)  # 0.105 µm
    assert t.min() > -0.06 * t.max(), t.min() / t.max()  # no ring deeper than 6 %
    np.testing.assert_allclose(t.sum(), 1.0, rtol=1e-9)  # the filter keeps the mean


def test_sim_truth_3d_of_a_point_is_compact_laterally_and_axially_and_does_not_wrap():
    ill = illumination(True)
    lateral, axial = sim_support_per_um(OPTICS, ill, 0.06)
    assert axial == pytest.approx(2.288, abs=0.01)
    px, dz = 0.025, 0.06
    point = np.zeros((16, 96, 96))
    point[8, 48, 48] = 1.0
    t = sim_truth(point, px, OPTICS, ill, dz)
    peak = t.max()
    assert np.unravel_index(np.argmax(t), t.shape) == (8, 48, 48)
    assert 0.85 / lateral < fwhm(t[8, 48], px) < 0.95 / lateral, fwhm(t[8, 48], px)
    assert 0.75 / axial < fwhm(t[:, 48, 48], dz) < 0.9 / axial, fwhm(t[:, 48, 48], dz)  # 0.36 µm
    assert t.min() > -0.08 * peak, t.min() / peak  # no ring deeper than 8 %
    # a point in the first plane: its blur does not wrap onto the last plane
    edge = np.zeros((16, 96, 96))
    edge[0, 48, 48] = 1.0
    te = sim_truth(edge, px, OPTICS, ill, dz)
    assert abs(te[-1]).max() < 0.02 * te.max()  # 0.9 µm away: the ring only (1.3 %), not the peak


def test_sim_truth_rejects_a_3d_density_without_its_plane_spacing():
    with pytest.raises(ValueError, match="z_step_um"):
        sim_truth(np.zeros((4, 16, 16)), 0.05, OPTICS, illumination(True))
