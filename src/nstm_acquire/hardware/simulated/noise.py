"""Camera noise model of the simulated camera (sCMOS-like: shot noise, read noise, ADC).

Expected photons per pixel ``N`` (photons reaching the pixel during the exposure) become::

    electrons  e ~ Poisson(QE * N) + Normal(0, read_noise_e²)
    counts     adu = clip(round(e / gain_e_per_adu + offset_adu), 0, 2**bit_depth - 1)

``gain_e_per_adu`` is photo-electrons per count (the FORMAT.md ``camera.gain_e_per_adu``).
Before clipping the counts have mean ``QE N / g + offset`` and variance
``(QE N + σ_read²) / g²`` (+ 1/12 from rounding when the spread is much wider than one count).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CameraNoise"]


class CameraNoise(BaseModel):
    """Photon shot noise, Gaussian read noise, gain, offset and ADC quantisation/clipping.

    Attributes
    ----------
    gain_e_per_adu
        Photo-electrons per count (> 0).
    read_noise_e
        RMS read noise, electrons (>= 0).
    offset_adu
        Dark offset added to every pixel, counts (>= 0).
    bit_depth
        ADC bits, 8-16; counts are clipped to ``[0, 2**bit_depth - 1]``.
    quantum_efficiency
        Fraction of photons detected, in (0, 1].
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    gain_e_per_adu: float = Field(default=0.5, gt=0, description="photo-electrons per count (> 0)")
    read_noise_e: float = Field(default=1.5, ge=0, description="RMS read noise, e- (>= 0)")
    offset_adu: float = Field(default=100.0, ge=0, description="dark offset, counts (>= 0)")
    bit_depth: int = Field(default=16, ge=8, le=16, description="ADC bit depth, 8..16")
    quantum_efficiency: float = Field(default=1.0, gt=0, le=1, description="QE in (0, 1]")

    @property
    def full_scale_adu(self) -> int:
        """Largest count the ADC returns, ``2**bit_depth - 1``."""
        return (1 << self.bit_depth) - 1

    def _check(self, expected_photons: np.ndarray) -> np.ndarray:
        photons = np.asarray(expected_photons, dtype=np.float64)
        if not np.all(np.isfinite(photons)) or np.any(photons < 0):
            finite = np.isfinite(photons)
            raise ValueError(
                "expected_photons must be finite and >= 0 (mean photons per pixel); got "
                f"{int(np.count_nonzero(finite & (photons < 0)))} negative and "
                f"{int(np.count_nonzero(~finite))} non-finite values"
            )
        return photons

    def apply(self, expected_photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One noisy frame: counts (uint16) of the same shape as ``expected_photons``.

        ``expected_photons``: mean photons per pixel over the exposure (>= 0), any shape.
        """
        photons = self._check(expected_photons)
        electrons = rng.poisson(self.quantum_efficiency * photons).astype(np.float64)
        if self.read_noise_e > 0:
            electrons += rng.normal(0.0, self.read_noise_e, size=photons.shape)
        counts = np.rint(electrons / self.gain_e_per_adu + self.offset_adu)
        np.clip(counts, 0, self.full_scale_adu, out=counts)
        return counts.astype(np.uint16)

    def expected_adu(self, expected_photons: np.ndarray) -> np.ndarray:
        """Mean counts ``QE N / g + offset`` (before clipping), float64, same shape."""
        photons = self._check(expected_photons)
        return self.quantum_efficiency * photons / self.gain_e_per_adu + self.offset_adu

    def variance_adu(
        self, expected_photons: np.ndarray, include_rounding: bool = True
    ) -> np.ndarray:
        """Variance of the counts ``(QE N + σ_read²) / g²`` (+ 1/12 for rounding), ADU².

        The 1/12 rounding term holds when the pre-rounding spread is much wider than one
        count (the usual case); clipping is ignored. float64, same shape.
        """
        photons = self._check(expected_photons)
        var = (self.quantum_efficiency * photons + self.read_noise_e**2) / self.gain_e_per_adu**2
        return var + (1.0 / 12.0 if include_rounding else 0.0)

    def to_store(self) -> dict[str, float]:
        """The FORMAT.md ``camera`` attributes: offset, gain and read noise."""
        return {
            "offset_adu": float(self.offset_adu),
            "gain_e_per_adu": float(self.gain_e_per_adu),
            "read_noise_e": float(self.read_noise_e),
        }
