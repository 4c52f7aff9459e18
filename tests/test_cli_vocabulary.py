"""One vocabulary for the whole command line, checked against every command of the app.

The table (docs/reference/options.md) gives each option name one meaning; this walks every command
(``typer.main.get_command(app)``, recursively) and checks the commands keep to it: every option is
in the table, the table names no option that no command has, a name takes the same kind of value
everywhere, fixed choices are choices, old spellings are hidden and say what replaced them, and
help texts show defaults one way.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Annotated, Optional

import pytest
import typer
from typer.testing import CliRunner

from retrosearch import cli_vocabulary as vocabulary
from retrosearch.cli import app
from retrosearch.core import cli_options as opt

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "options.md"

#: Options whose values are a fixed list: each must be parsed as a choice in every command.
FIXED_CHOICES = {
    "--backend", "--faiss-backend", "--eval-backend", "--mode", "--sink", "--on-error", "--method", "--part",
    "--rerun", "--engine", "--space-type", "--hybrid-normalization", "--dtype", "--runtime", "--quantize",
    "--pooling", "--embeddings-mode", "--proxy-location", "--precision", "--prompt", "--pairs", "--masking",
    "--lora-export", "--knn-encoder",
}


@pytest.fixture(scope="module")
def uses() -> list[vocabulary.Use]:
    return vocabulary.uses()


@pytest.fixture(scope="module")
def table() -> dict[str, str]:
    """The page's rows: every option name in the first column -> the row's meaning."""
    rows = {}
    for line in PAGE.read_text().split("## Renamed options")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and cells[0].startswith("`"):
            for name in re.findall(r"`([^`]+)`", cells[0]):
                rows[name] = cells[2]
    return rows


def test_the_page_is_generated_from_the_commands():
    assert PAGE.read_text() == vocabulary.render(), "run: python -m retrosearch.cli_vocabulary"


def test_every_visible_option_is_in_the_table_and_every_row_is_an_option(uses, table):
    visible = {name for use in uses if not use.hidden for name in use.names}
    assert sorted(visible - set(table)) == [], "options missing from docs/reference/options.md"
    assert sorted(set(table) - visible) == [], "rows of docs/reference/options.md that no command has"
    assert visible, "no options found: the walk over the app is broken"


def test_every_option_name_has_one_written_meaning(uses, table):
    primaries = {vocabulary.primary(use) for use in uses if not use.hidden}
    assert sorted(primaries - set(vocabulary.MEANINGS)) == [], "write their meaning in MEANINGS"
    assert sorted(set(vocabulary.MEANINGS) - primaries) == [], "MEANINGS of options no command has"
    for name in primaries:
        assert table[name] == vocabulary.MEANINGS[name]


def test_a_name_means_the_same_kind_of_value_in_every_command(uses):
    """Same name, same meaning: the same value kind (and choices) and the same other names everywhere."""
    by_name: dict[str, set] = {}
    names_of: dict[str, set] = {}
    for use in uses:
        if use.hidden:
            continue
        # a choice may offer fewer values in one command (the training benchmark's two precisions)
        by_name.setdefault(vocabulary.primary(use), set()).add(use.value.split(" ")[0])
        for name in use.names:
            names_of.setdefault(name, set()).add(vocabulary.primary(use))
    mixed = {name: kinds for name, kinds in by_name.items() if len(kinds) > 1}
    assert mixed == {}, "one option name, several kinds of value"
    shared = {name: rows for name, rows in names_of.items() if len(rows) > 1}
    assert shared == {}, "a short or negative name that stands for different options"


def test_fixed_choices_are_choices(uses):
    seen = set()
    for use in uses:
        if vocabulary.primary(use) in FIXED_CHOICES:
            seen.add(vocabulary.primary(use))
            assert use.value.startswith("one of "), f"{use.command} {use.names[0]}: {use.value}, not a choice"
    assert seen == FIXED_CHOICES


def test_a_wrong_choice_is_refused_with_the_choices():
    result = CliRunner().invoke(app, ["eval", "--collection", "x", "--backend", "faiss-lsh"])
    assert result.exit_code == 2
    assert "faiss-lsh" in result.output and "faiss-hnsw" in result.output


def test_help_shows_defaults_one_way(uses):
    for use in uses:
        rest = re.sub(r"\[default: [^\]]*\]", "", use.help)
        assert "(default" not in use.help and not re.search(r"\bdefault\b", rest, re.I), (
            f"{use.command} {use.names[0]}: {use.help!r} (write defaults as [default: x])"
        )


def test_old_spellings_are_hidden_and_each_says_what_replaced_it(uses):
    spellings = vocabulary.old_spellings()
    assert spellings, "no deprecated spellings found"
    hidden = {(use.command, name) for use in uses if use.hidden for name in use.names}
    assert hidden == {(s.command, s.name) for s in spellings}, "hidden options are exactly the old spellings"
    for command, cmd in vocabulary.commands():
        for name, alias in getattr(cmd.callback, "deprecated_aliases", {}).items():
            given = True if alias.alias.is_flag else ["x"] if alias.option == "--corpus" else "x"
            lines = []
            original = typer.secho
            typer.secho = lambda message, **kw: lines.append(message)  # noqa: E731
            try:
                opt.resolve_deprecated({name: alias}, {name: given, alias.target: None})
            finally:
                typer.secho = original
            expected = f"warning: {alias.alias.name} is deprecated and will be removed; use {alias.instead}"
            assert lines == [expected], f"{command} {alias.alias.name}"


@pytest.mark.parametrize(("argv", "line"), [
    (["search", "--index", "/nonexistent", "--json", "a query"],
     "warning: --json is deprecated and will be removed; use --json-out -"),
    (["ingest", "--input", "/nonexistent/docs.jsonl", "--out", "/nonexistent/out"],
     "warning: --input is deprecated and will be removed; use --corpus"),
])
def test_an_old_spelling_still_runs_the_command_with_one_warning_line(argv, line):
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output  # the command ran on to its own check of the missing path
    err = result.stderr.splitlines()
    assert err[0] == line and len([e for e in err if "deprecated" in e]) == 1
    assert "/nonexistent" in err[-1]
    assert "--json" not in CliRunner().invoke(app, [argv[0], "--help"]).output.replace("--json-out", "")


def _tiny_command():
    """A command with every kind of old spelling, to check what the values become."""
    seen = {}

    @opt.accept_deprecated
    def command(
        corpus: Annotated[list[Path], typer.Option("--corpus"), *opt.deprecated("--input")],
        workers: Annotated[float, typer.Option(help="Workers."), *opt.deprecated("--num-workers")] = 2.0,
        out: Annotated[Optional[Path], typer.Option("--json-out"),
                       *opt.deprecated("--json", value="-")] = None,
        skip: Annotated[bool, typer.Option(help="Skip."), *opt.deprecated("--keep", value=False)] = False,
    ) -> None:
        seen.update(corpus=[str(c) for c in corpus], workers=workers, out=out and str(out), skip=skip)

    tiny = typer.Typer()
    tiny.command()(command)
    tiny.command("other")(lambda: None)
    return tiny, seen


@pytest.mark.parametrize(("argv", "expected"), [
    (["--corpus", "a"], {"corpus": ["a"], "workers": 2.0, "out": None, "skip": False}),
    (["--input", "a", "--input", "b", "--num-workers", "3", "--json"],
     {"corpus": ["a", "b"], "workers": 3.0, "out": "-", "skip": False}),
    (["--corpus", "a", "--workers", "4", "--num-workers", "3"], {"corpus": ["a"], "workers": 4.0, "out": None,
                                                                 "skip": False}),
    (["--corpus", "a", "--skip", "--keep"], {"corpus": ["a"], "workers": 2.0, "out": None, "skip": True}),
], ids=["new", "old", "new-wins", "flag"])
def test_old_spellings_set_the_new_option(argv, expected):
    tiny, seen = _tiny_command()
    result = CliRunner().invoke(tiny, ["command", *argv])
    assert result.exit_code == 0, result.output
    assert seen == expected
    old = ("--input", "--num-workers", "--json", "--keep")
    assert result.stderr.count("deprecated") == sum(a in argv for a in old)


def test_a_required_option_given_by_neither_spelling_is_missing():
    tiny, _ = _tiny_command()
    result = CliRunner().invoke(tiny, ["command"])
    assert result.exit_code == 2 and "missing option --corpus" in result.output
    help_text = CliRunner().invoke(tiny, ["command", "--help"]).output
    assert "[required]" in help_text and "[default: (2.0)]" in help_text and "--input" not in help_text


def test_option_types_are_what_typer_parses():
    """The annotations the helper writes are plain Typer annotations (no marker left for Typer to see)."""
    tiny, _ = _tiny_command()
    command = tiny.registered_commands[0].callback
    for annotation in command.__annotations__.values():
        metadata = getattr(annotation, "__metadata__", ())
        assert not any(isinstance(m, opt.Deprecated) for m in metadata)
        assert typing.get_origin(annotation) is Annotated
