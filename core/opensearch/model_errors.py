"""Why OpenSearch could not run an ml-commons model, as one line that says what to do.

Used by the k-NN index backend (a ``neural`` search that fails) and by the code that connects a model.
"""

from __future__ import annotations

import re
from typing import Any

from opensearchpy import exceptions as os_exc

from retrosearch.core.errors import UserError


class RemoteModelError(UserError, RuntimeError):
    """OpenSearch could not run our model during a search (service down, model undeployed)."""



def explain_model_failure(reason: str, status: Any = None, service_url: str | None = None) -> str:
    """Why OpenSearch could not run our model (its error ``reason``), as one line that says what to do."""
    where = f" at {service_url}" if service_url else ""
    if re.search(r"connection refused|connect timed out|unknownhost|communicating with remote model", reason, re.I):
        return f"OpenSearch cannot reach the query service{where}: {reason}; is `retrosearch serve` running?"
    if re.search(r"not deployed|model not ready|no eligible node|does not exist|not found", reason, re.I):
        return (f"the encoder model is not usable in OpenSearch: {reason}; "
                "run `retrosearch opensearch connect` again to deploy it")
    if re.search(r"private ip|trusted|not allowed|endpoint", reason, re.I):
        return f"OpenSearch refuses to call the service{where}: {reason}"
    return f"OpenSearch failed to run the encoder model (HTTP {status}): {reason}"



def explain_model_error(exc: os_exc.TransportError, service_url: str | None = None) -> str:
    """:func:`explain_model_failure` of a client exception."""
    return explain_model_failure(_root_reason(exc.info) or str(exc.error), exc.status_code, service_url)



def _root_reason(info: Any) -> str | None:
    error = info.get("error") if isinstance(info, dict) else None
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        if causes and isinstance(causes[0], dict):
            return str(causes[0].get("reason"))
    return str(error) if error else None
