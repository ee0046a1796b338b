"""``PredictionService``: the serving context's one way in: who may call a model's endpoint,
what serves it (an ONNX session here or an upstream V2 server), and the metering of each call.

Each process keeps a model's serving state and an API key's grant for
``endpoint_cache_seconds`` (0.5 s by default), read from the projection tables: a deactivation,
a deletion or a revocation reaches every process within that plus the projection's lag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from domain.api_key import parse_key
from domain.model import ModelStatus
from domain.serving import route
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
class Served:
    """A version's ONNX file, as the session cache loads it."""

    version: int
    artifact_key: tuple[UUID, str]  # (model id, sha256): versions with one file share a session
    artifact_name: str
    artifact_size: int


@dataclass(frozen=True)
class Target:
    """A model the caller may call, and what serves it: an upstream server, or the versions
    of ``split`` (each request routed by its request id)."""

    model_id: UUID
    owner_id: UUID
    status: str
    backend: Backend
    upstream_url: str = ""
    upstream_model: str = ""
    split: tuple[tuple[int, int], ...] = ()
    served: dict[int, Served] = field(default_factory=dict)

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

    def version_for(self, request_id: str) -> int:
        """The version that serves (or would have served) ``request_id``."""
        return route(self.model_id, request_id, self.split) if self.split else 1

    def pick(self, request_id: str) -> Served:
        """The ONNX file serving ``request_id`` (an ONNX target's split is all served)."""
        return self.served[self.version_for(request_id)]


def _is_onnx(framework: str, filename: str) -> bool:
    return framework.lower() == "onnx" or filename.lower().endswith(".onnx")


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
        # By (model, None) for the serving split, (model, n) for version n's route.
        self._states: ServingCache[tuple[UUID, int | None], ServingRow | None] = ServingCache(
            ttl, _CACHED_MODELS
        )
        self._keys: ServingCache[UUID, ApiKeyRow | None] = ServingCache(ttl, _CACHED_KEYS)
        self._paths: dict[tuple[UUID, str, int], Path] = {}

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

    async def target(
        self, caller: Caller, model_id: UUID, version: int | None = None
    ) -> Target:
        """The model at this endpoint (``version``: that version alone), if the caller may
        call it; else EndpointNotFoundError (also for a version it does not have)."""
        row = await self._states.get((model_id, None), self._serving_state)
        if row is None or not caller.covers(row.owner_id, model_id):
            raise EndpointNotFoundError(f"model {model_id} not found")
        if version is not None:
            # Only the caller's own model's versions reach the cache: nobody can fill it with
            # made-up (model, version) entries.
            found = (await self._states.get((model_id, version), self._serving_state)
                     if 1 <= version <= row.latest_version else None)
            if found is None or version not in found.files or found.files[version].removed:
                raise EndpointNotFoundError(f"model {model_id} has no version {version}")
            row = found
        return self._target_of(model_id, row, version)

    def _serving_state(self, key: tuple[UUID, int | None]) -> ServingRow | None:
        return queries.serving_state(self.store, *key)

    def _target_of(self, model_id: UUID, row: ServingRow, version: int | None) -> Target:
        # Checked at every call too: an operator who removes a host turns its upstreams off.
        # A version's own route serves its stored file, upstream or not.
        if (version is None and row.upstream_url
                and self.upstream_hosts.allows(row.upstream_url)):
            return Target(model_id, row.owner_id, row.status, Backend.UPSTREAM,
                          upstream_url=row.upstream_url, upstream_model=row.upstream_model or "")
        split = row.serving if version is None else ((version, 100),)
        served = {}
        for number, _ in split:
            found = row.files.get(number)
            if found is None or found.removed or not _is_onnx(row.framework, found.filename):
                continue
            served[number] = Served(number, (model_id, found.sha256), found.filename,
                                    found.size_bytes)
        # Every version of the split must be servable (and none behind an upstream that the
        # operator no longer allows), else the endpoint is not ready rather than half-failing.
        servable = (bool(split) and len(served) == len(split)
                    and (version is not None or not row.upstream_url))
        return Target(model_id, row.owner_id, row.status,
                      Backend.ONNX if servable else Backend.NONE, split=split, served=served)

    async def session(self, target: Target, served: Served) -> LoadedModel:
        """The ONNX session of a version's file, loaded on first use."""
        key = (*served.artifact_key, served.version)
        path = self._paths.get(key)
        if path is None:  # path_of checks the name: not on every call
            path = self.artifacts.path_of(target.model_id, served.artifact_name, served.version)
            if len(self._paths) >= _CACHED_MODELS:
                self._paths.clear()
            self._paths[key] = path
        return await self.sessions.get(served.artifact_key, path, served.artifact_size)

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
