"""Airflow orchestration (orchestrate/): the DAGs as Airflow parses them, and real runs.

DAG integrity: the DAG folder imports clean in the Airflow venv (installed by the test run:
`orchestrate/airflow-venv`, what `make airflow-venv` runs); one extract per manifest table
(the tap's own manifest parser says which), each with its own state ID; the deletes pass
after its tables; dbt after every extract, then the trust checks, then the pump; the
KubernetesPodOperator variant renders the image, command, env and resources.

Real runs, in a Meltano sandbox on the test cluster, with a 4-table manifest and the job
`el-main` (3 incremental tables, 1 load_by_id; the deletes pass, whose order the
integrity test checks, switched off to keep the run short):
  1. today's way, `meltano run el-main` (one combined state ID);
  2. `orchestrate.split_state` splits that state into per-table state IDs;
  3. the source is touched and `pgp` runs through Airflow (execution API on loopback,
     `dags test --use-executor`): the tables extract in parallel, incrementally (the split
     re-copied nothing: exactly the touched rows move, table versions unchanged);
     One table's first try is killed mid-load (SIGKILL of its `meltano el`, tap and
     target while the target waits on a lock the test holds on its RAW table); Airflow
     retries it and RAW loses nothing;
  4. `pgp_resync` with stream=gitlab_db_users: that table alone is copied afresh.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import psutil
import psycopg
import pytest
import yaml
from pgp_testkit.s3pump import Bucket, new_bucket
from psycopg import sql

from orchestrate.local import (
    AIRFLOW_VENV,
    LocalAirflow,
    demo_source,
    ensure_airflow_venv,
    meltano_sandbox,
    stored_state_ids,
)
from orchestrate.plan import Plan
from orchestrate.project import ROOT, Project, ProjectError, manifest_streams
from orchestrate.settings import Settings

MAIN, SCD, DELETES = (
    "tap-gitlab-postgres--main",
    "tap-gitlab-postgres--main-scd",
    "tap-gitlab-postgres--main-deletes",
)
# manifest key -> source table of the real run's manifest: unfiltered tables, so RAW
# holds exactly the source's rows.
RUN_TABLES = {
    "merge_requests": "merge_requests",
    "users": "users",
    "projects": "projects",
    "merge_request_diff_commits": "merge_request_diff_commits",  # load_by_id
}
RESYNCED = "gitlab_db_users"
KILLED = "gitlab_db_merge_requests"  # its first try in the DAG run is killed mid-load


# The tap's execution_date and the pump's interval end: the run's data interval end, or its
# run_after for a run triggered without a logical date.
INTERVAL_END = "{{ (data_interval_end | default(dag_run.run_after, true)).isoformat() }}"


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    ensure_airflow_venv()
    return AIRFLOW_VENV


def describe(tmp: Path, **settings: str) -> dict:
    """orchestrate.describe in the Airflow venv with PGP_* ``settings``."""
    out = tmp / f"dags-{uuid.uuid4().hex[:6]}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGP_", "AIRFLOW"))}
    env.update(AIRFLOW_HOME=str(tmp / "airflow-home"), **settings)
    proc = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-m", "orchestrate.describe", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def tap_streams(extractor: str, environment: str) -> list[str]:
    """The streams the tap itself makes of the extractor's manifest."""
    from tap_gitlab_postgres.manifest import load_manifest

    project = Project.load()
    path = project.setting(extractor, "manifest_path", environment)
    return [t.stream_name for t in load_manifest(path, "main").tables]


def ancestors(tasks: dict, task_id: str) -> set[str]:
    seen: set[str] = set()
    todo = list(tasks[task_id]["upstream"])
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo += tasks[t]["upstream"]
    return seen


def on_retry(state_id: str) -> str:
    """A local task's retry first fails its state ID's Meltano runs that stopped beating."""
    stale_runs = f"{ROOT}/.venv/bin/python -m orchestrate.stale_runs {state_id}"
    return f"{{% if ti.try_number > 1 %}}{stale_runs}{{% else %}}true{{% endif %}}"


def catalog_of(extractor: str, root: str = f"file://{ROOT}/.meltano/run/pgp-catalogs") -> str:
    return f"{root}/{{{{ run_id }}}}/{extractor}.json"


CATALOG_FILE = """catalog="$(mktemp)" && trap 'rm -f "$catalog"' EXIT"""


def state_id_of(task: dict) -> str:
    args = task["command"].split() if "command" in task else task["arguments"]
    return args[args.index("--state-id") + 1]


# --------------------------------------------------------------------------- DAG integrity


# slow: they parse the DAG folder in the Airflow venv (its first install alone takes ~40 s).
@pytest.mark.slow
def test_dag_folder_local(airflow_venv: Path, tmp_path: Path) -> None:
    out = describe(tmp_path)
    assert out["import_errors"] == {}
    assert set(out["dags"]) == {"pgp", "pgp_resync"}
    dag = out["dags"]["pgp"]
    assert (dag["max_active_runs"], dag["catchup"], dag["schedule"]) == (1, False, None)
    tasks = dag["tasks"]

    extracts = {f"{x}.{s}": (x, s) for x in (MAIN, SCD) for s in tap_streams(x, "dev")}
    assert len(extracts) == 20
    el_tasks = {t for t, d in tasks.items() if " el " in d.get("command", "")}
    assert el_tasks == {*extracts, DELETES}
    for task_id, (extractor, stream) in extracts.items():
        task = tasks[task_id]
        assert (
            task["command"]
            == (
                f"{CATALOG_FILE} && {ROOT}/.venv/bin/python -m orchestrate.catalogs get "
                f"'{catalog_of(extractor)}' \"$catalog\" && "  # the run's catalog
                + on_retry(f"dev:pgp-main:{stream}")  # a killed try's job is failed first
                + f" && {ROOT}/.venv/bin/meltano el --no-install {extractor} target-postgres "
                f"--state-id dev:pgp-main:{stream} --select {stream} --select pgp_row_counts "
                '--catalog "$catalog"'
            )
        )
        assert f"{extractor}.catalog" in task["upstream"]
        assert (task["pool"], task["retries"], task["cwd"]) == ("pgp-main", 2, str(ROOT))
        assert task["env"]["MELTANO_ENVIRONMENT"] == "dev"
        assert task["env"][f"{extractor.upper().replace('-', '_')}_EXECUTION_DATE"] == INTERVAL_END
    # One discovery per extractor and run, its catalog read by every table task.
    for extractor in (MAIN, SCD):
        assert tasks[f"{extractor}.catalog"]["command"] == (
            f"{CATALOG_FILE} && "
            f"{ROOT}/.venv/bin/meltano invoke --no-install --dump=catalog {extractor} "
            f'> "$catalog" && {ROOT}/.venv/bin/python -m orchestrate.catalogs put "$catalog" '
            f"'{catalog_of(extractor)}'"
        )
    assert "--catalog" not in tasks[DELETES]["command"]  # one task: its own discovery
    state_ids = [state_id_of(tasks[t]) for t in el_tasks]
    assert len(set(state_ids)) == len(state_ids) == 21
    assert "dev:pgp-main:deletes" in state_ids
    # Local tasks share .meltano/run: each writes its batch files to a folder of its own.
    roots = {
        json.loads(next(v for k, v in tasks[t]["env"].items() if k.endswith("_BATCH_CONFIG")))[
            "storage"
        ]["root"]
        for t in el_tasks
    }
    assert len(roots) == 21

    # The deletes pass after every table of its extractor; dbt after everything.
    main_tasks = {x for x in extracts if x.startswith(f"{MAIN}.")}
    assert ancestors(tasks, DELETES) == {*main_tasks, f"{MAIN}.catalog"}
    assert ancestors(tasks, "transform") == {*el_tasks, f"{MAIN}.catalog", f"{SCD}.catalog"}
    meltano = f"{ROOT}/.venv/bin/meltano"
    assert tasks["transform"]["command"] == (
        f"{meltano} run --no-install dbt-postgres:seed dbt-postgres:run"
    )
    assert tasks["trust"]["upstream"] == ["transform"]
    assert tasks["trust"]["command"] == f"{meltano} run --no-install dbt-postgres:trust"
    assert (tasks["transform"]["pool"], tasks["trust"]["pool"]) == ("pgp-dbt", "pgp-dbt")
    assert tasks["pump"]["upstream"] == ["trust"]
    assert tasks["pump"]["command"] == (
        on_retry("dev:tap-pumps-to-target-s3-pump")
        + f" && {meltano} run --no-install tap-pumps target-s3-pump"
    )
    assert tasks["pump"]["env"]["PUMP_INTERVAL_END"] == INTERVAL_END

    resync = out["dags"]["pgp_resync"]
    assert resync["schedule"] is None and resync["max_active_runs"] == 1
    assert resync["params"]["stream"] == "all"
    resync_el = {t for t, d in resync["tasks"].items() if " el " in d.get("command", "")}
    assert resync_el == set(extracts)
    for task_id in resync_el:
        task = resync["tasks"][task_id]
        assert "--full-refresh" in task["command"].split()
        assert task["upstream"] == ["choose"]
        assert state_id_of(task) == state_id_of(tasks[task_id])  # the same state IDs
        # Triggered without a logical date (no data interval): the run's run_after.
        extractor = task_id.split(".")[0]
        assert task["env_manual_run"][f"{extractor.upper().replace('-', '_')}_EXECUTION_DATE"] == (
            "2026-12-06T05:00:00+00:00"
        )
    assert ancestors(resync["tasks"], "trust") == {*resync_el, "choose", "transform"}


@pytest.mark.slow
def test_local_batch_folders_follow_the_extractors_batch_config(
    airflow_venv: Path, tmp_path: Path
) -> None:
    variable = "TAP_GITLAB_POSTGRES__MAIN_BATCH_CONFIG"
    broken = describe(tmp_path, **{variable: "{encoding"})["import_errors"]
    assert [e.splitlines()[-1] for e in broken.values()] == [
        f"orchestrate.project.ProjectError: {variable}: not JSON: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    ]
    batches = {"encoding": {"format": "jsonl", "compression": "gzip"}, "batch_size": 5}
    for config, expected in (("{}", None), (json.dumps(batches), batches)):
        tasks = describe(tmp_path, **{variable: config})["dags"]["pgp"]["tasks"]
        for stream in tap_streams(MAIN, "dev"):
            env = tasks[f"{MAIN}.{stream}"]["env"]
            if expected is None:  # no batches: no batch folder either
                assert variable not in env
            else:
                got = json.loads(env[variable])
                root = got["storage"].pop("root")
                assert got == {**expected, "storage": {}}
                assert root.endswith(f"/.meltano/run/pgp-batches/dev-pgp-main-{stream}")


@pytest.mark.slow
def test_dag_folder_kubernetes(airflow_venv: Path, tmp_path: Path) -> None:
    out = describe(
        tmp_path,
        PGP_EXECUTOR="kubernetes",
        PGP_IMAGE="registry.example.com/data/pgp:2026.12.1",
        PGP_RESOURCES_EXTRACT="cpu=2,memory=3Gi",
    )
    assert out["import_errors"] == {}
    dag = out["dags"]["pgp"]
    assert dag["schedule"] == "30 2,14 * * *"  # meltano.yml's schedule of pipeline-prod
    tasks = dag["tasks"]
    assert not [t for t in tasks if t.endswith(".catalog")]  # no PGP_CATALOG_URI: each discovers
    streams = tap_streams(MAIN, "prod")
    for stream in streams:
        task = tasks[f"{MAIN}.{stream}"]
        assert task["operator"] == "KubernetesPodOperator"
        assert task["image"] == "registry.example.com/data/pgp:2026.12.1"
        assert task["cmds"] == ["meltano"]
        assert task["arguments"] == [
            "el", "--no-install", MAIN, "target-snowflake", "--state-id", f"prod:pgp-main:{stream}",
            "--select", stream, "--select", "pgp_row_counts",
        ]  # fmt: skip
        assert task["env"] == {
            "MELTANO_ENVIRONMENT": "prod",
            "TAP_GITLAB_POSTGRES__MAIN_EXECUTION_DATE": INTERVAL_END,
        }  # pods have their own filesystem: no batch folder per task
        assert task["env_from"] == ["pgp-meltano"]  # state backend, systemdb, secrets
        assert task["service_account"] == "pgp-meltano"
        assert (task["requests"], task["limits"]) == (
            {"cpu": "2", "memory": "3Gi"},
            {"memory": "3Gi"},
        )
        assert (task["namespace"], task["pool"]) == ("pgp", "pgp-main")
    assert tasks["transform"]["arguments"] == [
        "run", "--no-install", "dbt-snowflake:seed", "dbt-snowflake:run"
    ]  # fmt: skip
    assert tasks["transform"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert tasks["pump"]["cmds"] == ["meltano"]
    assert tasks["pump"]["arguments"] == [
        "run", "--no-install", "tap-pumps-snowflake", "target-s3-pump"
    ]  # fmt: skip
    assert tasks["pump"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert tasks["pump"]["env"]["PUMP_INTERVAL_END"] == INTERVAL_END


def test_shared_systemdb_on_postgres_as_the_pods_use_it(fresh_db: str, tmp_path: Path) -> None:
    """The pods' MELTANO_DATABASE_URI form (README, production): Meltano creates its tables in
    a Postgres database and keeps runs and state there."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_"))}
    env.update(
        MELTANO_DATABASE_URI=fresh_db.replace("postgresql://", "postgresql+psycopg://", 1),
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    meltano = [str(ROOT / ".venv" / "bin" / "meltano"), "--env-file", str(env_file), "state"]
    state = {"singer_state": {"bookmarks": {"gitlab_db_issues": {"replication_key_value": "x"}}}}
    state_id = "prod:pgp-main:gitlab_db_issues"
    for args in (["set", "--force", state_id, json.dumps(state)], ["get", state_id]):
        done = subprocess.run(
            [*meltano, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == state
    with psycopg.connect(fresh_db) as conn:
        stored = conn.execute("SELECT completed_state FROM state WHERE state_id = %s", (state_id,))
        assert json.loads(stored.fetchone()[0]) == state


@pytest.mark.slow
def test_kubernetes_tasks_share_the_runs_catalog_through_s3(
    airflow_venv: Path, tmp_path: Path
) -> None:
    out = describe(
        tmp_path,
        PGP_EXECUTOR="kubernetes",
        PGP_IMAGE="registry.example.com/data/pgp:2026.12.1",
        PGP_CATALOG_URI="s3://pgp-state/pgp-catalogs/",
    )
    tasks = out["dags"]["pgp"]["tasks"]
    uri = catalog_of(MAIN, "s3://pgp-state/pgp-catalogs")
    assert (tasks[f"{MAIN}.catalog"]["cmds"], tasks[f"{MAIN}.catalog"]["arguments"]) == (
        ["sh", "-c"],
        [
            f"{CATALOG_FILE} && meltano invoke --no-install --dump=catalog {MAIN} "
            f'> "$catalog" && python -m orchestrate.catalogs put "$catalog" \'{uri}\''
        ],
    )
    for stream in tap_streams(MAIN, "prod"):
        task = tasks[f"{MAIN}.{stream}"]
        assert task["upstream"] == [f"{MAIN}.catalog"]
        assert (task["cmds"], task["arguments"]) == (
            ["sh", "-c"],
            [
                f"{CATALOG_FILE} && python -m orchestrate.catalogs get '{uri}' \"$catalog\" && "
                f"meltano el --no-install {MAIN} target-snowflake --state-id "
                f"prod:pgp-main:{stream} --select {stream} --select pgp_row_counts "
                '--catalog "$catalog"'
            ],
        )


def test_catalogs_in_files_keep_a_week_of_runs(tmp_path: Path) -> None:
    from orchestrate import catalogs

    root = tmp_path / "pgp-catalogs"
    old, recent = root / "old-run", root / "recent-run"
    for folder in (old, recent):
        folder.mkdir(parents=True)
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))
    catalog = tmp_path / "catalog.json"
    catalog.write_text('{"streams": [{"tap_stream_id": "gitlab_db_issues"}]}')
    uri = f"file://{root}/run-1/{MAIN}.json"
    assert catalogs.main(["put", str(catalog), uri]) == 0
    assert (root / "run-1" / f"{MAIN}.json").read_text() == catalog.read_text()
    assert not old.exists() and recent.exists()  # other runs' folders older than 7 days go
    copy = tmp_path / "copy.json"
    assert catalogs.main(["get", uri, str(copy)]) == 0
    assert copy.read_text() == catalog.read_text()


def test_catalogs_on_s3(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from orchestrate import catalogs

    for name, value in bucket.server.env().items():
        monkeypatch.setenv(name, value)
    catalog = tmp_path / "catalog.json"
    catalog.write_text('{"streams": []}')
    key = f"pgp-catalogs/run-1/{MAIN}.json"
    assert catalogs.main(["put", str(catalog), f"s3://{bucket.name}/{key}"]) == 0
    assert bucket.read(key) == catalog.read_bytes()
    copy = tmp_path / "copy.json"
    assert catalogs.main(["get", f"s3://{bucket.name}/{key}", str(copy)]) == 0
    assert copy.read_bytes() == catalog.read_bytes()
    # Errors: one line naming the URI.
    capsys.readouterr()
    assert catalogs.main(["get", f"s3://{bucket.name}/pgp-catalogs/none.json", str(copy)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"catalogs: error: cannot read s3://{bucket.name}/pgp-catalogs/none.json:"
    )
    assert err.count("\n") == 1
    assert catalogs.main(["get", "gs://b/c.json", str(copy)]) == 1
    assert (
        capsys.readouterr().err
        == "catalogs: error: gs://b/c.json: expected a file:// or s3:// URI\n"
    )


def test_stopping_the_harness_stops_task_commands_in_their_own_sessions(tmp_path: Path) -> None:
    """As `airflow dags test` > worker > bash in a session of its own (Airflow's
    SubprocessHook) > meltano: a stop on timeout reaches the command too."""
    from orchestrate.local import _stop

    pid_file = tmp_path / "pid"
    task = (
        "import subprocess, sys; "
        "p = subprocess.Popen(['sleep', '300'], start_new_session=True); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); p.wait()"
    )
    runner = subprocess.Popen([sys.executable, "-c", task], start_new_session=True)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    command = psutil.Process(int(pid_file.read_text()))
    assert command.is_running()
    _stop(runner)
    assert runner.poll() is not None
    _, alive = psutil.wait_procs([command], timeout=10)
    assert not alive or command.status() == psutil.STATUS_ZOMBIE  # dead, maybe not reaped yet


def test_bad_settings_are_one_line_naming_the_variable() -> None:
    with pytest.raises(ProjectError, match=r"^PGP_IMAGE: required with PGP_EXECUTOR=kubernetes$"):
        Settings.from_env({"PGP_EXECUTOR": "kubernetes"})
    with pytest.raises(ProjectError) as exc:
        Settings.from_env(
            {"PGP_EXECUTOR": "kubernetes", "PGP_IMAGE": "x", "PGP_RESOURCES_PUMP": "2"}
        )
    assert str(exc.value) == "PGP_RESOURCES_PUMP: expected cpu=<n>,memory=<n>, got '2'"
    with pytest.raises(
        ProjectError, match=r"^PGP_RETRIES: expected a whole number >= 0, got '-1'$"
    ):
        Settings.from_env({"PGP_RETRIES": "-1"})
    with pytest.raises(ProjectError) as exc:
        Settings.from_env({"PGP_CATALOG_URI": "gs://bucket/catalogs"})
    assert str(exc.value) == (
        "PGP_CATALOG_URI: expected file:///... or s3://..., got 'gs://bucket/catalogs'"
    )


def test_project_follows_include_paths(tmp_path: Path) -> None:
    """Plugins and jobs may live in included files; the plan is the same."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    moved = project["plugins"].pop("extractors")
    project["include_paths"] = [*project.get("include_paths", []), "./extra/*.yml"]
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "extractors.yml").write_text(
        yaml.safe_dump({"plugins": {"extractors": moved}, "jobs": project.pop("jobs")})
    )
    (tmp_path / "meltano.yml").write_text(yaml.safe_dump(project))
    for path in project["include_paths"]:
        if "*" not in path and (ROOT / path).exists():
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text((ROOT / path).read_text())
    (tmp_path / "manifests").symlink_to(ROOT / "manifests")
    for env in ("dev", "prod"):
        here = Plan.build(Project.load(tmp_path), env)
        there = Plan.build(Project.load(ROOT), env)
        assert [x.state_id for x in here.extracts] == [x.state_id for x in there.extracts]
        assert (here.transform, here.trust, here.pump) == (there.transform, there.trust, there.pump)


def test_manifest_streams_are_the_taps(tmp_path: Path) -> None:
    """The DAG has a task for exactly the tables the tap keeps, whatever database_type says."""
    from tap_gitlab_postgres.manifest import load_manifest

    tables = {
        "untyped": None, "nulled": "", "empty": "''", "padded": "' main '",
        "ci": "ci", "main": "main",
    }  # fmt: skip
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "tables:\n"
        + "".join(
            f"  {name}:\n    import_db: GITLAB_DB\n    export_table: {name}\n"
            f"    import_query: SELECT id FROM {name}\n    export_schema: gitlab\n"
            "    export_table_primary_key: id\n"
            + (f"    database_type: {value}\n" if value is not None else "")
            for name, value in tables.items()
        )
    )
    for database_type in ("main", "ci", None):
        tap = [t.stream_name for t in load_manifest(manifest, database_type).tables]
        assert manifest_streams(manifest, database_type) == tap
    assert manifest_streams(manifest, "ci") == [
        "gitlab_db_untyped", "gitlab_db_nulled", "gitlab_db_empty", "gitlab_db_ci"
    ]  # fmt: skip


def test_bad_manifest_is_one_line_naming_file_and_table(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("tables:\n  issues:\n    import_db: GITLAB_DB\n    export_table: 'a b'\n")
    with pytest.raises(ProjectError) as exc:
        manifest_streams(manifest, "main")
    assert str(exc.value) == (
        f"{manifest}: table 'issues': import_db and export_table must be identifiers"
    )
    manifest.write_text("tables: [\n")
    with pytest.raises(ProjectError, match=rf"^{manifest}: invalid YAML: "):
        manifest_streams(manifest, "main")
    manifest.write_text("tables:\n  issues:\n    database_type: [main]\n")
    with pytest.raises(ProjectError) as exc:
        manifest_streams(manifest, "main")
    assert str(exc.value) == f"{manifest}: table 'issues': database_type must be a string"


# --------------------------------------------------------------------------- real runs


@contextmanager
def kill_first_load(
    warehouse: str, stream: str, state_id: str, systemdb: str
) -> Iterator[list[str]]:
    """Hold an exclusive lock on ``stream``'s RAW table; once a loader waits on it (the
    task's target has rows to write), SIGKILL that task's `meltano el` (the one on this
    sandbox's ``systemdb``: other test runs may share the machine) with its tap and target,
    then release the lock. Yields the command lines killed."""
    killed: list[str] = []
    locked, done = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def watch() -> None:
        try:
            with (
                psycopg.connect(warehouse) as lock,
                psycopg.connect(warehouse, autocommit=True) as probe,
            ):
                table = sql.Identifier("tap_postgres", stream)
                lock.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
                locked.set()
                waiting = (
                    "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted"
                )
                give_up = time.monotonic() + 300  # a run that never loads: release, fail
                while not done.is_set() and time.monotonic() < give_up:
                    if probe.execute(waiting, (f"tap_postgres.{stream}",)).fetchone()[0]:
                        killed.extend(_kill_el(state_id, systemdb))
                        return  # the lock goes with the transaction: the retry loads
                    time.sleep(0.5)
        except Exception as exc:  # re-raised in the test's thread
            errors.append(exc)
            locked.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    locked.wait(60)
    try:
        yield killed
    finally:
        done.set()
        watcher.join(60)
    if errors:
        raise errors[0]


def _kill_el(state_id: str, systemdb: str) -> list[str]:
    """SIGKILL the `meltano el` running ``state_id`` on ``systemdb`` and its children."""
    els = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if state_id in argv and "el" in argv:
            with suppress(psutil.Error):
                if proc.environ().get("MELTANO_DATABASE_URI") == systemdb:
                    els.append(proc)
    victims = [*els, *(c for p in els for c in p.children(recursive=True))]
    names = []
    for proc in victims:
        with suppress(psutil.NoSuchProcess):
            names.append(" ".join(proc.cmdline()[:2]))
            proc.kill()
    return names


def latest_raw_rows(dsn: str, stream: str) -> set[tuple[int, datetime]]:
    """(id, updated_at) of RAW after dbt's dedup (pgp_incremental_latest)."""
    query = sql.SQL(
        "SELECT DISTINCT ON (id) id, updated_at FROM tap_postgres.{} "
        "WHERE _sdc_deleted_at IS NULL "
        "ORDER BY id, _uploaded_at DESC, updated_at DESC NULLS LAST"
    ).format(sql.Identifier(stream))
    with psycopg.connect(dsn) as conn:
        return {(i, _utc(u)) for i, u in conn.execute(query)}


def source_rows(dsn: str, table: str) -> set[tuple[int, datetime]]:
    query = sql.SQL("SELECT id, updated_at FROM {}").format(sql.Identifier(table))
    with psycopg.connect(dsn) as conn:
        return {(i, _utc(u)) for i, u in conn.execute(query)}


def _utc(value: datetime | str) -> datetime:
    """A naive UTC datetime (the source's ``timestamp`` columns hold UTC wall clock)."""
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def raw_counts(dsn: str, streams: list[str], since: float | None = None) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            s: conn.execute(
                sql.SQL("SELECT count(*) FROM tap_postgres.{} WHERE _uploaded_at >= %s").format(
                    sql.Identifier(s)
                ),
                (since or 0,),
            ).fetchone()[0]
            for s in streams
        }


def meltano_runs(task_env: dict[str, str], state_id: str) -> list[tuple[str, str | None]]:
    """(state, error) of the state ID's Meltano runs, oldest first, from the sandbox's
    system database."""
    db = task_env["MELTANO_DATABASE_URI"].removeprefix("sqlite:///")
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT state, payload FROM runs WHERE job_name = ? ORDER BY started_at", (state_id,)
        ).fetchall()
    return [(state, json.loads(payload or "{}").get("error")) for state, payload in rows]


def source_counts(dsn: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
            ).fetchone()[0]
            for t in tables
        }


@pytest.fixture(scope="module")
def runs(airflow_venv: Path, pg, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    home = tmp_path_factory.mktemp("orchestrate")
    suffix = uuid.uuid4().hex[:8]
    source_db, warehouse_db = f"orch_src_{suffix}", f"orch_wh_{suffix}"
    source = pg.create_database(source_db)
    warehouse = pg.create_database(warehouse_db)
    demo_source().create(source, rows=5000)

    manifest = yaml.safe_load((ROOT / "manifests" / "gitlab_demo_db_manifest.yaml").read_text())
    manifest["tables"] = {k: v for k, v in manifest["tables"].items() if k in RUN_TABLES}
    path = home / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    streams = manifest_streams(path, "main")
    env = meltano_sandbox(home, pg, source_db, warehouse_db)
    bucket = new_bucket()  # the tasks share the run's catalog through S3, as pods do
    env.update(
        bucket.server.env(),
        PGP_CATALOG_URI=f"s3://{bucket.name}/pgp-catalogs",
        PGP_PIPELINE_JOB="el-main",
        PGP_RETRIES="1",  # the killed table's retry
        # The killed try's Meltano job stops beating; the retry fails it after 30 s.
        PGP_RETRY_DELAY_SECONDS="32",
        TAP_GITLAB_POSTGRES__MAIN_MANIFEST_PATH=str(path),
        TAP_GITLAB_POSTGRES__MAIN_DELETES_DELETES_PASS="false",
    )
    os_env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_"))}
    run_env = {**os_env, **env}

    airflow = LocalAirflow(home / "airflow", env, parallelism=4)
    pool = ThreadPoolExecutor(1)
    setup = pool.submit(airflow.setup, {"pgp-main": 4})  # while Meltano runs

    # 1. Today's way: one `meltano run`, one state ID for the extractor.
    meltano = [str(ROOT / ".venv" / "bin" / "meltano"), "--env-file", env["PGP_MELTANO_ENV_FILE"]]
    done = subprocess.run(
        [*meltano, "--environment=dev", "run", "el-main"],
        cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    combined = stored_state_ids(env)

    # 2. The split; again as if it had failed before its first table: it finishes the job.
    def split_state() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrate.split_state", "--environment=dev", "--job=el-main"],
            cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    split = split_state()
    assert split.returncode == 0, split.stderr
    after_split = stored_state_ids(env)
    cleared = subprocess.run(
        [*meltano, "state", "clear", "--force", f"dev:pgp-main:{streams[0]}"],
        cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr[-3000:]
    resumed = split_state()
    after_resume = stored_state_ids(env)

    # 3. The DAG, after a touch of the source; 4. the resync of one table.
    first_copy = raw_counts(warehouse, streams)
    first_source = source_counts(source, list(RUN_TABLES.values()))
    touched = demo_source().touch(source)
    setup.result()
    pool.shutdown()
    with airflow.execution_api():
        started = time.time()
        state_id, systemdb = f"dev:pgp-main:{KILLED}", env["MELTANO_DATABASE_URI"]
        with kill_first_load(warehouse, KILLED, state_id, systemdb) as killed:
            pgp_at = datetime.now(UTC)
            dag_run = airflow.dags_test("pgp", pgp_at)
        after_dag = raw_counts(warehouse, streams)
        moved = raw_counts(warehouse, streams, since=started)
        states = stored_state_ids(env)
        refused = split_state()  # the DAG has run: its per-table state is newer
        after_refusal = stored_state_ids(env)
        catalog = bucket.json(f"pgp-catalogs/{dag_run.run_id}/{MAIN}.json")
        catalog_streams = {s["tap_stream_id"] for s in catalog["streams"]}
        resync = airflow.dags_test(
            "pgp_resync", datetime.now(UTC), conf=json.dumps({"stream": RESYNCED})
        )
    return SimpleNamespace(
        source=source, warehouse=warehouse, streams=streams, combined=combined,
        after_split=after_split, split=split, resumed=resumed, after_resume=after_resume,
        refused=refused, after_refusal=after_refusal, touched=touched,
        first_copy=first_copy, first_source=first_source, dag_run=dag_run,
        after_dag=after_dag, moved=moved, killed=killed, pgp_at=pgp_at,
        killed_raw=latest_raw_rows(warehouse, KILLED),
        killed_runs=meltano_runs(env, f"dev:pgp-main:{KILLED}"),
        killed_source=source_rows(source, RUN_TABLES[KILLED.removeprefix("gitlab_db_")]),
        states=states, resync=resync, catalog_streams=catalog_streams,
        resync_states=stored_state_ids(env),
    )  # fmt: skip


@pytest.mark.e2e
def test_split_state_gives_each_table_its_bookmark(runs: SimpleNamespace) -> None:
    bookmarks = runs.combined["dev:tap-gitlab-postgres--main-to-target-postgres"]["singer_state"][
        "bookmarks"
    ]
    combined = "dev:tap-gitlab-postgres--main-to-target-postgres"
    for stream in runs.streams:
        assert runs.after_split[f"dev:pgp-main:{stream}"] == {
            "singer_state": {"bookmarks": {stream: bookmarks[stream]}}
        }
        assert f"dev:pgp-main:{stream} <- {combined}" in runs.split.stdout
    # Run again after a split that stopped before its first table: that table is written,
    # the others are left as they are.
    assert runs.resumed.returncode == 0, runs.resumed.stderr
    first, *others = runs.streams
    assert f"dev:pgp-main:{first} <- {combined}" in runs.resumed.stdout
    for stream in others:
        assert f"dev:pgp-main:{stream}: already split from {combined}" in runs.resumed.stdout
    assert runs.after_resume == runs.after_split
    # Once the DAG has run, the per-table state is newer: a split refuses, changing nothing.
    assert runs.refused.returncode == 1
    assert runs.refused.stderr.startswith("split_state: error: per-table state already exists (")
    assert runs.after_refusal == runs.states


@pytest.mark.e2e
def test_dag_runs_tables_in_parallel_incrementally(runs: SimpleNamespace) -> None:
    run = runs.dag_run
    assert run.state == "success", (run.failed(), run.log)
    tables = [run.tasks[f"{MAIN}.{s}"] for s in runs.streams if s != KILLED]
    assert all(t.state == "success" and t.try_number == 1 for t in tables)
    # Parallel: every table started before any of them ended.
    assert max(t.started for t in tables) < min(t.ended for t in tables)
    # One discovery, then the tables; no deletes pass.
    assert set(run.tasks) == {f"{MAIN}.catalog", *(f"{MAIN}.{s}" for s in runs.streams)}
    # The run's one discovery, shared through S3 as pods share it.
    assert runs.catalog_streams == {*runs.streams, "pgp_row_counts"}

    assert sorted(runs.streams) == sorted(f"gitlab_db_{key}" for key in RUN_TABLES)
    for key, table in RUN_TABLES.items():
        stream = f"gitlab_db_{key}"
        assert runs.first_copy[stream] == runs.first_source[table], stream
        # Incremental from the split state: exactly the touched rows, no second copy.
        assert runs.touched[table] > 0
        if stream != KILLED:
            assert runs.moved[stream] == runs.touched[table], stream
            assert runs.after_dag[stream] == runs.first_copy[stream] + runs.touched[table]
        old = runs.after_split[f"dev:pgp-main:{stream}"]["singer_state"]["bookmarks"][stream]
        new = runs.states[f"dev:pgp-main:{stream}"]["singer_state"]["bookmarks"]
        assert new[stream]["table_version"] == old["table_version"]
        # Each state ID holds its own table's bookmark (and the row-count stream's).
        assert set(new) == {stream, "pgp_row_counts"}
    assert {s for s in runs.states if s.startswith("dev:pgp-")} == {
        f"dev:pgp-main:{s}" for s in runs.streams
    }


@pytest.mark.e2e
def test_killed_task_retried_loses_nothing(runs: SimpleNamespace) -> None:
    # The kill hit the task's `meltano el` and its target mid-load (the tap of a small
    # increment may have finished by then).
    assert any(c.endswith("bin/meltano") for c in runs.killed), runs.killed
    assert any(c.endswith("bin/target-postgres") for c in runs.killed), runs.killed
    task = runs.dag_run.tasks[f"{MAIN}.{KILLED}"]
    assert (task.state, task.try_number) == ("success", 2)
    # The retry first failed the killed try's Meltano run (its heartbeat had stopped), so it
    # ran without --force: Meltano's guard against two live runs of the table stayed on.
    assert runs.killed_runs[-2:] == [
        ("FAIL", "No heartbeat for 30 s before a retry of the task."),
        ("SUCCESS", None),
    ]
    # RAW, deduplicated as dbt does, holds every source row at its latest version, and
    # the table's bookmark is the end of the run's window (its data interval end), past
    # the source's newest change.
    assert runs.killed_raw == runs.killed_source
    bookmark = runs.states[f"dev:pgp-main:{KILLED}"]["singer_state"]["bookmarks"][KILLED]
    assert _utc(bookmark["replication_key_value"]) == _utc(runs.pgp_at)
    assert _utc(runs.pgp_at) > max(updated for _, updated in runs.killed_source)


@pytest.mark.e2e
def test_resync_dag_copies_one_table_afresh(runs: SimpleNamespace) -> None:
    run = runs.resync
    assert run.state == "success", (run.failed(), run.log)
    assert run.tasks[f"{MAIN}.{RESYNCED}"].state == "success"
    others = [s for s in runs.streams if s != RESYNCED]
    assert all(run.tasks[f"{MAIN}.{s}"].state == "skipped" for s in others)
    # A full copy replaces the old rows (ACTIVATE_VERSION): RAW holds the source, exactly,
    # which after the touch's updates is fewer rows than the appended history had.
    users = source_counts(runs.source, ["users"])["users"]
    assert runs.after_dag[RESYNCED] > users
    assert raw_counts(runs.warehouse, [RESYNCED]) == {RESYNCED: users}
    assert raw_counts(runs.warehouse, others) == {s: runs.after_dag[s] for s in others}
    old = runs.states[f"dev:pgp-main:{RESYNCED}"]["singer_state"]["bookmarks"][RESYNCED]
    new = runs.resync_states[f"dev:pgp-main:{RESYNCED}"]["singer_state"]["bookmarks"][RESYNCED]
    assert new["table_version"] > old["table_version"]
    for stream in others:
        assert runs.resync_states[f"dev:pgp-main:{stream}"] == runs.states[f"dev:pgp-main:{stream}"]
