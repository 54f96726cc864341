"""Rolling-shutter lensless physics: row timing, the forward model, the conventional baselines.

Known answers: row intervals computed by hand; the forward model against a direct numpy
per-row time integration (explicit shift-and-add convolution, fine quadrature in time) and
against the independent simulated camera; the adjoint by the inner-product identity; the
TV proximal step by its optimality; FISTA-TV by its objective; static deconvolution by
recovering a static scene.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from nstm_acquire.physics.rolling_shutter import (
    LenslessConvolution,
    RollingShutterForward,
    RowTiming,
    anisotropic_tv,
    fista_tv3d,
    hat_weights,
    prox_tv_nonnegative,
    tikhonov_deconvolution,
)


def test_row_intervals_by_hand():
    t = RowTiming(4, row_time_s=10e-6, exposure_s=25e-6)
    got = t.intervals_s(1.0) - 1.0
    want = np.array([[0, 25], [10, 35], [20, 45], [30, 55]]) * 1e-6
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert t.frame_span_s == pytest.approx(55e-6)
    up = RowTiming(4, 10e-6, 25e-6, "bottom_to_top").intervals_s(0.0)
    np.testing.assert_allclose(up[:, 0], [30e-6, 20e-6, 10e-6, 0.0], atol=1e-12)
    centre = RowTiming(4, 10e-6, 25e-6, "centre_out")
    np.testing.assert_allclose(centre.open_offsets_s(), [10e-6, 0, 0, 10e-6], atol=1e-12)
    assert centre.frame_span_s == pytest.approx(35e-6)
    np.testing.assert_array_equal(RowTiming(5, 1.0, 1.0, "centre_out").slots(), [2, 1, 0, 1, 2])
    both = t.intervals_s(np.array([0.0, 1.0]))
    assert both.shape == (2, 4, 2) and both[1, 0, 0] == 1.0


@pytest.mark.parametrize(
    "kwargs, field",
    [({"row_time_s": 0.0}, "row_time_s"), ({"exposure_s": -1.0}, "exposure_s"), ({"direction": "sideways"}, "direction")],
)
def test_row_timing_rejects_bad_input(kwargs, field):
    args = {"n_rows": 8, "row_time_s": 1e-5, "exposure_s": 1e-4, **kwargs}
    with pytest.raises(ValueError, match=field):
        RowTiming(**args)


def test_hat_weights_integrate_a_linear_signal_exactly():
    times = np.linspace(0.0, 1.0, 6)
    opened = np.array([0.0, 0.13, 0.5, 0.71])
    w = hat_weights(opened, 0.29, times)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    signal = 3.0 * times - 1.0  # a scene linear in time: the weights give its exact exposure mean
    np.testing.assert_allclose(w @ signal, 3.0 * (opened + 0.145) - 1.0, atol=1e-12)


def _direct_rows(scenes, psf, timing, frame_starts, offsets, n_quad=4000):
    """Independent reference: per row, the time average over its interval of the explicitly
    convolved (shift-and-add, zero outside) scene interpolated linearly between the time points."""
    nf, nt = len(frame_starts), len(offsets)
    c, hs, ws = scenes.shape[1:]
    h, w = timing.n_rows, ws
    hp, wp = psf.shape
    conv = np.zeros((nf * nt, c, h, w))
    for k in range(nf * nt):  # sensor pixel i sees scene a with psf index i - a + hp // 2
        for a in range(hs):
            for b in range(ws):
                for i in range(h):
                    for j in range(w):
                        u, v = i - a + hp // 2, j - b + wp // 2
                        if 0 <= u < hp and 0 <= v < wp:
                            conv[k, :, i, j] += scenes[k, :, a, b] * psf[u, v]
    out = np.zeros((nf, c, h, w))
    for f in range(nf):
        for r, (lo, hi) in enumerate(timing.intervals_s(0.0)):
            tq = lo + (np.arange(n_quad) + 0.5) / n_quad * (hi - lo)
            for s in range(c):
                for j in range(w):
                    out[f, s, r, j] = np.interp(tq, offsets, conv[f * nt : (f + 1) * nt, s, r, j]).mean()
    return out


@pytest.mark.parametrize("direction", ["top_to_bottom", "centre_out"])
def test_forward_matches_direct_per_row_integration(direction):
    rng = np.random.default_rng(0)
    timing = RowTiming(8, row_time_s=1e-4, exposure_s=3.5e-4, direction=direction)
    psf = rng.random((5, 5))
    psf /= psf.sum()
    fwd = RollingShutterForward.build(psf, timing, n_cols=6, n_time=4, channels=2)
    offsets = fwd.time_offsets_s(timing, 4)
    scenes = rng.random((8, 2, 8, 6)).astype(np.float32)  # 2 frames x 4 time points
    got = fwd.blocks_to_frames(np.asarray(fwd.render(jnp.asarray(scenes))))
    want = _direct_rows(scenes, psf, timing, [0.0, 1.0], offsets)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    assert fwd.n_contrib < 4 or direction == "centre_out"  # a block renders only its time points


def test_forward_matches_the_simulated_camera():
    """The independent simulator (own timing, scipy convolution, fine time steps) on a moving scene."""
    from nstm_acquire.hardware.simulated.lensless import (
        LenslessCamera,
        MovingRgbScene,
        caustic_psf,
        simulate_lensless_video,
    )

    cam = LenslessCamera((16, 16), 1e-4, 4e-4, "bottom_to_top")
    scene = MovingRgbScene.random((16, 16), 2, speed_px_per_s=400.0, duration_s=2 * cam.span_s(), seed=3)
    psf = caustic_psf((16, 16), seed=1)
    video = simulate_lensless_video(cam, scene, psf, 2, steps_per_row=4)
    timing = RowTiming(16, 1e-4, 4e-4, "bottom_to_top")
    fwd = RollingShutterForward.build(psf, timing, 16, n_time=8)
    scenes = np.stack([scene.render(t) for t in fwd.times_s(timing, video.frame_starts_s)]).astype(np.float32)
    got = fwd.blocks_to_frames(np.asarray(fwd.render(jnp.asarray(scenes))))
    assert np.abs(got - video.clean).max() < 2e-3 * video.clean.max()
    # frame-level timing (every row at the frame's middle) is measurably wrong for this motion
    mid = np.stack([scene.render(s + cam.span_s() / 2) for s in video.frame_starts_s]).astype(np.float32)
    frame_level = np.asarray(fwd.conv(jnp.asarray(mid)))
    assert np.abs(frame_level - video.clean).max() > 20 * np.abs(got - video.clean).max()


def test_convolution_adjoint_and_crop():
    rng = np.random.default_rng(1)
    conv = LenslessConvolution.build(rng.random((3, 7, 5)), (6, 8), scene_shape=(10, 12))
    x = jnp.asarray(rng.standard_normal((3, 10, 12)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((3, 6, 8)), jnp.float32)
    np.testing.assert_allclose(float(jnp.vdot(conv(x), y)), float(jnp.vdot(x, conv.adjoint(y))), rtol=1e-4)
    # an on-axis point (scene centre) puts the PSF centre on the sensor centre
    point = np.zeros((1, 10, 12), np.float32)
    point[0, 5, 6] = 1.0
    delta = LenslessConvolution.build(np.pad(np.ones((1, 1)), 2), (6, 8), scene_shape=(10, 12))
    img = np.asarray(delta(jnp.asarray(point)))[0]
    assert np.unravel_index(np.argmax(img), img.shape) == (5 - 2, 6 - 2)
    with pytest.raises(ValueError, match="psf"):
        LenslessConvolution.build(-np.ones((3, 3)), (4, 4))


def test_tv_prox_is_optimal():
    rng = np.random.default_rng(2)
    b = jnp.asarray(rng.random((4, 2, 6, 6)), jnp.float32)
    lam = 0.05
    x, _ = prox_tv_nonnegative(b, lam, 1.0, 200)
    x = np.asarray(x)
    assert x.min() >= 0

    def obj(z):
        return 0.5 * float(jnp.sum((z - b) ** 2)) + lam * float(anisotropic_tv(jnp.asarray(z)))

    best = obj(x)
    assert best < obj(np.asarray(b)) and best < obj(np.zeros_like(x))
    for _ in range(20):  # no nearby non-negative point does better
        z = np.clip(x + 0.01 * rng.standard_normal(x.shape), 0, None)
        assert obj(z) >= best - 1e-4


def _moving_case(n=16, n_frames=2, n_time=8):
    rng = np.random.default_rng(4)
    timing = RowTiming(n, 1e-4, 4e-4)
    psf = rng.random((n, n)) ** 8
    fwd = RollingShutterForward.build(psf, timing, n, n_time=n_time)
    yy, xx = np.mgrid[0:n, 0:n]
    scenes = []
    for t in fwd.times_s(timing, np.arange(n_frames) * timing.frame_span_s):
        cy, cx = 5 + 2000 * t, 6 + 1000 * t
        scenes.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)[None].repeat(3, 0))
    scenes = np.stack(scenes).astype(np.float32)
    return fwd, scenes, np.asarray(fwd.render(jnp.asarray(scenes)))


def test_fista_tv_decreases_its_objective():
    fwd, scenes, blocks = _moving_case()
    video, history = fista_tv3d(fwd, blocks, tau=1e-3, n_iter=60, record_every=20)
    assert len(history) == 4
    assert history[-1] < 0.2 * history[0]
    assert history[-1] <= history[1]
    assert video.shape == scenes.shape and video.min() >= 0


def test_static_deconvolution_recovers_a_static_scene():
    rng = np.random.default_rng(5)
    n = 16
    psf = rng.random((n, n)) ** 8
    conv = LenslessConvolution.build(psf, (n, n))
    yy, xx = np.mgrid[0:n, 0:n]
    scene = np.stack([np.exp(-((yy - 7) ** 2 + (xx - 9) ** 2) / 6.0), 0.5 * np.exp(-((yy - 10) ** 2 + (xx - 4) ** 2) / 3.0)])
    frames = np.asarray(conv(jnp.asarray(scene[None], jnp.float32)))
    got = tikhonov_deconvolution(frames, conv, reg=1e-6, n_iter=500)[0]
    assert np.linalg.norm(got - scene) < 0.1 * np.linalg.norm(scene)
    with pytest.raises(ValueError, match="frames"):
        tikhonov_deconvolution(frames[0], conv)
