"""The NSTM's SIM forward models agree with the simulated microscope's independent image formation."""

import jax.numpy as jnp
import numpy as np

from nstm_acquire.hardware.simulated.fluorescence_imaging import SimImager, camera_pixel_transfer, widefield_otf_2d
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.sim.forward import Sim2DForward, fold_spectrum, sim_patterns_2d
from nstm_acquire.physics.sim.illumination import default_sim_illumination

OPTICS = Optics(wavelength_um=0.52, na_detection=1.4, pixel_size_um=0.08, immersion_index=1.515)


def test_folding_the_spectrum_equals_subsampling_in_real_space():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 12, 18))
    for u in (1, 2, 3):
        folded = np.fft.ifft2(np.asarray(fold_spectrum(jnp.asarray(np.fft.fft2(f)), u)))
        np.testing.assert_allclose(folded.real, f[:, ::u, ::u], atol=1e-5)  # float32


def test_sim2d_forward_matches_the_simulated_camera():
    ill = default_sim_illumination(OPTICS, 0.488)
    u, fine = 2, (64, 64)
    fine_px = OPTICS.pixel_size_um / u
    rng = np.random.default_rng(1)
    density = np.zeros(fine, np.float32)
    density[rng.integers(4, 60, 40), rng.integers(4, 60, 40)] = rng.uniform(0.5, 1.0, 40)
    imager = SimImager(OPTICS, ill, fine, fine_px)
    transfer = widefield_otf_2d(fine, fine_px, OPTICS) * camera_pixel_transfer(fine, fine_px, OPTICS.pixel_size_um)
    fwd = Sim2DForward(jnp.asarray(sim_patterns_2d(ill, fine, fine_px)), jnp.asarray(transfer, jnp.float32), u)
    shots = np.arange(ill.n_shots)
    ours = np.asarray(fwd.render(jnp.asarray(np.stack([density[None]] * len(shots))), jnp.asarray(shots)))
    for s in shots:
        theirs = imager.image(density, int(s))
        assert np.abs(ours[s] - theirs).max() < 1e-4 * np.abs(theirs).max(), s
    np.testing.assert_allclose(np.asarray(fwd.widefield(jnp.asarray(density))), imager.widefield(density), atol=1e-4 * imager.widefield(density).max())


def test_sim3d_forward_matches_the_simulated_camera_through_focus():
    # beads in every plane of an 6-plane stack; the simulator images each focal plane through
    # the defocused OTFs of all sample planes (no wrap-round in z), the forward model pads z
    from nstm_acquire.physics.sim.forward import Sim3DForward, lateral_order_fields
    from nstm_acquire.physics.sim.otf import three_beam_order_otfs

    optics = Optics(wavelength_um=0.52, na_detection=1.2, pixel_size_um=0.1, immersion_index=1.33)
    ill = default_sim_illumination(optics, 0.488, three_beam=True, modulation=0.9)
    u, fine, nz, dz = 2, (64, 64), 6, 0.2
    fine_px = optics.pixel_size_um / u
    planes = (np.arange(nz) - nz // 2) * dz
    rng = np.random.default_rng(2)
    density = np.zeros((nz, *fine), np.float32)
    for _ in range(60):
        density[rng.integers(0, nz), rng.integers(4, 60), rng.integers(4, 60)] = rng.uniform(0.5, 1.0)
    imager = SimImager(optics, ill, fine, fine_px, z_um=planes)
    n = optics.immersion_index
    kz = ill.axial_k_for_orientation(0, n)
    assert all(abs(ill.axial_k_for_orientation(d, n) - kz) < 1e-9 for d in range(3))
    pad = nz // 2
    otfs = three_beam_order_otfs((nz + 2 * pad, *fine), fine_px, dz, optics, kz, camera_pixel_um=optics.pixel_size_um)
    fwd = Sim3DForward.create(lateral_order_fields(ill, fine, fine_px, n), otfs[:2], u, nz)
    shots = np.arange(ill.n_shots)
    ours = np.asarray(fwd.render(jnp.asarray(np.stack([density[None]] * len(shots))), jnp.asarray(shots)))
    assert ours.shape == (ill.n_shots, nz, 32, 32)
    for s in (0, 1, 7, 14):
        for i, z in enumerate(planes):
            theirs = imager.image(density, int(s), float(z))
            assert np.abs(ours[s, i] - theirs).max() < 2e-3 * np.abs(theirs).max(), (s, i)
    # without the padding, light wraps round the stack and the model is wrong at its ends
    otfs0 = three_beam_order_otfs((nz, *fine), fine_px, dz, optics, kz, camera_pixel_um=optics.pixel_size_um)
    wrapped = Sim3DForward.create(lateral_order_fields(ill, fine, fine_px, n), otfs0[:2], u, nz)
    bad = np.asarray(wrapped.render(jnp.asarray(density[None, None]), jnp.asarray([0])))[0, 0]
    theirs = imager.image(density, 0, float(planes[0]))
    assert np.abs(bad - theirs).max() > 2e-2 * np.abs(theirs).max()
