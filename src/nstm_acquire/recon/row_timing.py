"""Row-exact timing: fit rolling-shutter frames with every block of rows at its own time.

A sCMOS in rolling-shutter mode opens row after row (:class:`RowTiming`): the last row of a
frame is exposed ``(n_slots - 1) * row_time_s`` after the first, 10-30 ms on a typical camera,
as long as a DPC exposure. Frame-level timing renders the whole frame at one time; here the
rows are split into ``n_blocks`` blocks of consecutive readout slots and each block is
predicted from the scene at its own time (``docs/model.md``, "Row-exact timing").

In the NSTM fit this is a data layout, so the two-member forward-model protocol stays as it
is: the window's ``S`` shots become ``S x B`` measurement rows, row ``(s, b)`` (shot-major)
holding shot ``s``'s frame, rendered at block ``b``'s times through the shot's own
transfer function (``shots`` = ``s``), with block ``b``'s sensor rows as its loss weights.
Summed over the blocks of a shot, the weighted loss is the loss of the row-exact frame
(:func:`~nstm_acquire.physics.dpc.forward.dpc_render_row_blocks`). Costs: B scene
evaluations per shot instead of one, and B copies of each frame in memory (B small, 4 by
default). The data loss is the frame-level one times B (the weights' mean is 1/B), so
``fit.reg_scene`` weighs 1/B as much; every loss ratio (held-out stopping, the chain's
failure checks) is unchanged.

3D SIM renders frames from time-binned volumes (``Sim3DFramesForward``): there the pieces are
``(shot, plane, block)``, each at its block's time, binned by time like frames
(:func:`piece_time_bins`; by default two consecutive blocks of a frame share a volume,
:func:`auto_piece_bin_s`); a frame's blocks in one bin are one measurement with their rows
as weights, so every sensor row is in the loss exactly once (no factor ``B`` there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.fit import FitData
from nstm_acquire.physics.dpc.forward import row_block_masks
from nstm_acquire.physics.rolling_shutter.timing import RowTiming
from nstm_acquire.physics.sim.forward import frame_time_bins

__all__ = [
    "DEFAULT_ROW_BLOCKS",
    "RowBlockTiming",
    "auto_piece_bin_s",
    "frame_centres_s",
    "piece_midpoints_s",
    "piece_time_bins",
    "row_block_data",
    "row_block_times",
    "row_blocks",
]

DEFAULT_ROW_BLOCKS = 4
"""Blocks of rows per frame (each one scene evaluation per exposure sub-sample)."""

EXPOSURE_RTOL = 0.01
"""How far (relative) the row timing's exposure may be from a frame's recorded exposure."""


def row_blocks(timing: RowTiming, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a frame's rows into ``n_blocks`` blocks of consecutive readout slots.

    Returns ``block_of_row`` ``(Y,)`` int (block of every sensor row; equal numbers of slots
    per block, to within one) and ``offsets_s`` ``(B,)``: the mean shutter-opening offset of
    each block's rows from the frame start, seconds. ``centre_out`` blocks hold the rows of
    both halves read together.
    """
    if int(n_blocks) != n_blocks or not 1 <= n_blocks <= timing.n_slots:
        raise ValueError(f"n_blocks={n_blocks}; give an integer from 1 to the frame's readout slots ({timing.n_slots})")
    slots = timing.slots()
    block_of_row = (slots * int(n_blocks)) // timing.n_slots
    opened = timing.open_offsets_s()
    offsets = np.array([opened[block_of_row == b].mean() for b in range(int(n_blocks))])
    return block_of_row.astype(np.int64), offsets


def row_block_times(timestamps_s: np.ndarray, exposure_s: np.ndarray, offsets_s: np.ndarray, n_sub: int) -> np.ndarray:
    """``(S * B, n_sub)`` times (s) of row ``(s, b)`` (shot-major): the midpoints of ``n_sub``
    equal parts of block ``b``'s mean open interval ``[t_s + offset_b, t_s + offset_b + e_s]``.

    ``timestamps_s`` ``(S,)`` frame starts (first row opening), ``exposure_s`` ``(S,)`` each
    row's open time, ``offsets_s`` ``(B,)`` from :func:`row_blocks`.
    """
    t = np.asarray(timestamps_s, np.float64).reshape(-1)
    e = np.asarray(exposure_s, np.float64).reshape(-1)
    off = np.asarray(offsets_s, np.float64).reshape(-1)
    frac = (np.arange(int(n_sub)) + 0.5) / int(n_sub)
    times = t[:, None, None] + off[None, :, None] + frac[None, None, :] * e[:, None, None]
    return times.reshape(len(t) * len(off), int(n_sub))


def frame_centres_s(timestamps_s: np.ndarray, exposure_s: np.ndarray, timing: RowTiming) -> np.ndarray:
    """``(S,)`` the middle of each frame's exposure, s: halfway between the first row opening
    and the last row closing (``t + ((n_slots - 1) row_time + exposure) / 2``)."""
    t = np.asarray(timestamps_s, np.float64).reshape(-1)
    e = np.asarray(exposure_s, np.float64).reshape(-1)
    return t + 0.5 * ((timing.n_slots - 1) * timing.row_time_s + e)


def piece_midpoints_s(timestamps_s: np.ndarray, exposure_s: np.ndarray, offsets_s: np.ndarray) -> np.ndarray:
    """``(S, Z, B)`` exposure midpoints (s) of block ``b`` of frame ``(s, z)``:
    ``t[s, z] + offsets_s[b] + exposure_s[s, z] / 2``.

    ``timestamps_s`` and ``exposure_s`` ``(S, Z)`` frame starts (first row opening) and each
    row's open time, ``offsets_s`` ``(B,)`` from :func:`row_blocks`.
    """
    t = np.asarray(timestamps_s, np.float64)
    e = np.asarray(exposure_s, np.float64)
    if t.ndim != 2 or e.shape != t.shape:
        raise ValueError(f"timestamps_s {t.shape} and exposure_s {e.shape} must both be (S, Z) arrays")
    off = np.asarray(offsets_s, np.float64).reshape(-1)
    return t[:, :, None] + off[None, None, :] + 0.5 * e[:, :, None]


def auto_piece_bin_s(offsets_s: np.ndarray) -> float | None:
    """The default time-bin spread of row blocks, s: 1.5 block spacings (the mean step of
    ``offsets_s`` ``(B,)``), so two consecutive blocks of a frame share a volume, as two
    consecutive frames do at frame level. None for one block (no spacing: use the frame-level
    default)."""
    off = np.asarray(offsets_s, np.float64).reshape(-1)
    if len(off) < 2:
        return None
    return 1.5 * float(np.mean(np.diff(np.sort(off))))


def piece_time_bins(piece_mid_s: np.ndarray, max_spread_s: float) -> list[list[tuple[tuple[int, int], list[int]]]]:
    """Row blocks ``(shot, plane, block)`` grouped into time bins, in time order.

    ``piece_mid_s`` ``(S, Z, B)`` (:func:`piece_midpoints_s`). Pieces are taken in time order
    and a new bin starts when a piece is more than ``max_spread_s`` after the bin's first
    piece (``frame_time_bins`` on the pieces; 0: every block its own bin). Each bin lists its
    frames ``(shot, plane)`` in order of first appearance, each with the blocks it holds there.
    """
    t = np.asarray(piece_mid_s, np.float64)
    if t.ndim != 3:
        raise ValueError(f"piece_mid_s has shape {t.shape}; give (S, Z, B) block midpoints in s")
    s_n, z_n, b_n = t.shape
    bins = frame_time_bins(t.reshape(s_n * z_n, b_n), max_spread_s)
    out: list[list[tuple[tuple[int, int], list[int]]]] = []
    for pieces in bins:
        members: dict[tuple[int, int], list[int]] = {}
        for frame, block in pieces:
            members.setdefault(divmod(frame, z_n), []).append(block)
        out.append(list(members.items()))
    return out


def row_block_data(
    measurements: np.ndarray,
    timestamps_s: np.ndarray,
    exposure_s: np.ndarray,
    timing: RowTiming,
    n_blocks: int = DEFAULT_ROW_BLOCKS,
    n_sub: int = 1,
) -> FitData:
    """The fit data of ``S`` rolling-shutter frames, one row per (shot, block) (module docstring).

    ``measurements`` ``(S, Y, X)`` (in the forward model's units), ``timestamps_s`` and
    ``exposure_s`` ``(S,)`` s, ``timing`` the sensor's row timing (``Y`` rows),
    ``n_sub`` exposure sub-samples per block. Returns ``FitData`` with ``(S B, Y, X)``
    measurements, ``(S B, n_sub)`` times, shots ``s`` and ``(S B, Y)`` row weights.
    """
    y = np.asarray(measurements, np.float32)
    if y.ndim != 3 or y.shape[1] != timing.n_rows:
        raise ValueError(
            f"measurements have shape {y.shape}; give (S, Y, X) frames with Y = the row timing's "
            f"n_rows ({timing.n_rows})"
        )
    block_of_row, offsets = row_blocks(timing, n_blocks)
    masks = row_block_masks(block_of_row, n_blocks)  # (B, Y)
    s, b = y.shape[0], len(offsets)
    return FitData(
        np.repeat(y, b, axis=0),
        row_block_times(timestamps_s, exposure_s, offsets, n_sub),
        np.repeat(np.arange(s), b),
        np.tile(masks, (s, 1)),
    )


@dataclasses.dataclass(frozen=True)
class RowBlockTiming:
    """Where a reconstruction gets its row timing, and how many blocks of rows it renders.

    ``source``: a :class:`RowTiming`, or a function of the exposure (s) that returns one
    (:meth:`StoreReader.row_timing <nstm_acquire.store.StoreReader.row_timing>`).
    ``n_blocks``: blocks of rows per frame (:data:`DEFAULT_ROW_BLOCKS`).
    """

    source: RowTiming | Callable[[float], RowTiming | None]
    n_blocks: int = DEFAULT_ROW_BLOCKS

    def __post_init__(self) -> None:
        if int(self.n_blocks) != self.n_blocks or self.n_blocks < 1:
            raise ValueError(f"n_blocks={self.n_blocks}; give a positive integer (blocks of rows per frame)")

    @classmethod
    def for_store(cls, reader: Any, n_blocks: int = DEFAULT_ROW_BLOCKS) -> RowBlockTiming | None:
        """The row timing of a store whose ``camera.rolling_shutter`` is set; None for a global
        shutter (frame-level timing)."""
        if reader.attrs.camera.rolling_shutter is None:
            return None
        return cls(reader.row_timing, n_blocks)

    def timing(self, exposure_s: np.ndarray) -> RowTiming:
        """The row timing of frames exposed ``exposure_s`` ``(S,)`` seconds, checked against them."""
        e = np.asarray(exposure_s, np.float64).reshape(-1)
        timing = self.source if isinstance(self.source, RowTiming) else self.source(float(np.mean(e)))
        if timing is None:
            raise ValueError("the row-timing source gives no row timing (a global shutter); pass row_timing=None")
        if np.any(np.abs(e - timing.exposure_s) > EXPOSURE_RTOL * timing.exposure_s):
            raise ValueError(
                f"row_timing.exposure_s={timing.exposure_s:g} s differs from the frames' exposure_s "
                f"{e.min():g}-{e.max():g} s; build the RowTiming with the frames' exposure"
            )
        return timing

    def frame_data(
        self, measurements: np.ndarray, timestamps_s: np.ndarray, exposure_s: np.ndarray, config: NSTMConfig
    ) -> tuple[FitData, np.ndarray, dict[str, Any]]:
        """The row-block fit data of ``S`` frames ``(S, Y, X)`` (:func:`row_block_data`, with
        ``config.fit.exposure_subsamples``; DPC, or any forward model whose measurement rows are
        the sensor's rows), the render times (frame middles, :func:`frame_centres_s`) and what
        to record in the reconstruction's info."""
        timing = self.timing(exposure_s)
        n_sub = config.fit.exposure_subsamples
        data = row_block_data(measurements, timestamps_s, exposure_s, timing, self.n_blocks, n_sub)
        info = {
            "row_timing": {
                "row_time_s": timing.row_time_s,
                "direction": timing.direction,
                "n_blocks": int(self.n_blocks),
                "frame_span_s": timing.frame_span_s,
            }
        }
        return data, frame_centres_s(timestamps_s, exposure_s, timing), info
