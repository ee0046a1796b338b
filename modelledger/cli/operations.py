"""``modelledger worker``: run the projection worker in the foreground."""

from __future__ import annotations

import logging
import signal
import threading

import click

from modelledger.cli.common import container


def register(cli: click.Group) -> None:
    cli.add_command(worker)


@click.command(help="Follow the event logs and keep every projection caught up (Ctrl-C stops).")
def worker() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with container() as c:
        threads = c.start_worker(stop)
        click.echo(f"worker running ({c.settings.backend}); Ctrl-C stops", err=True)
        stop.wait()
        for thread in threads:
            thread.join(timeout=10)
