"""Stream pgp_row_counts: what each finished stream read, and the source's count after a
complete copy (the numbers dbt's row-count check compares with RAW)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import yaml
from pgp_testkit.dsn import connection_config
from pgp_testkit.tap import run_tap

SOURCE = """
CREATE TABLE issues (id bigint PRIMARY KEY, title text, updated_at timestamp);
INSERT INTO issues SELECT g, 'issue ' || g, '2024-01-02'::timestamp + g * interval '1 minute'
FROM generate_series(1, 120) g;
CREATE TABLE plans (id int PRIMARY KEY, name text);
INSERT INTO plans SELECT g, 'plan ' || g FROM generate_series(1, 7) g;
"""
TABLES = {
    "issues": {
        "import_query": "SELECT id, title, updated_at FROM issues WHERE updated_at BETWEEN "
        "'{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp",
    },
    "plans": {"import_query": "SELECT id, name FROM plans"},
}


def config(tmp_path: Path, dsn: str, **extra: object) -> dict:
    tables = {
        key: {
            "import_db": "GITLAB_DB",
            "export_schema": "gitlab_com",
            "export_table": key,
            "export_table_primary_key": "id",
            **spec,
        }
        for key, spec in TABLES.items()
    }
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"tables": tables}))
    return {
        **connection_config(dsn),
        "manifest_path": str(path),
        "execution_date": "2024-01-03T00:00:00+00:00",
        "chunk_size": 50,
        **extra,
    }


def test_counts_follow_every_stream(tmp_path: Path, fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(SOURCE)
    cfg = config(tmp_path, fresh_db)
    first = run_tap(tmp_path, cfg)
    counts = {r["stream"]: r for r in first.records["pgp_row_counts"]}
    assert set(counts) == {"gitlab_db_issues", "gitlab_db_plans"}
    issues, plans = counts["gitlab_db_issues"], counts["gitlab_db_plans"]
    assert (issues["run_type"], issues["rows_read"], issues["source_rows"]) == (
        "full_sync",
        120,
        120,
    )
    assert (plans["run_type"], plans["rows_read"], plans["source_rows"]) == ("snapshot", 7, 7)
    # uploaded_at is the _uploaded_at of exactly the rows this run read.
    for stream, report in counts.items():
        stamps = {r["_uploaded_at"] for r in first.records[stream]}
        assert stamps == {Decimal(str(report["uploaded_at"]))}
    [activate] = first.of_type("ACTIVATE_VERSION", "gitlab_db_issues")
    assert issues["table_version"] == activate["version"]
    assert plans["table_version"] is None
    # The counts stream comes after the streams it reports on.
    streams = [m["stream"] for m in first.messages if m["type"] == "RECORD"]
    assert streams.index("pgp_row_counts") > max(
        i for i, s in enumerate(streams) if s != "pgp_row_counts"
    )

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("UPDATE issues SET updated_at = now() AT TIME ZONE 'UTC' WHERE id <= 3")
    later = {k: v for k, v in cfg.items() if k != "execution_date"}  # now: after the sync
    second = run_tap(tmp_path, later, first.state)
    counts = {r["stream"]: r for r in second.records["pgp_row_counts"]}
    issues = counts["gitlab_db_issues"]
    assert issues["run_type"] == "incremental"
    assert issues["rows_read"] == len(second.records["gitlab_db_issues"]) >= 3
    assert issues["source_rows"] is None  # counted after complete copies only


def test_failed_stream_reports_nothing_and_setting_turns_it_off(
    tmp_path: Path, fresh_db: str
) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(SOURCE)
        conn.execute("DROP TABLE plans")
    cfg = config(tmp_path, fresh_db)
    failed = run_tap(tmp_path, cfg, check=False)
    assert failed.returncode == 1
    assert [r["stream"] for r in failed.records["pgp_row_counts"]] == ["gitlab_db_issues"]

    off = run_tap(tmp_path, {**cfg, "row_counts": False}, check=False)
    assert "pgp_row_counts" not in off.records
    assert len(off.records["gitlab_db_issues"]) == 120
