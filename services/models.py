"""``ModelService``: the models context's one way in, for the API, the CLI and the jobs.

Commands check the rules on the ``Model`` aggregate and save its events with the name claims
they move, in one transaction. After they commit, the ``models`` projection is caught up
inline (under its lock, so it cooperates with any worker process) before the command
returns: a read that follows sees the change. The service also owns the model's artifact
file (stored at registration, removed after a delete) and the audit trail's reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.errors import (
    ModelNotFoundError,
    ModelVersionNotFoundError,
    NameTakenError,
    ValidationError,
    VersionConflictError,
)
from domain.model import MAX_VERSIONS, Model, ModelStatus
from domain.name_claim import NameClaim, name_claim_id
from domain.upstream import (
    NO_UPSTREAM,
    SETTING,
    Upstream,
    UpstreamHosts,
    check_upstream,
    host_and_port,
)
from projections.models import queries
from services.audit import AuditEntry, describe

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    from eventsourcing.domain import DomainEventProtocol, MutableOrImmutableAggregate

    from eventstore.applications import RegistryLog
    from projections.projector import Projector
    from projections.store.base import ReadStore
    from services.artifacts import ArtifactStore, Upload

T = TypeVar("T")
log = logging.getLogger("modelledger.models")
_ATTEMPTS = 3  # an unconditional write retries this often after losing a race
_EVENT_PAGE = 100  # events read at a time for the audit trail and for past states
SYSTEM_ACTOR = "system:artifact-remover"


class Who(TypedDict):
    """The audit fields every model event carries."""

    actor: str
    actor_issuer: str
    correlation_id: str


@dataclass(frozen=True)
class Actor:
    """Who is acting, and the request's correlation id, for the audit trail.

    ``user_id`` decides ownership; the trail records ``subject`` and ``issuer``, the names an
    auditor knows (an in-process caller without a subject is recorded by its user id).
    """

    user_id: UUID
    correlation_id: str
    subject: str = ""
    issuer: str = ""

    @property
    def name(self) -> str:
        return self.subject or str(self.user_id)

    def who(self) -> Who:
        return Who(actor=self.name, actor_issuer=self.issuer, correlation_id=self.correlation_id)


@dataclass(frozen=True)
class Saved:
    """What a command changed: the model's new version and the log position of its events."""

    model_id: UUID
    version: int
    position: int | None


@dataclass(frozen=True)
class HistoryPage:
    """A page of a model's audit trail, oldest first."""

    entries: list[AuditEntry]
    next_after: int | None  # the last version shown, when more follow
    total: int


class ModelService:
    """Verb methods for commands, ``get_*`` for queries; nothing returns a live aggregate."""

    def __init__(
        self,
        log: RegistryLog,
        projector: Projector,
        store: ReadStore,
        artifacts: ArtifactStore,
        *,
        base_url: str,
        upstream_hosts: UpstreamHosts | None = None,
    ) -> None:
        self.log = log
        self.projector = projector
        self.store = store
        self.artifacts = artifacts
        self.base_url = base_url
        self.upstream_hosts = upstream_hosts or UpstreamHosts()

    # Commands -------------------------------------------------------------------

    def register(
        self,
        actor: Actor,
        *,
        name: str,
        description: str = "",
        framework: str = "unknown",
        upload: Upload | None = None,
        filename: str | None = None,
        model_id: UUID | None = None,
        upstream: Upstream = NO_UPSTREAM,
    ) -> queries.ModelRow:
        """Register a model, with the artifact ``upload`` and the ``upstream`` when given; the
        name must be free.

        An ONNX artifact must be one onnxruntime loads (``ValidationError`` naming ``file``,
        the upload discarded). The file is moved into place before the events are saved, and
        discarded only when the save did not commit (a model never names a file that is gone).
        """
        new_id = model_id or uuid4()
        artifact = None
        if upload is not None:
            self._check_artifact(upload, framework, filename or "artifact")
            artifact = upload.finish(new_id, filename or "artifact")
        try:
            self._check_upstream_host(upstream)
            saved = self._register(
                actor, new_id, name=name, description=description, framework=framework,
                artifact=artifact, upstream=upstream,
            )
        except BaseException:
            if artifact is not None:
                self.artifacts.discard_stored(new_id, artifact[0])
            raise
        return self._visible(saved, actor.user_id)

    def update(
        self,
        actor: Actor,
        model_id: UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        status: ModelStatus | None = None,
        upstream: Upstream | None = None,
        serving: list[tuple[int, int]] | None = None,
        expected_version: int | None = None,
    ) -> queries.ModelRow:
        """Change metadata, status, upstream (``NO_UPSTREAM`` removes it; None keeps it) and/or
        the serving versions (``[(version, weight), ...]``); ``expected_version`` makes it
        conditional."""
        if upstream is not None:
            self._check_upstream_host(upstream)
        saved = self._update(
            model_id, owner_id=actor.user_id, name=name, description=description,
            status=status, upstream=upstream, serving=serving,
            expected_version=expected_version, who=actor.who(),
        )
        return self._visible(saved, actor.user_id)

    def upload_version(
        self, actor: Actor, model_id: UUID, upload: Upload, *, filename: str, notes: str = "",
    ) -> queries.VersionView:
        """Store ``upload`` as the model's next version (checked like a registration's ONNX
        file). It serves only once ``serving`` names it, unless it is the model's first."""
        row = self.get(actor.user_id, model_id)  # another owner's model: not found
        self._check_artifact(upload, row["framework"], filename)
        # One upload at a time per model, in every process on this artifact store: the
        # number is the event store's latest + 1, and its file path must be nobody else's.
        with self.artifacts.version_lock(model_id):
            model = self._get_owned(model_id, actor.user_id)
            number = model.latest_version + 1
            name, size_bytes, sha256 = upload.finish(model_id, filename, number)
            try:
                model.upload_version(filename=name, size_bytes=size_bytes, sha256=sha256,
                                     notes=notes, **actor.who())
                self.log.save(model)
            except BaseException:
                self.artifacts.discard_stored(model_id, name, number)
                raise
        self.projector.catch_up("models")
        return self.get_version(actor.user_id, model_id, number)

    def remove_version(self, actor: Actor, model_id: UUID, number: int) -> None:
        """Withdraw a version serving no traffic (``VersionServingError`` otherwise) and
        remove its file. Removing a removed version again changes nothing."""

        def attempt() -> list[Any]:
            model = self._get_owned(model_id, actor.user_id)
            removed["filename"] = model.remove_version(number, **actor.who())
            return [model]

        removed: dict[str, str | None] = {}
        self._save_with_retry(attempt, retry=True)
        self.projector.catch_up("models")
        if removed["filename"] is not None and not self.artifacts.remove_file(
            model_id, removed["filename"], number
        ):
            log.warning("version file not removed", extra={"model_id": str(model_id),
                                                          "version": number})

    def delete(self, actor: Actor, model_id: UUID) -> queries.ModelRow:
        """Soft delete: deleted status, endpoint off, name released, every version's file
        removed.

        Idempotent. A removal that fails is left for ``sweep_artifacts``.
        """
        saved = self._delete(model_id, owner_id=actor.user_id, who=actor.who())
        row = self._visible(saved, actor.user_id)
        pending = queries.artifacts_pending_removal(
            self.store, limit=MAX_VERSIONS, model_id=model_id
        )
        if pending:
            self._remove_files(pending, actor.correlation_id)
            row = self._visible(saved, actor.user_id)
        return row

    def sweep_artifacts(self, *, limit: int = 100) -> dict[str, int]:
        """Retry every artifact removal still pending (a scheduler job); returns a summary."""
        pending = queries.artifacts_pending_removal(self.store, limit)
        removed = self._remove_files(pending, "sweep")
        return {"removed": removed, "failed": len(pending) - removed}

    def take_snapshot(self, model_id: UUID) -> None:
        self.log.take_snapshot(model_id)

    # Queries --------------------------------------------------------------------

    def get(self, owner_id: UUID, model_id: UUID) -> queries.ModelRow:
        """The owner's model with its usage summary (another owner's: not found)."""
        row = queries.get_model(self.store, owner_id, model_id)
        if row is None:
            raise ModelNotFoundError(str(model_id))
        return row

    def get_versions(
        self, owner_id: UUID, model_id: UUID, *, after: int = 0, limit: int = 100
    ) -> tuple[queries.ModelRow, list[queries.VersionView]]:
        """The owner's model and a page of its versions by number, after ``after``."""
        row = self.get(owner_id, model_id)
        return row, queries.list_versions(self.store, model_id, after=after, limit=limit)

    def get_version(self, owner_id: UUID, model_id: UUID, number: int) -> queries.VersionView:
        self.get(owner_id, model_id)
        found = queries.list_versions(self.store, model_id, number=number, limit=1)
        if not found:
            raise ModelVersionNotFoundError(f"model {model_id} has no version {number}")
        return found[0]

    def get_history(
        self, owner_id: UUID, model_id: UUID, *, after_version: int = 0, limit: int = 50
    ) -> HistoryPage:
        """A page of the owner's model's audit trail: the entries after ``after_version``."""
        total = self.get(owner_id, model_id)["version"]  # one event per version
        events = list(self.log.events.get(model_id, gt=after_version, limit=limit))
        entries = [describe(e) for e in events]
        last = entries[-1].version if entries else after_version
        return HistoryPage(entries, last if entries and last < total else None, total)

    def get_state(
        self,
        owner_id: UUID,
        model_id: UUID,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> tuple[dict[str, Any], queries.ModelRow]:
        """The owner's model as it was at a version or moment, with its current row."""
        row = self.get(owner_id, model_id)
        if version is not None and version > row["version"]:
            raise ModelNotFoundError(str(model_id))
        return self.get_model_state(model_id, version=version, as_of=as_of), row

    def get_model_events(
        self, model_id: UUID, *, until_version: int | None = None
    ) -> list[DomainEventProtocol[UUID]]:
        """The model's events in order (the operator's audit trail), optionally up to a version."""
        events = list(self.log.events.get(model_id, lte=until_version))
        if not events or not isinstance(events[0], Model.Registered):
            raise ModelNotFoundError(str(model_id))
        return events

    def get_model_state(
        self, model_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> dict[str, Any]:
        """The model's attributes at a version or moment, as plain values (events read a page
        at a time, up to the first one after the moment)."""
        model: Model | None = None
        for domain_event in self._events_until(model_id, version, as_of):
            model = domain_event.mutate(model)
        if model is None:
            raise ModelNotFoundError(str(model_id))
        return model_state(model)

    # Internals ------------------------------------------------------------------

    @staticmethod
    def _check_artifact(upload: Upload, framework: str, filename: str) -> None:
        """An ONNX artifact (by framework or file name) must load; a refused one is discarded."""
        if framework.strip().casefold() != "onnx" and not filename.casefold().endswith(".onnx"):
            return
        # onnxruntime takes 0.15 s to import: only a process that receives an ONNX file pays.
        from serving.onnx_check import check_loadable  # noqa: PLC0415

        problem = check_loadable(upload.path)
        if problem is not None:
            upload.discard()
            raise ValidationError("file", problem)

    def _check_upstream_host(self, upstream: Upstream) -> None:
        """Only the operator's hosts: no user makes the service call an address of its choice.
        The upstream's own rules (the domain's) are checked first, so the host is readable."""
        if not upstream:
            return
        check_upstream(upstream.url, upstream.model)
        if not self.upstream_hosts.allows(upstream.url):
            host, port = host_and_port(upstream.url)
            raise ValidationError("upstream", f"host {host}:{port} is not in {SETTING}")

    def _events_until(
        self, model_id: UUID, version: int | None, as_of: datetime | None
    ) -> Iterator[Model.Event]:
        after = 0
        while True:
            page = cast(
                "list[Model.Event]",
                list(self.log.events.get(model_id, gt=after, lte=version, limit=_EVENT_PAGE)),
            )
            if after == 0 and (not page or not isinstance(page[0], Model.Registered)):
                raise ModelNotFoundError(str(model_id))
            for domain_event in page:
                if as_of is not None and domain_event.timestamp > as_of:
                    return
                yield domain_event
            if len(page) < _EVENT_PAGE:
                return
            after = page[-1].originator_version

    def _visible(self, saved: Saved, owner_id: UUID) -> queries.ModelRow:
        self.projector.catch_up("models")
        row = queries.get_model(self.store, owner_id, saved.model_id)
        if row is None:  # pragma: no cover - the catch-up above makes this impossible
            raise ModelNotFoundError(str(saved.model_id))
        return row

    def _remove_files(self, pending: list[tuple[UUID, int, str]], correlation_id: str) -> int:
        """Remove deleted models' version files and record each one gone; returns how many
        (one that stays is left pending)."""
        gone: dict[UUID, list[int]] = {}
        for model_id, number, filename in pending:
            if self.artifacts.remove_file(model_id, filename, number):
                gone.setdefault(model_id, []).append(number)
        for model_id, numbers in gone.items():
            self._record_files_removed(model_id, numbers, correlation_id=correlation_id)
        return sum(map(len, gone.values()))

    def _register(
        self,
        actor: Actor,
        new_id: UUID,
        *,
        name: str,
        description: str,
        framework: str,
        artifact: tuple[str, int, str] | None,
        upstream: Upstream,
    ) -> Saved:
        who = actor.who()
        model = Model.register(
            model_id=new_id,
            owner_id=actor.user_id,
            name=name,
            description=description,
            framework=framework,
            endpoint_url=f"{self.base_url.rstrip('/')}/v2/models/{new_id}",
            upstream=upstream,
            **who,
        )
        if artifact is not None:
            filename, size_bytes, sha256 = artifact
            model.store_artifact(filename=filename, size_bytes=size_bytes, sha256=sha256, **who)

        def attempt() -> list[Any]:
            return [model, self._claim(actor.user_id, model.name, new_id)]

        return self._save_with_retry(attempt, retry=False)

    def _update(
        self,
        model_id: UUID,
        *,
        owner_id: UUID,
        name: str | None = None,
        description: str | None = None,
        status: ModelStatus | None = None,
        upstream: Upstream | None = None,
        serving: list[tuple[int, int]] | None = None,
        expected_version: int | None = None,
        who: Who,
    ) -> Saved:
        """Change metadata, status, upstream and/or serving; ``expected_version`` makes it
        conditional."""

        def attempt() -> list[Any]:
            model = self._get_owned(model_id, owner_id)
            model.check_version(expected_version)
            old_name = model.name
            changed: list[Any] = [model]
            model.update_metadata(name=name, description=description, **who)
            if model.name != old_name:
                changed += self._move_claim(owner_id, old_name, model.name, model_id)
            if status is not None:
                model.change_status(status, **who)
            if upstream is not None:
                model.set_upstream(upstream, **who)
            if serving is not None:
                model.set_serving(serving, **who)
            return changed

        return self._save_with_retry(attempt, retry=expected_version is None)

    def _delete(self, model_id: UUID, *, owner_id: UUID, who: Who) -> Saved:
        """Soft delete: deleted status, endpoint deactivated, name released. Idempotent."""

        def attempt() -> list[Any]:
            model = self._get_owned(model_id, owner_id)
            if not model.delete(**who):
                return [model]
            claim = self._get_claim(owner_id, model.name)
            if claim is not None:
                claim.release(model_id)
            return [model, claim]

        return self._save_with_retry(attempt, retry=True)

    def _record_files_removed(
        self, model_id: UUID, numbers: list[int], *, correlation_id: str
    ) -> Saved:
        """Record that a deleted model's version files are gone (called by the remover)."""

        def attempt() -> list[Any]:
            model = self._get_model(model_id)
            for number in numbers:
                model.record_version_removed(
                    number, actor=SYSTEM_ACTOR, correlation_id=correlation_id
                )
            return [model]

        return self._save_with_retry(attempt, retry=True)

    def _save_with_retry(
        self, attempt: Callable[[], list[Any]], *, retry: bool
    ) -> Saved:
        for remaining in range(_ATTEMPTS - 1, -1, -1):
            changed = attempt()
            model = changed[0]
            try:
                recordings = self.log.save(*changed)
            except IntegrityError:
                if not retry or remaining == 0:
                    raise self._explain_conflict(changed) from None
                continue
            position = max((r.notification.id for r in recordings), default=None)
            return Saved(model_id=model.id, version=model.version, position=position)
        raise AssertionError("unreachable")  # pragma: no cover

    def _explain_conflict(self, changed: list[Any]) -> Exception:
        model = changed[0]
        for claim in changed[1:]:
            if isinstance(claim, NameClaim):
                current = self._get_claim(claim.owner_id, claim.name)
                if current is not None and current.holder not in (None, model.id):
                    return NameTakenError(f"name {claim.name!r} is already used by another model")
        try:
            current_model = self._get_model(model.id)
        except ModelNotFoundError:
            return NameTakenError(f"name {model.name!r} is already used by another model")
        return VersionConflictError(
            model.version - len(model.pending_events), current_model.version
        )

    def _get_model(self, model_id: UUID) -> Model:
        try:
            model: MutableOrImmutableAggregate[UUID] = self.log.repository.get(model_id)
        except AggregateNotFoundError:
            raise ModelNotFoundError(str(model_id)) from None
        if not isinstance(model, Model):
            raise ModelNotFoundError(str(model_id))
        return model

    def _get_owned(self, model_id: UUID, owner_id: UUID) -> Model:
        """Another owner's model is reported exactly like a missing one."""
        model = self._get_model(model_id)
        if model.owner_id != owner_id:
            raise ModelNotFoundError(str(model_id))
        return model

    def _get_claim(self, owner_id: UUID, name: str) -> NameClaim | None:
        try:
            claim: MutableOrImmutableAggregate[UUID] = self.log.repository.get(
                name_claim_id(owner_id, name)
            )
        except AggregateNotFoundError:
            return None
        assert isinstance(claim, NameClaim)  # noqa: S101 - narrows the type; never fails
        return claim

    def _claim(self, owner_id: UUID, name: str, model_id: UUID) -> NameClaim:
        claim = self._get_claim(owner_id, name)
        if claim is None:
            return NameClaim.claim(owner_id, name, model_id)
        claim.reclaim(model_id)
        return claim

    def _move_claim(self, owner_id: UUID, old: str, new: str, model_id: UUID) -> list[NameClaim]:
        new_claim = self._claim(owner_id, new, model_id)
        if name_claim_id(owner_id, old) == new_claim.id:
            return [new_claim]  # only the letter case changed
        old_claim = self._get_claim(owner_id, old)
        if old_claim is None:
            return [new_claim]
        old_claim.release(model_id)
        return [new_claim, old_claim]


def model_state(model: Model) -> dict[str, Any]:
    """Plain attribute values of a model aggregate."""
    return {
        "id": model.id,
        "owner_id": model.owner_id,
        "name": model.name,
        "description": model.description,
        "framework": model.framework,
        "status": model.status.value,
        "version": model.version,
        "endpoint": {"url": model.endpoint_url, "active": model.endpoint_active},
        "artifact": None if model.artifact_removed else model.artifact,
        "upstream": model.upstream,
        "serving": [list(entry) for entry in model.serving],
        "latest_version": model.latest_version,
        "created_at": model.created_on,
        "updated_at": model.modified_on,
    }
