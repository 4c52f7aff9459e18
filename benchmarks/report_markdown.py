"""``retrosearch bench report``: one Markdown report from the benchmarks' JSON, running what is missing.

The report folder holds one JSON per benchmark (``methods.json``, ``ann.json``, ``ingest.json``,
``serve.json``) with its plot beside it. A part whose JSON exists is reused; a missing part (or
one named in ``--rerun``) is run by its own ``retrosearch bench ...`` command first, so the figures
in the report are always the files' figures. The report starts with the machine and the code the
figures came from (``machine.json``, written whenever a part runs).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from retrosearch.benchmarks.ann import AnnSweep, summary
from retrosearch.benchmarks.docs_block import DocsPage, relative_folder, splice
from retrosearch.benchmarks.methods import from_json, plot, summary_table
from retrosearch.benchmarks.serve_speed import markdown
from retrosearch.benchmarks.vectors import Cell
from retrosearch.benchmarks.vectors import markdown as vectors_markdown
from retrosearch.core import cli_options as opt
from retrosearch.core.retrieval.metrics import MEASURES

Part = Literal["methods", "ann", "ingest", "serve", "vectors"]
PARTS: tuple[str, ...] = typing.get_args(Part)
#: The parts a report has unless --part says otherwise (vectors, quality against memory, is asked for).
DEFAULT_PARTS: tuple[str, ...] = ("methods", "ann", "ingest", "serve")
PartChoice = opt.choice_enum("PartChoice", PARTS)

#: The documentation's copy of the main table (docs/benchmarks/methods.md) sits between these lines;
#: ``--docs-page`` rewrites what is inside.
BLOCK_START = "<!-- bench-report:start (written by retrosearch bench report --docs-page) -->"
BLOCK_END = "<!-- bench-report:end -->"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, GPU, library versions and the git commit of the code."""
    from retrosearch.core.retrieval import versions  # lazy: keeps torch, faiss out of CLI start-up

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil  # lazy: optional here (ImportError handled)

        memory_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover - psutil is a dependency
        memory_gib = None
    gpu = "none"
    try:
        import torch  # lazy: optional here (ImportError handled)

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:  # pragma: no cover
        pass
    root = Path(__file__).resolve().parents[1]
    commit = _git(root, "rev-parse", "HEAD")
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_gib, "gpu": gpu,
            "platform": platform.platform(), "versions": versions(),
            "commit": (commit or "unknown") + (" (with uncommitted changes)" if dirty else "")}


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def part_commands(out: Path, collections: list[Path], model: str | None, opensearch_url: str | None,
                  scale: int) -> dict[str, list[str]]:
    """The ``retrosearch bench`` command line that writes each part's JSON into ``out``."""
    largest = max(collections, key=lambda c: (c / "corpus.jsonl").stat().st_size)
    common = [*(["--model", model] if model else [])]
    url = ["--opensearch-url", opensearch_url] if opensearch_url else []
    return {
        "methods": ["methods", *[a for c in collections for a in ("--collection", str(c))], *common, *url,
                    "--out", str(out)],
        "ann": ["ann", "--collection", str(largest), "--scale", str(scale), *common, *url, "--out", str(out)],
        "ingest": ["ingest", "--corpus", str(collections[0] / "corpus.jsonl"), *common, *url, "--runtime-variants",
                   "--json-out", str(out / "ingest.json")],
        "serve": ["serve", "--collection", str(collections[0]), *common, "--runtime-variants", "--soak", "0",
                  "--skip-ray", "--json-out", str(out / "serve.json")],
        "vectors": ["vectors", *[a for c in collections for a in ("--collection", str(c))], *common,
                    "--out", str(out)],
    }


def _section_methods(data: dict[str, Any], out: Path) -> list[str]:
    lines = ["## Retrieval methods", "",
             f"{data['model']} on the {data['split']} split of each collection; every method searches the same "
             "vectors. Bold: the best NDCG@10 of the collection.", "",
             "| collection | method | " + " | ".join(MEASURES) + " | search s |", "|" + "---|" * (len(MEASURES) + 3)]
    for collection, rows in data["collections"].items():
        top = max(r["ndcg@10"] for r in rows)
        for r in rows:
            cells = [f"**{r[m]:.4f}**" if m == "ndcg@10" and r[m] == top else f"{r[m]:.4f}" for m in MEASURES]
            lines.append(f"| {collection} | {r['method']} | " + " | ".join(cells) + f" | {r['search_seconds']:.2f} |")
    lines += ["", *[f"- {v}" for v in data.get("verdicts", [])],
              *[f"- not run: {k}: {v}" for k, v in data.get("not_run", {}).items()]]
    return lines + _image(out, "methods.png", "NDCG@10 per method and collection")


def _section_ann(data: dict[str, Any], out: Path) -> list[str]:
    lines = ["## Approximate search: recall against speed", "",
             f"{data['collection']} embeddings ({data['model']}) and a synthetic scale point, {data['num_queries']} "
             f"queries, recall@{data['k']} of exact search's top {data['k']}, queries/s of one batch call, p50 of "
             f"single queries, {data['cpus']} CPUs.", "", *[f"- {line}" for line in summary(AnnSweep.from_dict(data))]]
    lines += _image(out, "ann.png", "recall@10 against queries/s")
    lines += ["", "<details><summary>every point</summary>", "",
              "| scale | n | setting | recall@10 | queries/s | p50 ms | build s | MiB |", "|" + "---|" * 8]
    for p in data["points"]:
        lines.append(f"| {p['scale']} | {p['n']:,} | {p['label']} | {p['recall_at_10']:.3f} | {p['queries_per_s']:.0f} "
                     f"| {p['p50_ms']:.2f} | {p['build_seconds']:.0f} | {p['index_bytes'] / 2**20:.0f} |")
    return lines + ["", "</details>"]


def _section_ingest(data: dict[str, Any], out: Path) -> list[str]:
    lines = ["## Ingestion speed", "", f"{data['model']}, {data['docs']} documents, {data['cpus']} CPUs.", "",
             "| run | documents | seconds | docs/s |", "|---|---:|---:|---:|"]
    for name, r in data["results"].items():
        lines.append(f"| {name} | {r['docs']} | {r['seconds']:.1f} | {r['docs_per_s']:.2f} |")
    lines += ["", "  ".join(f"{k} = {v:.2f}" for k, v in data["ratios"].items())]
    return lines + _image(out, "ingest.png", "documents per second per run")


def _section_serve(data: dict[str, Any], out: Path) -> list[str]:
    return ["## Query service speed", "", markdown(data).rstrip(), *_image(out, "serve.png", "latency and queries/s")]


def _section_vectors(data: dict[str, Any], out: Path) -> list[str]:
    about = data.get("about", {})
    by_collection: dict[str, list[Cell]] = {}
    for cell in data["cells"].values():
        by_collection.setdefault(cell["collection"], []).append(Cell.from_dict(cell))
    lines = ["## Quality against memory per vector", "",
             f"{about.get('model', '?')} on the {about.get('split', 'test')} split; targets: int8 with "
             "rescoring within 0.002 NDCG@10 of float32, binary with rescoring within 0.01.", "",
             *[f"- {line}" for line in data.get("summary", [])], "", vectors_markdown(by_collection).rstrip()]
    return lines + _image(out, "vectors.png", "NDCG@10 against bytes per vector")


def _summary(data: dict[str, Any]) -> list[str]:
    return [f"NDCG@10 of {data['model']} on the {data['split']} split; bold: the collection's best.", "",
            summary_table(from_json(data)).rstrip()]


SECTIONS = {"methods": _section_methods, "ann": _section_ann, "ingest": _section_ingest,
            "serve": _section_serve, "vectors": _section_vectors}


def _image(out: Path, name: str, alt: str) -> list[str]:
    return ["", f"![{alt}]({name})"] if (out / name).exists() else []


def build_report(
    out: Path, parts: tuple[str, ...] = DEFAULT_PARTS, about: dict[str, Any] | None = None
) -> str:
    """The Markdown report of the parts whose JSON is in ``out``."""
    about = about or machine()
    v = about["versions"]
    lines = ["# RetroSearch benchmark report", "",
             f"Machine: {about['cpu']}, {about['cores']} cores, {about['memory_gib']} GiB memory, GPU: {about['gpu']}; "
             f"{about['platform']}.", "",
             "Code: commit " + about["commit"] + "; " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", ""]
    if "methods" in parts and (out / "methods.json").exists():
        lines += ["## Summary", "", *_summary(json.loads((out / "methods.json").read_text())), ""]
    for part in parts:
        path = out / f"{part}.json"
        if path.exists():
            lines += SECTIONS[part](json.loads(path.read_text()), out) + [""]
        else:
            lines += [f"## {part}", "", f"(no {path.name}: not run)", ""]
    return "\n".join(lines)


def docs_block(out: Path, page: Path, argv: list[str]) -> str:
    """The documentation page's block: the main table, the methods plot and the command that made them."""
    data = json.loads((out / "methods.json").read_text())
    folder = relative_folder(out, page)
    return "\n".join([BLOCK_START, "", *_summary(data), "",
                      f"![NDCG@10 per method and collection]({folder}/methods.png)", "",
                      f"Full report: [report.md]({folder}/report.md). Regenerated by", "", "```bash",
                      "retrosearch bench report " + " ".join(argv), "```", "", BLOCK_END])


def _display_argv(collections: list[Path], out: Path, model: str | None, page: Path | None) -> list[str]:
    # The command as a reader would type it from the repository root (no local URLs or absolute paths).
    def shown(path: Path) -> str:
        try:
            return os.path.relpath(path.resolve())
        except ValueError:
            return str(path)

    return [*[a for c in collections for a in ("--collection", shown(c))], *(["--model", model] if model else []),
            "--out", shown(out), *(["--docs-page", shown(page)] if page else [])]


@opt.accept_deprecated
def report_command(
    collection: Annotated[list[Path], typer.Option(help="BEIR folders; the first one is used for speed, the largest "
                                                        "for the ANN sweep.")],
    out: Annotated[Path, typer.Option(help="Report folder: each part's JSON and plot, and report.md.")],
    model: opt.Model = None,
    opensearch_url: opt.OpenSearchUrl = None,
    part: Annotated[Optional[list[PartChoice]], typer.Option("--part", help="Parts to include; repeatable.",
                                                                      show_default=" ".join(DEFAULT_PARTS))] = None,
    rerun: Annotated[Optional[list[PartChoice]], typer.Option(help="Parts to run again even if their JSON exists.")] = None,
    scale: Annotated[int, typer.Option(help="Synthetic scale point of the ANN sweep (vectors).")] = 1_000_000,
    docs_page: DocsPage = None,
) -> None:
    """Run the missing benchmarks and write report.md with every table, plot and the machine's description."""
    page = docs_page
    parts = tuple(opt.chosen_names(part) if part else DEFAULT_PARTS)
    rerun = opt.chosen_names(rerun or [])
    out.mkdir(parents=True, exist_ok=True)
    url = ",".join(opensearch_url) if opensearch_url else None  # the option may be repeated
    commands = part_commands(out, collection, model, url, scale)
    ran = False
    for name in parts:
        if (out / f"{name}.json").exists() and name not in (rerun or []):
            typer.echo(f"{name}: reusing {out / f'{name}.json'}")
            continue
        ran = True
        typer.echo(f"{name}: retrosearch bench {' '.join(commands[name])}")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "retrosearch.cli", "bench", *commands[name]])
        if result.returncode != 0:
            raise opt.fail(f"the {name} benchmark failed (exit {result.returncode}); the report was not written", 1)
        typer.echo(f"{name}: done in {time.monotonic() - started:.0f}s")
    if (out / "methods.json").exists():
        # Drawn again from the JSON, so a reused part gets the current plot layout too.
        plot(from_json(json.loads((out / "methods.json").read_text())), out / "methods.png")
    # The machine and commit of the figures: recorded when a part runs, kept while every part is reused.
    about_path = out / "machine.json"
    if ran or not about_path.exists():
        about_path.write_text(json.dumps(machine(), indent=2) + "\n")
    (out / "report.md").write_text(build_report(out, parts, json.loads(about_path.read_text())))
    typer.echo(f"wrote {out / 'report.md'}")
    if page is not None:
        if not (out / "methods.json").exists():
            raise opt.fail("--docs-page needs the methods part (its JSON is the page's table)")
        block = docs_block(out, page, _display_argv(collection, out, model, page))
        splice(page, block, BLOCK_START, BLOCK_END)
        typer.echo(f"wrote the report block of {page}")
