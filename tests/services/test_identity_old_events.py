"""Usage events stored before the sender fields existed still read, count and compact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import msgspec

from domain.usage import PredictionUsage, record_usage
from eventstore.mapper import state_fields
from scheduler.compaction import compact_usage
from tests.helpers import register

if TYPE_CHECKING:
    from eventsourcing.persistence import StoredEvent

    from eventstore.ports import InsertsNewEvents
    from services.container import Container


def _as_stored_before_senders(container: Container, event: PredictionUsage.Recorded
                              ) -> StoredEvent:
    """The event as the code before ``sender``/``sender_issuer`` stored it: the same
    MessagePack array without them and every field appended after them."""
    stored = container.usage_log.mapper.to_stored_event(event)
    fields = msgspec.msgpack.decode(stored.state)
    names = [f.name for f in state_fields(stored.topic)]
    first = names.index("sender")
    assert fields[first:] == ["", "", "", "", 1]  # sender, issuer, key, caller, version
    return type(stored)(originator_id=stored.originator_id,
                        originator_version=stored.originator_version, topic=stored.topic,
                        state=msgspec.msgpack.encode(fields[:first]))


def test_usage_stored_before_the_sender_fields_is_read_counted_and_compacted(
    container: Container,
) -> None:
    owner = uuid.uuid4()
    model_id = register(container, owner, "legacy")
    now = datetime.now(UTC)
    events = [
        record_usage(model_id=model_id, owner_id=owner, request_id=f"old-{i}",
                     occurred_at=at, response_time_ms=12.0, input_bytes=1, output_bytes=2,
                     success=True, now=at + timedelta(seconds=1))
        for i, at in enumerate([now - timedelta(days=40), now - timedelta(minutes=5)])
    ]
    recorder = cast("InsertsNewEvents", container.usage_log.recorder)
    recorder.insert_new_events([_as_stored_before_senders(container, e) for e in events])
    [recent] = container.usage_log.events.get(events[1].originator_id)
    assert isinstance(recent, PredictionUsage.Recorded)
    assert (recent.request_id, recent.sender, recent.sender_issuer) == ("old-1", "", "")
    container.projector.catch_up_all()
    assert container.models.get(owner, model_id).usage.requests == 2
    summary = compact_usage(container, older_than=timedelta(days=30))
    assert summary.events == 1
    container.projector.rebuild("usage")
    assert container.models.get(owner, model_id).usage.requests == 2
