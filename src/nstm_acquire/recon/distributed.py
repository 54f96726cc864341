"""Spread the reconstruction of a store's windows over a Dask distributed cluster.

Windows are split into contiguous chunks; each chunk is one task that reconstructs its windows
in order, warm-starting each from the previous one (a warm-start chain), and returns the
arrays. The client writes every returned window into ``recon/<name>`` as it arrives, so only
one process ever writes the output group. Workers read the store themselves: it must be on a
file system they can reach (the same path on every machine).

``scheduler``: a scheduler address (``tcp://host:8786``), ``"local"`` (a
``distributed.LocalCluster`` on this machine, one single-threaded worker process per chunk
up to the CPU count) or ``None`` (no Dask: run in this process).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstm_acquire.nstm.config import NSTMConfig

if TYPE_CHECKING:
    from nstm_acquire.physics.sim.estimation import SimParameterPolicy

__all__ = ["chunk_windows", "reconstruct_chunk", "reconstruct_distributed"]


def chunk_windows(windows: Sequence[int], n_chunks: int) -> list[list[int]]:
    """Split ``windows`` (in order) into at most ``n_chunks`` contiguous, near-equal chunks."""
    windows = list(windows)
    if not windows:
        return []
    n = max(1, min(int(n_chunks), len(windows)))
    size = math.ceil(len(windows) / n)
    return [windows[i : i + size] for i in range(0, len(windows), size)]


def reconstruct_chunk(
    store: str, config_json: str, windows: list[int], warm_start: bool = True, sim_parameters: SimParameterPolicy = "configured"
) -> list[dict]:
    """Reconstruct ``windows`` of ``store`` in order (a warm-start chain); return plain arrays.

    Runs on a Dask worker (or in-process). Nothing is written. A window that fails
    (:class:`~nstm_acquire.recon.chain.WindowFailure`) is returned as ``{"window", "scene":
    None, "info": {"status": "failed", "failure": reason}}`` and the chain goes on.
    """
    from jax.flatten_util import ravel_pytree

    from nstm_acquire.recon.arrays import model_description
    from nstm_acquire.recon.chain import StoreReconstructor, WindowFailure

    rec = StoreReconstructor(
        store, NSTMConfig.model_validate_json(config_json), warm_start=warm_start, write=False, sim_parameters=sim_parameters
    )
    out: list[dict[str, Any]] = []
    for w in windows:
        try:
            r = rec.reconstruct(w)
        except WindowFailure as err:  # bad data or an error in this window: the chain goes on
            out.append({"window": w, "scene": None, "info": {"status": "failed", "failure": err.reason,
                        "worker_pid": os.getpid(), "chunk": list(windows)}})  # fmt: skip
            continue
        out.append(
            {
                "window": w,
                "scene": r.scene,
                "motion": r.motion,
                "times_s": r.times_s,
                "conventional": r.conventional,
                "info": {**r.info, "worker_pid": os.getpid(), "chunk": list(windows)},
                "channel_names": r.channel_names,
                "pixel_size_um": r.pixel_size_um,
                "z_step_um": r.z_step_um,
                "network": None if r.info.get("status") == "failed" else ravel_pytree(r.fit.params)[0],
                "model": None if r.info.get("status") == "failed" else model_description(r.fit.model),
            }
        )
    return out


def reconstruct_distributed(
    store: str | Path,
    config: NSTMConfig | None = None,
    windows: Sequence[int] | None = None,
    scheduler: str | None = "local",
    n_chunks: int | None = None,
    out: str | Path | None = None,
    name: str = "nstm",
    overwrite: bool = False,
    warm_start: bool = True,
    on_window: Callable[[dict], None] | None = None,
    sim_parameters: SimParameterPolicy = "configured",
    resume: bool = False,
    connect_timeout_s: float = 10.0,
) -> list[int]:
    """Reconstruct ``windows`` (default: all complete) of ``store`` on a Dask cluster.

    Returns the windows written, in the order they were written. ``n_chunks`` defaults to the
    number of workers (one warm-start chain per worker). ``resume`` continues an existing
    ``recon/<name>`` made with the same settings (``windows`` None: only the windows not final
    there yet). A window that fails on a worker is recorded as failed (with its reason) and the
    others go on. An unreachable ``scheduler`` raises ``OSError`` after ``connect_timeout_s``.
    """
    from nstm_acquire.recon.chain import modality_default_config, open_recon_writer, recon_config, warm_starts
    from nstm_acquire.store import StoreReader

    store = str(store)
    reader = StoreReader(store)
    config = config or modality_default_config(reader.modality)  # as the chain and the worker choose
    todo = reader.require_complete(windows)
    out_path = Path(out) if out is not None else Path(store)
    group_config = recon_config(config, store, reader.modality, warm_starts(reader.modality, warm_start), distributed=True)
    resume = resume and not overwrite
    if resume:
        from nstm_acquire.recon.chain import resume_conflict
        from nstm_acquire.store import ReconReader, StoreError

        conflict = resume_conflict(out_path, name, group_config)
        if conflict:
            raise StoreError(str(out_path), f"group recon/{name}",
                             f"{conflict}: pass --overwrite to replace it, or --name to keep both")  # fmt: skip
        if windows is None:
            try:
                done = set(ReconReader(out_path, name).windows_done())
            except StoreError:
                done = set()
            todo = [w for w in todo if w not in done]
    pending_failed: list[dict] = []
    config_json = config.model_dump_json()
    written: list[int] = []
    writer: Any = None
    model_set: list[bool] = []

    def write(results: list[dict]) -> None:
        nonlocal writer
        for r in results:
            if r["scene"] is None:  # failed before it had a result: recorded once a writer exists
                pending_failed.append(r)
                if writer is not None:
                    flush_failed()
                if on_window is not None:
                    on_window(r)
                continue
            if writer is None:
                c, z, y, x = r["scene"].shape[1:]
                writer = open_recon_writer(
                    out_path,
                    name,
                    scene_shape=(c, z, y, x),
                    motion_dims=r["motion"].shape[1],
                    pixel_size_um=r["pixel_size_um"],
                    z_step_um=r["z_step_um"],
                    channel_names=r["channel_names"],
                    overwrite=overwrite,
                    config=group_config,
                    resume=resume,
                )
                flush_failed()
            if r["info"].get("status") == "failed":  # diverged or exploded (recon.chain): not final
                writer.write_conventional(r["window"], r["conventional"])
                writer.mark_failed(r["window"], r["info"]["failure"], info=r["info"])
                if on_window is not None:
                    on_window(r)
                continue
            if r["model"] is not None and not model_set:
                writer.set_attributes(model=r["model"])
                model_set.append(True)
            writer.write_window(r["window"], r["scene"], r["times_s"], r["motion"], r["conventional"], info=r["info"])
            writer.write_network(r["window"], r["network"])
            written.append(r["window"])
            if on_window is not None:
                on_window(r)

    def flush_failed() -> None:
        while pending_failed:
            r = pending_failed.pop(0)
            writer.mark_failed(r["window"], r["info"]["failure"], info=r["info"])

    if not todo:
        return written
    if scheduler is None:
        write(reconstruct_chunk(store, config_json, todo, warm_start, sim_parameters))
        return written

    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as err:  # pragma: no cover - dask is an optional dependency
        raise RuntimeError(
            "--scheduler needs Dask: pip install 'nstm-acquire[dask]' (or leave --scheduler out)"
        ) from err
    cluster = None
    if scheduler == "local":
        n_workers = n_chunks or min(len(todo), os.cpu_count() or 1)
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    else:
        client = Client(scheduler, timeout=f"{connect_timeout_s}s")
    try:
        n = n_chunks or max(1, len(client.scheduler_info().get("workers", {})))
        futures = [
            client.submit(reconstruct_chunk, store, config_json, chunk, warm_start, sim_parameters, pure=False)
            for chunk in chunk_windows(todo, n)
        ]
        for future in as_completed(futures):
            write(future.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return written
