"""Shared pieces of the benchmark suite: machine description, result files, the report.

Every case writes ``benchmarks/results/<case>.json`` (its numbers and a markdown section);
``docs/benchmarks.md`` is rebuilt from all result files, so re-running one case updates its
section and keeps the others.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REPORT = ROOT / "docs" / "benchmarks.md"
FIGURES = ROOT / "docs" / "figures"


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU model and count, memory, Python, JAX backend and versions."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception:  # noqa: BLE001
        pass
    try:
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        pass
    info["date_utc"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M")
    return info


def machine_line(m: dict[str, Any]) -> str:
    dev = ", ".join(m.get("jax_devices", [])) or m.get("jax_backend", "?")
    return (
        f"{m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('memory_gib', '?')} GiB; Python {m.get('python')}, "
        f"JAX {m.get('jax', '?')} on {dev}; commit {m.get('git', '?')}, {m.get('date_utc')} UTC"
    )


def save_result(case: str, numbers: dict[str, Any], markdown: str, order: int = 50) -> Path:
    """Store one case's numbers and its report section."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{case}.json"
    payload = {"case": case, "order": order, "machine": machine(), "numbers": numbers, "markdown": markdown}
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def build_report() -> Path:
    """Rebuild ``docs/benchmarks.md`` from every result file."""
    results = []
    for p in sorted(RESULTS.glob("*.json")):
        payload = json.loads(p.read_text())
        if "case" in payload:  # other files are a case's partial runs (e.g. dpc_published_runs)
            results.append(payload)
    results.sort(key=lambda r: (r.get("order", 50), r["case"]))
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks.run` (see `benchmarks/`); each section names the machine it",
        "ran on. Re-run one case with `python -m benchmarks.run CASE`; the others are kept.",
        "",
    ]
    for r in results:
        lines.append(r["markdown"].rstrip())
        lines.append("")
        lines.append(f"*Machine:* {machine_line(r['machine'])}")
        lines.append("")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines).rstrip() + "\n")
    return REPORT
