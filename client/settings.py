"""Where the server is and how to talk to it: URL, API key, timeout and retries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from client.retry import RetryPolicy

DEFAULT_URL = "http://localhost:8000"


@dataclass(frozen=True)
class ClientSettings:
    """Connection settings shared by `Client` and `AsyncClient`.

    `url` and `api_key` default to AE_URL and AE_API_KEY, read when the client is made (not at import).
    `timeout_s` bounds each attempt (connect, read, write); retries add their waits on top.
    """

    url: str | None = None
    api_key: str | None = None
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def base_url(self) -> str:
        """The server's URL, without a trailing slash."""
        return (self.url or os.environ.get("AE_URL") or DEFAULT_URL).rstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        """Headers on every request: the API key as a bearer token when there is one."""
        key = self.api_key if self.api_key is not None else os.environ.get("AE_API_KEY")
        return {"authorization": f"Bearer {key}"} if key else {}
