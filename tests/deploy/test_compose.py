"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import gc
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import pytest
import yaml
from psycopg_pool.base import BasePool

from api.app import create_app
from config.settings import PREFIX, Settings, load_settings
from modelledger.bootstrap import build
from modelledger.cli import cli
from scheduler.runner import JOBS

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = [name for name, spec in SERVICES.items()
                if spec.get("image", "").startswith("modelledger")]
LONG_RUNNING = [name for name in APP_SERVICES if SERVICES[name].get("restart") != "no"]
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with an empty environment; ``${VAR:?msg}`` gets a stand-in."""
    return _VARIABLE.sub(lambda m: "x" if "?" in m.group(0) else (m.group(2) or ""), value)


def parse_cli(args: list[str]) -> click.Command:
    """Resolve ``args`` to a command of ``modelledger`` and parse its options (no invocation)."""
    ctx = cli.make_context("modelledger", list(args), resilient_parsing=False)
    command: click.Command = cli
    while isinstance(command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"no command {name!r} in {args}"
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        command = sub
    return command


def test_topology_has_database_api_worker_and_scheduler() -> None:
    assert {"db", "api", "worker", "scheduler"} <= SERVICES.keys()
    assert {"api", "worker", "scheduler"} <= set(LONG_RUNNING)


def test_postgres_has_a_pg_isready_healthcheck_and_a_named_volume() -> None:
    db = SERVICES["db"]
    assert db["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume = next(v.split(":")[0] for v in db["volumes"] if v.endswith("/var/lib/postgresql/data"))
    assert volume in COMPOSE["volumes"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_service_waits_for_a_healthy_database(name: str) -> None:
    assert SERVICES[name]["depends_on"]["db"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_its_own_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert not check.get("disable")
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert SERVICES[name]["restart"] in {"always", "unless-stopped", "on-failure"}
    if check["test"][1] == "modelledger":
        parse_cli(check["test"][2:])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_command_exists_in_the_cli(name: str) -> None:
    command = SERVICES[name]["command"]
    parse_cli(command if isinstance(command, list) else shlex.split(command))


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_variable_set_is_a_setting_and_the_settings_load(name: str) -> None:
    environment = {key: interpolate(str(value))
                   for key, value in SERVICES[name]["environment"].items()}
    known = {PREFIX + f.name.upper() for f in fields(Settings)}
    ours = {key for key in environment if key.startswith(PREFIX)}
    assert ours <= known, f"not settings: {sorted(ours - known)}"
    settings = load_settings(environment)
    assert settings.backend == "postgres"
    assert settings.postgres_params()["host"] == "db"
    assert settings.jwt_secret, "replicas must share one JWT secret"


def test_api_runs_several_workers_api_only() -> None:
    api = SERVICES["api"]
    command = api["command"]
    assert "--api-only" in command
    assert int(command[command.index("--workers") + 1]) > 1
    environment = {key: interpolate(str(value)) for key, value in api["environment"].items()}
    assert load_settings(environment).embedded_worker is False
    port = command[command.index("--port") + 1]
    assert f"127.0.0.1:{port}/health/" in " ".join(api["healthcheck"]["test"])
    assert any(p.endswith(f":{port}") for p in api["ports"])


def test_worker_healthcheck_reads_the_heartbeat_the_worker_writes() -> None:
    worker = SERVICES["worker"]
    heartbeat = worker["command"][worker["command"].index("--heartbeat-file") + 1]
    assert heartbeat in " ".join(worker["healthcheck"]["test"])


def test_services_share_the_data_directory_volume() -> None:
    for name in APP_SERVICES:
        volume = next(v.split(":")[0] for v in SERVICES[name]["volumes"]
                      if v.endswith(":/var/lib/modelledger"))
        assert volume in COMPOSE["volumes"]


def test_dockerfile_installs_every_package_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert re.search(rf"^COPY {package} ", dockerfile, re.MULTILINE), package
    assert 'ENTRYPOINT ["modelledger"]' in dockerfile
    assert "MODELLEDGER_DATA_DIR=/var/lib/modelledger" in dockerfile
    assert re.search(r"^USER (?!root)", dockerfile, re.MULTILINE)


def test_configuration_reference_is_generated_from_settings() -> None:
    script = ROOT / "scripts" / "gen_config_doc.py"
    result = subprocess.run([sys.executable, str(script), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    doc = (ROOT / "docs" / "operations.md").read_text()
    for f in fields(Settings):
        assert f"`{PREFIX}{f.name.upper()}`" in doc


# -- PostgreSQL connections ------------------------------------------------------------------

HEADROOM = 1.2  # the connections the deployment may open, plus 20 %, must fit the server
SUPERUSER_RESERVED = 3  # PostgreSQL's superuser_reserved_connections (default)
_SCALE = re.compile(r"--scale (\w+)=(\d+)")
_MAX_CONNECTIONS = re.compile(r"max_connections=(\d+)")


def _pools_made_by(make: Callable[[], T]) -> tuple[T, list[BasePool]]:
    """What ``make`` returns and every psycopg pool it created (opened or not)."""
    before = [o for o in gc.get_objects() if isinstance(o, BasePool)]  # kept alive: ids stay
    known = {id(o) for o in before}
    made = make()
    return made, [o for o in gc.get_objects() if isinstance(o, BasePool) and id(o) not in known]


def _process_connections(settings: Settings, role: str) -> int:
    """The most connections one process of ``role`` opens: its pools at their largest (as the
    real composition root builds them) and the connections it holds outside any pool."""
    container, pools = _pools_made_by(lambda: build(settings))
    try:
        if role == "api":
            _, more = _pools_made_by(lambda: create_app(container))  # the async read pool
            pools += more
        held = 1  # start-up DDL lock (bootstrap.schema_lock) on a connection of its own
        if role == "worker":  # a leader lock per projection, and the LISTEN connection
            held += len(container.projector.projections) + 1
        if role == "scheduler":  # every job may run at once, each holding its job lock
            held += len(JOBS)
        return sum(pool.max_size for pool in pools) + held
    finally:
        container.close()


def _replicas(name: str) -> int:
    """The largest number of containers of ``name`` the compose file deploys or documents."""
    documented = [int(n) for service, n in _SCALE.findall(COMPOSE_TEXT) if service == name]
    return max([int(SERVICES[name].get("deploy", {}).get("replicas", 1)), *documented])


def _processes(name: str) -> list[tuple[str, int]]:
    """(role, how many) of the processes a container of service ``name`` runs at once."""
    command = SERVICES[name]["command"]
    if command[0] == "serve":
        # API-only: the parent closes its container before uvicorn starts the workers.
        assert "--api-only" in command
        processes = [("api", int(command[command.index("--workers") + 1]))]
    elif command[0] in {"worker", "scheduler"}:
        processes = [(command[0], 1)]
    else:  # one-shot (prepare): done before any other service starts
        return []
    check = SERVICES[name].get("healthcheck", {}).get("test", [])
    if check[1:2] == ["modelledger"]:
        processes.append(("cli", 1))  # a healthcheck command building its own container
    return processes


@pytest.mark.postgres
def test_every_process_of_the_compose_file_fits_postgresql_max_connections_with_room(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = pg_schema
    budget: dict[str, int] = {}
    for name in APP_SERVICES:
        environment = {key: interpolate(str(value))
                       for key, value in SERVICES[name]["environment"].items()}
        settings = load_settings(environment, database_url=url, pg_schema=schema,
                                 data_dir=tmp_path / name, jwt_secret="s" * 48)
        for role, count in _processes(name):
            each = _process_connections(settings, role)
            budget[f"{name}/{role}: {_replicas(name)} x {count} x {each}"] = (
                _replicas(name) * count * each
            )
    db_command = " ".join(SERVICES["db"].get("command", []))
    found = _MAX_CONNECTIONS.search(db_command)
    max_connections = int(found.group(1)) if found else 100  # PostgreSQL's default
    total = sum(budget.values())
    assert total * HEADROOM <= max_connections - SUPERUSER_RESERVED, (total, budget)
