"""A type-preserving msgspec ``Mapper``: events stored as compact MessagePack arrays.

Once per event class a msgspec struct is built from the class's type hints, so decoding
restores every field's type (ARCHITECTURE.md, "Serialisation", has the measurements).
Schema evolution rule: append new event fields at the end, with a default.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Any
from uuid import UUID

import msgspec
import msgspec.structs
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
)
from eventsourcing.utils import get_topic, resolve_topic

if typing.TYPE_CHECKING:
    from eventsourcing.domain import DomainEventProtocol

_ORIGINATOR_FIELDS = frozenset({"originator_id", "originator_version"})


class _EventCodec:
    __slots__ = ("cls", "decoder", "names", "struct", "topic")

    def __init__(self, cls: type[Any]) -> None:
        hints = typing.get_type_hints(cls)
        fields = [
            _struct_field(f, hints[f.name])
            for f in dataclasses.fields(cls)
            if f.name not in _ORIGINATOR_FIELDS
        ]
        self.cls = cls
        self.topic = get_topic(cls)
        self.names = tuple(field[0] for field in fields)
        self.struct = msgspec.defstruct(
            f"{cls.__qualname__}State", fields, array_like=True, omit_defaults=False
        )
        self.decoder = msgspec.msgpack.Decoder(self.struct)


def _struct_field(f: dataclasses.Field[Any], kind: Any) -> tuple[Any, ...]:
    """A struct field with the event field's default, so that an event stored before a field
    was appended (at the end, with a default) decodes with that default."""
    if f.default is not dataclasses.MISSING:
        return (f.name, kind, f.default)
    if f.default_factory is not dataclasses.MISSING:
        return (f.name, kind, msgspec.field(default_factory=f.default_factory))
    return (f.name, kind)


@cache
def _codec_for_class(cls: type[Any]) -> _EventCodec:
    return _EventCodec(cls)


@cache
def _codec_for_topic(topic: str) -> _EventCodec:
    return _codec_for_class(resolve_topic(topic))


def state_fields(topic: str) -> tuple[msgspec.structs.FieldInfo, ...]:
    """The stored state's fields of the events of ``topic``, in their stored order."""
    return msgspec.structs.fields(_codec_for_topic(topic).struct)


_encoder = msgspec.msgpack.Encoder()


class MsgspecMapper(Mapper[UUID]):
    """Maps domain events to stored events and back with msgspec MessagePack."""

    def __init__(self, **_: Any) -> None:
        super().__init__(transcoder=JSONTranscoder())

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        codec = _codec_for_class(type(domain_event))
        state = vars(domain_event)
        payload = _encoder.encode(codec.struct(*[state[name] for name in codec.names]))
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=codec.topic,
            state=payload,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        codec = _codec_for_topic(stored_event.topic)
        try:
            decoded = codec.decoder.decode(stored_event.state)
        except msgspec.DecodeError as error:
            msg = (
                f"cannot decode event {stored_event.topic} of "
                f"{stored_event.originator_id} v{stored_event.originator_version}: {error}"
            )
            raise MapperDeserialisationError(msg) from error
        state = msgspec.structs.asdict(decoded)
        originator_id = stored_event.originator_id
        state["originator_id"] = (
            originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        )
        state["originator_version"] = stored_event.originator_version
        if codec.cls is Snapshot:
            _restore_types(state["state"], resolve_topic(state["topic"]))
        domain_event = object.__new__(codec.cls)
        object.__setattr__(domain_event, "__dict__", state)
        return typing.cast("DomainEventProtocol[UUID]", domain_event)


def _restore_types(state: dict[str, Any], aggregate_class: type[Any]) -> None:
    """A snapshot's state is stored untyped (UUIDs and enums come back as text): convert the
    attributes the aggregate names back to their types."""
    for name, kind in getattr(aggregate_class, "SNAPSHOT_TYPES", ()):
        if name in state:
            state[name] = msgspec.convert(state[name], kind)
