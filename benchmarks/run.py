"""Run benchmark cases and rebuild ``docs/benchmarks.md``.

    python -m benchmarks.run                 # every case
    python -m benchmarks.run acquisition     # one case (others' results are kept)
    python -m benchmarks.run --quick ...     # smaller sizes, for a smoke test
    python -m benchmarks.run --report        # only rebuild the report from saved results
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", os.environ.get("NSTM_BENCH_PLATFORM", "cpu"))

from benchmarks.common import build_report  # noqa: E402

CASES = ["acquisition", "acquisition_load", "dpc_quality", "dpc_speed", "dpc_published", "dpc_row_timing", "sim_quality", "sim_drift", "sim3d_motion", "sim_row_timing", "sim_speed", "sim2d_live", "sim_gpu_live", "rolling_shutter", "trust"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("cases", nargs="*", help=f"cases to run (default all): {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--report", action="store_true", help="only rebuild docs/benchmarks.md")
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {CASES}")
    if not args.report:
        for case in args.cases or CASES:
            t0 = time.perf_counter()
            print(f"[benchmarks] {case} ...", flush=True)
            importlib.import_module(f"benchmarks.cases.{case}").run(quick=args.quick)
            print(f"[benchmarks] {case} done in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"[benchmarks] wrote {build_report()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
