"""A measured PSF (a bead image) in place of the theoretical OTF.

Known answer: the simulated microscope records a bead (one bright fine pixel) at the camera
pixels, pixel integration included; the OTF built from that image must equal the theoretical
OTF times the camera pixel transfer, in focus and through focus (three-beam order transfers).
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from sim_data import OPTICS, illumination, simulate_moving_2d

from nstm_acquire.cli import main
from nstm_acquire.hardware.simulated.fluorescence_imaging import SimImager
from nstm_acquire.hardware.simulated.phantoms import FilamentPhantom
from nstm_acquire.physics.sim.otf import (
    MeasuredPsf,
    camera_pixel_transfer,
    load_psf,
    measured_three_beam_order_otfs,
    otf_2d,
    three_beam_order_otfs,
)
from nstm_acquire.physics.sim.wiener import wiener_sim_2d

N = 96  # camera pixels of the bead image (9.6 µm: the tails at the border, taken as background, are small)


def recorded_bead(defocus_um: np.ndarray) -> np.ndarray:
    """Camera images ``(Z, N, N)`` of a point at the centre of camera pixel (N/2, N/2), with
    the focus ``defocus_um`` beyond it; a background of 100 counts."""
    fine = np.zeros((2 * N, 2 * N))
    fine[N, N] = 1.0
    imager = SimImager(OPTICS, illumination(False), fine.shape, OPTICS.pixel_size_um / 2, z_um=np.zeros(1))
    return np.stack([imager.widefield(fine[None], float(z)) for z in defocus_um]) * 5e4 + 100.0


def test_measured_in_focus_otf_matches_the_theory_with_the_pixel_integration():
    psf = MeasuredPsf(recorded_bead(np.zeros(1))[0], OPTICS.pixel_size_um)
    shape, px = (192, 192), OPTICS.pixel_size_um / 2
    theory = otf_2d(shape, px, OPTICS) * camera_pixel_transfer(shape, px, OPTICS.pixel_size_um)
    measured = psf.otf_2d(shape, px)
    assert abs(measured[0, 0] - 1.0) < 1e-9
    assert np.abs(measured - theory).max() < 0.02  # bilinear between 0.2 cycles/µm samples


def test_measured_three_beam_transfers_match_the_theory_through_focus():
    dz = 0.15
    stack = recorded_bead((np.arange(13) - 6) * dz)
    psf = MeasuredPsf(stack, OPTICS.pixel_size_um, dz)
    assert psf.focus_index == 6
    ill = illumination(True)
    kz = ill.axial_k_for_orientation(0, OPTICS.immersion_index)
    shape = (8, 192, 192)
    px = OPTICS.pixel_size_um / 2
    theory = three_beam_order_otfs(shape, px, dz, OPTICS, kz, camera_pixel_um=OPTICS.pixel_size_um)
    measured = measured_three_beam_order_otfs(psf, shape, px, dz, kz)
    assert np.abs(measured - theory).max() < 0.02 * np.abs(theory).max()


def test_measured_psf_rejects_bad_input_with_the_field_named(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        MeasuredPsf(np.ones((4, 4)), 0.1)
    with pytest.raises(ValueError, match="psf_z_step_um"):
        MeasuredPsf(np.ones((3, 16, 16)), 0.1)
    with pytest.raises(ValueError, match="empty"):
        MeasuredPsf(np.ones((16, 16)), 0.1)
    optics = OPTICS.model_copy(update={"psf_file": "missing.npy"})
    with pytest.raises(FileNotFoundError, match="optics.psf_file"):
        load_psf(optics, str(tmp_path))


def test_reconstruction_uses_a_measured_psf_named_in_the_store(tmp_path, capsys):
    # the Wiener baseline with the measured PSF equals the theoretical one
    ill = illumination(False)
    raw, _, _ = simulate_moving_2d(ill, FilamentPhantom((6.4, 6.4), n_filaments=4, seed=2), "static", n=64)
    psf = MeasuredPsf(recorded_bead(np.zeros(1))[0], OPTICS.pixel_size_um)
    theory = wiener_sim_2d(raw, OPTICS, ill)
    measured = wiener_sim_2d(raw, OPTICS, ill, psf=psf)
    assert np.corrcoef(theory.ravel(), measured.ravel())[0, 1] > 0.99

    # a store naming the file (relative to the store's folder)
    store = tmp_path / "beads.zarr"
    assert main(["acquire", "--modality", "sim2d", "--windows", "1", "--shape", "32", "32", "--fast", "--out", str(store)]) == 0
    np.save(tmp_path / "bead.npy", recorded_bead(np.zeros(1))[0])
    group = zarr.open_group(str(store), mode="r+")
    meta = dict(group.attrs["nstm_acquire"])

    def name_psf(path: str) -> None:
        group.attrs["nstm_acquire"] = {**meta, "optics": {**meta["optics"], "psf_file": path}}

    name_psf("bead.npy")
    assert main(["reconstruct", str(store), "--steps", "25"]) == 0
    from nstm_acquire.store import ReconReader

    assert ReconReader(store).windows_info()[0]["otf"] == "measured PSF"  # (theoretical otherwise)
    name_psf("nowhere.npy")
    capsys.readouterr()
    assert main(["reconstruct", str(store), "--steps", "25", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optics.psf_file" in err
