"""The error every reader raises: it names the file, the line (or row) and the reason."""

from __future__ import annotations

from pathlib import Path

from retrosearch.core.errors import UserError


class CollectionError(UserError, ValueError):
    """A record that cannot be read; ``str()`` reads ``file:line: reason``."""

    def __init__(self, path: str | Path, line: int | None, reason: str, unit: str = "line") -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        self.unit = unit
        where = f"{self.path}" if line is None else f"{self.path}:{line}"
        if unit != "line" and line is not None:
            where = f"{self.path} ({unit} {line})"
        super().__init__(f"{where}: {reason}")
