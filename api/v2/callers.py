"""Who calls an endpoint (an API key or the owner's login token) and from which address."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from litestar.exceptions import NotAuthorizedException

from api.tokens import REALM, SCOPE_MODELS, TokenVerifier
from config.settings import SettingsError
from domain.api_key import KEY_PREFIX
from services.predictions import Caller

if TYPE_CHECKING:
    from litestar import Request

    from services.predictions import PredictionService


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EndpointAuthError(Exception):
    """401 (no or a wrong credential) or 403 (a login token without the ``models`` scope)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = {"WWW-Authenticate": REALM} if status == 401 else {}  # noqa: PLR2004


async def caller_of(
    request: Request[Any, Any, Any], service: PredictionService, verifier: TokenVerifier
) -> Caller:
    header = request.headers.get("authorization")
    if not header:
        raise EndpointAuthError(401, "missing credentials: send 'Authorization: Bearer <API key>'")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise EndpointAuthError(401, "the Authorization header must be 'Bearer <API key>'")
    if credential.startswith(KEY_PREFIX):
        caller = await service.caller_of_key(credential)
        if caller is None:
            raise EndpointAuthError(401, "the API key is unknown or revoked")
        return caller
    try:
        principal = verifier.cached(credential)
        if principal is None and verifier.fetches_keys:
            # A JWKS fetch must not hold the event loop (as on /api).
            principal = await asyncio.to_thread(verifier.verify, credential)
        elif principal is None:
            principal = verifier.verify(credential)
    except NotAuthorizedException as error:
        raise EndpointAuthError(401, str(error.detail)) from None
    if SCOPE_MODELS not in principal.scopes:
        raise EndpointAuthError(403, f"a login token needs the scope '{SCOPE_MODELS}'")
    return Caller(principal.user_id, principal.subject)


@dataclass(frozen=True)
class ClientAddress:
    """The client's IP: the socket peer, or, when the peer is a trusted proxy, the nearest
    address in ``X-Forwarded-For`` that is not a trusted proxy."""

    trusted: tuple[IpNetwork, ...]

    @classmethod
    def of(cls, setting: str) -> ClientAddress:
        networks = []
        for part in filter(None, (p.strip() for p in setting.split(","))):
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise SettingsError(
                    f"MODELLEDGER_TRUSTED_PROXIES: {part!r} is not an IP address or network"
                ) from None
        return cls(tuple(networks))

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def __call__(self, request: Request[Any, Any, Any]) -> str | None:
        peer = request.client.host if request.client else None
        if peer is None or not self.trusted or not self._trusted(peer):
            return _valid(peer)
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._trusted(hop):
                return _valid(hop)
        return _valid(peer)


@lru_cache(maxsize=4096)
def _valid(address: str | None) -> str | None:
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None  # a unix socket or a forged header: no address rather than a false one
