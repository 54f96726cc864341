"""Test set-up: CPU-only JAX and offscreen Qt, set before anything imports them; shared fixtures."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("NSTM_ACQUIRE_COMPILE_CACHE", "0")  # tests never write to the user's cache

import pytest  # noqa: E402


@pytest.fixture
def fast_sim():
    """A factory of small, fast simulated-microscope configurations."""
    from nstm_acquire.hardware.simulated.setup import simulated_config

    def make(**changes):
        changes.setdefault("frame_shape", (32, 32))
        changes.setdefault("realtime", False)
        return simulated_config(**changes)

    return make


@pytest.fixture
def open_scope():
    """Open microscopes and close them after the test."""
    from nstm_acquire.hardware.microscope import open_microscope

    opened = []

    def make(config, **kw):
        m = open_microscope(config, **kw)
        opened.append(m)
        return m

    yield make
    for m in opened:
        m.close()
