"""SIM reconstruction speed and memory: 2D 256 x 256 and 3D 8 x 256 x 256 on this machine.

Each size runs in its own process (peak memory is that size's alone): the illumination
estimate, the Wiener reconstruction, and NSTM compilation and seconds per step (defaults,
measured over a short fit: 2D 75 steps with the default evaluation every 25, 3D 20 steps
evaluated every 10; the first chunk holds the compilation). Seconds per window = compile +
steps x seconds per step, with the steps the quality benchmark's fits took (``sim_quality``;
300 when it has not run).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from benchmarks.common import RESULTS, save_result

SIZES = {"2D 256 x 256": ("sim2d", 256, 1), "3D 8 x 256 x 256": ("sim3d", 256, 8)}
QUICK = {"2D 64 x 64": ("sim2d", 64, 1), "3D 4 x 32 x 32": ("sim3d", 32, 4)}


def measure(modality: str, n: int, nz: int, steps: int) -> dict:
    from benchmarks.sim_common import sim_window
    from nstm_acquire.nstm.config import default_config
    from nstm_acquire.physics.sim.estimation import estimate_sim_parameters
    from nstm_acquire.physics.sim.wiener import wiener_sim_2d, wiener_sim_3d
    from nstm_acquire.recon.arrays import reconstruct_sim

    win = sim_window(modality, n, "beads", "vibration:ay=0.1,ax=0.2,f=5", n_planes=nz)
    unknown = win.illumination.replace(k_per_um=None, phase_rad=None, modulation=None)
    t0 = time.perf_counter()
    estimate_sim_parameters(win.raw, win.optics, unknown, z_step_um=win.optics.z_step_um)
    t_est = time.perf_counter() - t0
    t0 = time.perf_counter()
    if modality == "sim3d":
        wiener_sim_3d(win.raw, win.optics, win.illumination, win.optics.z_step_um)
    else:
        wiener_sim_2d(win.raw[:, 0], win.optics, win.illumination)
    t_wiener = time.perf_counter() - t0
    chunk = 10 if modality == "sim3d" else 25
    config = default_config().with_fit(max_steps=steps, eval_every=chunk)
    result = reconstruct_sim(win.raw, win.timestamps_s, win.exposure_s, win.optics, win.illumination, config=config)
    f = result.fit
    s_per_step = (f.wall_s - f.compile_s) / max(f.steps - chunk, 1)
    return {
        "estimate_s": t_est,
        "wiener_s": t_wiener,
        "first_chunk_s": f.compile_s,
        "compile_s": max(f.compile_s - chunk * s_per_step, 0.0),
        "s_per_step": s_per_step,
        "steps_measured": f.steps,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _typical_steps(modality: str) -> int:
    path = RESULTS / "sim_quality.json"
    if path.exists():
        cases = json.loads(path.read_text())["numbers"]["cases"]
        steps = [c["steps"] for c in cases.values() if c["modality"] == modality]
        if steps:
            return int(max(steps))
    return 300


def run(quick: bool = False) -> dict:
    sizes = QUICK if quick else SIZES
    numbers: dict = {}
    rows = []
    for label, (modality, n, nz) in sizes.items():
        steps = 20 if modality == "sim3d" else 75
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.cases.sim_speed", modality, str(n), str(nz), str(steps)],
            capture_output=True, text=True, check=True,
        ).stdout
        m = json.loads(out.strip().splitlines()[-1])
        typical = _typical_steps(modality)
        m["typical_steps"] = typical
        m["window_s"] = m["compile_s"] + typical * m["s_per_step"]
        numbers[label] = m
        rows.append(
            f"| {label} | {m['estimate_s']:.1f} | {m['wiener_s']:.1f} | {m['compile_s']:.0f} | {m['s_per_step']:.2f} "
            f"| {typical} | {m['window_s']:.0f} | {m['peak_mib'] / 1024:.1f} |"
        )
        print(f"  {label}: {m['s_per_step']:.2f} s/step, window {m['window_s']:.0f} s", flush=True)
    md = "\n".join(
        [
            "## SIM reconstruction speed and memory",
            "",
            "`python -m benchmarks.run sim_speed`. Defaults, CPU, one window of vibrating beads",
            "(2D: 9 shots; 3D: 15 shots x 8 planes, the forward model pads z to 16 planes so light",
            "does not wrap round the stack). *Estimate*: illumination-parameter estimation; *Wiener*:",
            "the conventional reconstruction; *compile*: the first chunk less its steps; *s/step* over",
            "the following steps; *window*: compile + steps x s/step with the steps the quality",
            "benchmark's fits of that modality took. Peak memory: the process's maximum resident size.",
            "",
            "| size | estimate (s) | Wiener (s) | compile (s) | s/step | steps | s/window | peak GiB |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "The paper's live-cell 3D size (20 x 512 x 512, 15 time points; published about 40 min and",
            "40 GB on an A6000; goal here under 4 min and 20 GB on one H100) needs a GPU: none was lent",
            "to this project's sessions, so it is not measured. On this CPU the 3D step cost grows with",
            "the padded volume (planes x 4 fine pixels per camera pixel x 2 order groups x 15 shots).",
        ]
    )
    save_result("sim_speed", numbers, md, order=45)
    return numbers


if __name__ == "__main__":
    modality, size, planes, n_steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(measure(modality, size, planes, n_steps), default=float))
