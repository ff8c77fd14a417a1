"""Failures never leave a marker, never forward state, and a retry replaces the leftovers."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from pgp_testkit.locals3 import LocalS3
from pgp_testkit.s3pump import (
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
    start_cli,
    target_config,
    to_lines,
    write_pumps,
)

from target_s3_pump.s3 import S3Error, S3Store
from target_s3_pump.target import PumpsNotPublished, TargetS3Pump

pytestmark = pytest.mark.slow

X = "pumps-pump_x"
Y = "pumps_sensitive-pump_y"
BASE = f"pumps/pump_x/{STAMP}"


@pytest.fixture
def pumps_file(tmp_path: Path) -> Path:
    return write_pumps(
        tmp_path, [pump("pump_x"), pump("pump_y", None, sensitive=True, single=True)]
    )


def fail_upload_after(monkeypatch: pytest.MonkeyPatch, good_uploads: int) -> None:
    """Make S3Store.upload_file fail (as a dropped connection would) after N successes."""
    real = S3Store.upload_file
    calls = {"n": 0}

    def flaky(self: S3Store, path: Path, bucket: str, key: str, *args: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] > good_uploads:
            raise S3Error(f"upload of s3://{bucket}/{key} failed: connection reset (injected)")
        real(self, path, bucket, key, *args, **kw)

    monkeypatch.setattr(S3Store, "upload_file", flaky)


def test_failure_mid_publication_leaves_no_marker_and_retry_replaces_leftovers(
    bucket: Bucket, pumps_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = target_config(bucket, pumps_file, max_rows_per_file=2)
    first = [schema_msg(X), *contacts(X, range(1, 8)), bookmark_state(X, "2024-09-26T07:00:00")]
    fail_upload_after(monkeypatch, good_uploads=2)
    with pytest.raises(PumpsNotPublished, match=r"pump 'pump_x': upload of .*part-00002.csv"):
        run_target(config, first)
    assert bucket.list_keys() == [f"{BASE}/part-00000.csv", f"{BASE}/part-00001.csv"]  # no marker

    monkeypatch.undo()
    # The retry (same interval end) got fewer rows: one part. The stale part must go.
    retry = [schema_msg(X), *contacts(X, [1, 2]), bookmark_state(X, "2024-09-26T02:00:00")]
    result = run_target(config, retry)
    assert bucket.list_keys() == [f"{BASE}/_SUCCESS.json", f"{BASE}/part-00000.csv"]
    marker = bucket.json(f"{BASE}/_SUCCESS.json")
    assert [f["key"] for f in marker["files"]] == [f"{BASE}/part-00000.csv"]
    assert result.target.results[0].removed == [f"{BASE}/part-00001.csv"]
    assert result.states == [bookmark_state(X, "2024-09-26T02:00:00")["value"]]


def test_rerun_that_fails_withdraws_the_previous_marker(
    bucket: Bucket, pumps_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = target_config(bucket, pumps_file)
    run_target(config, [schema_msg(Y), *contacts(Y, [1])])
    assert f"pumps/pump_y/{STAMP}_SUCCESS.json" in bucket.list_keys()
    fail_upload_after(monkeypatch, good_uploads=0)
    with pytest.raises(PumpsNotPublished):
        run_target(config, [schema_msg(Y), *contacts(Y, [1, 2])])
    # The old file may be stale now; without its marker nobody takes it as complete.
    assert bucket.list_keys() == [f"pumps/pump_y/{STAMP}.csv"]


def test_one_failed_pump_does_not_block_the_others_but_fails_the_run(
    bucket: Bucket, pumps_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_upload_after(monkeypatch, good_uploads=1)  # pump_x's only part, then pump_y fails
    messages = [schema_msg(X), *contacts(X, [1]), schema_msg(Y), *contacts(Y, [1])]
    messages.append(bookmark_state(X, "2024-09-26T01:00:00"))
    with pytest.raises(PumpsNotPublished) as info:
        run_target(target_config(bucket, pumps_file), messages)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("pump 'pump_y': upload of s3://")
    assert lines[0].endswith("; no marker written")
    assert lines[1] == "published in this run: pump_x; state not emitted"
    assert f"{BASE}/_SUCCESS.json" in bucket.list_keys()
    assert not any(k.startswith("pumps/pump_y/") for k in bucket.list_keys())


def test_bucket_missing_at_publication(bucket: Bucket, pumps_file: Path, tmp_path: Path) -> None:
    # The bucket exists when the stream starts and is gone when the run publishes.
    messages = [schema_msg(X), *contacts(X, [1, 2]), bookmark_state(X, "2024-09-26T02:00:00")]
    config = target_config(bucket, pumps_file)
    target = TargetS3Pump(config=config)
    out = io.StringIO()
    with redirect_stdout(out):
        target.process_lines(io.StringIO(to_lines(messages)))
        bucket.client.delete_bucket(Bucket=bucket.name)
        with pytest.raises(PumpsNotPublished, match="NoSuchBucket"):
            target.process_endofpipe()
    assert out.getvalue() == ""  # no state
    bucket.client.create_bucket(Bucket=bucket.name)
    result = run_target(config, messages)
    assert bucket.list_keys() == [f"{BASE}/_SUCCESS.json", f"{BASE}/part-00000.csv"]
    assert result.states == [bookmark_state(X, "2024-09-26T02:00:00")["value"]]


# --------------------------------------------------------------------------- real process


def _wait_for_spool(spool_dir: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """The target created its spool: it accepted the stream and checked the bucket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(spool_dir.glob("target-s3-pump-*/*.spool")):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("target did not start spooling")


def test_s3_server_stopped_mid_run_then_rerun_publishes(pumps_file: Path, tmp_path: Path) -> None:
    server = LocalS3(tmp_path / "s3")
    server.start()
    try:
        bucket = new_bucket(server)
        spool_dir = tmp_path / "spool"
        config = target_config(bucket, pumps_file, spool_dir=str(spool_dir), max_attempts=2)
        messages = [schema_msg(X), *contacts(X, range(1, 100))]
        messages.append(bookmark_state(X, "2024-09-26T23:00:00"))
        proc = start_cli(config, tmp_path)
        assert proc.stdin is not None
        proc.stdin.write(to_lines(messages))
        proc.stdin.flush()
        _wait_for_spool(spool_dir, proc)
        server.stop()  # S3 goes away while the target still reads its input
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, stderr
        errors = error_lines(stderr)
        assert errors[0].startswith("target-s3-pump: error: pump 'pump_x': ")
        assert errors[0].endswith("; no marker written")
        assert errors[-1] == (
            "target-s3-pump: error: published in this run: none; state not emitted"
        )
        assert stdout == ""
        assert list(spool_dir.iterdir()) == []  # spooled rows do not outlive the run

        server = LocalS3(tmp_path / "s3", port=server.port)  # same endpoint, empty store
        server.start()
        server.create_buckets(bucket.name)
        proc = start_cli(config, tmp_path)
        stdout, stderr = proc.communicate(to_lines(messages), timeout=120)
        assert proc.returncode == 0, stderr
        assert json.loads(stdout) == bookmark_state(X, "2024-09-26T23:00:00")["value"]
        keys = server.client().list_objects_v2(Bucket=config["bucket"])["Contents"]
        assert sorted(k["Key"] for k in keys) == [f"{BASE}/_SUCCESS.json", f"{BASE}/part-00000.csv"]
    finally:
        server.stop()


def test_sigterm_stops_without_publishing(bucket: Bucket, pumps_file: Path, tmp_path: Path) -> None:
    # Meltano stops the loader this way (e.g. after a failed mapper); the SDK's default would
    # drain and finish, i.e. publish an incomplete pump as complete.
    spool_dir = tmp_path / "spool"
    proc = start_cli(target_config(bucket, pumps_file, spool_dir=str(spool_dir)), tmp_path)
    assert proc.stdin is not None
    proc.stdin.write(
        to_lines(
            [schema_msg(X), *contacts(X, range(1, 20)), bookmark_state(X, "2024-09-26T19:00:00")]
        )
    )
    proc.stdin.flush()
    _wait_for_spool(spool_dir, proc)
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopping without publishing; no marker written" in stderr
    assert stdout == ""
    assert bucket.list_keys() == []
    assert list(spool_dir.iterdir()) == []


def test_cli_exit_code_and_lines_when_publication_fails(pumps_file: Path, tmp_path: Path) -> None:
    bucket = new_bucket()
    config = target_config(bucket, pumps_file, stages={"gone": {"bucket": "pump-test-gone"}})
    pumps = write_pumps(tmp_path, [pump("pump_x", stage="gone")])
    proc = run_cli({**config, "pumps_file": str(pumps)}, [schema_msg(X)], tmp_path)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        "target-s3-pump: error: bucket s3://pump-test-gone: does not exist; nothing was written"
    ]


def test_value_that_parquet_cannot_hold_fails_the_pump(bucket: Bucket, pumps_file: Path) -> None:
    config = target_config(bucket, pumps_file, format="parquet", validate_records=False)
    bad = {"id": 1, "updated_at": "not a timestamp"}
    with pytest.raises(PumpsNotPublished) as info:
        run_target(config, [schema_msg(Y), record_msg(Y, bad)])
    assert (
        str(info.value)
        .splitlines()[0]
        .startswith("pump 'pump_y': column 'updated_at': cannot write a value as Parquet timestamp")
    )
    assert bucket.list_keys() == []
