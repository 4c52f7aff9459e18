"""``retrosearch serve``: the query service in the foreground, in the background, or on Ray Serve.

``retrosearch serve stop`` and ``retrosearch serve status`` find a background service again by
its port (pid file and log under ``<cache>/serve/<port>/``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
import typer.main

from retrosearch.core import cli_options as opt
from retrosearch.core.config import Settings, cache_dir
from retrosearch.core.process import ManagedProcess, ProcessError, http_json
from retrosearch.core.startup import configure_process
from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine
from retrosearch.plugin.serve.ray_app import run_ray

serve_app = typer.Typer(
    help="The query service: /search, /embed, OpenAI-compatible /v1/embeddings, /healthz, /readyz, /metrics.",
    invoke_without_command=True,
    no_args_is_help=False,
)

Port = Annotated[int, typer.Option(help="HTTP port.")]
_MARKER = b"retrosearch"


def _managed(port: int):
    return ManagedProcess(
        name="serve",
        run_dir=cache_dir() / "serve" / str(port),
        marker=_MARKER,
        healthy=lambda: http_json(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200,
    )


@serve_app.callback()
@opt.with_settings(opt.ENCODER_RUNTIME, opt.INDEX_SEARCH, opt.OPENSEARCH, opt.SERVICE, opt.SCALE_OUT)
def serve(
    ctx: typer.Context,
    index_dir: Annotated[Optional[Path], typer.Option("--index", help="FAISS index folder written by `retrosearch index`/`ingest`.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Encoder checkpoint folder or packaged name; needed without an index.", show_default="the index's model")] = None,
    background: Annotated[bool, typer.Option("--background", help="Start detached, wait until ready, print the URL.")] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (Prometheus /metrics counts them anyway).")] = False,
    wait: Annotated[float, typer.Option(help="With --background: seconds to wait for /readyz.")] = 300.0,
    settings: Settings = None,
) -> None:
    """Serve dense queries over a FAISS folder (--index), an OpenSearch index (--index-name) or embeddings only (--model)."""
    if ctx.invoked_subcommand is not None:
        return

    configure_process(serving=True)
    target = resolve(settings, index_dir, model)
    if background:
        _start_background(settings.serve.port, wait)
        return
    if settings.serve.ray:
        run_ray(settings, target, model)
        return
    _run_uvicorn(settings, target, model, access_log)


def resolve(settings: Settings, index_dir: Path | None, model: str | None):
    """The index target of ``retrosearch serve``, after the checks the command makes before loading anything.

    Shared by the command and by :func:`parse_argv` (:func:`retrosearch.plugin.serve.ray_entry.app_builder`
    receives the same options as a list of arguments: KubeRay's RayService, the Helm chart).
    """
    index_name = settings.opensearch.index
    if index_dir is not None and index_name is not None:
        raise opt.fail("give --index (a FAISS folder) or --index-name (an OpenSearch index), not both")
    if index_dir is None and index_name is None and model is None:
        raise opt.fail("give --index DIR, --index-name NAME or --model M (embedding only)")
    if settings.serve.api_key_env and not os.environ.get(settings.serve.api_key_env):
        raise opt.fail(f"--api-key-env {settings.serve.api_key_env}: that environment variable is not set or empty")
    if index_dir is not None and not (index_dir / "meta.json").is_file():
        raise opt.fail(f"{index_dir} is not a FAISS index folder (meta.json missing)")
    return IndexTarget(index_dir=index_dir, index_name=index_name)


def parse_argv(argv: list[str]):
    """Settings, index target and model from the arguments of ``retrosearch serve`` given as a list."""
    # The group's own options as a plain command: left-over arguments are a usage error.
    command = typer.core.TyperCommand("serve", params=typer.main.get_command(serve_app).params)
    with command.make_context("serve", list(argv)) as ctx:
        try:
            p = opt.resolve_deprecated(getattr(serve, "deprecated_aliases", {}), ctx.params)
            settings = opt.settings_from({f: p[f] for f in serve.settings_fields}, p["config"])
            return settings, resolve(settings, p["index_dir"], p["model"]), p["model"]
        except typer.Exit:  # the reason is already printed, as the command prints it
            raise ValueError(f"retrosearch serve {' '.join(argv)}: refused (the reason is printed above)") from None


def _run_uvicorn(settings, target, model: str | None, access_log: bool) -> None:
    # lazy: keeps fastapi, uvicorn, starlette out of CLI start-up
    import uvicorn

    from retrosearch.plugin.serve.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server_box: dict[str, uvicorn.Server] = {}

    def load() -> QueryEngine:
        try:
            return QueryEngine.open(settings, target, model=model)
        except Exception as exc:
            # A service that cannot load its model must not linger half-alive: stop with the reason.
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            server_box["server"].should_exit = True
            server_box["failed"] = True  # type: ignore[assignment]
            raise

    try:
        app = create_app(settings, load)
    except ValueError as exc:
        raise opt.fail(str(exc)) from None
    s = settings.serve
    config = uvicorn.Config(app, host=s.host, port=s.port, access_log=access_log, log_level="info", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    server_box["server"] = server
    server.run()
    if server_box.get("failed"):
        raise typer.Exit(2)


def _start_background(port: int, wait: float) -> None:
    managed = _managed(port)
    if managed.pid() is not None:
        raise opt.fail(f"a service of ours already runs on port {port} (pid {managed.pid()}); `retrosearch serve stop --port {port}`")
    argv = [a for a in sys.argv[1:] if a != "--background"]
    try:
        pid = managed.start([sys.executable, "-m", "retrosearch.cli", *argv], env=dict(os.environ), wait_s=wait)
    except ProcessError as exc:
        raise opt.fail(str(exc), 1) from None
    typer.echo(f"serving at http://127.0.0.1:{port} (pid {pid}); log {managed.log_file}; stop: retrosearch serve stop --port {port}")


@serve_app.command()
def stop(port: Port = 8000) -> None:
    """Stop the background service on PORT."""
    managed = _managed(port)
    typer.echo(f"stopped the service on port {port}" if managed.stop() else f"no service of ours runs on port {port}")


@serve_app.command()
def status(port: Port = 8000) -> None:
    """Whether a background service runs on PORT, and what it serves (JSON)."""
    managed = _managed(port)
    code, ready = http_json(f"http://127.0.0.1:{port}/readyz", timeout=3)
    info = {"port": port, "pid": managed.pid(), "answering": code != 0, "ready": code == 200, "readyz": ready,
            "log": str(managed.log_file)}
    typer.echo(json.dumps(info, indent=2))
    if code != 200:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``retrosearch serve``."""
    app.add_typer(serve_app, name="serve")
