"""Every table of both GitLab manifests is discovered, synced and loaded with exact values,
against GitLab's real schema.

1. A source database gets ``gitlab_manifest_tables.sql`` (the 206 tables GitLab's manifests
   read, with gitlab.com's column types, NOT NULL flags and primary keys) and 5 rows in every
   table, generated from the catalog with edge values of every type present
   (tests/gitlab_schema.py). Its default TimeZone and DateStyle are not the tap's.
2. Both manifests (``el_gitlab_dotcom_db_manifest.yaml``: 143 incremental/load_by_id tables,
   ``el_gitlab_dotcom_scd_db_manifest.yaml``: 67 SCD tables) run for both database types they
   use (``main`` and ``ci``, as GitLab ran one DAG per database; here one database holds
   both): ``tap-gitlab-postgres --discover``, then ``tap-gitlab-postgres | target-postgres``
   with meltano.yml's dev configuration (the extractors' Parquet ``batch_config``, the
   target's ``config`` block), no state (so incremental tables do a full sync, in chunks of
   2 rows).
3. RAW must hold, for every stream, exactly the rows of the manifest query run in the source
   without its time window, matched by the query's primary key, value by value: each value
   as Postgres prints it (``::text``) in the source and in RAW, equal as text except where a
   documented conversion of the tap applies (``gitlab_schema.normalise``, README "Types are
   mapped" and "BATCH mode"):

   - float8: NaN / ±Infinity -> NULL; otherwise the same double (RAW's NUMERIC: no -0);
   - numeric: NaN -> NULL; otherwise the same decimal;
   - timestamp (naive UTC), timestamptz: the same UTC instant (RAW: naive UTC timestamp);
     dates and timestamps outside years 1-9999 -> the nearest bound;
   - bytea -> hex; integer arrays -> arrays (RAW: bigint[]);
   - a repeated identical select item (namespaces.traversal_ids) -> loaded once.

   The conversions must each have happened at least once, every stream must have rows and
   values compared, and test_comparison_catches_changed_values shows the comparison fails on
   anything else.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pgp_testkit import gitlab_schema as gs
from pgp_testkit import reference
from psycopg import sql
from tap_gitlab_postgres.allowlist import AllowLists
from tap_gitlab_postgres.manifest import Manifest, ManifestTable, load_manifest

pytestmark = pytest.mark.e2e

SOURCE_DB = "gitlab_schema_src"
WAREHOUSE_DB = "gitlab_schema_wh"
ROW_COUNTS = "pgp_row_counts"
# Manifest tables per (file, database_type), from GitLab's files at eb2a578 (NOTES.md).
TABLE_COUNTS = {
    ("el_gitlab_dotcom_db_manifest.yaml", "main"): 129,
    ("el_gitlab_dotcom_db_manifest.yaml", "ci"): 14,
    ("el_gitlab_dotcom_scd_db_manifest.yaml", "main"): 59,
    ("el_gitlab_dotcom_scd_db_manifest.yaml", "ci"): 8,
}
# Documented conversions the generated values must have gone through at least once
# (counted by gitlab_schema.normalise on values that then matched RAW).
REQUIRED_CONVERSIONS = (
    "float8 NaN/Infinity -> NULL",
    "numeric NaN -> NULL",
    "timestamp outside years 1-9999 -> bound",
    "timestamptz outside years 1-9999 -> bound",
    "date outside years 1-9999 -> bound",
    "bytea -> hex",
)


@dataclass
class Discovery:
    returncode: int
    catalog: dict | None
    stderr: str


@dataclass
class Loaded:
    pg: Any
    home: Path
    manifests: dict[str, Manifest]
    columns: dict[str, list[gs.SourceColumn]]
    filled: dict[str, int]
    discovery: dict[tuple[str, str], Discovery]
    runs: dict[tuple[str, str], gs.Run]
    seconds: dict[str, float]

    def connect(self, db: str) -> psycopg.Connection:
        conn = psycopg.connect(self.pg.dsn(db), autocommit=True)
        for name, value in gs.SESSION.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        return conn

    def tables(self, database_type: str | None = None) -> list[tuple[str, ManifestTable]]:
        return [
            (name, table)
            for name, manifest in self.manifests.items()
            for table in manifest.tables
            if database_type in (None, table.database_type)
        ]


def _from_table(table: ManifestTable) -> str:
    match = re.search(r"\bFROM\s+([A-Za-z_]\w*)", table.import_query, re.IGNORECASE)
    assert match, f"no FROM in {table.key}"
    return match.group(1)


def _key_columns(manifests: dict[str, Manifest]) -> dict[str, set[str]]:
    """Source table -> the manifests' primary-key columns read from it (never NULL there)."""
    keys: dict[str, set[str]] = {}
    for manifest in manifests.values():
        for table in manifest.tables:
            keys.setdefault(_from_table(table), set()).add(table.primary_key)
    return keys


def _run_config(loaded_cfg: gs.DevConfig, home: Path, manifest: Path, extractor: str, kind: str):
    config = json.loads(json.dumps(loaded_cfg.tap[extractor]))
    config.update(manifest_path=str(manifest), database_type=kind)
    # The batch files go to the test's folder (not .meltano/run), one folder per run: the tap
    # deletes a stream's files of earlier runs when it starts that stream, and the runs here
    # overlap (each has its own pgp_row_counts stream).
    config["batch_config"]["storage"]["root"] = (home / "batches" / f"{extractor}-{kind}").as_uri()
    return gs.write_config(home / f"{extractor}-{kind}.json", config)


@pytest.fixture(scope="module")
def loaded(pg, tmp_path_factory) -> Loaded:
    home = tmp_path_factory.mktemp("gitlab_schema")
    seconds: dict[str, float] = {}
    began = time.monotonic()
    reference_dir = reference.reference_dir()
    manifests = {name: load_manifest(reference_dir / name) for name in gs.MANIFESTS}

    pg.create_database(SOURCE_DB, drop=True)
    pg.create_database(WAREHOUSE_DB, drop=True)
    with psycopg.connect(pg.dsn(SOURCE_DB), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(reference.reference_file(gs.SCHEMA_SQL).read_text())  # type: ignore[arg-type]
        columns = gs.catalog(conn)
        filled = gs.fill(conn, _key_columns(manifests))
        for name, value in gs.SOURCE_DEFAULTS.items():
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(SOURCE_DB), sql.Identifier(name), sql.Literal(value)
                )
            )
    seconds["source"] = time.monotonic() - began

    cfg = gs.DevConfig.load(pg, SOURCE_DB, WAREHOUSE_DB)
    target_config = gs.write_config(home / "target-postgres.json", cfg.target)
    configs = {
        (name, kind): _run_config(cfg, home, reference_dir / name, extractor, kind)
        for name, extractor in gs.MANIFESTS.items()
        for kind in gs.DATABASE_TYPES
    }

    began = time.monotonic()
    discovering = {
        run: subprocess.Popen(
            [str(gs.TAP), "--config", str(path), "--discover"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=gs.ROOT,
        )
        for run, path in configs.items()
    }
    discovery = {}
    for run, proc in discovering.items():
        out, err = proc.communicate(timeout=300)
        catalog = json.loads(out) if proc.returncode == 0 else None
        discovery[run] = Discovery(proc.returncode, catalog, err)
    seconds["discovery"] = time.monotonic() - began

    # The smallest run first, alone: its target creates the schema and pgp_row_counts, which
    # every run loads into; the other three then run side by side.
    began = time.monotonic()
    logs = home / "logs"
    logs.mkdir()

    def start(run: tuple[str, str]):
        name = f"{gs.MANIFESTS[run[0]]}-{run[1]}"
        return gs.start_pipeline(name, configs[run], target_config, logs)

    order = sorted(configs, key=lambda run: TABLE_COUNTS[run])
    runs = {order[0]: gs.finish_pipeline(start(order[0]))}
    started = {run: start(run) for run in order[1:]}
    runs.update({run: gs.finish_pipeline(proc) for run, proc in started.items()})
    seconds["sync"] = time.monotonic() - began
    return Loaded(pg, home, manifests, columns, filled, discovery, runs, seconds)


# ============================================================================== the schema


def test_source_is_gitlabs_schema_filled(loaded: Loaded) -> None:
    # GitLab's files, read as plain YAML (not through the tap): 143 + 67 tables.
    for (name, kind), count in TABLE_COUNTS.items():
        raw = yaml.safe_load((reference.reference_dir() / name).read_text())["tables"]
        assert sum(1 for t in raw.values() if t["database_type"] == kind) == count
        assert len([t for file, t in loaded.tables(kind) if file == name]) == count
    assert len(loaded.columns) == 206
    # Every table a manifest reads exists, and every table holds its rows.
    assert {_from_table(t) for _, t in loaded.tables()} <= set(loaded.columns)
    assert loaded.filled == dict.fromkeys(loaded.columns, gs.ROWS)
    with loaded.connect(SOURCE_DB) as conn:
        for table in loaded.columns:
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            assert count == (gs.ROWS,), table
        # The tap's session settings are not the database's defaults.
        fresh = psycopg.connect(loaded.pg.dsn(SOURCE_DB))
        with fresh:
            assert fresh.execute("SHOW TimeZone").fetchone() == (gs.SOURCE_DEFAULTS["TimeZone"],)


# ============================================================================== discovery


def test_discovery_lists_every_manifest_table(loaded: Loaded) -> None:
    allow = AllowLists.load(gs.PROJECTS_CSV, gs.NAMESPACES_CSV)
    everything: set[str] = set()
    with loaded.connect(SOURCE_DB) as conn:
        for (name, kind), found in loaded.discovery.items():
            assert found.returncode == 0, found.stderr[-3000:]
            assert found.catalog is not None
            streams = {s["tap_stream_id"]: s for s in found.catalog["streams"]}
            tables = [t for n, t in loaded.tables(kind) if n == name]
            assert set(streams) == {t.stream_name for t in tables} | {ROW_COUNTS}, (name, kind)
            assert len(streams) == TABLE_COUNTS[name, kind] + 1
            for table in tables:
                stream = streams[table.stream_name]
                assert stream["key_properties"] == [table.query.primary_key]
                # Columns: exactly the query's (a repeated select item once) + metadata.
                names = gs.run_as_text(conn, table.query.full_sql(allow)).names
                metadata = ["_uploaded_at"] + (
                    ["_task_instance"] if table.advanced_metadata else []
                )
                assert list(stream["schema"]["properties"]) == names + metadata, table.key
            everything |= set(streams) - {ROW_COUNTS}
    assert len(everything) == 143 + 67


# =================================================================================== sync


def test_every_sync_exits_0(loaded: Loaded) -> None:
    for run, result in loaded.runs.items():
        assert (result.tap_rc, result.target_rc) == (0, 0), (
            f"{run}: tap exit {result.tap_rc}, target exit {result.target_rc}\n"
            f"--- tap\n{result.tap_log[-4000:]}\n--- target\n{result.target_log[-4000:]}"
        )


# ============================================================================ exact values


def _raw_columns(conn: psycopg.Connection, stream: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (gs.RAW_SCHEMA, stream),
        )
    ]


def _raw_rows(conn: psycopg.Connection, stream: str, names: list[str]) -> list[tuple]:
    query = sql.SQL("SELECT {} FROM {}.{}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names),
        sql.Identifier(gs.RAW_SCHEMA),
        sql.Identifier(stream),
    )
    return conn.execute(query).fetchall()


def _check_columns(table: ManifestTable, names: list[str], raw: list[str]) -> list[str]:
    stream = table.stream_name
    problems = []
    if missing := [n for n in names if n not in raw]:
        problems.append(f"{stream}: RAW lacks columns {missing}")
    extra = [c for c in raw if c not in names]
    if unknown := [c for c in extra if not c.startswith("_sdc_") and c not in gs.TAP_METADATA]:
        problems.append(f"{stream}: RAW has columns the query does not: {unknown}")
    if "_uploaded_at" not in raw:
        problems.append(f"{stream}: RAW lacks _uploaded_at")
    if ("_task_instance" in raw) != table.advanced_metadata:
        problems.append(f"{stream}: _task_instance in RAW but advanced_metadata is not set")
    return problems


def test_raw_holds_exactly_the_source_rows(loaded: Loaded) -> None:
    allow = AllowLists.load(gs.PROJECTS_CSV, gs.NAMESPACES_CSV)
    problems: list[str] = []
    compared: list[gs.Comparison] = []
    conversions: Counter[str] = Counter()
    filtered_out = 0
    with loaded.connect(SOURCE_DB) as src, loaded.connect(WAREHOUSE_DB) as wh:
        raw_tables = {
            r[0]
            for r in wh.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (gs.RAW_SCHEMA,),
            )
        }
        for _, table in loaded.tables():
            stream = table.stream_name
            if stream not in raw_tables:
                problems.append(f"{stream}: no RAW table")
                continue
            oracle, window_column = gs.oracle_sql(table.import_query, table.additional_filtering)
            expected = gs.run_as_text(src, oracle)
            # The tap's own full-sync query returns the same rows (cross-check of the oracle).
            tap_query = gs.run_as_text(src, table.query.full_sql(allow))
            if (tap_query.names, sorted(tap_query.rows, key=str)) != (
                expected.names,
                sorted(expected.rows, key=str),
            ):
                problems.append(f"{stream}: the tap's full-sync query differs from the manifest's")
            if window_column is not None and window_column != table.query.replication_key:
                problems.append(f"{stream}: window on {window_column}, tap uses another column")
            if expected.repeated:
                conversions["repeated select item loaded once"] += sum(expected.repeated.values())
            # Rows read: all of the table's without filtering; a filter must leave some.
            filtering = bool(table.additional_filtering) or bool(
                re.search(r"\bWHERE\b", oracle.replace("WHERE true", ""), re.IGNORECASE)
            )
            if not filtering and len(expected.rows) != gs.ROWS:
                problems.append(f"{stream}: query reads {len(expected.rows)} of {gs.ROWS} rows")
            if not expected.rows:
                problems.append(f"{stream}: no source rows to compare (fix the generator)")
            filtered_out += gs.ROWS - len(expected.rows)

            raw_columns = _raw_columns(wh, stream)
            if column_problems := _check_columns(table, expected.names, raw_columns):
                problems += column_problems
                continue
            result = gs.diff_rows(
                stream,
                expected.names,
                expected.types,
                table.query.primary_key,
                expected.rows,
                _raw_rows(wh, stream, expected.names),
            )
            problems += result.problems
            if result.rows != len(expected.rows) or result.values == 0 or result.non_null == 0:
                problems.append(
                    f"{stream}: only {result.rows} rows, {result.values} values compared"
                )
            compared.append(result)
            conversions.update(result.conversions)

    print(
        f"\n{len(compared)} streams, {sum(c.rows for c in compared)} rows, "
        f"{sum(c.values for c in compared)} values ({sum(c.non_null for c in compared)} not "
        f"NULL) compared; {filtered_out} rows filtered out by the queries; seconds: "
        f"{ {k: round(v, 1) for k, v in loaded.seconds.items()} }; conversions:"
    )
    for rule, count in sorted(conversions.items()):
        print(f"  {count:6}  {rule}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:300])
    # Proof that the comparison ran over everything, and the edge values went through.
    assert len(compared) == 143 + 67
    assert sum(c.values for c in compared) > 5000
    assert filtered_out > 0
    missing = [rule for rule in REQUIRED_CONVERSIONS if not conversions[rule]]
    assert not missing, f"edge values never went through {missing}: {dict(conversions)}"
    assert conversions["repeated select item loaded once"] == 1  # namespaces.traversal_ids


def test_row_counts_match_the_source(loaded: Loaded) -> None:
    """pgp_row_counts (the tap's count of what it read, and the source's count(*) after the
    copy) agrees with the independently rendered query."""
    with loaded.connect(SOURCE_DB) as src, loaded.connect(WAREHOUSE_DB) as wh:
        counts = {
            r[0]: r[1:]
            for r in wh.execute(
                f"SELECT stream, run_type, rows_read, source_rows FROM {gs.RAW_SCHEMA}.{ROW_COUNTS}"
            )
        }
        for _, table in loaded.tables():
            oracle, _ = gs.oracle_sql(table.import_query, table.additional_filtering)
            (rows,) = src.execute(f"SELECT count(*) FROM (\n{oracle}\n) AS q").fetchone()  # type: ignore
            run_type = "snapshot" if table.load_type.value == "scd" else "full_sync"
            assert counts.get(table.stream_name) == (run_type, rows, rows), table.stream_name
    assert len(counts) == 143 + 67


# ================================================================ the comparison can fail


def test_comparison_catches_changed_values() -> None:
    """The normalisations only forgive the documented conversions: anything else fails."""
    names = ["id", "f", "n", "ts", "tz", "d", "b", "t", "a"]
    types = [
        "int8",
        "float8",
        "numeric",
        "timestamp",
        "timestamptz",
        "date",
        "bytea",
        "text",
        "_int4",
    ]
    source = (
        "1", "0.30000000000000004", "99999999999999.9999", "infinity",
        "2024-02-29 23:30:00.000001+00", "4714-11-24 BC", "\\xdeadbeef", "é😀", "{1,NULL}",
    )  # fmt: skip
    raw = (
        "1", "0.30000000000000004", "99999999999999.9999", "9999-12-31 23:59:59.999999",
        "2024-02-29 23:30:00.000001", "0001-01-01", "deadbeef", "é😀", "{1,NULL}",
    )  # fmt: skip
    ok = gs.diff_rows("s", names, types, "id", [source], [raw])
    assert (ok.problems, ok.rows, ok.values) == ([], 1, len(names))
    changes = {
        "f": "0.3",  # another double
        "n": "99999999999999.9998",
        "ts": "9999-12-31 23:59:59.999998",
        "tz": "2024-02-29 23:30:00",  # a microsecond lost
        "d": "0001-01-02",
        "b": "deadbeee",
        "t": "é😀 ",
        "a": "{1}",
    }
    for name, value in changes.items():
        changed = list(raw)
        changed[names.index(name)] = value
        found = gs.diff_rows("s", names, types, "id", [source], [tuple(changed)]).problems
        assert len(found) == 1 and f"s.{name} " in found[0], (name, found)
        nulled = list(raw)
        nulled[names.index(name)] = None
        assert len(gs.diff_rows("s", names, types, "id", [source], [tuple(nulled)]).problems) == 1
    # Rows: missing, extra, duplicated.
    assert gs.diff_rows("s", names, types, "id", [source], []).problems == [
        "s: row id='1' missing from RAW"
    ]
    other = ("2", *raw[1:])
    assert len(gs.diff_rows("s", names, types, "id", [source], [raw, other]).problems) == 1
    assert len(gs.diff_rows("s", names, types, "id", [source], [raw, raw]).problems) == 1
    # NaN -> NULL is forgiven for floats only when the source was NaN.
    nan = ("1", "NaN", *source[2:])
    assert gs.diff_rows("s", names, types, "id", [nan], [("1", None, *raw[2:])]).problems == []
    assert gs.diff_rows("s", names, types, "id", [source], [("1", None, *raw[2:])]).problems
