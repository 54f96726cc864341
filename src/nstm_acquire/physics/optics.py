"""Optical parameters and the frequency-space grids every forward model shares.

Conventions (see ``docs/format.md``):

* lengths are micrometres (µm), spatial frequencies cycles/µm;
* the centre of pixel ``(i, j)`` sits at ``(y, x) = (i, j) * pixel_size_um``;
* frequency grids are in FFT order (``numpy.fft.fftfreq``), axes ``(..., y, x)``.

These are plain numpy functions of static configuration: they are evaluated once per
acquisition and handed to the JAX forward models as constant arrays.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Optics", "frequency_grid", "pupil", "pixel_coordinates"]


class Optics(BaseModel):
    """Imaging optics referred to the sample plane.

    Attributes
    ----------
    wavelength_um
        Detection wavelength in µm (DPC: the illumination wavelength).
    na_detection
        Numerical aperture of the objective.
    pixel_size_um
        Camera pixel size referred to the sample, µm.
    immersion_index
        Refractive index of the immersion medium (1.0 for air).
    z_step_um
        Axial plane spacing for 3D acquisitions, µm (``None`` for 2D).
    psf_file
        SIM only, optional: a measured point-spread function (a bead image, ``.npy`` or
        ``.tif``, ``(Y, X)`` or ``(Z, Y, X)``, peak near the array centre) used instead of the
        theoretical OTF. A relative path is taken from the folder that holds the store.
    psf_pixel_size_um, psf_z_step_um
        Its sampling, µm (default ``pixel_size_um`` and ``z_step_um``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    wavelength_um: float = Field(gt=0, description="detection wavelength, µm")
    na_detection: float = Field(gt=0, description="objective numerical aperture")
    pixel_size_um: float = Field(gt=0, description="camera pixel size at the sample, µm")
    immersion_index: float = Field(default=1.0, ge=1.0, description="immersion refractive index")
    z_step_um: float | None = Field(default=None, gt=0, description="axial step, µm (3D only)")
    psf_file: str | None = Field(default=None, description="measured PSF (.npy/.tif), SIM only")
    psf_pixel_size_um: float | None = Field(default=None, gt=0, description="measured PSF pixel, µm")
    psf_z_step_um: float | None = Field(default=None, gt=0, description="measured PSF plane spacing, µm")

    @model_validator(mode="after")
    def _na_below_index(self) -> Optics:
        if self.na_detection >= self.immersion_index:
            raise ValueError(
                f"na_detection={self.na_detection} must be below immersion_index="
                f"{self.immersion_index}; set immersion_index to the objective's medium "
                "(1.0 air, 1.33 water, 1.515 oil)"
            )
        if self.wavelength_um > 5.0:
            raise ValueError(
                f"wavelength_um={self.wavelength_um} looks like nanometres; give it in µm "
                "(for example 0.52)"
            )
        return self

    @property
    def cutoff_per_um(self) -> float:
        """Coherent cutoff frequency NA/λ in cycles/µm (incoherent cutoff is twice this)."""
        return self.na_detection / self.wavelength_um

    @property
    def nyquist_pixel_um(self) -> float:
        """Largest pixel that samples the incoherent passband without aliasing, µm."""
        return self.wavelength_um / (4.0 * self.na_detection)

    def to_store(self) -> dict[str, float | str]:
        """The ``optics`` object of the store attributes (FORMAT.md field names)."""
        return self.model_dump(exclude_none=True)


def frequency_grid(shape: tuple[int, int], pixel_size_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Spatial-frequency coordinates of a 2D FFT.

    Parameters
    ----------
    shape
        ``(ny, nx)`` of the real-space image.
    pixel_size_um
        Sampling of the real-space image, µm.

    Returns
    -------
    uy, ux
        Arrays of shape ``(ny, nx)``, cycles/µm, in FFT order.
    """
    ny, nx = shape
    uy = np.fft.fftfreq(ny, d=pixel_size_um)
    ux = np.fft.fftfreq(nx, d=pixel_size_um)
    return np.meshgrid(uy, ux, indexing="ij")


def pupil(
    shape: tuple[int, int],
    optics: Optics,
    shift_per_um: tuple[float, float] = (0.0, 0.0),
    pixel_size_um: float | None = None,
) -> np.ndarray:
    """Binary circular pupil ``P(u + shift)``, 1 inside ``|u + shift| < NA/λ``.

    ``shift_per_um`` (cycles/µm, ``(u_y, u_x)``) evaluates the pupil displaced by an
    arbitrary, off-grid amount, which is how a tilted plane-wave illumination enters
    the coherent image (see :mod:`nstm_acquire.physics.dpc.forward`).

    Returns a float64 array ``(ny, nx)`` in FFT order.
    """
    px = optics.pixel_size_um if pixel_size_um is None else pixel_size_um
    uy, ux = frequency_grid(shape, px)
    r2 = (uy + shift_per_um[0]) ** 2 + (ux + shift_per_um[1]) ** 2
    return (r2 < optics.cutoff_per_um**2).astype(np.float64)


def pixel_coordinates(shape: tuple[int, int], pixel_size_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample-plane coordinates ``(y, x)`` in µm of every pixel centre, each ``(ny, nx)``."""
    ny, nx = shape
    y = np.arange(ny) * pixel_size_um
    x = np.arange(nx) * pixel_size_um
    return np.meshgrid(y, x, indexing="ij")
