"""The ``nstm-acquire`` command line.

Sub-commands: ``demo``, ``run``, ``acquire``, ``reconstruct``, ``render``, ``trajectory``,
``presets``, ``gui``, ``info``. Exit codes: 0 done, 2 a user error (one line on stderr naming the
option or field and the fix), 1 an internal failure or a window that could not be reconstructed
(one line; the traceback with ``--debug`` and in the log), 130 interrupted. Every option is
checked before anything is created. ``run``, ``demo`` and ``acquire`` go through one
:class:`~nstm_acquire.acquire.session.LiveSession`, which logs to ``<store>.log`` beside the
store (``reconstruct`` logs there too); ``--verbose`` / ``--debug`` (before or after the command)
also show the log on stderr. Progress is a rich progress bar on a terminal, plain lines
(at most every few seconds) otherwise.

Run as the ``nstm-acquire`` program (``main()`` without arguments), the process ends with
``os._exit`` once the command has cleaned up: native threads of the microscope core (pymmcore)
could otherwise be torn down by the interpreter's shutdown, which aborted about half of the
error exits with SIGABRT ("FATAL: exception not rethrown", exit 134).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import sys
import threading
import time
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


#: The most windows one acquisition may ask for (``--windows``): beyond it the sequence and the
#: store's per-frame arrays grow past what a run is tested with.
MAX_WINDOWS = 100_000
#: The most frames one acquisition may take: the run is one hardware sequence, and the longest
#: sequence a (simulated) device takes is 100 000 entries; longer runs failed only at their start.
MAX_FRAMES = 100_000
#: The largest simulated frame side, pixels (``--shape``).
MAX_FRAME_SIDE = 8192
#: The most optimisation steps per window (``--steps``).
MAX_STEPS = 1_000_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (give {what})") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number (give {what})")
    return value


def positive(what: str) -> Callable[[str], float]:
    """argparse type: a finite number > 0 (``what``: the unit, for the message)."""

    def parse(text: str) -> float:
        value = _number(text, f"a finite number of {what} > 0")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be > 0 ({what})")
        return value

    return parse


def non_negative(what: str) -> Callable[[str], float]:
    """argparse type: a finite number >= 0."""

    def parse(text: str) -> float:
        value = _number(text, f"a finite number of {what} >= 0")
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text} must be >= 0 ({what})")
        return value

    return parse


def finite(what: str) -> Callable[[str], float]:
    """argparse type: any finite number."""
    return lambda text: _number(text, f"a finite number of {what}")


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: an integer in ``lo..hi``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (give {lo}..{hi})") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range (give {lo}..{hi})")
        return value

    return parse


def group_name(text: str) -> str:
    """argparse type: a reconstruction name (letters, digits, ``_.-``; not ``.``/``..``)."""
    if not _NAME.match(text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a group name (letters, digits, '_', '.', '-'; up to 64, e.g. 'nstm')"
        )
    return text


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help with every option's default (``(default: X)``) unless its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or "required" in text:
            return text
        if action.required:
            return text + " (required)"
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """One line for a usage error (``nstm-acquire run: argument --steps: ...``), exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def _add_hardware_args(p: argparse.ArgumentParser) -> None:
    from nstm_acquire.hardware.config import default_config_path

    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"hardware configuration YAML (default: {default_config_path()})",
    )
    p.add_argument("--modality", choices=["dpc", "sim2d", "sim3d", "rolling_shutter"], default="dpc",
                   help="dpc: differential phase contrast (4 half-circle LED shots); sim2d: 2D structured "
                        "illumination; sim3d: 3D SIM z stacks; rolling_shutter: lensless colour video "
                        "(DiffuserCam, docs/rolling_shutter.md)")
    p.add_argument("--windows", type=int_range(1, MAX_WINDOWS), default=4, metavar="N",
                   help="number of windows (time points) to acquire")
    p.add_argument("--interval", type=non_negative("seconds"), default=0.0, metavar="S",
                   help="window start-to-start period in seconds (0: back to back)")
    p.add_argument("--exposure-ms", type=positive("milliseconds"), default=None, metavar="MS",
                   help="exposure per shot in milliseconds (default: the configuration's)")
    p.add_argument("--planes", type=int_range(1, 1000), default=None, metavar="N",
                   help="sim3d: planes per stack (default: 8)")
    p.add_argument("--z-step", type=positive("µm"), default=None, metavar="UM",
                   help="sim3d: plane spacing in µm (default: the config's optics.z_step_um, else the Nyquist "
                        "step of the 3D SIM axial passband, 1/(2 (n(1-cos α)/λ_em + kz of order 1)): 0.178 µm "
                        "for NA 1.4 oil, 520 nm emission, 488 nm excitation)")
    p.add_argument("--z-centre", type=finite("µm"), default=0.0, metavar="UM",
                   help="sim3d: focus position of the stack centre in µm")
    p.add_argument("--plane-order", choices=["plane_major", "pattern_major"], default=None,
                   help="sim3d: plane_major (all shots of a plane, then the next) or pattern_major "
                        "(a z stack per shot) (default: plane_major; the demo's: pattern_major)")
    sim = p.add_argument_group("simulated microscope")
    sim.add_argument("--shape", type=int_range(16, MAX_FRAME_SIDE), nargs=2, metavar=("NY", "NX"), default=None,
                     help="frame shape in pixels (default: the configuration's simulation.frame_shape)")
    sim.add_argument("--motion", default=None, metavar="SPEC",
                     help="sample motion, µm and s, e.g. 'translation:vx=5+swirl:omega=0.5,radius=10' "
                          "(default: the configuration's sample motion)")
    sim.add_argument("--seed", type=int_range(0, 2**32 - 1), default=None,
                     help="random seed of the simulated sample and noise (default: the configuration's)")
    sim.add_argument("--fast", action="store_true", help="do not wait in real time (simulated clock runs ahead)")
    sim.add_argument("--photons", type=positive("photo-electrons"), default=None, metavar="E",
                     help="photo-electrons per pixel at background (DPC) / peak (SIM) (default: the configuration's)")
    p.add_argument("--adapter-path", action="append", default=None, metavar="DIR",
                   help="Micro-Manager adapter folder, repeatable (real scopes; default: the configuration's)")


def check_config_file(path: Path | None, option: str = "--config") -> None:
    """``path`` (None: the default) names a readable text file; else a UserError."""
    if path is None:
        return
    path = Path(path)
    if not path.exists():
        raise UserError(f"{option} {path}: no such file (give a hardware configuration .yaml)")
    if not path.is_file():
        raise UserError(f"{option} {path}: is not a file (give a hardware configuration .yaml)")
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as err:
        raise UserError(f"{option} {path}: cannot be read ({err.strerror})") from None
    try:
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, 0, 1, "NUL byte")
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.end < len(head) - 4 or b"\0" in head:  # not just a character cut at the 8 KiB mark
            raise UserError(f"{option} {path}: is not a text file (give a hardware configuration .yaml)") from None


def _check_motion(spec: str | None) -> None:
    """``--motion`` parses (before the microscope is made); else a UserError naming the fix."""
    if spec is None:
        return
    from pydantic import ValidationError

    from nstm_acquire._validation import first_error_line
    from nstm_acquire.hardware.simulated.motion import motion_from_spec

    try:
        motion_from_spec(spec)
    except ValidationError as err:
        raise UserError(f"--motion {spec!r}: {first_error_line(err)} (e.g. 'translation:vx=5')") from None
    except (ValueError, TypeError) as err:
        raise UserError(f"--motion {spec!r}: {' '.join(str(err).split())}") from None


def own_store(path: Path) -> str | None:
    """A description of the store at ``path`` if nstm-acquire wrote it (its root attributes say
    so, and every entry beside the root ``zarr.json`` is a Zarr node), else None."""
    from nstm_acquire.store import StoreError
    from nstm_acquire.store.reader import read_metadata_file

    try:
        meta = read_metadata_file(path / "zarr.json", str(path), "zarr.json")
    except StoreError:
        return None
    attrs = (meta.get("attributes") or {}).get("nstm_acquire") if isinstance(meta, dict) else None
    acq = attrs.get("acquisition") if isinstance(attrs, dict) else None
    software = acq.get("software") if isinstance(acq, dict) else None
    if not (isinstance(software, str) and software.startswith("nstm-acquire")):
        return None
    for entry in path.iterdir():
        if entry.name != "zarr.json" and not (entry.is_dir() and not entry.is_symlink() and (entry / "zarr.json").is_file()):
            return None
    assert isinstance(attrs, dict) and isinstance(acq, dict)  # (checked above, for mypy)
    return f"an nstm-acquire {attrs.get('modality')} store, {acq.get('status', 'unknown')}"


def prepare_out(out: Path, overwrite: bool, option: str = "--out") -> None:
    """Check a new store's path before anything is made: it must be new, or (``overwrite``) an
    empty folder or a store nstm-acquire wrote, which is then announced on stderr."""
    if not out.exists() and not out.is_symlink():
        folder = out.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"{option} {out}: cannot create it, {folder} is not writable (choose another {option})")
        return
    if not overwrite:
        raise UserError(f"{option} {out} already exists: pass --overwrite to replace it, or choose another {option}")
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        return
    what = own_store(out) if out.is_dir() and not out.is_symlink() else None
    if what is None:
        raise UserError(
            f"{option} {out} is not a store nstm-acquire wrote (or holds other files), so --overwrite "
            f"will not delete it: remove it yourself or choose another {option}"
        )
    print(f"replacing {out} ({what})", file=sys.stderr)


def load_config_with_overrides(args: argparse.Namespace):
    """The hardware configuration named by ``--config`` with the simulation overrides applied."""
    from nstm_acquire.hardware.config import (
        HardwareConfig,
        SimulationConfig,
        default_config_path,
        load_hardware_config,
        parse_hardware_config,
    )

    check_config_file(args.config)
    path = args.config or default_config_path()
    cfg = load_hardware_config(path)
    overrides = {k: getattr(args, k, None) for k in ("shape", "motion", "seed", "fast", "photons", "sample_options")}
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
    if modality == "rolling_shutter":  # the lensless camera's scene is simulation.lensless
        if args.motion is not None or getattr(args, "sample_options", None):
            raise UserError("--motion applies to dpc and sim; the lensless scene is set in simulation.lensless")
        if args.photons is not None:
            sim.setdefault("lensless", {})["photons"] = args.photons
        data["simulation"] = sim
        lensless: HardwareConfig = parse_hardware_config(data, source=Path(path).name)
        return lensless.model_copy(update={"source_path": cfg.source_path})
    sample = sim["samples"].setdefault(modality, {})
    if args.motion is not None:
        sample["motion"] = args.motion
    if args.photons is not None:
        sample["photons"] = args.photons
    if getattr(args, "sample_options", None):  # set by the demo, not a command-line option
        sample["options"] = {**(sample.get("options") or {}), **args.sample_options}
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
    """Progress of long work: a rich progress bar on a terminal, plain lines otherwise.

    :meth:`show` updates the bar (``completed`` of ``total``, with ``text`` beside it); when
    stderr is not a terminal it prints ``text`` as a line at most every ``every_s`` seconds.
    :meth:`done` ends the current item: with ``text``, a permanent line. Thread-safe.
    """

    def __init__(self, stream: Any = None, every_s: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._last = ""
        self._printed_at = -math.inf
        self._lock = threading.RLock()
        self._bar: Any = None
        self._task: Any = None

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=Console(file=self.stream), transient=True,
        )  # fmt: skip
        self._bar.start()
        self._task = self._bar.add_task("", total=None, info="")

    def show(self, text: str, completed: float | None = None, total: float | None = None, label: str = "") -> None:
        with self._lock:
            self._last = text
            if self.tty:
                if self._bar is None:
                    self._start_bar()
                info = text if completed is None else text.removeprefix(label).lstrip(": ").strip()
                self._bar.update(self._task, description=label or "", completed=completed or 0, total=total, info=info)
                return
            now = time.monotonic()
            if now - self._printed_at >= self.every_s:
                self._printed_at = now
                print(text, file=self.stream, flush=True)

    def line(self, text: str) -> None:
        """A permanent line (above the bar on a terminal)."""
        with self._lock:
            if self._bar is not None:
                self._bar.console.print(text, markup=False, highlight=False)
            else:
                print(text, file=self.stream, flush=True)

    def done(self, text: str | None = None) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.stop()
                self._bar = None
            if text is not None:
                print(text, file=self.stream, flush=True)
            elif not self.tty and self._last:
                print(self._last, file=self.stream, flush=True)
            self._last = ""
            self._printed_at = -math.inf


def open_session(
    args: argparse.Namespace, out: Path, overwrite: bool, reconstruct: bool = True
) -> tuple[LiveSession, Microscope]:
    """The :class:`~nstm_acquire.acquire.session.LiveSession` and microscope the arguments describe.

    The caller closes the microscope (:func:`run_session` does).
    """
    from nstm_acquire.acquire.session import LiveSession
    from nstm_acquire.hardware.microscope import open_microscope

    _check_motion(getattr(args, "motion", None))
    cfg = load_config_with_overrides(args)
    z_default = cfg.sim3d.optics.z_step_um if (args.modality == "sim3d" and cfg.sim3d) else None
    plan = _plan_from_args(args, z_default)
    _check_frame_count(cfg, plan)
    nstm = None
    if reconstruct:
        from nstm_acquire.nstm.compile_cache import enable_compilation_cache

        enable_compilation_cache()
        nstm = nstm_config_from_args(args, args.modality)
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


def _check_frame_count(cfg, plan) -> None:
    """The run's frames (windows x shots x planes) fit :data:`MAX_FRAMES`; else a UserError
    naming the largest ``--windows`` that does."""
    modality = cfg.modality(plan.modality)
    if plan.modality == "dpc":
        shots = len(modality.shot_names)
    elif plan.modality == "rolling_shutter":
        shots = modality.frames_per_window * len(modality.channels)
    else:
        shots = modality.n_orientations * modality.n_phases
    per_window = shots * plan.n_planes
    if plan.n_windows * per_window > MAX_FRAMES:
        raise UserError(
            f"--windows {plan.n_windows}: {plan.n_windows * per_window} frames ({per_window} per window) is more "
            f"than the {MAX_FRAMES} one run may take; give --windows {MAX_FRAMES // per_window} or less, "
            "and split longer experiments into several runs"
        )


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
        ev.error.connect(lambda source, message: self.progress.line(f"{source}: {' '.join(str(message).split())}"))

    def _on_frame(self, w: int, s: int, z: int, t_s: float) -> None:
        self.t_s = t_s
        self.show()

    def _on_progress(self, w: int, step: int, metrics: dict) -> None:
        from nstm_acquire.nstm.fit import start_text

        self.fit = f"window {w}: step {step}{start_text(metrics)} loss {metrics['loss']:.2e}"
        self.show()

    def show(self) -> None:
        with self._lock:
            self._show()

    def _show(self) -> None:
        s, plan = self.session, self.session.plan
        expected = s.summary.frames_expected
        if not s.reconstructing:
            label = f"acquiring {plan.modality} frames"
            self.progress.show(
                f"{label}: frame {s.frames}/{expected}  windows {len(s.complete)}/{plan.n_windows}  "
                f"t={self.t_s:7.3f} s",
                completed=s.frames, total=expected, label=label,
            )  # fmt: skip
            return
        label = "frames"
        self.progress.show(
            f"{label} {s.frames}/{expected} | windows {len(s.complete)}/{plan.n_windows} acquired, "
            f"{len(s.done)} reconstructed | waiting {s.waiting} ({s.lag_s():.1f} s) | {self.fit}",
            completed=s.frames, total=expected, label=label,
        )  # fmt: skip


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
    prepare_out(args.out, args.overwrite)
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
    prepare_out(args.out, args.overwrite)
    session, microscope = open_session(args, args.out, args.overwrite)
    run_session(session, microscope)
    summary = session.summary
    skipped = [w for w in session.skipped if w not in session.failed]  # failed windows are skipped too
    print(
        f"{summary.store}: {summary.frames_written}/{summary.frames_expected} frames, "
        f"{summary.windows_complete} windows acquired ({summary.status}), {len(session.done)} reconstructed"
        + (f", {len(skipped)} skipped (policy newest)" if skipped else "")
        + (f", {len(session.failed)} failed ({_ranges(list(session.failed))})" if session.failed else "")
    )
    if skipped or session.failed:
        print(f"the rest: nstm-acquire reconstruct {summary.store} (continues recon/nstm)", file=sys.stderr)
    return 0 if summary.status == "completed" and not skipped and not session.failed else 1


def cmd_render(args: argparse.Namespace) -> int:
    from nstm_acquire.recon.playback import StoredReconstruction, write_tiff_stack

    rec = StoredReconstruction(args.store, args.name)
    times = _times_or_default(args.times, rec)
    scenes, _, which = rec.render(times)
    names = rec.reader.attrs.get("channels") or [str(c) for c in range(scenes.shape[1])]
    channel = _channel_index(args.channel, names)
    out = write_tiff_stack(args.out, scenes, times, channel, rec.pixel_size_um)
    print(f"wrote {out}: {len(times)} times x {scenes.shape[2]} planes of {names[channel]} "
          f"({times[0]:.3f}-{times[-1]:.3f} s, windows {sorted(set(which.tolist()))})")
    return 0


def _channel_index(text: str | None, names: list[str]) -> int:
    """``--channel`` as an index: a name, an index, or (None) phase where there is one, else 0."""
    if text is None:
        return next((i for i, n in enumerate(names) if str(n).startswith("phase")), 0)
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    raise UserError(f"--channel {text!r}: give one of {', '.join(map(str, names))} or an index 0..{len(names) - 1}")


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
    text = ";".join(args.points)
    try:
        points = np.array([[float(v) for v in p.split(",")] for p in text.split(";") if p.strip()])
        assert points.ndim == 2 and points.shape[1] == 2 and np.all(np.isfinite(points))
    except (ValueError, AssertionError):
        raise UserError(f"--points {text!r}: give y,x pixel pairs, e.g. --points 40,52 80,31") from None
    if args.um:
        points = points / rec.pixel_size_um
    ny, nx = rec.model.scene_shape[-2:]
    outside = [f"{y:g},{x:g}" for y, x in points if not (0 <= y <= ny - 1 and 0 <= x <= nx - 1)]
    if outside:
        raise UserError(f"--points {' '.join(outside)}: outside the {ny} x {nx} output grid (pixels 0..{ny - 1}, 0..{nx - 1})")
    times = _times_or_default(args.times, rec)
    tracks = rec.trajectories(points, times, t_ref_s=args.ref_time)
    out_path = args.out if args.out is not None else args.store.with_name(args.store.name.removesuffix(".zarr") + "_trajectories.csv")
    out = write_trajectories_csv(out_path, tracks, times, rec.pixel_size_um)
    moved = np.linalg.norm(tracks[:, -1] - tracks[:, 0], axis=-1)
    print(f"wrote {out}: {len(points)} points x {len(times)} times; moved " + ", ".join(f"{m:.2f}" for m in moved) + " px")
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    from nstm_acquire.gui.app import run_gui

    check_config_file(args.config)
    return run_gui(config=args.config, out_dir=args.out_dir)


def cmd_info(args: argparse.Namespace) -> int:
    from nstm_acquire.store import StoreReader

    reader = StoreReader(args.store)
    print(format_info(reader))
    return 0


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.4g} ms"


def format_info(reader) -> str:
    """Human-readable summary of a store: modality, windows, timing statistics, how the run
    ended, implausible times, and the reconstructions in the store."""
    import numpy as np

    with np.errstate(all="ignore"):  # implausible times are reported below, not as numpy warnings
        t = reader.timing_summary()
    a = reader.attrs
    label = "{:<28}".format
    complete = len(reader.complete_windows())
    lines = [
        f"{label('store:')}{reader.path}",
        f"{label('modality:')}{a.modality}",
        f"{label('frames:')}{t.get('frames_acquired')} acquired, shape {tuple(reader.frame_shape)}, "
        f"{reader.n_shots} shots x {reader.n_planes} planes per window",
        f"{label('windows:')}{complete} complete",
    ]
    if a.modality == "rolling_shutter":
        ill = a.illumination
        lines.append(f"{label('colour frames:')}{ill.frames_per_window} per window, planes {', '.join(ill.channels)}")
    if a.camera.rolling_shutter is not None:
        rs = a.camera.rolling_shutter
        lines.append(f"{label('rolling shutter:')}{rs.row_time_s * 1e6:.4g} µs per row, {rs.direction}")
    partial, damaged = t.get("partial_windows") or [], t.get("damaged_windows") or {}
    if partial:
        lines[-1] += f", {len(partial)} partial ({_ranges(partial)})"
    for w, problem in damaged.items():
        lines.append(f"{label('  damaged:')}window {w}: {problem}")
    for key, name in (("frame_interval", "frame interval"), ("window_period", "window period"),
                      ("exposure", "exposure")):  # fmt: skip
        if t.get(f"{key}_mean_s") is None:
            continue
        lines.append(f"{label(name + ' (mean):')}{_ms(t[f'{key}_mean_s'])}")
        if t.get(f"{key}_min_s") is not None:
            lines.append(
                f"{label(f'  {name} spread:')}min {_ms(t[f'{key}_min_s'])}, max {_ms(t[f'{key}_max_s'])}, "
                f"std {_ms(t[f'{key}_std_s'])}"
            )
    acq = a.acquisition or {}
    for key in (
        "hardware_config", "simulated", "timestamp_source", "frames_hardware_triggered",
        "frames_host_clock_fallback", "start_utc",
    ):
        if key in acq:
            lines.append(f"{label(key + ':')}{acq[key]}")
    run_end = getattr(reader, "run_end", None)
    if run_end is not None:
        status, detail = run_end()
        lines.append(f"{label('run ended:')}{status}" + (f" ({detail})" if detail else ""))
    elif "status" in acq:
        lines.append(f"{label('status:')}{acq['status']}")
    for problem in t.get("timing_problems") or []:
        lines.append(f"warning: {problem}")
    lines.extend(_recon_lines(reader, complete))
    return "\n".join(lines)


def _recon_lines(reader, complete: int) -> list[str]:
    """The ``reconstructions:`` section of ``info``: name, windows done / failed, status."""
    from nstm_acquire.store import ReconReader, StoreError

    group = reader.group
    names = sorted(group["recon"].group_keys()) if "recon" in group else []
    if not names:
        return [f"{'reconstructions:':<28}none (nstm-acquire reconstruct STORE)"]
    lines = ["reconstructions:"]
    for name in names:
        try:
            rec = ReconReader(reader.path, name)
            done, failed = rec.windows_done(), rec.windows_failed()
        except StoreError as err:
            lines.append(f"  {name:<26}unreadable: {err.problem}")
            continue
        status = "complete" if len(done) >= complete and not failed else "partial"
        text = f"  {name:<26}{len(done)}/{complete} windows done"
        if failed:
            text += f", {len(failed)} failed ({_ranges(list(failed))})"
        lines.append(f"{text}; {status}" + ("" if status == "complete" else " (nstm-acquire reconstruct continues it)"))
        lines.extend(_trust_lines(rec, done))
    return lines


def _trust_lines(rec, done: list[int]) -> list[str]:
    """Each final window's trust verdict (docs/trust.md), then the reasons of those not ok."""
    reports = {w: rec.trust(w) for w in done}
    judged = {w: r for w, r in reports.items() if r is not None}
    if not judged:
        return [f"    {'trust:':<24}not recorded (reconstructed before trust reports)"] if done else []
    verdicts = ", ".join(f"{w} {r.get('verdict', '?')}" for w, r in sorted(judged.items()))
    lines = [f"    {'trust (window verdict):':<24}{verdicts}"]
    for w, r in sorted(judged.items()):
        if r.get("verdict") != "ok":
            for reason in r.get("reasons") or ["(no reason recorded)"]:
                lines.append(f"      window {w}: {reason}")
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    from nstm_acquire.evaluation.demo import demo_figure, rolling_shutter_figure
    from nstm_acquire.store import StoreReader

    out = args.out or Path(f"runs/demo_{args.modality}.zarr")
    prepare_out(out, overwrite=True)
    if args.modality == "sim3d":  # a CPU-sized 3D demo unless asked otherwise (docs/model.md, SIM)
        args.shape = args.shape or (64, 64)
        args.planes = args.planes or 6
        args.windows = 3 if args.windows == 6 else args.windows
        args.steps = args.steps or 200
        args.plane_order = args.plane_order or "pattern_major"
        # a few camera pixels per window that keep the beads in the 5 µm field for the whole demo
        # (the configured 0.5 µm/s carried every bead out of view by the third 5-s window)
        args.motion = args.motion or "translation:vx=0.08,vy=0.04"
        # the beads inside the acquired stack (6 planes at the Nyquist step of about 0.125 µm span
        # ±0.31 µm): a bead beyond the end planes can only be fitted onto an end plane
        if args.planes == 6 and args.config is None:
            args.sample_options = {"z_range_um": [-0.25, 0.25]}
    if args.modality == "rolling_shutter":  # a CPU-sized lensless demo (docs/rolling_shutter.md)
        args.shape = args.shape or (24, 24)
        args.windows = 2 if args.windows == 6 else args.windows
    session, microscope = open_session(args, out, overwrite=True)
    run_session(session, microscope)
    print(format_info(StoreReader(out)))
    if args.modality == "rolling_shutter":
        figure = rolling_shutter_figure(out, out.with_suffix(".png"))
        print(f"object paths: nstm-acquire trajectory {out} --points Y,X ...")
    else:
        figure = demo_figure(out, microscope.world, args.modality, out.with_suffix(".png"))
    failed = f", {len(session.failed)} failed ({', '.join(map(str, session.failed))})" if session.failed else ""
    print(f"\nreconstructed {len(session.done)} windows near-live{failed}; figure: {figure}")
    print(f"open it in napari (pip install 'nstm-acquire[napari]'):  napari --plugin nstm-acquire {out}")
    return 0 if session.summary.status == "completed" else 1


def cmd_presets(args: argparse.Namespace) -> int:
    from nstm_acquire.hardware.config import default_config_path, load_hardware_config
    from nstm_acquire.hardware.presets import dpc_preset_lines

    check_config_file(args.config)
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


def parse_windows(text: str | None, limit: int = MAX_WINDOWS) -> list[int] | None:
    """``"0,2-4"`` -> ``[0, 2, 3, 4]``; None -> None (all complete windows).

    Indices must be below ``limit`` (the store's window count), checked before a range is
    expanded; a UserError names the bad part.
    """
    if text is None:
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            a, b = (int(v) for v in part.split("-", 1)) if "-" in part else (int(part), int(part))
        except ValueError:
            if not part:
                continue
            raise UserError(f"--windows {text!r}: give window indices like 0,2-4") from None
        if a < 0 or b < a:
            raise UserError(f"--windows {text!r}: {part!r} is not an index or a rising range like 2-4")
        if b >= limit:
            raise UserError(f"--windows {text!r}: window {b} does not exist (the store has windows 0..{limit - 1})")
        out.extend(w for w in range(a, b + 1) if w not in out)
    if not out:
        raise UserError(f"--windows {text!r}: give window indices like 0,2-4")
    return out


def nstm_config_from_args(args: argparse.Namespace, modality: str | None = None):
    """The NSTM configuration named by ``--preset`` for ``modality`` (``"dpc"``, ``"sim2d"``,
    ``"sim3d"``: 2D SIM has a shorter default schedule) with ``--steps`` etc. applied."""
    from nstm_acquire.nstm.config import default_config, published_config

    if modality == "rolling_shutter":  # its own settings (docs/rolling_shutter.md); --steps sets the schedule
        from nstm_acquire.recon.rolling_shutter import rolling_shutter_config

        if args.preset == "published":
            raise UserError("--preset published: the paper's schedule is for DPC and SIM; rolling_shutter has its own")
        rs = rolling_shutter_config(args.steps) if args.steps is not None else rolling_shutter_config()
        return rs.with_fit(scene_sampling=args.sampling) if getattr(args, "sampling", None) else rs
    cfg = published_config() if args.preset == "published" else default_config(modality)
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
    g.add_argument("--steps", type=int_range(1, MAX_STEPS), default=None, metavar="N",
                   help="maximum optimisation steps per window (default: the preset's, 1500 for default)")
    g.add_argument("--sampling", choices=["grid", "network"], default=None,
                   help="scene sampling (grid: fast; network: the published way) (default: the preset's)")
    g.add_argument("--no-warm-start", action="store_true", help="fit every window from scratch")
    g.add_argument("--sim-parameters", choices=["configured", "fallback", "error", "estimate"], default="configured",
                   help="SIM pattern (k, phase, modulation): estimated from the first window and checked; "
                        "configured: the store's values where given, checked against the estimate (a "
                        "disagreement is warned about and recorded), the estimate where missing (default); "
                        "fallback: the estimate where plausible, else the store's values; error: stop on an "
                        "implausible estimate; estimate: use it anyway")


def _check_reconstruct_args(args: argparse.Namespace) -> tuple[Any, list[int] | None]:
    """Every ``reconstruct`` option checked before anything is written: the store reads, the
    windows exist and are complete, the output can be written. Returns the reader and the
    chosen windows (None: all complete)."""
    from nstm_acquire.store import StoreReader

    if not args.store.exists():
        raise UserError(f"{args.store}: no such store (give the NAME.zarr an acquisition wrote)")
    reader = StoreReader(args.store)
    windows = parse_windows(args.windows, limit=max(reader.n_windows, 1))
    complete = reader.complete_windows()
    if windows is not None:
        missing = [w for w in windows if w not in complete]
        if missing:
            raise UserError(
                f"--windows {args.windows}: windows {_ranges(missing)} are not complete "
                f"(complete: {_ranges(complete) or 'none'})"
            )
    elif not complete:
        raise UserError(f"{args.store}: no complete window to reconstruct (nstm-acquire info {args.store} says why)")
    if args.workers is not None and args.scheduler is None:
        raise UserError("--workers applies with --scheduler only (e.g. --scheduler local --workers 2)")
    target = Path(args.out or args.store)
    where = target / "recon" if (target / "recon").exists() else target if target.exists() else target.parent
    if where.exists() and not os.access(where, os.W_OK | os.X_OK):
        fix = "write the reconstruction elsewhere with --out OTHER.zarr" if args.out is None else "choose another --out"
        raise UserError(f"{target}: cannot write there ({where} is read-only): {fix}")
    if args.out is not None and Path(args.out).exists() and not (Path(args.out) / "zarr.json").is_file():
        raise UserError(f"--out {args.out} exists and is not a Zarr store (choose a new name)")
    return reader, windows


def _ranges(windows: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    ws = sorted(set(windows))
    parts: list[str] = []
    i = 0
    while i < len(ws):
        j = i
        while j + 1 < len(ws) and ws[j + 1] == ws[j] + 1:
            j += 1
        parts.append(str(ws[i]) if i == j else f"{ws[i]}-{ws[j]}")
        i = j + 1
    return ", ".join(parts)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from nstm_acquire.nstm.fit import start_text
    from nstm_acquire.recon.chain import StoreReconstructor, WindowFailure

    reader, windows = _check_reconstruct_args(args)
    config = nstm_config_from_args(args, reader.modality)
    with _file_log(args.out or args.store):
        if args.scheduler is not None:
            return _reconstruct_on_dask(args, config, windows)
        rec = StoreReconstructor(
            reader, config, out=args.out, name=args.name, overwrite=args.overwrite,
            warm_start=not args.no_warm_start, sim_parameters=args.sim_parameters, resume=True,
        )  # fmt: skip
        todo = rec.pending(None) if windows is None else windows
        target = f"{args.out or args.store}/recon/{args.name}"
        if not todo:
            print(f"{target}: every complete window is already reconstructed "
                  "(--windows redoes chosen ones, --overwrite all)")  # fmt: skip
            return 0
        resumed = windows is None and len(todo) < len(rec.reader.complete_windows())
        if resumed:
            print(f"{target}: continuing with the {len(todo)} windows not done yet ({_ranges(todo)})", file=sys.stderr)
        progress = _Progress()
        limit = config.fit.max_steps

        def show(w: int, step: int, metrics: dict) -> None:
            label = f"window {w} ({todo.index(w) + 1}/{len(todo)})"
            progress.show(f"{label}: step {step}/{limit}{start_text(metrics)}  loss {metrics['loss']:.3e}",
                          completed=step, total=max(limit, step), label=label)  # fmt: skip

        failed: list[int] = []
        for w in todo:
            try:
                res = rec.reconstruct(w, callback=functools.partial(show, w))
            except KeyboardInterrupt:
                progress.done()
                print(f"{target}: the finished windows are kept; run the same command again to continue",
                      file=sys.stderr)  # fmt: skip
                raise
            except WindowFailure as err:
                progress.done()
                failed.append(w)
                _warn_failed(w, err.reason)
                continue
            progress.done(f"window {w}: {res.fit.summary()}")
            if res.info.get("status") == "failed":
                failed.append(w)
                _warn_failed(w, res.info.get("failure", ""))
            elif res.info.get("implausible"):
                print(f"warning: window {w} is implausible: {res.info['implausible']}", file=sys.stderr)
        print(f"wrote {target}: {len(todo) - len(failed)} windows"
              + (f", {len(failed)} failed ({_ranges(failed)}; rerun the same command to retry them)" if failed else ""))
        return 1 if failed else 0


@contextmanager
def _file_log(store: Path) -> Iterator[None]:
    """The package's log (tracebacks included) appended to ``<store>.log`` while a command
    runs, where that file can be written."""
    from nstm_acquire._logger import log_to_file, remove_log_file

    path = Path(store)
    log = path.with_suffix(".log") if path.suffix == ".zarr" else path.with_name(path.name + ".log")
    try:
        handler = log_to_file(log) if os.access(log.parent if log.parent.exists() else ".", os.W_OK) else None
    except OSError:
        handler = None
    global _LOG_PATH
    _LOG_PATH = log if handler is not None else None
    try:
        yield
    except Exception:
        from nstm_acquire._logger import logger

        logger.debug("the command stopped on an error", exc_info=True)  # the log keeps the traceback
        raise
    finally:
        if handler is not None:
            remove_log_file(handler)


_LOG_PATH: Path | None = None


def _warn_failed(w: int, reason: str) -> None:
    """The one-line warning for a window whose fit failed (recon.chain.fit_failure)."""
    print(f"warning: window {w} failed (not final; recorded in the store): {reason}", file=sys.stderr)


def _reconstruct_on_dask(args: argparse.Namespace, config, windows: list[int] | None) -> int:
    from nstm_acquire.recon.distributed import reconstruct_distributed

    progress = _Progress()
    done: list[int] = []
    failed: list[int] = []

    def on_window(r: dict) -> None:
        done.append(r["window"])
        info = r["info"]
        if info.get("status") == "failed":
            failed.append(r["window"])
            progress.done()
            _warn_failed(r["window"], info.get("failure", ""))
            return
        progress.show(
            f"window {r['window']} written ({len(done)} done): {info['steps']} steps, "
            f"{info['wall_s']:.1f} s on worker {info['worker_pid']}"
        )

    try:
        written = reconstruct_distributed(
            args.store, config, windows, scheduler=args.scheduler,
            n_chunks=args.workers, out=args.out, name=args.name, overwrite=args.overwrite,
            warm_start=not args.no_warm_start, on_window=on_window, sim_parameters=args.sim_parameters,
            resume=True,
        )  # fmt: skip
    except OSError as err:
        if "connect" in str(err).lower() or "timed out" in str(err).lower():
            raise UserError(
                f"--scheduler {args.scheduler}: cannot reach the Dask scheduler ({' '.join(str(err).split())}); "
                "check the address, or use --scheduler local"
            ) from None
        raise
    progress.done()
    print(f"wrote {args.out or args.store}/recon/{args.name}: {len(written)} windows"
          + (f", {len(failed)} failed ({_ranges(failed)}; rerun the same command to retry them)" if failed else ""))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nstm-acquire",
        description="Multi-shot DPC/SIM acquisition with motion-resolved NSTM reconstruction.",
    )
    from nstm_acquire import __version__

    parser.add_argument("--version", action="version", version=f"nstm-acquire {__version__}")
    _add_logging_args(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    p.add_argument("--out", type=Path, default=None, metavar="STORE",
                   help="output store, replaced if an earlier demo wrote it (default: runs/demo_<modality>.zarr)")
    p.add_argument("--policy", choices=["all", "newest"], default="all",
                   help="when reconstruction falls behind: reconstruct all windows, or always the newest")
    _add_nstm_args(p)
    p.set_defaults(func=cmd_demo, windows=6)

    p = sub.add_parser("run", help="acquire and reconstruct every window near-live into one store")
    _add_hardware_args(p)
    p.add_argument("--out", type=Path, required=True, metavar="STORE", help="output store, NAME.zarr")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing store that nstm-acquire wrote (never another program's files)")
    p.add_argument("--policy", choices=["all", "newest"], default="all",
                   help="when reconstruction falls behind: reconstruct all windows, or always the newest")
    _add_nstm_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("acquire", help="run a DPC or SIM acquisition into a Zarr store")
    _add_hardware_args(p)
    p.add_argument("--out", type=Path, required=True, metavar="STORE", help="output store, NAME.zarr")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing store that nstm-acquire wrote (never another program's files)")
    p.set_defaults(func=cmd_acquire)


def _add_store_commands(sub: Any) -> None:
    """``reconstruct``, ``presets``, ``render``, ``trajectory``, ``gui``, ``info``."""
    p = sub.add_parser(
        "reconstruct", formatter_class=_Formatter,
        help="NSTM-reconstruct the complete windows of a store (recon/<name>); continues an interrupted one",
        description="NSTM-reconstruct the complete windows of a store into recon/<name>. Run again, it "
                    "continues: only the windows not reconstructed yet (missing or failed) are done.",
    )  # fmt: skip
    p.add_argument("store", type=Path, help="the acquisition store, NAME.zarr")
    p.add_argument("--windows", default=None, metavar="LIST",
                   help="windows to (re)do, e.g. 0,2-4 (default: every complete window not reconstructed yet)")
    p.add_argument("--out", type=Path, default=None, metavar="STORE",
                   help="write the reconstruction into this store instead (default: into the acquisition store)")
    p.add_argument("--name", type=group_name, default="nstm", help="group name under recon/")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing recon/<name> (without it, an existing one is continued)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address tcp://host:port, or 'local' for a local cluster "
                        "(default: in this process)")
    p.add_argument("--workers", type=int_range(1, 1024), default=None, metavar="N",
                   help="with --scheduler: warm-start chains (tasks) (default: one per worker)")
    _add_nstm_args(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("presets", help="print the .cfg presets that light each DPC shot's LEDs")
    p.add_argument("--config", type=Path, default=None,
                   help="hardware configuration YAML (default: the simulated microscope's)")
    p.add_argument("--group", default="DPC", help="configuration group name")
    p.add_argument("--device", default=None, help="LED array device label (default: dpc.led_array_label)")
    p.add_argument("--property", default="LEDs", help="property taking the LED list (Illuminate: ManualLedList)")
    p.add_argument("--separator", default=" ", help="between LED indices (Illuminate: '.')")
    p.add_argument("--python-device", action="store_true", help="prefix lines with '#py ' (a Python device)")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("render", help="render a stored reconstruction at any times into a TIFF stack")
    p.add_argument("store", type=Path, help="the store holding the reconstruction, NAME.zarr")
    p.add_argument("--times", default=None, help="seconds: t1,t2,... or start:stop:step (default: 50 across the run)")
    p.add_argument("--channel", default=None,
                   help="channel name or index (DPC: phase_rad, absorption; SIM: density) (default: phase "
                        "where the reconstruction has it, else the first channel)")
    p.add_argument("--name", type=group_name, default="nstm", help="the reconstruction, recon/<name>")
    p.add_argument("--out", type=Path, required=True, help="output .tif (ImageJ hyperstack, T x Z x Y x X)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("trajectory", help="export the motion trajectories of chosen points as CSV")
    p.add_argument("store", type=Path, help="the store holding the reconstruction, NAME.zarr")
    p.add_argument("--points", required=True, nargs="+", metavar="Y,X",
                   help="y,x output-grid pixels of each point at the reference time (several: 40,52 80,31; "
                        "or ';'-separated)")
    p.add_argument("--um", action="store_true", help="--points are in µm, not pixels")
    p.add_argument("--ref-time", type=finite("seconds"), default=None, metavar="S",
                   help="time (s) at which the points are given (default: the first of --times)")
    p.add_argument("--times", default=None,
                   help="seconds: t1,t2,... or start:stop:step (default: 50 across the run)")
    p.add_argument("--name", type=group_name, default="nstm", help="the reconstruction, recon/<name>")
    p.add_argument("--out", type=Path, default=None,
                   help="output .csv (default: NAME_trajectories.csv beside NAME.zarr)")
    p.set_defaults(func=cmd_trajectory)

    p = sub.add_parser("gui", help="open the acquisition and live-reconstruction panel")
    p.add_argument("--config", type=Path, default=None, help="hardware configuration YAML (default: simulated)")
    p.add_argument("--out-dir", type=Path, default=Path("runs"), help="folder for new stores")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("info", help="summarise a store: modality, windows, timing, reconstructions")
    p.add_argument("store", type=Path, help="the store, NAME.zarr")
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


def _report(err: BaseException, line: str, debug: bool, code: int = 2) -> int:
    """Print an error as one line (after its traceback with ``--debug``); log it with its
    traceback; return the exit code (2: the user can fix it; 1: an internal failure)."""
    from nstm_acquire._logger import logger

    line = " ".join(str(line).split()) or type(err).__name__
    logger.debug("error reported as: %s", line, exc_info=err)
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    print(f"nstm-acquire: {line}", file=sys.stderr)
    return code


def _internal(err: BaseException, debug: bool) -> int:
    """An unexpected exception: one line saying where the traceback is; exit code 1."""
    from nstm_acquire._logger import logger

    logger.error("internal error", exc_info=err)
    where = f"the traceback is in {_LOG_PATH}, or" if _LOG_PATH is not None else "for the traceback"
    text = " ".join(str(err).split())[:300] or "no message"
    return _report(err, f"internal error: {type(err).__name__}: {text} ({where} run again with --debug)", debug, 1)


def _os_error_line(err: OSError) -> str:
    import errno

    what = err.filename or "a file"
    if err.errno == errno.ENOSPC:
        return f"{what}: no space left on the disk (free some space; the windows completed so far are kept)"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{what}: permission denied (read-only? write elsewhere, e.g. with --out)"
    return f"{what}: {err.strerror or err}"


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
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Called without ``argv`` (the ``nstm-acquire`` program), it ends the process itself with
    :func:`_exit` after the command has cleaned up (module docstring).
    """
    code = _main(argv)
    if argv is None:
        _exit(code)
    return code


def _exit(code: int) -> None:
    """End the process with ``code``: flush the output and the logs, then ``os._exit``, so
    no native thread (pymmcore's) meets the interpreter's shutdown (module docstring)."""
    import gc
    import logging

    try:
        gc.collect()  # finalise what the command left (the microscope core) while Python runs
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        logging.shutdown()
    finally:
        os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    global _LOG_PATH
    _LOG_PATH = None
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) or a usage error (2, one line printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    from pydantic import ValidationError

    from nstm_acquire._validation import UserInputError, first_error_line
    from nstm_acquire.hardware.config import ConfigError
    from nstm_acquire.physics.sim.estimation import SimParameterError
    from nstm_acquire.store import StoreError

    debug = bool(args.debug)
    with _console_logging(2 if debug else 1 if args.verbose else 0), _one_line_warnings(debug):
        try:
            return int(args.func(args) or 0)
        except (UserError, UserInputError, ConfigError, StoreError, SimParameterError) as err:
            return _report(err, str(err), debug)
        except ValidationError as err:
            return _report(err, first_error_line(err), debug)
        except KeyboardInterrupt:
            print("\nnstm-acquire: interrupted", file=sys.stderr)
            return 130
        except OSError as err:
            return _report(err, _os_error_line(err), debug)
        except (MemoryError, RecursionError) as err:
            return _report(err, f"{type(err).__name__}: the input is too large or too deeply nested", debug, 1)
        except Exception as err:  # noqa: BLE001 - never a traceback without --debug
            return _internal(err, debug)


if __name__ == "__main__":
    main()
