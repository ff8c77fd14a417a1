"""Helpers of tests/test_dbt.py: the RAW pipeline, dbt runs and an offline Snowflake.

Imported by the tests (stdlib only at module level) and also run by the fakesnow venv's
Python (:func:`pgp_testkit.paths.kit_command`), for the parts that need fakesnow or the
Snowflake connector::

    .venv/bin/python -m pgp_testkit.dbt ensure-fakesnow-venv      # creates the venv
    python -m pgp_testkit.dbt serve-fakesnow --port N
    python -m pgp_testkit.dbt load-fakesnow --pg-dsn DSN --port N --database RAW
    python -m pgp_testkit.dbt query-fakesnow --port N "SELECT ..." ...

Tools:
- dbt: Meltano's utility venvs (`meltano install`, done by scripts/bootstrap):
  .meltano/utilities/dbt-postgres and .meltano/utilities/dbt-snowflake, as production runs it.
- target-postgres: Meltano's loader venv, configured from meltano.yml's `target-postgres`
  config (append-only via its stream map), plus the connection.
- fakesnow: .local/venvs/fakesnow from transform/requirements-fakesnow.txt, created on first
  use and reused while that file is unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pgp_testkit.daemon import free_port
from pgp_testkit.dsn import connection_config
from pgp_testkit.paths import ROOT, kit_command, kit_env

TRANSFORM = ROOT / "transform"
MANIFESTS = (
    ROOT / "manifests" / "gitlab_demo_db_manifest.yaml",
    ROOT / "manifests" / "gitlab_demo_scd_db_manifest.yaml",
)
SEEDS = TRANSFORM / "seeds"
MELTANO_DIR = ROOT / ".meltano"
DBT_POSTGRES = MELTANO_DIR / "utilities" / "dbt-postgres" / "venv" / "bin" / "dbt"
DBT_SNOWFLAKE = MELTANO_DIR / "utilities" / "dbt-snowflake" / "venv" / "bin" / "dbt"
TARGET_POSTGRES = MELTANO_DIR / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
FAKESNOW_VENV = ROOT / ".local" / "venvs" / "fakesnow"
FAKESNOW_REQUIREMENTS = TRANSFORM / "requirements-fakesnow.txt"
RAW_SCHEMA = "tap_postgres"

# Nothing may phone home.
QUIET_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DBT_VERSION_CHECK": "false",
    "DO_NOT_TRACK": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}


class ToolError(RuntimeError):
    """A tool is missing or a command failed; the message says which and how to fix it."""


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def require(path: Path) -> Path:
    if not path.exists():
        raise ToolError(
            f"{path.relative_to(ROOT)} is missing: run `make bootstrap` (meltano install)"
        )
    return path


# --------------------------------------------------------------------------- fakesnow venv


def fakesnow_python() -> Path:
    """Python of .local/venvs/fakesnow, (re)installed when the requirements file changed.

    Same as ``python3 -m venv .local/venvs/fakesnow && .local/venvs/fakesnow/bin/pip install
    -r transform/requirements-fakesnow.txt``; a lock keeps parallel test runs from racing.
    """
    import fcntl

    python = FAKESNOW_VENV / "bin" / "python"
    stamp = FAKESNOW_VENV / ".requirements-stamp"
    want = hashlib.sha256(FAKESNOW_REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()
    FAKESNOW_VENV.parent.mkdir(parents=True, exist_ok=True)
    with (FAKESNOW_VENV.parent / ".fakesnow.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
            return python
        shutil.rmtree(FAKESNOW_VENV, ignore_errors=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--no-input"]
        for cmd in (
            [sys.executable, "-m", "venv", str(FAKESNOW_VENV)],
            [*pip, "-r", str(FAKESNOW_REQUIREMENTS)],
        ):
            done = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, **QUIET_ENV}
            )
            if done.returncode:
                raise ToolError(f"{' '.join(cmd)} failed:\n{tail(done.stdout + done.stderr)}")
        stamp.write_text(want + "\n")
    return python


# --------------------------------------------------------------------------- RAW pipeline


def target_postgres_config(warehouse_dsn: str) -> dict[str, Any]:
    """meltano.yml's target-postgres config (append-only, metadata, hard deletes) + connection."""
    import yaml  # the test venv has PyYAML (the tap depends on it)

    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    for loader in project["plugins"]["loaders"]:
        if loader["name"] == "target-postgres":
            return {**loader.get("config", {}), **connection_config(warehouse_dsn)}
    raise ToolError("meltano.yml declares no loader target-postgres")


def run_pipeline(source_dsn: str, warehouse_dsn: str, workdir: Path, tap: Path) -> None:
    """One pgp run: every demo manifest through the tap into target-postgres, with state.

    The manifests run side by side (as Meltano's per-manifest jobs can). The state of each is
    kept in ``workdir``, so a second call is an incremental run (SCD: another full snapshot).
    """
    import psycopg  # the test venv's driver

    target = require(TARGET_POSTGRES)
    workdir.mkdir(parents=True, exist_ok=True)
    target_config = workdir / "target-postgres.json"
    target_config.write_text(json.dumps(target_postgres_config(warehouse_dsn)))
    # Two targets creating the schema at once could collide on it.
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    runs = []
    for manifest in MANIFESTS:
        name = manifest.stem
        tap_config = workdir / f"tap-{name}.json"
        tap_config.write_text(
            json.dumps(
                {
                    **connection_config(source_dsn),
                    "manifest_path": str(manifest),
                    "internal_projects_csv": str(SEEDS / "internal_gitlab_projects.csv"),
                    "internal_namespaces_csv": str(SEEDS / "internal_gitlab_namespaces.csv"),
                }
            )
        )
        state = workdir / f"state-{name}.json"
        tap_cmd = [str(tap), "--config", str(tap_config)]
        if state.exists():
            tap_cmd += ["--state", str(state)]
        logs = {kind: (workdir / f"{kind}-{name}.log").open("a") for kind in ("tap", "target")}
        tap_proc = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=logs["tap"])
        target_proc = subprocess.Popen(
            [str(target), "--config", str(target_config)],
            stdin=tap_proc.stdout,
            stdout=subprocess.PIPE,
            stderr=logs["target"],
            text=True,
            env={**os.environ, **QUIET_ENV},
        )
        assert tap_proc.stdout is not None
        tap_proc.stdout.close()  # the target holds the pipe now
        runs.append((name, state, tap_proc, target_proc, logs))
    failures = []
    for name, state, tap_proc, target_proc, logs in runs:
        states = [line for line in target_proc.communicate()[0].splitlines() if line.strip()]
        tap_rc = tap_proc.wait()
        for log in logs.values():
            log.close()
        if tap_rc or target_proc.returncode:
            failures.append(
                f"pipeline {name}: tap exit {tap_rc}, target exit {target_proc.returncode} "
                f"(logs: {workdir}/tap-{name}.log, target-{name}.log)\n"
                + tail((workdir / f"target-{name}.log").read_text(), 20)
            )
        elif states:
            state.write_text(states[-1])
    if failures:
        raise ToolError("\n".join(failures))


# --------------------------------------------------------------------------- dbt


@dataclass(frozen=True)
class Dbt:
    """One dbt installation and the environment that points its profile at a warehouse."""

    executable: Path
    profiles_dir: Path
    env: dict[str, str]
    workdir: Path  # target/ and logs/ of this run (transform/target stays untouched)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            **QUIET_ENV,
            **self.env,
            "DBT_PROFILES_DIR": str(self.profiles_dir),
            "DBT_TARGET_PATH": str(self.workdir / "target"),
            "DBT_LOG_PATH": str(self.workdir / "logs"),
            "DBT_USE_COLORS": "false",
        }
        done = subprocess.run(
            [str(self.executable), *args],
            cwd=TRANSFORM,
            env=env,
            capture_output=True,
            text=True,
        )
        if check and done.returncode:
            raise ToolError(
                f"dbt {' '.join(args)} failed ({done.returncode}):\n{tail(done.stdout)}"
            )
        return done

    def run_results(self) -> list[dict[str, Any]]:
        path = self.workdir / "target" / "run_results.json"
        return json.loads(path.read_text())["results"]


def dbt_postgres(warehouse_dsn: str, workdir: Path, schema: str = "analytics") -> Dbt:
    conn = connection_config(warehouse_dsn)
    return Dbt(
        executable=require(DBT_POSTGRES),
        profiles_dir=TRANSFORM / "profiles" / "postgres",
        env={
            "DBT_POSTGRES_HOST": conn["host"],
            "DBT_POSTGRES_PORT": str(conn["port"]),
            "DBT_POSTGRES_USER": conn["user"],
            "DBT_POSTGRES_PASSWORD": conn["password"],
            "DBT_POSTGRES_DBNAME": conn["database"],
            "DBT_POSTGRES_SCHEMA": schema,
            "DBT_RAW_DATABASE": conn["database"],
        },
        workdir=workdir,
    )


def dbt_snowflake(port: int, workdir: Path, database: str, raw_database: str, schema: str) -> Dbt:
    return Dbt(
        executable=require(DBT_SNOWFLAKE),
        profiles_dir=TRANSFORM / "profiles" / "snowflake",
        env={
            "DBT_SNOWFLAKE_ACCOUNT": FAKESNOW_ACCOUNT["account"],
            "DBT_SNOWFLAKE_USER": FAKESNOW_ACCOUNT["user"],
            "DBT_SNOWFLAKE_PASSWORD": FAKESNOW_ACCOUNT["password"],
            "DBT_SNOWFLAKE_ROLE": "TRANSFORMER",
            "DBT_SNOWFLAKE_WAREHOUSE": "TRANSFORMING",
            "DBT_SNOWFLAKE_DATABASE": database,
            "DBT_SNOWFLAKE_SCHEMA": schema,
            "DBT_SNOWFLAKE_HOST": "127.0.0.1",
            "DBT_SNOWFLAKE_PORT": str(port),
            "DBT_SNOWFLAKE_PROTOCOL": "http",
            "DBT_RAW_DATABASE": raw_database,
        },
        workdir=workdir,
    )


# --------------------------------------------------------------------------- fakesnow

FAKESNOW_ACCOUNT = {"account": "fakesnow", "user": "fake", "password": "snow"}

# Postgres RAW column type (information_schema.columns.data_type) -> the Snowflake type
# MeltanoLabs target-snowflake creates for the same JSON schema (integer NUMBER, number
# DOUBLE, date-time TIMESTAMP_NTZ, array/object VARIANT, other strings VARCHAR).
SNOWFLAKE_TYPES = {
    "bigint": "NUMBER(38,0)",
    "integer": "NUMBER(38,0)",
    "smallint": "NUMBER(38,0)",
    "numeric": "DOUBLE",
    "double precision": "DOUBLE",
    "real": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp without time zone": "TIMESTAMP_NTZ",
    "timestamp with time zone": "TIMESTAMP_NTZ",
    "time without time zone": "TIME",
    "ARRAY": "VARIANT",
    "json": "VARIANT",
    "jsonb": "VARIANT",
}


@contextmanager
def fakesnow_server(python: Path, log: Path) -> Iterator[int]:
    """A fakesnow server on 127.0.0.1 (in memory) for the duration; yields its port."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            kit_command(python, "dbt", "serve-fakesnow", "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=kit_env(),
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise ToolError(
                    f"fakesnow server exited {proc.returncode}:\n{tail(log.read_text())}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise ToolError(
                    f"fakesnow server not listening after 60 s:\n{tail(log.read_text())}"
                )
            time.sleep(0.2)
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def load_fakesnow(
    python: Path, pg_dsn: str, port: int, database: str, create: Sequence[str]
) -> str:
    """Copy RAW (schema tap_postgres of ``pg_dsn``) into <database>.TAP_POSTGRES of fakesnow."""
    cmd = kit_command(
        python, "dbt", "load-fakesnow", "--pg-dsn", pg_dsn, "--port", str(port),
        "--database", database,
    )  # fmt: skip
    for name in create:
        cmd += ["--create-database", name]
    done = subprocess.run(cmd, capture_output=True, text=True, env=kit_env())
    if done.returncode:
        raise ToolError(f"load-fakesnow failed:\n{tail(done.stdout + done.stderr)}")
    return done.stdout


def query_fakesnow(python: Path, port: int, *statements: str) -> list[list[list[Any]]]:
    """Rows of each statement, run on the fakesnow server by the fakesnow venv's Python.

    Values come back as JSON (timestamps as text: fakesnow 0.12 returns NULL timestamps as
    1970-01-01 through the connector, so compare timestamps in SQL, not in Python).
    """
    cmd = kit_command(python, "dbt", "query-fakesnow", "--port", str(port))
    done = subprocess.run([*cmd, *statements], capture_output=True, text=True, env=kit_env())
    if done.returncode:
        raise ToolError(f"query-fakesnow failed:\n{tail(done.stdout + done.stderr)}")
    return json.loads(done.stdout)


def snowflake_connect(port: int, database: str | None = None, schema: str | None = None) -> Any:
    import snowflake.connector  # only in the fakesnow venv

    return snowflake.connector.connect(
        **FAKESNOW_ACCOUNT,
        host="127.0.0.1",
        port=port,
        protocol="http",
        database=database,
        schema=schema,
        network_timeout=60,
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    )


def _json_value(value: Any) -> Any:
    """A Postgres RAW value as JSON (Snowflake casts it back from the FLATTEN'ed document)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return str(value)  # uuid, inet, ...


def _cmd_load(args: argparse.Namespace) -> int:
    import psycopg

    sf = snowflake_connect(args.port)
    cur = sf.cursor()
    for name in {*args.create_database, args.database}:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {name}")
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {args.database}.{RAW_SCHEMA}")
    with psycopg.connect(args.pg_dsn) as pg:
        tables = [
            row[0]
            for row in pg.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "ORDER BY table_name",
                (RAW_SCHEMA,),
            )
        ]
        for table in tables:
            columns = [
                (name, SNOWFLAKE_TYPES.get(data_type, "VARCHAR"))
                for name, data_type in pg.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    (RAW_SCHEMA, table),
                )
            ]
            qualified = f"{args.database}.{RAW_SCHEMA}.{table}"
            # Unquoted names: upper-case in Snowflake, as target-snowflake creates them.
            cur.execute(
                f"CREATE OR REPLACE TABLE {qualified} ("
                + ", ".join(f"{name} {sf_type}" for name, sf_type in columns)
                + ")"
            )
            with pg.cursor() as rows:
                rows.execute(_select_all(table, [name for name, _ in columns]))
                document = [
                    {
                        name: _json_value(value)
                        for (name, _), value in zip(columns, row, strict=True)
                    }
                    for row in rows
                ]
            # One statement per table: the rows travel as one JSON document and are cast per
            # column (VARIANT columns keep their JSON), which fakesnow parses fast.
            cur.execute(
                f"INSERT INTO {qualified} ({', '.join(name for name, _ in columns)}) SELECT "
                + ", ".join(
                    f'value:"{name}"' + ("" if sf_type == "VARIANT" else f"::{sf_type}")
                    for name, sf_type in columns
                )
                + " FROM TABLE(FLATTEN(INPUT => PARSE_JSON(%s)))",
                (json.dumps(document),),
            )
            cur.execute(f"SELECT COUNT(*) FROM {qualified}")
            loaded = cur.fetchone()[0]
            if loaded != len(document):
                raise SystemExit(
                    f"{qualified}: {loaded} rows in fakesnow, {len(document)} in Postgres"
                )
            print(f"{qualified.upper()} {loaded}")
    return 0


def _select_all(table: str, columns: list[str]) -> str:
    quoted = ", ".join('"' + name.replace('"', '""') + '"' for name in columns)
    return f'SELECT {quoted} FROM {RAW_SCHEMA}."{table}"'


def _cmd_query(args: argparse.Namespace) -> int:
    cur = snowflake_connect(args.port).cursor()
    results = []
    for statement in args.statements:
        cur.execute(statement)
        results.append([list(row) for row in cur.fetchall()])
    print(json.dumps(results, default=str))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import threading

    import fakesnow

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fakesnow.server(port=args.port, host="127.0.0.1"):
        stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure-fakesnow-venv", help="create/update .local/venvs/fakesnow")
    serve = sub.add_parser("serve-fakesnow", help="run a fakesnow server until SIGINT/SIGTERM")
    serve.add_argument("--port", type=int, required=True)
    load = sub.add_parser("load-fakesnow", help="copy Postgres RAW into fakesnow")
    load.add_argument("--pg-dsn", required=True)
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--database", required=True, help="RAW database in fakesnow")
    load.add_argument("--create-database", action="append", default=[])
    query = sub.add_parser("query-fakesnow", help="run statements, print their rows as JSON")
    query.add_argument("--port", type=int, required=True)
    query.add_argument("statements", nargs="+")
    args = parser.parse_args(argv)
    commands = {
        "ensure-fakesnow-venv": lambda _: print(fakesnow_python()) or 0,
        "serve-fakesnow": _cmd_serve,
        "load-fakesnow": _cmd_load,
        "query-fakesnow": _cmd_query,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
