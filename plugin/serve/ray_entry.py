"""The entry point of a Ray Serve config file: ``import_path: retrosearch.plugin.serve.ray_entry:app_builder``.

It sits apart from :mod:`.ray_app` (the deployment) and :mod:`.cli` (the command) because it needs
both: the command's argument parsing and the deployment's application.
"""

from __future__ import annotations

from typing import Any

from retrosearch.plugin.serve.cli import parse_argv
from retrosearch.plugin.serve.ray_app import build_application


def app_builder(args: dict[str, Any]) -> Any:
    """The application of a Ray Serve config file (``import_path: retrosearch.plugin.serve.ray_entry:app_builder``).

    ``args`` is ``{"argv": [...]}``: the options of ``retrosearch serve --ray``, parsed and checked
    exactly as the command does, so a KubeRay RayService (the Helm chart) runs the same service as
    ``retrosearch serve --ray ...`` on a laptop. Host and port are the config's ``http_options``.
    """
    argv = args.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"app_builder expects args {{'argv': [str, ...]}}, got {args!r}")
    if "--ray" not in argv:
        raise ValueError(f"app_builder runs `retrosearch serve --ray ...`; --ray is missing from {argv}")
    settings, target, model = parse_argv(argv)
    return build_application(settings, target, model)
