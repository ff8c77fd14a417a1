"""The real target-snowflake (Meltano venv, unmodified) into the offline Snowflake emulator.

tests/snowflake_emulator.py runs a fakesnow server extended where target-snowflake's load path
needs it (user stage, COPY with transformation from JSON and Parquet, REMOVE, DROP FILE FORMAT,
NULL timestamps, no database made up at login); the target only has its connection pointed at
it. With production's config (meltano.yml: RAW, append-only, metadata columns, hard deletes)
both load paths land the input's values exactly, in Snowflake's types, and leave no staged file
or file format behind, as on Snowflake:

- RECORD mode: the target writes gzip JSONL files, PUTs them to ``@~`` and COPYs from JSON; a
  second full copy into the existing table replaces the first (ACTIVATE_VERSION, hard delete);
- BATCH mode, Arrow: the target converts the Arrow IPC file to Parquet and COPYs from that,
  reading the ``_sdc_*`` columns the file lacks as NULL, and leaves the file in place;
- a missing database fails the load, as target-snowflake checks for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from pgp_testkit.dbt import ROOT
from pgp_testkit.snowflake_emulator import Emulator, snowflake_emulator, write_arrow

pytestmark = pytest.mark.e2e

STREAM = "payments"
TABLE = "RAW.TAP_POSTGRES.PAYMENTS"
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "ratio": {"type": ["number", "null"]},
        "amount": {
            "type": ["string", "null"],
            "format": "x-singer.decimal",
            "precision": 18,
            "scale": 4,
        },
        "paid_at": {"type": ["string", "null"], "format": "date-time"},
        "ok": {"type": ["boolean", "null"]},
        "note": {"type": ["string", "null"]},
        "day": {"type": ["string", "null"], "format": "date"},
        "paid_time": {"type": ["string", "null"], "format": "time"},
        "details": {"type": ["object", "null"]},
    },
}
RECORDS: list[dict[str, Any]] = [
    {
        "id": 1,
        "ratio": 1234.5678,
        "amount": "-99999999999999.9999",
        "paid_at": "2024-01-02T03:04:05.123456+00:00",
        "ok": True,
        "note": "x",
        "day": "2024-01-02",
        "paid_time": "03:04:05.123456",
        "details": {"a": 1, "tags": ["x", "y"]},
    },
    {
        "id": 2,
        "ratio": -0.1,
        "amount": "99999999999999.9999",
        "paid_at": "1999-12-31T23:59:59.999999+00:00",
        "ok": False,
        "note": 'it\'s "quoted" ✓',
        "day": "1999-12-31",
        "paid_time": "23:59:59",
        "details": {"a": None, "tags": []},
    },
    {"id": 3, **{name: None for name in SCHEMA["properties"] if name != "id"}},
]
STATE = {"bookmarks": {STREAM: {"replication_key_value": 3}}}
# What Snowflake's connector hands back for RECORDS (query() turns values into JSON).
EXPECTED = [
    (1, 1234.5678, "-99999999999999.9999", "2024-01-02T03:04:05.123456", True, "x",
     "2024-01-02", "03:04:05.123456", {"a": 1, "tags": ["x", "y"]}),
    (2, -0.1, "99999999999999.9999", "1999-12-31T23:59:59.999999", False, "it's \"quoted\" ✓",
     "1999-12-31", "23:59:59", {"a": None, "tags": []}),
    (3, None, None, None, None, None, None, None, None),
]  # fmt: skip
METADATA = [
    "_sdc_extracted_at",
    "_sdc_received_at",
    "_sdc_batched_at",
    "_sdc_deleted_at",
    "_sdc_sequence",
    "_sdc_table_version",
    "_sdc_sync_started_at",
]
# The Snowflake types target-snowflake creates for SCHEMA (x-singer.decimal: its precision).
COLUMN_TYPES = [
    ("ID", "NUMBER", 38, 0),
    ("RATIO", "FLOAT", None, None),
    ("AMOUNT", "NUMBER", 18, 4),
    ("PAID_AT", "TIMESTAMP_NTZ", None, None),
    ("OK", "BOOLEAN", None, None),
    ("NOTE", "TEXT", None, None),
    ("DAY", "DATE", None, None),
    ("PAID_TIME", "TIME", None, None),
    ("DETAILS", "VARIANT", None, None),
    *((name.upper(), "TIMESTAMP_NTZ", None, None) for name in METADATA[:4]),
    *((name.upper(), "NUMBER", 38, 0) for name in METADATA[4:]),
]


def production_config(**overrides: Any) -> dict[str, Any]:
    """meltano.yml's target-snowflake config (RAW, append-only, ...) + emulator credentials."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (loader,) = (p for p in project["plugins"]["loaders"] if p["name"] == "target-snowflake")
    return {
        **loader["config"],
        "account": "fakesnow",
        "user": "fake",
        "password": "snow",
        **overrides,
    }


def singer(*messages: dict[str, Any]) -> bytes:
    return "".join(json.dumps(message) + "\n" for message in messages).encode()


def assert_loaded_and_cleaned_up(
    emulator: Emulator, metadata: Sequence[str]
) -> list[tuple[Any, ...]]:
    """RAW holds EXPECTED in Snowflake's types, nothing is left staged; returns ``metadata``."""
    rows, types, staged, file_formats, metadata_rows = emulator.queries(
        f"SELECT {', '.join(SCHEMA['properties'])} FROM {TABLE} ORDER BY id",
        "SELECT column_name, data_type, numeric_precision, numeric_scale "
        "FROM RAW.information_schema.columns WHERE table_schema = 'TAP_POSTGRES' "
        "AND table_name = 'PAYMENTS' ORDER BY ordinal_position",
        "LIST @~",
        "SHOW FILE FORMATS IN ACCOUNT",
        f"SELECT {', '.join(metadata)} FROM {TABLE} ORDER BY id",
    )
    # VARIANT comes back as JSON text; a JSON null element is a VARIANT null, as on Snowflake.
    assert [(*row[:-1], None if row[-1] is None else json.loads(row[-1])) for row in rows] == (
        EXPECTED
    )
    assert types == COLUMN_TYPES
    # Each batch's REMOVE emptied the user stage; each sink dropped its file format.
    assert staged == []
    assert file_formats == []
    return metadata_rows


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with snowflake_emulator(tmp_path / "logs") as running:
        running.query("CREATE DATABASE RAW")  # production's RAW exists before any load
        yield running


def test_record_messages_land_exactly(emulator: Emulator, tmp_path: Path) -> None:
    def full_copy(version: int) -> bytes:
        return singer(
            {"type": "SCHEMA", "stream": STREAM, "schema": SCHEMA, "key_properties": ["id"]},
            *(
                {"type": "RECORD", "stream": STREAM, "record": record, "version": version}
                for record in RECORDS
            ),
            {"type": "ACTIVATE_VERSION", "stream": STREAM, "version": version},
            {"type": "STATE", "value": STATE},
        )

    # The first run creates the schema and table; the second finds them (production's usual
    # run: no current schema in the session) and its ACTIVATE_VERSION hard-deletes the first.
    for version in (1, 2):
        done = emulator.run_target(production_config(), full_copy(version), tmp_path / "run")
        assert done.returncode == 0, done.stderr[-3000:]
        assert [json.loads(line) for line in done.stdout.splitlines()] == [STATE]

    metadata = ["_sdc_received_at", "_sdc_sequence", "_sdc_table_version", "_sdc_deleted_at"]
    # RECORD mode stamps every row with its metadata.
    received, sequence, version, deleted = zip(
        *assert_loaded_and_cleaned_up(emulator, metadata), strict=True
    )
    assert all(received) and all(sequence)
    assert set(version) == {2}
    assert set(deleted) == {None}


def test_arrow_batch_lands_exactly_with_null_metadata(emulator: Emulator, tmp_path: Path) -> None:
    arrow_file = tmp_path / "tap" / f"{STREAM}-0001.arrow"
    arrow_file.parent.mkdir()
    arrow_types = {
        "id": "int64",
        "ratio": "float64",
        "amount": "string",  # x-singer.decimal travels as text
        "paid_at": "timestamp[us, tz=UTC]",
        "ok": "bool",
        "note": "string",
        "day": "date32",
        "paid_time": "time64[us]",
        "details": None,  # a struct, inferred from the dicts
    }
    write_arrow(
        arrow_file,
        [
            {"name": name, "type": kind, "values": [record[name] for record in RECORDS]}
            for name, kind in arrow_types.items()
        ],
    )
    written = arrow_file.read_bytes()
    messages = singer(
        {"type": "SCHEMA", "stream": STREAM, "schema": SCHEMA, "key_properties": ["id"]},
        {
            "type": "BATCH",
            "stream": STREAM,
            "encoding": {"format": "arrow", "compression": "none"},
            "manifest": [arrow_file.as_uri()],
        },
        {"type": "STATE", "value": STATE},
    )
    config = production_config(
        add_record_metadata=True, clean_up_batch_files=False, load_method="append-only"
    )

    done = emulator.run_target(config, messages, tmp_path / "run")

    assert done.returncode == 0, done.stderr[-3000:]
    assert [json.loads(line) for line in done.stdout.splitlines()] == [STATE]
    # The file has no _sdc_* columns: Snowflake reads $1:_sdc_... as NULL, and so does this.
    metadata = assert_loaded_and_cleaned_up(emulator, METADATA)
    assert metadata == [(None,) * len(METADATA)] * len(RECORDS)
    assert arrow_file.read_bytes() == written  # clean_up_batch_files: false keeps it


def test_missing_database_fails_the_load_as_on_snowflake(
    emulator: Emulator, tmp_path: Path
) -> None:
    # Logging in doesn't create it: target-snowflake's SHOW DATABASES check catches it.
    messages = singer(
        {"type": "SCHEMA", "stream": STREAM, "schema": SCHEMA, "key_properties": ["id"]},
        {"type": "RECORD", "stream": STREAM, "record": RECORDS[0]},
    )

    done = emulator.run_target(production_config(database="NOPE"), messages, tmp_path / "run")

    assert done.returncode != 0
    assert "Database 'NOPE' does not exist" in done.stderr
    assert "NOPE" not in {row[1] for row in emulator.query("SHOW DATABASES")}
