"""A model's history and its past states read its events page by page, never all of them."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

import pytest

from services.models import Actor
from tests.helpers import register

if TYPE_CHECKING:
    from collections.abc import Sequence

    from domain.model import Model as DomainModel
    from services.container import Container

RENAMES = 260  # versions 1 (registered) to 261
PAGE = 50
EVENT_PAGE = 100  # what ModelService reads at a time for a past state


class LongHistory:
    """A model with a long history, and a count of the events read from the log for it."""

    def __init__(self, container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
        self.owner = uuid.uuid4()
        self.id = register(container, self.owner, "n0")
        actor = Actor(self.owner, "c")
        for number in range(1, RENAMES + 1):
            container.models.update(actor, self.id, name=f"n{number}")
        self.events = cast("list[DomainModel.Event]",
                           list(container.registry_log.events.get(self.id)))
        self.read = 0
        recorder = container.registry_log.events.recorder
        select_events = recorder.select_events

        def counted(originator_id: uuid.UUID, *args: Any, **kwargs: Any) -> Sequence[Any]:
            rows = select_events(originator_id, *args, **kwargs)
            if originator_id == self.id:
                self.read += len(rows)
            return rows

        monkeypatch.setattr(recorder, "select_events", counted)


@pytest.fixture
def model(container: Container, monkeypatch: pytest.MonkeyPatch) -> LongHistory:
    return LongHistory(container, monkeypatch)


def test_a_history_page_reads_only_the_events_it_shows(
    container: Container, model: LongHistory
) -> None:
    page = container.models.get_history(model.owner, model.id, after_version=100, limit=PAGE)
    assert [e.version for e in page.entries] == list(range(101, 101 + PAGE))
    assert page.total == RENAMES + 1
    assert model.read <= PAGE


def test_paging_through_the_history_shows_every_version_once_in_order(
    container: Container, model: LongHistory
) -> None:
    versions: list[int] = []
    after, pages = 0, 0
    while True:
        before = model.read
        page = container.models.get_history(model.owner, model.id, after_version=after,
                                            limit=PAGE)
        pages += 1
        assert model.read - before <= PAGE
        versions += [e.version for e in page.entries]
        if page.next_after is None:
            break
        after = page.next_after
    assert versions == list(range(1, RENAMES + 2))
    assert pages == -(-(RENAMES + 1) // PAGE)
    assert model.read == RENAMES + 1  # every event read once over all the pages


def test_a_state_as_of_a_moment_reads_the_events_up_to_it_and_at_most_a_page_more(
    container: Container, model: LongHistory
) -> None:
    moment = model.events[119].timestamp  # version 120's
    until = [e for e in model.events if e.timestamp <= moment]
    state, current = container.models.get_state(model.owner, model.id, as_of=moment)
    assert state["version"] == until[-1].originator_version
    assert state["name"] == f"n{state['version'] - 1}"
    assert current["version"] == RENAMES + 1
    assert len(until) <= model.read <= len(until) + EVENT_PAGE
    assert model.read < len(model.events)


def test_a_state_at_a_version_reads_no_event_after_it(
    container: Container, model: LongHistory
) -> None:
    state, _ = container.models.get_state(model.owner, model.id, version=30)
    assert (state["version"], state["name"]) == (30, "n29")
    assert model.read == 30


def test_a_model_past_its_snapshot_can_still_be_renamed(container: Container) -> None:
    owner = uuid.uuid4()
    model_id = register(container, owner, "n0")
    actor = Actor(owner, "c")
    for number in range(1, 101):  # version 100 is snapshotted
        container.models.update(actor, model_id, name=f"n{number}")
    assert container.models.get(owner, model_id)["name"] == "n100"
