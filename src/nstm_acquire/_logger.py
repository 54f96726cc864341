"""The package logger: one ``logging.Logger`` named ``nstm_acquire`` for every layer.

* :data:`logger` -- log through it (``logger.info(...)``, ``logger.exception(...)``);
* :func:`exceptions_logged` -- a context manager for thread bodies and callbacks: an exception
  leaving the block is logged with its traceback (and re-raised unless ``reraise=False``), so a
  fault on the acquisition or reconstruction thread is never reduced to a string alone;
* :func:`log_to_file` -- add a handler writing this package's records to a file (each run's
  ``<store>.log`` beside the store); :func:`remove_log_file` takes it away again;
* :func:`configure_console` -- the CLI's ``--verbose`` / ``--debug`` levels on stderr.

Nothing is printed by default: like any library, the package adds a ``NullHandler`` and leaves
the console to the application (the CLI, the panel or the user's script).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "LOG_FORMAT",
    "configure_console",
    "exceptions_logged",
    "log_to_file",
    "logger",
    "remove_log_file",
]

logger = logging.getLogger("nstm_acquire")
"""The package logger; modules may use ``logger.getChild(__name__.split('.', 1)[1])``."""
logger.addHandler(logging.NullHandler())

LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"
"""Format of the records in a run's log file (time, level, thread, logger, message)."""

_CONSOLE_TAG = "_nstm_acquire_console"


@contextmanager
def exceptions_logged(
    what: str, reraise: bool = True, log: logging.Logger | None = None
) -> Iterator[None]:
    """Log an exception that leaves the block, with its traceback, as ``"<what> failed"``.

    ``reraise=False`` swallows it after logging (for thread bodies whose failure is already
    reported another way, e.g. through a signal). ``KeyboardInterrupt`` and ``SystemExit``
    pass through unlogged.
    """
    try:
        yield
    except Exception:
        (log or logger).exception("%s failed", what)
        if reraise:
            raise


def log_to_file(path: str | Path, level: int = logging.DEBUG) -> logging.Handler:
    """Append this package's log records to ``path`` (created with its folder); returns the handler."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler


def remove_log_file(handler: logging.Handler) -> None:
    """Detach and close a handler made by :func:`log_to_file`."""
    logger.removeHandler(handler)
    handler.close()


def configure_console(verbosity: int) -> None:
    """Show records on stderr: 0 = warnings and errors, 1 = also info (``--verbose``), 2 = debug.

    Calling it again replaces the console handler it added before.
    """
    for handler in list(logger.handlers):
        if getattr(handler, _CONSOLE_TAG, False):
            logger.removeHandler(handler)
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _CONSOLE_TAG, True)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
