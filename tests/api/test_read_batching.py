"""Concurrent reads of one kind share a statement, and never answer from one that began earlier."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from api import presenters
from api.read_batching import Coalescer
from api.reads import Reads
from projections.usage import queries, windows
from services.models import Actor
from services.usage import Writer
from tests.helpers import T0, register, usage_records

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from services.container import Container


class Source:
    """A fetch whose statements the test releases one at a time, recording what each asked."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.release = asyncio.Event()
        self.version = 1
        self.fail_next = False

    async def fetch(self, keys: Sequence[str]) -> Mapping[str, str]:
        self.asked.append(list(keys))
        version = self.version  # what the statement sees: the state when it began
        await self.release.wait()
        self.release.clear()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database went away")
        return {key: f"{key}@{version}" for key in keys if key != "missing"}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_keys_arriving_while_every_slot_is_busy_share_the_next_statement() -> None:
    source = Source()
    loader = Coalescer(source.fetch, max_in_flight=1)
    first = asyncio.ensure_future(loader.load("a"))
    await settle()
    waiting = [asyncio.ensure_future(loader.load(k)) for k in ("b", "c", "b", "missing")]
    await settle()
    assert source.asked == [["a"]]  # the others wait for the one slot
    source.release.set()
    assert await first == "a@1"
    await settle()
    assert source.asked == [["a"], ["b", "c", "missing"]]  # one statement, each key once
    source.release.set()
    assert await asyncio.gather(*waiting) == ["b@1", "c@1", "b@1", None]
    assert (loader.batches, loader.keys) == (2, 4)


async def test_a_read_never_joins_a_statement_that_began_before_it() -> None:
    source = Source()
    loader = Coalescer(source.fetch, max_in_flight=1)
    before = asyncio.ensure_future(loader.load("a"))
    await settle()
    source.version = 2  # a write is acknowledged while that statement runs ...
    after = asyncio.ensure_future(loader.load("a"))  # ... then the same key is read
    await settle()
    source.release.set()
    assert await before == "a@1"
    await settle()
    source.release.set()
    assert await after == "a@2"  # answered by a statement of its own, which sees the write
    assert source.asked == [["a"], ["a"]]


async def test_a_free_slot_starts_a_statement_at_once() -> None:
    source = Source()
    loader = Coalescer(source.fetch, max_in_flight=2)
    loads = [asyncio.ensure_future(loader.load(k)) for k in ("a", "b")]
    await settle()
    assert source.asked == [["a"], ["b"]]  # no waiting for company while a slot is free
    source.release.set()
    await settle()
    source.release.set()
    assert await asyncio.gather(*loads) == ["a@1", "b@1"]


async def test_a_failed_statement_fails_its_own_keys_only() -> None:
    source = Source()
    loader = Coalescer(source.fetch, max_in_flight=1)
    source.fail_next = True
    failing = asyncio.ensure_future(loader.load("a"))
    await settle()
    later = asyncio.ensure_future(loader.load("b"))
    await settle()
    source.release.set()
    with pytest.raises(RuntimeError, match="database went away"):
        await failing
    await settle()
    source.release.set()
    assert await later == "b@1"


async def test_a_cancelled_read_leaves_the_others_answered() -> None:
    source = Source()
    loader = Coalescer(source.fetch, max_in_flight=1)
    blocker = asyncio.ensure_future(loader.load("x"))
    await settle()
    gone, kept = asyncio.ensure_future(loader.load("a")), asyncio.ensure_future(loader.load("a"))
    await settle()
    gone.cancel()  # the client hung up
    source.release.set()
    await blocker
    await settle()
    source.release.set()
    assert await kept == "a@1"
    assert gone.cancelled()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_concurrent_api_reads_share_statements_and_each_sees_only_its_owners_models(
    container: Container,
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    alices = [register(container, alice, f"a{i}") for i in range(30)]
    bobs = [register(container, bob, f"b{i}") for i in range(30)]
    container.models.update(Actor(alice, "c"), alices[0], name="renamed")
    reads = Reads(container.store, container.settings)
    await reads.open()
    try:
        asked = [(alice, m) for m in alices] + [(bob, m) for m in bobs] + [(bob, alices[1])]
        rows = await asyncio.gather(*(reads.get_model(o, m) for o, m in asked))
        pages = await asyncio.gather(*(
            reads.list_models(o, limit=5, sort="name", descending=False, after=None,
                              status=None, name_contains=None, include_deleted=False)
            for o in (alice, bob, alice)
        ))
    finally:
        await reads.close()
    assert [r["id"] if r else None for r in rows] == [m for _, m in asked[:-1]] + [None]
    assert rows[0] is not None
    assert rows[0]["name"] == "renamed"
    assert reads.models.batches < len(asked)  # shared statements
    assert [p[1] for p in pages] == [30, 30, 30]
    assert [r["name"] for r in pages[1][0]] == ["b0", "b1", "b10", "b11", "b12"]
    assert {r["owner_id"] for r in pages[0][0]} == {alice}


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize(("window", "tz"), [
    ("hour", "UTC"), ("day", "UTC"), ("day", "America/New_York"), ("week", "Europe/Berlin"),
    ("week", "UTC"), ("month", "UTC"), ("month", "Asia/Tokyo"), ("day", "Europe/Berlin"),
    ("day", "Asia/Tokyo"), ("day", "Pacific/Kiritimati"),
])
async def test_series_read_in_sql_equal_the_hourly_rows_merged_in_python(
    container: Container, window: str, tz: str
) -> None:
    owner = uuid.uuid4()
    busy, quiet = register(container, owner, "busy"), register(container, owner, "quiet")
    records = (usage_records(busy, 700, start=T0, every=timedelta(minutes=13))
               + usage_records(quiet, 9, start=T0, prefix="q", every=timedelta(hours=19)))
    container.usage.record_batch(records, Writer(owner))
    container.projector.catch_up("usage")
    spans = windows.spans(window, windows.zone(tz), T0 - timedelta(days=2), T0 + timedelta(days=9))
    reads = Reads(container.store, container.settings)
    await reads.open()
    try:
        summed = await asyncio.gather(*(
            reads.model_series(owner, m, window, tz, spans) for m in (busy, quiet, busy)
        ))
        stranger = await reads.model_series(uuid.uuid4(), busy, window, tz, spans)
    finally:
        await reads.close()
    for model_id, buckets in zip((busy, quiet, busy), summed, strict=True):
        hours = queries.usage_rows(container.store, "model", model_id, unit=1,
                                   start=spans[0].first_hour, end=spans[-1].end_hour)
        assert buckets is not None
        assert buckets == [presenters.bucket(b) for b in windows.bucketise(hours, spans)]
    assert summed[0] is not None
    assert sum(b.requests for b in summed[0]) == 700
    assert stranger is None
