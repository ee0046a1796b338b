"""``modelledger prepare`` (start-up check for deployments) and ``modelledger demo``."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TimeElapsedColumn

from modelledger.cli.common import container
from projections.schema_check import ensure_current_schema
from projections.store.base import SchemaMismatchError


def register(cli: click.Group) -> None:
    cli.add_command(prepare)
    cli.add_command(demo)


@click.command(
    help=(
        "Create any missing tables and check that every projection was built by this "
        "version's schema; exits 1 naming the `projections rebuild` command to run otherwise. "
        "Run it once before starting the services of a deployment."
    )
)
def prepare() -> None:
    with container() as wired:
        try:
            ensure_current_schema(wired)
        except SchemaMismatchError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"database ready ({wired.settings.backend}); projections are current")


@click.command(
    help=(
        "Load a demo data set through the real services (3 users, 10 models, 90 days of "
        "usage with daily and weekly patterns and some failures; some models inactive or "
        "deleted), then print tokens for the demo users and example curl commands. Loading "
        "twice adds nothing."
    )
)
@click.option("--days", type=click.IntRange(1, 3650), default=90, show_default=True,
              help="Days of usage history.")
@click.option("--scale", type=click.FloatRange(0.001, 100.0), default=1.0, show_default=True,
              help="Multiply the request volume (1.0 is about 600,000 requests).")
@click.option("--ttl", "ttl_hours", type=click.IntRange(1, 24 * 365), default=24,
              show_default=True, help="Hours the printed tokens stay valid.")
@click.option("--base-url", help="URL used in the curl examples (default: MODELLEDGER_BASE_URL).")
def demo(days: int, scale: float, ttl_hours: int, base_url: str | None) -> None:
    from modelledger.demo import (  # noqa: PLC0415 - only this command
        FEATURES,
        demo_key,
        demo_sign_in_link,
        demo_tokens,
        load_demo,
    )

    started = time.perf_counter()
    with container() as wired, Progress(
        "[progress.description]{task.description}", BarColumn(), "{task.completed:,} requests",
        TimeElapsedColumn(), console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task("loading demo usage", total=None)
        result = load_demo(wired, days=days, scale=scale,
                           progress=lambda n: bar.advance(task, n))
        settings = wired.settings
        base = (base_url or wired.settings.base_url).rstrip("/")
        key = demo_key(wired)
    ttl = timedelta(hours=ttl_hours)
    models = sum(len(u.models) for u in result.users)
    click.echo(
        f"Demo loaded in {time.perf_counter() - started:.1f} s: {len(result.users)} users, "
        f"{models} models, {result.accepted:,} new usage records "
        f"({result.duplicates:,} already there, {result.failures:,} failed requests) "
        f"over {days} days.\n"
    )
    click.echo(f"# Tokens (valid {ttl_hours} h); paste into your shell:")
    for name, token, rights in demo_tokens(settings, result.users, ttl):
        click.echo(f"export {name}_TOKEN={token}  # {rights}")
    model = result.model_ids["alice/fraud-detector"]
    auth = '-H "Authorization: Bearer $ALICE_TOKEN"'
    body = ('{"request_id": "try-1", "response_time_ms": 21.5, "input_bytes": 512, '
            '"output_bytes": 64, "success": true}')
    infer = json.dumps({"id": "try-1", "inputs": [
        {"name": "X", "shape": [1, FEATURES], "datatype": "FP32", "data": [0.5] * FEATURES},
    ]})
    click.echo(f"export ALICE_KEY={key}  # API key: alice's model endpoints (shown once)")
    click.echo(f"""
# Start the service if it is not running:  modelledger serve
# Call the fraud-detector's live endpoint (Open Inference Protocol; metered as usage):
curl -s -H "Authorization: Bearer $ALICE_KEY" -H 'Content-Type: application/json' \\
  -d '{infer}' \\
  '{base}/v2/models/{model}/infer'
curl -s -H "Authorization: Bearer $ALICE_KEY" '{base}/v2/models/{model}'
# Then try:
curl -s {auth} '{base}/api/models?sort=-created_at'
curl -s {auth} '{base}/api/models/{model}'
curl -s {auth} '{base}/api/models/{model}/usage?window=day&tz=Europe/Berlin'
curl -s {auth} '{base}/api/models/{model}/history'
curl -s {auth} '{base}/api/usage/summary?window=week'
curl -s -X POST -H "Authorization: Bearer $GATEWAY_TOKEN" -H 'Content-Type: application/json' \\
  -d '{body}' \\
  '{base}/api/models/{model}/usage'
curl -s -H "Authorization: Bearer $ADMIN_TOKEN" '{base}/api/projections'
# API documentation: {base}/schema
# Dashboard, signed in as alice (one-time link, valid 10 minutes; another:
#   modelledger login-url --sub alice):
{demo_sign_in_link(settings, base)}""")
