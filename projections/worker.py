"""The projection worker: follows the event logs and keeps every projection caught up.

One thread per projection. A projection is processed by one worker at a time across all
processes: the worker first becomes its *leader* (a session advisory lock on PostgreSQL, a
file lock on SQLite) and the others stand by, retrying, and take over when the leader dies.
New events wake the leader through LISTEN/NOTIFY on PostgreSQL (and in-process wake-ups);
a poll every ``poll_interval`` seconds is the safety net for a lost notification.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING

import psycopg
from filelock import Timeout
from psycopg import sql

from projections.locks import Namespace, file_lock, try_session_lock

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from projections.projector import Projector

log = logging.getLogger("modelledger.worker")


class Leadership:
    """Held while this process is the one processing a projection."""

    def __init__(self, *, conninfo: str | None, lock_dir: Path, scope: str) -> None:
        self.conninfo = conninfo
        self.lock_dir = lock_dir
        self.scope = scope  # the PostgreSQL schema: advisory locks are per database

    @contextlib.contextmanager
    def hold(self, name: str, stop: threading.Event, retry: float) -> Iterator[bool]:
        """Yield True once leader (False if ``stop`` was set while waiting)."""
        if self.conninfo is None:
            lock = file_lock(self.lock_dir, f"worker-{name}")
            while not stop.is_set():
                try:
                    lock.acquire(timeout=retry)
                except Timeout:
                    continue
                try:
                    yield True
                finally:
                    lock.release()
                return
            yield False
            return
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not stop.is_set():
                if try_session_lock(conn, Namespace.LEADER, self.scope, name):
                    yield True
                    return  # closing the connection releases the lock
                stop.wait(retry)
            yield False


class Wakeups:
    """Per-source events set when new events may be in the log."""

    def __init__(self, sources: list[str]) -> None:
        self.events = {name: threading.Event() for name in sources}

    def notify(self, source: str) -> None:
        self.events[source].set()

    def wait(self, source: str, timeout: float) -> None:
        event = self.events[source]
        event.wait(timeout)
        event.clear()


def listen(
    conninfo: str, channels: dict[str, str], wakeups: Wakeups, stop: threading.Event
) -> None:
    """Forward PostgreSQL notifications (channel -> source) to ``wakeups`` until stopped."""
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for channel in channels:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                for source in channels.values():
                    wakeups.notify(source)  # anything missed while reconnecting
                while not stop.is_set():
                    for notification in conn.notifies(timeout=1.0, stop_after=1):
                        wakeups.notify(channels[notification.channel])
        except psycopg.Error as error:
            log.warning("listen connection lost: %s", error)
            stop.wait(1.0)


class Worker:
    """Runs every projection of a projector until ``stop`` is set."""

    def __init__(
        self,
        projector: Projector,
        leadership: Leadership,
        wakeups: Wakeups,
        *,
        poll_interval: float = 1.0,
        linger: float = 0.0,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.projector = projector
        self.leadership = leadership
        self.wakeups = wakeups
        self.poll_interval = poll_interval
        # After a partial batch, wait this long before the next: a trickle folded a few events
        # at a time costs the API's CPU (ARCHITECTURE.md, "The worker").
        self.linger = linger
        self.on_error = on_error
        self.leading: set[str] = set()

    def follow(self, name: str, stop: threading.Event) -> None:
        """Lead ``name`` when possible and keep it caught up."""
        source = self.projector.projections[name].source
        while not stop.is_set():
            with self.leadership.hold(name, stop, self.poll_interval) as leader:
                if not leader:
                    return
                self.leading.add(name)
                log.info("leading projection %s", name)
                try:
                    while not stop.is_set():
                        processed = self.projector.catch_up(name)
                        if processed == 0:
                            self.wakeups.wait(source, self.poll_interval)
                        elif processed < self.projector.batch_size and self.linger > 0:
                            stop.wait(self.linger)
                except Exception as error:
                    log.exception("projection %s failed; retrying", name)
                    if self.on_error is not None:
                        self.on_error(name, error)
                    stop.wait(self.poll_interval)
                finally:
                    self.leading.discard(name)

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        threads = [
            threading.Thread(
                target=self.follow, args=(name, stop), name=f"projection-{name}", daemon=True
            )
            for name in self.projector.projections
        ]
        for thread in threads:
            thread.start()
        return threads


def start_worker(
    projector: Projector,
    wakeups: Wakeups,
    stop: threading.Event,
    *,
    conninfo: str | None,
    lock_dir: Path,
    scope: str,
    poll_interval: float,
    linger: float,
    channels: dict[str, str],
) -> list[threading.Thread]:
    """Run a ``Worker`` (and, on PostgreSQL, the LISTEN thread of ``channels``) until ``stop``."""
    worker = Worker(
        projector,
        Leadership(conninfo=conninfo, lock_dir=lock_dir, scope=scope),
        wakeups,
        poll_interval=poll_interval,
        linger=linger,
    )
    threads = worker.start(stop)
    if conninfo is not None:
        listener = threading.Thread(
            target=listen, args=(conninfo, channels, wakeups, stop),
            name="projection-listen", daemon=True,
        )
        listener.start()
        threads.append(listener)
    return threads
