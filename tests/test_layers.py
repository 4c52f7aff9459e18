"""The layer contracts (.importlinter): layers import downward only and no package has an import loop,
function-level imports included.

``lint-imports`` reads a package from its folder, but the checkout maps top-level folders onto the
``retrosearch`` namespace (setup.py), so each test first lays the sources out as installed.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _layers() -> list[str]:
    """The folders setup.py maps to ``retrosearch.<folder>``."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "LAYERS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no LAYERS list")


def installed_layout(dest: Path) -> Path:
    """Copy the Python sources into ``dest/retrosearch/...`` as they are installed; ``dest``."""
    package = dest / "retrosearch"
    shutil.copytree(REPO / "retrosearch", package, ignore=shutil.ignore_patterns("__pycache__"))
    for layer in _layers():
        shutil.copytree(REPO / layer, package / layer, ignore=shutil.ignore_patterns("__pycache__", "results"))
    return dest


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [str(Path(sys.executable).with_name("lint-imports")), str(REPO / ".importlinter")]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    return installed_layout(tmp_path_factory.mktemp("layout"))


def test_the_tree_keeps_its_layers(layout):
    result = lint_imports(layout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "names"),
    [
        # The shared core reaching up into the query service.
        ("core/index/base.py", "from retrosearch.plugin.serve import schemas", "retrosearch.core.index.base"),
        # A trainer reaching into the benchmarks, hidden in a function (the kind of import that hides a loop).
        ("trainers/finetune/mining.py", "def _planted():\n    from retrosearch.benchmarks import plots\n",
         "retrosearch.trainers.finetune.mining"),
        # A loop inside one layer (the command module imports the Ray Serve app lazily; back again):
        # the acyclic contract names the package and the import that closes it.
        ("plugin/serve/ray_app.py", "def _planted():\n    from retrosearch.plugin.serve import cli\n",
         "No cycles are allowed in retrosearch.plugin.serve"),
    ],
)
def test_a_planted_upward_import_breaks_the_contract(layout, tmp_path, module, planted, names):
    root = tmp_path / "planted"
    shutil.copytree(layout, root)
    target = root / "retrosearch" / module
    target.write_text(target.read_text() + "\n\n" + planted + "\n")
    result = lint_imports(root)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and names in result.stdout, result.stdout
