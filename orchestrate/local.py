"""The DAGs run locally, for `make orchestrate-demo`, the tests and bench/: an Airflow home
on SQLite, Airflow's execution API on a free loopback port, `airflow dags test
--use-executor` (tasks in parallel through the LocalExecutor, no scheduler), and a Meltano
sandbox (its own system database and run files; the installed plugins of .meltano/) so
nothing touches the developer's state.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Protocol

import psutil  # Meltano's dependency: the project venv has it

from orchestrate.plan import DBT_POOL
from orchestrate.project import ROOT

AIRFLOW_VENV = ROOT / ".airflow-venv"
AIRFLOW = AIRFLOW_VENV / "bin" / "airflow"
DAG_FOLDER = ROOT / "orchestrate" / "dag_folder"

# What a developer's shell may carry that would change what Meltano or Airflow resolves.
_SCRUBBED_PREFIXES = (
    "MELTANO_",
    "LOCALPG_",
    "TAP_",
    "TARGET_",
    "DBT_",
    "GITLAB_COM_",
    "SNOWFLAKE_",
    "AIRFLOW",
    "PGP_",
    "VIRTUAL_ENV",
)


class OrchestrateError(Exception):
    pass


class Cluster(Protocol):
    """A running Postgres (localpg.LocalPostgres)."""

    host: str
    port: int
    user: str
    password: str

    def dsn(self, dbname: str = ...) -> str: ...


def ensure_airflow_venv() -> None:
    """`make airflow-venv` (fast when nothing changed)."""
    subprocess.run(["bash", str(ROOT / "orchestrate" / "airflow-venv")], check=True, cwd=ROOT)


def meltano_sandbox(home: Path, pg: Cluster, source_db: str, warehouse_db: str) -> dict[str, str]:
    """Env of the tasks: Meltano's system dir and database in ``home`` (plugin venvs linked
    from .meltano/), the dev environment's LOCALPG_* on ``pg``, an empty env file instead
    of the project's .env."""
    sys_dir = home / ".meltano"
    sys_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("extractors", "loaders", "utilities"):
        link = sys_dir / kind
        if not link.exists():
            link.symlink_to(ROOT / ".meltano" / kind, target_is_directory=True)
    env_file = home / "empty.env"
    env_file.write_text("")
    env = {
        "MELTANO_SYS_DIR_ROOT": str(sys_dir),
        "MELTANO_DATABASE_URI": f"sqlite:///{sys_dir / 'meltano.db'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_TARGET_PATH": str(home / "dbt-target"),
        "DBT_LOG_PATH": str(home / "dbt-logs"),
        "PGP_MELTANO_ENV_FILE": str(env_file),
        "LOCALPG_HOST": pg.host,
        "LOCALPG_PORT": str(pg.port),
        "LOCALPG_USER": pg.user,
        "LOCALPG_PASSWORD": pg.password,
        "LOCALPG_SOURCE_DB": source_db,
        "LOCALPG_WAREHOUSE_DB": warehouse_db,
        "NO_COLOR": "1",
    }
    if not (sys_dir / "meltano.db").exists():
        # Parallel first tasks would each create and migrate the new systemdb at once (and
        # fail: "table job already exists"): one Meltano command creates it first.
        clean = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "meltano"), "--env-file", str(env_file), "state", "list"],
            cwd=ROOT,
            env={**clean, **env},
            check=True,
            capture_output=True,
        )
    return env


def stored_state_ids(task_env: Mapping[str, str]) -> dict[str, dict]:
    """{state ID: state} from the sandbox's Meltano system database, as `meltano state get`
    gives it: the completed state with the partial one (a full refresh's) merged over it."""
    db = task_env["MELTANO_DATABASE_URI"].removeprefix("sqlite:///")
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT state_id, completed_state, partial_state FROM state").fetchall()
    return {
        state_id: _merged(json.loads(done or "{}"), json.loads(partial or "{}"))
        for state_id, done, partial in rows
    }


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


@dataclass(frozen=True)
class TaskRun:
    task_id: str
    state: str
    try_number: int
    seconds: float  # of the last try
    started: datetime | None
    ended: datetime | None


@dataclass(frozen=True)
class DagRun:
    run_id: str
    state: str
    tasks: dict[str, TaskRun]
    seconds: float  # wall time of `airflow dags test`
    log: Path

    def failed(self) -> list[str]:
        return sorted(t for t, r in self.tasks.items() if r.state not in {"success", "skipped"})


class LocalAirflow:
    """An Airflow home in ``home`` whose tasks get ``task_env`` (and the DAG settings)."""

    def __init__(self, home: Path, task_env: Mapping[str, str], *, parallelism: int = 4) -> None:
        self.home = home
        self.task_env = dict(task_env)
        self.parallelism = parallelism
        self.port = _free_port()
        self.log_dir = home / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        secret_file = home / "jwt-secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(32))
            secret_file.chmod(0o600)
        self._jwt_secret = secret_file.read_text()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(DAG_FOLDER),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM=str(self.parallelism),
            AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=str(self.parallelism),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.home / 'airflow.db'}",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.port}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=self._jwt_secret,
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self.log_dir),
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            DO_NOT_TRACK="1",
            SCARF_ANALYTICS="false",
        )
        env.update(self.task_env)
        return env

    def airflow(self, *args: str, timeout: float = 600, log: Path | None = None) -> None:
        log = log or self.log_dir / "airflow-cli.log"
        with log.open("a") as out:
            out.write(f"\n$ airflow {' '.join(args)}\n")
            out.flush()
            proc = subprocess.run(
                [str(AIRFLOW), *args],
                env=self.env(),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise OrchestrateError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{tail}")

    def setup(self, pools: Mapping[str, int]) -> None:
        """The metadata database (SQLite), the pools capping each source database and the
        one-slot pool of dbt."""
        if not (self.home / "airflow.db").exists():
            self.airflow("db", "migrate")
        for pool, slots in pools.items():
            self.airflow("pools", "set", pool, str(slots), "connections to the source database")
        self.airflow("pools", "set", DBT_POOL, "1", "one dbt at a time")

    @contextmanager
    def execution_api(self) -> Iterator[None]:
        """Airflow's execution API (what task processes report to), on loopback."""
        log = (self.log_dir / "api-server.log").open("a")
        proc = subprocess.Popen(
            [
                str(AIRFLOW),
                "api-server",
                "--apps",
                "execution",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env(),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not _listening(self.port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise OrchestrateError(
                        f"airflow api-server did not start (log: {self.log_dir / 'api-server.log'})"
                    )
                time.sleep(0.5)
            yield
        finally:
            _stop(proc)
            log.close()

    def dags_test(
        self, dag_id: str, logical_date: datetime, conf: str | None = None, timeout: float = 1800
    ) -> DagRun:
        """`airflow dags test --use-executor`: one run, tasks in parallel; needs
        :meth:`execution_api` running."""
        stamp = logical_date.strftime("%Y%m%dT%H%M%S")
        log = self.log_dir / f"dags-test-{dag_id}-{stamp}.log"
        args = ["dags", "test", "--use-executor", dag_id, logical_date.isoformat()]
        if conf:
            args += ["--conf", conf]
        before = self._last_run_id(dag_id)
        started = time.monotonic()
        with log.open("a") as out:
            proc = subprocess.Popen(
                [str(AIRFLOW), *args],
                env=self.env(),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                while proc.poll() is None:
                    if time.monotonic() - started > timeout:
                        raise OrchestrateError(f"airflow dags test {dag_id}: over {timeout} s")
                    if self._finished(dag_id, before):
                        # The LocalExecutor sometimes never exits after the run (an idle
                        # worker left waiting): the run's state is final, stop it.
                        with suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=20)
                        break
                    time.sleep(1)
            finally:
                _stop(proc)
        return self._last_run(dag_id, time.monotonic() - started, log)

    def _last_run_id(self, dag_id: str) -> int:
        with closing(sqlite3.connect(self.home / "airflow.db", timeout=30)) as conn:
            row = conn.execute("SELECT max(id) FROM dag_run WHERE dag_id = ?", (dag_id,))
            return int(row.fetchone()[0] or 0)

    def _finished(self, dag_id: str, before: int) -> bool:
        try:
            with closing(sqlite3.connect(self.home / "airflow.db", timeout=5)) as conn:
                row = conn.execute(
                    "SELECT state FROM dag_run WHERE dag_id = ? AND id > ? ORDER BY id DESC",
                    (dag_id, before),
                ).fetchone()
        except sqlite3.OperationalError:  # locked by a writer: ask again
            return False
        return row is not None and row[0] in ("success", "failed")

    def _last_run(self, dag_id: str, seconds: float, log: Path) -> DagRun:
        with closing(sqlite3.connect(self.home / "airflow.db")) as conn:
            row = conn.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                (dag_id,),
            ).fetchone()
            if row is None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                raise OrchestrateError(f"no run of {dag_id} (log {log}):\n{tail}")
            tasks = {
                task_id: TaskRun(
                    task_id,
                    str(state),
                    int(tries or 0),
                    float(duration or 0),
                    _timestamp(start),
                    _timestamp(end),
                )
                for task_id, state, tries, duration, start, end in conn.execute(
                    "SELECT task_id, state, try_number, duration, start_date, end_date "
                    "FROM task_instance WHERE dag_id = ? AND run_id = ?",
                    (dag_id, row[0]),
                )
            }
        return DagRun(row[0], str(row[1]), tasks, seconds, log)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, and every process below it: the tasks'
    commands run in sessions of their own (Airflow's SubprocessHook), which a signal to the
    group misses."""
    if proc.poll() is not None:
        return
    below: list[psutil.Process] = []
    with suppress(psutil.NoSuchProcess):
        below = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGTERM)
    for child in below:
        with suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(below, timeout=30)
    for child in alive:
        with suppress(psutil.NoSuchProcess):
            child.kill()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _timestamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def demo_source() -> ModuleType:
    """scripts/demo_source.py: the demo source database."""
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("demo_source")


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
