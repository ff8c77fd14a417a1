"""Faults, with real processes and servers: what a failing run leaves behind, and that the
next run loses nothing.

The Meltano scenario (module fixture ``faults``; the tests run in file order and share it):
a small source with two incremental tables (``issues``, and ``notes`` whose query takes a
shared advisory lock, so the test can hold the tap on it mid-run), its own manifest, and
a source role with a distinctive password, through this repository's meltano.yml:

  run 1  held on ``notes`` by the test; a second ``meltano run`` of the same state ID
         meanwhile is refused and touches no state; run 1 then completes.
  run 2  after a touch of the source, the warehouse drops target-postgres' connection
         mid-run (the test locks the RAW table, then pg_terminate_backend()s the target's
         session waiting on it): the run fails, Meltano keeps the last confirmed state.
  run 3  the rerun (at --log-level=debug): every source row is in RAW, repeats only
         within the failed run's rows and the lookback overlap.
  run 4  a wrong password (--log-level=debug): fails, names the problem.
Then no secret in any output or in Meltano's logs directory.

Tap-only (no Meltano, so fast): SIGKILL during an incremental run, before the first
checkpoint, right after one and in the middle of a window, then a rerun from the last STATE
received: no row lost; and the tap's own output at debug/info/warning on success, wrong
password and a database that is down: no secret.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from pgp_testkit.dsn import connection_config
from pgp_testkit.pipeline import (
    LOOKBACK,
    MAIN,
    MELTANO,
    TARGET,
    Pipeline,
    backends_waiting,
    finish_meltano,
    manifest_env_name,
    manifest_streams,
    meltano_env_name,
    parse_ts,
    start_meltano,
    wait_for,
)

pytestmark = pytest.mark.e2e

TAP = str(Path(sys.executable).with_name("tap-gitlab-postgres"))
PLUGIN_DIRS = {"extractors", "loaders", "utilities"}  # symlinks to the installed plugins
ROWS = 1500
GATE = 4242  # advisory lock key in the notes query
ISSUES, NOTES = "gitlab_db_issues", "gitlab_db_notes"
SOURCE_SECRET = "Src-Pw-7f3a9c1e-NEVER-LOGGED"
WRONG_SECRET = "Wrong-Pw-b81d0e44-NEVER-LOGGED"
WINDOW = "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp"
MANIFEST = {
    "tables": {
        name: {
            "import_db": "GITLAB_DB",
            "database_type": "main",
            "export_schema": "gitlab_com",
            "export_table": name,
            "export_table_primary_key": "id",
            "deletes_exempt": True,
            "import_query": query,
        }
        for name, query in {
            "issues": f"SELECT id, title, updated_at FROM issues {WINDOW}",
            # Holds while the test holds advisory lock GATE (the tap's probe, LIMIT 0,
            # never evaluates it; every read of rows does).
            "notes": f"SELECT id, note, updated_at FROM notes {WINDOW}\n"
            f"  AND (SELECT true FROM pg_advisory_xact_lock_shared({GATE}))",
        }.items()
    }
}


def _create_source(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, column in (("issues", "title"), ("notes", "note")):
            conn.execute(
                f"CREATE TABLE {table} (id bigint PRIMARY KEY, {column} text, "
                "updated_at timestamp);"
                f"INSERT INTO {table} SELECT g, '{table} ' || g, "
                "(now() AT TIME ZONE 'UTC') - interval '2 hours' - g * interval '1 minute' "
                f"FROM generate_series(1, {ROWS}) g"
            )
        # The tap reads with its own role, whose password must never show up anywhere.
        conn.execute(f"CREATE ROLE pgp_reader LOGIN PASSWORD '{SOURCE_SECRET}'")
        conn.execute("GRANT SELECT ON issues, notes TO pgp_reader")


def _touch(dsn: str) -> None:
    """Change 100 rows and add 50 to each table (all inside the next run's window)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, column in (("issues", "title"), ("notes", "note")):
            conn.execute(
                f"UPDATE {table} SET {column} = {column} || ' edited', "
                "updated_at = now() AT TIME ZONE 'UTC' WHERE id % 15 = 0"
            )
            conn.execute(
                f"INSERT INTO {table} SELECT g, 'new', now() AT TIME ZONE 'UTC' "
                f"FROM generate_series({ROWS + 1}, {ROWS + 50}) g"
            )


@pytest.fixture(scope="module")
def faults(pg, tmp_path_factory) -> Pipeline:
    if not MELTANO.exists():
        pytest.fail("meltano is not installed in .venv: run scripts/bootstrap (make test does)")
    source, warehouse = (f"faults_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("src", "wh"))
    pg.create_database(source)
    pg.create_database(warehouse)
    _create_source(pg.dsn(source))
    pipe = Pipeline(pg, tmp_path_factory.mktemp("faults"), source, warehouse)
    manifest = pipe.home / "faults_manifest.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST, sort_keys=False))
    pipe.manifests[MAIN] = manifest
    pipe.extra_env[manifest_env_name(MAIN)] = str(manifest)
    pipe.extra_env[meltano_env_name(MAIN, "user")] = "pgp_reader"
    pipe.extra_env[meltano_env_name(MAIN, "password")] = SOURCE_SECRET
    pipe.outputs = []  # every meltano output of the scenario, for the secrets check
    return pipe


def _streams(pipe: Pipeline):
    return {s.name: s for s in manifest_streams(MAIN, pipe.manifests[MAIN])}


def _window(before: dict, after: dict):
    return (
        parse_ts(before["replication_key_value"]) - LOOKBACK,
        parse_ts(after["replication_key_value"]),
    )


def _state_rows(pipe: Pipeline) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(pipe.sys_dir / "meltano.db") as db:
        return db.execute("SELECT * FROM state ORDER BY state_id").fetchall()


# ============================================================ 1. a concurrent second run


def test_concurrent_run_of_the_same_state_id_is_refused(faults):
    pipe = faults
    with pipe.connect(pipe.source_db) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE,))
        first, first_out = start_meltano(pipe, "run", MAIN, TARGET, name="run1")
        try:
            # Run 1 is mid-run: its tap waits on the gate in the notes stream.
            wait_for(
                lambda: (
                    backends_waiting(gate, pipe.source_db, "advisory") or first.poll() is not None
                ),
                "run 1's tap to wait on the notes gate",
            )
            assert first.poll() is None, first_out.read_text()[-3000:]
            state_before = _state_rows(pipe)
            second = pipe.meltano("run", MAIN, TARGET, check=False)
            pipe.outputs.append(second.stdout + second.stderr)
            state_after = _state_rows(pipe)
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
        out1 = finish_meltano(pipe, first, first_out)
    pipe.outputs.append(out1)

    # The second run is refused at once, saying why and how to override ...
    assert second.returncode != 0
    refused = second.stdout + second.stderr
    assert f"Another '{pipe.state_id(MAIN)}' pipeline is already running" in refused, refused[
        -3000:
    ]
    assert "--force" in refused
    # ... and it wrote no state: the stored state is exactly what run 1 had written.
    assert state_after == state_before

    # Run 1 then completes normally, with its own state and every row once.
    assert first.returncode == 0, out1[-3000:]
    state = pipe.stored_state(MAIN)
    streams = _streams(pipe)
    for name, stream in streams.items():
        assert "full_sync" not in state[name] and state[name]["table_version"], name
        assert pipe.raw_keys(stream) == pipe.source_keys(stream) == list(range(1, ROWS + 1))
    pipe.state1 = state


# ============================================== 2. the warehouse fails in the middle of a run


def test_warehouse_failure_mid_run_keeps_the_confirmed_state_and_the_rerun_loses_nothing(faults):
    pipe = faults
    streams = _streams(pipe)
    _touch(pipe.pg.dsn(pipe.source_db))
    before = pipe.stored_state(MAIN)
    raw_before = {name: pipe.raw_keys(s) for name, s in streams.items()}

    with pipe.connect(pipe.warehouse_db) as wh:
        # The RAW notes table is locked; target-postgres blocks when it writes to it, and
        # the test then kills its session, as a warehouse restart or failover would.
        wh.execute("BEGIN")
        wh.execute(f"LOCK TABLE tap_postgres.{NOTES} IN ACCESS EXCLUSIVE MODE")
        run, out = start_meltano(pipe, "run", MAIN, TARGET, name="run2")
        try:
            with pipe.connect(pipe.warehouse_db) as admin:
                waiting = wait_for(
                    lambda: (
                        backends_waiting(admin, pipe.warehouse_db, "relation")
                        or run.poll() is not None
                    ),
                    "target-postgres to wait on the locked RAW table",
                )
                assert run.poll() is None, out.read_text()[-3000:]
                [victim, *_] = waiting
                admin.execute("SELECT pg_terminate_backend(%s)", (victim,))
        finally:
            wh.execute("ROLLBACK")
        failed = finish_meltano(pipe, run, out)
    pipe.outputs.append(failed)

    assert run.returncode != 0
    assert "terminating connection due to administrator command" in failed, failed[-3000:]
    confirmed = pipe.stored_state(MAIN)
    # Nothing of the notes stream was confirmed: its bookmark is where run 1 left it.
    assert confirmed[NOTES] == before[NOTES]
    # Whatever bookmark Meltano kept, the target had loaded the rows behind it.
    for name, stream in streams.items():
        assert confirmed[name]["table_version"] == before[name]["table_version"]
        if confirmed[name] != before[name]:
            window = _window(before[name], confirmed[name])
            assert set(pipe.source_keys(stream, window)) <= set(pipe.raw_keys(stream)), name
    raw_failed = {name: pipe.raw_keys(s) for name, s in streams.items()}

    # The rerun (at debug level: the secrets test reads its output too).
    rerun = pipe.meltano("--log-level=debug", "run", MAIN, TARGET)
    pipe.outputs.append(rerun.stdout + rerun.stderr)
    after = pipe.stored_state(MAIN)
    for name, stream in streams.items():
        raw = pipe.raw_keys(stream)
        source = pipe.source_keys(stream)
        assert set(raw) == set(source), name  # every source row is in RAW: nothing lost
        # The rerun started from the confirmed bookmark (minus the lookback) ...
        moved = Counter(raw) - Counter(raw_failed[name])
        assert sorted(moved.elements()) == pipe.source_keys(
            stream, _window(confirmed[name], after[name])
        ), name
        # ... so a row is repeated only by the failed run's partial load or the rerun.
        failed_run_rows = Counter(raw_failed[name]) - Counter(raw_before[name])
        for key, count in Counter(raw).items():
            assert count <= 1 + failed_run_rows[key] + moved[key], (name, key)
        # The touched rows (ids divisible by 15, and the new ones) are in their newest form.
        assert {k for k in range(1, ROWS + 51) if k % 15 == 0 or k > ROWS} <= set(moved), name
    assert "full_sync" not in after[NOTES]


def test_wrong_source_password_fails_the_run_naming_the_connection(faults):
    pipe = faults
    env = {**pipe.env(), meltano_env_name(MAIN, "password"): WRONG_SECRET}
    before = _state_rows(pipe)
    proc = pipe.meltano("--log-level=debug", "run", MAIN, TARGET, check=False, env=env)
    out = proc.stdout + proc.stderr
    pipe.outputs.append(out)
    assert proc.returncode != 0
    assert "tap-gitlab-postgres: error: cannot connect to Postgres pgp_reader@" in out
    assert "password authentication failed" in out
    assert _state_rows(pipe) == before


def test_no_secret_in_any_meltano_output_or_file(faults):
    pipe = faults
    assert len(pipe.outputs) == 5  # runs 1-4 and the refused one
    # `meltano run` writes no logs/ directory; what it leaves in its system directory is
    # the systemdb (state, runs) and run/ (state.json, logging configs). The plugin config
    # files (they hold the passwords) exist only while a plugin runs.
    files = [
        p
        for p in pipe.sys_dir.rglob("*")
        if p.is_file() and p.relative_to(pipe.sys_dir).parts[0] not in PLUGIN_DIRS
    ]
    assert pipe.sys_dir / "meltano.db" in files
    assert not [p for p in files if p.name.endswith(".config.json")]
    texts = [*pipe.outputs, pipe.log.read_text()]
    texts += [p.read_bytes().decode(errors="replace") for p in files]
    # The debug runs really are verbose (the secrets had every chance to appear).
    assert sum("[debug    ]" in t for t in pipe.outputs) == 2
    for secret in (SOURCE_SECRET, WRONG_SECRET, pipe.pg.password):
        for text in texts:
            assert secret not in text


# ================================================= 3. SIGKILL of the tap, incremental run

EVENTS = "gitlab_db_events"
EVENTS_ROWS = 600
HOURS = 20


def _tap_config(dsn: str, tmp_path: Path, **extra) -> Path:
    manifest = tmp_path / "events.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "tables": {
                    "events": {
                        "import_db": "GITLAB_DB",
                        "export_schema": "gitlab_com",
                        "export_table": "events",
                        "export_table_primary_key": "id",
                        "deletes_exempt": True,
                        "import_query": f"SELECT id, action, updated_at FROM events {WINDOW}",
                    }
                }
            }
        )
    )
    config = {
        **connection_config(dsn),
        "manifest_path": str(manifest),
        "max_window_hours": 1,
        **extra,
    }
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(config))
    return path


def _tap(config: Path, state: dict | None, tmp_path: Path) -> list[dict]:
    args = [TAP, "--config", str(config)]
    if state is not None:
        state_file = tmp_path / f"state-{uuid.uuid4().hex[:6]}.json"
        state_file.write_text(json.dumps(state))
        args += ["--state", str(state_file)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture
def events(fresh_db: str, tmp_path: Path):
    """600 events, one every 2 minutes over the last 20 hours, and the state of a finished
    run whose bookmark is 20 hours back: the next run reads ~20 one-hour windows."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events (id bigint PRIMARY KEY, action text, updated_at timestamp)"
        )
        conn.execute(
            "INSERT INTO events SELECT g, 'a', %s - g * interval '2 minutes' "
            f"FROM generate_series(1, {EVENTS_ROWS}) g",
            (now - timedelta(minutes=1),),
        )
    config = _tap_config(fresh_db, tmp_path)
    messages = _tap(config, None, tmp_path)  # the first run: a full sync
    state = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    bookmark = state["bookmarks"]["gitlab_db_events"]
    bookmark["replication_key_value"] = (
        (now - timedelta(hours=HOURS)).replace(tzinfo=UTC).isoformat()
    )
    return config, state


def _expected_ids(state: dict) -> set[int]:
    """Every event the incremental run after ``state`` must deliver (all are older than
    the run's end bound)."""
    start = parse_ts(state["bookmarks"]["gitlab_db_events"]["replication_key_value"])
    return {
        g
        for g in range(1, EVENTS_ROWS + 1)
        if datetime.now(UTC) - timedelta(minutes=1 + 2 * g) >= start - LOOKBACK
    }


@pytest.mark.parametrize(
    ("states_before_kill", "records_after"),
    # The tap's first STATE repeats the input state (singer-sdk, before any record); each
    # later one is the checkpoint after an incremental window.
    [(1, 5), (5, 0), (10, 7)],
    ids=["before-first-checkpoint", "right-after-a-checkpoint", "mid-window"],
)
def test_sigkill_of_an_incremental_run_then_rerun_loses_nothing(
    events, tmp_path, states_before_kill, records_after
):
    config, state = events
    expected = _expected_ids(state)
    assert len(expected) > 500
    proc = subprocess.Popen(
        [TAP, "--config", str(config), "--state", str(_write(tmp_path / "s0.json", state))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    confirmed_state, confirmed_ids, pending_ids = state, set(), set()
    states = records = 0
    for line in proc.stdout:
        message = json.loads(line)
        if message["type"] == "RECORD" and message["stream"] == EVENTS:
            pending_ids.add(message["record"]["id"])
            records += states >= states_before_kill
        elif message["type"] == "STATE":
            # What Meltano would store: everything before this STATE is delivered.
            confirmed_state, states = message["value"], states + 1
            confirmed_ids |= pending_ids
            pending_ids = set()
        if states >= states_before_kill and records >= records_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    # Where the kill landed: no checkpoint yet / exactly on one / inside a window.
    assert states == states_before_kill
    if records_after:
        assert pending_ids
    if states_before_kill > 1:
        bookmark = confirmed_state["bookmarks"]["gitlab_db_events"]
        assert (
            bookmark["replication_key_value"]
            != state["bookmarks"]["gitlab_db_events"]["replication_key_value"]
        )

    messages = _tap(config, confirmed_state, tmp_path)
    rerun_ids = {
        m["record"]["id"] for m in messages if m["type"] == "RECORD" and m["stream"] == EVENTS
    }
    # No row lost: what was delivered before the last checkpoint plus the rerun is all.
    assert confirmed_ids | rerun_ids >= expected
    # The rerun started at the confirmed bookmark minus the lookback, not earlier.
    start = (
        parse_ts(confirmed_state["bookmarks"]["gitlab_db_events"]["replication_key_value"])
        - LOOKBACK
    )
    rerun_times = [
        parse_ts(m["record"]["updated_at"])
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == EVENTS
    ]
    assert min(rerun_times) >= start
    final = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    assert "full_sync" not in final["bookmarks"]["gitlab_db_events"]


def _write(path: Path, value: dict) -> Path:
    path.write_text(json.dumps(value))
    return path


# ================================================== 4. secrets in the tap's own output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_tap_never_prints_the_password_at_any_log_level(pg, fresh_db, tmp_path):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events (id bigint PRIMARY KEY, action text, updated_at timestamp);"
            "INSERT INTO events SELECT g, 'a', now() FROM generate_series(1, 20) g;"
            f"CREATE ROLE pgp_tap_{uuid.uuid4().hex[:6]} LOGIN PASSWORD '{SOURCE_SECRET}'"
        )
        role = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgp_tap_%' ORDER BY oid DESC"
        ).fetchone()[0]
        conn.execute(f"GRANT SELECT ON events TO {role}")
    cases = {
        "success": dict(user=role, password=SOURCE_SECRET),
        "wrong password": dict(user=role, password=WRONG_SECRET),
        "database down": dict(user=role, password=SOURCE_SECRET, port=_closed_port()),
    }

    def run(case: str, level: str) -> tuple[str, str, subprocess.CompletedProcess]:
        config = _tap_config(fresh_db, tmp_path, **cases[case])
        env = {"TAP_GITLAB_POSTGRES_LOGLEVEL": level, "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            [TAP, "--config", str(config)], capture_output=True, text=True, env=env, timeout=120
        )
        return case, level, proc

    jobs = [(case, level) for case in cases for level in ("debug", "info", "warning")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda job: run(*job), jobs))
    for case, level, proc in results:
        output = proc.stdout + proc.stderr
        assert SOURCE_SECRET not in output and WRONG_SECRET not in output, (case, level)
        if case == "success":
            assert proc.returncode == 0, (level, proc.stderr[-2000:])
            assert '"type":"RECORD"' in proc.stdout.replace(" ", "")
            assert ("DEBUG" in proc.stderr) == (level == "debug")
        else:
            assert proc.returncode == 1, (case, level)
            [line] = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
            assert line.startswith("tap-gitlab-postgres: error: cannot connect to Postgres")
            reason = "password authentication failed" if case == "wrong password" else "refused"
            assert reason in line, (case, line)
