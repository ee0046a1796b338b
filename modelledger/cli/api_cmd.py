"""``modelledger serve`` (the HTTP API, plus the embedded worker) and ``modelledger token``."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from config.logging_setup import configure_logging
from config.settings import Settings, SettingsError, load_settings
from modelledger.cli.common import container
from projections.schema_check import ensure_current_schema
from projections.store.base import SchemaMismatchError

if TYPE_CHECKING:
    import uuid

    from services.container import Container
    from services.metering import Meter

log = logging.getLogger("modelledger.serve")
_TTL = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# The supervisor polls the workers' spools this often: larger shipments mean fewer event-store
# and projection transactions (measured: 0.5 s served 4-20 % more metered calls than 0.1 s).
SHIP_POLL_SECONDS = 0.5


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(token)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(None, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def _start_embedded(c: Container, stop: threading.Event) -> list[threading.Thread]:
    """The projection worker and the scheduler, inside this process."""
    threads = c.start_worker(stop)
    # --- HOOK(scheduler): the periodic jobs run here in embedded mode. -------------------
    try:
        from scheduler import start_in_process  # noqa: PLC0415 - optional part of the service
    except ImportError:
        log.warning("scheduler not available; periodic jobs do not run in this process")
    else:
        threads.append(start_in_process(c, stop))
    # -------------------------------------------------------------------------------------
    return threads


@click.command(help="Run the HTTP API (and, unless API-only, the projection worker and scheduler).")
@click.option("--host", help="Address to listen on [MODELLEDGER_HOST].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [MODELLEDGER_PORT].")
@click.option("--workers", type=click.IntRange(1, 64),
              help="API processes [MODELLEDGER_WORKERS].")
@click.option("--api-only", is_flag=True,
              help="Serve the API only; run `modelledger worker` elsewhere "
              "[MODELLEDGER_EMBEDDED_WORKER=false].")
@click.option("--access-log/--no-access-log", default=None,
              help="Log every request [MODELLEDGER_ACCESS_LOG].")
def serve(*, host: str | None, port: int | None, workers: int | None, api_only: bool,
          access_log: bool | None) -> None:
    import uvicorn  # noqa: PLC0415 - only this command needs it

    from api.tokens import resolve_secret  # noqa: PLC0415

    settings = _settings(host=host, port=port, workers=workers, access_log=access_log)
    configure_logging(settings.log_level, access_log=settings.access_log)
    # The app factory reads its settings again in each worker process.
    os.environ["MODELLEDGER_ACCESS_LOG"] = "true" if settings.access_log else "false"
    try:
        resolve_secret(settings)  # generated once, before any worker process starts
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    if settings.workers > 1:
        # Each worker process writes its samples here; /metrics combines them.
        metrics_dir = Path(settings.data_dir) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    embedded = settings.embedded_worker and not api_only
    stop = threading.Event()
    with contextlib.ExitStack() as resources:
        c = resources.enter_context(container())
        # Each worker process checks again (``modelledger.asgi``); checking here first gives
        # one clear message instead of every worker failing with a traceback.
        try:
            ensure_current_schema(c)
        except SchemaMismatchError as error:
            raise click.ClickException(str(error)) from None
        ships = settings.workers > 1 and settings.metering
        if not (embedded or ships):
            resources.close()  # API-only: this process needs no connections of its own
        threads = _start_embedded(c, stop) if embedded else []
        shipper = _spool_shipper(c) if ships else None
        click.echo(
            f"serving on http://{settings.host}:{settings.port} ({settings.backend}, "
            f"{settings.workers} worker(s), embedded worker {'on' if embedded else 'off'})",
            err=True,
        )
        try:
            uvicorn.run(
                "modelledger.asgi:create_app",
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=settings.workers,
                access_log=settings.access_log,
                log_level=settings.log_level.lower(),
                log_config=None,  # keep our JSON handler (configure_logging in each worker)
                loop="uvloop" if _has("uvloop") else "auto",
                http="httptools" if _has("httptools") else "auto",
                # The client address is the socket peer unless MODELLEDGER_TRUSTED_PROXIES says
                # otherwise (uvicorn would trust X-Forwarded-For from 127.0.0.1 by default).
                proxy_headers=False,
            )
        finally:
            # After the workers: each waited for this process to ship its spool.
            if shipper is not None:
                shipper.stop()
            stop.set()
            for thread in threads:
                thread.join(timeout=10)


def _spool_shipper(c: Container) -> Meter:
    """This process ships every worker's usage spool; the workers only record (measured:
    a shipper thread in each worker cost its event loop a quarter of its throughput)."""
    from services.metering import Meter  # noqa: PLC0415

    os.environ["MODELLEDGER_SHIP_USAGE"] = "false"  # read by each worker's settings
    shipper = Meter(Path(c.settings.data_dir) / "spool", c.usage,
                    batch=c.settings.spool_ship_batch, shipping="all", linger=SHIP_POLL_SECONDS)
    shipper.start()
    return shipper


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _ttl(value: str) -> timedelta:
    match = _TTL.match(value.strip())
    if match is None:
        raise click.BadParameter("use a number and s, m, h or d, e.g. 1h or 30d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@click.command(help="Print a bearer token (HS256, signed with the configured secret, carrying "
               "the configured issuer and audience).")
@click.option("--sub", "subject", required=True,
              help="The subject: who the token speaks for (its user id is derived from it).")
@click.option("--scope", "scope", default="models", show_default=True,
              help='Space-separated: models, usage:write, admin (e.g. "models usage:write").')
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30m, 1h, 7d, ...")
@click.option("--for-owner", "owners", multiple=True, metavar="SUBJECT",
              help="usage:write: may record usage for this owner's models (repeatable).")
@click.option("--for-model", "models", multiple=True, type=click.UUID, metavar="ID",
              help="usage:write: may record usage for this model (repeatable).")
@click.option("--all-tenants", is_flag=True,
              help="usage:write: may record usage for every tenant's models (a gateway).")
def token(
    *, subject: str, scope: str, ttl: str, owners: tuple[str, ...],
    models: tuple[uuid.UUID, ...], all_tenants: bool,
) -> None:
    from api.tokens import (  # noqa: PLC0415
        SCOPE_USAGE_WRITE,
        SCOPES,
        UsageGrant,
        issue_token,
        resolve_secret,
    )

    scopes = scope.split()
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        known = ", ".join(SCOPES)
        message = f"unknown scope(s) {unknown}; known: {known}"
        raise click.BadParameter(message, param_hint="--scope")
    grant = UsageGrant(owners, models, all_tenants)
    if grant.claims() and SCOPE_USAGE_WRITE not in scopes:
        raise click.UsageError(
            "--for-owner, --for-model and --all-tenants need --scope usage:write"
        )
    settings = _settings()
    try:
        secret = resolve_secret(settings)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    click.echo(issue_token(secret, subject, scopes, _ttl(ttl), issuer=settings.jwt_issuer,
                           audience=settings.jwt_audience, grant=grant))
