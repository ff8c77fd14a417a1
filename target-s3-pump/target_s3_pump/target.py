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
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

from singer_sdk.singerlib.encoding import GenericSingerReader

from target_s3_pump.config import PumpConfigError, PumpSettings, fill_defaults
from target_s3_pump.fastpath import DirectRecords
from target_s3_pump.formats import csv_line
from target_s3_pump.publish import (
    Layout,
    PublishError,
    PumpResult,
    content_type_of,
    object_metadata,
    publish_pump,
)
from target_s3_pump.pumps import Pump, PumpsFileError, StreamRejected
from target_s3_pump.reader import PumpMessageReader
from target_s3_pump.s3 import MIB, S3Error, S3Store, make_client
from target_s3_pump.sdk_compat import PumpTargetBase
from target_s3_pump.settings import SETTINGS
from target_s3_pump.sinks import PumpSink
from target_s3_pump.spool import CsvSpool, PumpSpool
from target_s3_pump.streaming import PumpStreamer
from target_s3_pump.values import header_names


class PumpsNotPublished(RuntimeError):
    """Some pumps could not be published (others may have been); no state was forwarded."""


class TargetS3Pump(PumpTargetBase):
    """Pumps the models listed in pumps.yml to S3."""

    name = "target-s3-pump"
    default_sink_class = PumpSink
    message_reader_class = PumpMessageReader

    config_jsonschema = SETTINGS.to_dict()
    settings: PumpSettings  # parsed by check_config, before the SDK's setup

    def __init__(
        self,
        *,
        config: dict[str, Any] | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: GenericSingerReader[Any] | None = None,
    ) -> None:
        self.run_started_at = datetime.now(timezone.utc)
        self._spools: dict[str, PumpSpool] = {}  # model -> spool, in order of first SCHEMA
        self._stream_pumps: dict[str, Pump] = {}  # accepted stream -> pump
        self.direct_records = DirectRecords()
        self._streamers: dict[str, PumpStreamer] = {}  # model -> its uploads while reading
        self._held_state: dict[str, Any] | None = None
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
        self.max_parallelism = 1  # spools are appended in input order
        if isinstance(self.message_reader, PumpMessageReader):
            self.message_reader.line_taker = self.direct_records.line_taker

    def check_config(self, config: dict[str, Any], schema: dict[str, Any]) -> None:
        """Settings and pumps.yml, every problem at once (:class:`PumpConfigError`)."""
        self.settings = PumpSettings.from_config(config, now=self.run_started_at, schema=schema)
        fill_defaults(config, schema)

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
        record: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = None,
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

    def spool_for(self, stream_name: str, schema: dict[str, Any]) -> PumpSpool:
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
        """Called by each new sink: may its stream's records take the fast path?"""
        self.direct_records.register(sink, self.mapper)

    def take_record(self, message: dict[str, Any]) -> bool:
        return self.direct_records.take_record(message)

    # ------------------------------------------------------------------ end of input

    def hold_state(self, state: dict[str, Any]) -> bool:
        # Held until the data it covers is published (marker written): a bookmark must never
        # move past rows a consumer cannot see yet.
        if not self._published:
            self._held_state = state
        return not self._published

    def process_endofpipe(self) -> None:
        super().process_endofpipe()  # drains every sink into its spool; state is held
        try:
            self._publish_all()
        finally:
            self._remove_workdir()
        self._published = True
        if self._held_state is not None:
            self.write_state(self._held_state)

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
        # selection is stale (plugins/pumps.meltano.yml: `make definitions`).
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

    def stop_on_signal(self, signum: int) -> None:
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
)


def main() -> None:
    """Console entry point: operator errors end in clear lines, not a traceback."""
    try:
        TargetS3Pump.cli()
    except OPERATOR_ERRORS as exc:
        lines = str(exc).splitlines()
        if isinstance(exc, StreamRejected | S3Error):
            lines[-1] += "; nothing was written"
        for line in lines:
            print(f"target-s3-pump: error: {line}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
