"""The tap against a real Postgres: load types, windows, state, full syncs, failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml
from pgp_testkit.dsn import connection_config
from pgp_testkit.tap import run_tap, write_manifest

T0 = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)

ISSUES_INCREMENTAL = """SELECT id
, title
, project_id
, updated_at
FROM issues
WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp
  AND '{END_TIMESTAMP}'::timestamp"""


def execute(dsn: str, sql: str, params: object = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, params)


@pytest.fixture
def issues_db(fresh_db: str) -> str:
    """200 issues, one updated every hour back from T0."""
    execute(
        fresh_db,
        """
        CREATE TABLE issues (id bigint PRIMARY KEY, title text, project_id int,
                             updated_at timestamp without time zone);
        INSERT INTO issues
        SELECT g, 'issue ' || g, g % 7,
               '2024-01-10 12:00:00'::timestamp - (200 - g) * interval '1 hour'
        FROM generate_series(1, 200) g;
        """,
    )
    return fresh_db


def issues_config(
    tmp_path: Path, dsn: str, query: str = ISSUES_INCREMENTAL, **extra: object
) -> dict:
    manifest = write_manifest(
        tmp_path, {"issues": {"export_table": "issues", "import_query": query}}
    )
    return {
        **connection_config(dsn),
        "manifest_path": str(manifest),
        "execution_date": T0.isoformat(),
        "chunk_size": 50,
        **extra,
    }


def test_first_run_is_a_resumable_full_sync_then_windows(tmp_path: Path, issues_db: str) -> None:
    config = issues_config(tmp_path, issues_db)
    first = run_tap(tmp_path, config)
    stream = "gitlab_db_issues"
    assert sorted(first.ids(stream)) == list(range(1, 201))
    # Chunks of 50 keys, each checkpointed with its last key before the next starts.
    progress = [s["bookmarks"][stream].get("full_sync", {}).get("last_key") for s in first.states]
    assert [k for k in progress if k is not None] == [50, 100, 150, 200]
    [activate] = first.of_type("ACTIVATE_VERSION", stream)
    version = activate["version"]
    assert {m["version"] for m in first.of_type("RECORD", stream)} == {version}
    bookmark = first.bookmark(stream)
    assert "full_sync" not in bookmark
    assert bookmark["table_version"] == version
    started = datetime.fromisoformat(
        next(
            s["bookmarks"][stream]["full_sync"]["started_at"]
            for s in first.states
            if "full_sync" in s["bookmarks"].get(stream, {})
        )
    )
    # The next incremental starts from the backfill's start minus the 30 minute overlap.
    assert datetime.fromisoformat(bookmark["replication_key_value"]) == started - timedelta(
        minutes=30
    )

    # Rows changed after the bookmark (and inside the overlap) are picked up next time.
    bookmark_at = datetime.fromisoformat(bookmark["replication_key_value"]).replace(tzinfo=None)
    execute(
        issues_db,
        "UPDATE issues SET updated_at = %s WHERE id = 5",
        [bookmark_at + timedelta(hours=1)],
    )
    execute(
        issues_db,
        "UPDATE issues SET updated_at = %s WHERE id = 6",
        [bookmark_at - timedelta(minutes=10)],
    )
    execute(
        issues_db,
        "UPDATE issues SET updated_at = %s WHERE id = 7",
        [bookmark_at - timedelta(minutes=40)],
    )
    later = datetime.now(UTC) + timedelta(hours=3)
    second = run_tap(tmp_path, {**config, "execution_date": later.isoformat()}, first.state)
    assert sorted(second.ids(stream)) == [5, 6]
    assert {m["version"] for m in second.of_type("RECORD", stream)} == {version}
    assert not second.of_type("ACTIVATE_VERSION")
    assert second.bookmark(stream)["replication_key_value"] == later.isoformat()


def test_windows_are_capped_and_checkpointed(tmp_path: Path, issues_db: str) -> None:
    config = issues_config(tmp_path, issues_db, max_window_hours=24)
    state = run_tap(tmp_path, config).state
    stream = "gitlab_db_issues"
    # Pretend the last run ended 100 hours before T0: the gap is read in 24h windows.
    state["bookmarks"][stream]["replication_key_value"] = (T0 - timedelta(hours=100)).isoformat()
    run = run_tap(tmp_path, config, state)
    ends = [s["bookmarks"][stream]["replication_key_value"] for s in run.states[1:]]
    expected = [
        T0 - timedelta(hours=100, minutes=30) + timedelta(hours=24 * i) for i in range(1, 5)
    ]
    assert [datetime.fromisoformat(e) for e in dict.fromkeys(ends)] == [*expected, T0]
    # Issue g was updated at T0 - (200-g)h; windows cover T0-100.5h .. T0 inclusive.
    assert sorted(set(run.ids(stream))) == list(range(100, 201))


def test_execution_date_style_window(tmp_path: Path, issues_db: str) -> None:
    query = """SELECT id, title, project_id, updated_at FROM issues
WHERE updated_at BETWEEN '{EXECUTION_DATE}'::timestamp - interval '{HOURS} hours'
  AND '{EXECUTION_DATE}'::timestamp"""
    config = issues_config(tmp_path, issues_db, query=query)
    state = run_tap(tmp_path, config).state
    stream = "gitlab_db_issues"
    state["bookmarks"][stream]["replication_key_value"] = (T0 - timedelta(hours=10)).isoformat()
    run = run_tap(tmp_path, config, state)
    # From T0-10h30m to T0: issues 190..200.
    assert sorted(run.ids(stream)) == list(range(190, 201))


def test_days_style_window(tmp_path: Path, issues_db: str) -> None:
    query = """SELECT id, updated_at FROM issues
WHERE updated_at BETWEEN '{EXECUTION_DATE}'::timestamp - interval '{DAYS} day'
  AND '{EXECUTION_DATE}'::timestamp"""
    config = issues_config(tmp_path, issues_db, query=query, lookback_minutes=0)
    state = run_tap(tmp_path, config).state
    stream = "gitlab_db_issues"
    state["bookmarks"][stream]["replication_key_value"] = (T0 - timedelta(hours=36)).isoformat()
    run = run_tap(tmp_path, config, state)
    assert sorted(run.ids(stream)) == list(range(164, 201))


def test_schema_change_triggers_new_versioned_full_sync(tmp_path: Path, issues_db: str) -> None:
    config = issues_config(tmp_path, issues_db)
    first = run_tap(tmp_path, config)
    stream = "gitlab_db_issues"
    old_version = first.bookmark(stream)["table_version"]
    query = ISSUES_INCREMENTAL.replace(", title\n", ", title\n, title AS headline\n")
    changed = issues_config(tmp_path, issues_db, query=query)
    second = run_tap(tmp_path, changed, first.state)
    assert sorted(second.ids(stream)) == list(range(1, 201))
    assert second.records[stream][0]["headline"] == second.records[stream][0]["title"]
    [activate] = second.of_type("ACTIVATE_VERSION", stream)
    assert activate["version"] > old_version
    assert (
        second.bookmark(stream)["schema_fingerprint"]
        != first.bookmark(stream)["schema_fingerprint"]
    )


def test_resync_request_discards_stale_progress(tmp_path: Path, issues_db: str) -> None:
    config = issues_config(tmp_path, issues_db)
    state = run_tap(tmp_path, config).state
    stream = "gitlab_db_issues"
    # A stale, half-finished full sync plus a resync request must not skip keys 1..150.
    state["bookmarks"][stream]["full_sync"] = {
        "started_at": T0.isoformat(),
        "version": 1,
        "fingerprint": "stale",
        "last_key": 150,
    }
    state["bookmarks"][stream]["resync"] = True
    run = run_tap(tmp_path, config, state)
    assert sorted(run.ids(stream)) == list(range(1, 201))
    assert "resync" not in run.bookmark(stream)
    assert "full_sync" not in run.bookmark(stream)


def test_load_by_id_reads_keys_above_the_bookmark(tmp_path: Path, fresh_db: str) -> None:
    execute(
        fresh_db,
        """
        CREATE TABLE merge_request_diff_commits (merge_request_diff_id bigint, relative_order int,
            sha bytea, PRIMARY KEY (merge_request_diff_id, relative_order));
        INSERT INTO merge_request_diff_commits
        SELECT d, o, decode(md5(d || '-' || o), 'hex')
        FROM generate_series(1, 30) d, generate_series(0, 3) o;
        """,
    )
    manifest = write_manifest(
        tmp_path,
        {
            "merge_request_diff_commits": {
                "export_table": "merge_request_diff_commits",
                "export_table_primary_key": "merge_request_diff_id",
                "incremental_type": "load_by_id",
                "import_query": "SELECT merge_request_diff_id, relative_order, sha "
                "FROM merge_request_diff_commits",
            }
        },
    )
    config = {**connection_config(fresh_db), "manifest_path": str(manifest), "chunk_size": 10}
    stream = "gitlab_db_merge_request_diff_commits"
    first = run_tap(tmp_path, config)
    rows = first.records[stream]
    assert len(rows) == 120
    # Chunks end on key boundaries: all 4 rows of a diff id land in the same chunk.
    assert first.bookmark(stream)["replication_key_value"] == 30
    assert rows[0]["sha"] == bytes.fromhex(rows[0]["sha"]).hex()

    execute(
        fresh_db,
        "INSERT INTO merge_request_diff_commits SELECT 31, o, NULL FROM generate_series(0, 2) o",
    )
    second = run_tap(tmp_path, config, first.state)
    assert [(r["merge_request_diff_id"], r["relative_order"]) for r in second.records[stream]] == [
        (31, 0),
        (31, 1),
        (31, 2),
    ]
    assert second.bookmark(stream)["replication_key_value"] == 31
    third = run_tap(tmp_path, config, second.state)
    assert stream not in third.records


def test_scd_appends_a_snapshot_per_run_with_run_metadata(tmp_path: Path, fresh_db: str) -> None:
    execute(
        fresh_db,
        """
        CREATE TABLE members (id int PRIMARY KEY, user_id int, invite_email text);
        INSERT INTO members SELECT g, g * 10, 'x' FROM generate_series(1, 25) g;
        """,
    )
    manifest = write_manifest(
        tmp_path,
        {
            "members": {
                "export_table": "members",
                "advanced_metadata": True,
                "import_query": "SELECT id\n, user_id\n, NULL AS invite_email\nFROM members",
            }
        },
    )
    config = {
        **connection_config(fresh_db),
        "manifest_path": str(manifest),
        "task_instance": "run-a",
    }
    stream = "gitlab_db_members"
    first = run_tap(tmp_path, config)
    second = run_tap(tmp_path, {**config, "task_instance": "run-b"}, first.state)
    for run, task in ((first, "run-a"), (second, "run-b")):
        rows = run.records[stream]
        assert sorted(r["id"] for r in rows) == list(range(1, 26))
        assert {r["_task_instance"] for r in rows} == {task}
        assert len({r["_uploaded_at"] for r in rows}) == 1
        assert {r["invite_email"] for r in rows} == {None}
        assert not run.of_type("ACTIVATE_VERSION")
    assert first.records[stream][0]["_uploaded_at"] < second.records[stream][0]["_uploaded_at"]


def test_allow_lists_filter_internal_only_tables(tmp_path: Path, issues_db: str) -> None:
    projects = tmp_path / "projects.csv"
    projects.write_text("project_id,project_path\n3,gitlab-org/gitlab\n5,gitlab-org/it's\n")
    namespaces = tmp_path / "namespaces.csv"
    namespaces.write_text("namespace_id,namespace_path\n")
    manifest = write_manifest(
        tmp_path,
        {
            "issues_internal_only": {
                "export_table": "issues_internal_only",
                "import_query": ISSUES_INCREMENTAL,
                "additional_filtering": "AND project_id IN {INTERNAL_PROJECT_IDS}",
            },
            "issues_by_namespace": {
                "export_table": "issues_by_namespace",
                "import_query": ISSUES_INCREMENTAL,
                "additional_filtering": "AND project_id IN {INTERNAL_NAMESPACE_IDS}",
            },
        },
    )
    config = {
        **connection_config(issues_db),
        "manifest_path": str(manifest),
        "execution_date": T0.isoformat(),
        "internal_projects_csv": str(projects),
        "internal_namespaces_csv": str(namespaces),
    }
    run = run_tap(tmp_path, config)
    assert {r["project_id"] for r in run.records["gitlab_db_issues_internal_only"]} == {3, 5}
    # An empty allow list matches nothing rather than breaking the query.
    assert "gitlab_db_issues_by_namespace" not in run.records
    assert "table_version" in run.bookmark("gitlab_db_issues_by_namespace")


def test_failed_stream_is_named_and_others_finish(tmp_path: Path, issues_db: str) -> None:
    manifest = write_manifest(
        tmp_path,
        {
            "broken": {
                "export_table": "broken",
                "import_query": "SELECT id, no_such_column FROM issues",
            },
            "issues": {"export_table": "issues", "import_query": ISSUES_INCREMENTAL},
        },
    )
    config = {
        **connection_config(issues_db),
        "manifest_path": str(manifest),
        "execution_date": T0.isoformat(),
    }
    run = run_tap(tmp_path, config, check=False)
    assert run.returncode == 1
    assert "gitlab_db_broken" in run.stderr and "no_such_column" in run.stderr
    assert "table_version" in run.bookmark("gitlab_db_issues")
    assert len(run.records["gitlab_db_issues"]) == 200


def test_unreachable_database_is_one_clear_line(tmp_path: Path, issues_db: str) -> None:
    config = {**issues_config(tmp_path, issues_db), "port": 1, "password": "s3cret-pw"}
    run = run_tap(tmp_path, config, check=False)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cannot connect to Postgres" in errors[0]
    assert "s3cret-pw" not in run.stderr
    assert run.messages == []


def test_test_rows_loads_first_rows_without_bookmarks(tmp_path: Path, issues_db: str) -> None:
    config = issues_config(tmp_path, issues_db, test_rows=7)
    run = run_tap(tmp_path, config)
    assert run.ids("gitlab_db_issues") == list(range(1, 8))
    assert "replication_key_value" not in run.state["bookmarks"].get("gitlab_db_issues", {})
    # Never activated: a test load must not replace the warehouse copy.
    assert not run.of_type("ACTIVATE_VERSION")
    assert "ResourceWarning" not in run.stderr


def test_state_is_valid_json_between_every_message(tmp_path: Path, issues_db: str) -> None:
    run = run_tap(tmp_path, issues_config(tmp_path, issues_db))
    for state in run.states:
        json.dumps(state)
    assert isinstance(run.records["gitlab_db_issues"][0]["updated_at"], str)
    assert Decimal(str(run.records["gitlab_db_issues"][0]["_uploaded_at"])) > 0


def test_connection_from_env_variables_named_by_the_manifest(
    tmp_path: Path, issues_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = connection_config(issues_db)
    env = {
        "DEMO_DB_NAME": conn["database"],
        "DEMO_DB_HOST": conn["host"],
        "DEMO_DB_PASS": conn["password"],
        "DEMO_PG_PORT": str(conn["port"]),
        "DEMO_DB_USER": conn["user"],
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tables = {
        "issues": {
            "export_table": "issues",
            "import_query": ISSUES_INCREMENTAL,
            "database_type": "main",
        },
        "ci_issues": {
            "export_table": "ci_issues",
            "import_query": ISSUES_INCREMENTAL,
            "database_type": "ci",
        },
    }
    legacy = write_manifest(tmp_path, dict(tables), name="legacy.yaml")
    legacy.write_text(
        yaml.safe_dump(
            {
                "connection_info": {
                    "database": "DEMO_DB_NAME",
                    "host": "DEMO_DB_HOST",
                    "pass": "DEMO_DB_PASS",
                    "port": "DEMO_PG_PORT",
                    "user": "DEMO_DB_USER",
                },
                **yaml.safe_load(legacy.read_text()),
            }
        )
    )
    run = run_tap(tmp_path, {"manifest_path": str(legacy), "execution_date": T0.isoformat()})
    assert set(run.records) == {"gitlab_db_issues", "gitlab_db_ci_issues", "pgp_row_counts"}

    split = write_manifest(tmp_path, dict(tables), name="split.yaml")
    connection_file = tmp_path / "connection_info.yaml"
    connection_file.write_text(
        yaml.safe_dump(
            {
                "connection_info": {
                    "postgres_source_connection_main": {
                        "database": "DEMO_DB_NAME",
                        "host": "DEMO_DB_HOST",
                        "pass": "DEMO_DB_PASS",
                        "port": "DEMO_PG_PORT",
                        "user": "DEMO_DB_USER",
                    }
                }
            }
        )
    )
    config = {
        "manifest_path": str(split),
        "connection_info_path": str(connection_file),
        "database_type": "main",
        "execution_date": T0.isoformat(),
    }
    run = run_tap(tmp_path, config)
    assert set(run.records) == {"gitlab_db_issues", "pgp_row_counts"}

    monkeypatch.delenv("DEMO_DB_PASS")
    failed = run_tap(tmp_path, config, check=False)
    assert failed.returncode == 1
    assert "DEMO_DB_PASS" in failed.stderr and "error:" in failed.stderr


def test_full_sync_keeps_rows_with_a_null_primary_key(tmp_path: Path, fresh_db: str) -> None:
    execute(
        fresh_db,
        """
        CREATE TABLE events (id bigint, updated_at timestamp);
        INSERT INTO events SELECT g, now() FROM generate_series(1, 30) g;
        INSERT INTO events VALUES (NULL, now()), (NULL, now());
        """,
    )
    manifest = write_manifest(
        tmp_path,
        {
            "events": {
                "export_table": "events",
                "import_query": "SELECT id, updated_at FROM events WHERE updated_at BETWEEN "
                "'{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp",
            }
        },
    )
    config = {**connection_config(fresh_db), "manifest_path": str(manifest), "chunk_size": 10}
    run = run_tap(tmp_path, config)
    ids = run.ids("gitlab_db_events")
    assert sorted(i for i in ids if i is not None) == list(range(1, 31))
    assert ids.count(None) == 2
    assert "NULL primary key 'id'" in run.stderr
