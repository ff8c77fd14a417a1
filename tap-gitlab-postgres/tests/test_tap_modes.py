"""The three ways records leave the tap carry the same rows: RECORD messages built by
Postgres (default), RECORD messages built by singer-sdk, and BATCH files."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from tap_runner import TapRun, connection_config, run_tap
from test_tap_sync import write_manifest

STREAM = "gitlab_db_issues"


@pytest.fixture
def config(tmp_path: Path, fresh_db: str) -> dict:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE issues (id bigint PRIMARY KEY, title text, weight numeric,
                labels text[], meta jsonb, updated_at timestamp);
            INSERT INTO issues SELECT g, E'line\\nbreak "q" ' || g || ' \U0001f600',
                g / 7.0, ARRAY['a', NULL], jsonb_build_object('g', g), now()
            FROM generate_series(1, 2500) g;
            INSERT INTO issues (id) VALUES (2501);
            """
        )
    manifest = write_manifest(
        tmp_path,
        {
            "issues": {
                "export_table": "issues",
                "import_query": "SELECT id, title, weight, labels, meta, updated_at FROM issues\n"
                "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp "
                "AND '{END_TIMESTAMP}'::timestamp",
            }
        },
    )
    return {**connection_config(fresh_db), "manifest_path": str(manifest), "chunk_size": 1000}


def batch_records(run: TapRun) -> list[dict]:
    records = []
    for message in run.of_type("BATCH", STREAM):
        assert message["encoding"] == {"format": "jsonl", "compression": "gzip"}
        for url in message["manifest"]:
            with gzip.open(urlsplit(url).path, "rt", encoding="utf-8") as lines:
                records += [json.loads(line, parse_float=Decimal) for line in lines]
    return records


def without_run_metadata(records: list[dict]) -> list[dict]:
    return sorted(
        ({k: v for k, v in r.items() if not k.startswith("_")} for r in records),
        key=lambda r: r["id"],
    )


def test_fast_sdk_and_batch_output_carry_the_same_rows(tmp_path: Path, config: dict) -> None:
    fast = run_tap(tmp_path, config)
    sdk = run_tap(tmp_path, {**config, "fast_records": False})
    batch_root = tmp_path / "batches"
    batch = run_tap(
        tmp_path,
        {
            **config,
            "batch_config": {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": batch_root.as_uri(), "prefix": "pgp-"},
                "batch_size": 700,
            },
        },
    )
    assert len(fast.records[STREAM]) == 2501
    assert without_run_metadata(fast.records[STREAM]) == without_run_metadata(sdk.records[STREAM])
    assert without_run_metadata(batch_records(batch)) == without_run_metadata(fast.records[STREAM])
    # Same framing either way: version on every record, one ACTIVATE_VERSION at the end.
    for run in (fast, sdk):
        versions = {m["version"] for m in run.of_type("RECORD", STREAM)}
        assert versions == {run.bookmark(STREAM)["table_version"]}
        assert all("time_extracted" in m for m in run.of_type("RECORD", STREAM))
    # Batch records carry the version themselves (BATCH messages have no version field).
    assert {r["_sdc_table_version"] for r in batch_records(batch)} == {
        batch.bookmark(STREAM)["table_version"]
    }
    # Files rotate inside a chunk and a STATE follows each chunk's last file.
    kinds = [m["type"] for m in batch.messages if m["type"] in {"BATCH", "STATE"}]
    assert kinds.count("BATCH") >= 5
    assert kinds[-1] == "STATE"


def test_stream_maps_take_the_sdk_route(tmp_path: Path, config: dict) -> None:
    mapped = {**config, "stream_maps": {STREAM: {"title": None, "id_x2": "id * 2"}}}
    run = run_tap(tmp_path, mapped)
    first = min(run.records[STREAM], key=lambda r: r["id"])
    assert "title" not in first
    assert first["id_x2"] == first["id"] * 2
