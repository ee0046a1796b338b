"""One run of a job at a time across processes and machines (``projections.locks``).

PostgreSQL: a session advisory lock on a connection of its own, released when the run ends or
the process dies. SQLite: a file lock beside the databases.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from projections.locks import Namespace, try_file_lock, try_session_lock

if TYPE_CHECKING:
    from collections.abc import Iterator

    from config.settings import Settings


@contextmanager
def job_lock(settings: Settings, job: str) -> Iterator[bool]:
    """Yield True while holding ``job``'s lock, False (at once) when another run holds it."""
    if settings.backend == "sqlite":
        with try_file_lock(Path(settings.data_dir) / "locks", f"job-{job}") as held:
            yield held
        return
    with psycopg.connect(settings.postgres_conninfo(), autocommit=True) as conn:
        yield try_session_lock(conn, Namespace.JOB, settings.pg_schema, job)
