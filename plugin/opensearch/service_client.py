"""The query service as the connecting side sees it: what it serves (``/info``) and its vectors,
fetched directly to compare with what OpenSearch gets through the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx
import numpy as np

from retrosearch.plugin.opensearch.errors import ConnectError

Mode = Literal["query", "passage"]


MODES: tuple[Mode, ...] = ("query", "passage")



@dataclass
class ServiceInfo:
    """What the query service says it serves (its ``/info``)."""

    url: str
    model: str
    dim: int
    fingerprint: str
    query_template: str
    passage_template: str
    title_separator: str = " "



def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}



def describe_service(url: str, api_key: str | None = None, timeout: float = 10.0) -> ServiceInfo:
    """Ask the service at ``url`` what it serves; a :class:`ConnectError` naming the URL if it can't say."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"--service-url {url!r} is not of the form http(s)://host:port")
    try:
        response = httpx.get(f"{url}/info", headers=_auth(api_key), timeout=timeout)
    except httpx.HTTPError as exc:
        raise ConnectError(f"the query service at {url} does not answer ({type(exc).__name__}: {exc}); "
                           "start it with `retrosearch serve` or give the right --service-url") from None
    if response.status_code == 401:
        raise ConnectError(f"the query service at {url} wants an API key: give --api-key-env with the variable "
                           "that holds the key it was started with")
    if response.status_code == 503:
        raise ConnectError(f"the query service at {url} is not ready yet: {_service_error(response)}")
    if response.status_code != 200:
        raise ConnectError(f"the query service at {url} answered /info with HTTP {response.status_code}: "
                           f"{_service_error(response)}")
    info = response.json()
    try:
        return ServiceInfo(url=url, model=info["model"], dim=int(info["dim"]), fingerprint=info["fingerprint"],
                           query_template=info["query_template"], passage_template=info["passage_template"],
                           title_separator=info.get("title_separator", " "))
    except (KeyError, TypeError, ValueError):
        raise ConnectError(f"{url}/info does not look like a RetroSearch query service: {str(info)[:200]}") from None



def _service_error(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]



def embed_directly(service: ServiceInfo, texts: list[str], mode: Mode, api_key: str | None = None) -> np.ndarray:
    """The service's own vectors of ``texts`` (``/embed``), to check what OpenSearch gets."""
    response = httpx.post(f"{service.url}/embed", json={"texts": texts, "mode": mode}, headers=_auth(api_key),
                          timeout=60)
    response.raise_for_status()
    return np.asarray(response.json()["vectors"], dtype=np.float32)
