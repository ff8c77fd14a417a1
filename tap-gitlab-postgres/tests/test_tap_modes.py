"""The ways records leave the tap carry the same rows: RECORD messages built by Postgres
(default), RECORD messages built by singer-sdk, and BATCH files in each encoding (jsonl,
parquet, arrow)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pgp_testkit.dsn import connection_config
from pgp_testkit.tap import TapRun, run_tap, write_manifest

STREAM = "gitlab_db_issues"


@pytest.fixture
def config(tmp_path: Path, fresh_db: str) -> dict:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE issues (id bigint PRIMARY KEY, title text, weight numeric,
                labels text[], meta jsonb, updated_at timestamp, closed_at timestamptz,
                flag boolean, ratio float8, due date, scores int[], sha bytea, small int2);
            INSERT INTO issues SELECT g, E'line\\nbreak "q", ' || g || ' \U0001f600',
                g / 7.0, ARRAY['a', NULL, 'b,"c"'], jsonb_build_object('g', g, 'q', 'x"y'),
                now(), now() - g * interval '1 minute 0.1 second', g % 3 = 0, g / 3.0,
                date '2024-02-29' + g, ARRAY[g, NULL], '\\xdeadbeef', g % 100
            FROM generate_series(1, 2500) g;
            INSERT INTO issues (id, title, ratio, due, closed_at) VALUES
                (2501, NULL, NULL, NULL, NULL),
                (2502, '', 'NaN', 'infinity', 'infinity'),
                (2503, ',', '-Infinity', '0044-03-15 BC', '0044-03-15 12:00 BC');
            """
        )
    manifest = write_manifest(
        tmp_path,
        {
            "issues": {
                "export_table": "issues",
                "import_query": "SELECT id, title, weight, labels, meta, updated_at, "
                "closed_at, flag, ratio, due, scores, sha, small FROM issues\n"
                "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp "
                "AND '{END_TIMESTAMP}'::timestamp",
            }
        },
    )
    return {**connection_config(fresh_db), "manifest_path": str(manifest), "chunk_size": 1000}


ROWS = 2503


def batch_files(run: TapRun) -> list[tuple[str, list[dict]]]:
    """(format, records) of every batch file, in order."""
    files = []
    for message in run.of_type("BATCH", STREAM):
        fmt = message["encoding"]["format"]
        for url in message["manifest"]:
            path = urlsplit(url).path
            if fmt == "jsonl":
                assert message["encoding"]["compression"] == "gzip"
                with gzip.open(path, "rt", encoding="utf-8") as lines:
                    records = [json.loads(line, parse_float=Decimal) for line in lines]
            elif fmt == "parquet":
                records = pq.read_table(path).to_pylist()
            else:
                with pa.ipc.open_file(path) as reader:
                    records = reader.read_all().to_pylist()
            files.append((fmt, records))
    return files


def batch_records(run: TapRun) -> list[dict]:
    return [r for _, records in batch_files(run) for r in records]


def canonical(value: object, schema: dict) -> object:
    """A value as the target stores it: what RECORD mode's JSON text and a columnar
    file's typed value must agree on."""
    if value is None:
        return None
    if schema.get("format") == "date-time":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime) and value.utcoffset() is not None
        return value.astimezone(UTC)
    if "number" in schema["type"]:
        return Decimal(str(value))
    return value


# Rows whose dates lie outside years 1-9999 (compared separately: see the last test).
EDGE_IDS = {2502, 2503}
EDGE_COLUMNS = {"due", "closed_at"}


def without_run_metadata(records: list[dict], schema: dict) -> list[dict]:
    props = schema["properties"]
    out = []
    for r in records:
        row = {k: canonical(v, props[k]) for k, v in r.items() if not k.startswith("_")}
        if row["id"] in EDGE_IDS:
            row = {k: v for k, v in row.items() if k not in EDGE_COLUMNS}
        out.append(row)
    return sorted(out, key=lambda r: r["id"])


def batch_config(root: Path, fmt: str, compression: str | None) -> dict:
    encoding = {"format": fmt} | ({"compression": compression} if compression else {})
    return {
        "encoding": encoding,
        "storage": {"root": root.as_uri(), "prefix": "pgp-"},
        "batch_size": 700,
    }


def test_fast_and_sdk_records_carry_the_same_rows(tmp_path: Path, config: dict) -> None:
    fast = run_tap(tmp_path, config)
    sdk = run_tap(tmp_path, {**config, "fast_records": False})
    [schema] = [m["schema"] for m in fast.of_type("SCHEMA", STREAM)]
    assert len(fast.records[STREAM]) == ROWS
    assert without_run_metadata(fast.records[STREAM], schema) == without_run_metadata(
        sdk.records[STREAM], schema
    )
    # Same framing either way: version on every record, one ACTIVATE_VERSION at the end.
    for run in (fast, sdk):
        versions = {m["version"] for m in run.of_type("RECORD", STREAM)}
        assert versions == {run.bookmark(STREAM)["table_version"]}
        assert all("time_extracted" in m for m in run.of_type("RECORD", STREAM))


@pytest.mark.parametrize(
    ("fmt", "compression"), [("jsonl", "gzip"), ("parquet", None), ("arrow", "zstd")]
)
def test_batch_files_carry_the_records_rows(
    tmp_path: Path, config: dict, fmt: str, compression: str | None
) -> None:
    fast = run_tap(tmp_path, config)
    [schema] = [m["schema"] for m in fast.of_type("SCHEMA", STREAM)]
    batch = run_tap(
        tmp_path, {**config, "batch_config": batch_config(tmp_path / "b", fmt, compression)}
    )
    files = batch_files(batch)
    records = [r for _, rs in files for r in rs]
    assert {f for f, _ in files} == {fmt}
    assert without_run_metadata(records, schema) == without_run_metadata(
        fast.records[STREAM], schema
    )
    # Batch records carry the version themselves (BATCH messages have no version field).
    assert {r["_sdc_table_version"] for r in records} == {batch.bookmark(STREAM)["table_version"]}
    assert {r["_uploaded_at"] is not None for r in records} == {True}
    # Files rotate at exactly batch_size rows inside a chunk (chunks of ~1000 rows), and a
    # STATE follows each chunk's last file.
    sizes = [len(rs) for _, rs in files]
    assert max(sizes) == 700 and sum(sizes) == ROWS
    kinds = [m["type"] for m in batch.messages if m["type"] in {"BATCH", "STATE"}]
    assert kinds.count("BATCH") >= 5
    assert kinds[-1] == "STATE"


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_columnar_types_and_edge_values(tmp_path: Path, config: dict, fmt: str) -> None:
    batch = run_tap(tmp_path, {**config, "batch_config": batch_config(tmp_path, fmt, None)})
    [message] = batch.of_type("BATCH", STREAM)[:1]
    path = urlsplit(message["manifest"][0]).path
    if fmt == "parquet":
        arrow_schema = pq.read_schema(path)
    else:
        with pa.ipc.open_file(path) as reader:
            arrow_schema = reader.schema
    types = {f.name: str(f.type).replace("<element:", "<item:") for f in arrow_schema}
    assert types == {
        "id": "int64",
        "title": "string",
        "weight": "string",  # numeric: its exact digits
        "labels": "list<item: string>",
        "meta": "string",  # JSON text, as in the records
        "updated_at": "timestamp[us, tz=UTC]",
        "closed_at": "timestamp[us, tz=UTC]",
        "flag": "bool",
        "ratio": "string",  # float8: its shortest exact text
        "due": "string",
        "scores": "list<item: int64>",
        "sha": "string",
        "small": "int64",
        "_uploaded_at": "string",
        "_sdc_table_version": "int64",
    }
    rows = {r["id"]: r for r in batch_records(batch)}
    assert rows[7]["weight"] == "1.00000000000000000000"
    assert rows[7]["labels"] == ["a", None, 'b,"c"']
    assert rows[7]["title"] == 'line\nbreak "q", 7 \U0001f600'
    assert rows[7]["scores"] == [7, None]
    assert rows[7]["sha"] == "deadbeef"
    assert (rows[2502]["title"], rows[2503]["title"]) == ("", ",")
    assert rows[2501]["title"] is None and rows[2501]["ratio"] is None
    # NaN/infinities arrive as NULL, dates and timestamps outside years 1-9999 as the
    # nearest bound, as in the records.
    assert rows[2502]["ratio"] is None and rows[2503]["ratio"] is None
    assert rows[2502]["due"] == "9999-12-31" and rows[2503]["due"] == "0001-01-01"
    assert rows[2502]["closed_at"] == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert rows[2503]["closed_at"] == datetime(1, 1, 1, tzinfo=UTC)


def test_unknown_batch_format_is_refused(tmp_path: Path, config: dict) -> None:
    bad = {**config, "batch_config": batch_config(tmp_path, "arrow", "gzip")}
    run = run_tap(tmp_path, bad, check=False)
    assert run.returncode != 0
    assert "compression 'gzip' is not supported with format 'arrow'" in run.stderr


def test_stream_maps_take_the_sdk_route(tmp_path: Path, config: dict) -> None:
    mapped = {**config, "stream_maps": {STREAM: {"title": None, "id_x2": "id * 2"}}}
    run = run_tap(tmp_path, mapped)
    first = min(run.records[STREAM], key=lambda r: r["id"])
    assert "title" not in first
    assert first["id_x2"] == first["id"] * 2
