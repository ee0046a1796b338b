"""``modelledger worker``: run the projection worker in the foreground."""

from __future__ import annotations

import logging
import signal
import threading

import click

from modelledger.cli.common import container
from modelledger.logging_setup import configure_logging
from modelledger.schema_check import ensure_current_schema
from projections.store import SchemaMismatchError

log = logging.getLogger("modelledger.worker")


def register(cli: click.Group) -> None:
    cli.add_command(worker)


@click.command(
    help=(
        "Follow the event logs and keep every projection caught up (Ctrl-C stops). "
        "Run several for high availability: one leads each projection, the others stand by "
        "and take over when it dies."
    )
)
def worker() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with container() as c:
        configure_logging(c.settings.log_level)
        try:
            ensure_current_schema(c)
        except SchemaMismatchError as error:
            raise click.ClickException(str(error)) from None
        threads = c.start_worker(stop)
        log.info("worker running", extra={"backend": c.settings.backend})
        stop.wait()
        for thread in threads:
            thread.join(timeout=10)
        log.info("worker stopped")
