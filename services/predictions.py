"""``PredictionService``: the serving context's one way in: who may call a model's endpoint,
what serves it (an ONNX session here or an upstream V2 server), and the metering of each call.

Each process keeps a model's serving state and an API key's grant for
``endpoint_cache_seconds`` (0.5 s by default), read from the projection tables: a deactivation,
a deletion or a revocation reaches every process within that plus the projection's lag.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from domain.api_key import parse_key
from domain.model import ModelStatus
from domain.upstream import UpstreamHosts
from projections.models import queries
from services.keys import grant_of
from services.serving_cache import ServingCache

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from uuid import UUID

    import numpy as np

    from config.settings import Settings
    from projections.models.queries import ApiKeyRow, ServingRow
    from projections.store.base import ReadStore
    from services.artifacts import ArtifactStore
    from services.metering import Meter, MeteredUsage
    from serving.onnx_runtime import LoadedModel, SessionCache
    from serving.upstream import UpstreamClient

_CACHED_MODELS = 100_000  # serving states kept per process at most (each a few hundred bytes)
_CACHED_KEYS = 100_000


@dataclass(frozen=True)
class Caller:
    """Who calls an endpoint: a user with a login token, or an application with an API key."""

    user_id: UUID
    subject: str  # recorded as the usage's caller: the token's subject, or ``key:<id>``
    api_key_id: str = ""
    models: frozenset[UUID] | None = None  # an API key's models; None: all the user's

    def covers(self, owner_id: UUID, model_id: UUID) -> bool:
        return owner_id == self.user_id and (self.models is None or model_id in self.models)


class Backend(StrEnum):
    ONNX = "onnx"
    UPSTREAM = "upstream"
    NONE = "none"


class EndpointNotFoundError(Exception):
    """No model of the caller's at this endpoint (missing, another user's, not covered)."""


@dataclass(frozen=True)
class Target:
    """A model the caller may call, and what serves it."""

    model_id: UUID
    owner_id: UUID
    status: str
    backend: Backend
    artifact_key: tuple[UUID, str] | None = None  # (model id, sha256) of the ONNX session
    artifact_name: str | None = None
    artifact_size: int = 0
    upstream_url: str = ""
    upstream_model: str = ""

    @property
    def refusal(self) -> tuple[int, str] | None:
        """Why this endpoint refuses calls now (status, message), or None."""
        if self.status == ModelStatus.DELETED.value:
            return 404, f"model {self.model_id} not found"
        if self.status != ModelStatus.ACTIVE.value:
            return 503, f"model {self.model_id} is {self.status}: its endpoint is off"
        if self.backend is Backend.NONE:
            return 503, (
                f"model {self.model_id} has nothing to serve: upload an ONNX artifact or name "
                "an upstream server"
            )
        return None


def _is_onnx(row: ServingRow) -> bool:
    name = (row.artifact_filename or "").lower()
    return row.framework.lower() == "onnx" or name.endswith(".onnx")


class PredictionService:
    def __init__(
        self,
        settings: Settings,
        *,
        store: ReadStore,
        artifacts: ArtifactStore,
        sessions: SessionCache,
        upstream: UpstreamClient,
        meter: Meter | None,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.sessions = sessions
        self.upstream = upstream
        self.meter = meter
        self.upstream_hosts = UpstreamHosts.parse(settings.upstream_hosts)
        ttl = settings.endpoint_cache_seconds
        self._states: ServingCache[UUID, ServingRow | None] = ServingCache(ttl, _CACHED_MODELS)
        self._keys: ServingCache[UUID, ApiKeyRow | None] = ServingCache(ttl, _CACHED_KEYS)
        self._paths: dict[tuple[UUID, str], Path] = {}

    # Who calls ---------------------------------------------------------------

    async def caller_of_key(self, key_text: str) -> Caller | None:
        """The caller an API key names, or None (malformed, unknown, revoked, wrong secret).

        The cache holds the key's row, never a verdict: a wrong secret sent for a key's id
        cannot make the right one fail.
        """
        parsed = parse_key(key_text)
        if parsed is None:
            return None
        key_id, secret = parsed
        grant = grant_of(key_id, secret, await self._keys.get(key_id, self._key_row))
        if grant is None:
            return None
        return Caller(grant.owner_id, f"key:{key_id}", str(key_id), grant.models)

    def _key_row(self, key_id: UUID) -> ApiKeyRow | None:
        return queries.api_key_row(self.store, key_id)

    # What serves -------------------------------------------------------------

    async def target(self, caller: Caller, model_id: UUID) -> Target:
        """The model at this endpoint, if the caller may call it (else EndpointNotFoundError)."""
        row = await self._states.get(model_id, self._serving_state)
        if row is None or not caller.covers(row.owner_id, model_id):
            raise EndpointNotFoundError(f"model {model_id} not found")
        return self._target_of(model_id, row)

    def _serving_state(self, model_id: UUID) -> ServingRow | None:
        return queries.serving_state(self.store, model_id)

    def _target_of(self, model_id: UUID, row: ServingRow) -> Target:
        # Checked at every call too: an operator who removes a host turns its upstreams off.
        if row.upstream_url and self.upstream_hosts.allows(row.upstream_url):
            return Target(model_id, row.owner_id, row.status, Backend.UPSTREAM,
                          upstream_url=row.upstream_url, upstream_model=row.upstream_model or "")
        if (row.artifact_filename and row.artifact_sha256 and not row.artifact_removed
                and not row.upstream_url and _is_onnx(row)):
            return Target(model_id, row.owner_id, row.status, Backend.ONNX,
                          artifact_key=(model_id, row.artifact_sha256),
                          artifact_name=row.artifact_filename,
                          artifact_size=row.artifact_size_bytes or 0)
        return Target(model_id, row.owner_id, row.status, Backend.NONE)

    async def session(self, target: Target) -> LoadedModel:
        """The ONNX session of the target's artifact, loaded on first use."""
        if target.artifact_key is None or target.artifact_name is None:  # pragma: no cover
            raise ValueError("not an ONNX target")
        path = self._paths.get(target.artifact_key)
        if path is None:  # path_of checks the name: not on every call
            path = self.artifacts.path_of(target.model_id, target.artifact_name)
            if len(self._paths) >= _CACHED_MODELS:
                self._paths.clear()
            self._paths[target.artifact_key] = path
        return await self.sessions.get(target.artifact_key, path, target.artifact_size)

    async def run(
        self, model: LoadedModel, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> list[tuple[str, np.ndarray]]:
        return await self.sessions.infer(model, feeds, list(outputs) if outputs else None)

    def upstream_url(self, target: Target, suffix: str = "") -> str:
        return f"{target.upstream_url.rstrip('/')}/v2/models/{target.upstream_model}{suffix}"

    # Metering ----------------------------------------------------------------

    async def record(self, usage: MeteredUsage) -> None:
        """Durable on local disk when this returns (nothing when metering is off)."""
        if self.meter is not None:
            await self.meter.record(usage)

    async def close(self) -> None:
        await self.upstream.close()
        self.sessions.close()
