"""The demo's summary figure: raw vs conventional vs NSTM vs ground truth for one window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nstm_acquire.evaluation.figures import comparison_figure
from nstm_acquire.evaluation.metrics import correlation, crop, highpass
from nstm_acquire.physics.dpc.forward import dpc_normalise
from nstm_acquire.store import ReconReader, StoreReader

__all__ = ["demo_figure"]


def demo_figure(store: str | Path, world: Any, modality: str, path: str | Path, name: str = "nstm") -> Path | None:
    """Save a PNG of the last reconstructed window; returns its path (None if nothing to show).

    Panels: the raw first shot, the conventional reconstruction, the NSTM at the first shot's
    time with the motion across the window as arrows, and the simulated truth at that time.
    DPC shows the phase with the frequencies DPC cannot see removed (as it is scored).
    """
    reader = StoreReader(store)
    recon = ReconReader(store, name)
    done = recon.windows_done()
    if not done:
        return None
    w = done[-1]
    scene, motion, times = recon.scene(w), recon.motion(w), recon.times_s(w)
    conv = recon.conventional(w)
    data = reader.window(w)
    optics = reader.optics
    px = float(recon.pixel_size_um)
    if modality == "dpc":
        bg = reader.background()
        raw = dpc_normalise(data.raw[:, 0], None if bg is None else bg[:, 0])[0]
        cut = 0.1 * optics.cutoff_per_um
        show = lambda a: highpass(a, px, cut)  # noqa: E731
        nstm_img, conv_img = show(scene[0, 1, 0]), show(conv[1, 0])
        truth_img = None
        if world is not None:
            _, phi = world.scene("dpc").sample.on_grid(float(times[0]), reader.frame_shape, optics.pixel_size_um)
            truth_img = show(phi)
        label = "phase (rad, high-passed)"
    else:
        raw = data.raw[0, data.raw.shape[1] // 2]
        zc = scene.shape[2] // 2
        nstm_img, conv_img = scene[0, 0, zc], conv[0, zc]
        truth_img = None
        if world is not None:
            truth_img = _sim_truth(world, modality, reader, float(times[0]), zc, scene.shape[2], px)
        label = "fluorescence" + (f", plane {zc}" if modality == "sim3d" else "")
    u = int(round(optics.pixel_size_um / px))
    if u > 1:  # SIM: show the camera frame on the output grid (each camera pixel as u x u)
        raw = np.kron(raw, np.ones((u, u), raw.dtype))
    drift = motion[0, -2:, 0] - motion[-1, -2:, 0]  # content moves by -this from first to last shot
    title = f"{modality.upper()}, window {w}: {label}"
    if truth_img is not None:
        m = 8
        title += (
            f" - corr. with truth: conventional {correlation(crop(conv_img, m), crop(truth_img, m)):.3f}, "
            f"NSTM {correlation(crop(nstm_img, m), crop(truth_img, m)):.3f}"
        )
    return comparison_figure(
        path,
        [
            ("raw, first shot", raw),
            ("conventional", conv_img),
            ("NSTM, first shot + motion", nstm_img),
            ("truth, first shot", truth_img),
        ],
        motion=-np.asarray(drift),
        motion_on=2,
        # DPC panels share one range (radians); SIM panels get their own: the truth is a density
        # in its own units and Wiener ringing would set the range of the NSTM panel
        shared_range=([1, 2, 3] if truth_img is not None else [1, 2]) if modality == "dpc" else [],
        pixel_size_um=px,
        title=title,
    )


def _sim_truth(world: Any, modality: str, reader: Any, t_s: float, plane: int, n_planes: int, px: float) -> np.ndarray:
    """The simulated density at ``t_s`` on the output grid, band-limited to the SIM passband.

    3D: the focal plane ``plane`` of a stack centred on the sample's z = 0 (the simulated
    sample's centre), planes ``optics.z_step_um`` apart; the density of that plane (the
    comparison is of sections, so the axial band limit is not applied).
    """
    from nstm_acquire.physics.sim.illumination import SimIllumination
    from nstm_acquire.physics.sim.wiener import sim_support_per_um

    optics = reader.optics
    u = int(round(optics.pixel_size_um / px))
    sample = world.scene(modality).sample
    z = None
    if modality == "sim3d":
        z = (plane - (n_planes - 1) / 2) * float(optics.z_step_um or 0.0)
    density = sample.on_grid(t_s, reader.frame_shape, optics.pixel_size_um, upsample=u, z_um=z)
    ill = SimIllumination.from_store(reader.attrs.illumination, modality=modality)
    if ill.k_per_um is None:
        return density
    lateral, _ = sim_support_per_um(optics, ill)
    qy = np.fft.fftfreq(density.shape[-2], px)[:, None]
    qx = np.fft.fftfreq(density.shape[-1], px)[None, :]
    return np.fft.ifft2(np.fft.fft2(density) * (np.hypot(qy, qx) < lateral)).real
