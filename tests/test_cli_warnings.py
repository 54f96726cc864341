"""The CLI shows a Python warning (e.g. a SIM pattern that disagrees with the data) as one line."""

from __future__ import annotations

import threading
import warnings

from nstm_acquire.cli import _one_line_warnings


def test_a_warning_is_one_line_on_stderr_also_from_a_worker_thread(capsys) -> None:
    def warn() -> None:
        warnings.warn("SIM parameters: the store's pattern\n  disagrees", UserWarning, stacklevel=1)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with _one_line_warnings(debug=False):
            thread = threading.Thread(target=warn)
            thread.start()
            thread.join()
    err = capsys.readouterr().err
    assert err == "warning: SIM parameters: the store's pattern disagrees\n"


def test_debug_keeps_pythons_form() -> None:
    before = warnings.showwarning
    with _one_line_warnings(debug=True):
        assert warnings.showwarning is before
    with _one_line_warnings(debug=False):
        assert warnings.showwarning is not before
    assert warnings.showwarning is before  # restored
