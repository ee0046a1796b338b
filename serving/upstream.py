"""Calls to upstream V2 inference servers: one pooled keep-alive client per process, bodies
streamed, failures mapped to the gateway statuses (502 unreachable, 504 too slow).

aiohttp rather than httpx: measured on this machine behind the endpoint, httpx's client took
about 3.5 ms of CPU per proxied call, which capped the proxy at a fifth of the upstream's speed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# Hop-by-hop headers (RFC 9110 7.6.1) and those the client sets itself are not relayed back.
_NOT_FORWARDED = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "authorization", "cookie",
    "set-cookie", "server", "date",
})
FORWARDED_REQUEST_HEADERS = ("content-type", "content-encoding",
                             "inference-header-content-length", "accept", "accept-encoding",
                             "x-request-id")
_SLOW = "the upstream server did not answer in time"


class UpstreamError(Exception):
    """The upstream could not answer: ``status`` is what the endpoint answers instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class UpstreamAnswer:
    """An upstream's answer; its body is read through ``chunks`` (or ``read``), then released."""

    status: int
    headers: dict[str, str]
    response: aiohttp.ClientResponse

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.content.iter_any():
                yield chunk
        except TimeoutError:
            raise UpstreamError(504, _SLOW) from None
        except aiohttp.ClientError:
            raise UpstreamError(502, "the upstream server broke off its answer") from None
        finally:
            self.response.release()

    async def read(self, limit: int) -> bytes:
        """The whole body, at most ``limit`` bytes (502 beyond: a runaway upstream)."""
        body = bytearray()
        async for chunk in self.chunks():
            body += chunk
            if len(body) > limit:
                raise UpstreamError(502, "the upstream server's answer is too large")
        return bytes(body)


class UpstreamClient:
    """One connection pool for every upstream this process calls (made on first use, inside
    the event loop that uses it)."""

    def __init__(self, *, timeout: float, max_connections: int) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=60),
                timeout=self.timeout,
                auto_decompress=False,  # bodies are relayed as they come
                trust_env=False,  # no proxy from the environment: the allow list names the host
                # Only what the caller sent: a compressed answer to a client that did not ask
                # for one, or a content type it did not state, would change the call.
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> UpstreamAnswer:
        """Send a request; the answer's body is still to be read (``UpstreamAnswer.chunks``)."""
        try:
            response = await self._client().request(
                method, url, headers=headers, data=body,
                allow_redirects=False,  # a redirect could lead to a host nobody allowed
            )
        except TimeoutError:
            raise UpstreamError(504, _SLOW) from None
        except (aiohttp.ClientError, OSError, ValueError):  # ValueError: a header aiohttp refuses
            raise UpstreamError(502, "the upstream server is unreachable") from None
        kept = {
            name: value for name, value in response.headers.items()
            if name.lower() not in _NOT_FORWARDED
        }
        return UpstreamAnswer(response.status, kept, response)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its transports
