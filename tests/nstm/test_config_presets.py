"""The per-modality defaults: 2D SIM gets its measured schedule, the others are unchanged."""

import pytest

from nstm_acquire.nstm.config import default_config, sim2d_schedule


def test_sim2d_defaults_change_only_the_schedule_and_the_motion_stride():
    base, sim2d = default_config(), default_config("sim2d")
    assert default_config("dpc") == base and default_config("sim3d") == base
    assert sim2d == sim2d_schedule(base)
    assert (sim2d.fit.max_steps, sim2d.fit.coarse_to_fine_steps, sim2d.fit.patience) == (300, 75, 2)
    assert sim2d.fit.max_steps < base.fit.max_steps and sim2d.motion.stride_px == 32
    assert sim2d.scene == base.scene  # the same scene network
    same_fit = {k: v for k, v in sim2d.fit.model_dump().items() if k not in ("max_steps", "coarse_to_fine_steps", "patience")}
    assert same_fit == {k: v for k, v in base.fit.model_dump().items() if k in same_fit}


def test_an_unknown_modality_is_refused_in_one_line():
    with pytest.raises(ValueError, match="modality='sim4d'"):
        default_config("sim4d")
