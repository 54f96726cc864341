"""Scale-out over Dask: windows in warm-start chains on separate worker processes."""

import pytest

from nstm_acquire.acquire.controller import AcquisitionController
from nstm_acquire.acquire.sequences import AcquisitionPlan
from nstm_acquire.nstm.config import default_config
from nstm_acquire.recon.distributed import chunk_windows, reconstruct_distributed
from nstm_acquire.store import ReconReader


def test_chunks_are_contiguous_and_cover_every_window():
    assert chunk_windows([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert chunk_windows([2, 5, 7], 5) == [[2], [5], [7]]
    assert chunk_windows([], 3) == []
    chunks = chunk_windows(list(range(10)), 3)
    assert [w for c in chunks for w in c] == list(range(10))


def test_local_cluster_reconstructs_every_window_in_warm_start_chains(fast_sim, open_scope, tmp_path):
    pytest.importorskip("distributed")
    scope = open_scope(fast_sim(frame_shape=(32, 32)))
    store = tmp_path / "dask.zarr"
    AcquisitionController(scope, AcquisitionPlan(modality="dpc", n_windows=4), store).run()
    config = default_config().with_fit(max_steps=50, coarse_to_fine_steps=25, warm_max_steps=25)
    written = reconstruct_distributed(store, config, scheduler="local", n_chunks=2)
    assert sorted(written) == [0, 1, 2, 3]
    recon = ReconReader(store)
    assert recon.windows_done() == [0, 1, 2, 3]
    info = recon.windows_info()
    assert [info[w]["chunk"] for w in range(4)] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    # each chain starts cold and warm-starts the rest, on its own worker process
    assert [info[w]["warm_start"] for w in range(4)] == [False, True, False, True]
    assert info[0]["worker_pid"] != info[2]["worker_pid"]
    assert recon.scene().shape == (16, 2, 1, 32, 32)
