"""Acquisitions on the simulated microscope: frames, shots, timestamps, the store while writing."""

import time

import numpy as np
import pytest

from nstm_acquire.acquire.controller import AcquisitionController
from nstm_acquire.acquire.engine import CameraFault
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.physics.dpc.forward import DpcForward, dpc_normalise
from nstm_acquire.physics.dpc.illumination import DpcIllumination
from nstm_acquire.store import StoreReader


def _acquire(scope, plan, path, **kw):
    controller = AcquisitionController(scope, plan, path, **kw)
    return controller, controller.run()


@pytest.mark.parametrize(
    ("modality", "planes", "shots"),
    [("dpc", 1, 4), ("sim2d", 1, 9), ("sim3d", 3, 15)],
)
def test_frame_counts_shapes_and_timestamps(fast_sim, open_scope, tmp_path, modality, planes, shots):
    scope = open_scope(fast_sim())
    plan = AcquisitionPlan(modality=modality, n_windows=2, n_planes=planes, exposure_ms=4.0)
    controller, summary = _acquire(scope, plan, tmp_path / "run.zarr")
    assert summary.status == "completed"
    assert summary.frames_written == summary.frames_expected == 2 * shots * planes
    assert summary.frames_missing == 0
    reader = StoreReader(tmp_path / "run.zarr")
    assert reader.modality == modality
    assert reader.group["raw"].shape == (2, shots, planes, 32, 32)
    assert reader.complete_windows() == [0, 1]
    ts = reader.timestamps_s()
    assert np.all(np.isfinite(ts))
    np.testing.assert_allclose(reader.exposures_s(), 0.004)
    # acquisition order: windows, then (sim3d plane-major) planes, then shots
    order = np.transpose(ts, (0, 2, 1)).reshape(-1)
    assert np.all(np.diff(order) >= 0.004), "frames must be at least one exposure apart, in order"
    frames = reader.group["raw"][:]
    assert frames.dtype == np.uint16 and frames.min() > 0
    # every pattern was hardware-triggered in bursts (sequenceable LED array / SLM / focus)
    assert summary.frames_hardware_triggered == summary.frames_written


def test_dpc_frames_show_their_half_circle(fast_sim, open_scope, tmp_path):
    """Each frame matches the weak-object prediction of its own pattern better than the others',
    and the left/right (top/bottom) pairs are mirror-asymmetric: their difference is the phase
    gradient along x (y) with the right sign."""
    cfg = fast_sim(frame_shape=(64, 64), motion={"dpc": "static"}, photons={"dpc": 20000.0})
    scope = open_scope(cfg)
    plan = AcquisitionPlan(modality="dpc", n_windows=1, exposure_ms=4.0)
    _acquire(scope, plan, tmp_path / "dpc.zarr")
    reader = StoreReader(tmp_path / "dpc.zarr")
    raw = reader.window(0).raw[:, 0]
    normalised = dpc_normalise(raw, reader.background()[:, 0])
    ill = DpcIllumination.from_store(reader.attrs.illumination)
    fwd = DpcForward.for_illumination((64, 64), reader.optics, ill)
    mu, phi = scope.world.scene("dpc").sample.on_grid(0.0, (64, 64), reader.optics.pixel_size_um)
    predicted = np.stack([np.asarray(fwd.render(np.stack([[mu, phi]] * 4), np.arange(4)))]).squeeze(0)

    def corr(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    scores = np.array([[corr(normalised[i], predicted[j]) for j in range(4)] for i in range(4)])
    assert np.all(np.argmax(scores, axis=1) == np.arange(4)), scores
    assert np.all(np.diag(scores) > 0.8), scores
    names = reader.attrs.acquisition["shot_names"]
    top, bottom, left, right = (names.index(n) for n in ("top", "bottom", "left", "right"))
    # differential phase contrast: left - right follows +dphi/dx, top - bottom +dphi/dy
    dphi_dy, dphi_dx = np.gradient(phi)
    inner = (slice(4, -4), slice(4, -4))
    assert corr((normalised[left] - normalised[right])[inner], dphi_dx[inner]) > 0.8
    assert corr((normalised[top] - normalised[bottom])[inner], dphi_dy[inner]) > 0.8


def test_simulated_dpc_camera_is_first_order_correct(fast_sim, open_scope):
    """The camera's exact partially coherent image of a weak object agrees with the independent
    weak-object transfer-function calculation, and the error halves with the phase amplitude."""
    errors = []
    for phase in (0.04, 0.02):
        cfg = fast_sim(
            frame_shape=(64, 64),
            motion={"dpc": "static"},
            sample_options={"dpc": {"phase_rad": phase, "absorption": phase / 4}},
        )
        scope = open_scope(cfg)
        world = scope.world
        setup = scope.prepare("dpc")
        ill = DpcIllumination.from_store(setup.illumination)
        fwd = DpcForward.for_illumination((64, 64), setup.optics, ill)
        mu, phi = world.scene("dpc").sample.on_grid(0.0, (64, 64), setup.optics.pixel_size_um)
        rel = []
        for s, preset in enumerate(setup.presets):
            scope.core.setConfig(setup.channel_group, preset)
            image = world.expected_photons(0.0, 1e-6)
            world.blank = True
            background = world.expected_photons(0.0, 1e-6)
            world.blank = False
            measured = image / background - 1
            linear = np.asarray(fwd.render(np.stack([[mu, phi]]), np.array([s])))[0]
            rel.append(np.linalg.norm(measured - linear) / np.linalg.norm(linear))
        errors.append(max(rel))
    assert errors[0] < 0.1
    assert 0.35 < errors[1] / errors[0] < 0.65, errors  # first order: error ~ amplitude


def test_sim2d_frames_carry_the_configured_pattern(fast_sim, open_scope, tmp_path):
    cfg = fast_sim(frame_shape=(64, 64), motion={"sim2d": "static"}, photons={"sim2d": 5000.0})
    scope = open_scope(cfg)
    _acquire(scope, AcquisitionPlan(modality="sim2d", n_windows=1, exposure_ms=2.0), tmp_path / "s.zarr")
    reader = StoreReader(tmp_path / "s.zarr")
    raw = reader.window(0).raw[:, 0]
    ill = reader.attrs.illumination  # the physics model (SimIllumination)
    k = np.asarray(ill.k_per_um)
    px = reader.optics.pixel_size_um
    y, x = np.mgrid[0:64, 0:64] * px
    window = np.outer(np.hanning(64), np.hanning(64))

    def coefficient(img, kv):
        return np.sum(window * img * np.exp(-2j * np.pi * (kv[0] * y + kv[1] * x)))

    # Split each orientation's three k-coefficients c_p into the parts that rotate forwards
    # (exp(+2πi p/3), the pattern stepping as configured), backwards, and not at all (the
    # sample's own spectrum, the same in all three shots of a static sample).
    steps = np.exp(2j * np.pi * np.arange(3) / 3)

    def rotating(d, e):
        c = np.array([coefficient(raw[d * 3 + p], k[e]) for p in range(3)])
        return abs(np.sum(c * steps.conj())) / 3, abs(np.sum(c * steps)) / 3

    for d in range(3):
        forward, backward = rotating(d, d)
        others = [rotating(d, e)[0] for e in range(3) if e != d]
        assert forward > 5 * backward, (d, forward, backward)  # phase steps of +2π/3
        assert forward > 5 * max(others), (d, forward, others)  # at this orientation's k


def test_reader_sees_only_complete_windows_while_acquiring(fast_sim, open_scope, tmp_path):
    cfg = fast_sim(realtime=True)
    scope = open_scope(cfg)
    plan = AcquisitionPlan(modality="dpc", n_windows=5, window_interval_s=0.08, exposure_ms=5.0)
    controller = AcquisitionController(scope, plan, tmp_path / "live.zarr")
    seen_complete_counts = []
    thread = controller.start()
    reader = None
    deadline = time.time() + 60
    while thread.is_alive() and time.time() < deadline:
        if reader is None:
            try:
                reader = StoreReader(tmp_path / "live.zarr")
            except Exception:  # not created yet
                time.sleep(0.01)
                continue
        complete = reader.complete_windows()
        seen_complete_counts.append(len(complete))
        for w in complete:
            data = reader.window(w)
            assert np.all(np.isfinite(data.timestamps_s))
            assert np.all(data.raw.reshape(data.raw.shape[0], -1).max(axis=1) > 0), "a frame was missing"
        time.sleep(0.01)
    thread.join(30)
    assert controller.summary.status == "completed"
    assert any(0 < c < 5 for c in seen_complete_counts), "never saw the store mid-acquisition"
    assert StoreReader(tmp_path / "live.zarr").complete_windows() == [0, 1, 2, 3, 4]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_camera_fault_keeps_earlier_frames_readable(fast_sim, open_scope, tmp_path, monkeypatch):
    scope = open_scope(fast_sim())
    world = scope.world
    original = world.render
    calls = {"n": 0}

    def failing_render(t, e):
        calls["n"] += 1
        if calls["n"] > 6:
            raise RuntimeError("camera unplugged")
        return original(t, e)

    monkeypatch.setattr(world, "render", failing_render)
    errors = []
    plan = AcquisitionPlan(modality="dpc", n_windows=3)
    controller = AcquisitionController(scope, plan, tmp_path / "f.zarr", background=False)
    controller.events.error.connect(errors.append)
    with pytest.raises(CameraFault, match="camera unplugged"):
        controller.run()  # the fault stops the run (it does not try the remaining windows)
    summary = controller.summary
    assert summary.status == "camera_error"
    assert summary.frames_written == 6 and summary.frames_missing == 6
    assert errors and "camera unplugged" in errors[-1] and "\n" not in errors[-1]
    reader = StoreReader(tmp_path / "f.zarr")
    assert reader.complete_windows() == [0]
    assert reader.partial_windows() == [1]
    assert reader.run_end()[0] == "camera_error" and "camera unplugged" in reader.run_end()[1]


def test_democamera_cfg_runs_the_real_hardware_path(open_scope, tmp_path):
    mm_test_adapters = pytest.importorskip("mm_test_adapters")
    from pathlib import Path

    cfg_path = Path(__file__).resolve().parents[2] / "hardware_configs" / "democamera_dpc.yaml"
    scope = open_scope(cfg_path, adapter_paths=[mm_test_adapters.device_adapter_path()])
    assert scope.world is None and "Camera" in scope.core.getLoadedDevices()
    plan = AcquisitionPlan(modality="dpc", n_windows=2, exposure_ms=5.0)
    _, summary = _acquire(scope, plan, tmp_path / "demo.zarr")
    assert summary.status == "completed" and summary.frames_written == 8
    reader = StoreReader(tmp_path / "demo.zarr")
    assert reader.group["raw"].shape == (2, 4, 1, 64, 64)
    order = reader.timestamps_s().reshape(-1)
    assert np.all(np.diff(order) >= 0.005 * 0.9)
    # the presets lit the LEDs the store says were lit
    led = scope.core.getProperty("LEDArray", "LEDs")
    assert [int(i) for i in led.split(",")] == list(reader.attrs.illumination.shots[3])
    assert "host clock" in reader.attrs.acquisition["timestamp_source"]


def test_a_run_that_cannot_start_still_finishes_with_an_error(fast_sim, open_scope, tmp_path):
    scope = open_scope(fast_sim())
    (tmp_path / "exists.zarr").mkdir()
    (tmp_path / "exists.zarr" / "zarr.json").write_text("{}")
    controller = AcquisitionController(scope, AcquisitionPlan(modality="dpc"), tmp_path / "exists.zarr")
    finished, errors = [], []
    controller.events.finished.connect(finished.append)
    controller.events.error.connect(errors.append)
    with pytest.raises(Exception, match="already exists"):
        controller.run()
    assert [s.status for s in finished] == ["error"]
    assert errors and "already exists" in errors[0]
    assert controller.wait(0)


def test_the_controller_installs_its_engine_and_runs_on_a_host_core(fast_sim, open_scope, tmp_path):
    """A core lent by a host application (not owned) gets the timestamping engine when a run starts,
    and keeps its devices afterwards."""
    from nstm_acquire.acquire.engine import TimestampingMDAEngine
    from nstm_acquire.hardware.microscope import Microscope

    own = open_scope(fast_sim())
    assert not isinstance(own.core.mda.engine, TimestampingMDAEngine)
    lent = Microscope(own.config, own.core, owns_core=False)
    _, summary = _acquire(lent, AcquisitionPlan(modality="sim2d", n_windows=1, exposure_ms=2.0), tmp_path / "h.zarr")
    assert summary.status == "completed" and summary.frames_written == 9
    assert isinstance(own.core.mda.engine, TimestampingMDAEngine)
    loaded = list(own.core.getLoadedDevices())
    lent.close()
    assert list(own.core.getLoadedDevices()) == loaded


def test_frames_without_the_configured_camera_timestamp_use_the_host_clock_and_are_counted(open_scope, tmp_path):
    mm_test_adapters = pytest.importorskip("mm_test_adapters")
    from pathlib import Path

    from nstm_acquire.hardware.config import load_hardware_config

    cfg = load_hardware_config(Path(__file__).resolve().parents[2] / "hardware_configs" / "democamera_dpc.yaml")
    cfg = cfg.model_copy(update={"camera": cfg.camera.model_copy(update={"hardware_timestamp_key": "NoClock-ms"})})
    scope = open_scope(cfg, adapter_paths=[mm_test_adapters.device_adapter_path()])
    errors = []
    controller = AcquisitionController(scope, AcquisitionPlan(modality="dpc", n_windows=2, exposure_ms=5.0),
                                       tmp_path / "nc.zarr")
    controller.events.error.connect(errors.append)
    summary = controller.run()
    assert summary.status == "completed" and summary.frames_written == 8
    assert summary.frames_host_clock_fallback == 8
    assert len(errors) == 1 and "no camera timestamp 'NoClock-ms'" in errors[0]
    reader = StoreReader(tmp_path / "nc.zarr")
    assert reader.attrs.acquisition["frames_host_clock_fallback"] == 8
    assert "'NoClock-ms'" in reader.attrs.acquisition["timestamp_source"]
    order = reader.timestamps_s().reshape(-1)
    assert np.all(np.isfinite(order)) and np.all(np.diff(order) > 0)


def test_a_failing_listener_loses_no_frame_and_is_logged(fast_sim, open_scope, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="nstm_acquire")
    scope = open_scope(fast_sim())
    controller = AcquisitionController(scope, AcquisitionPlan(modality="dpc", n_windows=2), tmp_path / "l.zarr")

    def broken(w):
        raise RuntimeError("listener bug")

    controller.events.window_complete.connect(broken)
    summary = controller.run()
    assert summary.status == "completed" and summary.frames_written == 8 and summary.windows_complete == 2
    assert StoreReader(tmp_path / "l.zarr").complete_windows() == [0, 1]
    failures = [r for r in caplog.records if "listener" in r.getMessage() and r.exc_info]
    assert len(failures) == 2 and "listener bug" in str(failures[0].exc_info[1])
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("l.zarr" in m and "8 frames" in m for m in messages), messages  # run start
    assert any("l.zarr completed" in m for m in messages), messages  # run end with its status


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_frame_that_cannot_be_stored_is_logged_with_its_traceback(fast_sim, open_scope, tmp_path, caplog,
                                                                     monkeypatch):
    import logging

    from nstm_acquire.store import StoreWriter

    caplog.set_level(logging.INFO, logger="nstm_acquire")
    original = StoreWriter.write_frame
    calls = {"n": 0}

    def failing_write(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "write_frame", failing_write)
    scope = open_scope(fast_sim())
    controller = AcquisitionController(scope, AcquisitionPlan(modality="dpc", n_windows=2), tmp_path / "e.zarr",
                                       background=False)
    controller.start()
    assert controller.wait(60)
    assert controller.summary.status == "error" and controller.summary.frames_written == 2
    assert any("could not be stored: disk full" in e for e in controller.summary.errors)
    logged = [r for r in caplog.records if "could not be stored" in r.getMessage() and r.exc_info]
    assert logged and "disk full" in str(logged[0].exc_info[1])
    assert StoreReader(tmp_path / "e.zarr").attrs.acquisition["status"] == "error"


def test_settings_of_the_engine_the_controller_replaces_carry_over(fast_sim, open_scope, tmp_path):
    scope = open_scope(fast_sim())
    scope.core.mda.engine.use_hardware_sequencing = False  # set before any run, on pymmcore-plus's engine
    _, summary = _acquire(scope, AcquisitionPlan(modality="dpc", n_windows=1, exposure_ms=2.0), tmp_path / "s.zarr")
    assert summary.status == "completed" and summary.frames_written == 4
    assert summary.frames_hardware_triggered == 0, "single snaps, as the replaced engine was told"
    assert scope.core.mda.engine.use_hardware_sequencing is False
