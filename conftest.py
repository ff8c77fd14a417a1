"""Project-wide pytest fixtures: a throwaway PostgreSQL cluster per test session.

``pg``        (session)  a started ``localpg.LocalPostgres``, stopped at session end.
``fresh_db``  (function) DSN (``postgresql://...``) of a new, uniquely named database in it.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from localpg import LocalPostgres

# Tests import the harness as a plain module (`from localpg import ...`); conftest is
# loaded before any test module, so putting scripts/ on sys.path here is early enough.
_SCRIPTS = str(Path(__file__).resolve().parent / "scripts")
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)


_cluster: LocalPostgres | None = None
_cluster_dir: Path | None = None


def session_cluster() -> LocalPostgres:
    """The session's cluster, started on first use. Also callable at import time, for
    test classes that singer-sdk builds while collecting (they need live streams)."""
    global _cluster, _cluster_dir
    if _cluster is None:
        from localpg import LocalPostgres  # after the sys.path insert above

        _cluster_dir = Path(tempfile.mkdtemp(prefix="localpg-"))
        server = LocalPostgres(_cluster_dir)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _cluster = server
    return _cluster


def pytest_unconfigure(config: pytest.Config) -> None:
    # Runs even when tests errored: never leak a postmaster.
    if _cluster is not None:
        _cluster.stop()
    if _cluster_dir is not None:
        shutil.rmtree(_cluster_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> LocalPostgres:
    return session_cluster()


@pytest.fixture
def fresh_db(pg: LocalPostgres, request: pytest.FixtureRequest) -> str:
    # Test name in the database name makes leftovers easy to map back when debugging.
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return pg.create_database(f"t_{slug}_{uuid.uuid4().hex[:8]}")
