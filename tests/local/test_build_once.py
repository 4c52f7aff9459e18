"""The atomic build-once step shared by the distribution and the libtorch folder (local/opensearch/assembly.py)."""

from __future__ import annotations

from pathlib import Path

from retrosearch.local.opensearch.assembly import _build_once


def _builder(calls: list[Path]):
    def build(work: Path) -> Path:
        calls.append(work)
        built = work / "tree"
        built.mkdir()
        (built / "DONE").write_text("ok")
        return built

    return build


def test_builds_once_and_leaves_only_the_finished_tree(tmp_path):
    calls: list[Path] = []
    target = tmp_path / "cache" / "home"
    assert _build_once(target, "DONE", "assemble", _builder(calls)) == target
    assert _build_once(target, "DONE", "assemble", _builder(calls)) == target
    assert len(calls) == 1 and (target / "DONE").read_text() == "ok"
    assert sorted(p.name for p in target.parent.iterdir()) == [".assemble.lock", "home"]


def test_an_interrupted_build_is_redone_without_touching_another_kinds_work(tmp_path):
    parent = tmp_path / "cache"
    stale, other = parent / ".tmp-libtorch-old", parent / ".tmp-assemble-running"
    stale.mkdir(parents=True)
    other.mkdir()
    half = parent / "torch"
    half.mkdir()  # no marker: a build cut short, or a marker deleted by hand
    calls: list[Path] = []
    assert _build_once(half, "DONE", "libtorch", _builder(calls)) == half
    assert len(calls) == 1 and (half / "DONE").is_file()
    assert not stale.exists() and other.is_dir()
