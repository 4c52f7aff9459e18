"""The one start-up function every RetroSearch process calls: CLI, Ray actors, Serve replicas.

A process that loads models must never reach for a model hub (names that are not local fail at
once instead of after a minute of retries), must not let the fast tokenizer spawn its own thread
pool next to torch's, and must not write a Ray token file into the home directory. These are
process-wide choices, so they are made here, explicitly, and not as a side effect of importing
some module first.
"""

from __future__ import annotations

import os

# Defaults only: a user's own setting of any of these wins.
_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_AUTH_MODE": "disabled",
}

#: Variables a Ray job must forward to its workers so they behave like the driver.
FORWARDED = tuple(_ENVIRONMENT)


# A long-running encoder sees ever new (batch, length) shapes, and oneDNN caches compiled kernels
# per shape (1,024 by default): a query service's memory grew ~35 kB per request for 10,000
# requests with the default, and stayed flat with a small cache at the same speed.
_SERVING = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "DNNL_PRIMITIVE_CACHE_CAPACITY": "16"}


def configure_process(serving: bool = False) -> None:
    """Set the process-wide defaults above; cheap and idempotent (call it at every entry point).

    ``serving`` adds the settings of a long-running service; they must be set before torch runs
    its first operation, so the service calls this before it loads the model.
    """
    for key, value in {**_ENVIRONMENT, **(_SERVING if serving else {})}.items():
        os.environ.setdefault(key, value)


def forwarded_environment() -> dict[str, str]:
    """The start-up variables as this process has them, for a Ray ``runtime_env``."""
    configure_process()
    return {key: os.environ[key] for key in FORWARDED if key in os.environ}
