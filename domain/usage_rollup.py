"""``UsageRollup``: the summary of one model-version-hour's prediction requests, replacing
their raw events.

Compaction replaces the raw usage of a model's version in an hour (``PredictionUsage.Recorded``
events, and ``UsageBatch.Recorded`` batches of calls) by one ``UsageRollup.Recorded`` event
carrying exactly the ``UsageStats`` the projections fold from them. The roll-up of a
model-version-hour has a fixed id (``rollup_id``): a later compaction of late usage for the
same hour replaces the earlier roll-up by one holding both, so there is at most one roll-up
per model, version and hour.

A roll-up also carries each API key's requests and latest use among them (``api_keys``), so
that a rebuild folds ``api_key_usage`` from it exactly as from the raw events.
"""

from __future__ import annotations

from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from domain.usage_stats import UsageStats

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# An API key's id (as the usage events spell it) -> (its requests, the latest one's
# ``occurred_at`` in microseconds since the Unix epoch).
KeyCounts = dict[str, tuple[int, int]]

ROLLUP_NAMESPACE = UUID("5b0c2a44-7a53-4c59-9a43-0d3b8a1f2e61")


def rollup_id(model_id: UUID, hour: int, model_version: int = 1) -> UUID:
    """The id of a model-version-hour's roll-up (its own namespace: it never equals a usage
    id). Version 1's is the id roll-ups had before versions existed, so a later compaction of
    the same hour merges into a roll-up written then."""
    if model_version == 1:
        return uuid5(ROLLUP_NAMESPACE, f"{model_id}:{hour}")
    return uuid5(ROLLUP_NAMESPACE, f"{model_id}:{hour}:v{model_version}")


class UsageRollup(Aggregate):
    """The compacted usage of one model in one hour."""

    class Recorded(Aggregate.Created):
        model_id: UUID
        owner_id: UUID
        hour: int  # whole hours since the Unix epoch (UTC)
        # How many usage records it stands for: raw events, and the calls of batches (one
        # each, as if they had been raw events; roll-ups written before batches count alike).
        raw_events: int
        requests: int
        successes: int
        failures: int
        rejected: int
        total_us: int
        min_us: int | None
        max_us: int | None
        input_bytes: int
        output_bytes: int
        histogram: dict[int, int]
        last_at: datetime | None
        # Appended with a default: a roll-up written before it decodes with no keys. A factory,
        # as dataclasses refuse a mutable default.
        api_keys: dict[str, tuple[int, int]] = field(default_factory=dict)
        model_version: int = 1  # appended: a roll-up written before versions is version 1's


_TOPIC = get_topic(UsageRollup)


def roll_up(
    *,
    model_id: UUID,
    owner_id: UUID,
    hour: int,
    stats: UsageStats,
    raw_events: int,
    api_keys: Mapping[str, tuple[int, int]] | None = None,
    model_version: int = 1,
    now: datetime | None = None,
) -> UsageRollup.Recorded:
    """The roll-up event of a model-version-hour holding ``stats``."""
    fields: dict[str, Any] = {  # the library's event classes are not typed dataclasses
        "originator_id": rollup_id(model_id, hour, model_version),
        "originator_version": 1,
        "timestamp": now or datetime.now(UTC),
        "originator_topic": _TOPIC,
        "model_id": model_id,
        "owner_id": owner_id,
        "hour": hour,
        "raw_events": raw_events,
        "requests": stats.requests,
        "successes": stats.successes,
        "failures": stats.failures,
        "rejected": stats.rejected,
        "total_us": stats.total_us,
        "min_us": stats.min_us,
        "max_us": stats.max_us,
        "input_bytes": stats.input_bytes,
        "output_bytes": stats.output_bytes,
        "histogram": dict(stats.histogram),
        "last_at": stats.last_at,
        "api_keys": dict(api_keys or {}),
        "model_version": model_version,
    }
    return UsageRollup.Recorded(**fields)


def stats_of(e: UsageRollup.Recorded) -> UsageStats:
    """The statistics a roll-up carries."""
    return UsageStats(
        requests=e.requests,
        successes=e.successes,
        failures=e.failures,
        rejected=e.rejected,
        total_us=e.total_us,
        min_us=e.min_us,
        max_us=e.max_us,
        input_bytes=e.input_bytes,
        output_bytes=e.output_bytes,
        histogram=dict(e.histogram),
        last_at=e.last_at,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_us(moment: datetime) -> int:
    """An aware datetime as whole microseconds since the Unix epoch (exact, unlike a float)."""
    return (moment - _EPOCH) // _MICROSECOND


def from_epoch_us(micros: int) -> datetime:
    """The inverse of ``epoch_us``, in UTC."""
    return _EPOCH + timedelta(microseconds=micros)


def key_counts_of(requests: Iterable[Any]) -> KeyCounts:
    """Each API key's requests among usage records and its latest use; a record without a key
    (a login token's call, reported usage) counts for none, as in the usage fold."""
    counts: dict[str, int] = {}
    latest: dict[str, datetime] = {}
    for r in requests:
        if key := r.api_key_id:
            counts[key] = counts.get(key, 0) + 1
            known = latest.get(key)
            if known is None or r.occurred_at > known:
                latest[key] = r.occurred_at
    return {key: (n, epoch_us(latest[key])) for key, n in counts.items()}


def merge_key_counts(into: KeyCounts, more: Mapping[str, tuple[int, int]]) -> None:
    """Add ``more`` to ``into``: requests summed, the latest use kept."""
    for key, (requests, last_us) in more.items():
        known = into.get(key)
        into[key] = (
            (requests, last_us) if known is None
            else (known[0] + requests, max(known[1], last_us))
        )
