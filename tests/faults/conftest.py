"""`modelledger serve --workers 2` on a fresh schema of the test server, for the fault tests
(a module that needs a server it can stop and start defines its own ``service``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.faults.processes import Service

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def service(tmp_path: Path, pg_schema: tuple[str, str]) -> Iterator[Service]:
    url, schema = pg_schema
    serve = Service(tmp_path, url, schema, workers=2)
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()
