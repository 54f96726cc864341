"""SIM illumination patterns, shared by the simulated microscope and the reconstruction (numpy).

Conventions (binding: ``docs/conventions.md`` "SIM illumination", ``FORMAT.md`` SIM
``illumination`` and "Physical conventions"):

* lengths in µm, lateral and axial frequencies in cycles/µm, phases in radians;
* a lateral frequency is the pair ``[k_y, k_x]`` along array axes y = -2 and x = -1;
* shot index ``s = d * n_phases + p`` (orientation ``d``, phase step ``p``); the *shot phase*
  ``ψ = phase_rad[d] + 2π p / n_phases`` is the phase of the fundamental order (2D: the only
  one; 3D: order 1 at ``k_d / 2``); order m carries ``m ψ``, the standard phase stepping that
  separates the orders with a perfectly conditioned (DFT) matrix.

Two-beam (2D SIM) pattern of shot ``(d, p)``, mean 1::

    I(r) = 1 + m_d cos(2π k_d·r + ψ)

Three-beam (3D SIM) pattern, fixed to the focal plane (``z`` is measured from it)::

    I(r, z) = 1 + m1_d cos(2π (k_d/2)·r + ψ) cos(2π kz z) + m2_d cos(2π k_d·r + 2ψ)

Order 1 (``k_d / 2``) carries the shot phase ``ψ`` and the axial modulation; order 2 (the
finest, ``k_d``, FORMAT.md's ``k_per_um``) carries ``2ψ``.

Three-beam geometry (derivation of :func:`three_beam_axial_k_per_um`). Inside the immersion
medium of index ``n`` the excitation light of vacuum wavelength ``λ`` has wavenumber
``n/λ`` (cycles/µm). The centre beam travels along z, wavevector ``(0, n/λ)`` (lateral, axial);
the side beams are tilted by ``±θ``: ``(±n sinθ/λ, n cosθ/λ)``. The intensity of the sum of the
three plane waves contains, besides a constant, the beat of each pair at the difference of
their wavevectors:

* side/side: lateral ``2 n sinθ / λ``, axial 0 — the finest order, so ``|k| = 2 n sinθ / λ``,
  i.e. ``sinθ = λ |k| / (2 n)``;
* centre/side: lateral ``n sinθ / λ = |k| / 2``, axial ``kz = n (1 - cosθ) / λ``.

With equal beam amplitudes ``a``:
``I = a²[3 + 4 cos(π k·r + ψ) cos(2π kz z) + 2 cos(2π k·r + 2ψ)]``,
i.e. mean-1 modulations ``m1 = 4/3``, ``m2 = 2/3`` (the minimum is exactly 0). Both side beams
must pass the objective: ``n sinθ <= NA``, i.e. ``|k| <= 2 NA / λ_ex`` (the same limit as
two-beam SIM).

Other beam ratios (:func:`three_beam_modulation`). With a centre beam of amplitude ``a``
relative to two coherent side beams of amplitude 1 the same sum gives
``I = a² + 2 + 4a cos(π k·r + ψ) cos(2π kz z) + 2 cos(2π k·r + 2ψ)``, so

    m1 = c · 4a / (a² + 2),   m2 = c · 2 / (a² + 2),

with a fringe contrast ``c <= 1`` (incoherent background, polarisation, out-of-focus light).
``m1`` is largest, ``√2``, at ``a = √2`` (then ``m2 = 1/2``); a weak centre beam gives
``m2`` up to 1 (``a -> 0``) and small ``m1``. Conversely a pair ``(m1, m2)`` has the beam
ratio ``a = m1 / (2 m2)`` and the contrast ``c = m2 + m1² / (8 m2)``
(:func:`three_beam_contrast`): it is physical exactly when ``c <= 1``, i.e.
``m1² <= 8 m2 (1 - m2)``, which implies ``m1 <= √2`` and ``m2 <= 1`` and keeps the pattern
non-negative (at ``c = 1`` its minimum is ``(a - 2)² / (a² + 2)`` for ``a > 2``, else 0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nstm_acquire._validation import FieldError
from nstm_acquire.physics.optics import Optics

__all__ = [
    "SimIllumination",
    "PatternOrder",
    "default_sim_illumination",
    "three_beam_axial_k_per_um",
    "pattern_orders",
    "illumination_pattern",
    "check_illumination_for_optics",
    "IDEAL_THREE_BEAM_MODULATION",
    "THREE_BEAM_MAX_M1",
    "three_beam_modulation",
    "three_beam_contrast",
    "physical_modulation",
    "sim3d_axial_support_per_um",
    "sim3d_nyquist_z_step_um",
    "DEFAULT_FRACTION_OF_CUTOFF",
]

#: ``|k|`` of :func:`default_sim_illumination` as a fraction of the detection cut-off 2NA/λ_em.
DEFAULT_FRACTION_OF_CUTOFF = 0.85

#: Mean-1 modulations ``(m1, m2)`` of three equal-amplitude beams (see the module docstring).
IDEAL_THREE_BEAM_MODULATION: tuple[float, float] = (4.0 / 3.0, 2.0 / 3.0)

#: Largest mean-1 modulation ``m1`` of a three-beam pattern: centre beam ``√2`` x a side beam.
THREE_BEAM_MAX_M1: float = math.sqrt(2.0)

_NEGATIVE_TOLERANCE = 1e-9


def three_beam_modulation(beam_ratio: float, contrast: float = 1.0) -> tuple[float, float]:
    """Mean-1 modulations ``(m1, m2)`` of a three-beam pattern (module docstring).

    ``beam_ratio`` is the centre beam's amplitude relative to each side beam's (``>= 0``;
    1 = equal beams), ``contrast`` the fringe contrast in ``[0, 1]``.
    """
    a, c = float(beam_ratio), float(contrast)
    if not (math.isfinite(a) and a >= 0):
        raise ValueError(f"beam_ratio={beam_ratio} must be finite and >= 0 (centre / side amplitude)")
    if not (0.0 <= c <= 1.0):
        raise ValueError(f"contrast={contrast} must be in [0, 1]")
    return c * 4.0 * a / (a * a + 2.0), c * 2.0 / (a * a + 2.0)


def three_beam_contrast(m1: float, m2: float) -> float:
    """The fringe contrast ``c = m2 + m1² / (8 m2)`` of a three-beam pair (module docstring).

    ``c <= 1`` exactly when some beam ratio ``a = m1 / (2 m2)`` and contrast give ``(m1, m2)``;
    ``inf`` for ``m2 = 0 < m1`` (no three-beam geometry has order 1 without order 2).
    """
    if m2 <= 0.0:
        return 0.0 if m1 <= 0.0 else math.inf
    return m2 + m1 * m1 / (8.0 * m2)


def physical_modulation(modulation: tuple[float, ...] | list[float], three_beam: bool) -> list[float]:
    """The nearest physically possible modulation of the same kind, for noisy estimates.

    Two-beam: ``m`` clipped to ``[0, 1]``. Three-beam: negative values set to 0, then a pair
    with contrast ``c > 1`` (:func:`three_beam_contrast`) scaled by ``1 / c`` (the beam ratio
    is kept), so ``m1`` may stay up to ``√2`` and ``m2`` up to 1.
    """
    values = [max(float(v), 0.0) for v in modulation]
    if not three_beam:
        return [min(v, 1.0) for v in values]
    m1, m2 = values
    c = three_beam_contrast(m1, m2)
    if math.isinf(c):
        return [0.0, 0.0]
    if c > 1.0:
        return [m1 / c, m2 / c]
    return [m1, m2]


def _three_beam_min_intensity(m1: float, m2: float) -> float:
    """Minimum over all lateral and axial phases of ``1 + m1 cos a cos b + m2 cos 2a``.

    With ``c = |cos a|`` and the worst axial phase (``cos b = -sign cos a``) the pattern is
    ``f(c) = 1 - m2 - m1 c + 2 m2 c²`` on ``c ∈ [0, 1]``.
    """
    if m2 > 0:
        c_star = m1 / (4.0 * m2)
        if c_star <= 1.0:
            return 1.0 - m2 - m1 * m1 / (8.0 * m2)
    return min(1.0 - m2, 1.0 + m2 - m1)


def _has_order_zero(entry: Any, n_orders: int) -> bool:
    """Whether a ``modulation`` entry starts with the order-0 term: ``[1.0, ...]``, one too long."""
    if not isinstance(entry, (list, tuple)) or len(entry) != n_orders + 1:
        return False
    first = entry[0]
    return (
        isinstance(first, (int, float))
        and not isinstance(first, bool)
        and abs(float(first) - 1.0) <= _NEGATIVE_TOLERANCE
    )


class SimIllumination(BaseModel):
    """The SIM illumination of an acquisition (FORMAT.md SIM ``illumination``).

    Attributes
    ----------
    n_orientations
        Number of pattern orientations ``d`` (default 3).
    n_phases
        Phase steps per orientation: at least 3 for two-beam (2D) SIM, at least 5 for
        three-beam (3D) SIM.
    excitation_wavelength_um
        Vacuum excitation wavelength, µm.
    k_per_um
        Per orientation, ``[k_y, k_x]`` of the finest lateral pattern frequency, cycles/µm
        (``None``: unknown, to be estimated from the data).
    phase_rad
        Per orientation, the shot phase of ``p = 0`` (phase of the fundamental order), rad
        (``None``: unknown).
    modulation
        Per orientation, the modulation of each order: two-beam ``[m]``, three-beam
        ``[m1, m2]`` for orders 1 (``k/2``) and 2 (``k``). ``None``: unknown. FORMAT.md lets
        writers include the order-0 term as a leading 1.0 (``[1.0, m]``, ``[1.0, m1, m2]``);
        it is dropped on validation, so the model always holds the form without it.
    three_beam
        ``True`` for three-beam (3D) SIM, whose order 1 is modulated axially.
        Not a FORMAT.md field (an optional extra; a store without it is read from the
        modality, see :meth:`from_store`).
    axial_k_per_um
        Three-beam only: the axial frequency ``kz`` of order 1, cycles/µm. ``None`` computes it
        per orientation from the geometry (:func:`three_beam_axial_k_per_um`) with the
        immersion index. Optional extra field.

    The model is frozen and hashable; lists given for the array fields are stored as tuples.
    Bad values raise ``ValueError`` (pydantic ``ValidationError``) naming the field; the error
    carries a :class:`~nstm_acquire._validation.FieldError` with the element's path
    (``k_per_um[1]``). It is the one description of a SIM illumination: the microscope builds
    it, the store layout validates a store's ``illumination`` with it (unknown keys of a store
    are kept beside it) and the reconstruction uses it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_orientations: int = Field(default=3, ge=1, description="pattern orientations")
    n_phases: int = Field(ge=3, description="phase steps per orientation (2D: 3, 3D: 5)")
    excitation_wavelength_um: float = Field(gt=0, description="excitation wavelength, µm")
    k_per_um: tuple[tuple[float, float], ...] | None = Field(
        default=None, description="finest lateral frequency [k_y, k_x] per orientation, cycles/µm"
    )
    phase_rad: tuple[float, ...] | None = Field(
        default=None, description="phase of shot p = 0 per orientation, rad"
    )
    modulation: tuple[tuple[float, ...], ...] | None = Field(
        default=None, description="modulation per orientation and order"
    )
    three_beam: bool = Field(default=False, description="three-beam (3D) SIM")
    axial_k_per_um: float | None = Field(
        default=None, description="axial frequency of order 1 (three-beam), cycles/µm"
    )

    @model_validator(mode="before")
    @classmethod
    def _without_order_zero(cls, data: Any) -> Any:
        """Drop a leading order-0 term ``1.0`` from each ``modulation`` entry (FORMAT.md).

        Writers may give ``[1.0, m]`` (two-beam) or ``[1.0, m1, m2]`` (three-beam); the model
        keeps ``[m]`` / ``[m1, m2]``. An entry is recognised by its length (one more than the
        orders of the pattern) and its first value (1.0).
        """
        if not isinstance(data, Mapping):
            return data
        modulation = data.get("modulation")
        if not isinstance(modulation, (list, tuple)):
            return data
        n_orders = 2 if data.get("three_beam", False) in (True, 1) else 1
        normalised = [
            list(m)[1:] if _has_order_zero(m, n_orders) else m for m in modulation
        ]
        return {**data, "modulation": normalised}

    @model_validator(mode="after")
    def _check(self) -> SimIllumination:
        """Every problem names its field (``k_per_um[1]``) and the fix (:class:`FieldError`)."""
        if self.excitation_wavelength_um > 5.0:
            raise FieldError(
                "excitation_wavelength_um",
                f"= {self.excitation_wavelength_um} looks like nanometres (give it in µm, for "
                "example 0.488)",
            )
        if self.three_beam and self.n_phases < 5:
            raise FieldError(
                "n_phases",
                f"= {self.n_phases} is too few: three-beam (3D) SIM has 5 orders to separate (set "
                "n_phases to at least 5)",
            )
        self._check_per_orientation_lengths()
        if self.k_per_um is not None:
            for d, (ky, kx) in enumerate(self.k_per_um):
                if not (math.isfinite(ky) and math.isfinite(kx)) or math.hypot(ky, kx) == 0:
                    raise FieldError(
                        f"k_per_um[{d}]", f"= [{ky}, {kx}] must be finite and non-zero (cycles/µm)"
                    )
        if self.phase_rad is not None and not all(math.isfinite(p) for p in self.phase_rad):
            raise FieldError("phase_rad", f"= {list(self.phase_rad)} must be finite (rad)")
        if self.modulation is not None:
            for d, m in enumerate(self.modulation):
                self._check_modulation(d, m)
        if self.axial_k_per_um is not None:
            if not self.three_beam:
                raise FieldError(
                    "axial_k_per_um",
                    "applies to three-beam SIM only (set three_beam=True or leave axial_k_per_um "
                    "out)",
                )
            if not math.isfinite(self.axial_k_per_um) or self.axial_k_per_um < 0:
                raise FieldError(
                    "axial_k_per_um",
                    f"= {self.axial_k_per_um} must be finite and >= 0 (cycles/µm)",
                )
        return self

    def _check_per_orientation_lengths(self) -> None:
        nd = self.n_orientations
        what = {
            "k_per_um": "one [k_y, k_x]",
            "phase_rad": "one phase (rad)",
            "modulation": "one list",
        }
        for name, one in what.items():
            value = getattr(self, name)
            if value is not None and len(value) != nd:
                raise FieldError(
                    name,
                    f"has {len(value)} entries (give {one} per orientation: n_orientations = {nd})",
                )

    def _check_modulation(self, d: int, m: tuple[float, ...]) -> None:
        n_orders = 2 if self.three_beam else 1
        if len(m) != n_orders:
            form = "[m1, m2] (orders 1 and 2)" if self.three_beam else "[m]"
            order0 = "[1.0, m1, m2]" if self.three_beam else "[1.0, m]"
            raise FieldError(
                f"modulation[{d}]",
                f"= {list(m)} has {len(m)} value(s): {'three' if self.three_beam else 'two'}-beam "
                f"SIM needs {n_orders} per orientation ({form}, or {order0} with the order-0 term)",
            )
        if not all(math.isfinite(v) and v >= 0 for v in m):
            raise FieldError(f"modulation[{d}]", f"= {list(m)} must be finite and >= 0")
        if self.three_beam:
            low = _three_beam_min_intensity(m[0], m[1])
            if low < -_NEGATIVE_TOLERANCE:
                raise FieldError(
                    f"modulation[{d}]",
                    f"= {list(m)} makes the three-beam pattern negative (minimum {low:.3g}; equal "
                    f"beams give {list(IDEAL_THREE_BEAM_MODULATION)}, scale both values down)",
                )
        elif m[0] > 1.0 + _NEGATIVE_TOLERANCE:
            raise FieldError(
                f"modulation[{d}]",
                f"= {list(m)} makes the two-beam pattern negative (the modulation depth must be "
                "in [0, 1])",
            )

    # ------------------------------------------------------------------ shots
    @property
    def n_shots(self) -> int:
        """Shots per time point (per plane in 3D): ``n_orientations * n_phases``."""
        return self.n_orientations * self.n_phases

    @property
    def is_complete(self) -> bool:
        """Whether ``k_per_um``, ``phase_rad`` and ``modulation`` are all known."""
        return None not in (self.k_per_um, self.phase_rad, self.modulation)

    def orientation_and_phase(self, shot: int) -> tuple[int, int]:
        """``(d, p)`` of shot index ``s = d * n_phases + p``."""
        if isinstance(shot, bool) or not isinstance(shot, (int, np.integer)):
            raise TypeError(f"shot must be an int, got {type(shot).__name__}")
        if not 0 <= shot < self.n_shots:
            raise ValueError(
                f"shot={shot} out of range: this illumination has {self.n_shots} shots "
                f"({self.n_orientations} orientations x {self.n_phases} phases)"
            )
        return int(shot) // self.n_phases, int(shot) % self.n_phases

    def shot_phase_rad(self, shot: int) -> float:
        """Phase of the fundamental order in shot ``s``: ``phase_rad[d] + 2π p / n_phases``, rad."""
        d, p = self.orientation_and_phase(shot)
        return self._require("phase_rad")[d] + 2.0 * math.pi * p / self.n_phases

    def axial_k_for_orientation(self, orientation: int, immersion_index: float | None) -> float:
        """Axial frequency of order 1 for orientation ``d``, cycles/µm (three-beam only).

        ``axial_k_per_um`` if set, else computed from ``|k_per_um[d]|``, the excitation
        wavelength and ``immersion_index`` (:func:`three_beam_axial_k_per_um`).
        """
        if not self.three_beam:
            return 0.0
        if self.axial_k_per_um is not None:
            return float(self.axial_k_per_um)
        if immersion_index is None:
            raise ValueError(
                "axial_k_per_um is None, so the three-beam axial frequency is computed from the "
                "geometry: pass immersion_index (optics.immersion_index) or set axial_k_per_um"
            )
        ky, kx = self._require("k_per_um")[orientation]
        return three_beam_axial_k_per_um(
            math.hypot(ky, kx), self.excitation_wavelength_um, immersion_index
        )

    def _require(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise ValueError(
                f"SimIllumination.{name} is unknown (None); the pattern needs it: estimate it "
                "from the data or give it in the configuration"
            )
        return value

    def replace(self, **changes: Any) -> SimIllumination:
        """A validated copy with some fields changed (for example estimated ``k_per_um``)."""
        return SimIllumination.model_validate({**self.model_dump(), **changes})

    # ------------------------------------------------------------------ store
    def to_store(self) -> dict[str, Any]:
        """The ``illumination`` object of the store attributes (FORMAT.md field names).

        Unknown optional fields are left out. Extra (non-FORMAT.md) fields: ``three_beam``
        (always written) and ``axial_k_per_um`` (when set).
        """
        out: dict[str, Any] = {
            "n_orientations": self.n_orientations,
            "n_phases": self.n_phases,
            "excitation_wavelength_um": self.excitation_wavelength_um,
            "three_beam": self.three_beam,
        }
        if self.k_per_um is not None:
            out["k_per_um"] = [[float(ky), float(kx)] for ky, kx in self.k_per_um]
        if self.phase_rad is not None:
            out["phase_rad"] = [float(p) for p in self.phase_rad]
        if self.modulation is not None:
            out["modulation"] = [[float(v) for v in m] for m in self.modulation]
        if self.axial_k_per_um is not None:
            out["axial_k_per_um"] = float(self.axial_k_per_um)
        return out

    @classmethod
    def from_store(
        cls, illumination: Mapping[str, Any] | SimIllumination, modality: str | None = None
    ) -> SimIllumination:
        """Read a store's SIM ``illumination`` object (a :class:`SimIllumination` is returned as is).

        Fields this model does not know are ignored (FORMAT.md lets writers add optional
        fields). When ``three_beam`` is absent it follows ``modality`` (``"sim3d"`` ->
        three-beam, ``"sim2d"`` -> two-beam); with neither, ``ValueError``.
        """
        if isinstance(illumination, SimIllumination):
            return illumination
        if not isinstance(illumination, Mapping):
            raise TypeError(
                f"illumination must be a mapping (the store's illumination object), got "
                f"{type(illumination).__name__}"
            )
        known = {k: v for k, v in illumination.items() if k in cls.model_fields}
        if "three_beam" not in known:
            if modality == "sim3d":
                known["three_beam"] = True
            elif modality == "sim2d":
                known["three_beam"] = False
            else:
                raise ValueError(
                    f"illumination has no three_beam field and modality={modality!r}; pass "
                    "modality='sim2d' or 'sim3d' (the store's root modality)"
                )
        return cls.model_validate(known)


def three_beam_axial_k_per_um(
    k_magnitude_per_um: float, excitation_wavelength_um: float, immersion_index: float
) -> float:
    """Axial frequency ``kz = n (1 - cosθ) / λ`` of order 1 of a three-beam pattern, cycles/µm.

    ``sinθ = λ |k| / (2 n)`` places the side beams so that they beat at the finest lateral
    frequency ``|k|`` (cycles/µm); ``λ`` is the vacuum excitation wavelength (µm) and ``n``
    the index of the medium the beams cross (the immersion medium). See the module docstring.
    """
    if not (k_magnitude_per_um > 0 and math.isfinite(k_magnitude_per_um)):
        raise ValueError(f"k_magnitude_per_um={k_magnitude_per_um} must be finite and > 0")
    if not excitation_wavelength_um > 0:
        raise ValueError(f"excitation_wavelength_um={excitation_wavelength_um} must be > 0")
    if not immersion_index >= 1.0:
        raise ValueError(f"immersion_index={immersion_index} must be >= 1")
    sin_theta = excitation_wavelength_um * k_magnitude_per_um / (2.0 * immersion_index)
    if sin_theta >= 1.0:
        raise ValueError(
            f"|k|={k_magnitude_per_um} cycles/µm needs side beams at sinθ={sin_theta:.3f} >= 1 in "
            f"a medium of index {immersion_index}; lower k below "
            f"{2 * immersion_index / excitation_wavelength_um:.3f} cycles/µm"
        )
    # 1 - cosθ written stably for small θ
    one_minus_cos = sin_theta**2 / (1.0 + math.sqrt(1.0 - sin_theta**2))
    return immersion_index * one_minus_cos / excitation_wavelength_um


def sim3d_axial_support_per_um(
    optics: Optics, excitation_wavelength_um: float, k_magnitude_per_um: float | None = None
) -> float:
    """Axial extent (cycles/µm, one-sided) of the three-beam 3D SIM OTF support.

    Order 0 has the widefield support, whose largest axial frequency is
    ``n (1 - cos α) / λ_em`` with ``sin α = NA / n`` (the OTF is the autocorrelation of the
    pupil's spherical cap; its axial extent is the cap's depth). Order 1 is that support moved
    axially by ``± kz`` (:func:`three_beam_axial_k_per_um`), order 2 is not moved, so the
    passband reaches ``n (1 - cos α) / λ_em + kz``. ``k_magnitude_per_um`` is the finest
    pattern frequency ``|k|`` (default: ``DEFAULT_FRACTION_OF_CUTOFF`` of ``2 NA / λ_em``).
    Uses ``optics.wavelength_um`` (emission), ``na_detection`` and ``immersion_index``.
    """
    n, na = optics.immersion_index, optics.na_detection
    if not na < n:
        raise ValueError(f"na_detection={na} must be below immersion_index={n}")
    sin_a = na / n
    widefield = n * (sin_a**2 / (1.0 + math.sqrt(1.0 - sin_a**2))) / optics.wavelength_um
    if k_magnitude_per_um is None:
        k_magnitude_per_um = DEFAULT_FRACTION_OF_CUTOFF * 2.0 * na / optics.wavelength_um
    kz = three_beam_axial_k_per_um(k_magnitude_per_um, excitation_wavelength_um, n)
    return widefield + kz


def sim3d_nyquist_z_step_um(
    optics: Optics, excitation_wavelength_um: float, k_magnitude_per_um: float | None = None
) -> float:
    """The largest plane spacing (µm) that samples the 3D SIM axial passband:
    ``1 / (2 sim3d_axial_support_per_um(...))`` (Nyquist). About 0.18 µm for NA 1.4 oil
    (n = 1.515), 520 nm emission, 488 nm excitation and ``|k|`` at 0.85 of the cut-off."""
    return 1.0 / (2.0 * sim3d_axial_support_per_um(optics, excitation_wavelength_um, k_magnitude_per_um))


def check_illumination_for_optics(ill: SimIllumination, optics: Optics) -> None:
    """Check that the pattern can be formed and seen through ``optics``.

    Raises ``ValueError`` when some ``|k_per_um[d]|`` exceeds ``2 NA / λ_ex`` (the beams that
    form it cannot pass the objective). Warns (``UserWarning``) when it reaches the detection
    cutoff ``2 NA / λ_em`` (``optics.wavelength_um``): the pattern is then invisible in the raw
    images (OTF = 0) and its parameters cannot be estimated from them. Unknown ``k_per_um``
    passes.
    """
    if ill.k_per_um is None:
        return
    limit_ex = 2.0 * optics.na_detection / ill.excitation_wavelength_um
    cutoff_em = 2.0 * optics.na_detection / optics.wavelength_um
    for d, (ky, kx) in enumerate(ill.k_per_um):
        k = math.hypot(ky, kx)
        if k > limit_ex * (1.0 + 1e-9):
            raise ValueError(
                f"k_per_um[{d}] has |k|={k:.4g} cycles/µm, beyond 2 NA/λ_ex={limit_ex:.4g}: the "
                "beams forming it cannot pass the objective; lower k_per_um (or check "
                "excitation_wavelength_um and na_detection)"
            )
        if k >= cutoff_em:
            warnings.warn(
                f"k_per_um[{d}] has |k|={k:.4g} cycles/µm, at or beyond the detection cutoff "
                f"2 NA/λ_em={cutoff_em:.4g}: the pattern is invisible in the raw images and its "
                "parameters cannot be estimated from them",
                UserWarning,
                stacklevel=2,
            )


def default_sim_illumination(
    optics: Optics,
    excitation_wavelength_um: float,
    three_beam: bool = False,
    fraction_of_cutoff: float = DEFAULT_FRACTION_OF_CUTOFF,
    angle0_rad: float = 0.1,
    n_phases: int | None = None,
    modulation: float | tuple[float, float] = 0.8,
    n_orientations: int = 3,
    phase_rad: list[float] | None = None,
) -> SimIllumination:
    """A standard SIM illumination for ``optics``.

    Orientation ``d`` points at the angle ``a_d = angle0_rad + d π / n_orientations`` from the
    x axis towards y (60° apart for 3 orientations): ``k_d = |k| [sin a_d, cos a_d]`` as
    ``[k_y, k_x]``, with ``|k| = fraction_of_cutoff * 2 NA / λ_em`` (detection cutoff,
    ``optics.wavelength_um``), cycles/µm.

    Parameters
    ----------
    three_beam
        Three-beam (3D) SIM: order 2 at ``k_d``, order 1 at ``k_d / 2`` with the axial
        frequency of the beam geometry in the immersion medium
        (:func:`three_beam_axial_k_per_um`).
    n_phases
        Default 3 (two-beam) or 5 (three-beam).
    modulation
        Two-beam: the depth ``m`` in [0, 1]. Three-beam: a float ``c`` in [0, 1] is the fringe
        contrast, giving ``(m1, m2) = c * (4/3, 2/3)`` (equal beams, see the module docstring);
        a pair is taken as ``(m1, m2)`` directly.
    phase_rad
        Phase of shot ``p = 0`` per orientation, rad; default all 0.

    Raises ``ValueError`` when the pattern cannot pass the objective (``|k| > 2 NA / λ_ex``) and
    warns when ``fraction_of_cutoff >= 1`` (pattern beyond the detection OTF).
    """
    if not (math.isfinite(fraction_of_cutoff) and fraction_of_cutoff > 0):
        raise ValueError(f"fraction_of_cutoff={fraction_of_cutoff} must be > 0 (typically 0.7-0.9)")
    if not math.isfinite(angle0_rad):
        raise ValueError(f"angle0_rad={angle0_rad} must be finite (rad)")
    if n_phases is None:
        n_phases = 5 if three_beam else 3
    k = fraction_of_cutoff * 2.0 * optics.na_detection / optics.wavelength_um
    angles = [angle0_rad + d * math.pi / n_orientations for d in range(max(n_orientations, 0))]
    k_per_um = [[k * math.sin(a), k * math.cos(a)] for a in angles]
    if three_beam:
        if isinstance(modulation, (int, float)):
            m1, m2 = (float(modulation) * v for v in IDEAL_THREE_BEAM_MODULATION)
        else:
            if len(modulation) != 2:
                raise ValueError(
                    f"modulation={modulation!r}: three-beam takes a contrast c or a pair (m1, m2)"
                )
            m1, m2 = (float(v) for v in modulation)
        mods = [[m1, m2] for _ in angles]
    else:
        if not isinstance(modulation, (int, float)):
            raise ValueError(f"modulation={modulation!r}: two-beam SIM takes one depth m in [0, 1]")
        mods = [[float(modulation)] for _ in angles]
    fields: dict[str, Any] = {
        "n_orientations": n_orientations,
        "n_phases": n_phases,
        "excitation_wavelength_um": excitation_wavelength_um,
        "k_per_um": k_per_um,
        "phase_rad": [0.0] * len(angles) if phase_rad is None else list(phase_rad),
        "modulation": mods,
        "three_beam": three_beam,
    }
    ill = SimIllumination.model_validate(fields)
    check_illumination_for_optics(ill, optics)
    if three_beam:
        kz = three_beam_axial_k_per_um(k, excitation_wavelength_um, optics.immersion_index)
        ill = ill.replace(axial_k_per_um=kz)
    return ill


@dataclass(frozen=True)
class PatternOrder:
    """One term ``amplitude * cos(2π k·r + phase_rad) * cos(2π axial_k z)`` of a pattern.

    ``k_per_um`` is ``(k_y, k_x)`` in cycles/µm, ``axial_k_per_um`` cycles/µm (0: no axial
    modulation), ``z`` measured from the focal plane. ``order`` is the lateral harmonic index
    (0: the constant term; two-beam 1; three-beam 1 at ``k/2`` and 2 at ``k``).
    """

    order: int
    k_per_um: tuple[float, float]
    amplitude: float
    phase_rad: float
    axial_k_per_um: float


def pattern_orders(
    ill: SimIllumination, shot: int, immersion_index: float | None = None
) -> list[PatternOrder]:
    """The terms whose sum is the illumination of ``shot`` (order 0 first; see module docstring).

    ``immersion_index`` is needed only for three-beam SIM with ``axial_k_per_um=None``.
    """
    d, _ = ill.orientation_and_phase(shot)
    ky, kx = ill._require("k_per_um")[d]
    mod = ill._require("modulation")[d]
    psi = ill.shot_phase_rad(shot)
    orders = [PatternOrder(0, (0.0, 0.0), 1.0, 0.0, 0.0)]
    if ill.three_beam:
        kz = ill.axial_k_for_orientation(d, immersion_index)
        orders.append(PatternOrder(1, (ky / 2.0, kx / 2.0), float(mod[0]), psi, kz))
        orders.append(PatternOrder(2, (float(ky), float(kx)), float(mod[1]), 2.0 * psi, 0.0))
    else:
        orders.append(PatternOrder(1, (float(ky), float(kx)), float(mod[0]), psi, 0.0))
    return orders


def illumination_pattern(
    ill: SimIllumination,
    shot: int,
    y_um: np.ndarray | float,
    x_um: np.ndarray | float,
    z_um: np.ndarray | float | None = None,
    immersion_index: float | None = None,
) -> np.ndarray:
    """Intensity (mean 1, non-negative) of shot ``s`` at sample coordinates, float64.

    Parameters
    ----------
    y_um, x_um
        Lateral coordinates, µm (broadcast together, e.g. ``(Y, 1)`` and ``(1, X)``).
    z_um
        Axial coordinate relative to the focal plane, µm, broadcast with ``y_um, x_um``
        (e.g. ``(Z, 1, 1)``); ``None`` is the focal plane. Only three-beam patterns depend on it.
    immersion_index
        Needed only for three-beam SIM with ``axial_k_per_um=None``.

    Returns the broadcast shape of the coordinates.
    """
    y = np.asarray(y_um, dtype=np.float64)
    x = np.asarray(x_um, dtype=np.float64)
    z = None if z_um is None else np.asarray(z_um, dtype=np.float64)
    shape = np.broadcast_shapes(y.shape, x.shape, () if z is None else z.shape)
    out = np.zeros(shape, dtype=np.float64)
    for term in pattern_orders(ill, shot, immersion_index):
        if term.order == 0:
            out += term.amplitude
            continue
        ky, kx = term.k_per_um
        lateral = np.cos(2.0 * np.pi * (ky * y + kx * x) + term.phase_rad)
        if term.axial_k_per_um != 0.0 and z is not None:
            lateral = lateral * np.cos(2.0 * np.pi * term.axial_k_per_um * z)
        out += term.amplitude * lateral
    # the validated modulations keep the pattern >= 0; remove round-off below zero only
    np.maximum(out, 0.0, out=out)
    return out
