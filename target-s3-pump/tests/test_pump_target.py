"""The target end to end against a real (moto) S3 server: bytes, layout, markers, headers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pgp_testkit.s3pump import (
    INTERVAL_END,
    STAMP,
    Bucket,
    bookmark_state,
    contacts,
    error_lines,
    new_bucket,
    pump,
    record_msg,
    run_cli,
    run_target,
    schema_msg,
    state_msg,
    target_config,
    write_pumps,
)

from target_s3_pump.pumps import StreamRejected
from target_s3_pump.s3 import S3Error

X = "pumps-pump_x"  # non-sensitive pump, parts
Y = "pumps_sensitive-pump_y"  # sensitive pump, single file


@pytest.fixture
def pumps_file(tmp_path: Path) -> Path:
    return write_pumps(
        tmp_path,
        [
            pump("pump_x", "updated_at"),
            pump("pump_y", None, sensitive=True, single=True),
        ],
    )


def test_csv_bytes_nulls_quotes_commas_newlines_unicode(bucket: Bucket, pumps_file: Path) -> None:
    properties = {
        "id": {"type": ["integer"]},
        "text": {"type": ["string", "null"]},
        "amount": {"type": ["number", "null"]},
        "flag": {"type": ["boolean", "null"]},
        "changed_at": {"type": ["string", "null"], "format": "date-time"},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
    }
    # Raw lines, as a tap writes them: the JSON spelling of numbers must survive.
    lines = [json.dumps(schema_msg(Y, properties, ["id"]))] + [
        f'{{"type":"RECORD","stream":"{Y}","record":{record}}}'
        for record in (
            '{"id":1,"text":"plain","amount":1.10,"flag":true,'
            '"changed_at":"2024-09-26T05:00:00.123+00:00","tags":["a","b"]}',
            '{"id":2,"text":null,"amount":null,"flag":null,"changed_at":null,"tags":null}',
            '{"id":3,"text":"","amount":0,"flag":false,"changed_at":"2024-09-26 05:00:00",'
            '"tags":[]}',
            '{"id":4,"text":"say \\"hi\\", then\\nleave\\r\\n","amount":-12345678901234567890.5}',
            '{"id":5,"text":"na\\u00efve caf\u00e9 \u2013 \u65e5\u672c\u8a9e \U0001f600",'
            '"amount":1e-7}',
            '{"id":6,"text":" spaced ","amount":10}',
        )
    ]
    run_target(target_config(bucket, pumps_file), "\n".join(lines) + "\n")

    expected = (
        "id,text,amount,flag,changed_at,tags\n"
        '1,plain,1.10,true,2024-09-26T05:00:00.123+00:00,"[""a"",""b""]"\n'
        "2,,,,,\n"
        '3,"",0,false,2024-09-26 05:00:00,[]\n'
        '4,"say ""hi"", then\nleave\r\n",-12345678901234567890.5,,,\n'
        "5,naïve café \u2013 日本語 😀,1E-7,,,\n"
        "6, spaced ,10,,,\n"
    ).encode()
    assert bucket.read(f"pumps/pump_y/{STAMP}.csv") == expected


def test_single_pump_layout_marker_and_headers(bucket: Bucket, pumps_file: Path) -> None:
    result = run_target(
        target_config(bucket, pumps_file),
        [schema_msg(Y), *contacts(Y, range(1, 4)), state_msg({"bookmarks": {}})],
    )
    data_key = f"pumps/pump_y/{STAMP}.csv"
    marker_key = f"pumps/pump_y/{STAMP}_SUCCESS.json"
    assert bucket.list_keys() == [data_key, marker_key]

    body = bucket.read(data_key)
    assert body.splitlines()[0] == b"id,email,note,score,active,updated_at"
    marker = bucket.json(marker_key)
    assert marker["files"] == [
        {"key": data_key, "rows": 3, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    ]
    assert marker["rows"] == 3
    assert marker["pump"] == "pump_y" and marker["stream"] == Y and marker["sensitive"] is True
    assert marker["single"] is True and marker["timestamp_column"] is None
    assert marker["interval_end"] == INTERVAL_END
    assert marker["columns"] == ["id", "email", "note", "score", "active", "updated_at"]

    for key in (data_key, marker_key):
        assert bucket.head(key)["ServerSideEncryption"] == "AES256"
    head = bucket.head(data_key)
    assert head["ContentType"] == "text/csv; charset=utf-8"
    assert head["Metadata"] == {"pump": "pump_y"}  # rows and sha256: in the marker
    assert [r.pump.model for r in result.target.results] == ["pump_y"]
    assert result.states == [{"bookmarks": {}}]


def test_rerun_with_same_interval_overwrites_single_file(bucket: Bucket, pumps_file: Path) -> None:
    config = target_config(bucket, pumps_file)
    run_target(config, [schema_msg(Y), *contacts(Y, range(1, 6))])
    run_target(config, [schema_msg(Y), *contacts(Y, [42])])
    key = f"pumps/pump_y/{STAMP}.csv"
    assert bucket.list_keys() == [key, f"pumps/pump_y/{STAMP}_SUCCESS.json"]
    assert bucket.read(key).count(b"\n") == 2
    assert b"user42@" in bucket.read(key)
    assert bucket.json(f"pumps/pump_y/{STAMP}_SUCCESS.json")["rows"] == 1


def test_parts_rotate_at_max_rows_per_file(bucket: Bucket, pumps_file: Path) -> None:
    config = target_config(bucket, pumps_file, max_rows_per_file=3, batch_size_rows=2)
    run_target(config, [schema_msg(X), *contacts(X, range(1, 8))])
    base = f"pumps/pump_x/{STAMP}"
    parts = [f"{base}/part-0000{i}.csv" for i in range(3)]
    assert bucket.list_keys() == [f"{base}/_SUCCESS.json", *parts]
    marker = bucket.json(f"{base}/_SUCCESS.json")
    assert [(f["key"], f["rows"]) for f in marker["files"]] == list(
        zip(parts, [3, 3, 1], strict=True)
    )
    ids = []
    for key in parts:
        lines = bucket.read(key).decode().splitlines()
        assert lines[0] == "id,email,note,score,active,updated_at"  # every part has the header
        ids += [int(line.split(",")[0]) for line in lines[1:]]
    assert ids == list(range(1, 8))  # input order kept across batches and parts


def test_incremental_second_run_adds_a_new_interval(bucket: Bucket, pumps_file: Path) -> None:
    first = run_target(
        target_config(bucket, pumps_file, interval_end="2024-09-26T05:00:00Z"),
        [schema_msg(X), *contacts(X, range(1, 6)), bookmark_state(X, "2024-09-26T05:00:00")],
    )
    second = run_target(
        target_config(bucket, pumps_file, interval_end="2024-09-27T05:00:00+00:00"),
        [schema_msg(X), *contacts(X, [5, 6, 7]), bookmark_state(X, "2024-09-26T07:00:00")],
    )
    assert bucket.list_keys() == [
        "pumps/pump_x/2024_09_26__050000/_SUCCESS.json",
        "pumps/pump_x/2024_09_26__050000/part-00000.csv",
        "pumps/pump_x/2024_09_27__050000/_SUCCESS.json",
        "pumps/pump_x/2024_09_27__050000/part-00000.csv",
    ]
    assert bucket.json("pumps/pump_x/2024_09_26__050000/_SUCCESS.json")["rows"] == 5
    second_rows = bucket.read("pumps/pump_x/2024_09_27__050000/part-00000.csv").splitlines()[1:]
    assert [int(r.split(b",")[0]) for r in second_rows] == [5, 6, 7]
    assert first.states == [bookmark_state(X, "2024-09-26T05:00:00")["value"]]
    assert second.states == [bookmark_state(X, "2024-09-26T07:00:00")["value"]]


def test_state_is_forwarded_once_after_publication(bucket: Bucket, pumps_file: Path) -> None:
    # Small batches make the SDK drain (and normally emit state) many times mid-run.
    config = target_config(bucket, pumps_file, batch_size_rows=2)
    messages = [schema_msg(X)]
    for i in range(1, 7):
        messages += [*contacts(X, [i]), bookmark_state(X, f"2024-09-26T{i:02d}:00:00")]
    result = run_target(config, messages)
    assert result.states == [bookmark_state(X, "2024-09-26T06:00:00")["value"]]


def test_interval_end_defaults_to_run_start_utc(bucket: Bucket, pumps_file: Path) -> None:
    config = target_config(bucket, pumps_file)
    del config["interval_end"]
    result = run_target(config, [schema_msg(Y), *contacts(Y, [1])])
    stamp = result.target.run_started_at.strftime("%Y_%m_%d__%H%M%S")
    assert f"pumps/pump_y/{stamp}.csv" in bucket.list_keys()


def test_naive_interval_end_is_utc(bucket: Bucket, pumps_file: Path) -> None:
    run_target(
        target_config(bucket, pumps_file, interval_end="2024-01-02T03:04:05.678"),
        [schema_msg(Y), *contacts(Y, [1])],
    )
    assert "pumps/pump_y/2024_01_02__030405.csv" in bucket.list_keys()


def test_aws_kms_encryption_headers(bucket: Bucket, pumps_file: Path) -> None:
    key_id = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-pump"
    config = target_config(
        bucket, pumps_file, server_side_encryption="aws:kms", sse_kms_key_id=key_id
    )
    run_target(config, [schema_msg(X), *contacts(X, [1, 2])])
    for key in bucket.list_keys():
        head = bucket.head(key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == key_id


def test_stages_route_pumps_to_their_bucket_and_prefix(tmp_path: Path) -> None:
    pumps_bucket, science_bucket = new_bucket(), new_bucket()
    pumps_file = write_pumps(
        tmp_path,
        [
            pump("pump_marketing_contact", "last_changed", True, single=True, stage="s3_data_pump"),
            pump(
                "pump_daily_data_science_scores",
                "updated_at",
                True,
                single=True,
                stage="s3_data_science_pump",
            ),
        ],
    )
    config = target_config(
        pumps_bucket,
        pumps_file,
        stages={
            "s3_data_pump": {"prefix": "data_pump"},  # bucket defaults to 'bucket'
            "s3_data_science_pump": {"bucket": science_bucket.name, "prefix": "/science/"},
        },
    )
    a, b = (
        "pumps_sensitive-pump_marketing_contact",
        "pumps_sensitive-pump_daily_data_science_scores",
    )
    run_target(config, [schema_msg(a), *contacts(a, [1]), schema_msg(b), *contacts(b, [2])])
    assert pumps_bucket.list_keys() == [
        f"data_pump/pump_marketing_contact/{STAMP}.csv",
        f"data_pump/pump_marketing_contact/{STAMP}_SUCCESS.json",
    ]
    assert science_bucket.list_keys() == [
        f"science/pump_daily_data_science_scores/{STAMP}.csv",
        f"science/pump_daily_data_science_scores/{STAMP}_SUCCESS.json",
    ]


def test_stages_in_meltanos_flattened_form(tmp_path: Path) -> None:
    bucket = new_bucket()
    pumps_file = write_pumps(
        tmp_path,
        [pump("pump_marketing_contact", "last_changed", True, single=True, stage="s3_data_pump")],
    )
    # As Meltano may pass an object setting set through the environment: dotted keys.
    config = target_config(bucket, pumps_file, stages={"s3_data_pump.prefix": "data_pump"})
    stream = "pumps_sensitive-pump_marketing_contact"
    run_cli(config, [schema_msg(stream), *contacts(stream, [1])], tmp_path).check_returncode()
    assert bucket.list_keys() == [
        f"data_pump/pump_marketing_contact/{STAMP}.csv",
        f"data_pump/pump_marketing_contact/{STAMP}_SUCCESS.json",
    ]


def test_empty_pump_gets_a_header_only_file_and_a_marker(bucket: Bucket, pumps_file: Path) -> None:
    run_target(target_config(bucket, pumps_file), [schema_msg(X)])
    base = f"pumps/pump_x/{STAMP}"
    assert bucket.read(f"{base}/part-00000.csv") == b"id,email,note,score,active,updated_at\n"
    assert bucket.json(f"{base}/_SUCCESS.json")["rows"] == 0


def test_gzip_csv(bucket: Bucket, pumps_file: Path) -> None:
    run_target(
        target_config(bucket, pumps_file, compression="gzip"), [schema_msg(Y), *contacts(Y, [1])]
    )
    key = f"pumps/pump_y/{STAMP}.csv.gz"
    assert bucket.head(key)["ContentType"] == "application/gzip"
    text = gzip.decompress(bucket.read(key)).decode()
    assert text.splitlines()[1].startswith("1,user1@example.com,,0.5,false,")


def test_parquet_with_types(bucket: Bucket, pumps_file: Path) -> None:
    run_target(
        target_config(bucket, pumps_file, format="parquet", compression="gzip"),
        [schema_msg(Y), *contacts(Y, [1, 2]), record_msg(Y, {"id": 3})],
    )
    table = pq.read_table(io.BytesIO(bucket.read(f"pumps/pump_y/{STAMP}.parquet")))
    assert [str(t) for t in table.schema.types] == [
        "int64",
        "string",
        "string",
        "double",
        "bool",
        "timestamp[us, tz=UTC]",
    ]
    rows = table.to_pylist()
    assert rows[0]["id"] == 1 and rows[0]["score"] == 0.5 and rows[0]["active"] is False
    assert rows[0]["updated_at"].isoformat() == "2024-09-26T01:00:00+00:00"
    assert rows[2] == {
        "id": 3,
        "email": None,
        "note": None,
        "score": None,
        "active": None,
        "updated_at": None,
    }


def test_jsonl(bucket: Bucket, pumps_file: Path) -> None:
    run_target(
        target_config(bucket, pumps_file, format="jsonl"),
        json.dumps(schema_msg(Y)) + f'\n{{"type":"RECORD","stream":"{Y}","record":'
        '{"id":1,"score":1.10,"email":"\\u00e9"}}\n',
    )
    line = bucket.read(f"pumps/pump_y/{STAMP}.jsonl").decode()
    assert json.loads(line) == {
        "id": 1,
        "email": "é",
        "note": None,
        "score": 1.1,
        "active": None,
        "updated_at": None,
    }
    assert '"score":1.10' in line  # numbers keep their JSON spelling
    assert '"email":"é"' in line  # UTF-8, not \u escapes


def test_header_case_upper_like_snowflake(bucket: Bucket, pumps_file: Path) -> None:
    run_target(
        target_config(bucket, pumps_file, header_case="upper"), [schema_msg(Y), *contacts(Y, [1])]
    )
    header = bucket.read(f"pumps/pump_y/{STAMP}.csv").splitlines()[0]
    assert header == b"ID,EMAIL,NOTE,SCORE,ACTIVE,UPDATED_AT"


def test_schema_change_mid_run_keeps_union_of_columns(bucket: Bucket, pumps_file: Path) -> None:
    narrow = {"id": {"type": "integer"}, "a": {"type": ["string", "null"]}}
    wide = {**narrow, "b": {"type": ["string", "null"]}}
    run_target(
        target_config(bucket, pumps_file),
        [
            schema_msg(Y, narrow),
            record_msg(Y, {"id": 1, "a": "x"}),
            schema_msg(Y, wide),
            record_msg(Y, {"id": 2, "a": "y", "b": "z"}),
        ],
    )
    assert bucket.read(f"pumps/pump_y/{STAMP}.csv") == b"id,a,b\n1,x,\n2,y,z\n"


def test_pumps_without_a_stream_are_reported(
    bucket: Bucket, pumps_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_target(target_config(bucket, pumps_file), [schema_msg(X), *contacts(X, [1])])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    expected = (
        "pump pump_y: no stream 'pumps_sensitive-pump_y' in this run; nothing published for it"
    )
    assert expected in warnings


def test_bare_model_stream_name_is_accepted(bucket: Bucket, pumps_file: Path) -> None:
    run_target(target_config(bucket, pumps_file), [schema_msg("pump_y"), *contacts("pump_y", [1])])
    assert bucket.json(f"pumps/pump_y/{STAMP}_SUCCESS.json")["stream"] == "pump_y"


# --------------------------------------------------------------------------- guards


def test_unlisted_stream_fails_the_run_before_anything_is_written(
    bucket: Bucket, pumps_file: Path
) -> None:
    # A listed pump first, with rows: it must not be published either.
    messages = [schema_msg(X), *contacts(X, range(1, 50)), schema_msg("pumps-pump_secret")]
    with pytest.raises(StreamRejected, match="model 'pump_secret' is not listed in"):
        run_target(target_config(bucket, pumps_file), messages)
    assert bucket.list_keys() == []


def test_sensitive_pump_from_the_other_schema_is_rejected(bucket: Bucket, pumps_file: Path) -> None:
    for stream in ("pumps-pump_y", "pumps_sensitive-pump_x"):
        with pytest.raises(StreamRejected, match="must come from schema"):
            run_target(target_config(bucket, pumps_file), [schema_msg(stream)])
    assert bucket.list_keys() == []


def test_two_streams_for_one_pump_are_rejected(bucket: Bucket, pumps_file: Path) -> None:
    with pytest.raises(StreamRejected, match="both map to pump 'pump_x'"):
        run_target(target_config(bucket, pumps_file), [schema_msg(X), schema_msg("pump_x")])
    assert bucket.list_keys() == []


def test_missing_bucket_fails_at_the_schema(bucket: Bucket, pumps_file: Path) -> None:
    config = target_config(bucket, pumps_file, bucket="pump-test-no-such-bucket")
    with pytest.raises(S3Error, match="bucket s3://pump-test-no-such-bucket: does not exist"):
        run_target(config, [schema_msg(X)])


def test_cli_reports_one_line_and_writes_nothing(
    bucket: Bucket, pumps_file: Path, tmp_path: Path
) -> None:
    messages = [schema_msg(X), *contacts(X, [1, 2]), state_msg({"x": 1}), schema_msg("pumps-zz")]
    proc = run_cli(target_config(bucket, pumps_file), messages, tmp_path)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        f"target-s3-pump: error: stream 'pumps-zz': model 'zz' is not listed in {pumps_file}; "
        "only models listed in pumps.yml may be pumped; nothing was written"
    ]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # no state forwarded
    assert bucket.list_keys() == []


def test_cli_config_problems_are_one_line_each(bucket: Bucket, tmp_path: Path) -> None:
    pumps_file = write_pumps(tmp_path, [pump("pump_a", stage="s3_data_pump")])
    config = target_config(bucket, pumps_file, max_rows_per_file=0, sse_kms_key_id="k")
    del config["bucket"]
    proc = run_cli(config, [], tmp_path)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        "target-s3-pump: error: setting 'prefix' is set but 'bucket' is not",
        "target-s3-pump: error: setting 'sse_kms_key_id' needs server_side_encryption 'aws:kms'",
        "target-s3-pump: error: setting 'max_rows_per_file' must be a positive integer, got 0",
        f"target-s3-pump: error: {pumps_file}:2: pump 'pump_a': unknown stage 's3_data_pump' "
        "(configured stages: none; add it to the target's 'stages' setting)",
    ]


def test_adding_a_pump_is_one_pumps_yml_entry(bucket: Bucket, tmp_path: Path) -> None:
    entries = [pump("pump_x")]
    pumps_file = write_pumps(tmp_path, entries)
    new_stream = "pumps-pump_new_partner_feed"
    messages = [schema_msg(new_stream), *contacts(new_stream, [1, 2])]
    with pytest.raises(StreamRejected):
        run_target(target_config(bucket, pumps_file), messages)

    write_pumps(tmp_path, [*entries, pump("pump_new_partner_feed", "updated_at")])
    run_target(target_config(bucket, pumps_file), messages)
    marker = bucket.json(f"pumps/pump_new_partner_feed/{STAMP}/_SUCCESS.json")
    assert marker["rows"] == 2
