"""mkdocs hooks (mkdocs.yml ``hooks:``): repository files that the docs link to become part of the site.

Docs pages link to files outside ``docs/`` by their real relative path (``../../benchmarks/results/
report/report.md``), so the links also work on GitHub and the report commands can write them.
mkdocs sees only ``docs/``, so every such file (and, for a linked Markdown page, whatever it links
to in turn) is added to the site at its path in the repository, and the links are rewritten to
point there. A link to a file that does not exist is left alone, and ``mkdocs build --strict``
fails on it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[1]
# A Markdown link or image target: ](target) or ](target "title").
LINK = re.compile(r'(\]\()([^)\s]+)((?:\s+"[^"]*")?\))')


def _local_target(page: Path, url: str) -> tuple[Path, str] | None:
    """The file a relative link of ``page`` points at, and its #anchor; None for URLs and anchors."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path or url.startswith("/"):
        return None
    return (page.parent / unquote(parts.path)).resolve(), ("#" + parts.fragment if parts.fragment else "")


def _site_uri(path: Path, docs_dir: Path) -> str | None:
    """Where ``path`` sits in the site: its path under docs/, else its path in the repository."""
    for root in (docs_dir, REPO):
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return None


def on_files(files, config):
    """Add every repository file outside docs/ that a page links to (and what linked pages link to)."""
    docs_dir = Path(config.docs_dir).resolve()
    pending = [Path(f.abs_src_path) for f in files.documentation_pages()]
    added: set[Path] = set()
    while pending:
        page = pending.pop()
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            found = _local_target(page, match.group(2))
            if found is None:
                continue
            target = found[0]
            if target in added or target.is_relative_to(docs_dir) or not target.is_relative_to(REPO):
                continue
            if not target.is_file():
                continue  # left as a broken link: the strict build names it
            uri = target.relative_to(REPO).as_posix()
            if files.get_file_from_path(uri) is not None:
                raise PluginError(f"{target} would sit at {uri!r} in the site, where docs/{uri} is already")
            files.append(File.generated(config, uri, abs_src_path=str(target)))
            added.add(target)
            if target.suffix == ".md":
                pending.append(target)
    return files


def on_page_markdown(markdown, page, config, files):
    """Point each link at the file's place in the site (only links to files the site has)."""
    docs_dir = Path(config.docs_dir).resolve()
    source = Path(page.file.abs_src_path)
    here = posixpath.dirname(page.file.src_uri) or "."

    def relink(match: re.Match) -> str:
        found = _local_target(source, match.group(2))
        uri = _site_uri(found[0], docs_dir) if found else None
        if uri is None or files.get_file_from_path(uri) is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(uri, here) + found[1] + match.group(3)

    return LINK.sub(relink, markdown)
