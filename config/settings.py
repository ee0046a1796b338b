"""Settings: one frozen dataclass read from ``MODELLEDGER_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Mapping

PREFIX = "MODELLEDGER_"


class SettingsError(ValueError):
    """A setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Every setting, its default and its meaning (the README's configuration reference)."""

    data_dir: Path = field(
        default=Path("var"),
        metadata={"doc": "Files: SQLite databases, artifacts, archives, secrets."},
    )
    database_url: str = field(
        default="",
        metadata={
            "doc": (
                "sqlite:///PATH (default: DATA_DIR/ledger.sqlite3) or "
                "postgresql://USER@HOST:PORT/DB."
            )
        },
    )
    pg_schema: str = field(
        default="public",
        metadata={"doc": "PostgreSQL schema of every table (must exist)."},
    )
    pg_pool_size: int = field(
        default=8,
        metadata={"doc": "PostgreSQL connections per pool."},
    )
    host: str = field(
        default="127.0.0.1",
        metadata={"doc": "Address `serve` listens on."},
    )
    port: int = field(
        default=8000,
        metadata={"doc": "Port `serve` listens on."},
    )
    workers: int = field(
        default=1,
        metadata={"doc": "API worker processes for `serve`."},
    )
    embedded_worker: bool = field(
        default=True,
        metadata={
            "doc": (
                "Run projection worker and scheduler inside `serve` (off for API-only replicas)."
            )
        },
    )
    base_url: str = field(
        default="http://127.0.0.1:8000",
        metadata={"doc": "Public base URL; prediction endpoints are BASE_URL/v2/models/{id}."},
    )
    jwt_secret: str = field(
        default="",
        metadata={"doc": (
            "HS256 secret, at least 32 bytes; on SQLite generated into DATA_DIR/jwt-secret "
            "when empty."
        )},
    )
    jwt_public_key: str = field(
        default="",
        metadata={"doc": "Optional PEM public key: accept RS256 tokens too."},
    )
    jwt_issuer: str = field(
        default="",
        metadata={"doc": "Accept only tokens whose `iss` is this (empty: any issuer, or none)."},
    )
    jwt_audience: str = field(
        default="",
        metadata={"doc": (
            "Accept only tokens whose `aud` includes this (empty: only tokens without `aud`)."
        )},
    )
    jwt_jwks_url: str = field(
        default="",
        metadata={"doc": "An identity provider's JWKS URL: accept RS256 tokens it signed."},
    )
    jwt_jwks_cache_seconds: int = field(
        default=300,
        metadata={"doc": (
            "Keep the JWKS keys (and tokens verified with them) this long; an unknown `kid` "
            "fetches the keys again, at most every 10 s."
        )},
    )
    oidc_issuer: str = field(
        default="",
        metadata={"doc": (
            "An OpenID Connect provider's issuer URL: the dashboard offers sign-in through it "
            "(https, or http on loopback; discovery at ISSUER/.well-known/openid-configuration; "
            "empty: no OIDC sign-in)."
        )},
    )
    oidc_client_id: str = field(
        default="",
        metadata={"doc": (
            "The dashboard's client id at the OIDC provider (the ID token's `aud`); the "
            "provider must allow the redirect URI BASE_URL/ui/oidc/callback."
        )},
    )
    oidc_client_secret: str = field(
        default="",
        repr=False,
        metadata={"doc": (
            "The client's secret at the OIDC provider (empty: a public client, PKCE only)."
        )},
    )
    oidc_scopes: str = field(
        default="openid profile",
        metadata={"doc": (
            "Space-separated scopes asked of the OIDC provider (`openid` is always asked); a "
            "dashboard user gets the service's `models` scope, whatever these are."
        )},
    )
    oidc_name: str = field(
        default="",
        metadata={"doc": "The provider's name on the sign-in button (empty: the issuer's host)."},
    )
    rate_limit_per_minute: int = field(
        default=3000,
        metadata={"doc": "Requests per minute per principal on /api, per process (0: no limit)."},
    )
    rate_limit_ingest_per_minute: int = field(
        default=600_000,
        metadata={"doc": "Usage-ingest requests per minute per principal, per process (0: none)."},
    )
    max_concurrent_uploads: int = field(
        default=4,
        metadata={"doc": "Artifact uploads in progress at once per process (503 beyond; 0: any)."},
    )
    max_upload_bytes_in_flight: int = field(
        default=1024 * 1024 * 1024,
        metadata={"doc": (
            "Bytes of artifact uploads in progress at once per process, by Content-Length (503 "
            "beyond; one upload alone is always admitted; 0: any)."
        )},
    )
    upload_read_timeout: float = field(
        default=30.0,
        metadata={"doc": "Seconds an upload may wait for a body chunk (408 after; 0: no timeout)."},
    )
    upload_staging_max_age: float = field(
        default=3600.0,
        metadata={"doc": "Seconds after which a file left in the upload staging folder is swept."},
    )
    group_commit_max_queue: int = field(
        default=20_000,
        metadata={"doc": "Single-record usage requests waiting for a commit at most (503 beyond)."},
    )
    window_cache_bytes: int = field(
        default=32 * 1024 * 1024,
        metadata={"doc": "Memory for cached time-window spans per process."},
    )
    max_upload_bytes: int = field(
        default=512 * 1024 * 1024,
        metadata={"doc": "Largest model artifact accepted (413 above)."},
    )
    projection_batch_size: int = field(
        default=20_000,
        metadata={"doc": "Events folded per projection transaction."},
    )
    poll_interval: float = field(
        default=1.0,
        metadata={"doc": "Seconds between polls of the event log when no notification arrives."},
    )
    projection_linger: float = field(
        default=0.1,
        metadata={"doc": (
            "Seconds the projection worker waits after a partial batch, so that a trickle of "
            "events is folded in fewer, larger transactions (0: fold at once)."
        )},
    )
    usage_retention_days: int = field(
        default=30,
        metadata={"doc": "Raw usage events older than this are compacted into hourly roll-ups."},
    )
    archive_enabled: bool = field(
        default=True,
        metadata={"doc": "Archive raw usage to DATA_DIR/archive before compaction deletes it."},
    )
    group_commit: bool = field(
        default=True,
        metadata={
            "doc": (
                "Share one transaction among concurrent single-record usage requests (off: one per "
                "request, for comparison)."
            )
        },
    )
    archive_retention_days: int = field(
        default=0,
        metadata={
            "doc": (
                "Delete usage archive files older than this many days (0 keeps them forever)."
            )
        },
    )
    job_nice: int = field(
        default=0,
        metadata={"doc": (
            "OS priority (nice, 0-19) of scheduler jobs and `modelledger compact` (0: that of "
            "requests). Off by default: at 10 a soak's compaction minute still had a read p99 "
            "of 219 ms, no better than at 0. Linux with autogroups (sched_autogroup_enabled) "
            "ranks a nice thread only within its session: a `compact` run in a session of its "
            "own (cron) shares the CPUs with the API as one group whatever its nice."
        )},
    )
    job_history_days: int = field(
        default=90,
        metadata={"doc": "Keep the scheduler's job run history this many days."},
    )
    onnx_cache_bytes: int = field(
        default=1024 * 1024 * 1024,
        metadata={"doc": (
            "Memory for loaded ONNX sessions per process, by artifact size (least recently used "
            "out first; one model larger than this is still served)."
        )},
    )
    inference_threads: int = field(
        default=2,
        metadata={"doc": "Threads running ONNX inference per process (each session: 1 thread)."},
    )
    infer_max_body_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata={"doc": "Largest inference request body accepted on /v2 (413 above)."},
    )
    upstream_hosts: str = field(
        default="",
        metadata={"doc": (
            "Comma-separated hosts (host or host:port) a model's upstream may name; empty: "
            "no upstream allowed."
        )},
    )
    upstream_timeout: float = field(
        default=30.0,
        metadata={"doc": "Seconds an upstream may take to answer (504 after)."},
    )
    upstream_max_connections: int = field(
        default=100,
        metadata={"doc": "Pooled keep-alive connections to upstream servers per process."},
    )
    trusted_proxies: str = field(
        default="",
        metadata={"doc": (
            "Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For "
            "names the client; empty: the socket peer is the client."
        )},
    )
    metering: bool = field(
        default=True,
        metadata={"doc": (
            "Record every inference call as usage (off only for benchmarks: nothing is "
            "recorded)."
        )},
    )
    ship_usage: bool = field(
        default=True,
        metadata={"doc": (
            "Whether an API process ships its own usage spool to the event store. `serve` "
            "with several workers sets it off in the workers and ships every spool from its "
            "supervising process, away from the serving event loops."
        )},
    )
    spool_ship_batch: int = field(
        default=5000,
        metadata={"doc": "Usage records shipped from the local spool per event-store transaction."},
    )
    endpoint_cache_seconds: float = field(
        default=0.5,
        metadata={"doc": (
            "Seconds a process reuses a model's serving state and an API key's grant; with the "
            "projection's lag, how soon a change (deactivation, revocation) reaches every process."
        )},
    )
    log_level: str = field(
        default="INFO",
        metadata={"doc": "Log level of the JSON logs."},
    )
    access_log: bool = field(
        default=False,
        metadata={"doc": "Log every HTTP request (uvicorn's access log, at INFO)."},
    )

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgres``."""
        scheme = urlsplit(self.resolved_database_url).scheme
        if scheme == "sqlite":
            return "sqlite"
        if scheme in {"postgresql", "postgres"}:
            return "postgres"
        raise SettingsError(f"MODELLEDGER_DATABASE_URL: unsupported scheme {scheme!r}")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ledger.sqlite3'}"

    @property
    def sqlite_path(self) -> Path:
        """The base path of the SQLite files (one per event log, one for projections)."""
        return Path(unquote(urlsplit(self.resolved_database_url).path.removeprefix("/")))

    def sqlite_file(self, role: str) -> Path:
        base = self.sqlite_path
        return base.with_name(f"{base.stem}.{role}{base.suffix or '.sqlite3'}")

    def postgres_params(self) -> dict[str, str]:
        """libpq connection parameters from the URL (user, password, host, port, dbname)."""
        parts = urlsplit(self.resolved_database_url)
        return {
            "host": parts.hostname or "127.0.0.1",
            "port": str(parts.port or 5432),
            "user": unquote(parts.username or "postgres"),
            "password": unquote(parts.password or ""),
            "dbname": unquote(parts.path.removeprefix("/")) or "postgres",
        }

    def postgres_conninfo(self) -> str:
        params = self.postgres_params()
        return " ".join(f"{key}='{value}'" for key, value in params.items() if value)


def _convert(raw: str, kind: type, name: str) -> object:
    try:
        if kind is bool:
            return _to_bool(raw)
        if kind is Path:
            return Path(raw)
        return kind(raw)
    except ValueError:
        raise SettingsError(
            f"{PREFIX}{name.upper()}: cannot read {raw!r} as {kind.__name__}"
        ) from None


def _to_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "y", "on"}:
        return True
    if lowered in {"0", "false", "no", "n", "off"}:
        return False
    raise ValueError(raw)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by tests and the CLI)."""
    environ = os.environ if environ is None else environ
    types = {"data_dir": Path, "database_url": str, "pg_schema": str, "host": str, "base_url": str,
             "jwt_secret": str, "jwt_public_key": str, "log_level": str, "port": int,
             "pg_pool_size": int, "workers": int, "max_upload_bytes": int,
             "projection_batch_size": int, "usage_retention_days": int,
             "archive_retention_days": int, "job_history_days": int,
             "embedded_worker": bool, "archive_enabled": bool, "group_commit": bool,
             "access_log": bool,
             "poll_interval": float, "projection_linger": float,
             "jwt_issuer": str, "jwt_audience": str, "jwt_jwks_url": str,
             "jwt_jwks_cache_seconds": int, "rate_limit_per_minute": int,
             "rate_limit_ingest_per_minute": int, "max_concurrent_uploads": int,
             "max_upload_bytes_in_flight": int, "upload_read_timeout": float,
             "upload_staging_max_age": float, "group_commit_max_queue": int,
             "window_cache_bytes": int, "onnx_cache_bytes": int, "inference_threads": int,
             "infer_max_body_bytes": int, "upstream_hosts": str, "upstream_timeout": float,
             "upstream_max_connections": int, "trusted_proxies": str, "metering": bool,
             "ship_usage": bool, "spool_ship_batch": int, "endpoint_cache_seconds": float,
             "job_nice": int,
             "oidc_issuer": str, "oidc_client_id": str, "oidc_client_secret": str,
             "oidc_scopes": str, "oidc_name": str}
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = environ.get(PREFIX + f.name.upper())
        if raw is not None and raw != "":
            values[f.name] = _convert(raw, types[f.name], f.name)
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    settings.backend  # noqa: B018 - validate the URL early
    _check_oidc(settings)
    return settings


def _check_oidc(settings: Settings) -> None:
    """Both or neither of the OIDC issuer and client id, and an issuer fit to trust."""
    if bool(settings.oidc_issuer) != bool(settings.oidc_client_id):
        raise SettingsError(
            f"{PREFIX}OIDC_ISSUER and {PREFIX}OIDC_CLIENT_ID must be set together"
        )
    if settings.oidc_issuer:
        check_provider_url(settings.oidc_issuer, f"{PREFIX}OIDC_ISSUER")


def check_provider_url(url: str, name: str) -> str:
    """``url`` if https, or http on a loopback host (a provider run beside the service, or in
    tests); else ``SettingsError`` naming ``name``: tokens and codes cross it in clear."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if (parts.scheme == "https" and host) or (parts.scheme == "http" and _is_loopback(host)):
        return url
    raise SettingsError(f"{name} must be an https URL (http only on loopback), not {url!r}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
