"""Structured JSON logs for every process (API, worker, scheduler), one line per event.

Both ``structlog`` loggers and standard-library loggers (uvicorn, eventsourcing, our own
``logging.getLogger`` users) go through one handler that renders JSON. Secrets never reach
the output: values under sensitive keys are replaced, bearer tokens and JWTs inside messages
are masked, and request or response bodies are dropped.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor

REDACTED = "[redacted]"
# Keys whose values are credentials: replaced, so a log line still shows the key was there.
_SECRET_KEYS = frozenset({"authorization", "token", "access_token", "refresh_token", "jwt",
                          "password", "secret", "jwt_secret", "api_key", "cookie", "set-cookie"})
_SECRET_SUFFIXES = ("_token", "_secret", "_password")
# Keys whose values are payloads: dropped, since they may hold anything a client sent.
_BODY_KEYS = frozenset({"body", "request_body", "response_body", "payload", "content"})
_TOKEN_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # a JWT anywhere
    re.compile(r"mlk_[0-9a-f]{32}_[A-Za-z0-9_-]+"),  # an endpoint API key anywhere
    # A credential in a URL's query (an access log's line): a sign-in link's token, an OpenID
    # Connect callback's code and state.
    re.compile(r"(?i)([?&](?:token|code|state|access_token|id_token)=)[^&#\s\"']+"),
)
_HANDLER_MARK = "_modelledger_json"


def _mask(text: str) -> str:
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, MutableMapping):
        _scrub_mapping(value)
    return value


def _scrub_mapping(mapping: MutableMapping[str, Any]) -> None:
    for key in list(mapping):
        lowered = str(key).lower()
        if lowered in _BODY_KEYS:
            del mapping[key]
        elif lowered in _SECRET_KEYS or lowered.endswith(_SECRET_SUFFIXES):
            mapping[key] = REDACTED
        else:
            mapping[key] = _scrub(mapping[key])


def redact(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Drop bodies, replace credentials, mask tokens in messages (runs last, before output)."""
    _scrub_mapping(event_dict)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    level: str | int = "INFO", *, access_log: bool = False, stream: TextIO | None = None
) -> None:
    """Send every log record, structlog's and the standard library's, to ``stream`` as JSON.

    Safe to call more than once (the last call wins); ``level`` is a name like ``"INFO"``.
    uvicorn's access log (a record per request) only with ``access_log``.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")  # noqa: TRY004 - a bad value, not type
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Servers that install their own handlers (uvicorn) log through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    # uvicorn decides per connection whether to log requests by whether its access logger
    # reaches a handler (not by its own ``access_log`` option once the factory has run), and
    # formats each record's arguments before the level check: without ``access_log`` it
    # reaches none.
    logging.getLogger("uvicorn.access").propagate = access_log
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
