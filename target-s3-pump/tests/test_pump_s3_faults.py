"""S3 misbehaving (5xx answers, a slow endpoint): retries with backoff, else a clean failure.

The target talks to the moto server through :class:`FaultProxy`, an HTTP proxy on loopback that
forwards every request (method, path, headers, body; chunked bodies included) and every answer
unchanged, except the requests a test picks: those get a 5xx S3 error, or no answer in time.
The proxy logs each request it saw, so a test can tell that the faults happened and that the
target retried them (``max_attempts`` attempts per request).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pgp_testkit.s3pump import (
    STAMP,
    Bucket,
    bookmark_state,
    contacts,
    error_lines,
    pump,
    record_msg,
    run_cli,
    run_target,
    schema_msg,
    target_config,
    unfinished_uploads,
    write_pumps,
)

from target_s3_pump.config import PumpConfigError, PumpSettings
from target_s3_pump.s3 import make_client

pytestmark = pytest.mark.slow

X = "pumps-pump_x"
BASE = f"pumps/pump_x/{STAMP}"
PART = f"{BASE}/part-00000.csv"
MARKER = f"{BASE}/_SUCCESS.json"
STATE = bookmark_state(X, "2024-09-26T09:00:00")

# Hop-by-hop headers: about the connection to the proxy, not the request. (Expect:
# 100-continue is answered by the proxy itself before it reads the body.)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "upgrade", "expect"}
ERRORS = {500: "InternalError", 503: "ServiceUnavailable"}


@dataclass(frozen=True)
class Seen:
    """One request that reached the proxy, and what the proxy did with it."""

    method: str
    key: str  # object key (path without the bucket), "" for bucket requests
    query: dict[str, list[str]]
    fault: str | None  # None: forwarded; "500", "503": answered so; "slow": no answer in time

    @property
    def is_upload(self) -> bool:
        """PutObject or UploadPart: a PUT to an object key (the target copies nothing)."""
        return self.method == "PUT" and bool(self.key)

    @property
    def is_part(self) -> bool:
        return self.is_upload and "partNumber" in self.query


@dataclass
class Fault:
    matches: Callable[[Seen], bool]
    status: int | None = None  # answer with this S3 error...
    delay: float = 0.0  # ... or answer nothing for this long, then drop the connection
    times: int | None = None  # the first N matching requests; None: all of them


class FaultProxy:
    """Forwards to ``upstream``, except that requests matching ``fault`` get the fault."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fault: Fault | None = None
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases handlers that are holding back an answer
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def uploads(self, key: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.is_upload and key in (None, s.key)]

    def _decide(self, seen: Seen) -> Fault | None:
        """Record the request; the fault to inject into it, if any (thread-safe)."""
        with self._lock:
            fault = self.fault
            inject = fault is not None and fault.matches(seen) and fault.times != 0
            if inject and fault is not None and fault.times is not None:
                fault.times -= 1
            if inject and fault is not None:
                label = str(fault.status) if fault.status else "slow"
                self.seen.append(Seen(seen.method, seen.key, seen.query, label))
                return fault
            self.seen.append(seen)
            return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as S3 speaks

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                """The request body exactly as sent (chunk framing and trailers kept)."""
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    raw = bytearray()
                    while True:
                        line = self.rfile.readline()
                        raw += line
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while (trailer := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                                raw += trailer
                            raw += b"\r\n"
                            return bytes(raw)
                        raw += self.rfile.read(size + 2)  # data and its CRLF
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                url = urlsplit(self.path)
                key = url.path.lstrip("/").partition("/")[2]  # path style: /<bucket>/<key>
                seen = Seen(self.command, key, parse_qs(url.query, keep_blank_values=True), None)
                fault = proxy._decide(seen)
                if fault is not None and fault.status is None:
                    proxy._stopping.wait(fault.delay)  # the client gives up first
                    self.close_connection = True
                    return
                if fault is not None and fault.status is not None:
                    self._answer_error(fault.status)
                    return
                self._forward(body)

            def _answer_error(self, status: int) -> None:
                code = ERRORS.get(status, "InternalError")
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message>"
                    f"<RequestId>{uuid.uuid4().hex}</RequestId></Error>"
                ).encode()
                self.send_response_only(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = True

            def _forward(self, body: bytes) -> None:
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    upstream.putrequest(
                        self.command, self.path, skip_host=True, skip_accept_encoding=True
                    )
                    for name, value in headers:  # Host and Content-Length/Transfer-Encoding too
                        upstream.putheader(name, value)
                    upstream.endheaders(body or None)
                    response = upstream.getresponse()
                    payload = response.read()
                    self.send_response_only(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() in HOP_BY_HOP | {"transfer-encoding", "content-length"}:
                            continue
                        self.send_header(name, value)
                    if self.command == "HEAD":  # the length of the object, without a body
                        length = response.getheader("Content-Length")
                        if length is not None:
                            self.send_header("Content-Length", length)
                    else:
                        self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler


@pytest.fixture
def proxy(bucket: Bucket) -> Iterator[FaultProxy]:
    p = FaultProxy(bucket.server.endpoint_url).start()
    yield p
    p.stop()


@pytest.fixture
def pumps_file(tmp_path: Path) -> Path:
    return write_pumps(tmp_path, [pump("pump_x")])


def messages(rows: int = 9, note_bytes: int = 0) -> list[dict[str, Any]]:
    records = contacts(X, range(1, rows + 1))
    if note_bytes:
        records = [
            record_msg(X, {**m["record"], "note": f"{m['record']['id']:08d}" * (note_bytes // 8)})
            for m in records
        ]
    return [schema_msg(X), *records, STATE]


def assert_published_complete(bucket: Bucket, rows: int) -> dict[str, Any]:
    """The marker exists and describes the data objects exactly (rows, bytes, sha256)."""
    assert bucket.list_keys() == [MARKER, PART]
    marker = bucket.json(MARKER)
    assert marker["rows"] == rows
    [entry] = marker["files"]
    data = bucket.read(PART)
    assert entry == {
        "key": PART,
        "rows": rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert data.count(b"\n") == rows + 1  # header; no field holds a line break here
    return marker


def test_a_few_5xx_answers_are_retried_and_the_pump_is_published(
    bucket: Bucket, proxy: FaultProxy, pumps_file: Path
) -> None:
    config = target_config(bucket, pumps_file, endpoint_url=proxy.endpoint_url)
    del config["max_attempts"]  # the default (5)
    proxy.fault = Fault(lambda s: s.is_upload, status=503, times=2)
    result = run_target(config, messages(9))
    assert [s.fault for s in proxy.uploads(PART)] == ["503", "503", None]  # same request, again
    assert [s.fault for s in proxy.uploads(MARKER)] == [None]
    assert_published_complete(bucket, rows=9)
    assert result.states == [STATE["value"]]


def test_5xx_answers_to_multipart_parts_are_retried(
    bucket: Bucket, proxy: FaultProxy, pumps_file: Path
) -> None:
    # ~6.4 MB in 5 MiB parts: CreateMultipartUpload, two UploadPart, CompleteMultipartUpload
    # through the proxy, each part's first attempt answered 500.
    config = target_config(
        bucket, pumps_file, endpoint_url=proxy.endpoint_url, multipart_chunk_size_mb=5
    )

    def first_attempt_of_a_part(seen: Seen) -> bool:
        number = seen.query.get("partNumber")
        return seen.is_part and not any(s.query.get("partNumber") == number for s in proxy.seen)

    proxy.fault = Fault(first_attempt_of_a_part, status=500)  # max_attempts 2: one retry each
    result = run_target(config, messages(800, note_bytes=8000))
    parts = [s for s in proxy.seen if s.is_part]
    assert sorted(s.fault or "" for s in parts) == ["", "", "500", "500"]
    assert sorted(s.query["partNumber"][0] for s in parts) == ["1", "1", "2", "2"]
    assert [s.method for s in proxy.seen if "uploadId" in s.query and not s.is_part] == ["POST"]
    assert_published_complete(bucket, rows=800)
    assert bucket.head(PART)["ETag"].endswith('-2"')  # really a two-part upload
    assert result.states == [STATE["value"]]


def test_parts_failing_while_reading_are_dropped_and_the_pump_uploaded_after_the_input(
    bucket: Bucket, proxy: FaultProxy, pumps_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # ~6.4 MB: a 5 MiB chunk goes up while reading (streaming.py); S3 fails every part of that
    # first multipart upload, so at publication it is aborted and the pump uploaded from the
    # spool in a new one.
    config = target_config(
        bucket, pumps_file, endpoint_url=proxy.endpoint_url, multipart_chunk_size_mb=5
    )
    streamed: dict[str, str] = {}

    def part_of_the_first_upload(seen: Seen) -> bool:
        if not seen.is_part:
            return False
        upload_id = seen.query["uploadId"][0]
        return streamed.setdefault("id", upload_id) == upload_id

    proxy.fault = Fault(part_of_the_first_upload, status=500)
    result = run_target(config, messages(800, note_bytes=8000))
    first = streamed["id"]
    failed = [s for s in proxy.seen if s.is_part and s.query["uploadId"] == [first]]
    assert {s.fault for s in failed} == {"500"}
    # max_attempts 2 per part, then given up. The last part may go up too when the input ends
    # before the first part's retries do (the failure is only known once they are over).
    tries = Counter(s.query["partNumber"][0] for s in failed)
    assert "1" in tries and set(tries.values()) == {2}, tries
    assert [
        s.method for s in proxy.seen if s.query.get("uploadId") == [first] and not s.is_part
    ] == [
        "DELETE"  # aborted: no invisible leftover
    ]
    assert "uploading while reading stopped (upload of s3://" in caplog.text
    assert_published_complete(bucket, rows=800)
    assert unfinished_uploads(bucket) == []
    assert result.states == [STATE["value"]]


def assert_clean_failure(proc: Any, bucket: Bucket, cause: str) -> None:
    """Exit 1, one error line naming pump, bucket and key, no traceback, marker or state."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # no STATE forwarded
    first, *rest = error_lines(proc.stderr)
    assert first.startswith(
        f"target-s3-pump: error: pump 'pump_x': upload of s3://{bucket.name}/{PART} failed: "
    ), first
    assert cause in first, first
    assert first.endswith("; no marker written"), first
    assert rest == ["target-s3-pump: error: published in this run: none; state not emitted"]
    assert bucket.list_keys() == []  # nothing reached S3, the marker least of all
    uploads = bucket.client.list_multipart_uploads(Bucket=bucket.name)
    assert uploads.get("Uploads", []) == []


def test_every_upload_answered_500_fails_cleanly_then_a_rerun_publishes(
    bucket: Bucket, proxy: FaultProxy, pumps_file: Path, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    config = target_config(
        bucket, pumps_file, endpoint_url=proxy.endpoint_url, spool_dir=str(spool_dir)
    )
    config["max_attempts"] = 3
    proxy.fault = Fault(lambda s: s.is_upload, status=500)
    proc = run_cli(config, messages(9), tmp_path)
    assert_clean_failure(proc, bucket, "InternalError: injected by the test proxy")
    assert [s.fault for s in proxy.uploads()] == ["500"] * 3  # max_attempts, all on the part
    assert {s.key for s in proxy.uploads()} == {PART}
    assert list(spool_dir.iterdir()) == []

    healthy = {**config, "endpoint_url": bucket.server.endpoint_url}
    proc = run_cli(healthy, messages(9), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == STATE["value"]
    assert_published_complete(bucket, rows=9)


def test_slow_endpoint_times_out_fails_cleanly_then_a_rerun_publishes(
    bucket: Bucket, proxy: FaultProxy, pumps_file: Path, tmp_path: Path
) -> None:
    config = target_config(
        bucket,
        pumps_file,
        endpoint_url=proxy.endpoint_url,
        s3_read_timeout_seconds=1,
        max_attempts=2,
    )
    proxy.fault = Fault(lambda s: s.is_upload, delay=30)  # answers long after the timeout
    proc = run_cli(config, messages(9), tmp_path)
    assert_clean_failure(proc, bucket, "Read timeout on endpoint URL")
    assert [s.fault for s in proxy.uploads()] == ["slow"] * 2
    assert {s.key for s in proxy.uploads()} == {PART}

    proxy.fault = None  # the endpoint recovered
    result = run_target(config, messages(9))
    assert_published_complete(bucket, rows=9)
    assert result.states == [STATE["value"]]


def test_retry_and_timeout_settings_are_checked(bucket: Bucket, pumps_file: Path) -> None:
    config = target_config(bucket, pumps_file, max_attempts=0, s3_read_timeout_seconds=-1)
    config["s3_connect_timeout_seconds"] = "10"
    with pytest.raises(PumpConfigError) as info:
        PumpSettings.from_config(config, now=datetime.now(timezone.utc))
    assert info.value.problems == [
        "setting 'max_attempts' must be a positive integer, got 0",
        "setting 's3_connect_timeout_seconds' must be a positive number, got '10'",
        "setting 's3_read_timeout_seconds' must be a positive number, got -1",
    ]
    fine = target_config(bucket, pumps_file, s3_read_timeout_seconds=0.5)
    client_config = make_client(fine).meta.config
    assert (client_config.read_timeout, client_config.connect_timeout) == (0.5, 10)
    assert client_config.retries == {"total_max_attempts": 2, "mode": "standard"}
    client_config = make_client({}).meta.config  # defaults as before the settings existed
    assert (client_config.read_timeout, client_config.connect_timeout) == (120, 10)
    assert client_config.retries == {"total_max_attempts": 5, "mode": "standard"}
