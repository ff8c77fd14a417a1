"""Tests for the demo source (scripts/demo_source.py), the demo manifests and the allow-list seeds.

The demo is built at ~5,000 rows so the whole module stays fast.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import demo_source
import psycopg
import pytest
import yaml
from demo_source import NASTY, TABLES, USER_IPV6, create, planned_counts, touch

if TYPE_CHECKING:
    from pgp_testkit.localpg import LocalPostgres

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "demo_source.py"
MANIFEST_DIR = ROOT / "manifests"
MANIFESTS = ("gitlab_demo_db_manifest.yaml", "gitlab_demo_scd_db_manifest.yaml")
SEEDS = ROOT / "transform" / "seeds"
ROWS = 5_000
SEED = 7
ANCHOR = datetime(2024, 6, 1, 12, 0, 0)  # naive UTC: newest updated_at of created rows
WIDE = {"{BEGIN_TIMESTAMP}": "1900-01-01", "{END_TIMESTAMP}": "2999-01-01"}
INCREMENTAL_MARKERS = ("{BEGIN_TIMESTAMP}", "{EXECUTION_DATE}")


# --------------------------------------------------------------------------- helpers


def _entries() -> list[tuple[str, str, dict[str, Any]]]:
    """(manifest file, table key, entry) for every table of both demo manifests."""
    out = []
    for name in MANIFESTS:
        doc = yaml.safe_load((MANIFEST_DIR / name).read_text())
        assert set(doc) == {"tables"}, f"{name}: current-format manifests only hold `tables:`"
        out.extend((name, key, entry) for key, entry in doc["tables"].items())
    return out


ENTRIES = _entries()


def _seed_ids(filename: str, column: str) -> list[int]:
    with (SEEDS / filename).open(newline="") as fh:
        return [int(row[column]) for row in csv.DictReader(fh)]


def _tuple(ids: list[int]) -> str:
    return "(" + ", ".join(str(i) for i in ids) + ")"


ALLOW_LISTS = {
    "{INTERNAL_PROJECT_IDS}": _tuple(_seed_ids("internal_gitlab_projects.csv", "project_id")),
    "{INTERNAL_NAMESPACE_IDS}": _tuple(_seed_ids("internal_gitlab_namespaces.csv", "namespace_id")),
}


def _render(entry: dict[str, Any]) -> str:
    """import_query + ' ' + additional_filtering, placeholders filled in by plain replacement."""
    query = entry["import_query"]
    for key, value in WIDE.items():
        query = query.replace(key, value)
    if entry.get("additional_filtering"):
        query = f"{query} {entry['additional_filtering']}"
    for key, value in ALLOW_LISTS.items():
        query = query.replace(key, value)
    assert not re.search(r"\{[A-Z_]+\}", query), f"unfilled placeholder in {query!r}"
    return query.replace("%%", "%")


def _from_table(query: str) -> str:
    match = re.search(r"\bFROM\s+([a-z_][a-z0-9_]*)", query)
    assert match, query
    return match.group(1)


def _is_incremental(entry: dict[str, Any]) -> bool:
    query = entry["import_query"]
    return any(m in query for m in INCREMENTAL_MARKERS) or bool(entry.get("incremental_type"))


def _scalar(conn: psycopg.Connection, query: str, params: tuple[Any, ...] | None = None) -> Any:
    # params=None: psycopg then leaves `%` alone (the rendered queries contain ILIKE '%x%').
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def _rows_as_text(conn: psycopg.Connection, table: str) -> set[str]:
    return {r[0] for r in conn.execute(f"SELECT t::text FROM {table} AS t")}


@pytest.fixture(scope="module")
def demo(pg: LocalPostgres) -> Iterator[tuple[str, dict[str, int]]]:
    """One read-only demo database for the module: (dsn, counts returned by create)."""
    dsn = pg.create_database(f"t_demo_source_{uuid.uuid4().hex[:8]}")
    yield dsn, create(dsn, rows=ROWS, seed=SEED, anchor=ANCHOR)


# --------------------------------------------------------------------------- sizes


def test_planned_counts_default_size_and_scaling() -> None:
    default = planned_counts()
    assert set(default) == set(TABLES)
    assert len(TABLES) >= 12
    assert abs(sum(default.values()) - 100_000) <= 1_000
    big = planned_counts(1_000_000)
    for table in TABLES:
        if table != "application_settings":
            assert big[table] == pytest.approx(10 * default[table], rel=0.01), table


def test_create_gives_planned_counts(demo: tuple[str, dict[str, int]]) -> None:
    dsn, counts = demo
    assert counts == planned_counts(ROWS)
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            assert _scalar(conn, f"SELECT count(*) FROM {table}") == counts[table], table


def test_schema_keys_and_types(demo: tuple[str, dict[str, int]]) -> None:
    dsn, _ = demo
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            pk = [
                r[0]
                for r in conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attnum",
                    (table,),
                )
            ]
            if table == "merge_request_diff_commits":
                assert pk == ["merge_request_diff_id", "relative_order"]
            else:
                assert "id" in pk, table
        # Several commits per diff: merge_request_diff_id alone is not unique.
        assert (
            _scalar(
                conn,
                "SELECT max(n) FROM (SELECT count(*) AS n FROM merge_request_diff_commits "
                "GROUP BY merge_request_diff_id) c",
            )
            > 1
        )
        types = {
            (t, c): (dt, udt)
            for t, c, dt, udt in conn.execute(
                "SELECT table_name, column_name, data_type, udt_name "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            )
        }
    expected = {
        ("issues", "updated_at"): "timestamp without time zone",
        ("issues", "closed_at"): "timestamp with time zone",
        ("milestones", "updated_at"): "timestamp with time zone",
        ("issues", "due_date"): "date",
        ("issues", "total_time_spent"): "numeric",
        ("issues", "state_id"): "smallint",
        ("issues", "iid"): "integer",
        ("issues", "id"): "bigint",
        ("issues", "confidential"): "boolean",
        ("users", "preferences"): "jsonb",
        ("users", "current_sign_in_ip"): "inet",
        ("application_settings", "uuid"): "uuid",
        ("application_settings", "protected_paths"): "ARRAY",
        ("application_settings", "domain_denylist"): "ARRAY",
        ("namespaces", "traversal_ids"): "ARRAY",
        ("merge_request_diff_commits", "sha"): "bytea",
        ("p_ci_builds", "status"): "USER-DEFINED",
        ("p_ci_builds", "coverage"): "double precision",
    }
    for key, data_type in expected.items():
        assert types[key][0] == data_type, key
    assert types[("p_ci_builds", "status")][1] == "ci_build_status"
    assert types[("application_settings", "domain_denylist")][1] == "_text"


def test_p_ci_builds_is_partitioned(demo: tuple[str, dict[str, int]]) -> None:
    dsn, counts = demo
    with psycopg.connect(dsn) as conn:
        strategy = _scalar(
            conn,
            "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'p_ci_builds'::regclass",
        )
        assert strategy == "l"  # LIST (partition_id), as on GitLab.com
        parts = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'p_ci_builds'::regclass ORDER BY 1"
        ).fetchall()
        names = [p[0] for p in parts]
        assert "ci_builds" in names and len(names) >= 2
        per_part = [_scalar(conn, f"SELECT count(*) FROM {name}") for name in names]
        assert all(n > 0 for n in per_part) and sum(per_part) == counts["p_ci_builds"]


def test_timestamps_within_window(demo: tuple[str, dict[str, int]]) -> None:
    dsn, _ = demo
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for table in TABLES:
            if table in ("namespace_statistics", "merge_request_diff_commits"):
                continue
            low, high, bad = conn.execute(
                f"SELECT min(updated_at), max(updated_at), "
                f"count(*) FILTER (WHERE updated_at < created_at) FROM {table}"
            ).fetchone()  # type: ignore[misc]
            high = high.replace(tzinfo=None)
            assert high <= ANCHOR and bad == 0, table
            if table != "application_settings":
                assert (ANCHOR - low.replace(tzinfo=None)).days <= 61, table


def test_nasty_values_present(demo: tuple[str, dict[str, int]]) -> None:
    dsn, _ = demo
    with psycopg.connect(dsn) as conn:
        titles = [
            r[0]
            for r in conn.execute(
                "SELECT title FROM issues WHERE id <= %s ORDER BY id", (len(NASTY),)
            )
        ]
        assert titles == list(NASTY)
        projects = {r[0] for r in conn.execute("SELECT project_id FROM issues WHERE id <= 12")}
        assert projects == {1}  # internal and not masked: they reach issues_internal_only
        assert _scalar(conn, "SELECT count(*) FROM users WHERE preferences IS NULL") > 0
        assert _scalar(conn, "SELECT count(*) FROM members WHERE user_id IS NULL") > 0
        assert _scalar(conn, "SELECT count(*) FROM members WHERE expires_at > '2262-01-01'") > 0


# --------------------------------------------------------------------------- manifests


def test_manifest_entries_are_well_formed() -> None:
    streams = [f"{e['import_db'].lower()}_{e['export_table']}" for _, _, e in ENTRIES]
    assert len(streams) == len(set(streams)), "stream names must be unique across manifests"
    used_tables = set()
    for name, key, entry in ENTRIES:
        assert entry["database_type"] == "main", key
        assert entry["export_schema"] == "gitlab_com", key
        assert entry["import_db"] == "GITLAB_DB", key
        assert {"import_query", "export_table", "export_table_primary_key"} <= set(entry), key
        table = _from_table(entry["import_query"])
        assert table in TABLES, (key, table)
        used_tables.add(table)
        incremental = _is_incremental(entry)
        assert incremental == ("scd" not in name), key
        if "{BEGIN_TIMESTAMP}" in entry["import_query"]:
            window = "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp"
            assert window in entry["import_query"], key
        if key.endswith("_internal_only"):
            assert "{INTERNAL_" in entry["additional_filtering"], key
    assert used_tables == set(TABLES), "every demo table is read by some manifest entry"
    by_key = {key: entry for _, key, entry in ENTRIES}
    assert by_key["p_ci_builds"]["export_table"] == "ci_builds"
    assert by_key["merge_request_diff_commits"]["incremental_type"] == "load_by_id"
    assert "NULL AS invite_email" in by_key["members"]["import_query"]
    assert by_key["ci_builds_internal_only"]["additional_filtering"].startswith("WHERE ")


def test_connection_info_block() -> None:
    doc = yaml.safe_load((MANIFEST_DIR / "connection_info.yaml").read_text())
    assert doc["connection_info"]["postgres_source_connection_main"] == {
        "database": "GITLAB_COM_DB_NAME",
        "host": "GITLAB_COM_DB_HOST",
        "pass": "GITLAB_COM_DB_PASS",
        "port": "GITLAB_COM_PG_PORT",
        "user": "GITLAB_COM_DB_USER",
    }


@pytest.mark.parametrize(("manifest", "key", "entry"), ENTRIES, ids=[k for _, k, _ in ENTRIES])
def test_manifest_query_runs_on_demo(
    demo: tuple[str, dict[str, int]], manifest: str, key: str, entry: dict[str, Any]
) -> None:
    dsn, counts = demo
    query = _render(entry)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        cur = conn.execute(f"{query}\nLIMIT 0")
        names = [d.name for d in cur.description or []]
        assert names and len(names) == len(set(names)), names
        assert entry["export_table_primary_key"] in names
        rows = _scalar(conn, f"SELECT count(*) FROM ({query}\n) AS q")
    total = counts[_from_table(entry["import_query"])]
    if key.endswith("_internal_only"):
        assert 0 < rows < total, (key, rows, total)  # allow lists give a strict subset
    else:
        assert rows == total, key  # the wide window sees every row


def test_seeds_name_existing_demo_rows(demo: tuple[str, dict[str, int]]) -> None:
    dsn, _ = demo
    full_ns_path = (
        "SELECT string_agg(a.path, '/' ORDER BY t.ord) FROM namespaces n, "
        "unnest(n.traversal_ids) WITH ORDINALITY AS t(nid, ord) "
        "JOIN namespaces a ON a.id = t.nid WHERE n.id = %s"
    )
    with psycopg.connect(dsn) as conn, (SEEDS / "internal_gitlab_namespaces.csv").open() as fh:
        for row in csv.DictReader(fh):
            assert _scalar(conn, full_ns_path, (int(row["namespace_id"]),)) == row["namespace_path"]
    with psycopg.connect(dsn) as conn, (SEEDS / "internal_gitlab_projects.csv").open() as fh:
        for row in csv.DictReader(fh):
            ns_id, path = conn.execute(
                "SELECT namespace_id, path FROM projects WHERE id = %s", (int(row["project_id"]),)
            ).fetchone()  # type: ignore[misc]
            assert f"{_scalar(conn, full_ns_path, (ns_id,))}/{path}" == row["project_path"]


# --------------------------------------------------------------------------- determinism


def test_create_is_deterministic(fresh_db: str) -> None:
    def fingerprint() -> dict[str, str]:
        with psycopg.connect(fresh_db) as conn:
            return {
                t: _scalar(
                    conn, f"SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {t} AS x"
                )
                for t in TABLES
            }

    create(fresh_db, rows=1_500, seed=11, anchor=ANCHOR)
    first = fingerprint()
    create(fresh_db, rows=1_500, seed=11, anchor=ANCHOR)  # re-creates in place
    assert fingerprint() == first
    create(fresh_db, rows=1_500, seed=12, anchor=ANCHOR)
    assert fingerprint()["issues"] != first["issues"]


def test_user_ipv6_addresses_are_valid_past_65535_users(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            f"SELECT {USER_IPV6}::text FROM unnest(ARRAY[1, 65535, 65536, 70000, 2147483647]) "
            "AS t(g) ORDER BY g"
        ).fetchall()
    assert [r[0] for r in rows] == [
        "2001:db8::1/128", "2001:db8::ffff/128", "2001:db8::1:0/128",
        "2001:db8::1:1170/128", "2001:db8::7fff:ffff/128",
    ]  # fmt: skip


# --------------------------------------------------------------------------- touch


def test_touch_reports_exactly_the_changed_rows(fresh_db: str) -> None:
    create(fresh_db, rows=ROWS, seed=SEED, anchor=ANCHOR)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        before = {t: _rows_as_text(conn, t) for t in TABLES}
        max_diff = _scalar(
            conn, "SELECT max(merge_request_diff_id) FROM merge_request_diff_commits"
        )
        started = _scalar(conn, "SELECT now()")

        changed = touch(fresh_db, fraction=0.02, seed=3)

        assert set(changed) == set(TABLES)
        assert all(n > 0 for n in changed.values()), changed
        for table in TABLES:
            # Every inserted or modified row differs from all rows before, and nothing else.
            assert len(_rows_as_text(conn, table) - before[table]) == changed[table], table
            if table not in ("namespace_statistics", "merge_request_diff_commits"):
                fresh = _scalar(
                    conn, f"SELECT count(*) FROM {table} WHERE updated_at >= %s", (started,)
                )
                assert fresh == changed[table], table
        # load_by_id: the new commits are exactly those above the previous max diff id.
        new_commits = _scalar(
            conn,
            "SELECT count(*) FROM merge_request_diff_commits WHERE merge_request_diff_id > %s",
            (max_diff,),
        )
        assert new_commits == changed["merge_request_diff_commits"]
        # New builds go to the newest partition; the partitions still add up.
        assert _scalar(conn, "SELECT count(*) FROM p_ci_builds WHERE partition_id = 102") > 0
        # An incremental window starting at the touch sees exactly the touched issues.
        issues = next(e for _, k, e in ENTRIES if k == "issues")
        query = _render(issues).replace("'1900-01-01'", f"'{started:%Y-%m-%dT%H:%M:%S}'")
        assert _scalar(conn, f"SELECT count(*) FROM ({query}\n) AS q") == changed["issues"]


def test_cli_create_and_touch(fresh_db: str) -> None:
    def run(*args: str) -> dict[str, int]:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), *args, "--dsn", fresh_db],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        return json.loads(proc.stdout)

    assert run("create", "--rows", "1000", "--seed", "1") == planned_counts(1000)
    changed = run("touch", "--fraction", "0.05")
    assert set(changed) == set(TABLES) and all(n >= 1 for n in changed.values())
    assert demo_source.DEFAULT_ROWS == 100_000
