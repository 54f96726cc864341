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


def _three_beam_forward(n: int, nz: int, dz: float):
    from nstm_acquire.physics.sim.forward import Sim3DForward, lateral_order_fields
    from nstm_acquire.physics.sim.otf import three_beam_order_otfs

    optics = Optics(wavelength_um=0.52, na_detection=1.2, pixel_size_um=0.1, immersion_index=1.33)
    ill = default_sim_illumination(optics, 0.488, three_beam=True, modulation=0.9)
    fine, fine_px = (2 * n, 2 * n), optics.pixel_size_um / 2
    kz = ill.axial_k_for_orientation(0, optics.immersion_index)
    otfs = three_beam_order_otfs((2 * nz, *fine), fine_px, dz, optics, kz, camera_pixel_um=optics.pixel_size_um)
    fields = lateral_order_fields(ill, fine, fine_px, optics.immersion_index)
    return Sim3DForward.create(fields, otfs[:2], 2, nz), ill.n_shots


def _frame_starts(n_shots: int, nz: int, order: str) -> np.ndarray:
    """(S, Z) frame index in time: pattern_major takes each shot's stack, plane_major each plane's shots."""
    idx = np.arange(n_shots * nz, dtype=float)
    return idx.reshape(n_shots, nz) if order == "pattern_major" else idx.reshape(nz, n_shots).T.copy()


def test_time_bins_follow_the_acquisition_order():
    from nstm_acquire.physics.sim.forward import frame_time_bins

    pattern = frame_time_bins(_frame_starts(15, 4, "pattern_major"), 3.5)
    assert pattern == [[(s, z) for z in range(4)] for s in range(15)]  # the stacks
    plane = frame_time_bins(_frame_starts(15, 4, "plane_major"), 3.5)
    assert plane[0] == [(0, 0), (1, 0), (2, 0), (3, 0)] and plane[3] == [(12, 0), (13, 0), (14, 0), (0, 1)]
    assert len(frame_time_bins(_frame_starts(15, 4, "plane_major"), 0.0)) == 60  # every frame its own


def test_binned_frames_forward_equals_the_stack_forward_on_a_static_volume():
    """A static sample: the same prediction as one volume per (orientation, phase) stack, for
    any bins (the pattern basis of a bin is exact)."""
    from nstm_acquire.physics.sim.forward import Sim3DFramesForward, frame_time_bins

    n, nz = 16, 4
    fwd, n_shots = _three_beam_forward(n, nz, 0.15)
    rng = np.random.default_rng(3)
    rho = jnp.asarray(rng.random((1, nz, 2 * n, 2 * n)), jnp.float32)
    stacks = np.asarray(fwd.render(jnp.broadcast_to(rho, (n_shots, *rho.shape)), jnp.arange(n_shots)))
    for order in ("pattern_major", "plane_major"):
        for spread in (0.0, 3.5, 14.5):
            bins = frame_time_bins(_frame_starts(n_shots, nz, order), spread)
            frames = Sim3DFramesForward.create(fwd, bins)
            pred = np.asarray(frames.render(jnp.broadcast_to(rho, (len(bins), *rho.shape)), jnp.arange(len(bins))))
            for b, members in enumerate(bins):
                for m, (s, z) in enumerate(members):
                    np.testing.assert_allclose(pred[b, m], stacks[s, z], atol=2e-6 * np.abs(stacks).max())


def test_binned_frames_forward_matches_per_frame_rendering_of_a_moving_volume():
    """Beads drifting 0.05 camera px per frame (3 px over the 60-frame window): each frame
    predicted from its bin's volume (at the bin's mean time) against the volume at the frame's own
    time. Bins of 4 frames leave 2.4 % of the signal (RMS, both plane orders), bins of 2 frames
    1.1 % (the RMS time offset, 0.5 instead of 1.1 frame intervals), 1 frame nothing."""
    from nstm_acquire.physics.sim.forward import Sim3DFramesForward, frame_time_bins

    n, nz = 16, 4
    fwd, n_shots = _three_beam_forward(n, nz, 0.15)
    rng = np.random.default_rng(4)
    beads = np.c_[rng.integers(0, nz, 30), rng.uniform(4, 2 * n - 4, (30, 2))]
    yy, xx = np.mgrid[0 : 2 * n, 0 : 2 * n]
    velocity = 0.1  # fine px per frame

    def volume(t: float) -> np.ndarray:
        vol = np.zeros((1, nz, 2 * n, 2 * n), np.float32)
        for z, y, x in beads:
            vol[0, int(z)] += np.exp(-((yy - y - velocity * t) ** 2 + (xx - x - 0.5 * velocity * t) ** 2) / 2.0)
        return vol

    for order in ("pattern_major", "plane_major"):
        t = _frame_starts(n_shots, nz, order)
        exact_bins = frame_time_bins(t, 0.0)
        exact = Sim3DFramesForward.create(fwd, exact_bins)
        own = np.asarray(exact.render(jnp.asarray(np.stack([volume(t[b[0]]) for b in exact_bins])), jnp.arange(len(exact_bins))))
        reference = np.empty((n_shots, nz, n, n), np.float32)
        for k, ((s, z),) in enumerate(exact_bins):
            reference[s, z] = own[k, 0]
        errors = []
        for frames_per_bin in (1, 2, 4):
            bins = frame_time_bins(t, frames_per_bin - 0.5)
            binned = Sim3DFramesForward.create(fwd, bins)
            volumes = np.stack([volume(float(np.mean([t[f] for f in b]))) for b in bins])
            pred = np.asarray(binned.render(jnp.asarray(volumes), jnp.arange(len(bins))))
            diff = [pred[b, m] - reference[f] for b, members in enumerate(bins) for m, f in enumerate(members)]
            errors.append(float(np.sqrt(np.mean(np.square(diff))) / np.sqrt(np.mean(reference**2))))
        assert errors[0] < 1e-5, errors
        assert errors[2] < 0.03, errors  # measured 0.024
        assert errors[1] < 0.55 * errors[2], errors  # measured 0.011


def test_sim2d_band_limited_path_equals_the_folded_one_and_is_chosen_only_when_exact():
    # the optical transfer vanishes beyond the camera's Nyquist frequency (NA 1.4, 80 nm pixels):
    # cropping the half spectrum gives the folded result, for even and odd camera sizes
    from nstm_acquire.physics.sim.forward import transfer_within_camera_band

    ill = default_sim_illumination(OPTICS, 0.488)
    u = 2
    fine_px = OPTICS.pixel_size_um / u
    for fine in [(64, 64), (62, 70)]:
        transfer = widefield_otf_2d(fine, fine_px, OPTICS) * camera_pixel_transfer(fine, fine_px, OPTICS.pixel_size_um)
        patterns = sim_patterns_2d(ill, fine, fine_px)
        cropped = Sim2DForward.create(patterns, transfer, u)
        folded = Sim2DForward(jnp.asarray(patterns), jnp.asarray(transfer, jnp.float32), u)
        assert cropped.band_limited and not folded.band_limited
        scenes = jnp.asarray(np.random.default_rng(3).random((ill.n_shots, 1, *fine)), jnp.float32)
        shots = jnp.arange(ill.n_shots)
        a, b = np.asarray(cropped.render(scenes, shots)), np.asarray(folded.render(scenes, shots))
        assert a.shape == b.shape == (ill.n_shots, fine[0] // u, fine[1] // u)
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max())
    wide = np.ones((64, 64), np.float32)  # passes everything: aliases to fold, the general path
    assert not transfer_within_camera_band(wide, 2) and not Sim2DForward.create(patterns[:, :64, :64], wide, 2).band_limited


def test_sim3d_band_limited_path_equals_the_folded_one_for_stacks_and_time_bins():
    # NA 1.2 and 100 nm pixels: the 3D transfers vanish beyond the camera's Nyquist frequency, so
    # every lateral spectrum is cut to the camera's band before the axial products; the result
    # is the fine-grid path's (aliases folded), for even and odd camera sizes and both renderers
    from nstm_acquire.physics.sim.forward import Sim3DFramesForward, frame_time_bins

    for n in (16, 15):
        nz = 4
        cut, n_shots = _three_beam_forward(n, nz, 0.15)
        assert cut.band_limited and cut.transfer.shape[-2:] == (n, n // 2 + 1)
        full = _three_beam_forward_folded(n, nz, 0.15)
        assert not full.band_limited and full.transfer.shape[-2:] == (2 * n, n + 1)
        rho = jnp.asarray(np.random.default_rng(5).random((n_shots, 1, nz, 2 * n, 2 * n)), jnp.float32)
        shots = jnp.arange(n_shots)
        a, b = np.asarray(cut.render(rho, shots)), np.asarray(full.render(rho, shots))
        assert a.shape == b.shape == (n_shots, nz, n, n)
        np.testing.assert_allclose(a, b, atol=2e-6 * np.abs(b).max())
        bins = frame_time_bins(_frame_starts(n_shots, nz, "plane_major"), 1.5)
        frames_cut, frames_full = Sim3DFramesForward.create(cut, bins), Sim3DFramesForward.create(full, bins)
        assert frames_cut.band_limited and not frames_full.band_limited
        first = jnp.arange(n_shots)  # the first 15 of the 30 two-frame bins, a volume each
        np.testing.assert_allclose(
            np.asarray(frames_cut.render(rho, first)), np.asarray(frames_full.render(rho, first)), atol=2e-6 * np.abs(b).max()
        )


def _three_beam_forward_folded(n: int, nz: int, dz: float):
    """:func:`_three_beam_forward` made to take the general path (aliases folded on the fine grid):
    a transfer equal to it plus an out-of-band value of round-off size."""
    from nstm_acquire.physics.sim.forward import Sim3DForward, lateral_order_fields
    from nstm_acquire.physics.sim.otf import three_beam_order_otfs

    optics = Optics(wavelength_um=0.52, na_detection=1.2, pixel_size_um=0.1, immersion_index=1.33)
    ill = default_sim_illumination(optics, 0.488, three_beam=True, modulation=0.9)
    fine, fine_px = (2 * n, 2 * n), optics.pixel_size_um / 2
    kz = ill.axial_k_for_orientation(0, optics.immersion_index)
    otfs = np.array(three_beam_order_otfs((2 * nz, *fine), fine_px, dz, optics, kz, camera_pixel_um=optics.pixel_size_um))
    otfs[:2, 0, n, n] += 1e-30  # at the camera's Nyquist frequency: not band-limited, no effect
    fields = lateral_order_fields(ill, fine, fine_px, optics.immersion_index)
    return Sim3DForward.create(fields, otfs[:2], 2, nz)
