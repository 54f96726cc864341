"""The per-modality defaults: 2D and 3D SIM get their measured schedules, DPC its registration start
and a finer motion grid."""

import pytest

from nstm_acquire.nstm.config import default_config, sim2d_schedule, sim3d_schedule
from nstm_acquire.nstm.fit import build_model


def test_sim2d_defaults_change_only_the_schedule_the_motion_stride_and_the_scene_depth():
    base, sim2d = default_config(), default_config("sim2d")
    # DPC: the motion of a cold fit starts from a registration of the shots (large motion), on a
    # motion grid of at least 4 cells (the next test), and a fast sample is rendered at several
    # times across each exposure (6 px of blur or more); its warm windows stop within 2 % of the
    # reference held-out loss (5 % for the others), their motion the previous window's moved by
    # how far the sample travelled since; a window whose shots move unlike one translation starts
    # from a velocity-field fit, on a motion grid of cells at most 32 px wide
    dpc_motion = base.motion.model_copy(update={"spatial_min_cells": 4.0, "spatial_max_cell_px": 32.0})
    large = {"motion_start": "registration", "exposure_blur_px": 6.0}
    dpc_fit = {**large, "warm_target_tolerance": 0.02, "warm_motion_start": "offset", "deformation_start": "velocity"}
    assert default_config("dpc") == base.model_copy(update={"motion": dpc_motion}).with_fit(**dpc_fit)
    assert base.fit.warm_target_tolerance == 0.05 == default_config("sim2d").fit.warm_target_tolerance
    # 2D SIM too (a drift of many pattern periods); the base and 3D SIM start from zero motion
    # and render every shot at its exposure midpoint
    assert base.fit.motion_start == "zero" and sim2d.fit.motion_start == "registration"
    assert base.fit.exposure_blur_px is None and default_config("sim3d").fit.exposure_blur_px is None
    assert sim2d == sim2d_schedule(base).with_fit(**large)
    schedule = (
        "max_steps", "lr_decay_steps", "coarse_to_fine_steps", "eval_every", "patience", "scene_start",
        "start_alpha", "warm_patience", "warm_motion_start", "lr_warmup_steps",
    )
    assert tuple(getattr(sim2d.fit, k) for k in schedule) == (
        130, 300, 40, 10, 5, "conventional", 0.5, 3, "registration", 10,
    )
    # a 2D SIM warm fit's motion starts from a registration against the previous scene; DPC's and
    # 3D SIM's warm fits start where the previous window ended, without a warm-up
    assert base.fit.warm_motion_start == "previous" and base.fit.lr_warmup_steps == 0
    assert base.fit.scene_start == "random"  # DPC and 3D SIM start from random networks
    assert sim2d.fit.max_steps < base.fit.max_steps and sim2d.motion.stride_px == 32
    # the same scene network, with one hidden layer instead of two (the MLP over the grid was the step's cost)
    assert base.scene.layers == 2 and sim2d.scene == base.scene.model_copy(update={"layers": 1})
    same_fit = {k: v for k, v in sim2d.fit.model_dump().items() if k not in (*schedule, *large)}
    assert same_fit == {k: v for k, v in base.fit.model_dump().items() if k in same_fit}


def test_sim3d_defaults_are_the_sim_schedule_with_a_longer_ramp_and_no_warm_registration():
    base, sim2d, sim3d = default_config(), default_config("sim2d"), default_config("sim3d")
    assert sim3d == sim3d_schedule(base) and sim3d.name == "default-sim3d"
    # 450 steps over a 75-step ramp, decayed over 450 (no lost bead pairs on the vibrating 3D
    # beads); the warm motion where the last window ended (no 3D registration); cold motion from zero
    assert (sim3d.fit.max_steps, sim3d.fit.coarse_to_fine_steps, sim3d.fit.lr_decay_steps) == (450, 75, 450)
    assert sim3d.fit.max_steps < base.fit.max_steps
    # it stops after 100 steps without improvement, as the base (2D SIM: 50)
    assert sim3d.fit.patience * sim3d.fit.eval_every == base.fit.patience * base.fit.eval_every == 100
    assert sim3d.fit.warm_motion_start == "previous" and sim3d.fit.motion_start == "zero"
    # everything else as 2D SIM's: Wiener start, one hidden layer, motion every 32 px, warm-up, evaluation
    # its time-bin volumes rendered four at a time (memory); 2D SIM renders its 9 shots at once
    assert sim3d.fit.render_chunk == 4 and sim2d.fit.render_chunk == base.fit.render_chunk == 0
    differ = {
        "max_steps", "coarse_to_fine_steps", "lr_decay_steps", "patience", "warm_motion_start", "motion_start",
        "render_chunk", "exposure_blur_px",  # no registration in 3D, so nothing to sample the exposure by
    }
    assert {k: v for k, v in sim3d.fit.model_dump().items() if k not in differ} == {
        k: v for k, v in sim2d.fit.model_dump().items() if k not in differ
    }
    assert sim3d.scene == sim2d.scene and sim3d.motion == sim2d.motion
    assert sim3d.fit.scene_start == "conventional" and sim3d.scene.layers == 1 and sim3d.motion.stride_px == 32


def test_an_unknown_modality_is_refused_in_one_line():
    with pytest.raises(ValueError, match="modality='sim4d'"):
        default_config("sim4d")


@pytest.mark.parametrize(
    ("field_px", "base_cells", "dpc_cells"),
    # round(0.012 x field), at least 2 / at least 4 and at least one per 32 px
    [(64, 2, 4), (128, 2, 4), (256, 3, 8), (512, 6, 16), (300, 4, 10)],
)
def test_the_motion_grid_has_0_012_cells_per_pixel_and_dpc_at_least_four(field_px, base_cells, dpc_cells):
    """The finest spatial level of the motion grid: the published 0.012 x the field in cells, which
    DPC raises to 4 where that is fewer (a swirl needs more than 2 cells across the field) and to
    one cell per 32 px where that is more (the flow of a velocity-field start on a large field);
    the temporal resolution is untouched."""
    for modality, cells in ((None, base_cells), ("dpc", dpc_cells)):
        model = build_model(default_config(modality), (field_px, field_px), 2, n_shots=4)
        t_base, *lateral_base = model.motion_encoding.base_resolution
        t_fine, *lateral_fine = model.motion_encoding.finest_resolution
        assert lateral_fine == [cells, cells] and lateral_base == [1.0, 1.0]
        assert (t_base, t_fine) == (1.0, 2.0)
