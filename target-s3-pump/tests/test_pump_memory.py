"""Memory stays flat with model size; no cap on rows per run. Measured, not timed.

The target runs as its console entry point on generated input of two sizes; the peak RSS of
each process (``ru_maxrss`` from ``wait4``) is compared. Rows held in memory would cost several
times the input size (Python dicts); spooling keeps the peak at about one batch plus the
multipart buffers. The measurements are printed (``pytest -s``) and attached to the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pgp_testkit.s3pump import (
    STAMP,
    Bucket,
    pump,
    schema_msg,
    target_config,
    write_pumps,
)

from target_s3_pump.config import PumpSettings
from target_s3_pump.publish import publish_pump
from target_s3_pump.s3 import S3Store, make_client
from target_s3_pump.spool import PumpSpool

pytestmark = pytest.mark.slow

Y = "pumps_sensitive-pump_big"
SMALL, LARGE = 10_000, 100_000
MIB = 1024 * 1024


def write_input(path: Path, rows: int) -> int:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(schema_msg(Y)) + "\n")
        for i in range(rows):
            fh.write(
                f'{{"type":"RECORD","stream":"{Y}","record":{{"id":{i},'
                f'"email":"user{i}@example.com","note":"text, with \\"quotes\\" {i}",'
                f'"score":{i}.25,"active":true,"updated_at":"2024-09-26T05:00:00+00:00"}}}}\n'
            )
    return path.stat().st_size


def peak_rss_mib(config_path: Path, input_path: Path) -> float:
    with open(input_path, "rb") as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-m", "target_s3_pump.target", "--config", str(config_path)],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        stderr = proc.stderr.read()  # drain, so the child never blocks on a full pipe
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    return usage.ru_maxrss / 1024  # Linux: KiB


def test_memory_is_flat_with_model_size(
    bucket: Bucket, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    pumps_file = write_pumps(tmp_path, [pump("pump_big", None, sensitive=True, single=True)])
    measurements = {}
    for rows in (SMALL, LARGE):
        input_path = tmp_path / f"input-{rows}.jsonl"
        input_bytes = write_input(input_path, rows)
        config_path = tmp_path / f"config-{rows}.json"
        config = target_config(
            bucket,
            pumps_file,
            interval_end=f"2024-09-27T05:00:{rows % 60:02d}Z",
            multipart_chunk_size_mb=5,  # the large object goes up in multipart chunks
            validate_records=False,  # a faster run; validation does not change memory
        )
        config_path.write_text(json.dumps(config))
        rss = peak_rss_mib(config_path, input_path)
        stamp = f"2024_09_27__0500{rows % 60:02d}"
        marker = bucket.json(f"pumps/pump_big/{stamp}_SUCCESS.json")
        (file,) = marker["files"]
        assert file["rows"] == rows
        # Stream the object back and check it against the marker, chunk by chunk.
        digest, size = hashlib.sha256(), 0
        for chunk in bucket.client.get_object(Bucket=bucket.name, Key=file["key"])[
            "Body"
        ].iter_chunks(MIB):
            digest.update(chunk)
            size += len(chunk)
        assert (size, digest.hexdigest()) == (file["bytes"], file["sha256"])
        measurements[rows] = {
            "input_mib": round(input_bytes / MIB, 1),
            "object_mib": round(size / MIB, 1),
            "peak_rss_mib": round(rss, 1),
        }
    growth = measurements[LARGE]["peak_rss_mib"] - measurements[SMALL]["peak_rss_mib"]
    input_growth = measurements[LARGE]["input_mib"] - measurements[SMALL]["input_mib"]
    report = {
        "rows": measurements,
        "rss_growth_mib": round(growth, 1),
        "input_growth_mib": round(input_growth, 1),
    }
    print(f"\nmemory: {json.dumps(report)}")
    record_property("memory", json.dumps(report))
    # 10x the rows (+19 MiB of input, ~100 MiB as Python dicts) may not cost more than the
    # multipart buffers (up to 4 x 5 MiB in flight) and allocator noise.
    assert growth < 25, report


def test_no_cap_on_rows_per_run(bucket: Bucket, tmp_path: Path) -> None:
    """GitLab's pump stopped at 1,000,000 rows; this one writes them all (publication path)."""
    rows = 1_000_001
    pumps_file = write_pumps(tmp_path, [pump("pump_many", None, sensitive=True, single=True)])
    config = target_config(bucket, pumps_file, multipart_chunk_size_mb=5)
    settings = PumpSettings.from_config(config, now=datetime.now(timezone.utc))
    spool = PumpSpool(tmp_path, settings.pumps.pumps[0], "pumps_sensitive-pump_many")
    spool.update_schema(
        {"properties": {"id": {"type": "integer"}, "v": {"type": "string"}}},
        logging.getLogger("test"),
    )
    for start in range(0, rows, 10_000):
        spool.append([{"id": i, "v": "x"} for i in range(start, min(rows, start + 10_000))])
    store = S3Store(make_client(config), multipart_chunk_mb=5)
    result = publish_pump(spool, settings, store, tmp_path, logging.getLogger("test"), "test")
    assert result.rows == rows
    key = f"pumps/pump_many/{STAMP}.csv"
    assert [f.key for f in result.files] == [key]
    body = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"]
    lines = sum(chunk.count(b"\n") for chunk in body.iter_chunks(MIB))
    assert lines == rows + 1  # header
    assert bucket.json(f"pumps/pump_many/{STAMP}_SUCCESS.json")["rows"] == rows
