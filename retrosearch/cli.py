"""The ``retrosearch`` command: each layer registers its own sub-commands here."""

from __future__ import annotations

import typer

from retrosearch.core.startup import configure_process

# Before any command module is imported: offline hub, tokenizer threads, Ray auth (see startup.py).
configure_process()

from retrosearch import quickstart  # noqa: E402
from retrosearch.benchmarks import cli as benchmarks_cli  # noqa: E402
from retrosearch.core import cli as core_cli  # noqa: E402
from retrosearch.ingest import cli as ingest_cli  # noqa: E402
from retrosearch.local.opensearch import cli as local_opensearch_cli  # noqa: E402
from retrosearch.pipeline import cli as pipeline_cli  # noqa: E402
from retrosearch.plugin.opensearch import cli as plugin_opensearch_cli  # noqa: E402
from retrosearch.plugin.serve import cli as serve_cli  # noqa: E402
from retrosearch.trainers import cli as trainers_cli  # noqa: E402

app = typer.Typer(
    name="retrosearch",
    help="Dense retrieval: embed collections, search them with FAISS or OpenSearch, evaluate, train encoders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
core_cli.register(app)
serve_cli.register(app)
plugin_opensearch_cli.register(local_opensearch_cli.register(app))
benchmarks_cli.register(app)
ingest_cli.register(app)
quickstart.register(app)
trainers_cli.register(app)
pipeline_cli.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
