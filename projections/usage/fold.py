"""The ``usage`` projection's fold: usage events become mergeable ``UsageStats`` deltas.

Each event is added once to its model-hour (and, served by a version other than 1, to its
model-version-hour); the owner-hour, the (UTC) days and the all-time totals are merged from
those, so a batch costs one ``add_request`` per event plus one merge per key. Version 1 has no
rows of its own: its figures are the model's minus the other versions' (``usage_stats.without``),
so models that never had a second version (nearly all, and every one recorded before versions)
cost the projection nothing more.

A ``UsageBatch.Recorded`` (the endpoint's calls of one model-version-hour) is summed once and
merged like a roll-up. A ``UsageRollup.Recorded`` (written by compaction) is merged into its
model-hour like the raw events it replaces. No projection ever counts both: compaction gives
each roll-up the notification id of the newest event it replaces (reusing that id in the same
transaction that deletes them) and compacts only events at or below every tracking position,
under the projections' locks. A projection that counted the raw events is already past the
roll-up's id and never reads it; a rebuild from 0 finds the roll-up where the raw events were.
Both orders give identical rows because ``UsageStats.merge`` is exact (integer sums, counts,
extremes).

Events the service metered itself name the API key that called; each key's count and latest
use are folded too (``KeyUse``), in the same pass. A roll-up carries the counts of the raw
events it replaced, per key as they spelled it, and adds them to the same ``key_use`` entries:
requests summed, the latest use kept, so a rebuild after compaction gives the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from domain.usage import PredictionUsage, hour_of
from domain.usage_batch import UsageBatch
from domain.usage_rollup import UsageRollup, from_epoch_us, stats_of
from domain.usage_stats import UsageStats, to_micros

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

K = TypeVar("K")


@dataclass(slots=True)
class KeyUse:
    """An API key's requests and its latest one's time, in a batch or all told."""

    requests: int
    last_at: datetime

    def add(self, requests: int, last_at: datetime) -> None:
        self.requests += requests
        self.last_at = max(self.last_at, last_at)


@dataclass
class UsageDelta:
    """What one batch adds to each statistics table, keyed like the table."""

    version_hourly: dict[tuple[UUID, int, int], UsageStats] = field(default_factory=dict)
    version_daily: dict[tuple[UUID, int, int], UsageStats] = field(default_factory=dict)
    version_totals: dict[tuple[UUID, int], UsageStats] = field(default_factory=dict)
    model_hourly: dict[tuple[UUID, int], UsageStats] = field(default_factory=dict)
    owner_hourly: dict[tuple[UUID, int], UsageStats] = field(default_factory=dict)
    model_daily: dict[tuple[UUID, int], UsageStats] = field(default_factory=dict)
    owner_daily: dict[tuple[UUID, int], UsageStats] = field(default_factory=dict)
    model_totals: dict[UUID, UsageStats] = field(default_factory=dict)
    owner_totals: dict[UUID, UsageStats] = field(default_factory=dict)
    model_owner: dict[UUID, UUID] = field(default_factory=dict)
    # By the events' ``api_key_id`` text while folding; by key id once the batch is folded.
    key_use: dict[str, KeyUse] = field(default_factory=dict)
    keys: dict[UUID, KeyUse] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.model_hourly)


def fold_usage_events(events: Iterable[object]) -> UsageDelta:
    """Fold a batch of usage events into per-table deltas."""
    delta = UsageDelta()
    recorded = PredictionUsage.Recorded
    for domain_event in events:
        if type(domain_event) is recorded:  # the hot path: skip the dispatch
            _add_recorded(domain_event, delta)
        else:
            _add(domain_event, delta)
    # Each level merges from the finest one with fewer keys: hours into days, days into totals.
    for (model_id, version, hour), stats in delta.version_hourly.items():
        _merged(delta.version_daily, (model_id, version, hour // 24)).merge(stats)
    for (model_id, version, _), stats in delta.version_daily.items():
        _merged(delta.version_totals, (model_id, version)).merge(stats)
    for (model_id, hour), stats in delta.model_hourly.items():
        _merged(delta.owner_hourly, (delta.model_owner[model_id], hour)).merge(stats)
        _merged(delta.model_daily, (model_id, hour // 24)).merge(stats)
    for (model_id, day), stats in delta.model_daily.items():
        _merged(delta.owner_daily, (delta.model_owner[model_id], day)).merge(stats)
        _merged(delta.model_totals, model_id).merge(stats)
    for model_id, stats in delta.model_totals.items():
        _merged(delta.owner_totals, delta.model_owner[model_id]).merge(stats)
    delta.keys = _by_key_id(delta.key_use)
    return delta


def _by_key_id(key_use: dict[str, KeyUse]) -> dict[UUID, KeyUse]:
    """Once per key and batch, not per event; a text that names no key id is not counted
    (the projection must never stop on one)."""
    keys: dict[UUID, KeyUse] = {}
    for text, use in key_use.items():
        try:
            key_id = UUID(text)
        except ValueError:
            continue
        if key_id in keys:  # the same id spelled two ways
            keys[key_id].add(use.requests, use.last_at)
        else:
            keys[key_id] = use
    return keys


def _merged(table: dict[K, UsageStats], key: K) -> UsageStats:
    stats = table.get(key)
    if stats is None:
        stats = table[key] = UsageStats()
    return stats


@singledispatch
def _add(domain_event: object, delta: UsageDelta) -> None:
    """Events the statistics do not depend on."""


@_add.register
def _add_recorded(e: PredictionUsage.Recorded, delta: UsageDelta) -> None:
    delta.model_owner[e.model_id] = e.owner_id
    hour = hour_of(e.occurred_at)
    _merged(delta.model_hourly, (e.model_id, hour)).add_request(
        response_us=to_micros(e.response_time_ms),
        success=e.success,
        input_bytes=e.input_bytes,
        output_bytes=e.output_bytes,
        occurred_at=e.occurred_at,
        rejected=e.rejected,
    )
    if e.model_version != 1:  # version 1's rows are the model's minus the others'
        _merged(delta.version_hourly, (e.model_id, e.model_version, hour)).add_request(
            response_us=to_micros(e.response_time_ms),
            success=e.success,
            input_bytes=e.input_bytes,
            output_bytes=e.output_bytes,
            occurred_at=e.occurred_at,
            rejected=e.rejected,
        )
    if e.api_key_id:
        _add_key_use(delta.key_use, e.api_key_id, 1, e.occurred_at)


@_add.register
def _(e: UsageBatch.Recorded, delta: UsageDelta) -> None:
    # One model-version-hour: its calls summed once, merged where single events are added.
    delta.model_owner[e.model_id] = e.owner_id
    stats = UsageStats.of_requests(e.calls)
    _merged(delta.model_hourly, (e.model_id, e.hour)).merge(stats)
    if e.model_version != 1:
        _merged(delta.version_hourly, (e.model_id, e.model_version, e.hour)).merge(stats)
    for call in e.calls:
        if call.api_key_id:
            _add_key_use(delta.key_use, call.api_key_id, 1, call.occurred_at)


@_add.register
def _(e: UsageRollup.Recorded, delta: UsageDelta) -> None:
    delta.model_owner[e.model_id] = e.owner_id
    stats = stats_of(e)
    _merged(delta.model_hourly, (e.model_id, e.hour)).merge(stats)
    if e.model_version != 1:
        _merged(delta.version_hourly, (e.model_id, e.model_version, e.hour)).merge(stats)
    for text, (requests, last_us) in e.api_keys.items():
        _add_key_use(delta.key_use, text, requests, from_epoch_us(last_us))


def _add_key_use(key_use: dict[str, KeyUse], text: str, requests: int, last_at: datetime) -> None:
    use = key_use.get(text)
    if use is None:
        key_use[text] = KeyUse(requests, last_at)
    else:
        use.add(requests, last_at)
