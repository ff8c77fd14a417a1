"""The throwaway-Postgres harness (pgp_testkit.localpg; scripts/localpg.py) and its fixtures."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from pgp_testkit import localpg
from pgp_testkit.localpg import LocalPostgres, LocalPostgresError, ensure_bindir, find_bindir

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "localpg.py"


def _make_bindir(path: Path, exes: tuple[str, ...] = ("initdb", "pg_ctl")) -> Path:
    path.mkdir(parents=True)
    for exe in exes:
        (path / exe).write_text("#!/bin/sh\nexit 0\n")
        (path / exe).chmod(0o755)
    return path


def _query(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


# --------------------------------------------------------------------------- binary discovery


def test_find_bindir_empty_or_missing_root(tmp_path: Path) -> None:
    assert find_bindir(tmp_path, pg_config=None) is None
    assert find_bindir(tmp_path / "does-not-exist", pg_config=None) is None


def test_find_bindir_picks_newest_complete_version(tmp_path: Path) -> None:
    _make_bindir(tmp_path / "9.6" / "bin")
    expected = _make_bindir(tmp_path / "13" / "bin")
    _make_bindir(tmp_path / "16" / "bin", exes=("initdb",))  # incomplete: no pg_ctl
    (tmp_path / "common").mkdir()  # not a version directory
    assert find_bindir(tmp_path, pg_config=None) == expected


def test_find_bindir_falls_back_to_pg_config(tmp_path: Path) -> None:
    server = _make_bindir(tmp_path / "server" / "bin")
    client_only = _make_bindir(tmp_path / "client" / "bin", exes=("psql",))
    for name, target in (("pg_config_server", server), ("pg_config_client", client_only)):
        script = tmp_path / name
        script.write_text(f"#!/bin/sh\necho {target}\n")
        script.chmod(0o755)
    empty_root = tmp_path / "empty"
    assert find_bindir(empty_root, pg_config=str(tmp_path / "pg_config_server")) == server
    # pg_config from libpq-dev alone points at a dir without initdb: not good enough.
    assert find_bindir(empty_root, pg_config=str(tmp_path / "pg_config_client")) is None


def test_ensure_bindir_missing_gives_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(localpg.BINDIR_ENV, raising=False)
    with pytest.raises(LocalPostgresError, match="apt-get install -y postgresql"):
        ensure_bindir(tmp_path, pg_config=None, install=False)


def test_ensure_bindir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = _make_bindir(tmp_path / "custom")
    monkeypatch.setenv(localpg.BINDIR_ENV, str(good))
    assert ensure_bindir(tmp_path / "nothing", pg_config=None, install=False) == good
    monkeypatch.setenv(localpg.BINDIR_ENV, str(tmp_path))
    with pytest.raises(LocalPostgresError, match="does not contain initdb"):
        ensure_bindir(install=False)


# --------------------------------------------------------------------------- session fixtures


def test_session_cluster_requires_password_over_tcp(pg: LocalPostgres) -> None:
    assert pg.is_running()
    assert _query(pg.dsn(), "SELECT current_user") == "postgres"
    assert _query(pg.dsn(), "SHOW listen_addresses") == "127.0.0.1"
    assert _query(pg.dsn(), "SHOW fsync") == "off"

    wrong = pg.dsn().replace(pg.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10)
    no_password = f"host={pg.host} port={pg.port} user={pg.user} dbname=postgres passfile=/dev/null"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(no_password, connect_timeout=10, password="")


def test_env_mapping(pg: LocalPostgres) -> None:
    assert pg.env("TAP_X_") == {
        "TAP_X_HOST": "127.0.0.1",
        "TAP_X_PORT": str(pg.port),
        "TAP_X_USER": "postgres",
        "TAP_X_PASSWORD": pg.password,
    }
    assert pg.env("PG", dbname="db1")["PGDATABASE"] == "db1"


def test_fresh_db_is_new_and_unique(fresh_db: str, pg: LocalPostgres) -> None:
    name = _query(fresh_db, "SELECT current_database()")
    assert isinstance(name, str)
    assert name.startswith("t_test_fresh_db_is_new_and_unique_")
    assert _query(fresh_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    assert fresh_db == pg.dsn(name)


def test_create_database_keeps_or_drops(pg: LocalPostgres) -> None:
    dsn = pg.create_database("keep_or_drop")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE t (x int)")
    assert pg.create_database("keep_or_drop") == dsn  # exists: left alone
    assert _query(dsn, "SELECT to_regclass('public.t')::text") == "t"
    pg.create_database("keep_or_drop", drop=True)  # recreated empty
    assert _query(dsn, "SELECT to_regclass('public.t')::text") is None


def test_create_database_without_psycopg_uses_psql(
    pg: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localpg, "_import_psycopg", lambda: None)
    name = 'odd "name" it\'s'  # both quote kinds: exercises the psql quoting
    dsn = pg.create_database(name)
    assert _query(dsn, "SELECT current_database()") == name
    assert pg.create_database(name, drop=True) == dsn


# --------------------------------------------------------------------------- lifecycle


def test_start_restart_stop_keeps_port_and_data(cluster_root: Path) -> None:
    cluster = LocalPostgres(cluster_root / "c").start()
    try:
        port = cluster.port
        state_mode = stat.S_IMODE(cluster.state_file.stat().st_mode)
        assert state_mode == 0o600, "password file must not be group/world readable"
        assert json.loads(cluster.state_file.read_text())["port"] == port
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('survives')")

        cluster.restart()
        assert cluster.is_running()
        assert cluster.port == port
        assert _query(cluster.dsn(), "SELECT v FROM kept") == "survives"

        cluster.stop()
        assert not cluster.is_running()
        cluster.stop()  # stopping a stopped cluster is fine

        # A later process only has the directory: it must find the same port and password.
        again = LocalPostgres(cluster_root / "c")
        assert (again.port, again.password) == (port, cluster.password)
        again.start()
        assert _query(again.dsn(), "SELECT v FROM kept") == "survives"
    finally:
        cluster.stop("immediate")
    assert not cluster.is_running()


def test_start_failure_reports_log_tail(cluster_root: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy_port = blocker.getsockname()[1]
        # An explicit port is never swapped for another, so the bind error must surface.
        cluster = LocalPostgres(cluster_root / "c", port=busy_port)
        try:
            with pytest.raises(LocalPostgresError, match="could not bind") as excinfo:
                cluster.start()
            assert "last lines of" in str(excinfo.value)
            assert not cluster.is_running()
        finally:
            cluster.stop("immediate")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_start_status_env_stop(cluster_root: Path) -> None:
    # A deep path proves we survive the ~107-byte unix socket path limit (TCP-only fallback).
    datadir = cluster_root / ("d" * 60) / ("e" * 60)
    try:
        started = _cli("start", "--datadir", str(datadir))
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        assert _query(info["dsn"], "SELECT 1") == 1
        assert _query(info["dsn"], "SHOW unix_socket_directories") == ""

        status = _cli("status", "--datadir", str(datadir))
        assert status.returncode == 0
        assert json.loads(status.stdout)["running"] is True

        env = _cli("env", "--datadir", str(datadir))
        assert env.returncode == 0
        exported = dict(
            line.removeprefix("export ").split("=", 1) for line in env.stdout.splitlines()
        )
        assert exported["PGPORT"] == str(info["port"])
        assert exported["PGPASSWORD"] == info["password"]
        assert set(exported) == {"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"}

        created = _cli("createdb", "--datadir", str(datadir), "clidb")
        assert created.returncode == 0, created.stderr
        assert _query(created.stdout.strip(), "SELECT current_database()") == "clidb"

        assert _cli("stop", "--datadir", str(datadir)).returncode == 0
        assert _cli("status", "--datadir", str(datadir)).returncode == 3
    finally:
        _cli("stop", "--datadir", str(datadir), "--mode", "immediate")


def test_cli_env_without_cluster_fails_cleanly(tmp_path: Path) -> None:
    result = _cli("env", "--datadir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert result.stderr.startswith("localpg: error: no cluster")
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "none" / "localpg.json")


# --------------------------------------------------------------------------- replicas


def _wait_for(dsn: str, sql: str, expected: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := _query(dsn, sql)) != expected:
        assert time.monotonic() < deadline, f"{sql} gave {got!r}, not {expected!r}"
        time.sleep(0.05)


def test_start_replica_streams_and_restarts_as_standby(cluster_root: Path) -> None:
    primary = LocalPostgres(cluster_root / "p").start()
    replicas = [LocalPostgres(cluster_root / "r"), LocalPostgres(cluster_root / "r2")]
    try:
        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v text)")
        replica = primary.start_replica(cluster_root / "r", settings={"work_mem": "'5MB'"})
        assert replica.port != primary.port
        assert replica.password == primary.password  # a physical copy: same roles
        assert stat.S_IMODE(replica.state_file.stat().st_mode) == 0o600
        assert _query(replica.dsn(), "SELECT pg_is_in_recovery()") is True
        assert _query(replica.dsn(), "SHOW hot_standby") == "on"
        assert _query(replica.dsn(), "SHOW work_mem") == "5MB"
        # Its own socket directory, not the primary's (copied postgresql.conf).
        assert _query(replica.dsn(), "SHOW unix_socket_directories") == str(replica.pgdata)
        assert _query(primary.dsn(), "SELECT state FROM pg_stat_replication") == "streaming"

        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES ('replayed')")
        _wait_for(replica.dsn(), "SELECT count(*) FROM t", 1)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            _query(replica.dsn(), "INSERT INTO t VALUES ('no')")

        with pytest.raises(LocalPostgresError, match="already holds a cluster"):
            primary.start_replica(cluster_root / "r")

        # A later process only has the directory: it comes back as the same standby.
        replica.stop()
        again = LocalPostgres(cluster_root / "r").start()
        assert again.port == replica.port
        assert _query(again.dsn(), "SELECT pg_is_in_recovery()") is True
        assert _query(again.dsn(), "SELECT v FROM t") == "replayed"

        started = _cli(
            "start-replica",
            "--datadir",
            str(cluster_root / "r2"),
            "--primary",
            str(primary.datadir),
        )
        assert started.returncode == 0, started.stderr
        assert _query(json.loads(started.stdout)["dsn"], "SELECT pg_is_in_recovery()") is True
    finally:
        for server in (*replicas, primary):
            server.stop("immediate")


def test_start_replica_needs_a_running_primary(tmp_path: Path) -> None:
    result = _cli(
        "start-replica", "--datadir", str(tmp_path / "r"), "--primary", str(tmp_path / "none")
    )
    assert result.returncode == 1
    assert result.stderr.startswith("localpg: error: no cluster")
    with pytest.raises(LocalPostgresError, match="is not running"):
        LocalPostgres(tmp_path / "stopped").start_replica(tmp_path / "r")
    assert not (tmp_path / "r").exists()
