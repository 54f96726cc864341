"""Lateral motion fields of a simulated sample, with known ground truth.

Convention (``docs/conventions.md``): a motion is the **backward-warp** displacement
``d(r, t)`` in µm such that ``sample(r, t) = template(r + d(r, t))``; ``r = (y, x)`` in µm on
the camera's sample-plane coordinates (pixel ``(i, j)`` centred at ``(i, j) * pixel_size_um``)
and ``t`` in seconds on the acquisition clock. Every motion here is lateral and returns the
pair ``(dy, dx)`` in µm. Motions combine by adding their displacement fields.

Rotation sense. The image frame has x to the right and y pointing **down** (row index).
A positive angular velocity turns the sample **counter-clockwise as displayed** with y down
(``imshow(origin="upper")``, napari): a feature on the +x side of the centre moves toward
-y (up the screen). In components, a template point at offset ``q = (qy, qx)`` from the
centre appears at time t at ``c + F(θ) q`` with ``θ = ω t`` and::

    F(θ):  x' =  qx cos θ + qy sin θ
           y' = -qx sin θ + qy cos θ

so, with ``(ry, rx) = r - c``, the backward displacement is::

    dx = rx (cos θ - 1) - ry sin θ
    dy = rx sin θ + ry (cos θ - 1)

Parse motions from YAML/CLI with :func:`motion_from_spec`; size margins with
:func:`max_displacement_um`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "Static",
    "Translation",
    "Rotation",
    "Shear",
    "Swirl",
    "Vibration",
    "Combined",
    "Motion",
    "MOTION_KINDS",
    "motion_from_spec",
    "max_displacement_um",
]

Centre = tuple[float, float]


class _MotionBase(BaseModel):
    """Common configuration: frozen, no unknown fields, finite numbers only."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def displacement(
        self,
        t_s: float,
        y_um: np.ndarray,
        x_um: np.ndarray,
        centre_um: Centre,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backward-warp displacement ``(dy, dx)`` in µm at time ``t_s`` (s).

        ``y_um`` and ``x_um`` are sample-plane coordinates in µm (any broadcastable
        shapes); ``centre_um = (cy, cx)`` is the field centre supplied by the sample, used
        by motions whose own ``centre_um`` is ``None``. Returns two float64 arrays of the
        broadcast shape of ``y_um`` and ``x_um``.
        """
        raise NotImplementedError

    @property
    def is_uniform(self) -> bool:
        """True when the displacement does not depend on position (rigid translation)."""
        return False

    def _time_scale_hz(self) -> float:
        """Fastest temporal frequency of the displacement, Hz (for sampling in time)."""
        return 0.0

    def _length_scale_um(self) -> float:
        """Finest spatial scale of the displacement field, µm (inf when smooth/linear)."""
        return math.inf


def _shape_of(y_um: np.ndarray, x_um: np.ndarray) -> tuple[int, ...]:
    return np.broadcast_shapes(np.shape(y_um), np.shape(x_um))


def _centre(own: Centre | None, given: Centre) -> Centre:
    return own if own is not None else given


def _rotation_displacement(
    theta: np.ndarray | float, ry: np.ndarray, rx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Backward displacement of a rotation by ``theta`` (rad, counter-clockwise as displayed
    with y down) of the offsets ``(ry, rx)`` from the centre, µm."""
    sin_t = np.sin(theta)
    # cos θ - 1 = -2 sin²(θ/2), exact for small angles
    cos_m1 = -2.0 * np.sin(0.5 * theta) ** 2
    dx = rx * cos_m1 - ry * sin_t
    dy = rx * sin_t + ry * cos_m1
    return dy, dx


class Static(_MotionBase):
    """No motion: ``d = 0``."""

    kind: Literal["static"] = "static"

    def displacement(self, t_s, y_um, x_um, centre_um):  # noqa: D102 (see base class)
        shape = _shape_of(y_um, x_um)
        return np.zeros(shape), np.zeros(shape)

    @property
    def is_uniform(self) -> bool:
        return True


class Translation(_MotionBase):
    """Uniform drift at ``velocity_um_per_s = (vy, vx)`` µm/s.

    A feature at ``p`` at t = 0 appears at ``p + v t``; the backward displacement is
    ``d = -v t``.
    """

    kind: Literal["translation"] = "translation"
    velocity_um_per_s: tuple[float, float] = Field(
        description="(vy, vx) drift velocity of the sample, µm/s"
    )

    def displacement(self, t_s, y_um, x_um, centre_um):  # noqa: D102
        shape = _shape_of(y_um, x_um)
        vy, vx = self.velocity_um_per_s
        return np.full(shape, -vy * t_s), np.full(shape, -vx * t_s)

    @property
    def is_uniform(self) -> bool:
        return True


class Rotation(_MotionBase):
    """Rigid rotation at ``angular_velocity_rad_per_s`` about ``centre_um`` (or the field centre).

    Positive ω turns the sample counter-clockwise as displayed with y down: a feature on
    the +x side of the centre moves toward -y. The feature's angle
    ``atan2(-(y - cy), x - cx)`` grows by ``ω t``; distances from the centre are preserved.
    """

    kind: Literal["rotation"] = "rotation"
    angular_velocity_rad_per_s: float = Field(
        description="ω, rad/s (counter-clockwise as displayed)"
    )
    centre_um: Centre | None = Field(
        default=None, description="(cy, cx) rotation centre, µm; None = the field centre"
    )

    def displacement(self, t_s, y_um, x_um, centre_um):  # noqa: D102
        cy, cx = _centre(self.centre_um, centre_um)
        shape = _shape_of(y_um, x_um)
        theta = self.angular_velocity_rad_per_s * t_s
        dy, dx = _rotation_displacement(theta, np.asarray(y_um) - cy, np.asarray(x_um) - cx)
        return np.broadcast_to(dy, shape).astype(np.float64), np.broadcast_to(dx, shape).astype(
            np.float64
        )

    def _time_scale_hz(self) -> float:
        return abs(self.angular_velocity_rad_per_s) / (2 * math.pi)


class Shear(_MotionBase):
    """Simple shear: the x-velocity is ``rate_per_s * (y - cy)``.

    A feature at ``(y, x)`` appears at ``(y, x + γ t (y - cy))``; the backward displacement
    is ``dx = -γ t (y - cy)``, ``dy = 0``. Only ``cy`` of the centre matters.
    """

    kind: Literal["shear"] = "shear"
    rate_per_s: float = Field(description="shear rate γ, 1/s (µm/s of x-velocity per µm of y)")
    centre_um: Centre | None = Field(
        default=None,
        description="(cy, cx) line of zero velocity at y = cy, µm; None = field centre",
    )

    def displacement(self, t_s, y_um, x_um, centre_um):  # noqa: D102
        cy, _ = _centre(self.centre_um, centre_um)
        shape = _shape_of(y_um, x_um)
        dx = -self.rate_per_s * t_s * (np.asarray(y_um, dtype=np.float64) - cy)
        return np.zeros(shape), np.broadcast_to(dx, shape).copy()


class Swirl(_MotionBase):
    """Non-rigid swirl: rotation by ``θ(r, t) = ω t exp(-|r - c|² / (2 radius²))``.

    The centre turns rigidly at ω (same sense as :class:`Rotation`), the periphery stays
    still. Because θ depends only on ``|r - c|``, which a rotation preserves, the
    backward warp is exactly the rotation by ``-θ(r, t)`` about ``c``.
    """

    kind: Literal["swirl"] = "swirl"
    angular_velocity_rad_per_s: float = Field(description="ω at the centre, rad/s")
    radius_um: float = Field(gt=0, description="Gaussian radius of the swirling region, µm (> 0)")
    centre_um: Centre | None = Field(
        default=None, description="(cy, cx) swirl centre, µm; None = the field centre"
    )

    def displacement(self, t_s, y_um, x_um, centre_um):  # noqa: D102
        cy, cx = _centre(self.centre_um, centre_um)
        shape = _shape_of(y_um, x_um)
        ry = np.asarray(y_um, dtype=np.float64) - cy
        rx = np.asarray(x_um, dtype=np.float64) - cx
        rho2 = ry * ry + rx * rx
        theta = (self.angular_velocity_rad_per_s * t_s) * np.exp(rho2 * (-0.5 / self.radius_um**2))
        dy, dx = _rotation_displacement(theta, ry, rx)
        return np.broadcast_to(dy, shape).copy(), np.broadcast_to(dx, shape).copy()

    def _time_scale_hz(self) -> float:
        return abs(self.angular_velocity_rad_per_s) / (2 * math.pi)

    def _length_scale_um(self) -> float:
        return self.radius_um


class Vibration(_MotionBase):
    """Sinusoidal vibration: the sample sits at ``p + a sin(2π f t + phase)``.

    Backward displacement ``d = -a sin(2π f t + phase)`` with ``a = amplitude_um = (ay, ax)``.
    """

    kind: Literal["vibration"] = "vibration"
    amplitude_um: tuple[float, float] = Field(description="(ay, ax) vibration amplitude, µm")
    frequency_hz: float = Field(ge=0, description="vibration frequency, Hz (>= 0)")
    phase_rad: float = Field(default=0.0, description="phase at t = 0, rad")

    def displacement(self, t_s, y_um, x_um, centre_um):  # noqa: D102
        shape = _shape_of(y_um, x_um)
        s = math.sin(2 * math.pi * self.frequency_hz * t_s + self.phase_rad)
        ay, ax = self.amplitude_um
        return np.full(shape, -ay * s), np.full(shape, -ax * s)

    @property
    def is_uniform(self) -> bool:
        return True

    def _time_scale_hz(self) -> float:
        return self.frequency_hz


class Combined(_MotionBase):
    """Several motions at once: the displacement fields add."""

    kind: Literal["combined"] = "combined"
    motions: list[Motion] = Field(min_length=1, description="the motions to add (at least one)")

    def displacement(self, t_s, y_um, x_um, centre_um):  # noqa: D102
        shape = _shape_of(y_um, x_um)
        dy = np.zeros(shape)
        dx = np.zeros(shape)
        for motion in self.motions:
            my, mx = motion.displacement(t_s, y_um, x_um, centre_um)
            dy += my
            dx += mx
        return dy, dx

    @property
    def is_uniform(self) -> bool:
        return all(m.is_uniform for m in self.motions)

    def _time_scale_hz(self) -> float:
        return max(m._time_scale_hz() for m in self.motions)

    def _length_scale_um(self) -> float:
        return min(m._length_scale_um() for m in self.motions)


Motion = Annotated[
    Static | Translation | Rotation | Shear | Swirl | Vibration | Combined,
    Field(discriminator="kind"),
]
Combined.model_rebuild()

_MOTION_ADAPTER: TypeAdapter = TypeAdapter(Motion)
_MOTION_CLASSES: dict[str, type[_MotionBase]] = {
    "static": Static,
    "translation": Translation,
    "rotation": Rotation,
    "shear": Shear,
    "swirl": Swirl,
    "vibration": Vibration,
    "combined": Combined,
}
MOTION_KINDS: tuple[str, ...] = tuple(_MOTION_CLASSES)

# Short parameter names (CLI strings and YAML dicts) -> (model field, tuple index or None).
_SHORT_NAMES: dict[str, dict[str, tuple[str, int | None]]] = {
    "static": {},
    "translation": {"vy": ("velocity_um_per_s", 0), "vx": ("velocity_um_per_s", 1)},
    "rotation": {
        "omega": ("angular_velocity_rad_per_s", None),
        "cy": ("centre_um", 0),
        "cx": ("centre_um", 1),
    },
    "swirl": {
        "omega": ("angular_velocity_rad_per_s", None),
        "radius": ("radius_um", None),
        "cy": ("centre_um", 0),
        "cx": ("centre_um", 1),
    },
    "shear": {"rate": ("rate_per_s", None), "cy": ("centre_um", 0), "cx": ("centre_um", 1)},
    "vibration": {
        "ay": ("amplitude_um", 0),
        "ax": ("amplitude_um", 1),
        "f": ("frequency_hz", None),
        "phase": ("phase_rad", None),
    },
    "combined": {},
}
# Defaults for tuple fields filled from short names (a missing component is 0 / the field centre).
_TUPLE_DEFAULTS: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "translation": {"velocity_um_per_s": (0.0, 0.0)},
    "vibration": {"amplitude_um": (0.0, 0.0)},
    "rotation": {"centre_um": (None, None)},
    "swirl": {"centre_um": (None, None)},
    "shear": {"centre_um": (None, None)},
}


def _valid_kinds_text() -> str:
    return ", ".join(MOTION_KINDS)


def _param_names(kind: str) -> list[str]:
    cls = _MOTION_CLASSES[kind]
    fields = [f for f in cls.model_fields if f != "kind"]
    return list(_SHORT_NAMES[kind]) + fields


def _from_mapping(spec: dict[str, Any]) -> _MotionBase:
    """Build one motion from a dict with ``kind`` plus short or full parameter names."""
    if "kind" not in spec:
        raise ValueError(f"motion spec {spec!r} has no 'kind'; give one of: {_valid_kinds_text()}")
    kind = str(spec["kind"]).strip().lower()
    if kind not in _MOTION_CLASSES:
        raise ValueError(
            f"unknown motion kind {spec['kind']!r}; valid kinds: {_valid_kinds_text()}"
        )
    if kind == "combined":
        parts = spec.get("motions")
        if not isinstance(parts, (list, tuple)) or not parts:
            raise ValueError("combined motion needs a non-empty list 'motions'")
        extra = set(spec) - {"kind", "motions"}
        if extra:
            raise ValueError(
                f"unknown parameter(s) {sorted(extra)} for motion 'combined'; valid: motions"
            )
        return Combined(motions=[motion_from_spec(p) for p in parts])

    cls = _MOTION_CLASSES[kind]
    short = _SHORT_NAMES[kind]
    full_fields = {f for f in cls.model_fields if f != "kind"}
    kwargs: dict[str, Any] = {}
    tuple_parts: dict[str, list[float | None]] = {}
    for key, value in spec.items():
        if key == "kind":
            continue
        if key in short:
            field, index = short[key]
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"motion '{kind}': parameter {key}={value!r} is not a number"
                ) from None
            if index is None:
                kwargs[field] = number
            else:
                default = _TUPLE_DEFAULTS[kind][field]
                tuple_parts.setdefault(field, list(default))[index] = number
        elif key in full_fields:
            kwargs[key] = value
        else:
            raise ValueError(
                f"unknown parameter {key!r} for motion '{kind}'; valid parameters: "
                f"{', '.join(_param_names(kind)) or '(none)'}"
            )
    for field, parts in tuple_parts.items():
        if field in kwargs:
            raise ValueError(f"motion '{kind}': {field} given both whole and by component")
        if any(p is None for p in parts):
            raise ValueError(
                f"motion '{kind}': give both components of {field} "
                f"({', '.join(k for k, v in short.items() if v[0] == field)})"
            )
        kwargs[field] = tuple(parts)
    return cls(**kwargs)


def _from_string(text: str) -> _MotionBase:
    terms = [t.strip() for t in text.split("+")]
    if not text.strip() or any(not t for t in terms):
        raise ValueError(
            f"empty motion term in {text!r}; write e.g. "
            "'translation:vx=1.5,vy=0.5+rotation:omega=0.05'"
        )
    motions = []
    for term in terms:
        kind, _, params = term.partition(":")
        spec: dict[str, Any] = {"kind": kind.strip().lower()}
        if spec["kind"] not in _MOTION_CLASSES or spec["kind"] == "combined":
            raise ValueError(
                f"unknown motion kind {kind.strip()!r} in {text!r}; valid kinds: "
                f"{', '.join(k for k in MOTION_KINDS if k != 'combined')} (join several with '+')"
            )
        for item in filter(None, (p.strip() for p in params.split(","))):
            name, eq, value = item.partition("=")
            if not eq:
                raise ValueError(
                    f"motion '{spec['kind']}': parameter {item!r} needs the form name=value; "
                    f"valid parameters: {', '.join(_param_names(spec['kind'])) or '(none)'}"
                )
            name = name.strip()
            if name in spec:
                raise ValueError(f"motion '{spec['kind']}': parameter {name!r} given twice")
            spec[name] = value.strip()
        motions.append(_from_mapping(spec))
    return motions[0] if len(motions) == 1 else Combined(motions=motions)


def motion_from_spec(spec: str | dict | list | _MotionBase) -> _MotionBase:
    """Build a motion from a CLI string, a YAML dict/list or a motion model.

    Strings: ``"kind:name=value,name=value"`` terms joined by ``+``, e.g.
    ``"translation:vx=1.5,vy=0.5"``, ``"rotation:omega=0.05"``, ``"swirl:omega=0.3,radius=6"``,
    ``"shear:rate=0.02"``, ``"vibration:ax=0.3,ay=0.1,f=2"``, ``"static"``. Units: µm, µm/s,
    rad/s, Hz, rad. Short names: translation ``vx, vy``; rotation ``omega, cy, cx``; swirl
    ``omega, radius, cy, cx``; shear ``rate, cy, cx``; vibration ``ax, ay, f, phase``
    (missing components default to 0). Dicts take ``kind`` and either short names or the
    model's field names; a list is the :class:`Combined` of its items.

    Raises ``ValueError`` listing the valid kinds or parameter names for an unknown one.
    """
    if isinstance(spec, _MotionBase):
        return spec
    if isinstance(spec, str):
        return _from_string(spec)
    if isinstance(spec, dict):
        return _from_mapping(spec)
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError("empty motion list; give at least one motion (or 'static')")
        motions = [motion_from_spec(s) for s in spec]
        return motions[0] if len(motions) == 1 else Combined(motions=motions)
    raise TypeError(
        f"motion spec of type {type(spec).__name__} not understood; give a string such as "
        "'translation:vx=1', a dict with 'kind', a list of those, or a motion model"
    )


def max_displacement_um(
    motion: _MotionBase,
    t_max_s: float,
    field_size_um: tuple[float, float],
    centre_um: Centre,
) -> float:
    """Largest displacement magnitude ``|d(r, t)|`` in µm over the field and ``[0, t_max_s]``.

    Numerical: the field ``[0, h] x [0, w]`` (µm) is sampled on a grid that includes its
    corners and is at least 65 x 65, finer where the motion has small spatial features (a
    quarter of a swirl radius, capped at 513 points per axis); time is sampled at 65 points
    or at least 32 per period of the fastest rotation/vibration. The result is a lower
    bound accurate to a few tenths of a percent for smooth motions. Use it to size margins.
    """
    if not (t_max_s >= 0 and math.isfinite(t_max_s)):
        raise ValueError(f"t_max_s={t_max_s} must be finite and >= 0 (seconds)")
    h, w = (float(v) for v in field_size_um)
    if not (h > 0 and w > 0):
        raise ValueError(f"field_size_um={field_size_um} must be positive (h, w) in µm")
    length = motion._length_scale_um()
    n_y = n_x = 65
    if math.isfinite(length):
        n_y = int(min(513, max(65, math.ceil(4 * h / length) + 1)))
        n_x = int(min(513, max(65, math.ceil(4 * w / length) + 1)))
    y = np.linspace(0.0, h, n_y)[:, None]
    x = np.linspace(0.0, w, n_x)[None, :]
    rate = motion._time_scale_hz()
    n_t = int(min(20001, max(65, math.ceil(32 * rate * t_max_s) + 1)))
    best = 0.0
    for t in np.linspace(0.0, t_max_s, n_t):
        dy, dx = motion.displacement(float(t), y, x, centre_um)
        best = max(best, float(np.sqrt(np.max(dy * dy + dx * dx))))
    return best
