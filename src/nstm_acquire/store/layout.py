"""Store layout (FORMAT.md, version 1): names, shapes, and validation of the root attributes.

One acquisition is one Zarr v3 directory store. Its root group carries two attribute documents:

* ``nstm_acquire``: the :class:`StoreAttributes` below (FORMAT.md "Root group attributes");
* ``ome``: OME-Zarr 0.5 ``multiscales`` metadata describing ``raw`` as a 5D image with axes
  ``t, c, z, y, x`` (built by :func:`ome_image_metadata`).

Arrays in the root group (axis order in brackets):

==================  ===================  =========================================================
``raw``             (W, S, Z, Y, X)      uint16 or float32 camera frames, one frame per chunk
``timestamps_s``    (W, S, Z)            float64 exposure start, s since acquisition start; NaN =
                                          not (yet) acquired
``exposure_s``      (W, S, Z)            float64 exposure duration, s
``background``      (S, Z, Y, X)         float32, optional, one frame per chunk
==================  ===================  =========================================================

W = windows (time points), S = shots, Z = planes. Reconstruction output lives in the group
``recon/<name>`` (see :mod:`nstm_acquire.store.recon`).

Optional fields added by this implementation (documented for ``docs/format.md``):

* every array carries Zarr v3 ``dimension_names``: ``raw`` ``["t", "c", "z", "y", "x"]``,
  ``timestamps_s``/``exposure_s`` ``["t", "c", "z"]``, ``background`` ``["c", "z", "y", "x"]``
  (OME-Zarr 0.5 requires them on arrays named by ``multiscales``);
* ``timestamps_s`` and ``exposure_s`` are chunked one window per chunk, ``(1, S, Z)``;
* extra keys are accepted (and kept) in ``nstm_acquire``, ``illumination``, ``camera``,
  ``optics`` and ``acquisition``, so stores written by other programs with added optional
  fields still validate. Unknown ``optics`` keys are kept in :attr:`StoreAttributes.optics_extra`
  and unknown ``illumination`` keys in :attr:`StoreAttributes.illumination_extra`, because the
  physics models (:class:`~nstm_acquire.physics.optics.Optics`,
  :class:`~nstm_acquire.physics.dpc.illumination.DpcIllumination`,
  :class:`~nstm_acquire.physics.sim.illumination.SimIllumination`) forbid extra fields;
* SIM ``illumination`` may carry ``three_beam`` (it must agree with the modality; written by
  this implementation) and ``axial_k_per_um``; ``modulation`` entries may include the order-0
  term (``[1.0, m]``), which is dropped on reading.
* ``camera.rolling_shutter`` (``row_time_s``, ``direction``): the sensor opens its rows one
  readout slot after another (:class:`~nstm_acquire.physics.rolling_shutter.timing.RollingShutterReadout`);
* modality ``rolling_shutter`` (a lensless colour camera): shot ``s = frame * C + colour``, its
  ``illumination`` the :class:`~nstm_acquire.physics.rolling_shutter.shots.LenslessShots`
  (``frames_per_window``, ``channels``), and the root array ``psf`` ``(C, Hp, Wp)`` float32.

The ``illumination`` of :class:`StoreAttributes` is the physics model itself (one schema per
concept): the physics models own the checks of their values; this module turns their errors
into store messages.

Every problem found in a store is reported as one :class:`StoreError` line that names the store,
the field and the fix, e.g.
``RUN.zarr: attribute nstm_acquire.optics.wavelength_um is missing (detection wavelength in µm)``.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nstm_acquire._validation import FieldError, UserInputError, first_field_problem
from nstm_acquire.physics.dpc.illumination import DpcIllumination
from nstm_acquire.physics.optics import Optics
from nstm_acquire.physics.rolling_shutter.shots import LenslessShots
from nstm_acquire.physics.rolling_shutter.timing import RollingShutterReadout
from nstm_acquire.physics.sim.illumination import SimIllumination

__all__ = [
    "FORMAT_VERSION",
    "ROOT_ATTRIBUTE_KEY",
    "RAW",
    "TIMESTAMPS",
    "EXPOSURE",
    "BACKGROUND",
    "PSF",
    "PSF_DIMENSIONS",
    "RAW_DIMENSIONS",
    "TIMING_DIMENSIONS",
    "BACKGROUND_DIMENSIONS",
    "RAW_DTYPES",
    "RECON_GROUP",
    "RECON_SCENE",
    "RECON_TIMES",
    "RECON_WINDOW",
    "RECON_MOTION",
    "RECON_CONVENTIONAL",
    "MODALITIES",
    "StoreError",
    "CameraModel",
    "Illumination",
    "StoreAttributes",
    "illumination_model_for",
    "n_shots",
    "acquired_frames",
    "window_is_complete",
    "window_is_partial",
    "validate_attributes",
    "ome_image_metadata",
    "to_json",
    "RUN_STATUSES",
    "writer_process",
    "writer_state",
]

FORMAT_VERSION = 1
"""The store format version this code writes and reads."""

ROOT_ATTRIBUTE_KEY = "nstm_acquire"
"""Key of the store attributes in the root group's attributes."""

RAW = "raw"
TIMESTAMPS = "timestamps_s"
EXPOSURE = "exposure_s"
BACKGROUND = "background"
PSF = "psf"
"""Optional root array ``psf`` ``(C, Hp, Wp)`` float32: the lensless camera's PSF per colour."""
PSF_DIMENSIONS = ("c", "y", "x")

RAW_DIMENSIONS = ("t", "c", "z", "y", "x")
"""Zarr ``dimension_names`` of ``raw`` (W, S, Z, Y, X): OME axes t = window, c = shot."""
TIMING_DIMENSIONS = ("t", "c", "z")
"""Zarr ``dimension_names`` of ``timestamps_s`` and ``exposure_s`` (W, S, Z)."""
BACKGROUND_DIMENSIONS = ("c", "z", "y", "x")
"""Zarr ``dimension_names`` of ``background`` (S, Z, Y, X)."""

RAW_DTYPES = ("uint16", "float32")
"""Allowed dtypes of ``raw``."""

RECON_GROUP = "recon"
RECON_SCENE = "scene"
RECON_TIMES = "times_s"
RECON_WINDOW = "window"
RECON_MOTION = "motion"
RECON_CONVENTIONAL = "conventional"

MODALITIES = ("dpc", "sim2d", "sim3d", "rolling_shutter")


class StoreError(UserInputError):
    """A problem with a store, as one line: ``<store>: <field> <problem> (<fix>)``."""

    def __init__(self, store: str, field: str, problem: str) -> None:
        self.store = str(store)
        self.field = field
        self.problem = " ".join(str(problem).split())  # guarantee one line
        super().__init__(f"{self.store}: {field} {self.problem}")


# What each field means, used to complete "is missing" and "is invalid" messages.
_FIELD_HINTS: dict[str, str] = {
    "format_version": "store format version; must be 1",
    "modality": "one of 'dpc', 'sim2d', 'sim3d', 'rolling_shutter'",
    "optics": "object with wavelength_um, na_detection, pixel_size_um",
    "optics.wavelength_um": "detection wavelength in µm",
    "optics.na_detection": "objective numerical aperture",
    "optics.pixel_size_um": "camera pixel size referred to the sample, µm",
    "optics.immersion_index": "immersion refractive index, >= 1",
    "optics.z_step_um": "axial plane spacing in µm",
    "illumination": "object describing the illumination of every shot (FORMAT.md)",
    "illumination.led_na": "list of [na_y, na_x], the illumination NA of every LED",
    "illumination.shots": "list, per shot, of the indices of the LEDs lit in that shot",
    "illumination.led_brightness": "relative brightness of every LED, one number per LED",
    "illumination.n_orientations": "number of SIM pattern orientations, integer >= 1",
    "illumination.n_phases": "number of SIM pattern phases per orientation, integer >= 3",
    "illumination.excitation_wavelength_um": "SIM excitation wavelength in µm",
    "illumination.k_per_um": "per orientation, [k_y, k_x] of the finest pattern, cycles/µm",
    "illumination.phase_rad": "per orientation, the pattern phase of shot p = 0, rad",
    "illumination.modulation": "per orientation, a list of modulation depths per order",
    "illumination.three_beam": "true for three-beam (sim3d) SIM, false for two-beam (sim2d)",
    "illumination.axial_k_per_um": "three-beam axial frequency of order 1, cycles/µm",
    "illumination.frames_per_window": "rolling_shutter: camera frames per window, integer >= 1",
    "illumination.channels": "rolling_shutter: colour plane names in shot order, e.g. ['red', 'green', 'blue']",
    "camera": "object with offset_adu (and optional gain_e_per_adu, read_noise_e)",
    "camera.offset_adu": "dark offset in camera counts",
    "camera.gain_e_per_adu": "photo-electrons per camera count, > 0",
    "camera.read_noise_e": "read noise in electrons, >= 0",
    "camera.rolling_shutter": "object with row_time_s (s per row, > 0) and direction "
    "('top_to_bottom', 'bottom_to_top' or 'centre_out')",
    "camera.rolling_shutter.row_time_s": "line interval in seconds per row, > 0 (e.g. 2.752e-05)",
    "camera.rolling_shutter.direction": "one of 'top_to_bottom', 'bottom_to_top', 'centre_out'",
    "acquisition": "free-form object",
}


def _hint(field: str) -> str:
    """The explanation of a field, looking the path up without list indices."""
    parts = [p for p in field.replace("]", "").replace("[", ".").split(".") if not p.isdigit()]
    return _FIELD_HINTS.get(".".join(parts), "see FORMAT.md")


class CameraModel(BaseModel):
    """Camera attributes: dark offset and optional noise model (counts = ADU)."""

    model_config = ConfigDict(extra="allow")

    offset_adu: float = Field(default=0.0, description="dark offset subtracted before any use, ADU")
    gain_e_per_adu: float | None = Field(default=None, gt=0, description="photo-electrons per ADU")
    read_noise_e: float | None = Field(default=None, ge=0, description="read noise, electrons")
    rolling_shutter: RollingShutterReadout | None = Field(
        default=None,
        description="optional: the sensor reads its rows one after another (line interval, direction)",
    )

    @field_validator("offset_adu")
    @classmethod
    def _finite_offset(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of counts")
        return value


Illumination = DpcIllumination | SimIllumination | LenslessShots
"""The physics model of a store's ``illumination``: DPC LEDs, a SIM pattern, or the shot layout
of a rolling-shutter lensless camera (frames x colour planes)."""


def illumination_model_for(
    modality: str,
) -> type[DpcIllumination] | type[SimIllumination] | type[LenslessShots]:
    """The physics model that describes the ``illumination`` of ``modality``."""
    if modality == "rolling_shutter":
        return LenslessShots
    return DpcIllumination if modality == "dpc" else SimIllumination


def _parse_illumination(value: Any, modality: str) -> Illumination:
    """The physics model of a store's ``illumination`` (already one, or its FORMAT.md dict).

    Unknown keys must have been split off (:meth:`StoreAttributes._split_extras`). A SIM dict
    without ``three_beam`` takes it from the modality. Raises :class:`FieldError` naming the
    field from the root of the attributes (``illumination.shots[1]``).
    """
    model = illumination_model_for(modality)
    if isinstance(value, (DpcIllumination, SimIllumination, LenslessShots)):
        if not isinstance(value, model):
            raise FieldError(
                "illumination",
                f"is a {type(value).__name__} but modality {modality!r} needs a "
                f"{model.__name__} (make the modality and the illumination agree)",
            )
        ill = value
    elif isinstance(value, Mapping):
        data = dict(value)
        if model is SimIllumination:
            data.setdefault("three_beam", modality == "sim3d")
        try:
            ill = model.model_validate(data)
        except ValidationError as err:
            raise FieldError(*first_field_problem(err, "illumination", _hint)) from None
    else:
        raise FieldError(
            "illumination", f"is a {type(value).__name__}, not an object ({_hint('illumination')})"
        )
    if isinstance(ill, SimIllumination) and ill.three_beam != (modality == "sim3d"):
        raise FieldError(
            "illumination.three_beam",
            f"= {ill.three_beam} does not match modality {modality!r} (three-beam SIM is "
            "'sim3d', two-beam SIM is 'sim2d')",
        )
    return ill


class StoreAttributes(BaseModel):
    """The root attribute ``nstm_acquire`` of a store (FORMAT.md, version 1).

    ``illumination`` is the physics model of the modality (:class:`DpcIllumination` for
    ``dpc``, :class:`SimIllumination` with ``three_beam`` = ``modality == "sim3d"`` for SIM):
    the one schema of an illumination, shared with the microscope and the reconstruction. It is
    given either as that object or as its FORMAT.md dict. Keys the physics models do not know
    (stores written by other programs may add optional fields) are kept in
    :attr:`illumination_extra`, unknown ``optics`` keys in :attr:`optics_extra`, and both are
    written back by :meth:`to_store`. Unknown top-level keys are kept (``extra="allow"``).
    """

    model_config = ConfigDict(extra="allow")

    format_version: Literal[1]
    modality: Literal["dpc", "sim2d", "sim3d", "rolling_shutter"]
    optics: Optics
    optics_extra: dict[str, Any] = Field(
        default_factory=dict, description="optional optics keys that Optics does not know"
    )
    illumination: Illumination
    illumination_extra: dict[str, Any] = Field(
        default_factory=dict,
        description="optional illumination keys that the modality's physics model does not know",
    )
    camera: CameraModel = Field(default_factory=CameraModel)
    acquisition: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_extras(cls, data: Any) -> Any:
        """Move unknown ``optics`` and ``illumination`` keys to ``*_extra``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("optics"), Mapping):
            known = set(Optics.model_fields)
            optics = data["optics"]
            extra = {k: v for k, v in optics.items() if k not in known}
            if extra:
                data["optics"] = {k: v for k, v in optics.items() if k in known}
                data["optics_extra"] = {**data.get("optics_extra", {}), **extra}
        modality = data.get("modality")
        if isinstance(data.get("illumination"), Mapping) and modality in MODALITIES:
            known = set(illumination_model_for(modality).model_fields)
            illumination = data["illumination"]
            extra = {k: v for k, v in illumination.items() if k not in known}
            if extra:
                data["illumination"] = {k: v for k, v in illumination.items() if k in known}
                data["illumination_extra"] = {**data.get("illumination_extra", {}), **extra}
        return data

    @field_validator("illumination", mode="plain")
    @classmethod
    def _parsed_with_the_modality(cls, value: Any) -> Any:
        """Kept as given here: :meth:`_per_modality` parses it once the modality is known valid."""
        return value

    @model_validator(mode="after")
    def _per_modality(self) -> StoreAttributes:
        self.illumination = _parse_illumination(self.illumination, self.modality)
        if self.modality == "sim3d" and self.optics.z_step_um is None:
            raise FieldError(
                "optics.z_step_um", "is missing (axial plane spacing in µm; sim3d needs it)"
            )
        return self

    @property
    def n_shots(self) -> int:
        """Shots S per plane and window: DPC ``len(shots)``; SIM orientations x phases;
        rolling_shutter frames x colour channels."""
        return self.illumination.n_shots

    def to_store(self) -> dict[str, Any]:
        """The JSON object written under ``nstm_acquire`` (FORMAT.md field names)."""
        data = self.model_dump(
            mode="json",
            exclude={"optics", "optics_extra", "illumination", "illumination_extra", "camera"},
        )
        data["optics"] = {**self.optics.to_store(), **self.optics_extra}
        data["illumination"] = {**self.illumination.to_store(), **to_json(self.illumination_extra)}
        data["camera"] = self.camera.model_dump(mode="json", exclude_none=True)
        return data


def validate_attributes(data: Any, store: str) -> StoreAttributes:
    """Validate the ``nstm_acquire`` attribute object of the store named ``store``.

    ``data`` is a :class:`StoreAttributes` (returned as is) or its dict form, whose
    ``illumination`` may be the physics model itself or its FORMAT.md dict.

    Raises
    ------
    StoreError
        One line naming the store, the field (``attribute nstm_acquire.<path>``) and the fix.
    """
    if isinstance(data, StoreAttributes):
        return data
    if data is None:
        raise StoreError(
            store,
            f"attribute {ROOT_ATTRIBUTE_KEY}",
            "is missing (the root group must carry the FORMAT.md attributes; was it written "
            "by nstm-acquire?)",
        )
    if not isinstance(data, dict):
        raise StoreError(
            store, f"attribute {ROOT_ATTRIBUTE_KEY}", f"is a {type(data).__name__}, not an object"
        )
    try:
        return StoreAttributes.model_validate(data)
    except ValidationError as err:
        field, problem = first_field_problem(err, hint=_hint)
        name = f"attribute {ROOT_ATTRIBUTE_KEY}" + (f".{field}" if field else "")
        raise StoreError(store, name, problem) from None


def n_shots(attrs: StoreAttributes) -> int:
    """Number of shots S per plane and window: DPC ``len(shots)``; SIM orientations x phases."""
    return attrs.n_shots


def acquired_frames(timestamps_s: np.ndarray) -> np.ndarray:
    """Frames acquired in each window: the finite timestamps of ``(W, S, Z)``, int64 ``(W,)``.

    FORMAT.md: a frame is acquired when its timestamp is finite (the writer stores the frame
    before its timestamp).
    """
    ts = np.asarray(timestamps_s, dtype=np.float64)
    if ts.ndim == 0 or ts.shape[0] == 0:
        return np.zeros(ts.shape[:1], dtype=np.int64)
    return np.isfinite(ts).reshape(ts.shape[0], -1).sum(axis=1).astype(np.int64)


def window_is_complete(acquired: np.ndarray | int, frames_per_window: int) -> np.ndarray:
    """Whether windows with ``acquired`` frames are complete: all ``S * Z`` frames are there.

    The one completeness rule of the package (FORMAT.md: all the window's timestamps finite);
    ``acquired`` is a count or an array of counts (:func:`acquired_frames`).
    """
    return np.asarray(acquired) == int(frames_per_window)


def window_is_partial(acquired: np.ndarray | int, frames_per_window: int) -> np.ndarray:
    """Whether windows with ``acquired`` frames have some but not all of their frames."""
    count = np.asarray(acquired)
    return (count > 0) & ~window_is_complete(count, frames_per_window)


def ome_image_metadata(
    path: str,
    name: str,
    pixel_size_um: float,
    z_step_um: float | None,
) -> dict[str, Any]:
    """OME-Zarr 0.5 group attributes (the value of key ``"ome"``) for a 5D image array.

    The array at ``path`` (relative to the group) has axes ``t, c, z, y, x``: t is a time
    axis without a unit, because time points (windows or render times) are not evenly spaced;
    the actual times are in ``timestamps_s`` (or ``times_s``). z, y, x are in micrometre with
    scale ``(z_step_um or 1, pixel_size_um, pixel_size_um)``.
    No ``omero`` block is written: it needs display windows that are not known in advance.
    """
    axes = [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    scale = [
        1.0,
        1.0,
        float(z_step_um) if z_step_um else 1.0,
        float(pixel_size_um),
        float(pixel_size_um),
    ]
    ome: dict[str, Any] = {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": axes,
                "datasets": [
                    {"path": path, "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
            }
        ],
    }
    return ome


def to_json(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths to plain JSON values.

    Non-finite floats (NaN, ±inf) become ``None``: JSON has no NaN.
    """
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value


RUN_STATUSES = ("running", "completed", "canceled", "disk_full", "camera_error", "incomplete", "error")
"""Values of ``acquisition.status``: ``running`` while the writer works (or if it was killed),
then how the run ended: ``completed`` (every frame), ``canceled`` (by the user, Ctrl-C or
SIGTERM), ``disk_full`` (a frame could not be written: no space left), ``camera_error`` (the
camera failed or timed out; its text is in ``acquisition.errors``), ``incomplete`` (frames not
delivered, no error known) or ``error`` (any other failure)."""


def _process_start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), else None."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii") as f:
            stat = f.read(4096)
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def writer_process() -> dict[str, Any]:
    """``writer_pid``, ``writer_host`` (and ``writer_start_ticks`` on Linux) of this process.

    The acquisition stores them in ``acquisition`` while its status is ``running``, so a reader
    on the same host can tell a live acquisition from a killed one (:func:`writer_state`).
    """
    pid = os.getpid()
    out: dict[str, Any] = {"writer_pid": pid, "writer_host": socket.gethostname()}
    ticks = _process_start_ticks(pid)
    if ticks is not None:
        out["writer_start_ticks"] = ticks
    return out


def writer_state(acquisition: Mapping[str, Any]) -> Literal["alive", "gone", "unknown"]:
    """Whether the process named by ``acquisition.writer_*`` still runs on this host.

    ``"gone"``: same host and no such process (or another one that reuses its pid: its start
    time differs); ``"alive"``; ``"unknown"``: another host, or no writer recorded.
    """
    pid, host = acquisition.get("writer_pid"), acquisition.get("writer_host")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or host != socket.gethostname():
        return "unknown"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except (PermissionError, OSError):
        return "alive"  # exists, owned by another user
    recorded = acquisition.get("writer_start_ticks")
    if isinstance(recorded, int):
        now = _process_start_ticks(pid)
        if now is not None and now != recorded:
            return "gone"
    return "alive"
