"""``modelledger``: the command line of Model Ledger (one module per command group)."""

from __future__ import annotations

import click

from modelledger.cli import audit, operations, projections_cmd
from modelledger.cli.common import cli


def _register() -> None:
    for module in (projections_cmd, audit, operations):
        module.register(cli)
    # Optional groups owned by other parts of the service; absent modules are skipped.
    for name in ("api_cmd", "scheduler_cmd", "deploy_cmd", "ui_cmd"):
        try:
            module = __import__(f"modelledger.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as error:
            if error.name != f"modelledger.cli.{name}":
                raise
            continue
        module.register(cli)


_register()


def main() -> None:
    cli(prog_name="modelledger")


__all__ = ["cli", "click", "main"]
