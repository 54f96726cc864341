"""The default 3D SIM plane spacing: the Nyquist step of the three-beam axial passband."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from nstm_acquire.acquire.sequences import AcquisitionPlan, build_sequence, default_z_step_um, plane_positions_um
from nstm_acquire.hardware.config import default_config_path, load_hardware_config
from nstm_acquire.hardware.simulated.world import sim_illumination_from_config
from nstm_acquire.physics.sim.illumination import sim3d_axial_support_per_um


def _simulated_sim3d():
    cfg = load_hardware_config(default_config_path()).sim3d
    return cfg, sim_illumination_from_config(cfg, three_beam=True)


def test_default_z_step_is_the_nyquist_step_of_the_simulated_optics_3d_sim_passband():
    cfg, ill = _simulated_sim3d()
    n, na, em, ex = cfg.optics.immersion_index, cfg.optics.na_detection, cfg.optics.wavelength_um, cfg.excitation_wavelength_um
    k = max(math.hypot(*kk) for kk in ill.k_per_um)
    # analytic: widefield axial extent n(1 - cos α)/λ_em, plus order 1's axial shift n(1 - cos θ)/λ_ex
    widefield = (n - math.sqrt(n**2 - na**2)) / em
    order_1 = (n - math.sqrt(n**2 - (ex * k / 2) ** 2)) / ex
    assert order_1 == pytest.approx(ill.axial_k_per_um, rel=1e-9)
    support = widefield + order_1
    assert sim3d_axial_support_per_um(cfg.optics, ex, k) == pytest.approx(support, rel=1e-9)
    assert 2.4 < support < 2.9  # cycles/µm: what the old default 0.25 µm (Nyquist 2.0) undersampled
    step = default_z_step_um(cfg.optics, ill)
    assert step == pytest.approx(1 / (2 * support), abs=1e-3) and step <= 1 / (2 * support)
    assert step == pytest.approx(0.178)  # the value the CLI help and the docs quote
    assert 1 / (2 * 0.25) < support  # 0.25 µm undersamples


def test_a_plan_without_z_step_takes_the_nyquist_step_when_it_meets_the_microscope():
    cfg, ill = _simulated_sim3d()
    setup = SimpleNamespace(optics=cfg.optics, illumination=ill)
    plan = AcquisitionPlan(modality="sim3d", n_planes=4)
    assert plan.z_step_um is None
    with pytest.raises(ValueError, match="z_step_um is not set"):
        build_sequence(plan, "SIM", ["s0"], 10.0)
    resolved = plan.for_setup(setup)
    assert np.allclose(np.diff(plane_positions_um(resolved)), 0.178)
    given = AcquisitionPlan(modality="sim3d", n_planes=4, z_step_um=0.1)
    assert given.for_setup(setup).z_step_um == 0.1  # the user's step is kept
    assert AcquisitionPlan(modality="sim2d").for_setup(setup).z_step_um is None
