"""A model's upstream: the Open Inference Protocol server its endpoint forwards to, and the
operator's list of hosts an upstream may name.

The URL's rule is one regular expression (``URL_PATTERN``), so the API document can state
exactly what is accepted: http or https, a host name or IPv4 address, an optional port, an
optional path; no user info, query or fragment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from domain.errors import ValidationError

URL_MAX = 2_000
MODEL_NAME_MAX = 200

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_SEGMENT = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*"
URL_PATTERN = rf"^https?://{_LABEL}(?:\.{_LABEL})*(?::{_PORT})?(?:/{_SEGMENT})*$"
MODEL_PATTERN = rf"^[A-Za-z0-9._-]{{1,{MODEL_NAME_MAX}}}$"
_DEFAULT_PORTS = {"http": 80, "https": 443}
SETTING = "MODELLEDGER_UPSTREAM_HOSTS"


@dataclass(frozen=True)
class Upstream:
    """An upstream server's base URL and the model's name there; both empty: none."""

    url: str
    model: str

    def __bool__(self) -> bool:
        return bool(self.url)


NO_UPSTREAM = Upstream("", "")


def check_upstream(url: str, model: str) -> Upstream:
    """The upstream, or ``ValidationError`` naming the part that breaks a rule."""
    if len(url) > URL_MAX or re.fullmatch(URL_PATTERN, url) is None:
        raise ValidationError(
            "upstream.url",
            f"must be an http or https URL of at most {URL_MAX} characters with a host and "
            "no user info, query or fragment",
        )
    if re.fullmatch(MODEL_PATTERN, model) is None:
        raise ValidationError(
            "upstream.model", f"must be 1 to {MODEL_NAME_MAX} of the characters A-Z a-z 0-9 . _ -"
        )
    return Upstream(url, model)


def host_and_port(url: str) -> tuple[str, int]:
    """The host (lower case) and port (the scheme's default when none is given) of a URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    return host, parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)


@dataclass(frozen=True)
class UpstreamHosts:
    """The hosts an upstream may name: ``host`` (any port) or ``host:port`` entries."""

    entries: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def parse(cls, text: str) -> UpstreamHosts:
        """Comma-separated entries; ``ValueError`` naming the setting for a malformed one."""
        entries: set[tuple[str, int | None]] = set()
        for raw in filter(None, (part.strip() for part in text.split(","))):
            try:
                parts = urlsplit(f"//{raw}")
                port = parts.port
            except ValueError:
                parts, port = None, None
            host = (parts.hostname or "").rstrip(".") if parts else ""
            if not host or parts is None or parts.path or parts.username is not None:
                raise ValueError(f"{SETTING}: {raw!r} is not a host or host:port")
            entries.add((host, port))
        return cls(frozenset(entries))

    def allows(self, url: str) -> bool:
        host, port = host_and_port(url)
        return (host, None) in self.entries or (host, port) in self.entries
