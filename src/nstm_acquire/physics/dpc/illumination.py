"""LED-array illumination for DPC: array geometry, brightfield selection, half-circle patterns.

Conventions (``docs/conventions.md``):

* an LED is described by its illumination NA ``[na_y, na_x]``: the signed sines of the angle
  of its plane wave along the image axes y (= -2) and x (= -1); it illuminates the sample with
  ``exp(i 2π (na_y*y + na_x*x) / λ)``;
* LED index order is row-major: ``index = row * cols + col``, the row index running along y;
* lengths of the array hardware are in millimetres (``*_mm``), everything else is dimensionless.

Pure numpy; no hardware access. :class:`DpcIllumination` is the ``illumination`` object of a
DPC store (``FORMAT.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nstm_acquire._validation import FieldError
from nstm_acquire.physics.optics import Optics

__all__ = [
    "LedArrayGeometry",
    "DpcIllumination",
    "brightfield_leds",
    "dpc_half_circle_patterns",
    "HALF_CIRCLE_AXES",
    "led_pupils",
]

#: The four DPC half-circle patterns and which half of the brightfield disc each one lights.
HALF_CIRCLE_AXES: tuple[str, ...] = ("top", "bottom", "left", "right")


class LedArrayGeometry(BaseModel):
    """A flat, regular LED matrix below (or above) the sample.

    Attributes
    ----------
    rows, cols
        Number of LEDs along y and along x.
    pitch_mm
        Centre-to-centre LED spacing, mm (same along both axes).
    distance_mm
        Distance from the LED plane to the sample plane along the optical axis, mm.
    centre_offset_mm
        ``(y, x)`` position of the array centre relative to the optical axis, mm.
    rotation_rad
        In-plane rotation of the array about its own centre, rad; a positive angle turns the
        array's +x axis towards +y.

    The sign is chosen so that an LED at array position ``(y, x)`` (after rotation and
    offset) has ``na = (y, x) / sqrt(x² + y² + d²)``: the LED on the +x side lights with
    ``na_x > 0``. On a real microscope, match this to the camera's image axes with
    ``rotation_rad`` (``π`` flips both axes) and the sign of ``centre_offset_mm``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(ge=1, description="number of LEDs along y")
    cols: int = Field(ge=1, description="number of LEDs along x")
    pitch_mm: float = Field(gt=0, description="LED spacing, mm")
    distance_mm: float = Field(gt=0, description="LED plane to sample distance, mm")
    centre_offset_mm: tuple[float, float] = Field(
        default=(0.0, 0.0),
        description="(y, x) offset of the array centre from the optical axis, mm",
    )
    rotation_rad: float = Field(default=0.0, description="in-plane rotation of the array, rad")

    @field_validator("centre_offset_mm")
    @classmethod
    def _finite_offset(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(math.isfinite(v) for v in value):
            raise ValueError(f"centre_offset_mm={value} must be two finite numbers (y, x) in mm")
        return value

    @field_validator("rotation_rad", "pitch_mm", "distance_mm")
    @classmethod
    def _finite(cls, value: float, info: Any) -> float:
        if not math.isfinite(value):
            raise ValueError(f"{info.field_name}={value} must be a finite number")
        return value

    @property
    def n_leds(self) -> int:
        """Number of LEDs, ``rows * cols``."""
        return self.rows * self.cols

    def led_positions_mm(self) -> np.ndarray:
        """LED centres ``[y, x]``, mm from the optical axis, shape ``(N, 2)``, row-major."""
        row = np.arange(self.rows, dtype=np.float64) - (self.rows - 1) / 2.0
        col = np.arange(self.cols, dtype=np.float64) - (self.cols - 1) / 2.0
        y0, x0 = np.meshgrid(row * self.pitch_mm, col * self.pitch_mm, indexing="ij")
        cos, sin = math.cos(self.rotation_rad), math.sin(self.rotation_rad)
        x = x0 * cos - y0 * sin + self.centre_offset_mm[1]
        y = x0 * sin + y0 * cos + self.centre_offset_mm[0]
        return np.stack([y.ravel(), x.ravel()], axis=-1)

    def led_na(self) -> np.ndarray:
        """Illumination NA ``[na_y, na_x]`` of every LED, shape ``(N, 2)``, row-major order.

        ``na_y = y / sqrt(x² + y² + d²)`` and likewise for x (sines of the illumination angle).
        """
        pos = self.led_positions_mm()
        radius = np.sqrt(np.sum(pos**2, axis=-1) + self.distance_mm**2)
        return pos / radius[:, None]


def _check_led_na(
    led_na: np.ndarray | Sequence[Sequence[float]], name: str = "led_na"
) -> np.ndarray:
    arr = np.asarray(led_na, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (N, 2) of [na_y, na_x] with N >= 1, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values; give finite [na_y, na_x] sines")
    return arr


def brightfield_leds(
    led_na: np.ndarray | Sequence[Sequence[float]], na_detection: float, margin: float = 0.0
) -> np.ndarray:
    """Indices of the LEDs inside the brightfield disc, ``|na| < na_detection - margin``.

    Parameters
    ----------
    led_na
        ``(N, 2)`` illumination NA ``[na_y, na_x]`` of every LED.
    na_detection
        Objective NA.
    margin
        NA kept clear of the pupil edge (LEDs within ``margin`` of the edge are left out;
        useful when the LED positions are only approximately known).

    Returns
    -------
    np.ndarray
        Ascending int64 indices into ``led_na``.
    """
    arr = _check_led_na(led_na)
    if not (math.isfinite(na_detection) and na_detection > 0):
        raise ValueError(f"na_detection={na_detection} must be a finite positive objective NA")
    if not 0.0 <= margin < na_detection:
        raise ValueError(f"margin={margin} must be in [0, na_detection={na_detection})")
    radius = np.hypot(arr[:, 0], arr[:, 1])
    return np.flatnonzero(radius < na_detection - margin).astype(np.int64)


def dpc_half_circle_patterns(
    led_na: np.ndarray | Sequence[Sequence[float]],
    na_detection: float,
    axes: Sequence[str] = HALF_CIRCLE_AXES,
    margin: float = 0.0,
) -> dict[str, list[int]]:
    """The standard DPC half-circle patterns of brightfield LEDs.

    ``top``: ``na_y < 0``; ``bottom``: ``na_y > 0``; ``left``: ``na_x < 0``; ``right``:
    ``na_x > 0``, each restricted to the brightfield LEDs (:func:`brightfield_leds`). LEDs
    exactly on the split axis (``na_y == 0`` for top/bottom, ``na_x == 0`` for left/right) are
    left out of that pair, so the two halves of a centred array are mirror images with equal
    numbers of LEDs.

    Returns
    -------
    dict
        ``{axis: sorted list of LED indices}`` in the order of ``axes``.
    """
    arr = _check_led_na(led_na)
    axes = tuple(axes)
    if not axes:
        raise ValueError("axes is empty; give some of 'top', 'bottom', 'left', 'right'")
    unknown = [a for a in axes if a not in HALF_CIRCLE_AXES]
    if unknown or len(set(axes)) != len(axes):
        raise ValueError(
            f"axes={axes} must be distinct names from {HALF_CIRCLE_AXES}; "
            f"bad: {unknown or 'duplicates'}"
        )
    bright = brightfield_leds(arr, na_detection, margin)
    na_y, na_x = arr[bright, 0], arr[bright, 1]
    select = {
        "top": na_y < 0,
        "bottom": na_y > 0,
        "left": na_x < 0,
        "right": na_x > 0,
    }
    patterns: dict[str, list[int]] = {}
    for axis in axes:
        lit = bright[select[axis]]
        if lit.size == 0:
            raise ValueError(
                f"pattern '{axis}' lights no LED: no brightfield LED on that side of the axis; "
                "check na_detection, distance_mm and pitch_mm"
            )
        patterns[axis] = [int(i) for i in lit]
    return patterns


class DpcIllumination(BaseModel):
    """The DPC ``illumination`` object of a store (``FORMAT.md``).

    Attributes
    ----------
    led_na
        ``[na_y, na_x]`` of every LED of the array (sines, each component in (-1, 1)).
    shots
        For each shot index s, the indices of the LEDs lit in that shot.
    led_brightness
        Optional relative brightness of every LED (> 0); ``None`` means all equal to 1.

    The model is frozen; lists given for the fields are stored as tuples. It is the one
    description of a DPC illumination: the microscope builds it, the store layout validates a
    store's ``illumination`` with it (unknown keys of a store are kept beside it, see
    :class:`~nstm_acquire.store.layout.StoreAttributes`) and the reconstruction uses it. A bad
    value raises a ``ValidationError`` whose error carries a
    :class:`~nstm_acquire._validation.FieldError` naming the element (``shots[1][0]``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    led_na: tuple[tuple[float, float], ...]
    shots: tuple[tuple[int, ...], ...]
    led_brightness: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> DpcIllumination:
        """Every problem names its element (``shots[1][0]``) and the fix (:class:`FieldError`)."""
        n = len(self.led_na)
        if n == 0:
            raise FieldError("led_na", "is empty (give [na_y, na_x] for every LED of the array)")
        for j, (na_y, na_x) in enumerate(self.led_na):
            if not (math.isfinite(na_y) and math.isfinite(na_x)) or na_y**2 + na_x**2 >= 1.0:
                raise FieldError(
                    f"led_na[{j}]",
                    f"= [{na_y}, {na_x}] is not a valid illumination NA (signed sines of the "
                    "illumination angle along y and x: finite, with na_y^2 + na_x^2 < 1; "
                    "check the units, not mm)",
                )
        if len(self.shots) == 0:
            raise FieldError("shots", "is empty (give the list of lit LED indices for every shot)")
        for s, lit in enumerate(self.shots):
            if len(lit) == 0:
                raise FieldError(
                    f"shots[{s}]", "lights no LED (every shot must light at least one LED)"
                )
            for i, led in enumerate(lit):
                if not 0 <= led < n:
                    raise FieldError(
                        f"shots[{s}][{i}]",
                        f"= {led} is out of range (LED indices must be in 0..{n - 1} because "
                        f"led_na lists {n} LEDs; {led} is outside the array)",
                    )
            if len(set(lit)) != len(lit):
                twice = sorted({led for led in lit if lit.count(led) > 1})
                raise FieldError(
                    f"shots[{s}]", f"lists LED {twice[0]} twice (give each lit index once)"
                )
        if self.led_brightness is not None:
            if len(self.led_brightness) != n:
                raise FieldError(
                    "led_brightness",
                    f"has {len(self.led_brightness)} entries (give one per LED: {n})",
                )
            for j, b in enumerate(self.led_brightness):
                if not (math.isfinite(b) and b > 0):
                    raise FieldError(
                        f"led_brightness[{j}]",
                        f"= {b} is invalid (relative LED brightness must be finite and > 0)",
                    )
        return self

    @classmethod
    def half_circles(
        cls,
        led_na: np.ndarray | Sequence[Sequence[float]],
        na_detection: float,
        axes: Sequence[str] = HALF_CIRCLE_AXES,
        margin: float = 0.0,
        led_brightness: Sequence[float] | None = None,
    ) -> DpcIllumination:
        """The half-circle DPC illumination (one shot per entry of ``axes``)."""
        arr = _check_led_na(led_na)
        patterns = dpc_half_circle_patterns(arr, na_detection, axes, margin)
        return cls.model_validate(
            {
                "led_na": [tuple(map(float, row)) for row in arr],
                "shots": [tuple(patterns[a]) for a in axes],
                "led_brightness": None
                if led_brightness is None
                else [float(b) for b in led_brightness],
            }
        )

    @property
    def n_shots(self) -> int:
        """Number of shots S."""
        return len(self.shots)

    def led_na_array(self) -> np.ndarray:
        """``led_na`` as a float64 array ``(N, 2)``."""
        return np.asarray(self.led_na, dtype=np.float64)

    def brightness_array(self) -> np.ndarray:
        """Relative brightness of every LED, float64 ``(N,)`` (ones when not given)."""
        if self.led_brightness is None:
            return np.ones(len(self.led_na), dtype=np.float64)
        return np.asarray(self.led_brightness, dtype=np.float64)

    def lit(self, shot: int) -> tuple[np.ndarray, np.ndarray]:
        """``(na (M, 2), brightness (M,))`` of the LEDs lit in shot ``shot``."""
        if not 0 <= shot < self.n_shots:
            raise ValueError(f"shot={shot} outside [0, {self.n_shots})")
        idx = np.asarray(self.shots[shot], dtype=np.int64)
        return self.led_na_array()[idx], self.brightness_array()[idx]

    def to_store(self) -> dict[str, Any]:
        """JSON-ready dict with the FORMAT.md field names (``led_brightness`` only when given)."""
        out: dict[str, Any] = {
            "led_na": [[float(a), float(b)] for a, b in self.led_na],
            "shots": [[int(i) for i in lit] for lit in self.shots],
        }
        if self.led_brightness is not None:
            out["led_brightness"] = [float(b) for b in self.led_brightness]
        return out

    @classmethod
    def from_store(cls, attrs: Mapping[str, Any] | DpcIllumination) -> DpcIllumination:
        """Build from a store's ``illumination`` dict (a :class:`DpcIllumination` is returned as is).

        Unknown keys are ignored (FORMAT.md allows optional additions); missing required keys
        raise ``ValueError``.
        """
        if isinstance(attrs, DpcIllumination):
            return attrs
        missing = [k for k in ("led_na", "shots") if k not in attrs]
        if missing:
            raise ValueError(
                f"DPC illumination is missing {missing}; FORMAT.md requires led_na and shots"
            )
        return cls.model_validate(
            {
                "led_na": [tuple(row) for row in attrs["led_na"]],
                "shots": [tuple(lit) for lit in attrs["shots"]],
                "led_brightness": attrs.get("led_brightness"),
            }
        )


def led_pupils(
    shape: tuple[int, int], optics: Optics, led_na: np.ndarray | Sequence[Sequence[float]]
) -> np.ndarray:
    """The pupil as seen under each LED, ``P(u + na_j / λ)``, bool ``(M, Y, X)`` in FFT order.

    ``P`` is 1 inside ``|u| < NA/λ``, the rule of :func:`nstm_acquire.physics.optics.pupil` (which this
    matches value for value, vectorised over LEDs); ``u`` in cycles/µm on the FFT grid of
    ``shape`` at ``optics.pixel_size_um``. ``led_na`` is ``(M, 2)`` ``[na_y, na_x]``.
    """
    na = _check_led_na(led_na)
    ny, nx = shape
    uy = np.fft.fftfreq(ny, d=optics.pixel_size_um)
    ux = np.fft.fftfreq(nx, d=optics.pixel_size_um)
    shift = na / optics.wavelength_um
    dy2 = (uy[None, :] + shift[:, 0:1]) ** 2  # (M, Y)
    dx2 = (ux[None, :] + shift[:, 1:2]) ** 2  # (M, X)
    return dy2[:, :, None] + dx2[:, None, :] < optics.cutoff_per_um**2
