"""Helpers for target-s3-pump tests: buckets on the session's moto S3, pumps.yml, Singer messages.

The server is :func:`pgp_testkit.session.session_s3`, started on first use (also at collection
time) and stopped when pytest exits; the process dies with pytest even when pytest is killed
(``LocalS3`` without ``detach``). The ``bucket`` fixture of the plugin is :func:`new_bucket`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from target_s3_pump.target import TargetS3Pump

from pgp_testkit.locals3 import CREDENTIALS, LocalS3
from pgp_testkit.paths import ROOT
from pgp_testkit.session import session_s3

REFERENCE_PUMPS_YML = ROOT.parent / "shared/reference/gitlab/pumps.yml"
# Verbatim copy (tnmy44/gitlab-analytics @ eb2a578, pump/pumps.yml), so the test runs anywhere.
GITLAB_PUMPS_YML = ROOT / "target-s3-pump" / "tests" / "data" / "gitlab_pumps.yml"
INTERVAL_END = "2024-09-27T05:00:00Z"
STAMP = "2024_09_27__050000"


@dataclass
class Bucket:
    name: str
    server: LocalS3
    client: Any = field(repr=False)

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def head(self, key: str) -> dict[str, Any]:
        return dict(self.client.head_object(Bucket=self.name, Key=key))

    def json(self, key: str) -> Any:
        return json.loads(self.read(key))

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)


def new_bucket(server: LocalS3 | None = None) -> Bucket:
    server = server or session_s3()
    client = server.client()
    name = f"pump-test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(name=name, server=server, client=client)


# --------------------------------------------------------------------------- pumps.yml


def pump(
    model: str,
    timestamp_column: str | None = "updated_at",
    sensitive: bool = False,
    owner: str = "@data-team",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "model": model,
        "timestamp_column": timestamp_column,
        "sensitive": sensitive,
        "owner": owner,
        **extra,
    }


def write_pumps(directory: Path, entries: Sequence[Mapping[str, Any]]) -> Path:
    path = directory / "pumps.yml"
    path.write_text(yaml.safe_dump({"pumps": [dict(e) for e in entries]}, sort_keys=False))
    return path


def target_config(bucket: Bucket, pumps_file: Path, /, **overrides: Any) -> dict[str, Any]:
    return {
        "pumps_file": str(pumps_file),
        "bucket": bucket.name,
        "prefix": "pumps",
        "endpoint_url": bucket.server.endpoint_url,
        "region": CREDENTIALS["AWS_DEFAULT_REGION"],
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "interval_end": INTERVAL_END,
        "max_attempts": 2,
        **overrides,
    }


# --------------------------------------------------------------------------- Singer messages

# Shaped like MeltanoLabs tap-postgres output for a dbt pump table.
CONTACT_PROPERTIES: dict[str, Any] = {
    "id": {"type": ["integer"]},
    "email": {"type": ["string", "null"]},
    "note": {"type": ["string", "null"]},
    "score": {"type": ["number", "null"]},
    "active": {"type": ["boolean", "null"]},
    "updated_at": {"type": ["string", "null"], "format": "date-time"},
}


def schema_msg(
    stream: str,
    properties: Mapping[str, Any] | None = None,
    key_properties: Sequence[str] = ("id",),
) -> dict[str, Any]:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": dict(properties or CONTACT_PROPERTIES)},
        "key_properties": list(key_properties),
    }


def record_msg(stream: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": dict(record)}


def state_msg(value: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "STATE", "value": dict(value)}


def bookmark_state(stream: str, value: str) -> dict[str, Any]:
    return state_msg(
        {"bookmarks": {stream: {"replication_key": "updated_at", "replication_key_value": value}}}
    )


def contacts(stream: str, ids: Iterable[int]) -> list[dict[str, Any]]:
    return [
        record_msg(
            stream,
            {
                "id": i,
                "email": f"user{i}@example.com",
                "note": None,
                "score": i / 2,
                "active": i % 2 == 0,
                "updated_at": f"2024-09-26T{i % 24:02d}:00:00+00:00",
            },
        )
        for i in ids
    ]


def to_lines(messages: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


@dataclass
class RunResult:
    target: TargetS3Pump
    states: list[dict[str, Any]]


def run_target(
    config: Mapping[str, Any], messages: Iterable[Mapping[str, Any]] | str, *, binary: bool = True
) -> RunResult:
    """Run the target in this process on ``messages`` (or raw lines); exceptions propagate.
    The input is bytes, as the console script reads stdin, or text with ``binary=False``."""
    target = TargetS3Pump(config=dict(config))
    text = messages if isinstance(messages, str) else to_lines(messages)
    out = io.StringIO()
    with redirect_stdout(out):
        target.listen(io.BytesIO(text.encode()) if binary else io.StringIO(text))
    states = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return RunResult(target=target, states=states)


def run_cli(
    config: Mapping[str, Any],
    messages: Iterable[Mapping[str, Any]] | str,
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the installed console entry point as Meltano would (config file, stdin)."""
    config_path = tmp_path / f"config-{uuid.uuid4().hex[:8]}.json"
    config_path.write_text(json.dumps(dict(config)))
    text = messages if isinstance(messages, str) else to_lines(messages)
    return subprocess.run(
        [sys.executable, "-m", "target_s3_pump.target", "--config", str(config_path)],
        input=text,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def start_cli(config: Mapping[str, Any], tmp_path: Path) -> subprocess.Popen[str]:
    """The console entry point with a pipe on stdin: the test feeds it and watches S3 meanwhile."""
    config_path = tmp_path / f"config-{uuid.uuid4().hex[:8]}.json"
    config_path.write_text(json.dumps(dict(config)))
    return subprocess.Popen(
        [sys.executable, "-m", "target_s3_pump.target", "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def unfinished_uploads(bucket: Bucket) -> list[tuple[str, int]]:
    """(key, parts uploaded) of every multipart upload in the bucket not completed or aborted."""
    found = []
    uploads = bucket.client.list_multipart_uploads(Bucket=bucket.name).get("Uploads", [])
    for upload in uploads:
        parts = bucket.client.list_parts(
            Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"]
        ).get("Parts", [])
        found.append((upload["Key"], len(parts)))
    return found


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("target-s3-pump: error:")]
