"""Stage manifests and the hashes that decide whether a stage's output is still current.

A stage's *key* hashes its resolved settings and its inputs: the content of the input files it
reads and the output hash of each upstream stage. Downstream keys follow upstream *outputs*, not
upstream settings, so a change that leaves an output as it was (an evaluation-only setting, say)
stops there, and one that changes it reruns everything that consumed it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

MANIFEST_FILE = "manifest.json"

Status = Literal["running", "done"]


def hash_json(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys; paths and other objects as strings)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def hash_file(path: Path) -> str:
    """sha256 of a file's content."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def hash_files(paths: dict[str, Path]) -> dict[str, str]:
    """``{name: sha256}`` of each file; a missing file is an error naming it."""
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"input file not found: {', '.join(missing)}")
    return {name: hash_file(path) for name, path in paths.items()}


def now() -> str:
    """The current UTC time, to the second, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Manifest(BaseModel):
    """What a stage ran with and what it produced (``WORK_DIR/<stage>/manifest.json``).

    ``status`` is ``running`` from the moment the stage starts until it ends; a ``running``
    manifest with the current key means the stage was interrupted and may resume.
    """

    stage: str
    key: str
    status: Status
    settings: dict[str, Any]
    inputs: dict[str, str] = Field(description="input name -> sha256 (files) or upstream output hash")
    outputs: dict[str, str] = Field(default_factory=dict, description="what the stage produced, e.g. model -> folder")
    output_hash: str | None = Field(None, description="what downstream stages key on")
    figures: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None
    started_at: str | None = None
    finished_at: str | None = None


def stage_key(stage: str, settings: dict[str, Any], inputs: dict[str, str]) -> str:
    """The hash a stage's manifest must carry for its output to be current."""
    return hash_json({"stage": stage, "settings": settings, "inputs": inputs})


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest in ``folder``, or None when there is none (or it is unreadable)."""
    path = folder / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``manifest`` atomically (a kill never leaves half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values that differ between two settings dicts, e.g. ``steps: 20 -> 40``."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changes += changed_keys(a, b, name + ".")
        elif a != b:
            changes.append(f"{name}: {a!r} -> {b!r}")
    return changes
