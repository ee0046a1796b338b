"""``Container``: the wired services of one process, as the composition root builds them.

The API, the CLI and the jobs take this and call its services; tests build the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from projections.worker import start_worker

if TYPE_CHECKING:
    import threading

    from config.settings import Settings
    from eventstore.applications import RegistryLog, UsageLog
    from projections.projector import Projector
    from projections.store.base import ReadStore
    from projections.worker import Wakeups
    from services.artifacts import ArtifactStore
    from services.keys import ApiKeyService
    from services.models import ModelService
    from services.usage import UsageService


@dataclass
class Container:
    """Everything a process needs, built once from settings.

    ``models``, ``keys`` and ``usage`` are the ways in; the event logs, the store and the
    projector are here for the jobs and operator commands that work on them directly
    (compaction, rebuilds).
    """

    settings: Settings
    registry_log: RegistryLog
    usage_log: UsageLog
    store: ReadStore
    projector: Projector
    artifacts: ArtifactStore
    models: ModelService
    usage: UsageService
    wakeups: Wakeups
    keys: ApiKeyService

    def start_worker(self, stop: threading.Event) -> list[threading.Thread]:
        """Run the projection worker (and, on PostgreSQL, its LISTEN thread) until ``stop``."""
        postgres = self.settings.backend == "postgres"
        return start_worker(
            self.projector,
            self.wakeups,
            stop,
            conninfo=self.settings.postgres_conninfo() if postgres else None,
            lock_dir=self.settings.data_dir / "locks",
            scope=self.settings.pg_schema,
            poll_interval=self.settings.poll_interval,
            linger=self.settings.projection_linger,
            channels={
                self.registry_log.recorder.channel_name: "registry",  # type: ignore[attr-defined]
                self.usage_log.recorder.channel_name: "usage",  # type: ignore[attr-defined]
            } if postgres else {},
        )

    def close(self) -> None:
        self.store.close()
        self.registry_log.close()
        self.usage_log.close()
