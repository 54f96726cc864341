"""Held-out pixels: the default draw over a measurement's pixel grid, and an explicit mask."""

import numpy as np
import pytest

from nstm_acquire.nstm.config import default_config
from nstm_acquire.nstm.fit import FitData, fit_masks, holdout_pixels


def _data(shape, **more):
    k = shape[0]
    return FitData(np.zeros(shape, np.float32), np.arange(k, dtype=float), np.arange(k), **more)


def test_default_masks_hold_out_the_same_pixels_of_every_row():
    cfg = default_config().with_fit(loss_margin_px=2, validation_fraction=0.1, seed=3)
    train, val = fit_masks(_data((4, 40, 50)), cfg.fit)
    held = holdout_pixels((40, 50), 0.1, 3)
    assert 0.07 < held.mean() < 0.13  # about the fraction asked for
    inner = np.zeros((40, 50))
    inner[2:-2, 2:-2] = 1
    for k in range(4):
        np.testing.assert_array_equal(val[k], inner * held)
        np.testing.assert_array_equal(train[k], inner * (1 - held))


def test_an_explicit_mask_and_weights():
    cfg = default_config().with_fit(loss_margin_px=0, validation_fraction=0.05, seed=0)
    held = np.zeros((3, 1, 2, 6), np.float32)
    held[1, 0, 1, 4] = 1.0  # one pixel of row 1 only
    weights = np.array([1.0, 1.0, 0.0], np.float32)  # row 2 is padding
    train, val = fit_masks(_data((3, 2, 2, 6), held_out=held, weights=weights), cfg.fit)
    assert val.sum() == 2 and val[1, :, 1, 4].all()  # the one pixel, in both channels
    assert train[1, :, 1, 4].sum() == 0 and train[0].sum() == 2 * 2 * 6 and train[2].sum() == 0
    with pytest.raises(ValueError, match="held_out"):
        _data((3, 2, 2, 6), held_out=np.zeros((3, 2, 5)))
