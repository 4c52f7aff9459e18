"""The ``retrosearch`` command as a click object, for the documentation's CLI reference (mkdocs-click).

Kept out of :mod:`retrosearch.cli` so that ``retrosearch --help`` does not build it.
"""

from __future__ import annotations

import typer

from retrosearch.cli import app

#: The click group Typer builds from the app: every command, option and help text as ``--help`` shows them.
command = typer.main.get_command(app)
