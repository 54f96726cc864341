"""Bad command-line input (issue 14, findings 4, 5, 8): one line naming the option and the fix,
exit code 2, checked before anything is created, and the store keeps every acquired window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nstm_acquire.cli import build_parser
from nstm_acquire.store import StoreReader


def _intact(store: Path) -> None:
    """Nothing acquired was lost, and no reconstruction group was started."""
    reader = StoreReader(store)
    assert reader.complete_windows() == [0, 1, 2]
    assert "recon" not in reader.group or not list(reader.group["recon"].group_keys())


# (arguments with {store}, a fragment the one line must hold)
STORE_CASES = {
    "windows-out-of-range": (["reconstruct", "{store}", "--windows", "99"], "window 99 does not exist"),
    "windows-huge-range": (["reconstruct", "{store}", "--windows", "0-1000000000"], "does not exist"),
    "windows-garbage": (["reconstruct", "{store}", "--windows", "a-b"], "give window indices like 0,2-4"),
    "name-dotdot": (["reconstruct", "{store}", "--name", ".."], "is not a group name"),
    "name-slash": (["reconstruct", "{store}", "--name", "a/b"], "is not a group name"),
    "steps-zero": (["reconstruct", "{store}", "--steps", "0"], "--steps: 0 is out of range"),
    "workers-zero": (["reconstruct", "{store}", "--scheduler", "local", "--workers", "0"], "--workers: 0"),
    "workers-without-scheduler": (["reconstruct", "{store}", "--workers", "2"], "--workers applies with --scheduler"),
    "out-not-a-store": (["reconstruct", "{store}", "--out", "{tmp}"], "is not a Zarr store"),
    "acquire-over-existing": (["acquire", "--out", "{store}", "--fast"], "pass --overwrite to replace it"),
}


@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_bad_option_is_one_line_exit_2_and_nothing_is_created(case, store_copy, tmp_path, run_cli) -> None:
    args, fragment = STORE_CASES[case]
    args = [a.format(store=store_copy, tmp=tmp_path) for a in args]
    code, err, _ = run_cli(*args)
    assert code == 2, err
    assert len(err) == 1 and fragment in err[0], err
    _intact(store_copy)


ACQUIRE_CASES = {
    "exposure-inf": (["--exposure-ms", "inf"], "--exposure-ms: inf is not a finite number"),
    "exposure-nan": (["--exposure-ms", "nan"], "nan is not a finite number"),
    "exposure-negative": (["--exposure-ms", "-3"], "must be > 0"),
    "interval-nan": (["--interval", "nan"], "--interval: nan is not a finite number"),
    "windows-million": (["--windows", "1000000"], "--windows: 1000000 is out of range"),
    "windows-past-the-sequence": (["--windows", "30000"], "give --windows 25000 or less"),
    "shape-huge": (["--shape", "100000", "100000"], "--shape: 100000 is out of range"),
    "motion-nan": (["--motion", "translation:vx=nan"], "--motion 'translation:vx=nan'"),
    "motion-unknown": (["--motion", "teleport:vx=1"], "--motion 'teleport:vx=1'"),
    "config-dir": (["--config", "{tmp}"], "is not a file"),
    "config-binary": (["--config", "{binary}"], "is not a text file"),
    "config-missing": (["--config", "{tmp}/nope.yaml"], "no such file"),
}


@pytest.mark.parametrize("case", sorted(ACQUIRE_CASES))
def test_bad_acquisition_option_creates_no_store(case, tmp_path, run_cli) -> None:
    binary = tmp_path / "scope.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    extra, fragment = ACQUIRE_CASES[case]
    extra = [a.format(tmp=tmp_path, binary=binary) for a in extra]
    out = tmp_path / "new.zarr"
    code, err, _ = run_cli("acquire", "--out", out, "--fast", *extra)
    assert code == 2, err
    assert len(err) == 1 and fragment in err[0], err
    assert not out.exists()


def test_read_only_store_says_where_to_write_instead(store_copy, run_cli, monkeypatch) -> None:
    from nstm_acquire import cli

    os.chmod(store_copy, 0o555)
    if os.geteuid() == 0:  # root may write anyway: let the check see the folder as others do
        real = os.access
        monkeypatch.setattr(cli.os, "access", lambda p, mode: real(p, mode) and Path(p) != store_copy)
    try:
        code, err, _ = run_cli("reconstruct", store_copy)
    finally:
        os.chmod(store_copy, 0o755)
    assert code == 2 and len(err) == 1 and "--out OTHER.zarr" in err[0], err
    _intact(store_copy)


def test_overwrite_never_deletes_another_programs_folder(tmp_path, run_cli) -> None:
    foreign = tmp_path / "theirs.zarr"
    foreign.mkdir()
    (foreign / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    (foreign / "notes.txt").write_text("precious")
    code, err, _ = run_cli("acquire", "--out", foreign, "--overwrite", "--fast")
    assert code == 2 and len(err) == 1 and "will not delete it" in err[0], err
    assert (foreign / "notes.txt").read_text() == "precious"


def test_overwrite_of_an_own_store_says_what_it_replaces(store_copy, tmp_path, run_cli) -> None:
    code, err, out = run_cli("acquire", "--out", store_copy, "--overwrite", "--fast", "--shape", 16, 16,
                             "--windows", 1)  # fmt: skip
    assert code == 0, err
    assert any(line.startswith(f"replacing {store_copy} (an nstm-acquire dpc store") for line in err), err
    assert StoreReader(store_copy).complete_windows() == [0]


def test_unreachable_scheduler_is_one_line(store_copy, run_cli) -> None:
    pytest.importorskip("distributed")
    from nstm_acquire.recon import distributed

    original = distributed.reconstruct_distributed

    def quick(*args, **kwargs):  # a closed port answers at once; keep the wait short anyway
        return original(*args, **{**kwargs, "connect_timeout_s": 2.0})

    distributed.reconstruct_distributed = quick
    try:
        code, err, _ = run_cli("reconstruct", store_copy, "--scheduler", "tcp://127.0.0.1:9", "--steps", 1)
    finally:
        distributed.reconstruct_distributed = original
    assert code == 2 and len(err) == 1 and "cannot reach the Dask scheduler" in err[0], err
    _intact(store_copy)


def test_error_exit_never_aborts(tmp_path, pristine_store) -> None:
    """The program (os._exit after cleanup) exits 2 on an existing --out, never 134 (SIGABRT)."""
    script = "import sys; from nstm_acquire.cli import main; sys.argv[1:] = {!r}; main()"
    argv = ["acquire", "--out", str(pristine_store), "--fast"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    codes = [
        subprocess.run([sys.executable, "-c", script.format(argv)], env=env, capture_output=True, timeout=60).returncode
        for _ in range(3)
    ]
    assert codes == [2, 2, 2]


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    return sub.choices


def _option_help(text: str, option: str) -> str:
    """The help shown for ``option`` in ``text`` (one option per line at a wide terminal)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(option + " ") or line.strip() == option or line.lstrip().startswith(option + ","):
            following = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].lstrip().startswith("-") else ""
            return line + " " + following
    raise AssertionError(f"{option} is not in the help")


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_help_shows_each_default_and_unit(command, monkeypatch) -> None:
    import argparse

    monkeypatch.setenv("COLUMNS", "10000")
    parser = _subparsers()[command]
    text = parser.format_help()
    flags = (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction)
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help"
        if not action.option_strings or isinstance(action, flags):
            continue
        shown = _option_help(text, action.option_strings[0])
        assert "default" in shown or "required" in shown, f"{command} {action.option_strings[0]}: no default: {shown}"
    if "--interval" in text:
        assert "seconds" in _option_help(text, "--interval S")
    if "--exposure-ms" in text:
        assert "milliseconds" in _option_help(text, "--exposure-ms MS")


def test_render_shows_the_phase_of_dpc_unless_asked() -> None:
    from nstm_acquire.cli import UserError, _channel_index

    assert _channel_index(None, ["absorption", "phase_rad"]) == 1
    assert _channel_index(None, ["density"]) == 0
    assert _channel_index("absorption", ["absorption", "phase_rad"]) == 0
    with pytest.raises(UserError, match="give one of absorption, phase_rad"):
        _channel_index("5", ["absorption", "phase_rad"])


def test_demo_outputs_are_named_per_modality(tmp_path, monkeypatch, run_cli) -> None:
    from nstm_acquire import cli

    seen: list[Path] = []

    def stop(args, out, overwrite, reconstruct=True):
        seen.append(Path(out))
        raise cli.UserError("stopped before the microscope")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "open_session", stop)
    for modality in ("dpc", "sim2d"):
        assert run_cli("demo", "--modality", modality)[0] == 2
    assert seen == [Path("runs/demo_dpc.zarr"), Path("runs/demo_sim2d.zarr")]


def test_progress_off_a_terminal_is_plain_periodic_lines() -> None:
    import io

    from nstm_acquire.cli import _Progress

    stream = io.StringIO()  # not a terminal: no bar, no carriage returns
    progress = _Progress(stream, every_s=3600.0)
    for step in range(1, 100):
        progress.show(f"window 0: step {step}/99", completed=step, total=99, label="window 0")
    progress.line("warning: something")
    progress.done("window 0: 99 steps")
    assert stream.getvalue().splitlines() == ["window 0: step 1/99", "warning: something", "window 0: 99 steps"]
