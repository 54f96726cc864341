"""The comparison figure: rows of panels, motion arrows, a floor for densities."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np

from nstm_acquire.evaluation.figures import comparison_figure


def test_comparison_figure_lays_panels_out_in_rows_and_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(32, 32)) for _ in range(8)]
    motion = np.stack([np.full((32, 32), 0.0), np.full((32, 32), 3.0)])
    one_row = comparison_figure(tmp_path / "a.png", [(str(i), im) for i, im in enumerate(images[:4])], motion=motion, motion_on=2)
    two_rows = comparison_figure(
        tmp_path / "b.png", [(str(i), im) for i, im in enumerate(images)], motion=motion, motion_on=2, ncols=4, floor=0.0
    )
    a, b = mpimg.imread(one_row), mpimg.imread(two_rows)
    assert a.shape[1] == b.shape[1]  # four columns each
    assert b.shape[0] > 1.7 * a.shape[0]  # two rows
