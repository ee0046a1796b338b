"""Find a PostgreSQL server for the tests, or start a throwaway cluster with pg_ctl.

Order: ``MODELLEDGER_TEST_PG_DSN``; the server named by the libpq environment (PGHOST, ...)
or its defaults; ``127.0.0.1:5432`` as user postgres; else ``initdb`` + ``pg_ctl`` in a
temporary directory when the binaries exist. ``None`` when nothing works.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def pg_binaries() -> Path | None:
    """The folder of pg_ctl and initdb, if the PostgreSQL server binaries are installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_cluster() -> str | None:
    bindir = pg_binaries()
    if bindir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="modelledger-pg-"))
    data = root / "data"
    port = free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True, capture_output=True,
    )
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
         "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
        check=True, capture_output=True,
    )

    def stop() -> None:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False, capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def find_postgres() -> str | None:
    """A reachable server's URL (``postgresql://...``), or None."""
    explicit = os.environ.get("MODELLEDGER_TEST_PG_DSN")
    if explicit:
        return explicit if _reachable(explicit) else None
    if any(key.startswith("PG") for key in os.environ) and _reachable(""):
        with psycopg.connect("", autocommit=True) as conn:
            info = conn.info
            return (
                f"postgresql://{info.user}:{info.password or ''}"
                f"@{info.host}:{info.port}/{info.dbname}"
            )
    default = "postgresql://postgres@127.0.0.1:5432/postgres"
    if _reachable(default):
        return default
    try:
        return _start_cluster()
    except (OSError, subprocess.CalledProcessError, KeyError, LookupError):
        return None
