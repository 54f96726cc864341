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


def test_a_plane_shown_in_its_stack_range_is_dark_where_only_axial_tails_reach(tmp_path):
    # one bright bead in plane 0; plane 2 holds 2 % of it (an axial tail)
    plane0 = np.zeros((32, 32))
    plane0[15:18, 15:18] = 1.0
    tail = 0.02 * plane0
    own = comparison_figure(tmp_path / "own.png", [("a", plane0), ("tail", tail)], shared_range=[])
    stack = comparison_figure(
        tmp_path / "stack.png", [("a", plane0), ("tail", tail)], shared_range=[], limits={1: (0.0, 1.0)}
    )
    own_img, stack_img = mpimg.imread(own)[..., :3].mean(-1), mpimg.imread(stack)[..., :3].mean(-1)
    right = slice(own_img.shape[1] // 2, None)
    # in its own range the tail is saturated white; in the stack's range it is nearly black
    white_then_black = (own_img[:, right] > 0.95) & (stack_img[:, right] < 0.1)
    assert white_then_black.sum() > 200  # the 3 x 3 px bead, drawn about 8 screen px per px


def test_focus_plane_is_the_plane_where_the_beads_are_sharp():
    from nstm_acquire.evaluation.demo import focus_plane

    yy, xx = np.mgrid[:48, :48]
    stack = []
    for z in range(6):  # beads in focus at plane 4: the narrowest, highest spots there
        sigma = 1.0 + 0.8 * abs(z - 4)
        beads = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)) / sigma**2 for cy, cx in [(12, 12), (30, 36)])
        stack.append(100 + 50 * beads)
    assert focus_plane(np.array(stack)) == 4
