"""The import contracts (pyproject's ``[tool.importlinter]``) hold, and they catch what they forbid.

The layers, top to bottom: ``modelledger`` (the entry), ``api`` and ``scheduler``,
``services``, ``eventstore``, ``projections`` and ``serving``, ``domain`` and ``config``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("modelledger", "api", "scheduler", "services", "eventstore", "projections", "serving",
            "domain", "config")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, check=False,
        env={"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)},
    )


def test_the_code_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and the contracts, to break on purpose."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "bad_import", "complaint"),
    [
        ("services/usage.py", "import api.auth", "services is not allowed to import api"),
        ("projections/projector.py", "import services.models",
         "projections is not allowed to import services"),
        ("api/deps.py", "import modelledger.bootstrap", "api is not allowed to import modelledger"),
        ("scheduler/jobs.py", "import modelledger.cli",
         "scheduler is not allowed to import modelledger"),
        ("serving/__init__.py", "import services.usage",
         "serving is not allowed to import services"),
        ("domain/model.py", "import psycopg", "domain is not allowed to import psycopg"),
        ("domain/usage.py", "import onnxruntime", "domain is not allowed to import onnxruntime"),
        ("domain/usage.py", "import sqlite3", "domain is not allowed to import sqlite3"),
        ("domain/model.py", "import projections.table",
         "domain is not allowed to import projections"),
    ],
)
def test_an_import_against_the_layers_breaks_a_contract(
    tree: Path, module: str, bad_import: str, complaint: str
) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{bad_import}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert complaint in result.stdout
