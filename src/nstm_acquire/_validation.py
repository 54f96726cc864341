"""pydantic validation errors as short messages that name the field: one helper for the package.

Every layer validates with pydantic (the physics models, the store layout, the hardware
configuration) and every front end shows the result as a line (the CLI, the panel). This module
is where a :class:`pydantic.ValidationError` becomes text:

* :func:`first_error_line` -- ``"<location>: <message>"`` of the first error (CLI, panel);
* :func:`error_lines` -- ``"<source>: <location>: <message>"`` for every error (hardware
  configuration files);
* :func:`field_problems` / :func:`first_field_problem` -- ``(field, problem)`` pairs with a hint
  per field (the store layout's ``StoreError`` lines).

A validator that knows more precisely which element is wrong raises :class:`FieldError`
(``led_na[3]`` rather than ``led_na``); the helpers then report that path.

This module imports only pydantic, so every layer (``physics/`` included) may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

__all__ = [
    "FieldError",
    "UserInputError",
    "one_line",
    "error_lines",
    "error_message",
    "field_problems",
    "first_error_line",
    "first_field_problem",
    "format_location",
    "join_field",
]


class UserInputError(ValueError):
    """Base of every error the user can fix (a bad store, configuration or value): one line.

    Front ends show ``str(err)`` as it is (the command line exits with status 2); the store's
    ``StoreError`` and the hardware configuration's ``ConfigError`` derive from it. The
    message never quotes the content of an untrusted file.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: object, limit: int = 400) -> str:
    """``text`` with every whitespace run (newlines too) as one space, cut to ``limit`` chars."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class FieldError(ValueError):
    """A bad value of one field, raised inside a pydantic validator: ``<field> <problem>``.

    Parameters
    ----------
    field
        Path of the bad value relative to the location pydantic reports for the validator:
        the model for a model validator (``shots[1][0]``), the field for a field validator;
        ``""`` is that location itself.
    problem
        One phrase: what is wrong and, in brackets, how to fix it, e.g. ``"= 9 is out of range
        (LED indices must be in 0..4)"``. Whitespace runs (newlines too) become single spaces.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{field} {self.problem}" if field else self.problem)


def format_location(loc: Sequence[Any], brackets: bool = True) -> str:
    """A pydantic ``loc`` tuple as a path: ``a.b[0].c`` (``brackets``) or ``a.b.0.c``."""
    if not brackets:
        return ".".join(str(part) for part in loc)
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def join_field(base: str, field: str) -> str:
    """``base`` and a relative ``field`` joined as one path (``a`` + ``b[1]`` -> ``a.b[1]``)."""
    if not base:
        return field
    if not field:
        return base
    return base + field if field.startswith("[") else f"{base}.{field}"


def error_message(item: Mapping[str, Any]) -> str:
    """The message of one pydantic error item, without pydantic's ``"Value error, "``."""
    return str(item.get("msg", "is invalid")).removeprefix("Value error, ")


def first_error_line(err: ValidationError) -> str:
    """``"<location>: <message>"`` of the first error, location dotted (``a.0.b``)."""
    first = err.errors()[0]
    return f"{format_location(first['loc'], brackets=False)}: {error_message(first)}"


def error_lines(err: ValidationError, source: str) -> list[str]:
    """``"<source>: <location>: <message>"`` for every error (location dotted, or ``(top level)``)."""
    lines = []
    for item in err.errors():
        loc = format_location(item["loc"], brackets=False)
        lines.append(f"{source}: {loc or '(top level)'}: {error_message(item)}")
    return lines


def _shown_value(value: Any) -> str:
    """``"= <repr> "`` of a scalar input (shortened), nothing for a container."""
    shown = "" if isinstance(value, (dict, list)) else f"= {value!r} "
    if len(shown) > 60:
        shown = shown[:56] + "... "
    return shown


def field_problems(
    err: ValidationError, prefix: str = "", hint: Callable[[str], str] | None = None
) -> list[tuple[str, str]]:
    """Every error of ``err`` as ``(field, problem)``, one short phrase each.

    Parameters
    ----------
    err
        The pydantic error.
    prefix
        Path of the validated model inside a larger document (e.g. ``"illumination"``); the
        fields returned start with it.
    hint
        What a field means, by path (list indices included), used to complete "is missing" and
        "is invalid" phrases; default: no hint.

    A :class:`FieldError` raised by a validator gives its own path and problem. Otherwise:
    ``"is missing (<hint>)"``, ``"is not a known field (...)"``, ``"= <value> is invalid:
    <message>"`` (own validators, whose messages already explain the fix) or ``"= <value> is
    invalid: <message> (<hint>)"``.
    """
    problems: list[tuple[str, str]] = []
    for item in err.errors():
        base = join_field(prefix, format_location(tuple(item["loc"])))
        ctx_error = (item.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldError):
            problems.append((join_field(base, ctx_error.field), ctx_error.problem))
            continue
        explained = hint(base) if hint is not None else ""
        suffix = f" ({explained})" if explained else ""
        kind = item["type"]
        if kind == "missing":
            problems.append((base, f"is missing{suffix}"))
        elif kind == "extra_forbidden":
            problems.append((base, "is not a known field (remove it or check its spelling)"))
        elif kind == "value_error":  # our own validators already explain the fix
            problems.append((base, f"{_shown_value(item.get('input'))}is invalid: {error_message(item)}"))
        else:
            shown = _shown_value(item.get("input"))
            problems.append((base, f"{shown}is invalid: {error_message(item)}{suffix}"))
    return problems


def first_field_problem(
    err: ValidationError, prefix: str = "", hint: Callable[[str], str] | None = None
) -> tuple[str, str]:
    """The first of :func:`field_problems`, naming up to three other bad fields after it."""
    problems = field_problems(err, prefix, hint)
    field, problem = problems[0]
    if len(problems) > 1:
        others = ", ".join(f for f, _ in problems[1:4]) + (", ..." if len(problems) > 4 else "")
        problem += f" (also wrong: {others})"
    return field, problem
