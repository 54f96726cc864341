"""Shared pieces of the DPC benchmark cases: simulated windows, one scored NSTM fit."""

from __future__ import annotations

import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from nstm_acquire.evaluation.metrics import correlation, crop, highpass, relative_motion_error_px, structure_mask
from nstm_acquire.hardware.simulated.setup import simulated_config
from nstm_acquire.hardware.simulated.windows import SimulatedWindow, simulate_dpc_window
from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.fit import FitData, FitResult, build_model, fit, render_scenes
from nstm_acquire.physics.dpc.forward import DpcForward, dpc_normalise

MARGIN = 8

MOTIONS = {
    "static": "static",
    "translation": "translation:vx=30,vy=15",
    "rotation": "rotation:omega=0.8",
    "shear": "shear:rate=0.8",
    "swirl": "swirl:omega=2.0,radius=16",
}


def window(
    n: int, motion: str, seed: int = 0, t_start_s: float = 0.0, noise_seed: int | None = None, exposure_instants: int = 3
) -> SimulatedWindow:
    """A four-shot window of the simulated microscope (30 ms exposures) at ``n`` x ``n`` pixels,
    each frame the mean of the sample at ``exposure_instants`` times across its exposure."""
    cfg = simulated_config(frame_shape=(n, n))
    return simulate_dpc_window(
        cfg, shape=(n, n), motion=motion, exposure_s=0.03, seed=seed, t_start_s=t_start_s, noise_seed=noise_seed,
        exposure_subsamples=exposure_instants,
    )


class Scorer:
    """Phase correlation (DPC-visible band) and motion error against a window's truth."""

    def __init__(self, win: SimulatedWindow) -> None:
        self.win = win
        self.px = win.optics.pixel_size_um
        self.cut = 0.1 * win.optics.cutoff_per_um
        self.truth = [crop(highpass(win.truth_scene[k, 1], self.px, self.cut), MARGIN) for k in range(len(win.raw))]
        self.mask = structure_mask(win.truth_scene[0, 1])

    def phase(self, phase: np.ndarray, k: int) -> float:
        return correlation(crop(highpass(phase, self.px, self.cut), MARGIN), self.truth[k])

    def scenes(self, scenes: np.ndarray) -> float:
        return float(np.mean([self.phase(scenes[k, 1], k) for k in range(len(self.truth))]))

    def motion(self, motion: np.ndarray) -> float:
        return relative_motion_error_px(motion, self.win.truth_displacement_px, MARGIN, self.mask)


def problem(win: SimulatedWindow) -> tuple[DpcForward, FitData, np.ndarray]:
    """Forward model, fit data (exposure midpoints, and the exposures where every row shares its
    frame's) and the Tikhonov reconstruction."""
    n = win.raw.shape[-1]
    y = dpc_normalise(win.raw, win.background)
    fwd = DpcForward.for_illumination((n, n), win.optics, win.illumination)
    conv = np.asarray(fwd.conventional(jnp.asarray(y)))
    exposure = np.asarray(win.exposure_s, np.float64) if win.row_time_s is None else None
    return fwd, FitData(y, win.midpoints_s, np.arange(len(y)), exposure_s=exposure), conv


def run_nstm(
    config: NSTMConfig,
    win: SimulatedWindow,
    monitor_every: bool = False,
    init_params: Any = None,
    reference_val_loss: float | None = None,
    start_params: Any = None,
    data: FitData | None = None,
) -> dict[str, Any]:
    """One fit, scored; with ``monitor_every`` the quality at every evaluation is recorded.

    ``init_params`` and ``reference_val_loss`` (the previous fit's ``val_loss``) warm-start it;
    ``start_params`` is where a cold fit starts (``recon.start.start_params``), ``data`` the fit
    data it was made for (None: :func:`problem`'s)."""
    n = win.raw.shape[-1]
    fwd, own_data, conv = problem(win)
    data = own_data if data is None else data
    score = Scorer(win)
    model = build_model(config, (n, n), 2)

    def monitor(step: int, params: Any, time_map: Any) -> dict[str, float]:
        r = FitResult(params, model, time_map, step, step, 0.0, None, 0.0, 0.0, "", False, [])
        sc, mo = render_scenes(r, win.midpoints_s)
        return {"corr": score.scenes(sc), "epe": score.motion(mo)}

    t0 = time.perf_counter()
    res = fit(
        model, fwd, data, init_params=init_params, monitor=monitor if monitor_every else None,
        reference_val_loss=reference_val_loss, start_params=start_params,
    )
    wall = time.perf_counter() - t0
    sc, mo = render_scenes(res, win.midpoints_s)
    return {
        "corr": score.scenes(sc),
        "corr_per_shot": [score.phase(sc[k, 1], k) for k in range(len(sc))],
        "conventional": float(np.mean([score.phase(conv[1], k) for k in range(len(sc))])),
        "epe_px": score.motion(mo),
        "true_motion_px": float(np.abs(win.truth_displacement_px - win.truth_displacement_px.mean(0)).max()),
        "steps": res.steps,
        "best_step": res.best_step,
        "stop": res.stop_reason,
        "val_loss": res.final_val_loss,
        "warm_start": res.warm_start,
        "rejected_warm_fit": res.rejected_warm_fit,
        "wall_s": wall,
        "compile_s": res.compile_s,
        "s_per_step": (res.wall_s - res.compile_s) / max(res.steps - config.fit.eval_every, 1),
        "history": [
            {k: h[k] for k in ("step", "loss", "val", "corr", "epe") if k in h} for h in res.history
        ],
        "_scene": sc,
        "_motion": mo,
        "_conventional": conv,
        "_params": res.params,
    }


def registered_start(config: NSTMConfig, win: SimulatedWindow) -> tuple[Any, dict | None, FitData]:
    """Where the reconstructor starts a cold fit of ``win`` (:func:`nstm_acquire.recon.start.start_params`:
    with ``fit.motion_start = "registration"`` the motion network pre-fitted to a registration of
    the shots), what the registration found (``None``: nothing was tried; with the samples per
    exposure where ``fit.exposure_blur_px`` asked for more than one), and the fit data it is for
    (:func:`nstm_acquire.recon.start.exposure_sampled`)."""
    from nstm_acquire.recon.start import exposure_sampled, start_params

    n = win.raw.shape[-1]
    prob = exposure_sampled(_window_problem(win), config)
    start = start_params(build_model(config, (n, n), 2), prob, config)
    found = prob.info.get("motion_start")
    if found is not None and "exposure_samples" in prob.info:
        found = {**found, "exposure_samples": prob.info["exposure_samples"]}
    return start, found, prob.data


def warm_start(config: NSTMConfig, win: SimulatedWindow, params: Any, samples: int = 1) -> tuple[Any, dict | None, FitData]:
    """Where the reconstructor starts a warm fit of ``win`` from the previous window's networks
    ``params`` (:func:`nstm_acquire.recon.start.warm_start_params`, as ``fit.warm_motion_start``
    asks), what it did (``None``: nothing), and the fit data it is for (each shot rendered at
    the chain's cold fit's ``samples`` per exposure)."""
    from nstm_acquire.recon.start import exposure_sampled, warm_start_params

    prob = _window_problem(win)
    prob = exposure_sampled(prob, config, samples=samples)
    n = win.raw.shape[-1]
    init = warm_start_params(build_model(config, (n, n), 2), prob, config, params)
    return init, prob.info.get("warm_motion_start"), prob.data


def _window_problem(win: SimulatedWindow):
    from nstm_acquire.recon.problem import WindowProblem

    fwd, data, conv = problem(win)
    n = win.raw.shape[-1]
    return WindowProblem(
        forward=fwd, data=data, scene_shape=(n, n), channels=2, channel_names=["absorption", "phase_rad"],
        motion_dims=2, render_times_s=win.midpoints_s, conventional=conv[:, None],
        pixel_size_um=win.optics.pixel_size_um, z_step_um=None, info={},
    )


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of a :func:`run_nstm` result."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
