"""Run compaction in this process and park at a chosen point, for the kill test to SIGKILL.

Usage: python -m tests.scheduler.kill_compaction POINT DATA_DIR [DATABASE_URL SCHEMA]
POINT is ``between-chunks`` (after the first chunk committed), ``archived`` (the chunk's
events archived, its transaction not begun) or ``in-transaction`` (the event store's
transaction holds the insert lock and has deleted the chunk's raw events).
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from config.settings import load_settings
from eventstore import postgres, sqlite
from modelledger.bootstrap import build
from scheduler import archive, compaction


def park(reason: str) -> None:
    print(reason, flush=True)  # noqa: T201 - the parent test reads this line
    time.sleep(600)


def main() -> None:
    point, data_dir, *pg = sys.argv[1:]
    extra: dict[str, Any] = {"database_url": pg[0], "pg_schema": pg[1]} if pg else {}
    container = build(load_settings({}, data_dir=Path(data_dir), **extra))
    chunks = 0

    if point == "archived":
        original_write = archive.write_lines

        def write_then_park(*args: Any, **kwargs: Any) -> int:
            written = original_write(*args, **kwargs)
            if chunks >= 1:
                park("parked")
            return written

        compaction.archive.write_lines = write_then_park  # type: ignore[attr-defined]
    elif point == "in-transaction":
        for cls in (postgres.PostgresCompaction, sqlite.SQLiteCompaction):
            original_replace = cls.replace

            def replace_then_park(
                self: Any, change: Any, original: Any = original_replace
            ) -> float:
                if chunks < 1:
                    return float(original(self, change))
                # Make the chunk's transaction fail to finish: park inside it after its deletes.
                rollups = change.rollups
                object.__setattr__(change, "rollups", _Parking(rollups))
                return float(original(self, change))

            cls.replace = replace_then_park  # type: ignore[method-assign]

    def progress(position: int, bound: int) -> None:
        nonlocal chunks
        chunks += 1
        if point == "between-chunks":
            park("parked")

    compaction.compact_usage(
        container, older_than=timedelta(days=30), chunk_size=200, progress=progress
    )
    print("finished", flush=True)  # noqa: T201 - the parent test reads this line


class _Parking(list):  # type: ignore[type-arg]
    """A list of roll-ups that parks when the transaction first reads it (after the deletes)."""

    def __iter__(self) -> Any:
        park("parked")
        return super().__iter__()

    def __bool__(self) -> bool:
        return True


if __name__ == "__main__":
    main()
