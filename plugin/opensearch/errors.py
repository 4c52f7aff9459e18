"""The error of connecting our service to OpenSearch: the message names the URL and the cause."""

from __future__ import annotations

from retrosearch.core.errors import UserError


class ConnectError(UserError, RuntimeError):
    """The service or OpenSearch cannot be connected; the message names the URL and the cause."""


class LocalModelError(UserError, RuntimeError):
    """A checkpoint cannot become, or did not become, an OpenSearch local model; the message names the
    cause and the setting or option to change."""
