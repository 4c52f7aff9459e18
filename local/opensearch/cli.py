"""``retrosearch opensearch start|stop|status|assemble``: the local node, as a command group.

The query side adds ``connect`` to the same group (:mod:`retrosearch.plugin.opensearch.cli`).

The work is done by :mod:`.assembly`, :mod:`.node_config` and :mod:`.server` (standard library
only, so this group starts fast); this module only maps options.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from retrosearch.core import cli_options as opt
from retrosearch.local.opensearch import assembly, cluster, server
from retrosearch.local.opensearch.node_config import MARKER, ServerError, ServerSettings, with_ml

opensearch_app = typer.Typer(
    help="A local single-node OpenSearch with k-NN, assembled from Maven Central and cached.", no_args_is_help=True
)

Version = Annotated[Optional[str], typer.Option(help="OpenSearch version.", show_default="2.19.1")]
Port = Annotated[Optional[int], typer.Option(help="HTTP port.", show_default="9250")]
Heap = Annotated[Optional[str], typer.Option(help="JVM heap, -Xms and -Xmx.",
                                              show_default="1g, 2g with --with-ml")]
WithMl = Annotated[
    bool,
    typer.Option("--with-ml", help="Add job-scheduler, ml-commons and neural-search (neural/hybrid queries, our encoder "
                 "as a remote model) with the settings a one-node cluster needs."),
]
Setting = Annotated[Optional[list[str]], typer.Option("--setting", help="Extra opensearch.yml KEY=VALUE; repeatable.")]
Plugin = Annotated[
    Optional[list[str]],
    typer.Option("--plugin", help="Plugin artifactId under org.opensearch.plugin, in install order; repeatable.",
                 show_default="opensearch-knn"),
]
CacheDir = Annotated[Optional[Path], typer.Option(help="Cache root.",
                                                  show_default="$RETROSEARCH_CACHE or ~/.cache/retrosearch")]
RunDir = Annotated[Optional[Path], typer.Option(
    help="Node config/data/logs.",
    show_default="<cache>/opensearch/<v>/run/<port>, run/cluster-<port> with --nodes or --secure")]
Nodes = Annotated[Optional[int], typer.Option(
    "--nodes", help="Run a cluster of this many nodes on HTTP ports PORT, PORT+1, ... "
    "(transport ports 100 above); heap 512m each, 1g with --with-ml.", show_default="1")]
Secure = Annotated[bool, typer.Option(
    "--secure", help="Security plugin on: TLS with a generated CA, users admin, writer and searcher "
    "with generated passwords in 0600 files (see `status`).")]

Wait = Annotated[float, typer.Option(help="Seconds to wait for a yellow node (green cluster: at least 300).")]


def _cluster(settings: ServerSettings, nodes: int | None, secure: bool, heap_given: bool = False):
    """The cluster these options ask for, or None for the plain single node."""
    if nodes is None and not secure:
        return None
    try:
        return cluster.cluster_settings(settings, nodes or 1, secure, heap_given)
    except ServerError as exc:
        raise opt.fail(str(exc)) from None


def _settings(version, port, heap=None, setting=None, plugin=None, cache_dir=None, run_dir=None,
              ml=False) -> ServerSettings:
    extra = {}
    for item in setting or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise opt.fail(f"--setting expects KEY=VALUE, got {item!r}")
        extra[key.strip()] = value.strip()
    defaults = ServerSettings()
    settings = ServerSettings(
        version=version or defaults.version, port=port or defaults.port, heap=heap or defaults.heap,
        cache_dir=cache_dir or defaults.cache_dir, run_dir=run_dir, extra=extra,
        plugins=tuple(plugin) if plugin else defaults.plugins,
    )
    return with_ml(settings, heap_given=heap is not None) if ml else settings


@opensearch_app.command()
def start(version: Version = None, port: Port = None, heap: Heap = None, setting: Setting = None, plugin: Plugin = None,
          with_ml: WithMl = False, cache_dir: CacheDir = None, run_dir: RunDir = None, nodes: Nodes = None,
          secure: Secure = False,
          wait: Wait = 180.0) -> None:
    """Assemble the node if needed, start it and wait until it is healthy."""
    settings = _settings(version, port, heap, setting, plugin, cache_dir, run_dir, ml=with_ml)
    began = time.monotonic()
    group = _cluster(settings, nodes, secure, heap_given=heap is not None)
    if group is not None:
        try:
            info = cluster.start(group, wait_s=max(wait, 300.0))
        except ServerError as exc:
            raise opt.fail(str(exc), 1) from None
        typer.echo(f"OpenSearch cluster ({info['health']}, {info['number_of_nodes']} nodes) at "
                   f"{','.join(info['urls'])} ({time.monotonic() - began:.1f}s)")
        if group.secure:
            typer.echo(f"CA: {info['ca_certs']}; passwords: {info['credentials_dir']}/<user>; "
                       "`retrosearch opensearch status` with the same options lists the variables to export")
        return
    try:
        info = server.start(settings, wait_s=wait)
    except ServerError as exc:
        raise opt.fail(str(exc), 1) from None
    typer.echo(f"OpenSearch {info['version']} ({info['health']}) at {info['url']}, pid {info['pid']}, "
               f"plugins {','.join(info['plugins']) or '-'} ({time.monotonic() - began:.1f}s)")


@opensearch_app.command()
def stop(version: Version = None, port: Port = None, cache_dir: CacheDir = None, run_dir: RunDir = None,
         nodes: Nodes = None, secure: Secure = False) -> None:
    """Stop the node of ours on PORT (the cluster's nodes with --nodes)."""
    settings = _settings(version, port, cache_dir=cache_dir, run_dir=run_dir)
    group = _cluster(settings, nodes, secure)
    if group is not None:
        ports = cluster.stop(group)
        typer.echo(f"stopped nodes on ports {','.join(map(str, ports))}" if ports
                   else f"no node of ours running on ports {','.join(map(str, group.ports))}")
        return
    stopped = server.stop(settings)
    typer.echo(f"stopped node on port {settings.port}" if stopped else f"no node of ours running on port {settings.port}")


@opensearch_app.command()
def status(version: Version = None, port: Port = None, cache_dir: CacheDir = None, run_dir: RunDir = None,
           nodes: Nodes = None, secure: Secure = False) -> None:
    """The node's status as JSON (exit 1 when nothing answers); for a secured cluster also where
    its CA and passwords are and the environment variables that point the project's commands at it."""
    settings = _settings(version, port, cache_dir=cache_dir, run_dir=run_dir)
    group = _cluster(settings, nodes, secure)
    info = cluster.status(group) if group is not None else server.status(settings)
    typer.echo(json.dumps(info, indent=2))
    if not info["answering"]:
        raise typer.Exit(1)


@opensearch_app.command()
def assemble(version: Version = None, plugin: Plugin = None, with_ml: WithMl = False, cache_dir: CacheDir = None) -> None:
    """Download and assemble the distribution only (cached)."""
    settings = _settings(version, None, plugin=plugin, cache_dir=cache_dir, ml=with_ml)
    began = time.monotonic()
    fresh = not (settings.home / MARKER).is_file()
    try:
        home = assembly.assemble(settings)
    except ServerError as exc:
        raise opt.fail(str(exc), 1) from None
    typer.echo(f"{'assembled' if fresh else 'already assembled'}: {home} ({time.monotonic() - began:.1f}s)")


def register(app: typer.Typer) -> typer.Typer:
    """Add ``retrosearch opensearch ...`` and return the group, so upper layers can add to it."""
    app.add_typer(opensearch_app, name="opensearch")
    return opensearch_app
