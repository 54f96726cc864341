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
  because :class:`~nstm_acquire.physics.optics.Optics` itself forbids extra fields.

Every problem found in a store is reported as one :class:`StoreError` line that names the store,
the field and the fix, e.g.
``RUN.zarr: attribute nstm_acquire.optics.wavelength_um is missing (detection wavelength in µm)``.
"""

from __future__ import annotations

import math
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

from nstm_acquire.physics.optics import Optics

__all__ = [
    "FORMAT_VERSION",
    "ROOT_ATTRIBUTE_KEY",
    "RAW",
    "TIMESTAMPS",
    "EXPOSURE",
    "BACKGROUND",
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
    "DpcIllumination",
    "SimIllumination",
    "StoreAttributes",
    "n_shots",
    "validate_attributes",
    "ome_image_metadata",
    "to_json",
]

FORMAT_VERSION = 1
"""The store format version this code writes and reads."""

ROOT_ATTRIBUTE_KEY = "nstm_acquire"
"""Key of the store attributes in the root group's attributes."""

RAW = "raw"
TIMESTAMPS = "timestamps_s"
EXPOSURE = "exposure_s"
BACKGROUND = "background"

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

MODALITIES = ("dpc", "sim2d", "sim3d")


class StoreError(ValueError):
    """A problem with a store, as one line: ``<store>: <field> <problem> (<fix>)``."""

    def __init__(self, store: str, field: str, problem: str) -> None:
        self.store = str(store)
        self.field = field
        self.problem = " ".join(str(problem).split())  # guarantee one line
        super().__init__(f"{self.store}: {field} {self.problem}")


class _FieldProblem(ValueError):
    """Raised inside validators to carry a precise field path (relative to ``nstm_acquire``)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field} {problem}")


# What each field means, used to complete "is missing" and "is invalid" messages.
_FIELD_HINTS: dict[str, str] = {
    "format_version": "store format version; must be 1",
    "modality": "one of 'dpc', 'sim2d', 'sim3d'",
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
    "illumination.n_phases": "number of SIM pattern phases per orientation, integer >= 1",
    "illumination.excitation_wavelength_um": "SIM excitation wavelength in µm",
    "illumination.k_per_um": "per orientation, [k_y, k_x] of the finest pattern, cycles/µm",
    "illumination.phase_rad": "per orientation, the pattern phase of shot p = 0, rad",
    "illumination.modulation": "per orientation, a list of modulation depths per order",
    "camera": "object with offset_adu (and optional gain_e_per_adu, read_noise_e)",
    "camera.offset_adu": "dark offset in camera counts",
    "camera.gain_e_per_adu": "photo-electrons per camera count, > 0",
    "camera.read_noise_e": "read noise in electrons, >= 0",
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

    @field_validator("offset_adu")
    @classmethod
    def _finite_offset(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of counts")
        return value


class DpcIllumination(BaseModel):
    """DPC illumination: LED positions (illumination NA) and the LEDs lit in each shot."""

    model_config = ConfigDict(extra="allow")

    led_na: list[tuple[float, float]] = Field(min_length=1)
    shots: list[list[int]] = Field(min_length=1)
    led_brightness: list[float] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DpcIllumination:
        n_led = len(self.led_na)
        for j, (na_y, na_x) in enumerate(self.led_na):
            if not (math.isfinite(na_y) and math.isfinite(na_x)) or na_y**2 + na_x**2 >= 1.0:
                raise _FieldProblem(
                    f"illumination.led_na[{j}]",
                    f"= [{na_y}, {na_x}] is not a valid illumination NA (signed sines of the "
                    "illumination angle along y and x: finite, with na_y^2 + na_x^2 < 1)",
                )
        for k, leds in enumerate(self.shots):
            if not leds:
                raise _FieldProblem(
                    f"illumination.shots[{k}]", "is empty (every shot must light at least one LED)"
                )
            for i, led in enumerate(leds):
                if not 0 <= led < n_led:
                    raise _FieldProblem(
                        f"illumination.shots[{k}][{i}]",
                        f"= {led} is out of range (LED indices must be in 0..{n_led - 1} "
                        f"because led_na lists {n_led} LEDs)",
                    )
        if self.led_brightness is not None:
            if len(self.led_brightness) != n_led:
                raise _FieldProblem(
                    "illumination.led_brightness",
                    f"has {len(self.led_brightness)} entries (give one per LED: {n_led})",
                )
            if any(not math.isfinite(b) or b < 0 for b in self.led_brightness):
                raise _FieldProblem(
                    "illumination.led_brightness",
                    "has a negative or non-finite entry (relative brightness must be >= 0)",
                )
        return self


class SimIllumination(BaseModel):
    """SIM illumination: pattern counts, excitation wavelength and optional known parameters."""

    model_config = ConfigDict(extra="allow")

    n_orientations: int = Field(ge=1)
    n_phases: int = Field(ge=1)
    excitation_wavelength_um: float = Field(gt=0)
    k_per_um: list[tuple[float, float]] | None = None
    phase_rad: list[float] | None = None
    modulation: list[list[float]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SimIllumination:
        if self.excitation_wavelength_um > 5.0:
            raise _FieldProblem(
                "illumination.excitation_wavelength_um",
                f"= {self.excitation_wavelength_um} looks like nm (give it in µm, e.g. 0.488)",
            )
        n = self.n_orientations
        for name in ("k_per_um", "phase_rad", "modulation"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise _FieldProblem(
                    f"illumination.{name}",
                    f"has {len(value)} entries (give one per orientation: n_orientations = {n})",
                )
        return self


class StoreAttributes(BaseModel):
    """The root attribute ``nstm_acquire`` of a store (FORMAT.md, version 1).

    ``illumination`` stays a plain dict (FORMAT.md field names) but is validated per modality
    with :class:`DpcIllumination` or :class:`SimIllumination`; :attr:`illumination_model`
    gives the parsed form. Unknown top-level keys are kept (``extra="allow"``).
    """

    model_config = ConfigDict(extra="allow")

    format_version: Literal[1]
    modality: Literal["dpc", "sim2d", "sim3d"]
    optics: Optics
    optics_extra: dict[str, Any] = Field(
        default_factory=dict, description="optional optics keys that Optics does not know"
    )
    illumination: dict[str, Any]
    camera: CameraModel = Field(default_factory=CameraModel)
    acquisition: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_optics_extra(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("optics"), dict):
            known = set(Optics.model_fields)
            optics = data["optics"]
            extra = {k: v for k, v in optics.items() if k not in known}
            if extra:
                data = dict(data)
                data["optics"] = {k: v for k, v in optics.items() if k in known}
                data["optics_extra"] = {**data.get("optics_extra", {}), **extra}
        return data

    @model_validator(mode="after")
    def _per_modality(self) -> StoreAttributes:
        model: type[BaseModel] = DpcIllumination if self.modality == "dpc" else SimIllumination
        try:
            model.model_validate(self.illumination)
        except ValidationError as err:
            field, problem = _first_problem(err, prefix="illumination")
            raise _FieldProblem(field, problem) from None
        if self.modality == "sim3d" and self.optics.z_step_um is None:
            raise _FieldProblem(
                "optics.z_step_um", "is missing (axial plane spacing in µm; sim3d needs it)"
            )
        return self

    @property
    def illumination_model(self) -> DpcIllumination | SimIllumination:
        """``illumination`` parsed with the model of this modality."""
        if self.modality == "dpc":
            return DpcIllumination.model_validate(self.illumination)
        return SimIllumination.model_validate(self.illumination)

    def to_store(self) -> dict[str, Any]:
        """The JSON object written under ``nstm_acquire`` (FORMAT.md field names)."""
        data = self.model_dump(mode="json", exclude={"optics", "optics_extra", "camera"})
        data["optics"] = {**self.optics.to_store(), **self.optics_extra}
        data["camera"] = self.camera.model_dump(mode="json", exclude_none=True)
        return data


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _first_problems(err: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """Turn pydantic errors into ``(field, problem)`` pairs, one short phrase each."""
    problems: list[tuple[str, str]] = []
    for item in err.errors():
        ctx_error = (item.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldProblem):
            problems.append((ctx_error.field, ctx_error.problem))
            continue
        field = _format_loc(((prefix,) if prefix else ()) + tuple(item["loc"]))
        hint = _hint(field) if field else "see FORMAT.md"
        kind = item["type"]
        if kind == "missing":
            problems.append((field, f"is missing ({hint})"))
        elif kind == "extra_forbidden":
            problems.append((field, "is not a known field (remove it or check its spelling)"))
        else:
            msg = str(item.get("msg", "is invalid"))
            value = item.get("input")
            shown = "" if isinstance(value, (dict, list)) else f"= {value!r} "
            if len(shown) > 60:
                shown = shown[:56] + "... "
            if kind == "value_error":  # our own validators already explain the fix
                problems.append((field, f"{shown}is invalid: {msg.removeprefix('Value error, ')}"))
            else:
                problems.append((field, f"{shown}is invalid: {msg} ({hint})"))
    return problems


def _first_problem(err: ValidationError, prefix: str = "") -> tuple[str, str]:
    problems = _first_problems(err, prefix)
    field, problem = problems[0]
    if len(problems) > 1:
        others = ", ".join(f for f, _ in problems[1:4]) + (", ..." if len(problems) > 4 else "")
        problem += f" (also wrong: {others})"
    return field, problem


def validate_attributes(data: Any, store: str) -> StoreAttributes:
    """Validate the ``nstm_acquire`` attribute object of the store named ``store``.

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
        field, problem = _first_problem(err)
        name = f"attribute {ROOT_ATTRIBUTE_KEY}" + (f".{field}" if field else "")
        raise StoreError(store, name, problem) from None


def n_shots(attrs: StoreAttributes) -> int:
    """Number of shots S per plane and window: DPC ``len(shots)``; SIM orientations x phases."""
    if attrs.modality == "dpc":
        return len(attrs.illumination["shots"])
    return int(attrs.illumination["n_orientations"]) * int(attrs.illumination["n_phases"])


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
