"""Ingest clients that retry until acknowledged, and what the database holds afterwards.

A client sends each record (or batch) with its own request ids and repeats the very same
request after an error or no answer, as an inference gateway would. The ledger remembers every
acknowledgement, so a test can check that each acknowledged record is stored exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg import sql

from api.tokens import SCOPE_MODELS, SCOPE_USAGE_WRITE, UsageGrant, issue_token
from domain.usage import usage_id
from scheduler.compaction import RAW_TOPIC

REQUEST_TIMEOUT = 10.0  # a request the server never answers counts as failed after this
# A first attempt abandoned after this long without an answer: the server still commits it,
# so the retry must be answered "already recorded" and the record counted once.
ABANDON_AFTER = 0.001
ABANDONED = "abandoned"  # a failure the client caused itself


def owner_token(secret: str, subject: str) -> str:
    return issue_token(secret, subject, [SCOPE_MODELS])


def gateway_token(secret: str, model_ids: list[str]) -> str:
    """The inference gateway's service token: it may write usage for ``model_ids`` only."""
    grant = UsageGrant(models=tuple(uuid.UUID(m) for m in model_ids))
    return issue_token(secret, "gateway", [SCOPE_USAGE_WRITE], grant=grant)


def register_models(base_url: str, token: str, count: int) -> list[str]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        ids = []
        for i in range(count):
            response = http.post("/api/models", json={"name": f"fault-{i}", "framework": "onnx"},
                                 headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 201, response.text
            ids.append(str(response.json()["id"]))
        return ids


@dataclass(frozen=True)
class Ack:
    model_id: str
    request_id: str
    fresh: bool  # False: answered "already recorded"
    failed_attempts: int  # errors or missing answers before this acknowledgement
    at: float  # time.monotonic() of the answer


class GaveUpError(Exception):
    """A request was still not acknowledged at the traffic's deadline."""


@dataclass
class Traffic:
    """Retrying ingest clients (threads) against one service, and what they were told."""

    base_url: str
    token: str
    model_ids: list[str]
    deadline: float  # time.monotonic() after which clients give up
    abandon_every: int = 0  # every n-th request's first attempt is abandoned (0: none)
    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)
    batches: list[tuple[int, int, int]] = field(default_factory=list)  # size, accepted, dups
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # sent, failed, what
    problems: list[str] = field(default_factory=list)  # answers no retry can fix
    in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    # --- the clients --------------------------------------------------------------------

    def start_single(self, clients: int, records: int) -> None:
        """``clients`` threads, each sending ``records`` single-record requests in turn."""
        for c in range(clients):
            self._spawn(self._single, f"s{c}", records)

    def start_batches(self, clients: int, batches: int, size: int) -> None:
        for c in range(clients):
            self._spawn(self._batches, f"b{c}", batches, size)

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "clients did not finish in time"

    def _spawn(self, target: Any, name: str, *args: int) -> None:
        thread = threading.Thread(target=self._guarded, args=(target, name, *args), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _guarded(self, target: Any, name: str, *args: int) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT,
                              headers={"Authorization": f"Bearer {self.token}"}) as http:
                target(http, name, *args)
        except Exception as error:  # noqa: BLE001 - the test reports every client's failure
            with self._lock:
                self.problems.append(f"client {name}: {type(error).__name__}: {error}")

    def _single(self, http: httpx.Client, name: str, records: int) -> None:
        for i in range(records):
            model_id = self.model_ids[i % len(self.model_ids)]
            request_id = f"{name}-{i}"
            response, failed = self._until_answered(
                http, f"/api/models/{model_id}/usage", report(request_id, i),
                abandon=self._abandons(i),
            )
            if response.status_code not in {200, 201}:
                self._problem(f"{request_id}: {response.status_code} {response.text[:200]}")
                return
            self._acknowledged(
                [(model_id, request_id)], fresh=response.status_code == 201, failed=failed
            )

    def _batches(self, http: httpx.Client, name: str, batches: int, size: int) -> None:
        for b in range(batches):
            model_id = self.model_ids[b % len(self.model_ids)]
            ids = [f"{name}-{b}-{k}" for k in range(size)]
            body = {"records": [{"model_id": model_id, **report(r, k)}
                                for k, r in enumerate(ids)]}
            response, failed = self._until_answered(http, "/api/usage/batch", body,
                                                    abandon=self._abandons(b))
            if response.status_code != 200:
                self._problem(f"batch {name}-{b}: {response.status_code} {response.text[:200]}")
                return
            result = response.json()
            with self._lock:
                self.batches.append((size, result["accepted"], result["duplicates"]))
            if result["rejected"]:
                self._problem(f"batch {name}-{b} rejected {result['rejected'][:3]}")
                return
            # One transaction: a batch is either new or (retried after its commit) all known.
            self._acknowledged([(model_id, r) for r in ids],
                               fresh=result["accepted"] == size, failed=failed)

    def _abandons(self, index: int) -> bool:
        return self.abandon_every > 0 and index % self.abandon_every == self.abandon_every - 1

    def _until_answered(
        self, http: httpx.Client, path: str, body: dict[str, Any], *, abandon: bool = False
    ) -> tuple[httpx.Response, int]:
        """The first answer that is not a server error; the number of failed attempts."""
        failed, pause = 0, 0.02
        while True:
            if time.monotonic() > self.deadline:
                raise GaveUpError(f"{path}: still failing after {failed} attempts")
            with self._lock:
                self.in_flight += 1
            sent = time.monotonic()
            timeout = httpx.Timeout(REQUEST_TIMEOUT, read=ABANDON_AFTER) if abandon else None
            abandon = False
            try:
                response = http.post(path, json=body, timeout=timeout or REQUEST_TIMEOUT)
            except httpx.TransportError as error:
                what = ABANDONED if timeout else type(error).__name__
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response, failed
                what = f"{response.status_code}"
            finally:
                with self._lock:
                    self.in_flight -= 1
            with self._lock:
                self.failures.append((sent, time.monotonic(), what))
            failed += 1
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _acknowledged(self, keys: list[tuple[str, str]], *, fresh: bool, failed: int) -> None:
        now = time.monotonic()
        with self._lock:
            for model_id, request_id in keys:
                self.acks[(model_id, request_id)] = Ack(model_id, request_id, fresh, failed, now)

    def _problem(self, what: str) -> None:
        with self._lock:
            self.problems.append(what)

    # --- what the clients saw -----------------------------------------------------------

    def acknowledged(self) -> int:
        with self._lock:
            return len(self.acks)

    def wait_acknowledged(self, at_least: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.acknowledged() < at_least:
            assert not self.problems, self.problems
            assert time.monotonic() < end, f"only {self.acknowledged()} acknowledged in time"
            time.sleep(0.02)

    def snapshot(self) -> set[tuple[str, str]]:
        with self._lock:
            return set(self.acks)

    def first_ack_after(self, moment: float) -> float | None:
        with self._lock:
            later = [a.at for a in self.acks.values() if a.at > moment]
        return min(later) if later else None

    def answered_again(self) -> int:
        """Records a retry found already stored (an earlier attempt committed unanswered)."""
        with self._lock:
            return sum(not a.fresh for a in self.acks.values())

    def unexpected_duplicates(self) -> list[Ack]:
        """Records answered "already recorded" although no earlier attempt was sent in vain."""
        with self._lock:
            return [a for a in self.acks.values() if not a.fresh and a.failed_attempts == 0]

    def per_model(self) -> Counter[str]:
        with self._lock:
            return Counter(a.model_id for a in self.acks.values())


def report(request_id: str, i: int) -> dict[str, Any]:
    """The body of a usage report for ``request_id`` (varied by ``i``)."""
    occurred = datetime.now(UTC) - timedelta(minutes=i % 120)
    return {"request_id": request_id, "occurred_at": occurred.isoformat(),
            "response_time_ms": 3 + i % 50, "input_bytes": 120, "output_bytes": 40,
            "success": i % 7 != 0, "status_code": 200 if i % 7 else 500}


# --- what the database holds ------------------------------------------------------------


def stored_per_record(database_url: str, schema: str) -> Counter[uuid.UUID]:
    """How many raw usage events the log holds per usage id (``usage_id(model, request)``)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT originator_id, count(*) FROM {}.usageledger_events "
                    "WHERE topic = %s GROUP BY originator_id").format(sql.Identifier(schema)),
            (RAW_TOPIC,),
        ).fetchall()
    return Counter({row[0]: int(row[1]) for row in rows})


def expected_ids(acks: set[tuple[str, str]]) -> set[uuid.UUID]:
    return {usage_id(uuid.UUID(m), r) for m, r in acks}


def wait_projected(database_url: str, schema: str, timeout: float = 30) -> None:
    """Until the usage projection has folded the whole usage log."""
    query = sql.SQL(
        "SELECT (SELECT coalesce(max(notification_id), 0) FROM {s}.usageledger_events), "
        "(SELECT position FROM {s}.projection_state WHERE name = 'usage')"
    ).format(s=sql.Identifier(schema))
    end = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            head, position = conn.execute(query).fetchone() or (0, None)
            if position is not None and position >= head:
                return
            assert time.monotonic() < end, f"usage projection at {position}, log head {head}"
            time.sleep(0.2)


def projected_totals(database_url: str, schema: str) -> dict[str, int]:
    """Requests counted per model by the usage projection (served and rejected)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT model_id, requests + rejected FROM {}.usage_model_totals").format(
                sql.Identifier(schema)
            )
        ).fetchall()
    return {str(row[0]): int(row[1]) for row in rows}


def upload_onnx_model(http: httpx.Client, owner: dict[str, str], name: str = "scorer") -> Any:
    """A logistic-regression ONNX model of the owner's, uploaded through the API."""
    from tests.onnx_models import logistic_regression  # noqa: PLC0415

    return http.post(
        "/api/models", data={"name": name, "framework": "onnx"},
        files={"file": ("m.onnx", logistic_regression(), "application/octet-stream")},
        headers=owner,
    ).json()
