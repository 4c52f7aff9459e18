"""The documentation: the site builds with --strict and shows every page; the README stays a
five-minute read whose commands, links and command map match the tree."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.core
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
SETUP = ["bash scripts/quickstart.sh", "bash scripts/test.sh"]


def _nav_pages(nav) -> list[str]:
    """Every page the nav of mkdocs.yml names, at any depth."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def _command_paths() -> list[tuple[str, ...]]:
    """Every command of `retrosearch`, as the words that call it (groups and their sub-commands)."""
    from retrosearch.cli_reference import command

    paths = []

    def walk(group, prefix: tuple[str, ...]) -> None:
        for name, sub in group.commands.items():
            if sub.hidden:
                continue
            paths.append((*prefix, name))
            if hasattr(sub, "commands"):
                walk(sub, (*prefix, name))

    walk(command, ())
    return paths


def test_the_site_builds_strictly(tmp_path: Path):
    # --strict turns every warning into a failure: a broken link or anchor, a page missing from the nav
    # (mkdocs.yml: validation.nav.omitted_files), a nav entry without its page.
    mkdocs = Path(sys.executable).with_name("mkdocs")
    site = tmp_path / "site"
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    # use_directory_urls: false, so the pages open from the file system
    assert (site / "index.html").is_file() and (site / "guides" / "serve.html").is_file()
    # the CLI reference is generated from the command itself
    reference = (site / "reference" / "cli.html").read_text()
    assert "retrosearch ingest [OPTIONS]" in reference and "--ray-address" in reference
    # a benchmark page's plot, which lives in benchmarks/results/, is part of the site
    assert (site / "benchmarks" / "results" / "report" / "methods.png").is_file()


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    nav = set(_nav_pages(config["nav"]))
    pages = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert config["use_directory_urls"] is False


def test_readme_is_short_and_starts_with_the_two_setup_commands():
    text = README.read_text()
    assert len(text.splitlines()) < 200
    blocks = FENCE.findall(text)
    assert [b.strip() for b in blocks[:2]] == SETUP


def test_readme_links_point_to_files_that_exist():
    links = [url for url in LINK.findall(README.read_text()) if "://" not in url and not url.startswith("#")]
    assert links, "the README links to the documentation"
    missing = [url for url in links if not (REPO / url.split("#")[0]).exists()]
    assert missing == []


def test_readme_command_map_is_the_command_tree():
    text = README.read_text()
    section = text.split("## Which command for what", 1)[1].split("\n## ", 1)[0]
    named = {tuple(words.split()[1:]) for cell in re.findall(r"^\| (.*?) \|", section, flags=re.M)
             for words in re.findall(r"`(retrosearch [^`]+)`", cell)}
    paths = set(_command_paths())
    # a group (`bench`, `train`, ...) is on the map through its sub-commands
    shown = named | {words[:n] for words in named for n in range(1, len(words))}
    assert paths - shown == set(), "commands missing from the README's map"
    assert named - paths == set(), "the README's map names commands that do not exist"


def _command_lines(path: Path) -> list[list[str]]:
    """`retrosearch ...` lines of a page's bash blocks (continuations joined, comments cut)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("retrosearch "):
                lines.append(shlex.split(line, comments=True)[1:])
    return lines


DOC_COMMANDS = [(path.relative_to(REPO).as_posix(), argv)
                for path in [README, *sorted((REPO / "docs").rglob("*.md"))] for argv in _command_lines(path)]
DOC_IDS = [f"{page}: {' '.join(argv[:2])}" for page, argv in DOC_COMMANDS]


@pytest.mark.parametrize(("page", "argv"), DOC_COMMANDS, ids=DOC_IDS)
def test_documented_command_lines_parse(page: str, argv: list[str]):
    # The CLI's own parser: an option renamed or removed in the code fails here until the docs follow.
    from retrosearch.cli_reference import command

    words = list(argv)
    cmd, name = command, "retrosearch"
    while hasattr(cmd, "commands") and words and words[0] in cmd.commands:
        name = words.pop(0)
        cmd = cmd.commands[name]
    if hasattr(cmd, "commands"):  # a group with its own options (`serve`)
        cmd = typer.core.TyperCommand(name, params=cmd.params)
    with cmd.make_context(name, words):
        pass
