"""The Microscope interface: what a real and the simulated microscope report, host cores, signals."""

import os
from pathlib import Path

import numpy as np
import pytest

from nstm_acquire.hardware.config import ConfigError, load_hardware_config
from nstm_acquire.hardware.microscope import HOST_CLOCK_DESCRIPTION, Microscope, open_microscope, use_psygnal_signals
from nstm_acquire.hardware.simulated.microscope import SIMULATED_CLOCK_DESCRIPTION, SimulatedMicroscope

DEMOCAMERA = Path(__file__).resolve().parents[2] / "hardware_configs" / "democamera_dpc.yaml"


@pytest.fixture
def democamera(open_scope):
    """The DemoCamera configuration opened on its own core (the real-hardware path)."""
    adapters = pytest.importorskip("mm_test_adapters")
    cfg = load_hardware_config(DEMOCAMERA)
    return cfg, open_scope(cfg, adapter_paths=[adapters.device_adapter_path()])


def test_the_simulated_microscope_answers_from_its_world(fast_sim, open_scope):
    scope = open_scope(fast_sim())
    assert isinstance(scope, SimulatedMicroscope) and scope.simulated and scope.owns_core
    world = scope.world
    cam = scope.config.camera
    assert scope.camera_model() == {
        "offset_adu": cam.offset_adu,
        "gain_e_per_adu": world.noise.gain_e_per_adu,
        "read_noise_e": world.noise.read_noise_e,
    }
    source = scope.timestamp_source()
    assert (source.key, source.unit, source.on_acquisition_clock) == ("HardwareTimestamp-s", "s", True)
    assert source.description == SIMULATED_CLOCK_DESCRIPTION
    assert scope.default_background("dpc") and not scope.default_background("sim2d")
    meta = scope.run_metadata()
    assert meta["simulated"] is True and meta["simulation"] == world.ground_truth_description()
    generation = world.clock.generation
    scope.acquisition_started()
    assert world.clock.generation == generation + 1 and world.clock.now() < 1.0


def test_sample_free_blanks_the_simulated_sample_and_always_restores_it(fast_sim, open_scope):
    scope = open_scope(fast_sim())
    with scope.sample_free():
        assert scope.world.blank
    assert not scope.world.blank
    with pytest.raises(RuntimeError), scope.sample_free():
        raise RuntimeError("snap failed")
    assert not scope.world.blank


def test_the_simulated_sim_pattern_is_reported_as_a_calibrated_one(fast_sim, open_scope):
    scope = open_scope(fast_sim())
    for modality in ("sim2d", "sim3d"):
        true = scope.world.scene(modality).illumination
        setup = scope.prepare(modality)
        assert scope.world.modality == modality
        ill = setup.illumination if isinstance(setup.illumination, dict) else setup.illumination.to_store()
        np.testing.assert_allclose(ill["k_per_um"], np.asarray(true.k_per_um))
        np.testing.assert_allclose(ill["phase_rad"], np.asarray(true.phase_rad))
        assert ill["three_beam"] == (modality == "sim3d")
    # the same configuration on the plain interface knows only what the configuration says (nothing)
    plain = Microscope(scope.config, scope.core, owns_core=False)
    assert plain.calibrated_sim_pattern("sim2d") == {}


def test_a_real_microscope_reports_its_configuration(democamera):
    cfg, scope = democamera
    assert type(scope) is Microscope and not scope.simulated and scope.world is None
    assert scope.camera_model() == {"offset_adu": 0.0}
    source = scope.timestamp_source()
    assert source.key is None and source.description == HOST_CLOCK_DESCRIPTION
    assert not scope.default_background("dpc")
    assert scope.run_metadata() == {"simulated": False}
    with scope.sample_free():  # nothing to do: the user moved to an empty area
        pass
    scope.acquisition_started()
    cam = cfg.camera.model_copy(
        update={"hardware_timestamp_key": "ElapsedTime-ms", "hardware_timestamp_unit": "ms", "read_noise_e": 1.2}
    )
    timed = Microscope(cfg.model_copy(update={"camera": cam}), scope.core, owns_core=False)
    source = timed.timestamp_source()
    assert (source.key, source.unit, source.on_acquisition_clock) == ("ElapsedTime-ms", "ms", False)
    assert "'ElapsedTime-ms'" in source.description
    assert timed.camera_model() == {"offset_adu": 0.0, "read_noise_e": 1.2}


def test_open_microscope_on_a_host_core_never_unloads_it(democamera):
    cfg, host = democamera
    loaded = list(host.core.getLoadedDevices())
    host.core.setCameraDevice("")
    scope = open_microscope(cfg, core=host.core)
    assert scope.core is host.core and not scope.owns_core and type(scope) is Microscope
    assert host.core.getCameraDevice() == cfg.camera.label  # the configured camera was selected
    scope.close()
    assert list(host.core.getLoadedDevices()) == loaded
    wrong = cfg.model_copy(update={"camera": cfg.camera.model_copy(update={"label": "NoSuchCamera"})})
    with pytest.raises(ConfigError, match="camera.label 'NoSuchCamera' is not a device of the given core"):
        open_microscope(wrong, core=host.core)


def test_a_simulated_configuration_ignores_a_host_core(fast_sim, democamera, open_scope):
    _, host = democamera
    scope = open_scope(fast_sim(), core=host.core)
    assert isinstance(scope, SimulatedMicroscope) and scope.core is not host.core


def test_use_psygnal_signals_sets_the_backend_only_inside_and_keeps_an_explicit_one(monkeypatch):
    monkeypatch.delenv("PYMM_SIGNALS_BACKEND", raising=False)
    with use_psygnal_signals():
        assert os.environ["PYMM_SIGNALS_BACKEND"] == "psygnal"
    assert "PYMM_SIGNALS_BACKEND" not in os.environ
    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "qt")
    with use_psygnal_signals():
        assert os.environ["PYMM_SIGNALS_BACKEND"] == "qt"
    assert os.environ["PYMM_SIGNALS_BACKEND"] == "qt"


def test_opening_a_microscope_leaves_the_mda_engine_to_the_acquisition(fast_sim, open_scope):
    """The hardware layer knows nothing of acquisition: the engine is installed when a run starts."""
    scope = open_scope(fast_sim())
    assert type(scope.core.mda.engine).__name__ == "MDAEngine"
