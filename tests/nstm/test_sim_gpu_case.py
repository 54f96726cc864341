"""The paper-size GPU benchmark case runs end to end at a tiny size on the CPU."""

import numpy as np
import pytest
from benchmarks.cases.sim_gpu_live import run_live


@pytest.mark.filterwarnings("ignore:SIM parameters")  # 16 x 16 frames: the estimate is implausible
def test_gpu_live_case_reports_seconds_and_memory_per_window_at_a_tiny_size():
    out = run_live(planes=2, pixels=16, time_points=2, max_steps=4)
    assert out["size"] == [2, 16, 16] and out["time_points"] == 2
    first, second = out["windows"]
    assert not first["warm"] and second["warm"]  # window 0 cold, the next warm-started
    for w in out["windows"]:
        assert w["steps"] >= 1 and w["wall_s"] > 0 and w["host_peak_gib"] > 0
    assert np.isclose(out["total_s"], first["wall_s"] + second["wall_s"])
