"""Contract tests of tap_gitlab_postgres.sdk_compat: one per hook into a private singer-sdk
or psycopg name. Each runs the real SDK (a tiny tap) or a real COPY, so an upgrade that
renames or changes what a hook relies on fails here first."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from click.testing import CliRunner
from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from tap_gitlab_postgres.client import CsvReader
from tap_gitlab_postgres.sdk_compat import (
    BaseBatchFileEncoding,
    BatchConfig,
    CheckpointStream,
    ScopedSyncTap,
)

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}}}


class Numbers(CheckpointStream):
    """Records 1..3 through the SDK, plus ``extra`` counted as written past it."""

    name = "numbers"

    def __init__(self, tap: Tap, extra: int = 0) -> None:
        super().__init__(tap, schema=SCHEMA)
        self.replication_key = "id"
        self.extra = extra

    def amend_schema(self, schema: dict) -> None:
        schema["properties"]["id"]["x-amended"] = True

    def get_records(self, context: Any) -> Iterator[dict]:
        self.count_records(self.extra)
        yield from ({"id": i} for i in (1, 2, 3))


class NumbersTap(ScopedSyncTap):
    name = "tap-numbers"
    config_jsonschema = th.PropertiesList(th.Property("extra", th.IntegerType)).to_dict()
    scope: ClassVar[list[str]] = []

    def discover_streams(self) -> list[Stream]:
        return [Numbers(self, self.config.get("extra", 0))]

    @contextmanager
    def sync_scope(self) -> Iterator[None]:
        self.scope.append("enter")
        yield
        self.scope.append("exit")


def messages(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def synced(capsys: pytest.CaptureFixture[str], **config: Any) -> tuple[NumbersTap, list[dict]]:
    tap = NumbersTap(config=config)
    capsys.readouterr()
    tap.sync_all()
    return tap, messages(capsys.readouterr().out)


def stream_of(tap: Tap) -> Numbers:
    stream = tap.streams["numbers"]
    assert isinstance(stream, Numbers)
    return stream


def test_batch_types_come_from_the_sdk_private_module(tmp_path: Path) -> None:
    """singer_sdk.helpers._batch: BatchConfig.from_dict, encoding and storage as used."""
    config = BatchConfig.from_dict(
        {
            "encoding": {"format": "arrow", "compression": "zstd"},
            "storage": {"root": tmp_path.as_uri(), "prefix": "p-"},
            "batch_size": 7,
        }
    )
    assert isinstance(config.encoding, BaseBatchFileEncoding)
    assert (config.encoding.format, config.encoding.compression) == ("arrow", "zstd")
    assert config.batch_size == 7
    assert config.storage.prefix == "p-"
    with config.storage.open("p-file", "wb") as out:
        out.write(b"x")
    assert config.storage.get_url("p-file") == (tmp_path / "p-file").as_uri()
    assert (tmp_path / "p-file").read_bytes() == b"x"


def test_no_bookmark_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    """_increment_stream_state: the SDK calls it per record; overridden, nothing moves."""
    hook = inspect.signature(Stream._increment_stream_state)
    assert list(hook.parameters) == ["self", "latest_record", "context"]
    assert hook.parameters["context"].kind is inspect.Parameter.KEYWORD_ONLY
    tap, _ = synced(capsys)
    assert "replication_key_value" not in stream_of(tap).stream_state

    class SdkBookmarks(Numbers):
        _increment_stream_state = Stream._increment_stream_state

    class SdkTap(NumbersTap):
        def discover_streams(self) -> list[Stream]:
            return [SdkBookmarks(self)]

    sdk = SdkTap(config={})
    capsys.readouterr()
    sdk.sync_all()
    assert sdk.streams["numbers"].stream_state["replication_key_value"] == 3


def test_schema_messages_are_amended(capsys: pytest.CaptureFixture[str]) -> None:
    """_generate_schema_messages: the SCHEMA message sent carries amend_schema's change."""
    _, sent = synced(capsys)
    schemas = [m for m in sent if m["type"] == "SCHEMA"]
    assert len(schemas) == 1
    assert schemas[0]["schema"]["properties"]["id"]["x-amended"] is True


def test_records_written_past_the_sdk_count(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """get_record_counter: asked once per sync before get_records, so count_records adds
    to the same record_count metric the SDK counts its own records in."""
    with caplog.at_level(logging.INFO, logger="singer_sdk.metrics"):
        synced(capsys, extra=40)
    points = [json.loads(m.split("METRIC: ", 1)[1]) for m in caplog.messages if "METRIC: " in m]
    counts = [p["value"] for p in points if p["metric"] == "record_count"]
    assert counts == [43]


def test_table_version_tags_sdk_records(capsys: pytest.CaptureFixture[str]) -> None:
    """_stream_version: what the SDK puts in RECORD messages' ``version``."""
    tap = NumbersTap(config={})
    stream = stream_of(tap)
    assert stream.table_version is None
    stream.table_version = 17
    assert stream.table_version == 17
    capsys.readouterr()
    tap.sync_all()
    records = [m for m in messages(capsys.readouterr().out) if m["type"] == "RECORD"]
    assert [m["record"]["id"] for m in records] == [1, 2, 3]
    assert {m["version"] for m in records} == {17}


def test_write_state_sends_even_when_flushed(capsys: pytest.CaptureFixture[str]) -> None:
    """_write_state_message and state_manager.is_flushed: a STATE per write_state that
    follows a state change, though no record was written in between (the SDK's state
    writer itself skips a state equal to the last one)."""
    stream = stream_of(NumbersTap(config={}))
    capsys.readouterr()
    for key in (2, 3):
        stream.stream_state["replication_key_value"] = key
        stream.write_state()
    states = [m for m in messages(capsys.readouterr().out) if m["type"] == "STATE"]
    keys = [s["value"]["bookmarks"]["numbers"]["replication_key_value"] for s in states]
    assert keys == [2, 3]


def test_write_activate_version(capsys: pytest.CaptureFixture[str]) -> None:
    """_write_activate_version_message: one ACTIVATE_VERSION for the stream."""
    stream = stream_of(NumbersTap(config={}))
    capsys.readouterr()
    stream.write_activate_version(1234)
    sent = messages(capsys.readouterr().out)
    assert sent == [{"type": "ACTIVATE_VERSION", "stream": "numbers", "version": 1234}]


def test_the_sdk_sends_state_after_each_batch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Not a private name but behaviour PgpStream.get_batches relies on: the SDK sends the
    state right after each BATCH message a stream's get_batches yields."""

    class Batched(Numbers):
        def get_batches(
            self, batch_config: BatchConfig, context: Any = None
        ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
            for n in (1, 2):
                self.stream_state["replication_key_value"] = n
                yield batch_config.encoding, [f"file:///batch-{n}"]

    class BatchedTap(NumbersTap):
        def discover_streams(self) -> list[Stream]:
            return [Batched(self)]

    config = {"encoding": {"format": "jsonl"}, "storage": {"root": tmp_path.as_uri()}}
    tap = BatchedTap(config={"batch_config": config}, validate_config=False)
    capsys.readouterr()
    tap.sync_all()
    sent = [m for m in messages(capsys.readouterr().out) if m["type"] in ("BATCH", "STATE")]
    bookmarks = [
        m["manifest"] if m["type"] == "BATCH" else m["value"]["bookmarks"]["numbers"] for m in sent
    ]
    assert bookmarks[:4] == [
        ["file:///batch-1"],
        {"replication_key_value": 1},
        ["file:///batch-2"],
        {"replication_key_value": 2},
    ]


def test_sync_all_is_final_and_the_cli_runs_it_in_the_scope(tmp_path: Path) -> None:
    """Tap.sync_all: final in the SDK (hence the override in one place), and what the
    CLI calls, so sync_scope surrounds every real sync."""
    assert getattr(Tap.sync_all, "__final__", False) is True
    NumbersTap.scope.clear()
    config = tmp_path / "config.json"
    config.write_text("{}")
    result = CliRunner().invoke(NumbersTap.cli, ["--config", str(config)])
    assert result.exit_code == 0, result.output
    assert NumbersTap.scope == ["enter", "exit"]
    assert '"type":"RECORD"' in result.stdout.replace(" ", "")


def test_finish_copy_out_ends_a_copy_read_past_psycopg(fresh_db: str) -> None:
    """psycopg's _fetch_many and Copy._finished: CsvReader reads a COPY's rows with
    get_copy_data; finish_copy_out takes the result, and the Copy then reads nothing."""
    assert list(inspect.signature(psycopg.generators._fetch_many).parameters) == ["pgconn"]
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        with (
            conn.cursor() as cur,
            cur.copy("COPY (SELECT generate_series(1, 3)) TO STDOUT") as copy,
        ):
            reader = CsvReader(conn, copy)
            data, rows = reader.read(100, 1 << 20)
            assert (bytes(data), rows, reader.done) == (b"1\n2\n3\n", 3, True)
            assert copy.read() == b""
        assert conn.execute("SELECT 42").fetchone() == (42,)


def test_finish_copy_out_raises_the_copy_error(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        sql = "COPY (SELECT 1 / (3 - g) FROM generate_series(1, 5) g) TO STDOUT"
        with (
            pytest.raises(psycopg.errors.DivisionByZero),
            conn.cursor() as cur,
            cur.copy(sql) as copy,
        ):
            CsvReader(conn, copy).read(100, 1 << 20)
        assert conn.execute("SELECT 42").fetchone() == (42,)
