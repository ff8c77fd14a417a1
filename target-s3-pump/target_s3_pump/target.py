"""target-s3-pump: GitLab's Data Pump as a Singer target.

Models listed in pumps.yml go to S3. The run, in order:

1. settings and pumps.yml are validated (one line per problem; nothing is read or written);
2. every SCHEMA message is checked against pumps.yml: the stream must be a listed model, from
   the right schema (sensitive or not) when the name says it, and the pump's bucket must exist.
   Anything else fails the run before any object is written;
3. records are spooled to local disk (memory holds one batch);
4. at the end of the input each pump is published (:mod:`target_s3_pump.publish`): files, then
   the marker. Only then is the last STATE forwarded, so Meltano's bookmark never moves past
   data that is not marked complete in S3.
"""

from __future__ import annotations

import atexit
import io
import json
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import IO, Any, Protocol

import msgspec
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.io_base import SingerReader
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import SingerMessageType

from target_s3_pump.config import (
    COMPRESSIONS,
    ENCRYPTIONS,
    FORMATS,
    HEADER_CASES,
    PumpConfigError,
    PumpSettings,
)
from target_s3_pump.formats import csv_line, header_names
from target_s3_pump.publish import (
    Layout,
    PublishError,
    PumpResult,
    content_type_of,
    object_metadata,
    publish_pump,
)
from target_s3_pump.pumps import Pump, PumpsFileError, StreamRejected
from target_s3_pump.s3 import MIB, S3Error, S3Store, make_client
from target_s3_pump.sinks import PumpSink
from target_s3_pump.spool import CsvSpool, PumpSpool
from target_s3_pump.streaming import PumpStreamer


class PumpsNotPublished(RuntimeError):
    """Some pumps could not be published (others may have been); no state was forwarded."""


class PumpMessageReader(SingerReader):
    """The SDK's reader with msgspec's JSON parser (several times faster than the stdlib's),
    as singer_sdk.contrib.msgspec's reader, reading stdin as bytes.

    Numbers come out exactly as with the SDK's parser: integers as ``int``, others as
    ``Decimal`` of their JSON spelling (``1.10`` stays ``1.10``). A line msgspec rejects (e.g.
    ``NaN``, which Python's parser accepts) goes to the SDK's parser, so what is accepted and
    the error for a bad line stay the SDK's.
    """

    _decoder = msgspec.json.Decoder(float_hook=Decimal)

    @property
    def default_input(self) -> Any:
        return sys.stdin.buffer  # bytes: msgspec parses UTF-8 itself, no text decoding first

    # Set by the target: the sink that takes a stream's RECORD lines itself, if it has one.
    line_taker: Callable[[str], LineTaker | None] = staticmethod(lambda _: None)
    # Bytes read at once from a binary input; the chunk's whole lines are tried as one block.
    chunk_bytes = 1 << 20

    def process_lines(
        self, file_input: IO[bytes] | None, callbacks: dict[str, Callable[[dict], None]]
    ) -> Counter[str]:
        """The SDK's loop, with the checks that only an odd line needs kept for odd lines.

        Once a stream's records come and its sink takes lines (typed rows, see rows.py), each
        chunk of input is offered to that sink whole, in one decoding call; a chunk it refuses
        (another message in it, a line it does not type) is read line by line: lines it still
        takes one at a time, the others the SDK's way, in order.
        """
        stats: dict[str, int] = {}
        decode = self._decoder.decode
        on_record = callbacks[SingerMessageType.RECORD]
        records = 0
        taker: LineTaker | None = None
        for chunk, lines in _chunks(file_input or self.default_input, self.chunk_bytes):
            if taker is not None:
                try:
                    taker.take_lines(chunk, lines)
                except msgspec.MsgspecError:
                    pass
                else:
                    records += lines
                    continue
            for line in _lines(chunk):
                self._current_message = line
                if taker is not None:
                    try:
                        taker.take_line(line)
                    except msgspec.MsgspecError:
                        pass
                    else:
                        records += 1
                        continue
                try:
                    message = decode(line)
                except msgspec.DecodeError:
                    message = self.deserialize_json(line)  # the SDK's parser, and its error
                if type(message) is dict and message.get("type") == "RECORD":
                    on_record(message)
                    records += 1
                    taker = self.line_taker(message.get("stream"))  # type: ignore[arg-type]
                    continue
                kind = message.get("type") if type(message) is dict else None
                if kind is None:
                    self.assert_line_requires(message, requires={"type"})  # the SDK's error
                callback = callbacks.get(kind)  # type: ignore[arg-type]
                if callback is not None:
                    callback(message)
                    if kind == "SCHEMA":  # a new sink, perhaps replacing the one taker fed
                        taker = self.line_taker(message.get("stream"))
                else:
                    self._process_unknown_message(message)
                stats[kind] = stats.get(kind, 0) + 1  # type: ignore[index]
        if records:
            stats[SingerMessageType.RECORD] = records
        return Counter(stats)

    def deserialize_json(self, line: str | bytes) -> dict:  # type: ignore[override]
        try:
            return self._decoder.decode(line)  # type: ignore[no-any-return]
        except msgspec.DecodeError:
            text = line.decode() if isinstance(line, bytes) else line
            return super().deserialize_json(text)


class LineTaker(Protocol):
    """A sink decoding its stream's RECORD lines itself (PumpSink). Both methods raise
    ``msgspec.MsgspecError``, having taken nothing, for input they do not take."""

    def take_line(self, line: bytes | str) -> None: ...

    def take_lines(self, chunk: bytes | str, lines: int) -> None: ...


def _chunks(source: IO[Any], size: int) -> Iterator[tuple[bytes | str, int]]:
    """``(chunk, number of lines)``: whole lines of a binary input, as much as one read
    gives (a pipe gives what the writer has written: no waiting for a full chunk); a text
    input (tests) line by line."""
    read1 = getattr(source, "read1", None)
    if read1 is None:
        for line in source:
            yield line, 1
        return
    pending: list[bytes] = []  # the start of a line that continues in a later read
    while data := read1(size):
        end = data.rfind(b"\n") + 1
        if not end:
            pending.append(data)
            continue
        chunk = b"".join([*pending, data[:end]]) if pending else data[:end]
        pending = [data[end:]] if end < len(data) else []
        yield chunk, chunk.count(b"\n")
    if pending:
        yield b"".join(pending), 1


def _lines(chunk: bytes | str) -> Iterator[bytes | str]:
    """A chunk's lines as iterating the input gives them (split at LF only, ends kept)."""
    return iter(io.BytesIO(chunk)) if isinstance(chunk, bytes) else iter((chunk,))


class TargetS3Pump(Target):
    """Pumps the models listed in pumps.yml to S3."""

    name = "target-s3-pump"
    default_sink_class = PumpSink
    message_reader_class = PumpMessageReader

    config_jsonschema = th.PropertiesList(
        th.Property(
            "pumps_file",
            th.StringType,
            required=True,
            description="Path of pumps.yml (GitLab's format): the models that may be pumped.",
        ),
        th.Property(
            "bucket",
            th.StringType,
            description="Bucket for pumps without a 'stage' (and default bucket of stages).",
        ),
        th.Property(
            "prefix",
            th.StringType,
            default="",
            description="Key prefix under 'bucket' for pumps without a 'stage'.",
        ),
        th.Property(
            "stages",
            th.CustomType(
                {
                    "type": ["object", "null"],
                    # Values are {bucket, prefix}, or strings under dotted keys
                    # ("stage.prefix"): Meltano's flattened form, folded in config.py.
                    "additionalProperties": {
                        "type": ["object", "string", "null"],
                        "properties": {
                            "bucket": {"type": ["string", "null"]},
                            "prefix": {"type": ["string", "null"]},
                        },
                    },
                }
            ),
            description="Stage name (pumps.yml 'stage') -> {bucket, prefix}. A pump naming a "
            "stage that is not configured here fails validation. Dotted keys "
            "('s3_data_pump.prefix': 'x') are accepted too.",
        ),
        th.Property(
            "format",
            th.StringType,
            default="csv",
            allowed_values=list(FORMATS),
            description="csv (as Snowflake unloaded it for GitLab), parquet or jsonl.",
        ),
        th.Property(
            "compression",
            th.StringType,
            default="none",
            allowed_values=list(COMPRESSIONS),
            description="none or gzip (csv/jsonl: .gz objects; parquet: gzip codec inside).",
        ),
        th.Property(
            "max_rows_per_file",
            th.IntegerType,
            default=1_000_000,
            description="Rows per part for 'single: false' pumps. There is no cap per run.",
        ),
        th.Property(
            "interval_end",
            th.DateTimeType,
            description="End of the run's data interval (ISO 8601, naive = UTC); names the "
            "files YYYY_MM_DD__HHMMSS. Default: the run's start, UTC, whole seconds. Pass the "
            "scheduler's interval end to make retries overwrite the same objects.",
        ),
        th.Property(
            "header_case",
            th.StringType,
            default="as_is",
            allowed_values=list(HEADER_CASES),
            description="Column names in headers: as_is, upper (like Snowflake unquoted "
            "identifiers), lower.",
        ),
        th.Property(
            "pumps_schema",
            th.StringType,
            default="pumps",
            description="Warehouse schema of non-sensitive pump models.",
        ),
        th.Property(
            "pumps_sensitive_schema",
            th.StringType,
            default="pumps_sensitive",
            description="Warehouse schema of sensitive pump models.",
        ),
        th.Property(
            "endpoint_url",
            th.StringType,
            description="S3 endpoint (e.g. the local moto server); default: AWS.",
        ),
        th.Property("region", th.StringType, description="AWS region of the bucket(s)."),
        th.Property(
            "aws_access_key_id",
            th.StringType,
            secret=True,
            description="Access key; default: boto3's credential chain (env, profile, role).",
        ),
        th.Property(
            "aws_secret_access_key",
            th.StringType,
            secret=True,
            description="Secret key; default: boto3's credential chain.",
        ),
        th.Property(
            "aws_session_token",
            th.StringType,
            secret=True,
            description="Session token for temporary credentials.",
        ),
        th.Property("aws_profile", th.StringType, description="Named profile to use."),
        th.Property(
            "server_side_encryption",
            th.StringType,
            default="AES256",
            allowed_values=list(ENCRYPTIONS),
            description="x-amz-server-side-encryption of every object: AES256, aws:kms, none.",
        ),
        th.Property(
            "sse_kms_key_id",
            th.StringType,
            description="KMS key id/ARN for aws:kms (default: the account's aws/s3 key).",
        ),
        th.Property(
            "multipart_chunk_size_mb",
            th.IntegerType,
            default=16,
            description="Multipart upload threshold and part size in MiB (min 5).",
        ),
        th.Property(
            "max_attempts",
            th.IntegerType,
            default=5,
            description="Attempts per S3 request, the first included (boto3 standard retry "
            "mode: exponential backoff with jitter on 5xx, throttling, connection errors and "
            "timeouts). Then the pump fails without a marker.",
        ),
        th.Property(
            "s3_connect_timeout_seconds",
            th.NumberType,
            default=10,
            description="Seconds to wait for a connection to S3, per attempt.",
        ),
        th.Property(
            "s3_read_timeout_seconds",
            th.NumberType,
            default=120,
            description="Seconds to wait for S3 to answer (or send more of its answer), per "
            "attempt; a slower request counts as a failed attempt.",
        ),
        th.Property(
            "spool_dir",
            th.StringType,
            description="Directory for the local spool (default: the system temp dir). "
            "Needs room for the run's data; holds sensitive rows until the run ends.",
        ),
        th.Property(
            "summary_file",
            th.StringType,
            description="Write a JSON summary of the published objects here.",
        ),
    ).to_dict()

    def __init__(
        self,
        *,
        config: dict | Path | str | list[Path | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: Any = None,
    ) -> None:
        self.run_started_at = datetime.now(timezone.utc)
        self._spools: dict[str, PumpSpool] = {}  # model -> spool, in order of first SCHEMA
        self._stream_pumps: dict[str, Pump] = {}  # accepted stream -> pump
        self._direct_sinks: dict[str, PumpSink] = {}  # stream -> sink taking its records as-is
        self._streamers: dict[str, PumpStreamer] = {}  # model -> its uploads while reading
        self._held_state: dict | None = None
        self._published = False
        self._workdir: Path | None = None
        self._store: S3Store | None = None
        self.results: list[PumpResult] = []
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            message_reader=message_reader,
        )
        self.settings = PumpSettings.from_config(self.config, now=self.run_started_at)
        self.max_parallelism = 1  # spools are appended in input order
        if isinstance(self.message_reader, PumpMessageReader):
            self.message_reader.line_taker = self.line_taker

    # ------------------------------------------------------------------ resources

    @property
    def store(self) -> S3Store:
        if self._store is None:
            self._store = S3Store(
                make_client(self.config),
                encryption=self.settings.encryption,
                kms_key_id=self.settings.kms_key_id,
                multipart_chunk_mb=self.settings.multipart_chunk_mb,
            )
        return self._store

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            spool_dir = self.config.get("spool_dir") or None
            if spool_dir:
                Path(spool_dir).mkdir(parents=True, exist_ok=True)
            # mkdtemp: mode 0700, since the spool holds (possibly sensitive) rows.
            self._workdir = Path(tempfile.mkdtemp(prefix="target-s3-pump-", dir=spool_dir))
            atexit.register(shutil.rmtree, self._workdir, True)
        return self._workdir

    def _remove_workdir(self) -> None:
        self._abort_uploads()
        for spool in self._spools.values():
            spool.remove()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    # ------------------------------------------------------------------ streams

    def accept_stream(self, stream_name: str) -> Pump:
        """The pump fed by ``stream_name``; :class:`StreamRejected` for anything else."""
        pump = self._stream_pumps.get(stream_name)
        if pump is not None:
            return pump
        pump = self.settings.pumps.resolve_stream(stream_name, self.settings.schemas)
        for other, other_pump in self._stream_pumps.items():
            if other_pump.model == pump.model:
                raise StreamRejected(
                    f"streams '{other}' and '{stream_name}' both map to pump '{pump.model}'; "
                    "a pump takes exactly one stream"
                )
        self._stream_pumps[stream_name] = pump
        return pump

    def get_sink(
        self,
        stream_name: str,
        *,
        record: dict | None = None,
        schema: dict | None = None,
        key_properties: Sequence[str] | None = None,
    ) -> PumpSink:
        if schema is not None:
            self.accept_stream(stream_name)  # before a sink (or anything else) exists
            if self.sink_exists(stream_name):
                # A changed schema replaces the sink; spool its pending rows first, in order.
                self.drain_one(super().get_sink(stream_name))
        sink = super().get_sink(
            stream_name, record=record, schema=schema, key_properties=key_properties
        )
        assert isinstance(sink, PumpSink)
        return sink

    def spool_for(self, stream_name: str, schema: dict) -> PumpSpool:
        """Called by each new sink: the pump's spool, with the schema's columns merged in."""
        pump = self.accept_stream(stream_name)
        spool = self._spools.get(pump.model)
        if spool is None:
            self.store.check_bucket(self.settings.location_for(pump).bucket)
            spool_class = CsvSpool if self.settings.format == "csv" else PumpSpool
            part_rows = None if pump.single else self.settings.max_rows_per_file
            spool = spool_class(self.workdir, pump, stream_name, part_rows)
            self._spools[pump.model] = spool
            if isinstance(spool, CsvSpool) and self.settings.compression == "none":
                spool.listener = self._streamer_for(spool).add
        spool.update_schema(schema, self.logger)
        return spool

    def _streamer_for(self, spool: CsvSpool) -> PumpStreamer:
        """Uploads the pump's data while its rows arrive (see streaming.py)."""
        pump, settings = spool.pump, self.settings
        layout = Layout.for_pump(pump, settings)
        streamer = PumpStreamer(
            self.store,
            layout.location.bucket,
            layout.data_key,
            spool.path,
            lambda columns: csv_line(header_names(columns, settings.header_case)).encode(),
            settings.multipart_chunk_mb * MIB,
            content_type_of(settings),
            object_metadata(pump),
            self.logger,
        )
        if not self._streamers:
            atexit.register(self._abort_uploads)  # a run failing mid-input leaves none
        self._streamers[pump.model] = streamer
        return streamer

    def _abort_uploads(self) -> None:
        for streamer in self._streamers.values():
            streamer.abort()

    def register_sink(self, sink: PumpSink) -> None:
        """Called by each new sink: may its stream's records skip the SDK's per-record path?

        Only when the SDK would hand the record to the sink unchanged: one identity map
        (no stream maps, aliases or flattening for it) and no metadata columns added.
        """
        maps = self.mapper.stream_maps.get(sink.stream_name, [])
        direct = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == sink.stream_name
            and not maps[0].flattening_enabled
            and not sink.include_sdc_metadata_properties
        )
        if direct:
            self._direct_sinks[sink.stream_name] = sink
        else:
            self._direct_sinks.pop(sink.stream_name, None)

    def line_taker(self, stream_name: str) -> PumpSink | None:
        """The sink that decodes the stream's RECORD lines itself, when it can."""
        sink = self._direct_sinks.get(stream_name)
        return sink if sink is not None and sink.row_type is not None else None

    def _process_record_message(self, message_dict: dict) -> None:
        # Most of the time per row went to the SDK's generic per-record path; for streams that
        # need none of it the record goes straight to its sink (see PumpSink.add_record). The
        # SDK's drain-all after 5 minutes is skipped there: it would only move rows into the
        # spool earlier, since the state is held until publication anyway.
        sink = self._direct_sinks.get(message_dict.get("stream"))  # type: ignore[arg-type]
        record = message_dict.get("record")
        if sink is None or type(record) is not dict:
            super()._process_record_message(message_dict)
            return
        sink.add_record(record)

    # ------------------------------------------------------------------ end of input

    def _write_state_message(self, state: dict) -> None:
        # Held until the data it covers is published (marker written): a bookmark must never
        # move past rows a consumer cannot see yet.
        if not self._published:
            self._held_state = state
            return
        super()._write_state_message(state)

    def process_endofpipe(self) -> None:
        super().process_endofpipe()  # drains every sink into its spool; state is held
        try:
            self._publish_all()
        finally:
            self._remove_workdir()
        self._published = True
        if self._held_state is not None:
            self._write_state_message(self._held_state)

    def _publish_all(self) -> None:
        writer = f"{self.name} {self.get_plugin_version()}"
        failures: list[str] = []
        for spool in self._spools.values():
            try:
                self.results.append(
                    publish_pump(
                        spool,
                        self.settings,
                        self.store,
                        self.workdir,
                        self.logger,
                        writer,
                        self._streamers.get(spool.pump.model),
                    )
                )
            except PublishError as exc:
                self.logger.error("%s", exc)
                failures.append(str(exc))
            finally:
                streamer = self._streamers.get(spool.pump.model)
                if streamer is not None:
                    streamer.abort()  # nothing left to abort once published
                spool.remove()
        self._report(failures)
        if failures:
            published = ", ".join(r.pump.model for r in self.results) or "none"
            raise PumpsNotPublished(
                "\n".join([*failures, f"published in this run: {published}; state not emitted"])
            )

    def _report(self, failures: list[str]) -> None:
        objects = sum(len(r.files) + 1 for r in self.results)
        rows = sum(r.rows for r in self.results)
        self.logger.info(
            "summary: %d pump(s) published, %d object(s) written, %d row(s); %d pump(s) failed",
            len(self.results),
            objects,
            rows,
            len(failures),
        )
        for result in self.results:
            for f in result.files:
                self.logger.info(
                    "  s3://%s/%s  rows=%d bytes=%d sha256=%s",
                    result.bucket,
                    f.key,
                    f.rows,
                    f.bytes,
                    f.sha256,
                )
            self.logger.info("  s3://%s/%s  (marker)", result.bucket, result.marker_key)
        # Legitimate for a partial run (meltano --select), else a sign the extractor's
        # selection was not derived from pumps.yml (see pumps-check --meltano-env).
        received = {spool.pump.model for spool in self._spools.values()}
        for pump in self.settings.pumps:
            if pump.model not in received:
                self.logger.warning(
                    "pump %s: no stream '%s' in this run; nothing published for it",
                    pump.model,
                    pump.stream_id(self.settings.schemas),
                )
        summary_file = self.config.get("summary_file")
        if summary_file:
            summary = {
                "interval_end": self.settings.interval_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "published": [r.to_dict() for r in self.results],
                "failed": failures,
            }
            path = Path(summary_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # The SDK drains and finishes on SIGTERM/SIGINT; a pump must not: a killed run
        # (e.g. its extractor failed) would publish incomplete data as complete.
        self.logger.error(
            "received signal %d: stopping without publishing; no marker written", signum
        )
        self._remove_workdir()
        sys.exit(128 + signum)


OPERATOR_ERRORS = (
    PumpConfigError,
    PumpsFileError,
    StreamRejected,
    S3Error,
    PumpsNotPublished,
    ConfigValidationError,
)


def main() -> None:
    """Console entry point: operator errors end in clear lines, not a traceback."""
    try:
        TargetS3Pump.cli()
    except OPERATOR_ERRORS as exc:
        lines = str(exc).splitlines()
        if isinstance(exc, ConfigValidationError):
            lines += [str(e) for e in getattr(exc, "errors", [])]
        if isinstance(exc, StreamRejected | S3Error):
            lines[-1] += "; nothing was written"
        for line in lines:
            print(f"target-s3-pump: error: {line}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
