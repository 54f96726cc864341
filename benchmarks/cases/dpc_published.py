"""The published schedule vs the defaults, run by this code on the same windows: quality vs steps.

The published configuration (:func:`~nstm_acquire.nstm.config.published_config`: 2 x 128 GELU
scene MLP queried at every warped coordinate, motion lr 1e-5, coarse-to-fine over 4000 of 5000
steps) and the defaults fit the same simulated window; the phase correlation with the truth
is recorded every 250 steps (published) or 25 steps (defaults, which stop by themselves). This
is the long case (about 20 minutes per 128 x 128 run and 2 hours per 256 x 256 run on 2 cores).
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.common import FIGURES, RESULTS, machine, save_result  # noqa: E402
from benchmarks.dpc_common import MOTIONS, public, run_nstm, window  # noqa: E402
from nstm_acquire.nstm.config import default_config, published_config  # noqa: E402

RUNS = [(128, "translation"), (128, "swirl"), (256, "translation")]


def _partial_path():
    return RESULTS / "dpc_published_runs.json"


def _load() -> dict:
    p = _partial_path()
    return json.loads(p.read_text()) if p.exists() else {}


def run_defaults(n: int, motion: str) -> dict:
    """The defaults' part of a run: run on past stopping (curve) and stopping by themselves."""
    win = window(n, MOTIONS[motion])
    ours = run_nstm(default_config().with_fit(max_steps=600, patience=1000), win, monitor_every=True)
    ours_stop = run_nstm(default_config(), win)
    m = machine()
    return {
        "default_curve": public(ours),
        "default": public(ours_stop),
        "default_commit": m["git"],
        "default_machine": m.get("cpu", "?"),
    }


def run_one(n: int, motion: str) -> dict:
    win = window(n, MOTIONS[motion])
    pub = run_nstm(published_config().with_fit(eval_every=250), win, monitor_every=True)
    m = machine()
    return {
        "published": public(pub),
        "published_commit": m["git"],
        "published_machine": m.get("cpu", "?"),
        **run_defaults(n, motion),
    }


def _runs_written() -> str:
    import datetime as dt

    p = _partial_path()
    if not p.exists():
        return "never"
    return dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _first_step_reaching(history: list[dict], target: float) -> int | None:
    for h in history:
        if h.get("corr", -1) >= target:
            return int(h["step"])
    return None


def report() -> dict:
    runs = _load()
    rows, figs = [], []
    for key, r in sorted(runs.items()):
        n, motion = key.split("/")
        pub, curve, ours = r["published"], r["default_curve"], r["default"]
        ph = pub["history"]
        peak = max(ph, key=lambda h: h["corr"])
        reach = _first_step_reaching(ph, ours["corr"] - 0.01)
        pub_time = None if reach is None else reach * pub["s_per_step"] + pub["compile_s"]
        speedup = "-" if pub_time is None else f"{pub_time / ours['wall_s']:.0f}x"
        rows.append(
            f"| {n} | {motion} | {peak['corr']:.3f} @ {peak['step']} | {ph[-1]['corr']:.3f} | "
            f"{pub['s_per_step']:.2f} | {pub['wall_s'] / 60:.0f} min | {ours['corr']:.3f} | {ours['steps']} | "
            f"{ours['wall_s']:.1f} s | {'-' if reach is None else reach} | "
            f"{speedup} |"
        )
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
        ax[0].plot([h["step"] for h in ph], [h["corr"] for h in ph], "o-", label="published schedule")
        ch = curve["history"]
        ax[0].plot([h["step"] for h in ch], [h["corr"] for h in ch], "-", label="defaults, run on")
        ax[0].axvline(ours["best_step"], color="gray", ls=":", label="defaults stop (kept step)")
        ax[0].set_xscale("log")
        ax[0].set_xlabel("steps")
        ax[0].set_ylabel("phase corr. with truth")
        ax[0].set_ylim(max(0.5, min(h["corr"] for h in ph + ch)), 1.0)
        ax[0].legend(fontsize=7)
        ax[1].plot([h["step"] * pub["s_per_step"] for h in ph], [h["corr"] for h in ph], "o-", label="published")
        ax[1].plot([h["step"] * ours["s_per_step"] for h in ch], [h["corr"] for h in ch], "-", label="defaults")
        ax[1].set_xscale("log")
        ax[1].set_xlabel("seconds (excluding compilation)")
        ax[1].set_ylim(ax[0].get_ylim())
        fig.suptitle(f"DPC {n}x{n}, {motion}: quality vs steps and time")
        fig.tight_layout()
        name = f"dpc_steps_{n}_{motion}.png"
        FIGURES.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURES / name, dpi=110)
        plt.close(fig)
        figs.append(f"![{key}](figures/{name})")
    md = "\n".join(
        [
            "## Published schedule vs defaults: quality against steps",
            "",
            "`python -m benchmarks.run dpc_published` (long). Same simulated window for both; published",
            "configuration run by this code (2 x 128 GELU scene MLP at every warped coordinate, motion lr",
            "1e-5, 5000 steps, coarse-to-fine over the first 4000). *Reach*: first evaluated step at which",
            "the published schedule comes within 0.01 of the defaults' result; *speed-up*: its time to",
            "get there (steps x seconds/step + compilation) over the defaults' whole fit (with compilation).",
            "",
            "| size | motion | published peak @ step | published at 5000 | published s/step | published run | defaults | defaults steps | defaults fit | reach (steps) | speed-up |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Runs done: {', '.join(sorted(runs)) or 'none'} (of {', '.join(f'{n}/{m}' for n, m in RUNS)}); the",
            "others take hours on this machine and have not been run. Commits (published / defaults):",
            "; ".join(
                f"{k} {r.get('published_commit', 'not recorded')} / {r.get('default_commit', 'not recorded')}"
                for k, r in sorted(runs.items())
            )
            + "; machines (published / defaults): "
            + "; ".join(
                f"{k} {r.get('published_machine', 'not recorded')} / {r.get('default_machine', 'not recorded')}"
                for k, r in sorted(runs.items())
            )
            + ". The defaults' part is re-run alone (minutes) with `python -m",
            "benchmarks.cases.dpc_published --defaults-only` when the defaults change; where the two",
            "parts ran on different machines the speed-up compares across them (the published",
            "configuration's time per step on the machine of the defaults is in the speed section).",
            "The runs file",
            f"(`benchmarks/results/dpc_published_runs.json`) was last written {_runs_written()} UTC; the",
            "machine line below is when this section was rebuilt.",
            "",
            *figs,
        ]
    )
    save_result("dpc_published", {"runs": list(runs)}, md, order=30)
    return runs


def run(quick: bool = False, only: list[str] | None = None, defaults_only: bool = False) -> dict:
    """Run the published schedule and the defaults (``defaults_only``: re-run the defaults'
    part of the runs already recorded, keeping their published curves)."""
    runs = _load()
    todo = [(64, "translation")] if quick else RUNS
    for n, motion in todo:
        key = f"{n}/{motion}"
        if (only and key not in only) or (defaults_only and key not in runs):
            continue
        print(f"[dpc_published] {key}{' (defaults only)' if defaults_only else ''} ...", flush=True)
        runs[key] = {**runs[key], **run_defaults(n, motion)} if defaults_only else run_one(n, motion)
        RESULTS.mkdir(parents=True, exist_ok=True)
        _partial_path().write_text(json.dumps(runs, default=float))
    return report()


if __name__ == "__main__":
    args = sys.argv[1:]
    run(only=[a for a in args if not a.startswith("--")] or None, defaults_only="--defaults-only" in args)
