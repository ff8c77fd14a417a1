"""The real Meltano project, run in isolation by the end-to-end tests (tests/test_pipeline.py...).

A :class:`Pipeline` is this repository's meltano.yml run by the project's own
``.venv/bin/meltano`` against a throwaway source and warehouse database, with

- its own Meltano system directory (``MELTANO_SYS_DIR_ROOT`` in a temp dir): its own
  systemdb (state), ``run/`` files and logs; the installed plugin venvs of
  ``.meltano/`` are symlinked in, so nothing is reinstalled and nothing leaks;
- an empty ``--env-file``: a developer's ``.env`` (written by ``make demo``) is ignored;
- the ``dev`` environment's LOCALPG_* variables pointing at the test cluster;
- dbt's target/ and logs/ in the temp dir, never in transform/;
- optionally a copy of the manifests (``TAP_GITLAB_POSTGRES__MAIN_MANIFEST_PATH`` etc.).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from pgp_testkit.paths import ROOT

MELTANO = ROOT / ".venv" / "bin" / "meltano"
TAP = ROOT / ".venv" / "bin" / "tap-gitlab-postgres"
MANIFESTS = ROOT / "manifests"
SEEDS = ROOT / "transform" / "seeds"
RAW_SCHEMA = "tap_postgres"
TARGET = "target-postgres"
LOOKBACK = timedelta(minutes=30)

# extractor -> manifest file name (meltano.yml points both at manifests/).
EXTRACTORS = {
    "tap-gitlab-postgres--main": "gitlab_demo_db_manifest.yaml",
    "tap-gitlab-postgres--main-scd": "gitlab_demo_scd_db_manifest.yaml",
}
MAIN, SCD = EXTRACTORS

# Variables a developer's shell might carry that would change what the project resolves.
_SCRUBBED_PREFIXES = (
    "MELTANO_",
    "LOCALPG_",
    "TAP_GITLAB_POSTGRES",
    "TARGET_POSTGRES",
    "TARGET_SNOWFLAKE",
    "DBT_",
    "GITLAB_COM_",
    "SNOWFLAKE_",
)


def meltano_project() -> dict[str, Any]:
    """meltano.yml with the files of its ``include_paths`` merged in, as Meltano reads them
    (the in-repo plugins' definitions live beside their code)."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    for pattern in project.get("include_paths") or []:
        for path in sorted(ROOT.glob(pattern.removeprefix("./"))):
            part = yaml.safe_load(path.read_text()) or {}
            for kind, plugins in (part.get("plugins") or {}).items():
                project.setdefault("plugins", {}).setdefault(kind, []).extend(plugins)
            for key in ("environments", "jobs", "schedules"):
                project.setdefault(key, []).extend(part.get(key) or [])
    return project


def meltano_env_name(plugin: str, setting: str) -> str:
    """Meltano's env variable for a plugin setting (`tap-x--main`, `a_b` -> TAP_X__MAIN_A_B)."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"{plugin}_{setting}").upper()


def manifest_env_name(extractor: str) -> str:
    return meltano_env_name(extractor, "manifest_path")


@dataclass
class Stream:
    extractor: str
    name: str  # stream = RAW table name
    load_type: str  # incremental | load_by_id | scd
    primary_key: str
    source_table: str
    unfiltered: bool  # no additional_filtering and no allow-list placeholders
    table: Any = field(repr=False)  # tap_gitlab_postgres.manifest.ManifestTable


def manifest_streams(extractor: str, manifest: Path) -> list[Stream]:
    """The streams a manifest defines, parsed by the tap's own manifest loader."""
    from tap_gitlab_postgres.manifest import load_manifest

    out = []
    for t in load_manifest(manifest, "main").tables:
        match = re.search(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)", t.import_query, re.I)
        assert match, f"no FROM in {t.key}"
        unfiltered = not t.additional_filtering and not any(
            p.startswith("INTERNAL_") for p in t.placeholders
        )
        out.append(
            Stream(
                extractor,
                t.stream_name,
                str(t.load_type.value),
                t.primary_key,
                match.group(1),
                unfiltered,
                t,
            )
        )
    return out


def allow_lists():
    from tap_gitlab_postgres.allowlist import AllowLists

    return AllowLists.load(
        SEEDS / "internal_gitlab_projects.csv", SEEDS / "internal_gitlab_namespaces.csv"
    )


@dataclass
class RunResult:
    started_ms: int  # epoch ms just before `meltano run`: rows of this run have
    #                  _uploaded_at (epoch s, the tap's) >= started_ms / 1000
    proc: subprocess.CompletedProcess
    seconds: float


class MeltanoFailed(AssertionError):
    pass


class Pipeline:
    def __init__(self, pg, home: Path, source_db: str, warehouse_db: str) -> None:
        self.pg = pg
        self.home = home
        self.source_db = source_db
        self.warehouse_db = warehouse_db
        self.sys_dir = home / ".meltano"
        self.sys_dir.mkdir(parents=True, exist_ok=True)
        for kind in ("extractors", "loaders", "utilities"):
            link = self.sys_dir / kind
            if not link.exists():
                link.symlink_to(ROOT / ".meltano" / kind, target_is_directory=True)
        self.env_file = home / "empty.env"
        self.env_file.write_text("")
        self.log = home / "meltano.log"
        self.manifests: dict[str, Path] = {x: MANIFESTS / f for x, f in EXTRACTORS.items()}
        self.extra_env: dict[str, str] = {}

    # -- setup ---------------------------------------------------------------------

    def use_manifest_copies(self) -> Path:
        """Copy the project's manifests into the temp dir and point both extractors there."""
        folder = self.home / "manifests"
        folder.mkdir(exist_ok=True)
        for extractor, name in EXTRACTORS.items():
            shutil.copy(MANIFESTS / name, folder / name)
            self.manifests[extractor] = folder / name
            self.extra_env[manifest_env_name(extractor)] = str(folder / name)
        shutil.copy(MANIFESTS / "connection_info.yaml", folder / "connection_info.yaml")
        return folder

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.pop("VIRTUAL_ENV", None)
        env.update(
            MELTANO_SYS_DIR_ROOT=str(self.sys_dir),
            MELTANO_DATABASE_URI=f"sqlite:///{self.sys_dir / 'meltano.db'}",
            MELTANO_ENVIRONMENT="dev",
            MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
            MELTANO_CLI_LOG_LEVEL="info",
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            DBT_TARGET_PATH=str(self.home / "dbt-target"),
            DBT_LOG_PATH=str(self.home / "dbt-logs"),
            LOCALPG_HOST=self.pg.host,
            LOCALPG_PORT=str(self.pg.port),
            LOCALPG_USER=self.pg.user,
            LOCALPG_PASSWORD=self.pg.password,
            LOCALPG_SOURCE_DB=self.source_db,
            LOCALPG_WAREHOUSE_DB=self.warehouse_db,
            NO_COLOR="1",
        )
        env.update(self.extra_env)
        return env

    # -- meltano -------------------------------------------------------------------

    def meltano(
        self,
        *args: str,
        check: bool = True,
        env: dict | None = None,
        timeout: float = 600,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        cmd = [str(MELTANO), "--env-file", str(self.env_file), *args]
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        with self.log.open("a") as log:
            log.write(f"\n$ meltano {' '.join(args)}  (exit {proc.returncode})\n")
            log.write(proc.stdout)
            log.write(proc.stderr)
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
            raise MeltanoFailed(f"meltano {' '.join(args)} failed ({proc.returncode}):\n{tail}")
        return proc

    def run(self, *blocks: str, full_refresh: bool = False, check: bool = True) -> RunResult:
        started_ms = int(time.time() * 1000)
        begin = time.monotonic()
        args = ["run", *(["--full-refresh"] if full_refresh else []), *blocks]
        proc = self.meltano(*args, check=check)
        return RunResult(started_ms, proc, time.monotonic() - begin)

    def config(self, plugin: str, env: dict | None = None) -> dict:
        """The config Meltano hands ``plugin`` (``meltano invoke --dump=config``)."""
        out = self.meltano("--log-level=warning", "invoke", "--dump=config", plugin, env=env).stdout
        return json.loads(out)

    def record_mode_output(self, extractor: str, config: dict | None = None) -> str:
        """The extractor's Singer messages in RECORD mode, as `meltano invoke` would run it
        (its resolved config and catalog with Meltano's selection, no state) but without
        the environment's ``batch_config`` (an env variable cannot unset an object setting)."""
        config = {k: v for k, v in (config or self.config(extractor)).items()}
        config.pop("batch_config", None)
        path = self.home / f"{extractor}.record-mode.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        catalog = self.home / f"{extractor}.catalog.json"
        catalog.write_text(
            self.meltano("--log-level=warning", "invoke", "--dump=catalog", extractor).stdout
        )
        # What the dev environment's `env:` gives the extractor (meltano.yml).
        source = {
            "GITLAB_COM_DB_HOST": self.pg.host,
            "GITLAB_COM_PG_PORT": str(self.pg.port),
            "GITLAB_COM_DB_USER": self.pg.user,
            "GITLAB_COM_DB_PASS": self.pg.password,
            "GITLAB_COM_DB_NAME": self.source_db,
        }
        done = subprocess.run(
            [str(TAP), "--config", str(path), "--catalog", str(catalog)],
            cwd=ROOT,
            env={**self.env(), **source},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    @staticmethod
    def state_id(extractor: str) -> str:
        return f"dev:{extractor}-to-{TARGET}"

    def state(self, extractor: str = MAIN) -> dict:
        """`meltano state get`: the bookmarks of one extractor (completed + partial)."""
        out = self.meltano("--log-level=warning", "state", "get", self.state_id(extractor)).stdout
        payload = json.loads(out[out.index("{") :])
        return payload["singer_state"].get("bookmarks", {})

    def stored_state(self, extractor: str = MAIN) -> dict:
        """The same as :meth:`state`, read straight from the sqlite systemdb (a meltano
        process costs seconds; tests that assert *how* state is managed use state())."""
        with sqlite3.connect(self.sys_dir / "meltano.db") as db:
            row = db.execute(
                "SELECT completed_state, partial_state FROM state WHERE state_id = ?",
                (self.state_id(extractor),),
            ).fetchone()
        assert row is not None, f"no state for {self.state_id(extractor)}"
        completed, partial = (json.loads(v) if v else {} for v in row)
        merged = _deep_merge(completed, partial)
        return merged.get("singer_state", {}).get("bookmarks", {})

    # -- databases -----------------------------------------------------------------

    def connect(self, db: str) -> psycopg.Connection:
        conn = psycopg.connect(self.pg.dsn(db), autocommit=True)
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def raw_exists(self, stream: str) -> bool:
        with self.connect(self.warehouse_db) as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM information_schema.tables "
                    "WHERE table_schema = %s AND table_name = %s",
                    (RAW_SCHEMA, stream),
                ).fetchone()
                is not None
            )

    def raw_keys(
        self,
        stream: Stream | str,
        pk: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list:
        """Primary keys of the RAW rows (with repeats), optionally of one run only."""
        name = stream if isinstance(stream, str) else stream.name
        pk = pk or (stream.primary_key if isinstance(stream, Stream) else "id")
        query = sql.SQL("SELECT {} FROM {}.{} WHERE true").format(
            sql.Identifier(pk), sql.Identifier(RAW_SCHEMA), sql.Identifier(name)
        )
        params: list = []
        if since_ms is not None:
            query += sql.SQL(" AND _uploaded_at >= %s")
            params.append(since_ms / 1000)
        if until_ms is not None:
            query += sql.SQL(" AND _uploaded_at < %s")
            params.append(until_ms / 1000)
        with self.connect(self.warehouse_db) as conn:
            return sorted(r[0] for r in conn.execute(query, params))

    def raw_versions(self, stream: str) -> list[int]:
        with self.connect(self.warehouse_db) as conn:
            return [
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT DISTINCT _sdc_table_version FROM {}.{} ORDER BY 1").format(
                        sql.Identifier(RAW_SCHEMA), sql.Identifier(stream)
                    )
                )
            ]

    def source_keys(self, stream: Stream, window: tuple[datetime, datetime] | None = None) -> list:
        """Primary keys the stream's manifest query returns from the source now: the whole
        query without its time window, or one incremental window (the tap's own SQL)."""
        from tap_gitlab_postgres.query import Window

        query = stream.table.query
        allow = allow_lists()
        text = query.full_sql(allow) if window is None else query.window_sql(Window(*window), allow)
        pk = sql.Identifier(stream.primary_key).as_string()
        with self.connect(self.source_db) as conn:
            rows = conn.execute(
                f"SELECT {pk} FROM (\n{text}\n) AS q WHERE {pk} IS NOT NULL"  # type: ignore[arg-type]
            )
            return sorted(r[0] for r in rows)

    def source_table_keys(
        self,
        table: str,
        pk: str = "id",
        *,
        updated_between: tuple[datetime, datetime] | None = None,
        key_above: Any = None,
    ) -> list:
        """Independent of the tap: keys of a source table, optionally by updated_at or key."""
        query = sql.SQL("SELECT {} FROM {} WHERE true").format(
            sql.Identifier(pk), sql.Identifier(table)
        )
        params: list = []
        if updated_between is not None:
            query += sql.SQL(" AND updated_at BETWEEN %s AND %s")
            params += list(updated_between)
        if key_above is not None:
            query += sql.SQL(" AND {} > %s").format(sql.Identifier(pk))
            params.append(key_above)
        with self.connect(self.source_db) as conn:
            return sorted(r[0] for r in conn.execute(query, params))


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# -- faults while Meltano runs (tests/test_faults.py) ------------------------------------


def start_meltano(pipe: Pipeline, *args: str, name: str) -> tuple[subprocess.Popen, Path]:
    """`meltano <args>` in the background, stdout and stderr into one file (no pipe to fill
    up while the test holds it mid-run). Finish it with :func:`finish_meltano`."""
    out = pipe.home / f"{name}.out"
    cmd = [str(MELTANO), "--env-file", str(pipe.env_file), *args]
    with out.open("w") as sink:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=pipe.env(), stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return proc, out


def finish_meltano(pipe: Pipeline, proc: subprocess.Popen, out: Path, timeout: float = 600) -> str:
    """Wait for a :func:`start_meltano` process; its output, also appended to pipe.log."""
    proc.wait(timeout=timeout)
    text = out.read_text()
    with pipe.log.open("a") as log:
        log.write(f"\n$ meltano ... ({out.name}, exit {proc.returncode})\n{text}")
    return text


def wait_for(predicate, what: str, timeout: float = 180.0):
    """Poll ``predicate`` until it returns something truthy (a synchronisation point, not a
    timing assertion: ``timeout`` only stops a hung test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def backends_waiting(conn: psycopg.Connection, database: str, wait_event: str) -> list[int]:
    """Pids of the other sessions on ``database`` that wait on a lock of this type
    (pg_stat_activity.wait_event_type 'Lock': wait_event 'advisory', 'relation', ...)."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock' AND wait_event = %s",
            (database, wait_event),
        )
    ]
