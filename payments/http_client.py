"""What every HTTP gateway shares: one httpx client, closed only by whoever made it."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx


class HttpClientOwner:
    """Holds the gateway's `httpx.AsyncClient`: its own (closed by `aclose`) or one passed in
    to share a connection pool (left open)."""

    def __init__(self, base_url: str, timeout: float, client: httpx.AsyncClient | None) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        """Close the HTTP client, if this gateway made it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
