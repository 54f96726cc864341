"""The acquisition store (Zarr v3, FORMAT.md version 1): layout, streaming writer, reader and
reconstruction output group.

Typical use::

    from nstm_acquire.store import StoreWriter, StoreReader, ReconWriter, ReconReader

    with StoreWriter.create("RUN.zarr", attrs, 4, 1, (512, 512)) as out:   # S, Z, (Y, X)
        out.write_frame(w, s, z, image, timestamp_s, exposure_s)   # acquisition thread

    reader = StoreReader("RUN.zarr")                                # any thread or process
    for w in reader.complete_windows():
        data = reader.window(w)                                     # raw (S, Z, Y, X) float32
"""

from nstm_acquire.store.layout import (
    BACKGROUND,
    EXPOSURE,
    FORMAT_VERSION,
    MODALITIES,
    RAW,
    RAW_DIMENSIONS,
    RECON_CONVENTIONAL,
    RECON_GROUP,
    RECON_MOTION,
    RECON_SCENE,
    RECON_TIMES,
    RECON_WINDOW,
    ROOT_ATTRIBUTE_KEY,
    TIMESTAMPS,
    CameraModel,
    Illumination,
    StoreAttributes,
    StoreError,
    acquired_frames,
    illumination_model_for,
    n_shots,
    ome_image_metadata,
    to_json,
    validate_attributes,
    window_is_complete,
    window_is_partial,
)
from nstm_acquire.store.reader import StoreReader, WindowData, open_zarr_group
from nstm_acquire.store.recon import ReconReader, ReconWriter
from nstm_acquire.store.writer import StoreWriter

__all__ = [
    "BACKGROUND",
    "EXPOSURE",
    "FORMAT_VERSION",
    "MODALITIES",
    "RAW",
    "RAW_DIMENSIONS",
    "RECON_CONVENTIONAL",
    "RECON_GROUP",
    "RECON_MOTION",
    "RECON_SCENE",
    "RECON_TIMES",
    "RECON_WINDOW",
    "ROOT_ATTRIBUTE_KEY",
    "TIMESTAMPS",
    "CameraModel",
    "Illumination",
    "ReconReader",
    "ReconWriter",
    "StoreAttributes",
    "StoreError",
    "StoreReader",
    "StoreWriter",
    "WindowData",
    "acquired_frames",
    "illumination_model_for",
    "n_shots",
    "ome_image_metadata",
    "open_zarr_group",
    "to_json",
    "validate_attributes",
    "window_is_complete",
    "window_is_partial",
]
