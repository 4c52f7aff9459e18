"""Function-level imports carry their reason: a lazy import is kept only where start-up time needs it.

Every ``import`` inside a function or method of the package's folders needs a ``# lazy: <reason>``
comment on its own line(s), directly above it, or directly above the run of consecutive imports it
belongs to. Imports under ``if TYPE_CHECKING:`` are not function-level and need none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "plugin", "local", "ingest", "trainers", "benchmarks", "retrosearch")
MARK = "lazy:"


def _is_import(node: ast.AST) -> bool:
    return isinstance(node, (ast.Import, ast.ImportFrom))


def _bodies(node: ast.AST):
    """Every statement list that runs inside a function (or method) below ``node``."""
    for child in ast.walk(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(child):
                for field in ("body", "orelse", "finalbody"):
                    block = getattr(inner, field, None)
                    if isinstance(block, list):
                        yield block
                for handler in getattr(inner, "handlers", None) or []:
                    yield handler.body
                for case in getattr(inner, "cases", None) or []:
                    yield case.body


def _comment_above(lines: list[str], lineno: int) -> bool:
    """Whether the line above 1-based ``lineno`` is a ``# lazy:`` comment."""
    above = lines[lineno - 2].strip() if lineno >= 2 else ""
    return above.startswith("#") and MARK in above


def unexplained_imports(path: Path, root: Path = REPO) -> list[str]:
    """``file:line`` of each function-level import in ``path`` without a ``lazy:`` reason."""
    source = path.read_text()
    lines = source.splitlines()
    found: set[int] = set()
    seen: set[int] = set()
    for body in _bodies(ast.parse(source, filename=str(path))):
        if id(body) in seen:
            continue
        seen.add(id(body))
        run_start = None
        for index, statement in enumerate(body):
            if not _is_import(statement):
                run_start = None
                continue
            if run_start is None or not _is_import(body[index - 1]):
                run_start = statement.lineno
            own_lines = lines[statement.lineno - 1 : statement.end_lineno]
            explained = (
                any(MARK in line.partition("#")[2] for line in own_lines)
                or _comment_above(lines, statement.lineno)
                or _comment_above(lines, run_start)
            )
            if not explained:
                found.add(statement.lineno)
    return [f"{path.relative_to(root)}:{line}" for line in sorted(found)]


def _modules() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py"))


def test_every_function_level_import_says_why_it_is_lazy():
    missing = [where for path in _modules() for where in unexplained_imports(path)]
    assert not missing, "function-level imports without a '# lazy: <reason>' comment:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("def f():\n    import json\n    return json\n", [2]),
        ("def f():\n    import torch  # lazy: keeps torch out of CLI start-up\n    return torch\n", []),
        ("def f():\n    # lazy: keeps torch out of CLI start-up\n    import torch\n    import faiss\n", []),
        ("def f():\n    # why not\n    import torch\n", [3]),
        ("class A:\n    def m(self):\n        if self:\n            from os import path\n", [4]),
        ("import json\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n", []),
    ],
)
def test_the_check_flags_an_import_without_a_reason(tmp_path, source, flagged):
    path = tmp_path / "planted.py"
    path.write_text(source)
    assert unexplained_imports(path, root=tmp_path) == [f"planted.py:{line}" for line in flagged]
