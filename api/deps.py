"""What handlers need from a request: the wired services, the caller, the audit actor, and
what the caller may record usage for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import uuid4

from litestar import Request
from litestar.datastructures import State

from api.auth import principal_of
from api.tokens import Principal
from services.models import Actor

if TYPE_CHECKING:
    from api.group_commit import GroupCommitter
    from api.reads import Reads
    from services.artifacts import ArtifactStore
    from services.container import Container
    from services.usage import Writer

ApiRequest: TypeAlias = Request[Principal, str, State]
CORRELATION_HEADER = "x-correlation-id"


def container(request: Request[Any, Any, State]) -> Container:
    return request.app.state["container"]  # type: ignore[no-any-return]


def artifacts(request: Request[Any, Any, State]) -> ArtifactStore:
    return request.app.state["artifacts"]  # type: ignore[no-any-return]


def committer(request: Request[Any, Any, State]) -> GroupCommitter:
    return request.app.state["group_commit"]  # type: ignore[no-any-return]


def reads(request: Request[Any, Any, State]) -> Reads:
    return request.app.state["reads"]  # type: ignore[no-any-return]


def principal(request: ApiRequest) -> Principal:
    return principal_of(request)


def correlation_id(request: Request[Any, Any, State]) -> str:
    """The caller's correlation id (``X-Correlation-ID``, at most 100 characters) or a new one."""
    given = request.headers.get(CORRELATION_HEADER, "")
    return given[:100] if given.isprintable() and given else uuid4().hex


def actor(request: ApiRequest) -> Actor:
    """The caller as the audit trail names it: its subject at its issuer."""
    who = principal(request)
    return Actor(who.user_id, correlation_id(request), subject=who.subject, issuer=who.issuer)


def writer(request: ApiRequest) -> Writer:
    return principal(request).writer
