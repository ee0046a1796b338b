"""``Meter``: usage measured at the endpoint, durable on local disk first, shipped later.

A prediction waits only for its record's local commit (``serving.spool``); a shipper thread
moves records to the usage log in batches through ``UsageService.ship_measured`` and deletes
them from the spool after the event store's transaction committed. Where that thread runs is
the ``shipping`` mode: ``own`` (the process ships its spool and adopts orphans), ``none`` (it
only records), ``all`` (it records nothing and ships every spool of the directory, live ones
included: ``serve`` with several workers does that in its supervising process, so the event
store's work never competes with a serving event loop for its interpreter lock).

A crash between the commit and the delete ships a batch again, which the event store
recognises by the spool's shipment mark and stores once. While the event store is unreachable
the spool grows and the shipper retries with capped backoff; at start and every
``adopt_every`` seconds it also adopts spools whose process has ended.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Literal

import msgspec
from eventsourcing.persistence import InterfaceError, OperationalError
from prometheus_client import Counter

from services.usage import MeteredUsage
from serving.spool import (
    MAX_PENDING,
    SUFFIX,
    Spool,
    SpoolInUseError,
    SpoolWriteError,
    orphans,
    owner_alive,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from services.usage import UsageService

__all__ = ["Meter", "MeteredUsage", "Shipping"]

Shipping = Literal["own", "none", "all"]

log = logging.getLogger("modelledger.metering")
SHIPPED = Counter("modelledger_metering_shipped", "Metered usage records stored by the shipper")
SHIP_FAILURES = Counter(
    "modelledger_metering_ship_failures", "Shipping attempts that failed (event store unreachable)"
)
BACKOFF_MIN, BACKOFF_MAX = 0.2, 5.0
STOP_FLUSH_SECONDS = 2.0
# The event store's connection and lock errors (eventsourcing wraps psycopg's and sqlite3's):
# their text names a server or a lock, never a record, so it is logged.
_TRANSIENT = (OperationalError, InterfaceError, sqlite3.OperationalError)
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(MeteredUsage).decode


class Meter:
    """Records metered usage durably and ships it; one per process."""

    def __init__(
        self,
        spool_dir: Path,
        usage: UsageService,
        *,
        batch: int = 5000,
        max_pending: int = MAX_PENDING,
        linger: float = 0.1,
        adopt_every: float = 30.0,
        shipping: Shipping = "own",
    ) -> None:
        self.spool_dir = spool_dir
        self.usage = usage
        self.batch = batch
        self.max_pending = max_pending
        self.linger = linger  # a commit waits this long for company: fewer, larger shipments
        self.adopt_every = adopt_every
        self.shipping = shipping
        self.shipped = 0  # records the shipper stored (duplicates excluded)
        self.unreadable = 0  # spooled bodies that did not decode: skipped, logged
        self.failures = 0  # shipping attempts that failed
        self._spool: Spool | None = None
        self._adopted: list[Spool] = []
        self._attached: list[Spool] = []  # other live processes' spools ("all" mode)
        self._spools = threading.Lock()  # guards _adopted between the shipper and backlog()
        self._committed = threading.Event()  # set by the spool's writer once per commit
        self._nudged = threading.Event()  # flush or stop: ship now, skip the linger
        self._stopping = threading.Event()
        self._shipper: threading.Thread | None = None

    def start(self) -> None:
        """Open this process's spool (unless shipping ``all``) and start shipping (unless
        ``none``)."""
        if self.shipping != "all":
            self._spool = Spool.open(
                self.spool_dir, max_pending=self.max_pending, on_commit=self._committed.set
            )
        else:
            self.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.shipping != "none":
            self._shipper = threading.Thread(target=self._run, name="usage-shipper",
                                             daemon=True)
            self._shipper.start()

    async def record(self, usage: MeteredUsage) -> None:
        """Return once ``usage`` is on local disk (``SpoolFullError``, ``SpoolWriteError``)."""
        spool = self._spool
        if spool is None:  # stopped (shutting down) or not started: the call cannot be metered
            raise SpoolWriteError("the meter is not running")
        await spool.append(_encode(usage))

    def backlog(self) -> int:
        """Records on local disk not shipped yet, this process's and adopted ones."""
        with self._spools:  # held: the shipper removes an adopted spool under it
            return sum(s.pending() for s in self._all_spools())

    def _all_spools(self) -> list[Spool]:
        return [s for s in (self._spool, *self._adopted, *self._attached) if s is not None]

    def flush(self, timeout: float) -> bool:
        """Ship everything spooled now (without a shipper of its own: wait for the process
        that ships this one's spool); whether the backlog was empty within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.backlog():
            if time.monotonic() >= deadline:
                return False
            if self._shipper is not None:
                self._nudged.set()
                self._committed.set()
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """Ship briefly, then close; what is left stays on disk for the next start."""
        if self._shipper is None:
            self._stop_recording()
            return
        self.flush(STOP_FLUSH_SECONDS)
        self._stopping.set()
        self._nudged.set()
        self._committed.set()
        # A shipment stuck on the event store must not hold the shutdown: its records stay
        # spooled, and the daemon thread ends with the process.
        self._shipper.join(timeout=STOP_FLUSH_SECONDS)
        shipper_done = not self._shipper.is_alive()
        with self._spools:
            own, self._spool = self._spool, None
            adopted, self._adopted = self._adopted, []
            attached, self._attached = self._attached, []
        for spool in attached:
            spool.close()
        if own is not None:
            own.close()
        for spool in adopted:
            if not (shipper_done and self._removed(spool)):
                spool.close()
        if not shipper_done:
            return
        if own is not None:
            # An orphan now: removed here rather than at the next start.
            self._remove_if_empty(own.path)
        else:  # shipping "all": and what killed processes left, once shipped
            for path in _listed_orphans(self.spool_dir):
                self._remove_if_empty(path)

    def _stop_recording(self) -> None:
        """Shipping ``none``: wait briefly for whoever ships, close, remove the spool if empty."""
        if self._spool is None:
            return
        self.flush(STOP_FLUSH_SECONDS)
        with self._spools:
            own, self._spool = self._spool, None
        own.close()
        self._remove_if_empty(own.path)

    def _run(self) -> None:
        backoff = 0.0
        next_adoption = 0.0
        while True:
            # Cleared before the stop check: a commit, flush or stop from here on (stop sets
            # _stopping first) wakes the idle wait below instead of being lost.
            self._committed.clear()
            if self._stopping.is_set():
                return
            if self.shipping == "all":
                self._discover()
            elif time.monotonic() >= next_adoption:
                self._adopt_orphans()
                next_adoption = time.monotonic() + self.adopt_every
            try:
                full = self._ship_round()
            except Exception as error:  # noqa: BLE001 - whatever failed, the records stay spooled
                self.failures += 1
                SHIP_FAILURES.inc()
                backoff = min(max(BACKOFF_MIN, backoff * 2), BACKOFF_MAX)
                self._log_failure(error, backoff)
                self._stopping.wait(backoff)
                continue
            backoff = 0.0
            if full:
                continue  # a full batch: more are waiting
            if self.shipping == "all":  # other processes' commits wake nobody here: poll
                self._nudged.wait(self.linger)
                self._nudged.clear()
                continue
            idle = max(0.0, next_adoption - time.monotonic())
            if self._committed.wait(idle) and not self._nudged.is_set():
                self._nudged.wait(self.linger)
            self._nudged.clear()

    def _ship_round(self) -> bool:
        """One batch from each spool with records; whether any batch was full."""
        with self._spools:
            own = self._spool
            spools = self._all_spools()
        full = False
        for spool in spools:
            count = self._ship_batch(spool)
            full = full or count >= self.batch
            if count == 0 and spool.attached:
                self._release_attached(spool)
            elif count == 0 and spool is not own:
                self._remove_adopted(spool)
        return full

    def _discover(self) -> None:
        """Shipping ``all``: attach the spools of live processes, adopt those of ended ones."""
        paths = _listed(lambda: sorted(self.spool_dir.glob(f"*{SUFFIX}")))
        with self._spools:
            known = {s.path for s in (*self._adopted, *self._attached)}
        for path in paths:
            if path in known or self._adopt(path):
                continue
            try:
                spool = Spool.attach(path)
            except FileNotFoundError:
                continue  # closed and removed by its owner meanwhile
            except (OSError, sqlite3.Error) as error:
                log.warning("cannot attach usage spool",
                            extra={"spool": path.name, "error": type(error).__name__})
                continue
            with self._spools:
                self._attached.append(spool)

    def _release_attached(self, spool: Spool) -> None:
        """An emptied live spool: dropped once its owner removed it; adopted once its owner
        ended without removing it (killed); kept otherwise."""
        if spool.path.exists() and owner_alive(spool.path):
            return
        with self._spools:
            self._attached.remove(spool)
        spool.close()

    def _remove_adopted(self, spool: Spool) -> None:
        with self._spools:  # backlog() never counts a spool being removed
            if not spool.remove_if_empty():
                return
            self._adopted.remove(spool)
        log.info("adopted usage spool shipped and removed", extra={"spool": spool.path.name})
        self._retire(spool.path)  # outside the lock: backlog() never waits on the event store

    def _remove_if_empty(self, path: Path) -> None:
        try:
            spool = Spool.adopt(path)
        except (SpoolInUseError, FileNotFoundError):
            return  # another process adopted it first
        if not self._removed(spool):
            spool.close()

    def _removed(self, spool: Spool) -> bool:
        """``spool.remove_if_empty()``, and the removed spool's shipment mark retired."""
        if not spool.remove_if_empty():
            return False
        self._retire(spool.path)
        return True

    def _retire(self, path: Path) -> None:
        """Retire a removed spool's shipment mark; left as it is (one row, still guarding)
        if the store fails."""
        try:
            self.usage.retire_spool(path.stem)
        except Exception as error:  # noqa: BLE001 - a mark left behind costs one row, no more
            log.warning("cannot retire a removed usage spool's shipment mark",
                        extra={"spool": path.name, "error": type(error).__name__})

    def _ship_batch(self, spool: Spool) -> int:
        rows = spool.read(self.batch)
        if not rows:
            return 0
        shipment: list[tuple[int, list[MeteredUsage]]] = []
        for seq, bodies in rows:
            records: list[MeteredUsage] = []
            for body in bodies:
                try:
                    records.append(_decode(body))
                except msgspec.DecodeError:
                    self.unreadable += 1
                    # Skipped, or it would hold every record behind it; its body is not logged.
                    log.error(  # noqa: TRY400 - no traceback worth showing
                        "unreadable usage record skipped", extra={"spool": spool.path.name}
                    )
            shipment.append((seq, records))
        stored = self.usage.ship_measured(spool.path.stem, shipment)
        self.shipped += stored
        SHIPPED.inc(stored)
        spool.delete_through(rows[-1][0])  # after the commit: a crash before it ships again
        return sum(len(bodies) for _, bodies in rows)

    def _adopt_orphans(self) -> None:
        for path in _listed_orphans(self.spool_dir):
            self._adopt(path)

    def _adopt(self, path: Path) -> bool:
        """Adopt the spool at ``path`` if its process has ended; whether this meter ships it."""
        with self._spools:
            if path in {s.path for s in self._adopted}:
                return True
        try:
            spool = Spool.adopt(path)
        except (SpoolInUseError, FileNotFoundError):
            return False  # alive, or another process took it first, or shipped and removed it
        except (OSError, sqlite3.Error) as error:
            log.warning("cannot adopt usage spool",
                        extra={"spool": path.name, "error": type(error).__name__})
            return False
        with self._spools:
            self._adopted.append(spool)
        log.info("adopted usage spool", extra={"spool": path.name, "records": spool.pending()})
        return True

    def _log_failure(self, error: Exception, retry_in: float) -> None:
        # The error's kind and, for connection and lock errors, their text; never a record.
        reason = str(error).splitlines()[0][:200] if isinstance(error, _TRANSIENT) else ""
        log.warning(
            "usage shipping failed; retrying",
            extra={"error": type(error).__name__, "reason": reason,
                   "retry_in_s": retry_in, "backlog": self._safe_backlog()},
        )

    def _safe_backlog(self) -> int | None:
        try:
            return self.backlog()
        except sqlite3.Error:
            return None


def _listed_orphans(directory: Path) -> list[Path]:
    return _listed(lambda: orphans(directory))


def _listed(listing: Callable[[], list[Path]]) -> list[Path]:
    """The spools ``listing`` finds; none (logged) when the directory cannot be read."""
    try:
        return listing()
    except OSError as error:
        log.warning("cannot list usage spools", extra={"error": type(error).__name__})
        return []
