"""The demo's 3D truth: the simulated beads, apodised to the SIM passband, at the acquired planes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from nstm_acquire.evaluation.demo import _sim_truth
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.world import SimulatedWorld


def test_demo_truth_3d_shows_every_bead_of_the_stack_where_it_is():
    cfg = simulated_config(
        frame_shape=(64, 64), seed=7, sample_options={"sim3d": {"z_range_um": [-0.3, 0.3], "n_beads": 8}}
    )
    world = SimulatedWorld(cfg, "sim3d")
    scene = world.scene("sim3d")
    optics = scene.optics.model_copy(update={"z_step_um": 0.125})
    reader = SimpleNamespace(
        optics=optics, frame_shape=(64, 64), attrs=SimpleNamespace(illumination=scene.illumination.to_store())
    )
    n_planes, px = 6, optics.pixel_size_um / 2
    truth = _sim_truth(world, "sim3d", reader, 0.0, n_planes, px, 0.0)
    assert truth.shape == (n_planes, 128, 128)
    planes = (np.arange(n_planes) - (n_planes - 1) / 2) * 0.125
    pos = scene.sample.phantom.positions_um
    inside = pos[(pos[:, 0] > planes[0]) & (pos[:, 0] < planes[-1])]
    inside = inside[np.all((inside[:, 1:] > 0.3) & (inside[:, 1:] < 64 * optics.pixel_size_um - 0.3), axis=1)]
    assert len(inside) >= 3, inside
    inside[:, 1:] = scene.sample.positions_at(0.0, inside[:, 1:])  # where they are at t = 0
    peak = truth.max()
    for z, y, x in inside:
        k = int(np.argmin(np.abs(planes - z)))  # the nearest acquired plane
        i, j = int(round(y / px)), int(round(x / px))
        local = truth[k, i - 2 : i + 3, j - 2 : j + 3]
        # a bright peak at the bead (not a stripe, not a ring): the maximum of its neighbourhood
        assert local.max() > 0.3 * peak, (z, y, x, local.max() / peak)
        assert local.max() >= truth[k, max(i - 6, 0) : i + 7, max(j - 6, 0) : j + 7].max() - 1e-9
    assert truth.min() > -0.1 * peak  # shallow negative lobes only
