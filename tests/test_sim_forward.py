"""The NSTM's SIM forward models agree with the simulated microscope's independent image formation."""

import jax.numpy as jnp
import numpy as np

from nstm_acquire.forward.sim import Sim2DForward, fold_spectrum, sim_patterns_2d
from nstm_acquire.hardware.simulated.sim_imaging import SimImager, camera_pixel_transfer, widefield_otf_2d
from nstm_acquire.optics import Optics
from nstm_acquire.sim_illumination import default_sim_illumination

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
