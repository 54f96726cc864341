"""Frame-time resolution without a core: known answers for each source of a frame's exposure start."""

import pytest

from nstm_acquire.acquire.timing import FrameTimer, finite_float
from nstm_acquire.hardware.camera import TimestampSource


class _Clock:
    """A host clock that reads what the test sets."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _timer(source: TimestampSource, t0: float = 100.0, now: float | None = None) -> FrameTimer:
    clock = _Clock(t0)
    timer = FrameTimer(source, now=clock)
    assert timer.start() == t0
    clock.t = t0 if now is None else now
    return timer


HOST = TimestampSource(key=None, description="host clock")
CAMERA_MS = TimestampSource(key="TimeStamp-ms", unit="ms", on_acquisition_clock=False, description="camera")
SIMULATED = TimestampSource(key="HardwareTimestamp-s", unit="s", on_acquisition_clock=True, description="sim")


def test_hardware_timestamp_in_ms_is_mapped_by_the_offset_at_the_first_frame():
    timer = _timer(CAMERA_MS)
    # first frame: snap requested 0.5 s after time zero; camera clock reads 12 000 ms
    first = timer.resolve({"nstm_snap_call_s": 100.5, "camera_metadata": {"TimeStamp-ms": "12000"}}, 10.0)
    assert first.t_s == pytest.approx(0.5) and first.exposure_s == pytest.approx(0.010)
    assert not first.host_clock and not first.fallback
    assert timer.offset_s == pytest.approx(0.5 - 12.0)
    # later frames follow the camera clock (250 ms later), not the host clock (which says 0.9 s)
    later = timer.resolve({"nstm_snap_call_s": 100.9, "camera_metadata": {"TimeStamp-ms": 12250.0}}, 10.0)
    assert later.t_s == pytest.approx(0.75)
    assert timer.host_clock_fallbacks == 0


def test_timestamp_units():
    for unit, value in (("s", 2.0), ("ms", 2000.0), ("us", 2_000_000.0)):
        source = TimestampSource(key="T", unit=unit, on_acquisition_clock=True)
        assert _timer(source).resolve({"camera_metadata": {"T": value}}, 5.0).t_s == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unit"):
        TimestampSource(key="T", unit="min")  # type: ignore[arg-type]


def test_a_timestamp_already_on_the_acquisition_clock_is_taken_as_it_is():
    timer = _timer(SIMULATED)
    ft = timer.resolve(
        {"nstm_snap_call_s": 107.0, "camera_metadata": {"HardwareTimestamp-s": "0.123", "HardwareExposure-s": "0.004"}},
        50.0,
    )
    assert ft.t_s == pytest.approx(0.123) and ft.exposure_s == pytest.approx(0.004)  # the camera's exposure wins
    assert timer.offset_s is None


def test_a_missing_timestamp_falls_back_to_the_host_clock_and_each_frame_is_counted_once():
    timer = _timer(CAMERA_MS)
    ft = timer.resolve({"nstm_snap_call_s": 101.25, "camera_metadata": {}}, 10.0)
    assert ft.t_s == pytest.approx(1.25) and ft.host_clock and ft.fallback
    assert timer.host_clock_fallbacks == 1
    for bad in ("", "nan", None, "inf", "garbage"):
        assert timer.resolve({"nstm_snap_call_s": 101.5, "camera_metadata": {"TimeStamp-ms": bad}}, 10.0).fallback
    assert timer.host_clock_fallbacks == 6
    # a frame with its timestamp is not counted
    assert not timer.resolve({"nstm_snap_call_s": 102.0, "camera_metadata": {"TimeStamp-ms": 5.0}}, 10.0).fallback
    assert timer.host_clock_fallbacks == 6


def test_without_a_hardware_clock_the_host_clock_is_no_fallback():
    timer = _timer(HOST)
    ft = timer.resolve({"nstm_snap_call_s": 100.25, "camera_metadata": {"HardwareTimestamp-s": "3.0"}}, 10.0)
    assert ft.t_s == pytest.approx(0.25) and ft.host_clock and not ft.fallback
    assert timer.host_clock_fallbacks == 0


def test_hardware_triggered_bursts_use_the_runner_time_minus_the_exposure():
    # the runner started 0.2 s after our time zero; the frame reached the buffer 300 ms later
    timer = _timer(HOST)
    ft = timer.resolve({"runner_time_ms": 300.0, "nstm_runner_t0_s": 100.2}, 20.0)
    assert ft.t_s == pytest.approx(0.2 + 0.3 - 0.02)
    # without the runner's time zero, ours is assumed
    assert timer.resolve({"runner_time_ms": 300.0}, 20.0).t_s == pytest.approx(0.3 - 0.02)
    # without any time in the metadata: now minus the exposure
    assert _timer(HOST, now=101.0).resolve({}, 20.0).t_s == pytest.approx(1.0 - 0.02)


def test_the_exposure_comes_from_the_camera_else_the_request_else_the_function():
    timer = _timer(HOST)
    calls = []

    def core_exposure_ms() -> float:
        calls.append(1)
        return 30.0

    assert timer.resolve({"camera_metadata": {"HardwareExposure-s": 0.007}}, core_exposure_ms).exposure_s == 0.007
    assert not calls, "the fallback exposure is read only when needed"
    assert timer.resolve({}, core_exposure_ms).exposure_s == pytest.approx(0.030) and calls == [1]
    with pytest.raises(ValueError, match="exposure_ms"):
        timer.resolve({}, None)


def test_a_new_start_forgets_the_clock_offset():
    timer = _timer(CAMERA_MS)
    timer.resolve({"nstm_snap_call_s": 100.5, "camera_metadata": {"TimeStamp-ms": 0.0}}, 1.0)
    assert timer.offset_s == pytest.approx(0.5)
    timer.start(200.0)
    assert timer.offset_s is None and timer.t0_s == 200.0


def test_finite_float():
    assert finite_float("1.5") == 1.5 and finite_float(2) == 2.0
    assert all(finite_float(v) is None for v in (None, "", "x", float("nan"), float("inf"), [1]))
