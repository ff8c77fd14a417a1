"""The direct record path (PumpSink.add_record) keeps the SDK's semantics.

Validation: the quick check (target_s3_pump.validation) never accepts a record jsonschema
rejects, and an invalid record fails the run with the SDK's own error, before anything is
written. Streams with stream maps still go through the SDK's per-record path.
"""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from pathlib import Path

import pytest
from pgp_testkit.s3pump import (
    STAMP,
    Bucket,
    contacts,
    pump,
    record_msg,
    run_target,
    schema_msg,
    target_config,
    write_pumps,
)
from singer_sdk.exceptions import InvalidRecord, MissingKeyPropertiesError
from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

from target_s3_pump.formats import csv_line, csv_rows
from target_s3_pump.validation import compile_batch_check

Y = "pumps_sensitive-pump_y"


@pytest.fixture
def pumps_file(tmp_path: Path) -> Path:
    return write_pumps(tmp_path, [pump("pump_y", None, sensitive=True, single=True)])


@pytest.mark.parametrize(
    "record",
    [
        {"id": "1"},  # string for an integer
        {"id": True},  # a boolean is not an integer
        {"id": 1, "score": "1.5"},
        {"id": 1, "active": 1},
        {"id": 1, "email": 5},
    ],
)
def test_invalid_record_fails_with_the_sdk_error(
    bucket: Bucket, pumps_file: Path, record: dict
) -> None:
    messages = [schema_msg(Y), *contacts(Y, [1, 2]), record_msg(Y, record)]
    with pytest.raises(InvalidRecord):
        run_target(target_config(bucket, pumps_file), messages)
    assert bucket.list_keys() == []


def test_schema_without_a_quick_check_is_still_validated(bucket: Bucket, pumps_file: Path) -> None:
    schema = schema_msg(Y, {"id": {"type": "integer"}})
    schema["schema"]["additionalProperties"] = False  # no quick check: jsonschema for all
    run_target(target_config(bucket, pumps_file), [schema, record_msg(Y, {"id": 1})])
    with pytest.raises(InvalidRecord):
        run_target(target_config(bucket, pumps_file), [schema, record_msg(Y, {"id": 1, "x": 2})])


def test_validation_off_takes_any_value(bucket: Bucket, pumps_file: Path) -> None:
    messages = [schema_msg(Y), record_msg(Y, {"id": "x", "active": 1, "score": True})]
    run_target(target_config(bucket, pumps_file, validate_records=False), messages)
    assert bucket.read(f"pumps/pump_y/{STAMP}.csv").splitlines()[1] == b"x,,,true,1,"


def test_missing_key_property_fails(bucket: Bucket, pumps_file: Path) -> None:
    messages = [schema_msg(Y), record_msg(Y, {"email": "a@b"})]
    with pytest.raises(MissingKeyPropertiesError):
        run_target(target_config(bucket, pumps_file, validate_records=False), messages)
    assert bucket.list_keys() == []


def test_records_the_quick_check_is_unsure_of_are_valid_as_in_the_sdk(
    bucket: Bucket, pumps_file: Path
) -> None:
    # A missing non-null property, and a constrained property: the quick check defers to
    # jsonschema, which accepts both.
    properties = {
        "id": {"type": "integer", "minimum": 0},
        "email": {"type": "string"},
    }
    run_target(
        target_config(bucket, pumps_file),
        [schema_msg(Y, properties), record_msg(Y, {"id": 1}), record_msg(Y, {"id": 2})],
    )
    assert bucket.read(f"pumps/pump_y/{STAMP}.csv") == b"id,email\n1,\n2,\n"
    with pytest.raises(InvalidRecord):
        run_target(target_config(bucket, pumps_file), [schema_msg(Y, properties),
                   record_msg(Y, {"id": -1})])  # fmt: skip


def test_stream_maps_still_apply(bucket: Bucket, tmp_path: Path) -> None:
    pumps_file = write_pumps(tmp_path, [pump("pump_z", None, single=True)])
    config = target_config(
        bucket,
        pumps_file,
        stream_maps={"raw_z": {"__alias__": "pump_z", "email": None, "id": "id * 10"}},
    )
    run_target(config, [schema_msg("raw_z"), *contacts("raw_z", [1, 2])])
    lines = bucket.read(f"pumps/pump_z/{STAMP}.csv").decode().splitlines()
    assert lines[0] == "id,note,score,active,updated_at"
    assert [line.split(",")[0] for line in lines[1:]] == ["10", "20"]


def test_new_columns_pad_rows_with_quoted_newlines(bucket: Bucket, pumps_file: Path) -> None:
    narrow = {"id": {"type": "integer"}, "a": {"type": ["string", "null"]}}
    wide = {**narrow, "b": {"type": ["string", "null"]}, "c": {"type": ["string", "null"]}}
    run_target(
        target_config(bucket, pumps_file),
        [
            schema_msg(Y, narrow),
            record_msg(Y, {"id": 1, "a": 'two\nlines, "quoted"'}),
            record_msg(Y, {"id": 2, "a": "\n"}),
            schema_msg(Y, wide),
            record_msg(Y, {"id": 3, "c": "z"}),
        ],
    )
    assert bucket.read(f"pumps/pump_y/{STAMP}.csv") == (
        b'id,a,b,c\n1,"two\nlines, ""quoted""",,\n2,"\n",,\n3,,,z\n'
    )


SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": ["integer", "null"]}, "b": {"type": "string"}}},
    {
        "type": "object",
        "properties": {
            "a": {"type": ["number"]},
            "b": {"type": ["array", "null"], "items": {"type": "integer"}},
            "c": {"type": "object", "properties": {"x": {"type": "boolean"}}},
            "d": {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}]},
            "e": {"type": ["boolean", "null"], "format": "date-time"},
        },
        "required": ["a"],
    },
    {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
]
VALUES = [None, 0, 1, -3, 2.0, 2.5, Decimal("1.10"), True, False, "", "ab", "abc", [], [1],
          ["x"], {}, {"x": True}, {"x": 1}]  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS)
def test_quick_check_never_accepts_what_jsonschema_rejects(schema: dict) -> None:
    check = compile_batch_check(schema)
    validator = DEFAULT_JSONSCHEMA_VALIDATOR(schema)
    names = [*schema["properties"], "extra"]
    rng = random.Random(7)
    records = [
        {n: rng.choice(VALUES) for n in names if rng.random() < 0.8} for _ in range(3000)
    ] + [dict(zip(names[:2], pair, strict=True)) for pair in itertools.product(VALUES, VALUES)]
    accepted = 0
    for record in records:
        if check is not None and check([record]):
            accepted += 1
            assert validator.is_valid(record), record
    if check is not None:
        assert accepted > 0  # the check does take the common records
    # Batches: accepted only when every record is valid.
    batches_accepted = 0
    for _ in range(3000):
        batch = rng.sample(records, rng.randint(1, 5))
        if check is not None and check(batch):
            batches_accepted += 1
            assert all(validator.is_valid(r) for r in batch), batch
    if check is not None:
        assert batches_accepted > 0


class _Text(str):
    pass


CSV_VALUES = [None, "", "a", "a,b", 'q"', "x\ny", "x\r", " ", "é😀", "\x00", 0, 1, -5, 10**30,
              Decimal("1.10"), Decimal("1E-7"), 0.5, 1.0, float("inf"), True, False,
              {"a": [1, "b"]}, [], [1, 2], _Text("s,")]  # fmt: skip
CSV_COLUMN_KINDS = [
    CSV_VALUES,
    [None, "a", "b c", "é"],
    [None, 1, Decimal("2.5")],
    [True, False, None],
    ["a", "b"],
    [1, 2],
    [0, -5, 10**30, -(2**63), 2**64],
    ["a", ""],
    [None, "a,b"],
]


def test_csv_rows_renders_each_row_as_csv_line() -> None:
    # csv_rows renders a batch a column at a time; csv_line is the rule, one field at a time.
    rng = random.Random(5)
    for _ in range(3000):
        columns = [f"c{i}" for i in range(rng.randint(0, 5))]
        kinds = {c: rng.choice(CSV_COLUMN_KINDS) for c in columns}
        records = [
            {c: rng.choice(kinds[c]) for c in columns if rng.random() < 0.9}
            for _ in range(rng.randint(0, 6))
        ]
        expected = "".join(csv_line([r.get(c) for c in columns]) for r in records)
        assert csv_rows(records, columns) == expected, (records, columns)
