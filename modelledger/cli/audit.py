"""``modelledger audit MODEL_ID`` (or ``--key KEY_ID``): replay a model's or an API key's audit
trail and show its state then."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from domain.api_key import KeyNotFoundError
from domain.errors import ModelNotFoundError
from modelledger.cli.common import container
from scheduler.archive import ArchiveDamage, archive_dir, read_archive
from services.audit import trail

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

    from services.container import Container


def _literal(*values: str) -> list[Text]:
    """Cells shown as written: names and request ids come from users, and a string cell
    would be read as rich markup (``[link=...]``, ``[bold]``) and emoji codes; control
    characters (a terminal's escape sequences) are shown as escapes, not sent."""
    return [Text(_CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", value)) for value in values]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def register(cli: click.Group) -> None:
    cli.add_command(audit)


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an RFC 3339 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command(
    help="Replay a model's events in order (who, when, what) and its state at that point; "
    "with --key, an API key's (created, revoked)."
)
@click.argument("model_id", type=click.UUID, required=False)
@click.option(
    "--key", "key_id", type=click.UUID, help="Replay this API key's trail instead of a model's."
)
@click.option("--as-of", "as_of", help="Stop at this RFC 3339 time.")
@click.option("--version", "version", type=click.IntRange(min=1), help="Stop at this version.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--archived-usage", "archived_usage", is_flag=True,
    help="Also list the model's usage records that compaction archived (DATA_DIR/archive).",
)
def audit(  # noqa: PLR0917 - click passes every option by name
    model_id: UUID | None,
    key_id: UUID | None,
    as_of: str | None,
    version: int | None,
    as_json: bool,  # noqa: FBT001 - click passes every option by name
    archived_usage: bool,  # noqa: FBT001 - click passes every option by name
) -> None:
    if as_of and version:
        raise click.UsageError("give --as-of or --version, not both")
    if (model_id is None) == (key_id is None):
        raise click.UsageError("give a MODEL_ID or --key KEY_ID")
    if key_id is not None and archived_usage:
        raise click.UsageError("--archived-usage is a model's, not a key's")
    moment = _moment(as_of) if as_of else None
    with container() as c:
        events, state = (
            _model_trail(c, model_id, version, moment) if model_id is not None
            else _key_trail(c, key_id, version, moment)  # type: ignore[arg-type]
        )
        archive = archive_dir(c.settings.data_dir)
    entries = trail(events, as_of=moment)
    usage = _archived(archive, model_id, moment) if model_id and archived_usage else []
    if as_json:
        document: dict[str, object] = {
            "events": [msgspec.structs.asdict(e) for e in entries], "state": state
        }
        if archived_usage:
            document["archived_usage"] = usage
        click.echo(json.dumps(document, default=str, indent=2))
        return
    table = Table("version", "at", "event", "actor", "changes")
    for e in entries:
        table.add_row(*_literal(str(e.version), e.at.isoformat(), e.type, e.actor,
                                json.dumps(e.changes, default=str, ensure_ascii=False)))
    console = Console()
    console.print(table)
    console.print(
        {k: str(v) if not isinstance(v, (dict, type(None))) else v for k, v in state.items()}
    )
    if archived_usage:
        usage_table = Table("occurred at", "request id", "ms", "success", "status", "rejected")
        for u in usage:
            usage_table.add_row(*_literal(
                u["occurred_at"], u["request_id"], str(u["response_time_ms"]), str(u["success"]),
                str(u.get("status_code")), str(u["rejected"]),
            ))
        console.print(usage_table)
        console.print(f"{len(usage)} archived usage record(s)")


def _model_trail(
    c: Container, model_id: UUID, version: int | None, moment: datetime | None
) -> tuple[list[Any], dict[str, Any]]:
    try:
        events = c.models.get_model_events(model_id, until_version=version)
        return events, c.models.get_model_state(model_id, version=version, as_of=moment)
    except ModelNotFoundError:
        raise click.ClickException(f"no model {model_id} (at that point)") from None


def _key_trail(
    c: Container, key_id: UUID, version: int | None, moment: datetime | None
) -> tuple[list[Any], dict[str, Any]]:
    try:
        events = c.keys.get_key_events(key_id, until_version=version)
        return events, c.keys.get_key_state(key_id, version=version, as_of=moment)
    except KeyNotFoundError:
        raise click.ClickException(f"no API key {key_id} (at that point)") from None


def _archived(directory: Path, model_id: UUID, moment: datetime | None) -> list[dict[str, Any]]:
    """The model's archived usage (up to ``moment``), warning on stderr of damaged files."""
    damaged: list[ArchiveDamage] = []
    usage = list(read_archive(directory, model_id=model_id, damaged=damaged))
    for damage in damaged:  # on stderr: a --json document stays whole on stdout
        click.echo(
            f"warning: damaged usage archive {damage.path} at byte {damage.offset} "
            f"({damage.reason}): records there were skipped", err=True,
        )
    if moment is None:
        return usage
    return [u for u in usage if datetime.fromisoformat(u["occurred_at"]) <= moment]
