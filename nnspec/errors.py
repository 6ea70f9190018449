"""The exceptions nnspec raises for bad input, and how they name the place in the spec."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

Loc = Sequence[str | int]


def format_path(loc: Loc) -> str:
    """Render a location as `layers[1].weights`; an empty location is the document itself."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<spec>"


def suggest(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` hint for a misspelt name, or an empty string."""
    choices = list(choices)
    same_but_case = [c for c in choices if c.lower() == word.lower()]
    close = same_but_case or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        # A change of case ('w1' for 'W1') is the commonest slip that difflib's ratio misses.
        by_case = {c.lower(): c for c in choices}
        close = difflib.get_close_matches(word.lower(), list(by_case), n=1, cutoff=0.6)
        close = [by_case[c] for c in close]
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(noun: str, found: str, valid: Sequence[str], note: str = "", *, also: Iterable[str] = ()) -> str:
    """`expected one of the <noun>s a, b; found unknown <noun> 'x' (did you mean 'a'?)`.

    `also` are further accepted spellings (aliases) that a suggestion may name but the list leaves out.
    """
    hint = suggest(found, [*valid, *also])
    return f"expected one of the {noun}s {', '.join(valid)}{note}; found unknown {noun} {found!r}{hint}"


def missing(key: str, why: str = "it is required") -> str:
    """`expected a 'key' here (it is required), found none`."""
    return f"expected a {key!r} here ({why}), found none"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries' own errors can run to pages), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class NNSpecError(Exception):
    """Base of every error nnspec reports to a user; the CLI turns it into one line and an exit code."""

    exit_code = 2

    def __init__(self, message: str, loc: Loc = (), *, source: str | None = None) -> None:
        self.message = message
        self.loc = tuple(loc)
        self.source = source
        super().__init__(str(self))

    @property
    def path(self) -> str:
        return format_path(self.loc)

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if self.loc:
            where += f"{self.path}: "
        return where + self.message


class SpecError(NNSpecError):
    """The spec is malformed, inconsistent, or refers to something that is not there."""


class SpecErrors(SpecError):
    """Several independent problems found in one pass over a spec."""

    def __init__(self, errors: Sequence[SpecError], *, source: str | None = None) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, first.loc, source=source)

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        lines = [f"{e.path}: {e.message}" if e.loc else e.message for e in self.errors]
        if len(lines) == 1:
            return where + lines[0]
        return where + f"{len(lines)} problems\n" + "\n".join(f"  {line}" for line in lines)


class WeightError(SpecError):
    """A weight or bias could not be loaded or does not fit its layer."""


class LimitError(SpecError):
    """The spec asks for more than the configured resource limits allow."""


class InputDataError(NNSpecError):
    """Arrays given to run or check do not fit the model's inputs."""


class ModelFileError(NNSpecError):
    """An ONNX file could not be read."""


class OutputError(NNSpecError):
    """A result could not be written where the user asked."""


class BackendUnavailable(NNSpecError):
    """A requested runtime or execution provider is not installed or not usable here."""
