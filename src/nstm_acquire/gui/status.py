"""The status area of the panel: the state of a run (frames, windows, queue, lag, fit) and messages.

:class:`RunStatus` shows what a :class:`~nstm_acquire.acquire.session.LiveSession` says about
itself (:meth:`RunStatus.show_session`) and keeps a log of messages and errors
(:meth:`RunStatus.message`), one time-stamped line each.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QFormLayout, QGroupBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

__all__ = ["RunStatus", "one_line", "state_text"]

_FIELDS = (
    ("acquisition", "Acquisition"),
    ("frames", "Frames"),
    ("windows", "Windows acquired"),
    ("reconstructed", "Reconstructed"),
    ("waiting", "Waiting"),
    ("lag", "Lag"),
    ("fit", "Fit"),
    ("store", "Store"),
)


def one_line(err: BaseException) -> str:
    """The first line of an error (pydantic: field and message), with its type when bare."""
    from pydantic import ValidationError

    from nstm_acquire._validation import first_error_line

    if isinstance(err, ValidationError):
        return first_error_line(err)
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def state_text(session: Any) -> str:
    """The "Acquisition" field for a session: its phase, or its status once ended."""
    status = session.summary.status if session.summary.status != "running" else "failed"
    return {
        "ready": "ready",
        "running": "running",
        "pause requested": "pause requested…",
        "paused": "paused",
        "canceling": "canceling…",
        "reconstructing": f"{status}; reconstructing…",
    }.get(session.phase(), status)


class RunStatus(QGroupBox):
    """The run's state, one labelled field each (:attr:`fields`), and a message log (:attr:`log`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Status", parent)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.fields: dict[str, QLabel] = {}
        for key, label in _FIELDS:
            value = QLabel("–")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(key in ("fit", "store"))
            form.addRow(label, value)
            self.fields[key] = value
        layout.addLayout(form)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setPlaceholderText("messages and errors")
        self.log.setMinimumHeight(70)
        layout.addWidget(self.log, 1)
        self.fit_text = ""

    def begin(self, store: Any) -> None:
        """A new run writing ``store`` starts."""
        self.fit_text = ""
        self.fields["store"].setText(str(store))
        self.fields["fit"].setText("–")

    def message(self, text: str, error: bool = False) -> None:
        """Append a time-stamped line (``ERROR:`` first for an error)."""
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        self.log.appendPlainText(f"{stamp}  {'ERROR: ' if error else ''}{text}")

    def last_message(self) -> str:
        lines = self.log.toPlainText().splitlines()
        return lines[-1] if lines else ""

    def show_session(self, session: Any) -> None:
        """Fill the fields from a :class:`~nstm_acquire.acquire.session.LiveSession`."""
        f = self.fields
        f["acquisition"].setText(state_text(session))
        expected = session.summary.frames_expected
        f["frames"].setText(f"{session.frames} / {expected}" if expected else str(session.frames))
        f["windows"].setText(f"{len(session.complete)} / {session.plan.n_windows}")
        skipped = session.skipped
        f["reconstructed"].setText(f"{len(session.done)}" + (f" ({len(skipped)} skipped)" if skipped else ""))
        f["waiting"].setText(str(session.waiting))
        f["lag"].setText(f"{session.lag_s():.1f} s")
        if self.fit_text:
            f["fit"].setText(self.fit_text)
