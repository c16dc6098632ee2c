"""The one error type users see for bad input: a single line naming the file, record and problem."""

from __future__ import annotations

from pathlib import Path


def first_line(error: BaseException) -> str:
    """The first line of an exception's message ("" when it has none): libraries' messages run over many lines."""
    text = str(error)
    return text.splitlines()[0] if text.strip() else ""


class AmberInputError(ValueError):
    """Bad user input (file, record, config key or architecture string).

    The CLI turns it into a one-line message on stderr and exit code 2.
    """

    def __init__(self, problem: str, source: str | Path | None = None, record: str | int | None = None):
        self.problem = problem
        self.source = str(source) if source is not None else None
        self.record = record
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.source or ""
        if self.record is not None:
            where = f"{where}: record {self.record}" if where else f"record {self.record}"
        return f"{where}: {self.problem}" if where else self.problem
