"""``modelledger projections status|rebuild``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from modelledger.cli.common import container

if TYPE_CHECKING:
    from rich.progress import TaskID


def register(cli: click.Group) -> None:
    cli.add_command(projections)


@click.group(help="Inspect and rebuild the projection (read model) tables.")
def projections() -> None:
    pass


@projections.command(help="Position, log head and lag of every projection.")
def status() -> None:
    with container() as wired:
        table = Table("projection", "source", "position", "head", "lag")
        for s in wired.projector.status():
            table.add_row(s.name, s.source, str(s.position), str(s.head), str(s.lag))
        Console().print(table)


@projections.command(help="Rebuild projections from position 0 aside, then swap them in.")
@click.argument("names", nargs=-1)
def rebuild(names: tuple[str, ...]) -> None:
    with container() as wired:
        chosen = names or tuple(wired.projector.projections)
        unknown = [n for n in chosen if n not in wired.projector.projections]
        if unknown:
            known = ", ".join(wired.projector.projections)
            raise click.UsageError(f"unknown projection(s): {', '.join(unknown)} (known: {known})")
        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=Console(stderr=True),
        ) as bar:
            for name in chosen:
                task = bar.add_task(f"rebuild {name}", total=None)

                def progress(position: int, head: int, task: TaskID = task) -> None:
                    bar.update(task, completed=position, total=max(head, position))

                count = wired.projector.rebuild(name, progress=progress)
                bar.update(task, description=f"rebuilt {name} ({count} events)")
