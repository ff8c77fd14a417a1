"""Data objects uploaded while the rows still arrive (streaming.py), against the moto server.

Each test feeds the real target through a pipe and looks at S3 in the middle of the input:
the upload has started, yet no object is visible; what is finally published is byte for byte
what the upload after the input would have written.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pgp_testkit.s3pump import (
    STAMP,
    Bucket,
    bookmark_state,
    contacts,
    new_bucket,
    pump,
    record_msg,
    run_cli,
    schema_msg,
    start_cli,
    target_config,
    to_lines,
    unfinished_uploads,
    write_pumps,
)

pytestmark = pytest.mark.slow

X = "pumps-pump_x"
PART = f"pumps/pump_x/{STAMP}/part-00000.csv"
MARKER = f"pumps/pump_x/{STAMP}/_SUCCESS.json"
ROWS = 1000  # ~8 MB: one 5 MiB chunk while reading, the rest at publication
STATE = bookmark_state(X, "2024-09-26T09:00:00")


@pytest.fixture
def pumps_file(tmp_path: Path) -> Path:
    return write_pumps(tmp_path, [pump("pump_x")])


def rows(ids: range, **extra: Any) -> list[dict[str, Any]]:
    return [
        record_msg(X, {**m["record"], "note": f"{m['record']['id']:08d}" * 1000, **extra})
        for m in contacts(X, ids)
    ]


def streaming_config(bucket: Bucket, pumps_file: Path) -> dict[str, Any]:
    # Pieces of 100 rows (~0.8 MB) reach the spool as the input flows.
    return target_config(bucket, pumps_file, multipart_chunk_size_mb=5, batch_size_rows=100)


def feed(proc: subprocess.Popen[str], messages: list[dict[str, Any]]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(to_lines(messages))
    proc.stdin.flush()


def wait_for_upload(bucket: Bucket, proc: subprocess.Popen[str]) -> list[tuple[str, int]]:
    """The multipart uploads once one has a part, while the target still waits for input."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        uploads = unfinished_uploads(bucket)
        if any(parts for _, parts in uploads):
            assert proc.poll() is None
            return uploads
        time.sleep(0.1)
    raise AssertionError("no part was uploaded while the input was still open")


def finish(proc: subprocess.Popen[str], messages: list[dict[str, Any]]) -> tuple[int, str]:
    feed(proc, messages)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def published_without_streaming(
    tmp_path: Path, pumps_file: Path, messages: list[dict[str, Any]]
) -> bytes:
    """The same input through the upload after the input (the pump never reaches a chunk)."""
    other = new_bucket()
    config = target_config(other, pumps_file, multipart_chunk_size_mb=64, batch_size_rows=100)
    proc = run_cli(config, messages, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert unfinished_uploads(other) == []
    return other.read(PART)


def assert_marker_describes(bucket: Bucket, rows: int) -> bytes:
    assert bucket.list_keys() == [MARKER, PART]
    data = bucket.read(PART)
    marker = bucket.json(MARKER)
    assert marker["rows"] == rows
    assert marker["files"] == [
        {"key": PART, "rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    ]
    return data


def test_parts_go_up_while_reading_and_the_object_appears_only_at_publication(
    bucket: Bucket, pumps_file: Path, tmp_path: Path
) -> None:
    first, rest = rows(range(1, 801)), rows(range(801, ROWS + 1))
    proc = start_cli(streaming_config(bucket, pumps_file), tmp_path)
    feed(proc, [schema_msg(X), *first])

    [(key, parts)] = wait_for_upload(bucket, proc)
    assert key == PART and parts >= 1
    assert bucket.list_keys() == []  # invisible until completed

    returncode, stderr = finish(proc, [*rest, STATE])
    assert returncode == 0, stderr
    assert "uploading while reading stopped" not in stderr
    data = assert_marker_describes(bucket, ROWS)
    assert unfinished_uploads(bucket) == []
    assert bucket.head(PART)["Metadata"] == {"pump": "pump_x"}
    messages = [schema_msg(X), *first, *rest, STATE]
    assert data == published_without_streaming(tmp_path, pumps_file, messages)
    assert data.count(b"\n") == ROWS + 1


def test_a_column_added_mid_run_drops_the_streamed_upload_for_a_padded_one(
    bucket: Bucket, pumps_file: Path, tmp_path: Path
) -> None:
    wider = schema_msg(X, {**schema_msg(X)["schema"]["properties"], "team": {"type": ["string"]}})
    first, later = rows(range(1, 801)), rows(range(801, 851), team="data")
    proc = start_cli(streaming_config(bucket, pumps_file), tmp_path)
    feed(proc, [schema_msg(X), *first])
    wait_for_upload(bucket, proc)

    returncode, stderr = finish(proc, [wider, *later, STATE])
    assert returncode == 0, stderr
    assert "uploading while reading stopped (the schema changed mid-run)" in stderr
    data = assert_marker_describes(bucket, 850)
    assert unfinished_uploads(bucket) == []
    lines = data.splitlines()
    assert lines[0] == b"id,email,note,score,active,updated_at,team"
    assert lines[1].endswith(b",")  # earlier rows: NULL in the new column
    assert lines[-1].endswith(b",data")
    messages = [schema_msg(X), *first, wider, *later, STATE]
    assert data == published_without_streaming(tmp_path, pumps_file, messages)


def test_a_stream_rejected_mid_run_leaves_no_object_and_no_upload(
    bucket: Bucket, pumps_file: Path, tmp_path: Path
) -> None:
    proc = start_cli(streaming_config(bucket, pumps_file), tmp_path)
    feed(proc, [schema_msg(X), *rows(range(1, 801))])
    wait_for_upload(bucket, proc)

    returncode, stderr = finish(proc, [schema_msg("pumps-pump_not_listed"), STATE])
    assert returncode == 1
    assert "pump_not_listed" in stderr and "nothing was written" in stderr
    assert bucket.list_keys() == []
    assert unfinished_uploads(bucket) == []


def test_a_killed_run_leaves_an_invisible_upload_that_the_next_run_aborts(
    bucket: Bucket, pumps_file: Path, tmp_path: Path
) -> None:
    messages = [schema_msg(X), *rows(range(1, ROWS + 1)), STATE]
    config = streaming_config(bucket, pumps_file)
    proc = start_cli(config, tmp_path)
    feed(proc, messages[:801])
    wait_for_upload(bucket, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    assert bucket.list_keys() == []  # nothing a consumer could read
    [(key, parts)] = unfinished_uploads(bucket)
    assert key == PART and parts >= 1

    rerun = run_cli(config, messages, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "aborted 1 unfinished upload(s) of an earlier run" in rerun.stderr
    assert_marker_describes(bucket, ROWS)
    assert unfinished_uploads(bucket) == []
