"""Generated blocks in documentation pages: a report command rewrites what sits between two marker
lines of a page (``docs/benchmarks/methods.md``, ``docs/benchmarks/pretraining.md``) and leaves the
rest of the page alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from retrosearch.core import cli_options as opt

# --readme: the option's name before the blocks moved from README.md into the documentation.
DocsPage = Annotated[Optional[Path], typer.Option(
    "--docs-page", help="Also rewrite this documentation page's generated block (between its marker lines)."),
    *opt.deprecated("--readme")]


def relative_folder(folder: Path, page: Path) -> str:
    """``folder`` as a link from ``page``, so images and links render where the page is read."""
    return Path(os.path.relpath(folder.resolve(), page.resolve().parent)).as_posix()


def splice(page: Path, block: str, start: str, end: str) -> None:
    """Put ``block`` (which begins with ``start`` and ends with ``end``) between the page's marker lines
    (they must be there, once each, in that order); nothing else of the page changes."""
    text = page.read_text() if page.is_file() else ""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise opt.fail(f"{page}: needs the lines {start!r} and {end!r} once each, in that order")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    page.write_text(head + block + tail)
