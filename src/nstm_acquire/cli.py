"""The ``nstm-acquire`` command line.

Sub-commands: ``demo``, ``run``, ``acquire``, ``reconstruct``, ``render``, ``trajectory``,
``presets``, ``gui``, ``info``. Every user error ends the program with one line on stderr and exit
code 2. ``run``, ``demo`` and ``acquire`` go through one
:class:`~nstm_acquire.acquire.session.LiveSession`, which logs to ``<store>.log`` beside the
store; ``--verbose`` / ``--debug`` (before or after the command) also show the log on stderr,
``--debug`` with the traceback of an error otherwise reported in one line.
"""

from __future__ import annotations

import argparse
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nstm_acquire.acquire.session import LiveSession
    from nstm_acquire.hardware.microscope import Microscope

__all__ = ["main"]

COMMANDS: dict[str, Callable[[argparse.ArgumentParser], None]] = {}


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


def _add_hardware_args(p: argparse.ArgumentParser) -> None:
    from nstm_acquire.hardware.config import default_config_path

    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"hardware configuration YAML (default: {default_config_path()})",
    )
    p.add_argument("--modality", choices=["dpc", "sim2d", "sim3d"], default="dpc")
    p.add_argument("--windows", type=int, default=4, help="number of windows (time points)")
    p.add_argument("--interval", type=float, default=0.0, help="window start-to-start period, s (0: back to back)")
    p.add_argument("--exposure-ms", type=float, default=None, help="exposure per shot, ms")
    p.add_argument("--planes", type=int, default=None, help="sim3d: planes per stack (default 8)")
    p.add_argument("--z-step", type=float, default=None,
                   help="sim3d: plane spacing, µm (default: the config's optics.z_step_um, else the Nyquist "
                        "step of the 3D SIM axial passband, 1/(2 (n(1-cos α)/λ_em + kz of order 1)): 0.178 µm "
                        "for NA 1.4 oil, 520 nm emission, 488 nm excitation)")
    p.add_argument("--z-centre", type=float, default=0.0, help="sim3d: focus position of the stack centre, µm")
    p.add_argument("--plane-order", choices=["plane_major", "pattern_major"], default=None,
                   help="sim3d: plane_major (all shots of a plane, then the next; default) or "
                        "pattern_major (a z stack per shot; the demo's default)")
    sim = p.add_argument_group("simulated microscope")
    sim.add_argument("--shape", type=int, nargs=2, metavar=("NY", "NX"), default=None, help="frame shape, pixels")
    sim.add_argument("--motion", default=None, help="sample motion, e.g. 'translation:vx=5+swirl:omega=0.5,radius=10'")
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument("--fast", action="store_true", help="do not wait in real time (simulated clock runs ahead)")
    sim.add_argument("--photons", type=float, default=None, help="photo-electrons per pixel at background / peak")
    p.add_argument("--adapter-path", action="append", default=None, help="Micro-Manager adapter folder (real scopes)")


def load_config_with_overrides(args: argparse.Namespace):
    """The hardware configuration named by ``--config`` with the simulation overrides applied."""
    from nstm_acquire.hardware.config import (
        HardwareConfig,
        SimulationConfig,
        default_config_path,
        load_hardware_config,
        parse_hardware_config,
    )

    path = args.config or default_config_path()
    cfg = load_hardware_config(path)
    overrides = {k: getattr(args, k, None) for k in ("shape", "motion", "seed", "fast", "photons")}
    if not any(v not in (None, False) for v in overrides.values()):
        return cfg
    if not cfg.simulated:
        used = [k for k, v in overrides.items() if v not in (None, False)]
        raise UserError(f"--{used[0]} applies to the simulated microscope only; {cfg.name} is a real one")
    data = cfg.model_dump(mode="json", exclude={"source_path"})
    sim = data.get("simulation") or SimulationConfig().model_dump(mode="json")
    if args.shape:
        sim["frame_shape"] = list(args.shape)
    if args.seed is not None:
        sim["seed"] = args.seed
    if args.fast:
        sim["timing"]["realtime"] = False
    modality = args.modality
    sample = sim["samples"].setdefault(modality, {})
    if args.motion is not None:
        sample["motion"] = args.motion
    if args.photons is not None:
        sample["photons"] = args.photons
    data["simulation"] = sim
    new: HardwareConfig = parse_hardware_config(data, source=Path(path).name)
    return new.model_copy(update={"source_path": cfg.source_path})


def _plan_from_args(args: argparse.Namespace, z_step_default: float | None = None):
    from nstm_acquire.acquire.sequences import AcquisitionPlan

    kw: dict = {
        "modality": args.modality,
        "n_windows": args.windows,
        "window_interval_s": args.interval,
        "exposure_ms": args.exposure_ms,
        "plane_order": args.plane_order or "plane_major",
    }
    if args.modality == "sim3d":
        kw["n_planes"] = args.planes or 8
        kw["z_centre_um"] = args.z_centre
        if args.z_step is not None:
            kw["z_step_um"] = args.z_step
        elif z_step_default is not None:
            kw["z_step_um"] = z_step_default
    elif args.planes not in (None, 1):
        raise UserError(f"--planes {args.planes}: only --modality sim3d acquires several planes")
    return AcquisitionPlan(**kw)


class _Progress:
    """One updating line on a terminal, plain lines otherwise."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = ""

    def show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self._last)))
            self.stream.flush()
        self._last = text

    def done(self, text: str | None = None) -> None:
        if text is not None:
            self.show(text)
        if self.tty:
            self.stream.write("\n")
        elif self._last:
            self.stream.write(self._last + "\n")
        self.stream.flush()


def open_session(
    args: argparse.Namespace, out: Path, overwrite: bool, reconstruct: bool = True
) -> tuple[LiveSession, Microscope]:
    """The :class:`~nstm_acquire.acquire.session.LiveSession` and microscope the arguments describe.

    The caller closes the microscope (:func:`run_session` does).
    """
    from nstm_acquire.acquire.session import LiveSession
    from nstm_acquire.hardware.microscope import open_microscope

    cfg = load_config_with_overrides(args)
    z_default = cfg.sim3d.optics.z_step_um if (args.modality == "sim3d" and cfg.sim3d) else None
    plan = _plan_from_args(args, z_default)
    nstm = None
    if reconstruct:
        from nstm_acquire.nstm.compile_cache import enable_compilation_cache

        enable_compilation_cache()
        nstm = nstm_config_from_args(args)
    microscope = open_microscope(cfg, adapter_paths=args.adapter_path)
    try:
        session = LiveSession(
            microscope, plan, out, nstm, overwrite=overwrite, reconstruct=reconstruct,
            policy=getattr(args, "policy", "all"), warm_start=not getattr(args, "no_warm_start", False),
            sim_parameters=getattr(args, "sim_parameters", "configured"),
        )  # fmt: skip
    except BaseException:
        microscope.close()
        raise
    return session, microscope


class _SessionDisplay:
    """The one-line terminal display of a live session (frames, windows, lag, fit)."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.progress = _Progress()
        self._lock = threading.Lock()  # frames and fit progress arrive on different threads
        self.fit = ""
        self.t_s = 0.0
        ev = session.events
        ev.frame_stored.connect(self._on_frame)
        ev.window_complete.connect(lambda w: self.show())
        ev.window_done.connect(lambda w, result: self.show())
        ev.progress.connect(self._on_progress)
        ev.error.connect(lambda source, message: print(f"\n{source}: {message}", file=sys.stderr))

    def _on_frame(self, w: int, s: int, z: int, t_s: float) -> None:
        self.t_s = t_s
        self.show()

    def _on_progress(self, w: int, step: int, metrics: dict) -> None:
        self.fit = f"window {w}: step {step} loss {metrics['loss']:.2e}"
        self.show()

    def show(self) -> None:
        with self._lock:
            self._show()

    def _show(self) -> None:
        s, plan = self.session, self.session.plan
        expected = s.summary.frames_expected
        if not s.reconstructing:
            self.progress.show(
                f"acquiring {plan.modality}: frame {s.frames}/{expected}  "
                f"windows {len(s.complete)}/{plan.n_windows}  t={self.t_s:7.3f} s"
            )
            return
        self.progress.show(
            f"frames {s.frames}/{expected} | windows {len(s.complete)}/{plan.n_windows} acquired, "
            f"{len(s.done)} reconstructed | waiting {s.waiting} ({s.lag_s():.1f} s) | {self.fit}"
        )


def run_session(session: LiveSession, microscope: Microscope) -> None:
    """Run ``session`` with a terminal display; close ``microscope`` at the end.

    Ctrl-C cancels the acquisition and stops the reconstruction (both are waited for), then
    KeyboardInterrupt is re-raised.
    """
    display = _SessionDisplay(session)
    interrupted = False
    try:
        session.run()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        display.show()
        display.progress.done()
        microscope.close()
        if interrupted:
            print("interrupted: acquisition canceled; frames and finished windows are in the store", file=sys.stderr)
    if session.log_path is not None and session.errors:
        print(f"details of the errors above: {session.log_path}", file=sys.stderr)


def cmd_acquire(args: argparse.Namespace) -> int:
    session, microscope = open_session(args, args.out, args.overwrite, reconstruct=False)
    try:
        run_session(session, microscope)
    except KeyboardInterrupt:
        pass  # canceled: the summary says so
    summary = session.summary
    print(
        f"{summary.store}: {summary.modality}, {summary.windows_complete} complete windows, "
        f"{summary.frames_written}/{summary.frames_expected} frames in {summary.duration_s:.2f} s ({summary.status})"
    )
    return {"completed": 0, "canceled": 130}.get(summary.status, 1)


def cmd_run(args: argparse.Namespace) -> int:
    session, microscope = open_session(args, args.out, args.overwrite)
    run_session(session, microscope)
    summary = session.summary
    print(
        f"{summary.store}: {summary.frames_written}/{summary.frames_expected} frames, "
        f"{summary.windows_complete} windows acquired ({summary.status}), {len(session.done)} reconstructed"
        + (f", {len(session.skipped)} skipped (policy newest)" if session.skipped else "")
        + (f", {len(session.failed)} failed ({', '.join(map(str, session.failed))})" if session.failed else "")
    )
    return 0 if summary.status == "completed" and not session.skipped and not session.failed else 1


def cmd_render(args: argparse.Namespace) -> int:
    from nstm_acquire.recon.playback import StoredReconstruction, write_tiff_stack

    rec = StoredReconstruction(args.store, args.name)
    times = _times_or_default(args.times, rec)
    scenes, _, which = rec.render(times)
    names = rec.reader.attrs.get("channels") or [str(c) for c in range(scenes.shape[1])]
    channel = names.index(args.channel) if args.channel in names else int(args.channel or 0)
    out = write_tiff_stack(args.out, scenes, times, channel, rec.pixel_size_um)
    print(f"wrote {out}: {len(times)} times x {scenes.shape[2]} planes of {names[channel]} "
          f"({times[0]:.3f}-{times[-1]:.3f} s, windows {sorted(set(which.tolist()))})")
    return 0


def _times_or_default(text: str | None, rec):
    import numpy as np

    from nstm_acquire.recon.playback import parse_times

    try:
        if text:
            return parse_times(text)
    except ValueError as err:
        raise UserError(str(err)) from None
    shots = rec.reader.times_s()  # the exposure midpoints of every reconstructed shot
    return np.linspace(float(np.min(shots)), float(np.max(shots)), 50)


def cmd_trajectory(args: argparse.Namespace) -> int:
    import numpy as np

    from nstm_acquire.recon.playback import StoredReconstruction, write_trajectories_csv

    rec = StoredReconstruction(args.store, args.name)
    try:
        points = np.array([[float(v) for v in p.split(",")] for p in args.points.split(";") if p.strip()])
        assert points.ndim == 2 and points.shape[1] == 2
    except (ValueError, AssertionError):
        raise UserError(f"--points {args.points!r}: give y,x pixel pairs separated by ';', e.g. '40,52;80,31'") from None
    times = _times_or_default(args.times, rec)
    tracks = rec.trajectories(points, times)
    out = write_trajectories_csv(args.out, tracks, times, rec.pixel_size_um)
    moved = np.linalg.norm(tracks[:, -1] - tracks[:, 0], axis=-1)
    print(f"wrote {out}: {len(points)} points x {len(times)} times; moved " + ", ".join(f"{m:.2f}" for m in moved) + " px")
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    from nstm_acquire.gui.app import run_gui

    return run_gui(config=args.config, out_dir=args.out_dir)


def cmd_info(args: argparse.Namespace) -> int:
    from nstm_acquire.store import StoreReader

    reader = StoreReader(args.store)
    print(format_info(reader))
    return 0


def format_info(reader) -> str:
    """Human-readable summary of a store: modality, windows, timing statistics."""
    t = reader.timing_summary()
    a = reader.attrs
    lines = [
        f"store:            {reader.path}",
        f"modality:         {a.modality}",
        f"frames:           {t.get('frames_acquired')} acquired, shape {tuple(reader.frame_shape)}, "
        f"{reader.n_shots} shots x {reader.n_planes} planes per window",
        f"windows:          {len(reader.complete_windows())} complete",
    ]
    for key, label in (
        ("frame_interval_mean_s", "frame interval"),
        ("window_period_mean_s", "window period"),
        ("exposure_mean_s", "exposure"),
    ):
        if t.get(key) is not None:
            lines.append(f"{label + ':':<18}{1000 * t[key]:.3f} ms (mean)")
    if t.get("frame_interval_min_s") is not None:
        lines.append(
            f"{'  spread:':<18}min {1000 * t['frame_interval_min_s']:.3f} / max "
            f"{1000 * t['frame_interval_max_s']:.3f} / std {1000 * t['frame_interval_std_s']:.3f} ms"
        )
    acq = a.acquisition or {}
    for key in (
        "hardware_config", "simulated", "timestamp_source", "frames_hardware_triggered",
        "frames_host_clock_fallback", "status", "start_utc",
    ):
        if key in acq:
            lines.append(f"{key + ':':<18}{acq[key]}")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from nstm_acquire.evaluation.demo import demo_figure
    from nstm_acquire.store import StoreReader

    out = args.out
    if args.modality == "sim3d":  # a CPU-sized 3D demo unless asked otherwise (docs/model.md, SIM)
        args.shape = args.shape or (64, 64)
        args.planes = args.planes or 6
        args.windows = 3 if args.windows == 6 else args.windows
        args.steps = args.steps or 200
        args.plane_order = args.plane_order or "pattern_major"
    session, microscope = open_session(args, out, overwrite=True)
    run_session(session, microscope)
    print(format_info(StoreReader(out)))
    figure = demo_figure(out, microscope.world, args.modality, out.with_suffix(".png"))
    failed = f", {len(session.failed)} failed ({', '.join(map(str, session.failed))})" if session.failed else ""
    print(f"\nreconstructed {len(session.done)} windows near-live{failed}; figure: {figure}")
    print(f"open the store in napari:  napari {out}   (raw: {out}/raw, NSTM: {out}/recon/nstm/scene)")
    return 0 if session.summary.status == "completed" else 1


def cmd_presets(args: argparse.Namespace) -> int:
    from nstm_acquire.hardware.config import default_config_path, load_hardware_config
    from nstm_acquire.hardware.presets import dpc_preset_lines

    cfg = load_hardware_config(args.config or default_config_path())
    dpc = cfg.modality("dpc")
    print(f"# DPC presets for {cfg.name}: paste into the Micro-Manager .cfg")
    for line in dpc_preset_lines(
        dpc,  # type: ignore[arg-type]
        group=args.group,
        device=args.device,
        prop=args.property,
        separator=args.separator,
        python_device=args.python_device,
    ):
        print(line)
    return 0


def parse_windows(text: str | None) -> list[int] | None:
    """``"0,2-4"`` -> ``[0, 2, 3, 4]``; None -> None (all complete windows)."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise UserError(f"--windows {text!r}: give window indices like 0,2-4") from None
    return out


def nstm_config_from_args(args: argparse.Namespace):
    """The NSTM configuration named by ``--preset`` with ``--steps`` etc. applied."""
    from nstm_acquire.nstm.config import default_config, published_config

    cfg = published_config() if args.preset == "published" else default_config()
    changes: dict = {}
    if args.steps is not None:
        changes["max_steps"] = args.steps
        if cfg.fit.warm_max_steps is not None:  # --steps caps warm-started windows too
            changes["warm_max_steps"] = min(cfg.fit.warm_max_steps, args.steps)
    if getattr(args, "sampling", None):
        changes["scene_sampling"] = args.sampling
    return cfg.with_fit(**changes) if changes else cfg


def _add_nstm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reconstruction")
    g.add_argument("--preset", choices=["default", "published"], default="default",
                   help="default: fast, stops on convergence; published: the paper's 5000-step schedule")
    g.add_argument("--steps", type=int, default=None, help="maximum optimisation steps per window")
    g.add_argument("--sampling", choices=["grid", "network"], default=None,
                   help="scene sampling (grid: fast; network: the published way)")
    g.add_argument("--no-warm-start", action="store_true", help="fit every window from scratch")
    g.add_argument("--sim-parameters", choices=["configured", "fallback", "error", "estimate"], default="configured",
                   help="SIM pattern (k, phase, modulation): estimated from the first window and checked; "
                        "configured: the store's values where given, checked against the estimate (a "
                        "disagreement is warned about and recorded), the estimate where missing (default); "
                        "fallback: the estimate where plausible, else the store's values; error: stop on an "
                        "implausible estimate; estimate: use it anyway")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from nstm_acquire.recon.chain import StoreReconstructor

    config = nstm_config_from_args(args)
    if args.scheduler is not None:
        return _reconstruct_on_dask(args, config)
    rec = StoreReconstructor(
        args.store, config, out=args.out, name=args.name, overwrite=args.overwrite,
        warm_start=not args.no_warm_start, sim_parameters=args.sim_parameters,
    )
    windows = parse_windows(args.windows)
    complete = rec.reader.complete_windows()
    todo = complete if windows is None else windows
    if not todo:
        raise UserError(f"{args.store}: no complete window to reconstruct")
    progress = _Progress()
    limit = config.fit.max_steps

    def show(w: int, step: int, metrics: dict) -> None:
        progress.show(f"window {w} ({todo.index(w) + 1}/{len(todo)}): step {step}/{limit}  loss {metrics['loss']:.3e}")

    failed = []
    for w in todo:
        res = rec.run([w], progress=show)[0]
        f = res.fit
        progress.done(f"window {w}: {f.summary()}")
        if res.info.get("status") == "failed":
            failed.append(w)
            _warn_failed(w, res.info.get("failure", ""))
    target = args.out or args.store
    print(f"wrote {target}/recon/{args.name}: {len(todo) - len(failed)} windows"
          + (f", {len(failed)} failed ({', '.join(map(str, failed))})" if failed else ""))
    return 1 if failed else 0


def _warn_failed(w: int, reason: str) -> None:
    """The one-line warning for a window whose fit failed (recon.chain.fit_failure)."""
    print(f"warning: window {w} failed, not final: {reason}", file=sys.stderr)


def _reconstruct_on_dask(args: argparse.Namespace, config) -> int:
    from nstm_acquire.recon.distributed import reconstruct_distributed

    progress = _Progress()
    done: list[int] = []

    def on_window(r: dict) -> None:
        done.append(r["window"])
        info = r["info"]
        if info.get("status") == "failed":
            progress.done()
            _warn_failed(r["window"], info.get("failure", ""))
        progress.show(
            f"window {r['window']} written ({len(done)} done): {info['steps']} steps, "
            f"{info['wall_s']:.1f} s on worker {info['worker_pid']}"
        )

    written = reconstruct_distributed(
        args.store, config, parse_windows(args.windows), scheduler=args.scheduler,
        n_chunks=args.workers, out=args.out, name=args.name, overwrite=args.overwrite,
        warm_start=not args.no_warm_start, on_window=on_window, sim_parameters=args.sim_parameters,
    )
    progress.done()
    print(f"wrote {args.out or args.store}/recon/{args.name}: {len(written)} windows")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nstm-acquire",
        description="Multi-shot DPC/SIM acquisition with motion-resolved NSTM reconstruction.",
    )
    from nstm_acquire import __version__

    parser.add_argument("--version", action="version", version=f"nstm-acquire {__version__}")
    _add_logging_args(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_acquisition_commands(sub)
    _add_store_commands(sub)
    for name, register in COMMANDS.items():
        register(sub.add_parser(name))
    for sub_parser in sub.choices.values():  # also accepted after the command: run --debug ...
        _add_logging_args(sub_parser, default=argparse.SUPPRESS)
    return parser


def _add_acquisition_commands(sub: Any) -> None:
    """``demo``, ``run``, ``acquire``: a live session on a microscope."""
    p = sub.add_parser(
        "demo", help="simulated microscope: acquire a moving sample, reconstruct near-live, save a figure"
    )
    _add_hardware_args(p)
    p.add_argument("--out", type=Path, default=Path("runs/demo.zarr"))
    p.add_argument("--policy", choices=["all", "newest"], default="all")
    _add_nstm_args(p)
    p.set_defaults(func=cmd_demo, windows=6)

    p = sub.add_parser("run", help="acquire and reconstruct every window near-live into one store")
    _add_hardware_args(p)
    p.add_argument("--out", type=Path, required=True, help="output store, NAME.zarr")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--policy", choices=["all", "newest"], default="all",
                   help="when reconstruction falls behind: reconstruct all windows, or always the newest")
    _add_nstm_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("acquire", help="run a DPC or SIM acquisition into a Zarr store")
    _add_hardware_args(p)
    p.add_argument("--out", type=Path, required=True, help="output store, NAME.zarr")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=cmd_acquire)


def _add_store_commands(sub: Any) -> None:
    """``reconstruct``, ``presets``, ``render``, ``trajectory``, ``gui``, ``info``."""
    p = sub.add_parser("reconstruct", help="NSTM-reconstruct the complete windows of a store (recon/<name>)")
    p.add_argument("store", type=Path)
    p.add_argument("--windows", default=None, help="windows to reconstruct, e.g. 0,2-4 (default: all complete)")
    p.add_argument("--out", type=Path, default=None, help="write the reconstruction into this store instead")
    p.add_argument("--name", default="nstm", help="group name under recon/")
    p.add_argument("--overwrite", action="store_true", help="replace an existing recon/<name>")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address, or 'local' for a local cluster (default: in this process)")
    p.add_argument("--workers", type=int, default=None,
                   help="warm-start chains (tasks); default one per worker")
    _add_nstm_args(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("presets", help="print the .cfg presets that light each DPC shot's LEDs")
    p.add_argument("--config", type=Path, default=None, help="hardware configuration YAML")
    p.add_argument("--group", default="DPC", help="configuration group name")
    p.add_argument("--device", default=None, help="LED array device label (default: dpc.led_array_label)")
    p.add_argument("--property", default="LEDs", help="property taking the LED list (Illuminate: ManualLedList)")
    p.add_argument("--separator", default=" ", help="between LED indices (Illuminate: '.')")
    p.add_argument("--python-device", action="store_true", help="prefix lines with '#py ' (a Python device)")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("render", help="render a stored reconstruction at any times into a TIFF stack")
    p.add_argument("store", type=Path)
    p.add_argument("--times", default=None, help="seconds: t1,t2,... or start:stop:step (default: 50 across the run)")
    p.add_argument("--channel", default=None, help="channel name or index (DPC: phase_rad, absorption; SIM: density)")
    p.add_argument("--name", default="nstm")
    p.add_argument("--out", type=Path, required=True, help="output .tif (ImageJ hyperstack, T x Z x Y x X)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("trajectory", help="export the motion trajectories of chosen points as CSV")
    p.add_argument("store", type=Path)
    p.add_argument("--points", required=True, help="y,x output-grid pixels at the first time, ';'-separated")
    p.add_argument("--times", default=None, help="seconds: t1,t2,... or start:stop:step")
    p.add_argument("--name", default="nstm")
    p.add_argument("--out", type=Path, required=True, help="output .csv")
    p.set_defaults(func=cmd_trajectory)

    p = sub.add_parser("gui", help="open the acquisition and live-reconstruction panel")
    p.add_argument("--config", type=Path, default=None, help="hardware configuration YAML (default: simulated)")
    p.add_argument("--out-dir", type=Path, default=Path("runs"), help="folder for new stores")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("info", help="summarise a store: modality, windows, timing")
    p.add_argument("store", type=Path)
    p.set_defaults(func=cmd_info)


def _add_logging_args(p: argparse.ArgumentParser, default: object) -> None:
    g = p.add_argument_group("logging")
    g.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="show progress messages (log level INFO) on stderr")
    g.add_argument("--debug", action="store_true", default=default,
                   help="show debug messages on stderr, and the traceback of every error reported in one line")


@contextmanager
def _console_logging(verbosity: int) -> Iterator[None]:
    """The package's log records on stderr while a command runs (``--verbose``: 1, ``--debug``: 2).

    Without either, nothing is added: errors are reported in one line and logged, with their
    tracebacks, to the run's ``<store>.log``.
    """
    if verbosity <= 0:
        yield
        return
    from nstm_acquire._logger import configure_console, logger

    handlers, level = list(logger.handlers), logger.level
    configure_console(verbosity)
    try:
        yield
    finally:  # leave the logger as it was (main() may be called again in the same process)
        for handler in [h for h in logger.handlers if h not in handlers]:
            logger.removeHandler(handler)
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(level)


def _report(err: BaseException, line: str, debug: bool) -> int:
    """Print a user error as one line (after its traceback with ``--debug``); exit code 2."""
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    print(f"nstm-acquire: {line}", file=sys.stderr)
    return 2


@contextmanager
def _one_line_warnings(debug: bool) -> Iterator[None]:
    """Python warnings (e.g. a SIM pattern that disagrees with the data) as one ``warning:`` line
    on stderr, and in the run's log; ``--debug`` keeps Python's form with the source line."""
    import warnings

    from nstm_acquire._logger import logger

    if debug:
        yield
        return

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = " ".join(str(message).split())
        logger.warning("%s: %s", category.__name__, text)
        print(f"warning: {text}", file=sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pydantic import ValidationError

    from nstm_acquire._validation import first_error_line
    from nstm_acquire.hardware.config import ConfigError
    from nstm_acquire.physics.sim.estimation import SimParameterError
    from nstm_acquire.store import StoreError

    debug = bool(args.debug)
    with _console_logging(2 if debug else 1 if args.verbose else 0), _one_line_warnings(debug):
        try:
            return int(args.func(args) or 0)
        except (UserError, ConfigError, StoreError, SimParameterError) as err:
            return _report(err, str(err), debug)
        except ValidationError as err:
            return _report(err, first_error_line(err), debug)
        except KeyboardInterrupt:
            print("\nnstm-acquire: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
