"""Every hyper-parameter of the NSTM, in one validated object.

Two presets:

* :func:`published_config` -- the network sizes and schedule of the published DPC demo
  (Cao et al. 2024): scene grid 0.05 -> 0.4 cells/pixel, 8 levels, MLP 2 x 128 GELU; motion grid
  1 -> ~1.2 % of the field, 2 cells in time, MLP 2 x 32 ELU; Adam (0.9, 0.99), scene lr 1e-3,
  motion lr 1e-5, both decayed to 0.1x; coarse-to-fine over 80 % of 5000 steps; the scene
  queried at the warped coordinates of every shot.
* :func:`default_config` -- what nstm-acquire uses: same model family, chosen for speed and
  for a quality that does not degrade with more steps (see ``docs/model.md`` and
  ``docs/benchmarks.md`` for the measurements behind each choice).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "FitConfig",
    "MotionNetConfig",
    "NSTMConfig",
    "SceneNetConfig",
    "default_config",
    "published_config",
    "sim2d_schedule",
    "sim3d_schedule",
]

Activation = Literal["gelu", "elu", "relu", "silu", "tanh"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SceneNetConfig(_Frozen):
    """Time-independent scene network: hash grid over the output grid, then an MLP.

    Resolutions are in grid cells per output pixel along each lateral axis (axial: per plane).
    """

    levels: int = Field(default=8, ge=1, le=32)
    features: int = Field(default=2, ge=1, le=8)
    log2_table_size: int = Field(default=16, ge=8, le=24)
    base_cells_per_px: float = Field(default=0.05, gt=0)
    finest_cells_per_px: float = Field(default=0.4, gt=0)
    axial_base_cells_per_plane: float = Field(default=0.25, gt=0)
    axial_finest_cells_per_plane: float = Field(default=1.0, gt=0)
    hidden: int = Field(default=128, ge=1)
    layers: int = Field(default=2, ge=0)
    activation: Activation = "gelu"
    margin_fraction: float = Field(
        default=0.125, ge=0, le=1, description="padding of the scene grid on each side, fraction of the field"
    )

    @model_validator(mode="after")
    def _order(self) -> SceneNetConfig:
        if self.finest_cells_per_px < self.base_cells_per_px:
            raise ValueError(
                f"finest_cells_per_px={self.finest_cells_per_px} is below base_cells_per_px="
                f"{self.base_cells_per_px}; the finest level must be at least as fine as the base"
            )
        return self


class MotionNetConfig(_Frozen):
    """Motion network: hash grid over (t, [z,] y, x), then an MLP giving a displacement in pixels.

    Spatial resolutions are in cells across the whole field (the published DPC demo uses
    1 -> 0.012 x the field size in pixels, i.e. about 3 cells across 256 pixels); temporal in
    cells across the window.
    """

    levels: int = Field(default=8, ge=1, le=32)
    features: int = Field(default=2, ge=1, le=8)
    log2_table_size: int = Field(default=16, ge=8, le=24)
    spatial_base_cells: float = Field(default=1.0, gt=0)
    spatial_finest_cells: float | None = Field(
        default=None, gt=0, description="None: 0.012 x the field size in pixels, at least spatial_min_cells"
    )
    spatial_min_cells: float = Field(
        default=2.0, gt=0, description="the fewest finest spatial cells the 0.012 x field rule may give"
    )
    spatial_max_cell_px: float | None = Field(
        default=None,
        gt=0,
        description="with the 0.012 x field rule: finest cells at most this many pixels wide (the field / this, "
        "where that gives more cells); None: off, as published",
    )
    temporal_base_cells: float = Field(default=1.0, gt=0)
    temporal_finest_cells: float = Field(default=2.0, gt=0)
    temporal_cells_per_shot: float | None = Field(
        default=None,
        gt=0,
        description="finest temporal cells at least this x the shots per window (None: off, as published)",
    )
    hidden: int = Field(default=32, ge=1)
    layers: int = Field(default=2, ge=0)
    activation: Activation = "elu"
    output_scale: Literal["field", "pixel"] = Field(
        default="field", description="network output unit: the field size (published) or one pixel"
    )
    stride_px: int = Field(
        default=1, ge=1, le=64, description="evaluate the motion every stride pixels and interpolate"
    )


class FitConfig(_Frozen):
    """Optimisation: Adam with separate scene and motion rates, coarse-to-fine, stopping."""

    max_steps: int = Field(default=5000, ge=1)
    coarse_to_fine_steps: int | None = Field(
        default=None, ge=1, description="steps for alpha to reach 1; None: 0.8 x max_steps (published)"
    )
    lr_scene: float = Field(default=1e-3, gt=0)
    lr_motion: float = Field(default=1e-5, gt=0)
    lr_final_factor: float = Field(default=0.1, gt=0, le=1)
    lr_decay_steps: int | None = Field(default=None, ge=1, description="None: max_steps")
    adam_b1: float = Field(default=0.9, ge=0, lt=1)
    adam_b2: float = Field(default=0.99, ge=0, lt=1)
    adam_eps: float = Field(default=1e-15, gt=0)
    loss_margin_px: int = Field(default=5, ge=0, description="border pixels left out of the data loss")
    reg_scene: float = Field(default=1e-4, ge=0, description="L2 penalty on the scene (Tikhonov, as the baseline)")
    scene_sampling: Literal["network", "grid"] = Field(
        default="network",
        description="network: query the scene network at every warped coordinate (published); "
        "grid: evaluate it once per step on a padded grid and warp that image per shot",
    )
    exposure_subsamples: int = Field(
        default=1, ge=1, le=16, description="render each shot at this many times within its exposure"
    )
    exposure_blur_px: float | None = Field(
        default=None,
        gt=0,
        description="a cold fit started from a registration (motion_start) that finds the sample moving "
        "more than this many output pixels within one exposure renders each shot at ceil(blur / this) "
        "times across its exposure (at most 4; the warm fits after it in a chain keep that number); "
        "None: exposure_subsamples always (recon.start.exposure_sampled; docs/model.md)",
    )
    render_chunk: int = Field(
        default=0, ge=0,
        description="grid sampling: render and score this many rows (shots; 3D SIM time bins) at a time, "
        "recomputing each chunk's intermediates in the backward pass (bounds a step's memory; 0: all at once)",
    )
    validation_fraction: float = Field(
        default=0.0, ge=0, lt=0.5, description="held-out pixels for early stopping (0: off)"
    )
    eval_every: int = Field(default=25, ge=1)
    patience: int = Field(default=8, ge=1, description="evaluations without improvement before stopping")
    min_steps: int = Field(default=0, ge=0, description="never stop before this many steps")
    warm_max_steps: int | None = Field(
        default=None,
        ge=1,
        description="step limit of a warm-started fit (None: max_steps); it starts at full resolution (alpha 1)",
    )
    warm_patience: int = Field(default=2, ge=1, description="patience of a warm-started fit")
    warm_min_improvement: float = Field(
        default=1e-4,
        ge=0,
        lt=1,
        description="a warm fit's evaluation counts as an improvement only if the held-out loss fell "
        "by at least this fraction (the best parameters are kept either way)",
    )
    warm_target_tolerance: float | None = Field(
        default=None,
        ge=0,
        description="a warm fit given a reference held-out loss (the chain's last cold fit's) stops "
        "as soon as its own is at most (1 + this) x that loss (None: off, stop by patience alone)",
    )
    warm_refit_factor: float | None = Field(
        default=None,
        gt=1,
        description="a warm fit that ends with a held-out loss above this x the reference "
        "is discarded and the window fitted from scratch (None: never)",
    )
    warm_lr_factor: float = Field(
        default=0.5, gt=0, le=1, description="learning rates of a warm-started fit, relative to a cold one"
    )
    warm_motion_lr_factor: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="the motion network's learning rate in a warm-started fit, relative to the scene's "
        "(warm_lr_factor): the scene of the same sample is already fitted, the motion of the new "
        "window is not",
    )
    lr_warmup_steps: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="a fit that starts from fitted networks (a warm start, or a cold start from "
        "pre-fitted ones: scene_start, motion_start) ramps its learning rates up linearly over this "
        "many steps (0: none): Adam's first steps move every parameter by about the learning rate "
        "whatever its gradient, which throws fitted networks off before they settle",
    )
    scene_start: Literal["random", "conventional"] = Field(
        default="random",
        description="where a cold fit's scene network starts: random (published) or pre-fitted to the "
        "window's conventional reconstruction (recon.start; docs/model.md)",
    )
    start_alpha: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="coarse-to-fine granularity a cold fit from pre-fitted networks (scene_start) "
        "starts at; the scene is pre-fitted at it, and the ramp runs on from there",
    )
    motion_start: Literal["zero", "registration"] = Field(
        default="zero",
        description="where a cold fit's motion network starts: zero (published) or pre-fitted to a "
        "registration of the window's shots (recon.registration; docs/model.md, 'Large motion')",
    )
    deformation_start: Literal["zero", "velocity"] = Field(
        default="zero",
        description="with motion_start='registration': where a cold fit starts its motion when the window's shots "
        "share no common translation, or (a field of 256 px or more) a patch of it moves unlike the whole "
        "(a deformation): zero, or fitted first as the flow of one stationary velocity field (velocity: "
        "nstm.velocity, recon.start; docs/model.md, 'DPC swirls: a stationary velocity field start'); 2D only",
    )
    velocity_spacing_px: float = Field(
        default=25.0, gt=0, description="deformation_start='velocity': output pixels between the field's control points"
    )
    velocity_lrs: tuple[float, ...] = Field(
        default=(0.5, 1.0),
        min_length=1,
        max_length=4,
        description="deformation_start='velocity': Adam's learning rates of the field (output pixels per unit of "
        "normalised time), decayed as the motion's; the field is fitted once with each and the fit with the "
        "lowest held-out loss kept",
    )
    warm_motion_start: Literal["previous", "registration", "offset"] = Field(
        default="previous",
        description="where a warm fit's motion network starts: the previous window's as it ended; "
        "pre-fitted to a registration of this window's shots against the previous window's scene "
        "(registration; docs/model.md, '2D SIM: warm motion from a registration'); or the previous "
        "window's moved by one translation, how far the sample travelled since (offset, DPC's; "
        "docs/model.md, 'DPC warm windows: the motion carried on'); recon.start.warm_start_params",
    )
    seed: int = 0
    restarts: int = Field(
        default=1,
        ge=1,
        le=8,
        description="a cold fit from random networks runs this many times (network seeds seed, seed + 1, ...; "
        "the same held-out pixels) and keeps the run with the lowest held-out loss (rolling_shutter: 3; "
        "docs/rolling_shutter.md)",
    )

    @field_validator("velocity_lrs")
    @classmethod
    def _positive_rates(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not (r > 0) for r in v):
            raise ValueError(f"velocity_lrs={v}: every learning rate must be positive, e.g. (0.5, 1.0)")
        return v

    def c2f_steps(self) -> int:
        return self.coarse_to_fine_steps or max(1, int(0.8 * self.max_steps))

    def decay_steps(self) -> int:
        return self.lr_decay_steps or self.max_steps


class NSTMConfig(_Frozen):
    """The whole model and fit configuration (stored with every reconstruction)."""

    name: str = "custom"
    scene: SceneNetConfig = SceneNetConfig()
    motion: MotionNetConfig = MotionNetConfig()
    fit: FitConfig = FitConfig()

    def with_fit(self, **changes) -> NSTMConfig:
        return self.model_copy(update={"fit": self.fit.model_copy(update=changes)})


def published_config() -> NSTMConfig:
    """The published DPC demo's numbers (5000 steps, all shots every step)."""
    return NSTMConfig(name="published")


#: DPC's and 2D SIM's ``fit.exposure_blur_px``, output pixels (docs/model.md, "Large motion: the
#: blur within an exposure")
EXPOSURE_BLUR_PX = 6.0


def default_config(modality: str | None = None) -> NSTMConfig:
    """nstm-acquire's defaults (see docs/model.md for why each differs from the published).

    ``modality`` ``"sim2d"``: the same model with a shorter schedule measured on 2D SIM
    (:func:`sim2d_schedule`); ``"dpc"``: the settings below with a cold fit's motion network
    pre-fitted to a registration of the shots where they moved 12 px or more
    (``fit.motion_start="registration"``; docs/model.md, "Large motion"; 2D SIM too, where the
    shots drifted 12 output pixels or more), where they share no common translation to the flow
    of a stationary velocity field fitted first (``fit.deformation_start="velocity"``; docs/model.md,
    "DPC swirls: a stationary velocity field start"), and a motion grid of at least 4 finest
    cells across the field, none wider than 32 px (``motion.spatial_min_cells``,
    ``motion.spatial_max_cell_px``: 2 cells across 128 px cannot hold a swirl; docs/model.md,
    "DPC swirls"), a warm window that stops within 2 % of the reference held-out loss instead of 5 %
    (``fit.warm_target_tolerance``), and (DPC and 2D SIM) every shot rendered at several times across its exposure
    when the registration finds the sample moving more than 6 output pixels within one
    (``fit.exposure_blur_px``); ``"sim3d"``: the schedule of :func:`sim3d_schedule` (the scene started from the
    Wiener volume, at most 450 steps); None: the settings below.

    Same hash grids as published (the motion's temporal one at least one cell per two shots:
    the published 2 for DPC's 4, 4.5 for a 9-shot SIM window); a 2 x 32 scene MLP evaluated
    once per step on a padded grid (6 % margin) and warped per shot; motion evaluated every 8
    pixels; learning rates 10x (scene) and 30x (motion) the published ones over a 150-step
    coarse-to-fine ramp; at most 600 steps, keeping the parameters with the lowest loss on 5 %
    held-out pixels and stopping when it has not improved for 100 steps. A warm start (from the
    previous window, at full resolution) runs at most 200 steps and stops at the first 25 steps
    that improve its held-out loss by less than 3 %, or as soon as that loss is within 5 % of
    the reference (the last cold fit's); it is replaced by a cold fit if it ends above twice
    that loss.
    """
    if modality not in (None, "dpc", "sim2d", "sim3d"):
        raise ValueError(f"modality={modality!r}; give 'dpc', 'sim2d', 'sim3d' or None")
    base = NSTMConfig(
        name="default",
        scene=SceneNetConfig(hidden=32, margin_fraction=0.0625),
        motion=MotionNetConfig(stride_px=8, temporal_cells_per_shot=0.5),
        fit=FitConfig(
            max_steps=600,
            coarse_to_fine_steps=150,
            lr_scene=1e-2,
            lr_motion=3e-4,
            scene_sampling="grid",
            validation_fraction=0.05,
            eval_every=25,
            patience=4,
            warm_max_steps=200,
            warm_patience=1,
            warm_min_improvement=0.03,
            warm_lr_factor=1.0,
            warm_target_tolerance=0.05,
            warm_refit_factor=2.0,
        ),
    )
    if modality == "dpc":  # large motion within a window: the motion starts from a registration,
        # on a motion grid of at least 4 cells across the field (docs/model.md, "DPC swirls")
        # and cells no wider than 32 px on larger fields (as 4 cells across 128 px), which hold the
        # flow of a velocity-field start (docs/model.md, "DPC swirls: a stationary velocity field start")
        motion = base.motion.model_copy(update={"spatial_min_cells": 4.0, "spatial_max_cell_px": 32.0})
        # and a fast sample is rendered at several times across each exposure (docs/model.md,
        # "Large motion: the blur within an exposure")
        # a warm window stops within 2 % of the reference, not 5 %: a fast sample's warm window
        # (24 px within it) stopped 0.02 short of its own cold fit at 5 % (docs/model.md,
        # "DPC warm windows: a tighter reference")
        # a warm window's motion is the previous window's moved by how far the sample has
        # travelled since (docs/model.md, "DPC warm windows: the motion carried on")
        return base.model_copy(update={"motion": motion}).with_fit(
            motion_start="registration", exposure_blur_px=EXPOSURE_BLUR_PX, warm_target_tolerance=0.02,
            warm_motion_start="offset", deformation_start="velocity",
        )
    if modality == "sim2d":  # and a drift of many pattern periods (docs/model.md, "Large motion")
        return sim2d_schedule(base).with_fit(motion_start="registration", exposure_blur_px=EXPOSURE_BLUR_PX)
    if modality == "sim3d":
        return sim3d_schedule(base)
    return base


def sim2d_schedule(config: NSTMConfig) -> NSTMConfig:
    """``config`` with the 2D SIM schedule (docs/model.md, "2D SIM speed" and "SIM: starting from
    the Wiener result"): a cold fit starts from the scene network pre-fitted to the window's Wiener
    result at half the coarse-to-fine granularity (``scene_start="conventional"``,
    ``start_alpha=0.5``) and runs the rest of a 40-step ramp, at most 130 steps with the learning
    rates ramped up over the first 10 (the pre-fitted scene is not thrown off) and decayed as over
    300, evaluated every 10 steps and stopping after 50 without improvement; the motion
    evaluated every 32 output pixels (the motion's finest cells span about 85 of SIM's 2x-fine
    output pixels, so the bilinear interpolation between samples loses nothing measurable); a
    scene MLP of one hidden layer (2 x 32 before: the MLP over the
    padded grid was the largest piece of the step, and one layer fits the benchmark's windows
    as well). A warm fit starts its motion from a registration of the window's shots against the
    previous window's scene (``warm_motion_start="registration"``), ramps its learning rates up
    over 10 steps too, and stops after 30 steps without a 3 % gain (docs/model.md, "2D SIM: warm
    motion from a registration": on vibrating beads it reached the reference in 35-40 steps instead of
    75-125, resolving more bead pairs).
    On the benchmark's 2D SIM windows a cold fit takes under half the steps of the start from
    random networks (300) at a correlation with the truth within 0.01.
    """
    return _sim_schedule(
        config, "sim2d", max_steps=130, coarse_to_fine_steps=40, warm_motion_start="registration"
    )


def sim3d_schedule(config: NSTMConfig) -> NSTMConfig:
    """``config`` with the 3D SIM schedule (docs/model.md, "3D SIM speed"): as
    :func:`sim2d_schedule` (the scene pre-fitted to the Wiener volume, one hidden layer, the
    motion every 32 output pixels, learning rates ramped up over 10 steps, evaluated every 10
    steps) with a 75-step ramp and at most 450 steps, the learning rates decayed as over 450
    (the vibrating 6 x 64 x 64 beads of the quality benchmark were still improving at 300 steps
    and resolved 37 of 45 pairs there, 44 at 450 as with 600 steps before; a 110-step ramp left a
    small static window with half its bead pairs unresolved), stopping after 100 steps without
    improvement as the base does, and a warm fit's motion where the previous window's ended
    (``warm_motion_start="previous"``: the registration against the previous scene is 2D only).
    The 60 time-bin volumes of a window are rendered four at a time (``fit.render_chunk``).
    """
    # render_chunk: four time-bin volumes rendered at a time, recomputed in the backward pass:
    # 8 x 256 x 256, one step 34 -> 20 s and 18 -> 4.7 GiB (docs/model.md, "3D SIM speed")
    return _sim_schedule(
        config, "sim3d", max_steps=450, coarse_to_fine_steps=75, lr_decay_steps=450, patience=10, render_chunk=4
    )


def _sim_schedule(config: NSTMConfig, name: str, **fit_changes: object) -> NSTMConfig:
    """What the 2D and 3D SIM schedules share, with ``fit_changes`` on top."""
    shared = {
        "lr_decay_steps": 300,
        "eval_every": 10,
        "patience": 5,
        "scene_start": "conventional",
        "start_alpha": 0.5,
        "warm_patience": 3,
        "lr_warmup_steps": 10,
    }
    fit = config.fit.model_copy(update={**shared, **fit_changes})
    motion = config.motion.model_copy(update={"stride_px": 32})
    scene = config.scene.model_copy(update={"layers": 1})
    return config.model_copy(update={"name": f"{config.name}-{name}", "fit": fit, "motion": motion, "scene": scene})
