"""The compaction SQL of the usage log's backend (``postgres``, ``sqlite``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore.postgres import PostgresCompaction, PostgresUsageRecorder
from eventstore.sqlite import SQLiteCompaction, SQLiteUsageRecorder

if TYPE_CHECKING:
    from eventsourcing.persistence import ApplicationRecorder

    from eventstore.ports import CompactionRecorder


def compaction_recorder(recorder: ApplicationRecorder) -> CompactionRecorder:
    """The compaction SQL for the usage log's recorder."""
    if isinstance(recorder, PostgresUsageRecorder):
        return PostgresCompaction(recorder)
    if isinstance(recorder, SQLiteUsageRecorder):
        return SQLiteCompaction(recorder)
    raise TypeError(f"usage compaction does not support {type(recorder).__name__}")
