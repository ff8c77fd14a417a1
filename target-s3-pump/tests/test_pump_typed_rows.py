"""Typed rows (target_s3_pump.rows): RECORD lines decoded straight into Structs.

The typed path may refuse more lines than the SDK, never fewer: a line it takes must be one
the SDK takes, with the same values and the same CSV. Lines it refuses go the usual way.
"""

from __future__ import annotations

import random
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pgp_testkit.s3pump import (
    STAMP,
    Bucket,
    bookmark_state,
    pump,
    record_msg,
    run_target,
    schema_msg,
    target_config,
    write_pumps,
)
from singer_sdk.exceptions import InvalidRecord
from singer_sdk.singerlib.json import deserialize_json, serialize_json
from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

from target_s3_pump.formats import csv_line, csv_rows
from target_s3_pump.rows import RowType
from target_s3_pump.sinks import PumpSink
from target_s3_pump.target import PumpMessageReader

Y = "pumps_sensitive-pump_y"

SCHEMAS = [
    {
        "type": "object",
        "properties": {
            "id": {"type": ["integer"]},
            "name": {"type": ["string", "null"], "maxLength": 3},  # not plain: no typed rows
        },
    },
    {
        "type": "object",
        "properties": {
            "id": {"type": ["integer", "null"]},
            "a b": {"type": ["string", "null"], "format": "date-time"},
            "class": {"type": "string"},  # not nullable
            "n": {"type": ["number", "null"]},
            "m": {"type": "number"},
            "flag": {"type": ["boolean", "null"]},
            "j": {"type": ["object", "array", "null"]},
            "é": {"type": ["integer", "string", "null"]},
        },
        "required": ["m"],
    },
]
VALUES = [None, 0, 1, -3, 10**30, 2.0, 2.5, Decimal("1.10"), Decimal("1E-7"), True, False, "",
          "ab", "a,b", 'q"', "x\ny", "é😀", [], [1, "x"], {}, {"x": Decimal("1.5")}]  # fmt: skip


def _line(record: dict[str, Any], stream: str = "s") -> str:
    return serialize_json({"type": "RECORD", "stream": stream, "record": record})


def test_row_types_only_for_plain_object_schemas() -> None:
    assert RowType.for_schema("s", SCHEMAS[0], ["id"]) is None
    assert RowType.for_schema("s", {**SCHEMAS[1], "additionalProperties": False}, []) is None
    assert RowType.for_schema("s", SCHEMAS[1], ["missing"]) is None
    row_type = RowType.for_schema("s", SCHEMAS[1], ["id"])
    assert row_type is not None and row_type.columns == tuple(SCHEMAS[1]["properties"])


def test_a_line_typed_rows_take_is_one_the_sdk_takes_with_the_same_csv() -> None:
    schema = SCHEMAS[1]
    row_type = RowType.for_schema("s", schema, ["id"])
    assert row_type is not None
    validator = DEFAULT_JSONSCHEMA_VALIDATOR(schema)
    columns = [*schema["properties"]]
    rng = random.Random(11)
    taken = refused = 0
    rows: list[Any] = []
    records: list[dict[str, Any]] = []
    # Mostly values of the column's type, so that whole records are often valid.
    fitting: dict[str, list[Any]] = {
        c: [v for v in VALUES if DEFAULT_JSONSCHEMA_VALIDATOR(prop).is_valid(v)]
        for c, prop in schema["properties"].items()
    }
    for _ in range(5000):
        record = {
            c: rng.choice(fitting.get(c, VALUES) if rng.random() < 0.9 else VALUES)
            for c in [*columns, "extra"]
            if rng.random() < (0.95 if c != "extra" else 0.1)
        }
        line = _line(record, rng.choice(["s", "s", "s", "other"]))
        try:
            row = row_type.decode_line(line).record
        except msgspec.MsgspecError:
            refused += 1
            continue
        parsed = deserialize_json(line)
        assert parsed["stream"] == "s" and set(parsed["record"]) <= set(columns)
        assert "id" in parsed["record"] and "m" in parsed["record"]
        if row_type.valid([row]):  # else the sink turns the batch into dicts first
            taken += 1
            assert validator.is_valid(parsed["record"]), parsed
            expected = csv_line([parsed["record"].get(c) for c in columns])
            assert csv_rows([row], columns, row_type) == expected
            assert row_type.as_dict(row) == {c: parsed["record"].get(c) for c in columns}
            rows.append(row)
            records.append(parsed["record"])
    assert taken > 50 and refused > 1000  # both ways are exercised
    assert csv_rows(rows, [*columns, "later"], row_type) == csv_rows(records, [*columns, "later"])


def test_lines_refused_go_the_sdk_way_and_keep_their_order(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dict_records: list[dict] = []
    add_record = PumpSink.add_record
    monkeypatch.setattr(
        PumpSink, "add_record", lambda self, r: (dict_records.append(r), add_record(self, r))
    )
    pumps_file = write_pumps(tmp_path, [pump("pump_y", None, sensitive=True, single=True)])
    properties = {"id": {"type": "integer"}, "x": {"type": ["number", "null"]},
                  "s": {"type": "string"}}  # fmt: skip
    records = [
        {"id": 1, "x": Decimal("1.10"), "s": "a"},
        {"id": 2, "x": 5},  # a non-nullable property missing: msgspec refuses, the SDK takes
        {"id": 3, "s": ""},
        {"id": 4, "x": None, "s": "d", "extra": "dropped"},  # a property outside the schema
        {"id": 10**30, "x": Decimal("1E-7"), "s": "e,f"},
    ]
    messages = [schema_msg(Y, properties), *(record_msg(Y, r) for r in records)]
    text = "".join(serialize_json(m) + "\n" for m in messages)  # Decimals as JSON numbers
    run_target(target_config(bucket, pumps_file, batch_size_rows=2), text)
    assert bucket.read(f"pumps/pump_y/{STAMP}.csv") == (
        b'id,x,s\n1,1.10,a\n2,5,\n3,,""\n4,,d\n1000000000000000000000000000000,1E-7,"e,f"\n'
    )
    assert dict_records == [records[1], records[3]]


def test_a_string_for_a_number_fails_with_the_sdk_error(bucket: Bucket, tmp_path: Path) -> None:
    # msgspec's Decimal would take "1.5"; the batch check sends the batch to jsonschema.
    pumps_file = write_pumps(tmp_path, [pump("pump_y", None, sensitive=True, single=True)])
    properties = {"id": {"type": "integer"}, "x": {"type": ["number", "null"]}}
    messages = [schema_msg(Y, properties), record_msg(Y, {"id": 1, "x": 2}),
                record_msg(Y, {"id": 2, "x": "1.5"})]  # fmt: skip
    with pytest.raises(InvalidRecord, match=re.escape("'1.5' is not of type 'number', 'null'")):
        run_target(target_config(bucket, pumps_file), messages)
    assert bucket.list_keys() == []
    run_target(target_config(bucket, pumps_file, validate_records=False), messages)
    assert bucket.read(f"pumps/pump_y/{STAMP}.csv") == b"id,x\n1,2\n2,1.5\n"


def _chunked_input() -> str:
    """RECORD lines of one stream with refused ones, STATE and a repeated SCHEMA among them;
    the last line has no line end."""
    properties = {"id": {"type": "integer"}, "x": {"type": ["number", "null"]},
                  "s": {"type": "string"}}  # fmt: skip
    lines = [serialize_json(schema_msg(Y, properties))]
    for i in range(60):
        record: dict[str, Any] = {"id": i, "x": Decimal(f"{i}.50") if i % 3 else None, "s": f"r{i}"}
        if i in (7, 31):
            del record["s"]  # non-nullable and missing: msgspec refuses, the SDK takes it
        if i == 44:
            record["extra"] = 1
        lines.append(_line(record, Y))
        if i in (10, 25, 50):
            lines.append(serialize_json(bookmark_state(Y, f"2024-01-{i:02}")))
        if i == 30:
            lines.append(serialize_json(schema_msg(Y, properties)))
    return "\n".join(lines)


@pytest.mark.parametrize("chunk_bytes", [1, 50, 400, 1 << 20])
def test_input_read_in_chunks_gives_what_reading_it_line_by_line_gives(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    pumps_file = write_pumps(tmp_path, [pump("pump_y", None, sensitive=True, single=True)])
    config = target_config(bucket, pumps_file, batch_size_rows=4)
    text = _chunked_input()
    sdk_records: list[dict] = []
    add_record = PumpSink.add_record
    monkeypatch.setattr(
        PumpSink, "add_record", lambda self, r: (sdk_records.append(r), add_record(self, r))
    )
    by_line = run_target(config, text, binary=False)
    expected = bucket.read(f"pumps/pump_y/{STAMP}.csv")
    assert expected.count(b"\n") == 61 and [r["id"] for r in sdk_records] == [7, 31, 44]

    in_chunks: list[int] = []  # lines taken by one take_lines call each
    take_lines = PumpSink.take_lines
    monkeypatch.setattr(
        PumpSink,
        "take_lines",
        lambda self, chunk, n: (take_lines(self, chunk, n), in_chunks.append(n)),
    )
    monkeypatch.setattr(PumpMessageReader, "chunk_bytes", chunk_bytes)
    sdk_records.clear()
    chunked = run_target(config, text)
    assert bucket.read(f"pumps/pump_y/{STAMP}.csv") == expected
    assert chunked.states == by_line.states and len(chunked.states) == 1
    assert [r["id"] for r in sdk_records] == [7, 31, 44]
    if chunk_bytes < 1 << 20:  # else one chunk, starting with SCHEMA: read line by line
        assert sum(in_chunks) > 30 and (max(in_chunks) > 1) == (chunk_bytes == 400)


def test_a_blank_line_among_records_read_in_chunks_fails_as_line_by_line(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pumps_file = write_pumps(tmp_path, [pump("pump_y", None, sensitive=True, single=True)])
    config = target_config(bucket, pumps_file)
    lines = _chunked_input().split("\n")
    text = "\n".join([*lines[:20], "", *lines[20:]])
    with pytest.raises(Exception) as by_line:  # the SDK's own error, whatever it is
        run_target(config, text, binary=False)
    monkeypatch.setattr(PumpMessageReader, "chunk_bytes", 400)
    with pytest.raises(type(by_line.value), match=re.escape(str(by_line.value))):
        run_target(config, text)
    assert bucket.list_keys() == []
