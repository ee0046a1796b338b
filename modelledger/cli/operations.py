"""``modelledger worker``: run the projection worker in the foreground."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from config.logging_setup import configure_logging
from modelledger.cli.common import container
from projections.schema_check import ensure_current_schema
from projections.store.base import SchemaMismatchError

if TYPE_CHECKING:
    from services.container import Container

log = logging.getLogger("modelledger.worker")
HEARTBEAT_EVERY = 5.0  # seconds; container healthchecks allow several missed beats


def register(cli: click.Group) -> None:
    cli.add_command(worker)


def _heartbeat(wired: Container, path: Path, stop: threading.Event) -> None:
    """Touch ``path`` while the database answers, so a healthcheck can tell a stuck worker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while not stop.is_set():
        try:
            wired.store.positions()
        except Exception:  # noqa: BLE001 - any failure means "not healthy now"
            log.warning("heartbeat: read store unreachable")
        else:
            path.touch()
        stop.wait(HEARTBEAT_EVERY)


@click.command(
    help=(
        "Follow the event logs and keep every projection caught up (Ctrl-C stops). "
        "Run several for high availability: one leads each projection, the others stand by "
        "and take over when it dies."
    )
)
@click.option(
    "--heartbeat-file", type=click.Path(path_type=Path),
    help=f"Touch this file every {HEARTBEAT_EVERY:g} s while the database answers (healthchecks).",
)
def worker(heartbeat_file: Path | None) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with container() as wired:
        configure_logging(wired.settings.log_level)
        try:
            ensure_current_schema(wired)
        except SchemaMismatchError as error:
            raise click.ClickException(str(error)) from None
        threads = wired.start_worker(stop)
        if heartbeat_file is not None:
            beat = threading.Thread(
                target=_heartbeat, args=(wired, heartbeat_file, stop), name="heartbeat", daemon=True
            )
            beat.start()
            threads.append(beat)
        log.info("worker running", extra={"backend": wired.settings.backend})
        stop.wait()
        for thread in threads:
            thread.join(timeout=10)
        log.info("worker stopped")
