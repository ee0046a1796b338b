"""PostgreSQL restarted under ingest: nothing acknowledged is lost or counted twice, and the
service answers again within seconds without being restarted itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.processes import Service, ThrowawayPostgres
from tests.faults.traffic import (
    ABANDONED,
    REQUEST_TIMEOUT,
    Traffic,
    expected_ids,
    gateway_token,
    owner_token,
    projected_totals,
    register_models,
    report,
    stored_per_record,
    wait_projected,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
RECOVERY_SECONDS = 15.0
GRACE_SECONDS = 0.25  # answers to requests that met the server down may still arrive
SINGLE_CLIENTS, SINGLE_RECORDS = 6, 150
BATCH_CLIENTS, BATCHES, BATCH_SIZE = 2, 12, 100
ABANDON_EVERY = 10  # a client gives up waiting for every 10th answer and sends it again


@pytest.fixture
def service(tmp_path: Path, postgres: ThrowawayPostgres) -> Iterator[Service]:
    serve = Service(tmp_path, postgres.url, "public", workers=1)
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()


def _first_read_after(url: str, token: str, model_id: str, *, moment: float,
                      stop: threading.Event, seen: list[float]) -> None:
    """Poll a model's detail (a read) and note when it first answers after ``moment``."""
    with httpx.Client(base_url=url, timeout=5,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        while not stop.is_set():
            try:
                ok = http.get(f"/api/models/{model_id}").status_code == 200
            except httpx.TransportError:
                ok = False
            if ok and time.monotonic() > moment:
                seen.append(time.monotonic())
                return
            time.sleep(0.1)


def test_postgres_restart_during_ingest_stores_every_acknowledged_record_exactly_once(
    service: Service, postgres: ThrowawayPostgres
) -> None:
    owner = owner_token(service.secret, "alice")
    models = register_models(service.url, owner, 3)
    traffic = Traffic(service.url, gateway_token(service.secret, models), models,
                      deadline=time.monotonic() + 90, abandon_every=ABANDON_EVERY)
    total = SINGLE_CLIENTS * SINGLE_RECORDS + BATCH_CLIENTS * BATCHES * BATCH_SIZE
    traffic.start_single(SINGLE_CLIENTS, SINGLE_RECORDS)
    traffic.start_batches(BATCH_CLIENTS, BATCHES, BATCH_SIZE)
    traffic.wait_acknowledged(total // 4, timeout=40)

    server_pid = service.pid
    restarting = time.monotonic()
    postgres.restart()
    up = time.monotonic()
    stop, reads = threading.Event(), list[float]()
    reader = threading.Thread(
        target=_first_read_after, args=(service.url, owner, models[0]),
        kwargs={"moment": up, "stop": stop, "seen": reads},
    )
    reader.start()
    traffic.join(timeout=90)
    reader.join(timeout=RECOVERY_SECONDS + 5)
    stop.set()

    assert not traffic.problems, traffic.problems
    assert traffic.acknowledged() == total  # every client got every record acknowledged
    # The service came back by itself: the same process, answering writes and reads again.
    assert service.alive()
    assert service.pid == server_pid
    first_write = traffic.first_ack_after(up)
    assert first_write is not None
    assert first_write - up < RECOVERY_SECONDS, f"writes failed {first_write - up:.1f} s"
    assert reads, f"no read succeeded within {RECOVERY_SECONDS} s of the restart"
    assert reads[0] - up < RECOVERY_SECONDS
    # Once PostgreSQL is back no request fails: pooled connections the restart killed are
    # checked and replaced before use, not handed to a request (which would get a 500).
    late = [(round(sent - up, 2), round(failed - up, 2), what)
            for sent, failed, what in traffic.failures
            if failed > up + GRACE_SECONDS and what != ABANDONED]
    assert late == [], f"(sent, failed) seconds after PostgreSQL was back: {late}"
    # A record whose answer was lost is retried and then reported as already recorded; a
    # record never sent before is never reported so.
    assert traffic.unexpected_duplicates() == []
    assert traffic.answered_again() > 0  # some retries did find their record stored
    assert all(accepted + dups == size and dups in {0, size}
               for size, accepted, dups in traffic.batches)

    stored = stored_per_record(postgres.url, "public")
    assert set(stored) == expected_ids(traffic.snapshot())
    assert set(stored.values()) == {1}
    wait_projected(postgres.url, "public")
    assert projected_totals(postgres.url, "public") == dict(traffic.per_model())
    retried = sum(a.failed_attempts > 0 for a in traffic.acks.values())
    print(  # noqa: T201 - the durations the report quotes
        f"\nrestart took {up - restarting:.2f} s; first write acknowledged "
        f"{first_write - up:.2f} s and first read {reads[0] - up:.2f} s after it; "
        f"{len(traffic.failures)} failed attempts, {retried} records retried, "
        f"{traffic.answered_again()} found already stored"
    )


def _first_attempts(url: str, owner: str, gateway: str, models: list[str]) -> list[str]:
    """One of each kind of request, each sent once: what failed (none, once all is well)."""
    users, writer = {"Authorization": f"Bearer {owner}"}, {"Authorization": f"Bearer {gateway}"}
    failed = []
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
        for i, model_id in enumerate(models * 2):
            for method, path, headers, body in (
                ("POST", f"/api/models/{model_id}/usage", writer, report(f"after-{i}", i)),
                ("POST", "/api/usage/batch", writer,
                 {"records": [{"model_id": model_id, **report(f"after-{i}-{k}", k)}
                              for k in range(10)]}),
                ("GET", f"/api/models/{model_id}", users, None),
                ("GET", "/api/models", users, None),
                ("GET", f"/api/models/{model_id}/usage", users, None),
                ("PUT", f"/api/models/{model_id}", users, {"description": f"after {i}"}),
            ):
                try:
                    response = http.request(method, path, headers=headers, json=body)
                except httpx.TransportError as error:
                    failed.append(f"{method} {path}: {type(error).__name__}")
                    continue
                if response.status_code >= 300:
                    failed.append(f"{method} {path}: {response.status_code} {response.text[:80]}")
    return failed


def test_first_requests_after_a_postgres_restart_succeed_without_a_service_restart(
    service: Service, postgres: ThrowawayPostgres
) -> None:
    owner = owner_token(service.secret, "alice")
    models = register_models(service.url, owner, 3)
    gateway = gateway_token(service.secret, models)
    # Concurrent traffic first: every pool then holds several connections.
    warm = Traffic(service.url, gateway, models, deadline=time.monotonic() + 60)
    warm.start_single(SINGLE_CLIENTS, 30)
    warm.start_batches(BATCH_CLIENTS, 3, BATCH_SIZE)
    warm.join(timeout=60)
    assert not warm.problems, warm.problems
    assert _first_attempts(service.url, owner, gateway, models) == []

    postgres.restart()  # while idle: every pooled connection is now dead

    # Each pool lends only a connection that works: nothing fails on one the restart killed.
    assert _first_attempts(service.url, owner, gateway, models) == []
    assert service.alive()
