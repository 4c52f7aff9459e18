"""The ``--config`` file every command reads: one JSON or YAML document, one section per settings model.

The sections are the :class:`~retrosearch.core.config.Settings` groups (``encoder``, ``faiss``,
``opensearch``, ``serve``) and, for the ``train`` commands, ``train`` (how to run: steps, workers,
storage) and ``method`` (what to train). A command takes the sections it uses, so one file can
configure a whole workflow; a section nobody reads is refused, naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrosearch.core.config import Settings

TRAINING_SECTIONS = ("train", "method")


def known_sections() -> tuple[str, ...]:
    """Every top-level key a config file may have."""
    return (*Settings.model_fields, *TRAINING_SECTIONS)


def read_config_file(path: Path | None) -> dict[str, Any]:
    """The file's sections (empty without a file); YAML by its suffix (.yaml/.yml), JSON otherwise.

    Raises ValueError naming the file for unreadable text, a document that is not a mapping of
    mappings, or unknown sections.
    """
    if path is None:
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"--config {path}: {exc.strerror or exc}") from None
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        import yaml  # lazy: keeps yaml out of CLI start-up

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:  # its message carries the line and column
            raise ValueError(f"--config {path}: not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--config {path}: not valid JSON: {exc}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of sections, got {type(data).__name__}")
    unknown = sorted(set(data) - set(known_sections()))
    if unknown:
        raise ValueError(f"--config {path}: unknown sections {unknown} (expected some of {list(known_sections())})")
    for name, section in data.items():
        if not isinstance(section, dict):
            raise ValueError(f"--config {path}: section {name!r} must be a mapping, got {type(section).__name__}")
    return data
