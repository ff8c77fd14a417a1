"""The project's pytest plugin (entry point ``pytest11``), active in every pytest run of .venv.

``pg``        (session)  the session's started :class:`~pgp_testkit.localpg.LocalPostgres`.
``fresh_db``  (function) DSN (``postgresql://...``) of a new, uniquely named database in it.
``cluster_root`` (function) a new directory for clusters of the test's own
              (:func:`~pgp_testkit.localpg.cluster_root`).
``bucket``    (function) a new bucket on the session's moto S3 (:mod:`pgp_testkit.s3pump`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pgp_testkit import localpg, session
from pgp_testkit.localpg import LocalPostgres

if TYPE_CHECKING:
    from pgp_testkit.s3pump import Bucket


def pytest_unconfigure(config: pytest.Config) -> None:
    # Runs even when tests errored: never leak a postmaster or a moto server.
    session.stop()


@pytest.fixture(scope="session")
def pg() -> LocalPostgres:
    return session.session_cluster()


@pytest.fixture
def fresh_db(pg: LocalPostgres, request: pytest.FixtureRequest) -> str:
    # Test name in the database name makes leftovers easy to map back when debugging.
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    return pg.create_database(f"t_{slug}_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def cluster_root() -> Iterator[Path]:
    with localpg.cluster_root() as root:
        yield root


@pytest.fixture
def bucket() -> Bucket:
    from pgp_testkit.s3pump import new_bucket  # imports target-s3-pump: only when asked for

    return new_bucket()
