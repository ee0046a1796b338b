"""``PredictionUsage``: one aggregate (and one event) per prediction request.

The aggregate's id is derived from the model id and the caller's request id, so the event
store's uniqueness constraint on (originator id, version) rejects a second recording of the
same request: a retry is never counted twice.
"""

from __future__ import annotations

import ipaddress
import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic

from domain.errors import ValidationError

REQUEST_ID_MAX = 200
USER_AGENT_MAX = 1_000
ERROR_MAX = 2_000
MAX_RESPONSE_MS = 86_400_000.0  # one day
MAX_BYTES = 2**53  # what JSON clients represent exactly
CLOCK_SKEW = timedelta(minutes=5)
MAX_MODEL_VERSION = 2**31 - 1
METERED_SENDER = "modelledger"  # the sender of usage the service measured itself


def usage_id(model_id: UUID, request_id: str, caller: str = "") -> UUID:
    """The deterministic id of the usage record of ``request_id`` on ``model_id``.

    The endpoint's own records are scoped to their caller (an API key, or a login token's
    subject): two applications whose request ids happen to agree are two predictions.
    """
    return uuid5(model_id, f"{caller}\n{request_id}" if caller else request_id)


def hour_of(moment: datetime) -> int:
    """Whole hours since the Unix epoch (UTC) of an aware datetime."""
    return math.floor(moment.timestamp() / 3600)


class PredictionUsage(Aggregate):
    """The record of one prediction request against a model's endpoint."""

    class Recorded(Aggregate.Created):
        model_id: UUID
        owner_id: UUID
        request_id: str
        occurred_at: datetime
        response_time_ms: float
        input_bytes: int
        output_bytes: int
        success: bool
        status_code: int | None
        error: str | None
        user_agent: str | None
        ip: str | None
        rejected: bool  # the model was inactive or deleted when the request was made
        # Who sent the record (subject and issuer of its token); appended with defaults, so
        # events stored before these fields read as sent by nobody known.
        sender: str = ""
        sender_issuer: str = ""
        # Who called the endpoint when the service metered the call itself: the API key's id
        # (empty for a login token) and the caller's subject; empty on reported usage.
        api_key_id: str = ""
        caller: str = ""
        # The model version that served (appended with a default: usage recorded before
        # versions existed was served by version 1).
        model_version: int = 1

    # @event makes the parameters the attributes of the event; not all of them are state.
    @event(Recorded)
    def __init__(  # noqa: PLR0917 - the event's attributes, as @event requires
        self,
        model_id: UUID,
        owner_id: UUID,
        request_id: str,
        occurred_at: datetime,
        response_time_ms: float,
        input_bytes: int,  # noqa: ARG002 - event attribute
        output_bytes: int,  # noqa: ARG002 - event attribute
        success: bool,  # noqa: FBT001 - event attribute
        status_code: int | None,  # noqa: ARG002 - event attribute
        error: str | None,  # noqa: ARG002 - event attribute
        user_agent: str | None,  # noqa: ARG002 - event attribute
        ip: str | None,  # noqa: ARG002 - event attribute
        rejected: bool,  # noqa: FBT001 - event attribute
        sender: str = "",  # noqa: ARG002 - event attribute
        sender_issuer: str = "",  # noqa: ARG002 - event attribute
        api_key_id: str = "",  # noqa: ARG002 - event attribute
        caller: str = "",  # noqa: ARG002 - event attribute
        model_version: int = 1,  # noqa: ARG002 - event attribute
    ) -> None:
        self.model_id = model_id
        self.owner_id = owner_id
        self.request_id = request_id
        self.occurred_at = occurred_at
        self.response_time_ms = response_time_ms
        self.success = success
        self.rejected = rejected


USAGE_TOPIC = get_topic(PredictionUsage)


def record_usage(
    *,
    model_id: UUID,
    owner_id: UUID,
    request_id: str,
    occurred_at: datetime,
    response_time_ms: float,
    input_bytes: int,
    output_bytes: int,
    success: bool,
    status_code: int | None = None,
    error: str | None = None,
    user_agent: str | None = None,
    ip: str | None = None,
    rejected: bool = False,
    sender: str = "",
    sender_issuer: str = "",
    api_key_id: str = "",
    caller: str = "",
    scope_to_caller: bool = False,
    model_version: int = 1,
    now: datetime | None = None,
) -> PredictionUsage.Recorded:
    """Check one prediction request and return its ``Recorded`` event.

    Builds the event directly rather than through a new aggregate object: ingest creates
    tens of thousands per second, and the event is all that is stored.
    """
    now = now or datetime.now(UTC)
    check_usage(
        request_id=request_id,
        occurred_at=occurred_at,
        response_time_ms=response_time_ms,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        status_code=status_code,
        error=error,
        user_agent=user_agent,
        ip=ip,
        now=now,
    )
    if not 1 <= model_version <= MAX_MODEL_VERSION:
        raise ValidationError("model_version", f"must be 1 to {MAX_MODEL_VERSION}")
    # eventsourcing makes event classes dataclasses at run time; mypy sees only the base init.
    return PredictionUsage.Recorded(  # type: ignore[call-arg]
        originator_id=usage_id(model_id, request_id, caller if scope_to_caller else ""),
        originator_version=1,
        timestamp=now,
        originator_topic=USAGE_TOPIC,
        model_id=model_id,
        owner_id=owner_id,
        request_id=request_id,
        occurred_at=occurred_at.astimezone(UTC),
        response_time_ms=float(response_time_ms),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        success=success,
        status_code=status_code,
        error=error,
        user_agent=user_agent,
        ip=ip,
        rejected=rejected,
        sender=sender,
        sender_issuer=sender_issuer,
        api_key_id=api_key_id,
        caller=caller,
        model_version=model_version,
    )


def check_usage(  # noqa: C901 - a flat list of independent field checks
    *,
    request_id: str,
    occurred_at: datetime,
    response_time_ms: float,
    input_bytes: int,
    output_bytes: int,
    status_code: int | None,
    error: str | None,
    user_agent: str | None,
    ip: str | None,
    now: datetime,
) -> None:
    """Raise ``ValidationError`` naming the first field that breaks a rule."""
    if not 1 <= len(request_id) <= REQUEST_ID_MAX:
        raise ValidationError("request_id", f"must be 1 to {REQUEST_ID_MAX} characters")
    if occurred_at.tzinfo is None:
        raise ValidationError("occurred_at", "must include a time zone offset")
    if occurred_at > now + CLOCK_SKEW:
        raise ValidationError("occurred_at", "must not be in the future")
    if not (math.isfinite(response_time_ms) and 0 <= response_time_ms <= MAX_RESPONSE_MS):
        raise ValidationError("response_time_ms", f"must be between 0 and {MAX_RESPONSE_MS:.0f}")
    for name, value in (("input_bytes", input_bytes), ("output_bytes", output_bytes)):
        if not 0 <= value <= MAX_BYTES:
            raise ValidationError(name, f"must be between 0 and {MAX_BYTES}")
    if status_code is not None and not 100 <= status_code <= 599:  # noqa: PLR2004
        raise ValidationError("status_code", "must be an HTTP status code (100-599)")
    if error is not None and len(error) > ERROR_MAX:
        raise ValidationError("error", f"must be at most {ERROR_MAX} characters")
    if user_agent is not None and len(user_agent) > USER_AGENT_MAX:
        raise ValidationError("user_agent", f"must be at most {USER_AGENT_MAX} characters")
    if ip is not None and not _is_ip(ip):
        raise ValidationError("ip", "must be an IPv4 or IPv6 address")


@lru_cache(maxsize=4096)
def _is_ip(text: str) -> bool:
    # Cached: parsing costs a third of checking a record, and callers come from few addresses.
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
