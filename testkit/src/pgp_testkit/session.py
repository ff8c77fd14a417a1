"""The test session's servers: one Postgres cluster and one moto S3, each started on first use.

Also callable at import time, for test classes that singer-sdk builds while collecting (they
need live streams). The plugin stops both when pytest ends (:func:`stop`), even after errors.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pgp_testkit.daemon import Daemon
from pgp_testkit.localpg import LocalPostgres
from pgp_testkit.locals3 import LocalS3

_started: list[Daemon] = []
_cluster: LocalPostgres | None = None
_s3: LocalS3 | None = None


def _start(server: Daemon) -> None:
    _started.append(server)  # before start(): a half-started server is stopped too
    server.start()


def session_cluster() -> LocalPostgres:
    """The session's cluster (a temp dir, removed by :func:`stop`)."""
    global _cluster
    if _cluster is None:
        server = LocalPostgres(Path(tempfile.mkdtemp(prefix="localpg-")))
        _start(server)
        _cluster = server
    return _cluster


def session_s3() -> LocalS3:
    """The session's moto server; it also dies with pytest when pytest is killed."""
    global _s3
    if _s3 is None:
        server = LocalS3(Path(tempfile.mkdtemp(prefix="locals3-test-")))
        _start(server)
        _s3 = server
    return _s3


def stop() -> None:
    global _cluster, _s3
    while _started:
        server = _started.pop()
        try:
            server.stop()
        finally:
            shutil.rmtree(server.directory, ignore_errors=True)
    _cluster = _s3 = None
