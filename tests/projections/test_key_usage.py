"""Property: for random streams of metered usage (some events with an API key, some without,
retries included) folded in random batch sizes, each key's row of ``api_key_usage`` equals a
recomputation from the raw events, and a rebuild gives the same rows."""

from __future__ import annotations

import tempfile
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.usage import record_usage
from modelledger.bootstrap import build
from projections.models import queries
from services.models import Actor, Who
from tests.conftest import make_settings
from tests.helpers import T0, dump

KEYS = 3
event_op = st.tuples(
    st.just("event"),
    st.integers(0, KEYS),  # the key that called (KEYS: a login token, no key)
    st.integers(0, 30),  # request id: a small range, so retries happen
    st.integers(0, 500),  # minutes after T0
)
operation = st.one_of(event_op, event_op, st.tuples(st.just("catch_up"), st.sampled_from([1, 4])))


def run_stream(backend: str, request: pytest.FixtureRequest, ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        container = build(make_settings(backend, Path(tmp), request, projection_batch_size=5))
        try:
            owner = uuid.uuid4()
            model_id = uuid.UUID(str(container.models.register(Actor(owner, "p"), name="m")["id"]))
            who = Who(actor="p", correlation_id="p", actor_issuer="")
            key_ids = [container.keys.create(owner, f"k{i}", None, who)[0].id
                       for i in range(KEYS)]
            expected: dict[uuid.UUID, list[datetime]] = defaultdict(list)
            seen: set[int] = set()
            for op in ops:
                if op[0] == "catch_up":
                    container.projector.batch_size = op[1]
                    container.projector.catch_up("usage")
                    continue
                _, key, request_id, minutes = op
                at = T0 + timedelta(minutes=minutes)
                container.usage_log.record([record_usage(
                    model_id=model_id, owner_id=owner, request_id=f"r{request_id}",
                    occurred_at=at, response_time_ms=1.0, input_bytes=1, output_bytes=1,
                    success=True, api_key_id=str(key_ids[key]) if key < KEYS else "",
                    now=T0 + timedelta(days=1),
                )])
                if request_id not in seen and key < KEYS:  # a retry is stored once
                    expected[key_ids[key]].append(at)
                seen.add(request_id)
            container.projector.batch_size = 5
            container.projector.catch_up("usage")
            listed = {v.id: (v.requests, v.last_used_at)
                      for v in queries.live_keys(container.store, owner)}
            assert listed == {
                key_id: (len(expected[key_id]), max(expected[key_id], default=None))
                for key_id in key_ids
            }
            incremental = dump(container.store, "usage")
            container.projector.rebuild("usage")
            assert dump(container.store, "usage") == incremental
        finally:
            container.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, max_size=40))
def test_key_usage_equals_the_raw_events_and_a_rebuild_on_sqlite(
    request: pytest.FixtureRequest, ops: list[tuple[Any, ...]]
) -> None:
    run_stream("sqlite", request, ops)


@pytest.mark.postgres
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, max_size=40))
def test_key_usage_equals_the_raw_events_and_a_rebuild_on_postgres(
    request: pytest.FixtureRequest, pg_schema: tuple[str, str], ops: list[tuple[Any, ...]]
) -> None:
    run_stream("postgres", request, ops)
