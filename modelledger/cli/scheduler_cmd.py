"""``modelledger compact``, ``modelledger scheduler`` and ``modelledger jobs``."""

from __future__ import annotations

import json
import re
import signal
import threading
from datetime import timedelta

import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TimeElapsedColumn
from rich.table import Table

from config.logging_setup import configure_logging
from modelledger.cli.common import container
from scheduler import history
from scheduler.compaction import compact_usage
from scheduler.locks import job_lock
from scheduler.priority import lower_thread_priority
from scheduler.runner import JOBS, run_job, start_in_process

_DURATION = re.compile(r"^(\d+)([dh])$")


def register(cli: click.Group) -> None:
    cli.add_command(compact)
    cli.add_command(scheduler_command)
    cli.add_command(jobs)


def _duration(value: str | None, default_days: int) -> timedelta:
    if value is None:
        return timedelta(days=default_days)
    match = _DURATION.match(value.strip())
    if match is None:
        raise click.BadParameter(f"use a number of days or hours like 30d or 12h, not {value!r}")
    amount, unit = int(match[1]), match[2]
    return timedelta(days=amount) if unit == "d" else timedelta(hours=amount)


@click.command(help="Replace raw usage events older than the retention by hourly roll-ups.")
@click.option(
    "--older-than",
    help="Age of the usage to compact, e.g. 30d or 12h "
    "(default: MODELLEDGER_USAGE_RETENTION_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be compacted.")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=100),
    default=20_000,
    show_default=True,
    help="Events per transaction (ingest waits for at most one).",
)
def compact(*, older_than: str | None, dry_run: bool, chunk_size: int) -> None:
    with container() as wired:
        lower_thread_priority(wired.settings.job_nice)
        age = _duration(older_than, wired.settings.usage_retention_days)
        with job_lock(wired.settings, "compact-usage") as held:
            if not held and not dry_run:
                raise click.ClickException("a compaction is running elsewhere; try again later")
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                "{task.completed}/{task.total} ids",
                TimeElapsedColumn(),
                console=Console(stderr=True),
            ) as bar:
                task = bar.add_task("dry run" if dry_run else "compacting", total=None)

                def progress(position: int, bound: int) -> None:
                    bar.update(task, completed=position, total=max(bound, position))

                try:
                    summary = compact_usage(
                        wired, older_than=age, chunk_size=chunk_size, dry_run=dry_run,
                        progress=progress,
                    )
                except OSError as error:
                    # A full or failing archive disk: what is not compacted yet stays raw.
                    raise click.ClickException(
                        f"compaction stopped: {error}; usage not yet compacted is kept as it "
                        "was: run it again once the archive has room"
                    ) from None
        table = Table("", "would compact" if dry_run else "compacted")
        for label, value in (
            ("events", summary.events),
            ("models", len(summary.models)),
            ("hours", len(summary.hours)),
            ("roll-ups", summary.rollups_written),
            ("bytes reclaimed", summary.bytes_reclaimed),
            ("cutoff", summary.cutoff.isoformat()),
        ):
            table.add_row(label, str(value))
        Console().print(table)


@click.command(name="scheduler", help="Run the periodic jobs in the foreground (Ctrl-C stops).")
def scheduler_command() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with container() as wired:
        configure_logging(wired.settings.log_level)
        thread = start_in_process(wired, stop)
        click.echo(f"scheduler running ({', '.join(JOBS)}); Ctrl-C stops", err=True)
        stop.wait()
        thread.join(timeout=600)


@click.group(
    invoke_without_command=True,
    help="The job run history (newest first); `jobs run NAME` runs a job now.",
)
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.pass_context
def jobs(ctx: click.Context, *, limit: int, as_json: bool) -> None:
    if ctx.invoked_subcommand is not None:
        return
    with container() as wired:
        runs = history.recent(wired.store, limit=limit)
    if as_json:
        for run in runs:
            click.echo(json.dumps(msgspec.structs.asdict(run), default=str))
        return
    table = Table("job", "started", "seconds", "outcome", "summary", "host")
    for run in runs:
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
        table.add_row(
            run.job,
            run.started_at.isoformat(timespec="seconds"),
            "" if seconds is None else f"{seconds:.2f}",
            run.outcome,
            json.dumps(run.summary, sort_keys=True),
            run.host,
        )
    Console(width=200).print(table)


@jobs.command(name="run", help="Run one job now (skipped when it runs elsewhere).")
@click.argument("name", type=click.Choice(sorted(JOBS)))
def run_now(name: str) -> None:
    with container() as wired:
        result = run_job(wired, name)
    click.echo(json.dumps({"job": name, "outcome": result.outcome, **result.summary}, default=str))
    if result.outcome == "error":
        raise SystemExit(1)
