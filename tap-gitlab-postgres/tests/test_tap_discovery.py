"""Discovery of GitLab's real query shapes, against a real Postgres:

- an identical select item repeated (GitLab's namespaces query selects traversal_ids twice)
  loads as one column, with a warning naming the file and table;
- a manifest table Postgres cannot describe fails discovery (exit 1, one line per table),
  unless skip_undescribable_tables leaves it out with a warning;
- pgp_row_counts.source_table is the relation the query reads, and value warnings name it
  for computed columns;
- the "starting" log line shows the bookmark the stream starts from.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import psycopg
import pytest
from pgp_testkit.dsn import connection_config
from pgp_testkit.tap import TAP, run_tap, write_json, write_manifest

NAMESPACES = """SELECT id
, CASE WHEN traversal_ids[1] = id THEN name ELSE NULL END AS name
, traversal_ids
, traversal_ids
, updated_at
FROM namespaces
WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp"""
BUILDS = """SELECT id
, CASE WHEN status = 'expired' THEN 'infinity'::timestamp ELSE updated_at END
  AS artifacts_expire_at
, updated_at
FROM p_ci_builds
WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp"""


@pytest.fixture
def gitlab_db(fresh_db: str) -> str:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE namespaces (id int PRIMARY KEY, name varchar NOT NULL, "
            "traversal_ids int[] NOT NULL, updated_at timestamp);"
            "INSERT INTO namespaces VALUES (1, 'top', '{1}', now() - interval '1 hour'), "
            "(2, 'sub', '{1,2}', now() - interval '1 hour');"
            "CREATE TABLE p_ci_builds (id bigint PRIMARY KEY, status varchar, "
            "updated_at timestamp);"
            "INSERT INTO p_ci_builds VALUES (1, 'expired', now() - interval '1 hour'), "
            "(2, 'success', now() - interval '1 hour');"
        )
    return fresh_db


def _manifest(tmp_path: Path, **extra: dict) -> Path:
    tables = {
        "namespaces": {"export_table": "namespaces", "import_query": NAMESPACES},
        "ci_builds": {"export_table": "ci_builds", "import_query": BUILDS},
        **extra,
    }
    return write_manifest(tmp_path, tables)


def test_repeated_identical_item_loads_once(tmp_path: Path, gitlab_db: str) -> None:
    config = {**connection_config(gitlab_db), "manifest_path": str(_manifest(tmp_path))}
    run = run_tap(tmp_path, config)
    [schema] = run.of_type("SCHEMA", "gitlab_db_namespaces")
    assert list(schema["schema"]["properties"]) == [
        "id", "name", "traversal_ids", "updated_at", "_uploaded_at"
    ]  # fmt: skip
    records = sorted(run.records["gitlab_db_namespaces"], key=lambda r: r["id"])
    assert [(r["id"], r["name"], r["traversal_ids"]) for r in records] == [
        (1, "top", [1]),
        (2, None, [1, 2]),
    ]
    assert re.search(
        r"WARNING.*manifest\.yaml: table 'namespaces': select item 'traversal_ids' appears 2 "
        r"times; it is loaded once",
        run.stderr,
    )


def test_undescribable_table_fails_discovery(tmp_path: Path, gitlab_db: str) -> None:
    broken = {
        "export_table": "labels",
        "import_query": "SELECT id, no_such_column, updated_at FROM namespaces "
        "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp",
    }
    gone = {"export_table": "gone", "import_query": "SELECT id FROM no_such_table"}
    manifest = _manifest(tmp_path, labels=broken, gone=gone)
    config = {**connection_config(gitlab_db), "manifest_path": str(manifest)}

    run = run_tap(tmp_path, config, check=False, extra_args=("--discover",))
    assert run.returncode == 1
    assert run.messages == []  # no catalog at all, rather than one without the tables
    errors = [line for line in run.stderr.splitlines() if line.startswith("tap-gitlab-postgres:")]
    assert len(errors) == 3, run.stderr
    assert "stream gitlab_db_labels: manifest.yaml: table 'labels': column " in errors[0]
    assert '"no_such_column" does not exist' in errors[0]
    assert "stream gitlab_db_gone: manifest.yaml: table 'gone': relation " in errors[1]
    assert "set skip_undescribable_tables" in errors[2]

    config["skip_undescribable_tables"] = True
    done = subprocess.run(
        [TAP, "--config", str(write_json(tmp_path / "skip.json", config)), "--discover"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    catalog = json.loads(done.stdout)
    assert sorted(s["tap_stream_id"] for s in catalog["streams"]) == [
        "gitlab_db_ci_builds", "gitlab_db_namespaces", "pgp_row_counts"
    ]  # fmt: skip
    assert re.search(r"WARNING.*stream gitlab_db_labels left out \(skip_undescribable_tables\)",
                     done.stderr)  # fmt: skip


def test_source_table_is_the_relation_read(tmp_path: Path, gitlab_db: str) -> None:
    config = {**connection_config(gitlab_db), "manifest_path": str(_manifest(tmp_path))}
    run = run_tap(tmp_path, config)
    counts = {r["stream"]: r for r in run.records["pgp_row_counts"]}
    assert counts["gitlab_db_ci_builds"]["source_table"] == "p_ci_builds"
    assert counts["gitlab_db_namespaces"]["source_table"] == "namespaces"
    # The computed column's out-of-range value is named with the table it is computed on.
    assert re.search(
        r"WARNING.*column 'artifacts_expire_at' \(computed in the query on source table "
        r"p_ci_builds\): 1 value\(s\) outside years 1-9999",
        run.stderr,
    ), run.stderr


def test_starting_log_line_shows_the_bookmark(tmp_path: Path, gitlab_db: str) -> None:
    config = {**connection_config(gitlab_db), "manifest_path": str(_manifest(tmp_path))}
    first = run_tap(tmp_path, config)
    bookmark = first.bookmark("gitlab_db_namespaces")
    assert bookmark["replication_key"] == "updated_at"
    second = run_tap(tmp_path, config, first.state)
    assert (
        "Starting incremental sync of 'gitlab_db_namespaces' with bookmark value: "
        f"{bookmark['replication_key_value']}" in second.stderr
    ), second.stderr
