"""Phantoms: determinism, value ranges, geometry as configured, and accurate evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nstm_acquire.hardware.simulated.phantoms import BeadPhantom, CellPhantom, FilamentPhantom
from nstm_acquire.hardware.simulated.sample import MovingSample

FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def grid(field: tuple[float, float], pixel: float) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = int(round(field[0] / pixel)), int(round(field[1] / pixel))
    return (np.arange(ny) * pixel)[:, None], (np.arange(nx) * pixel)[None, :]


def fwhm_of_profile(s: np.ndarray, values: np.ndarray) -> float:
    """Full width at half maximum of a single-peaked sampled profile (linear crossing)."""
    half = values.max() / 2
    above = np.flatnonzero(values >= half)
    i0, i1 = above[0], above[-1]
    left = s[i0 - 1] + (half - values[i0 - 1]) / (values[i0] - values[i0 - 1]) * (s[i0] - s[i0 - 1])
    right = s[i1] + (values[i1] - half) / (values[i1] - values[i1 + 1]) * (s[i1 + 1] - s[i1])
    return right - left


# ----------------------------------------------------------------------------- cells


@pytest.fixture(scope="module")
def cells() -> CellPhantom:
    return CellPhantom((24.0, 24.0), n_cells=6, seed=3)


def test_cell_phantom_is_deterministic_per_seed(cells):
    y, x = grid((24.0, 24.0), 0.3)
    again = CellPhantom((24.0, 24.0), n_cells=6, seed=3)
    other = CellPhantom((24.0, 24.0), n_cells=6, seed=4)
    for a, b in zip(cells.evaluate(y, x), again.evaluate(y, x), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(cells.evaluate(y, x)[1], other.evaluate(y, x)[1])


def test_cell_values_are_weak_absorbing_phase_objects_with_smooth_edges(cells):
    pixel = 0.05
    y, x = grid((24.0, 24.0), pixel)
    mu, phi = cells.evaluate(y, x)
    assert mu.shape == phi.shape == (480, 480) and phi.dtype == np.float32
    assert phi.min() >= 0 and mu.min() >= 0
    assert 1.0 <= phi.max() <= 2.0  # nucleus on a cell: ~1.6 x phase_rad
    assert mu.max() <= 4 * cells.absorption  # weak absorption
    assert np.mean(phi > 0.05) > 0.2  # cells cover a good part of the view
    # no edge steeper than the peak phase over 0.5 µm
    gy, gx = np.gradient(phi.astype(np.float64), pixel)
    assert np.hypot(gy, gx).max() < phi.max() / 0.5


def test_cell_values_scale_with_phase_and_absorption():
    y, x = grid((16.0, 16.0), 0.2)
    base = CellPhantom((16.0, 16.0), n_cells=4, seed=1)
    scaled = CellPhantom((16.0, 16.0), n_cells=4, seed=1, phase_rad=2.0, absorption=0.15)
    mu0, phi0 = base.evaluate(y, x)
    mu1, phi1 = scaled.evaluate(y, x)
    np.testing.assert_allclose(phi1, 2.0 * phi0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mu1, 3.0 * mu0, rtol=1e-5, atol=1e-6)


def test_cell_raster_matches_the_analytic_cell(cells):
    """Interpolated raster vs. the analytic component maps at random points."""
    rng = np.random.default_rng(0)
    y, x = rng.uniform(-6, 30, 4000), rng.uniform(-6, 30, 4000)
    phi_expected = np.zeros_like(y)
    for cell in cells.cells:
        body, nucleus, granules = cells.components(cell, y, x)
        phi_expected += cells.phase_rad * (body + 0.6 * nucleus + 0.35 * granules)
    _, phi = cells.evaluate(y, x)
    assert np.max(np.abs(phi - phi_expected)) < 0.01 * cells.phase_rad


def test_cells_extend_beyond_the_field_and_vanish_outside_the_raster(cells):
    y = np.linspace(-6, 30, 361)[:, None]
    x = np.linspace(-6, 30, 361)[None, :]
    _, phi = cells.evaluate(y, x)
    outside_field = (y < 0) | (y > 24) | (x < 0) | (x > 24)
    assert phi[np.broadcast_to(outside_field, phi.shape)].max() > 0.3  # content can move in
    ymin, ymax, xmin, xmax = cells.extent_um
    far = cells.evaluate(
        np.array([ymin - 1, ymax + 1, 12.0, 12.0]), np.array([12.0, 12.0, xmin - 1, xmax + 1])
    )
    np.testing.assert_array_equal(far[0], 0.0)
    np.testing.assert_array_equal(far[1], 0.0)
    assert cells.evaluate(np.zeros((5, 1)), np.zeros((1, 7)))[1].shape == (5, 7)


def test_cell_validation_names_the_field():
    with pytest.raises(ValueError, match="field_um"):
        CellPhantom((0.0, 10.0))
    with pytest.raises(ValueError, match="cell_radius_um"):
        CellPhantom((10.0, 10.0), cell_radius_um=(5.0, 2.0))
    with pytest.raises(ValueError, match="granule_fwhm_um"):
        CellPhantom((10.0, 10.0), granule_fwhm_um=(0.0, 1.0))
    with pytest.raises(ValueError, match="raster_pixel_um"):
        CellPhantom((10.0, 10.0), raster_pixel_um=0.5)
    # the default raster resolves the narrowest structure 5x
    assert CellPhantom((5.0, 5.0), n_cells=1, granule_fwhm_um=(1.0, 2.0)).raster_pixel_um == 0.16
    with pytest.raises(ValueError, match="2D"):
        CellPhantom((10.0, 10.0), n_cells=1).evaluate(np.zeros(1), np.zeros(1), np.zeros(1))


# ----------------------------------------------------------------------------- beads


def test_bead_pairs_are_at_the_configured_separations():
    seps = (0.12, 0.16, 0.2, 0.25)
    beads = BeadPhantom((12.0, 12.0), n_beads=30, seed=5, pair_separations_um=seps, n_pairs_each=3)
    assert beads.positions_um.shape == (30 + 2 * 12, 2)
    assert sorted(round(s, 6) for _, _, s in beads.pairs) == sorted(
        s for s in seps for _ in range(3)
    )
    for i, j, sep in beads.pairs:
        assert np.linalg.norm(beads.positions_um[i] - beads.positions_um[j]) == pytest.approx(
            sep, abs=1e-12
        )
        centre = 0.5 * (beads.positions_um[i] + beads.positions_um[j])
        assert np.all((centre > 1.2) & (centre < 10.8))  # inner 80 % of the field
        others = np.delete(beads.positions_um, [i, j], axis=0)
        assert np.min(np.linalg.norm(others - centre, axis=1)) >= 5 * 0.19 + 0.25 - 1e-9
    again = BeadPhantom((12.0, 12.0), n_beads=30, seed=5, pair_separations_um=seps, n_pairs_each=3)
    np.testing.assert_array_equal(again.positions_um, beads.positions_um)
    assert not np.array_equal(
        BeadPhantom((12.0, 12.0), n_beads=30, seed=6).positions_um, beads.positions_um
    )


def test_beads_are_unit_gaussians_of_the_given_fwhm():
    diameter = 0.19
    beads = BeadPhantom((8.0, 8.0), n_beads=25, diameter_um=diameter, seed=2)
    pos = beads.positions_um
    sigma = diameter / FWHM_PER_SIGMA
    # independent numpy sum of Gaussians at random points
    rng = np.random.default_rng(1)
    y, x = rng.uniform(-2, 10, 20000), rng.uniform(-2, 10, 20000)
    d2 = (y[:, None] - pos[None, :, 0]) ** 2 + (x[:, None] - pos[None, :, 1]) ** 2
    expected = np.exp(-d2 / (2 * sigma**2)).sum(axis=1)
    assert np.max(np.abs(beads.evaluate(y, x) - expected)) < 0.03
    # an isolated bead: peak 1, FWHM = diameter
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=2) + np.eye(len(pos)) * 1e9
    k = int(np.argmax(dist.min(axis=1)))
    s = np.linspace(-0.3, 0.3, 1201)
    profile = beads.evaluate(np.full_like(s, pos[k, 0]), pos[k, 1] + s)
    assert profile.max() == pytest.approx(1.0, abs=0.03)
    assert fwhm_of_profile(s, profile) == pytest.approx(diameter, rel=0.03)


def test_3d_beads_have_z_and_the_same_fwhm_axially():
    diameter = 0.25
    beads = BeadPhantom(
        (6.0, 6.0),
        n_beads=10,
        diameter_um=diameter,
        seed=1,
        z_range_um=(-0.5, 0.5),
        pair_separations_um=(0.2,),
        n_pairs_each=2,
    )
    pos = beads.positions_um
    assert pos.shape == (14, 3) and np.all((pos[:, 0] >= -0.5) & (pos[:, 0] <= 0.5))
    for i, j, sep in beads.pairs:
        assert pos[i, 0] == pos[j, 0]  # pair in one plane, separated laterally
        assert np.linalg.norm(pos[i, 1:] - pos[j, 1:]) == pytest.approx(sep)
    lone = BeadPhantom.from_positions((6.0, 6.0), [[0.1, 3.0, 3.0]], diameter_um=diameter)
    z = np.linspace(-0.3, 0.5, 801)
    profile = lone.evaluate(np.full_like(z, 3.0), np.full_like(z, 3.0), z)
    assert profile.max() == pytest.approx(1.0, abs=0.03)
    assert fwhm_of_profile(z, profile) == pytest.approx(diameter, rel=0.03)
    assert z[np.argmax(profile)] == pytest.approx(0.1, abs=2e-3)
    with pytest.raises(ValueError, match="z_um"):
        lone.evaluate(np.zeros(1), np.zeros(1))
    # a stack of planes from the moving sample
    stack = MovingSample(lone, "static").on_grid(
        0.0, (60, 60), 0.1, z_um=np.array([0.1, 0.1 + diameter / 2, 2.0])
    )
    assert stack.shape == (3, 60, 60)
    assert stack[0, 30, 30] == pytest.approx(1.0, abs=0.03)
    assert stack[1, 30, 30] == pytest.approx(0.5, abs=0.02)
    assert stack[2].max() == 0.0


def test_bead_validation():
    with pytest.raises(ValueError, match="too small"):
        BeadPhantom((1.0, 1.0), n_pairs_each=5)
    with pytest.raises(ValueError, match="raster_pixel_um"):
        BeadPhantom((20.0, 20.0), raster_pixel_um=0.1)
    with pytest.raises(ValueError, match="pair_separations_um"):
        BeadPhantom((5.0, 5.0), pair_separations_um=(0.1, -0.2))


# ----------------------------------------------------------------------------- filaments


@pytest.fixture(scope="module")
def filaments() -> FilamentPhantom:
    return FilamentPhantom((8.0, 8.0), n_filaments=8, seed=0)


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(
        np.einsum("psk,sk->ps", points[:, None] - a[None], ab) / np.sum(ab * ab, axis=1), 0, 1
    )
    closest = a[None] + t[..., None] * ab[None]
    return np.min(np.linalg.norm(points[:, None] - closest, axis=2), axis=1)


def test_filaments_are_deterministic_and_span_the_padded_field(filaments):
    again = FilamentPhantom((8.0, 8.0), n_filaments=8, seed=0)
    for a, b in zip(filaments.centerlines_um, again.centerlines_um, strict=True):
        np.testing.assert_array_equal(a, b)
    other = FilamentPhantom((8.0, 8.0), n_filaments=8, seed=1)
    assert not np.allclose(other.centerlines_um[0][:10], filaments.centerlines_um[0][:10])
    assert len(filaments.centerlines_um) == 8
    for line in filaments.centerlines_um:
        length = np.sum(np.linalg.norm(np.diff(line, axis=0), axis=1))
        assert length > 8.0  # runs across the (padded) field


def test_filaments_curve_gently(filaments):
    for index, line in enumerate(filaments.centerlines_um):
        d1 = np.gradient(line, axis=0)
        d2 = np.gradient(d1, axis=0)
        curvature = (
            np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) / np.linalg.norm(d1, axis=1) ** 3
        )
        radius_min = filaments.min_curvature_radius_um
        partner_slack = 0.3 if any(index == j for _, j, _ in filaments.parallel_pairs) else 0.0
        assert 1.0 / curvature[2:-2].max() >= 0.95 * (radius_min - partner_slack)


def test_filaments_cross_and_have_near_parallel_pairs(filaments):
    first, second = filaments.centerlines_um[:2]
    # filament 1 starts on filament 0 and leaves it at an angle: the two cross
    k = int(np.argmin(_distance_to_polyline(second, first)))
    assert _distance_to_polyline(second[k : k + 1], first)[0] < 1e-6
    m = int(np.argmin(np.linalg.norm(first - second[k], axis=1)))
    tangent = first[m + 1] - first[m - 1]
    before, after = second[k - 5] - second[k], second[k + 5] - second[k]
    cross = [tangent[0] * d[1] - tangent[1] * d[0] for d in (before, after)]
    assert cross[0] * cross[1] < 0  # on opposite sides of filament 0: a crossing, not a touch
    assert len(filaments.parallel_pairs) == 2
    for i, j, sep in filaments.parallel_pairs:
        assert 0.15 <= sep <= 0.3
        line_j = filaments.centerlines_um[j]
        middle = line_j[len(line_j) // 4 : 3 * len(line_j) // 4 : 10]
        np.testing.assert_allclose(
            _distance_to_polyline(middle, filaments.centerlines_um[i]), sep, rtol=0.01
        )


def test_filament_cross_section_has_the_configured_fwhm(filaments):
    width = filaments.width_um
    lines = filaments.centerlines_um
    # a centre-line point inside the field, far from every other filament
    best = None
    for index, line in enumerate(lines):
        others = [other for k, other in enumerate(lines) if k != index]
        for k in range(20, len(line) - 20, 10):
            p = line[k]
            if not (1.0 < p[0] < 7.0 and 1.0 < p[1] < 7.0):
                continue
            clearance = min(_distance_to_polyline(p[None], o)[0] for o in others)
            if clearance > 0.4:
                best = (line, k)
                break
        if best:
            break
    assert best is not None
    line, k = best
    tangent = (line[k + 1] - line[k - 1]) / np.linalg.norm(line[k + 1] - line[k - 1])
    normal = np.array([-tangent[1], tangent[0]])
    s = np.linspace(-0.1, 0.1, 801)
    pts = line[k][None] + s[:, None] * normal[None]
    profile = filaments.evaluate(pts[:, 0], pts[:, 1])
    assert profile.max() == pytest.approx(1.0, abs=0.03)
    assert fwhm_of_profile(s, profile) == pytest.approx(width, rel=0.05)
    assert abs(s[np.argmax(profile)]) < 0.003


def test_3d_filaments_are_tilted_in_z():
    fil = FilamentPhantom((6.0, 6.0), n_filaments=3, seed=2, z_range_um=(-0.8, 0.8))
    assert fil.is_3d
    for line in fil.centerlines_um:
        assert line.shape[1] == 3
        assert np.all((line[:, 0] >= -0.8) & (line[:, 0] <= 0.8))
        assert np.ptp(line[:, 0]) > 0.0
    # at a centre-line point, the density peaks in the plane of that point
    line = fil.centerlines_um[0]
    p = line[len(line) // 2]
    z = np.linspace(p[0] - 0.1, p[0] + 0.1, 41)
    profile = fil.evaluate(np.full_like(z, p[1]), np.full_like(z, p[2]), z)
    assert z[np.argmax(profile)] == pytest.approx(p[0], abs=0.006)
    assert profile.max() > 0.9
