"""``retrosearch opensearch connect``: make a running query service OpenSearch's embedding model."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from retrosearch.core import cli_options as opt
from retrosearch.core.config import Settings
from retrosearch.core.retrieval.report import write_json


@opt.with_settings(opt.OPENSEARCH, opt.HYBRID)
def connect(
    service_url: Annotated[str, typer.Option("--service-url", help="The query service OpenSearch should call, as "
                                             "OpenSearch reaches it, e.g. http://127.0.0.1:8000.")],
    api_key_env: Annotated[Optional[str], typer.Option(help="Environment variable holding the service's API key "
                                                       "(stored in the connector's encrypted credential).")] = None,
    trust_endpoint: Annotated[bool, typer.Option("--trust-endpoint", help="Allow OpenSearch to call this URL when its "
                                                 "settings forbid it (persistent cluster settings, this URL only).")] = False,
    json_out: opt.json_out_option("Write the ids as JSON to this file ('-': to stdout).", flag_was=True) = None,
    settings: Settings = None,
) -> None:
    """Make a running `retrosearch serve` an ml-commons model of OpenSearch (one per template: query
    and passage), deployed and checked; prints the model ids. Running it again reuses them.

    With --index-name the index gets a default search pipeline (neural queries use the query model;
    hybrid scores are normalised and weighted) and a default ingest pipeline (documents indexed
    without a vector are embedded by the passage model).
    """
    # lazy: keeps torch, transformers out of CLI start-up
    from retrosearch.plugin.opensearch.connect import connect_index

    index_name = settings.opensearch.index
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise opt.fail(f"--api-key-env {api_key_env}: the variable is not set")
    with opt.user_errors():
        connection = connect_index(settings, service_url, api_key=api_key, trust=trust_endpoint)
    if json_out:
        write_json(json_out, connection.as_dict())
        if opt.to_stdout(json_out):
            return
    for change in connection.trusted:
        typer.echo(f"cluster setting changed: {change}")
    for mode, remote in connection.models.items():
        verb = "created" if remote.created else "reused"
        typer.echo(f"{mode} model: {remote.model_id} ({verb}; connector {remote.connector_id})")
    for kind, name in connection.pipelines.items():
        typer.echo(f"{kind} pipeline: {name} (default of {index_name})")


@opt.with_settings(opt.MODEL, opt.OPENSEARCH, opt.HYBRID)
def deploy_model(
    json_out: opt.json_out_option("Write the model ids and checks as JSON to this file ('-': to stdout).",
                                  flag_was=True) = None,
    settings: Settings = None,
) -> None:
    """Run the encoder (--model, a BERT-like checkpoint) inside OpenSearch as an ml-commons local model
    (two when its query and passage templates differ): exported to ONNX, uploaded in chunks, deployed
    and checked against our encoder; prints the model ids. Running it again reuses them.

    With --index-name the index gets a default search pipeline (neural queries use this model) and a
    default ingest pipeline (documents indexed without a vector are embedded with the passage template),
    replacing what `opensearch connect` set: one command switches the index between the two.
    """
    # lazy: keeps torch, transformers out of CLI start-up
    from retrosearch.plugin.opensearch.connect import deploy_local

    with opt.user_errors():
        local = deploy_local(settings, settings.encoder.model)
    if json_out:
        write_json(json_out, local.as_dict())
        if opt.to_stdout(json_out):
            return
    for model in local.models:
        verb = "deployed" if model.created else "reused"
        checks = ", ".join(f"{kind} {cos:.6f}" for kind, cos in model.parity.items())
        typer.echo(f"{model.model_id} ({verb} {model.name!r}; lowest cosine to our encoder: {checks})")
    for kind, name in local.pipelines.items():
        typer.echo(f"{kind} pipeline: {name} (default of {settings.opensearch.index})")


def register(opensearch_group: typer.Typer) -> None:
    """Add ``connect`` and ``deploy-model`` to the ``retrosearch opensearch`` group."""
    opensearch_group.command()(connect)
    opensearch_group.command("deploy-model")(deploy_model)
