"""The root command group and helpers shared by every command."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from config.settings import SettingsError, load_settings
from modelledger.bootstrap import build

if TYPE_CHECKING:
    from collections.abc import Iterator

    from services.container import Container


@click.group(
    help=(
        "Model Ledger: event-sourced model management and usage tracking.\n\n"
        "Settings come from MODELLEDGER_* environment variables (see the README); "
        "the default stores everything in SQLite files under ./var."
    )
)
@click.version_option(package_name="modelledger")
def cli() -> None:
    pass


@contextmanager
def container() -> Iterator[Container]:
    """Build the service from the environment, failing with a clear message."""
    try:
        settings = load_settings()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    try:
        built = build(settings)
    except Exception as error:  # noqa: BLE001 - any start-up failure is reported plainly
        raise click.ClickException(f"cannot open the database: {error}") from None
    try:
        yield built
    finally:
        built.close()
