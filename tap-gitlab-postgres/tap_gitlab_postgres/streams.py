"""One Singer stream per manifest table, with pgp's three load types.

State per stream (``bookmarks.<stream>``; documented in the README):
- ``replication_key_value``: incremental: end of the last completed window (ISO 8601, UTC);
  load_by_id: the last primary key loaded.
- ``table_version``: the ACTIVATE_VERSION of the warehouse copy every record is tagged with.
- ``schema_fingerprint``: hash of the query's column names and types.
- ``full_sync``: only while a full sync runs: ``started_at``, ``version``, ``fingerprint`` and
  ``last_key`` (the last primary key of the last finished chunk).
- ``resync``: set it to true (e.g. ``meltano state merge``) to ask for a full sync.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform

from tap_gitlab_postgres.batches import open_batch_files
from tap_gitlab_postgres.client import SourceDatabase, SourceError, first_line
from tap_gitlab_postgres.manifest import LoadType, ManifestTable
from tap_gitlab_postgres.query import Key, Window
from tap_gitlab_postgres.schema import Column, JsonSchema, fingerprint
from tap_gitlab_postgres.sdk_compat import BaseBatchFileEncoding, BatchConfig, CheckpointStream
from tap_gitlab_postgres.sqltext import sql_string

if TYPE_CHECKING:
    from tap_gitlab_postgres.allowlist import AllowLists
    from tap_gitlab_postgres.tap import TapGitlabPostgres

UPLOADED_AT = "_uploaded_at"
State = dict[str, Any]  # a stream's bookmark (see the module docstring), or its full_sync part
Record = dict[str, Any]
TASK_INSTANCE = "_task_instance"


@dataclass(frozen=True)
class RunSettings:
    """What every stream of one tap run shares."""

    end_bound: datetime  # `execution_date`, or the run's start
    lookback: timedelta
    max_window: timedelta
    chunk_size: int
    test_rows: int
    task_instance: str
    allow: AllowLists
    raw_records: bool = True  # RECORD messages built by Postgres (see _write_raw_records)
    replica_lag_windows: str = "off"  # auto | on | off (tap.py)
    count_source_rows: bool = True  # count(*) after each complete copy (counts.py)


@dataclass(frozen=True)
class Rows:
    """Read these rows and emit them."""

    sql: str


@dataclass(frozen=True)
class Checkpoint:
    """Everything emitted so far is complete: the state (already updated) may be sent."""


@dataclass(frozen=True)
class Activate:
    """A full copy is complete: retire every older version in the warehouse."""

    version: int


Step = Rows | Checkpoint | Activate


@dataclass(frozen=True)
class RunReport:
    """What a finished stream vouches for in ``pgp_row_counts`` (counts.py)."""

    run_type: str  # snapshot, full_sync, incremental, load_by_id, test_load
    uploaded_at: str  # as in the rows' _uploaded_at
    table_version: int | None
    rows_read: int
    source_rows: int | None  # after a complete copy only


class PgpStream(CheckpointStream):
    run_report: RunReport | None = None  # set when this run's plan finished
    replica_time: datetime | None = None  # set by the tap before a sync of a lag-aware stream

    # Postgres already renders every value in its schema type (see schema.py), so the
    # SDK's per-record conforming would only cost time.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(
        self,
        tap: TapGitlabPostgres,
        table: ManifestTable,
        columns: list[Column],
        source: SourceDatabase,
        run: RunSettings,
    ) -> None:
        self.table = table
        self.columns = columns
        self.source = source
        self.run = run
        self.record_failure = tap.record_failure
        self.fingerprint = fingerprint(columns)
        properties = {c.name: c.json_schema() for c in columns}
        properties[UPLOADED_AT] = {"type": ["number", "null"]}
        if table.advanced_metadata:
            properties[TASK_INSTANCE] = {"type": ["string", "null"]}
        super().__init__(
            tap, schema={"type": "object", "properties": properties}, name=table.stream_name
        )
        self.primary_keys = [table.primary_key]
        if table.load_type is LoadType.INCREMENTAL:
            self.replication_key = table.replication_key
        elif table.load_type is LoadType.LOAD_BY_ID:
            self.replication_key = table.primary_key

    # singer-sdk's catalog keeps only standard JSON-schema keys, so the precision and
    # scale of an x-singer.decimal property (which SQL targets read to create
    # DECIMAL(p, s)) are put back into the SCHEMA messages here.
    def amend_schema(self, schema: JsonSchema) -> None:
        annotations = {c.name: c.decimal_annotations for c in self.columns}
        for name, prop in schema.get("properties", {}).items():
            if prop.get("format") == "x-singer.decimal" and annotations.get(name):
                prop.update(annotations[name])

    def get_records(self, context: Any) -> Iterable[Record]:
        fast = self._can_write_raw()
        try:
            for step in self._plan():
                if isinstance(step, Rows):
                    if fast:
                        self._write_raw_records(step.sql)
                    else:
                        yield from self._parse_rows(step.sql)
                elif isinstance(step, Checkpoint):
                    self._checkpoint()
                else:
                    self.write_activate_version(step.version)
        except (psycopg.Error, SourceError) as exc:
            self._fail(exc)

    def get_batches(
        self, batch_config: BatchConfig, context: Any = None
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """BATCH mode: rows go straight into batch files (jsonl, parquet or arrow; see
        batches.py), one or more per window or chunk; the state follows the BATCH message
        of its chunk's last file."""
        batch = open_batch_files(self, batch_config)
        try:
            for step in self._plan():
                if isinstance(step, Rows):
                    yield from batch.write(step.sql)
                elif isinstance(step, Checkpoint):
                    if batch.pending:
                        yield from batch.close()  # the SDK sends the state after this BATCH
                    else:
                        self.write_state()
                else:
                    self.write_activate_version(step.version)
        except (psycopg.Error, SourceError) as exc:
            batch.discard()  # rows of the unfinished window or chunk
            self._fail(exc)

    def _plan(self) -> Iterator[Step]:
        """What this run reads and when it checkpoints, by load type."""
        uploaded_at = time.time()
        self.row_constants = {UPLOADED_AT: f"{uploaded_at:.6f}::numeric"}
        if self.table.advanced_metadata:
            self.row_constants[TASK_INSTANCE] = sql_string(self.run.task_instance)
        self.rows_read = 0
        self._run_type = "test_load"
        state = self.stream_state
        if self.run.test_rows:
            yield from self._test_load(state)
        elif self.table.load_type is LoadType.SCD:
            yield from self._snapshot(state, uploaded_at)
        else:
            yield from self._keyed(state)
        self.logger.info("%s: %d rows read from the source", self.name, self.rows_read)
        source_rows = None
        if self._run_type in ("snapshot", "full_sync") and self.run.count_source_rows:
            source_rows = self.source.fetch_count(self.table.query.count_sql(self.run.allow))
        self.run_report = RunReport(
            run_type=self._run_type,
            uploaded_at=f"{uploaded_at:.6f}",
            table_version=self.table_version,
            rows_read=self.rows_read,
            source_rows=source_rows,
        )

    def _fail(self, exc: Exception) -> None:
        """A failing query fails this stream only; its state stays at the last checkpoint."""
        self.record_failure(
            self.name, f"{self.where}: {first_line(exc)} (after {self.rows_read} rows)"
        )

    # --- the plan of each load type -------------------------------------------------

    def _snapshot(self, state: State, uploaded_at: float) -> Iterator[Step]:
        self._run_type = "snapshot"
        self.table_version = None  # snapshots append; nothing is ever deactivated
        yield Rows(self.table.query.full_sql(self.run.allow))
        state["schema_fingerprint"] = self.fingerprint
        state["last_snapshot_at"] = _iso(datetime.fromtimestamp(uploaded_at, UTC))
        yield Checkpoint()

    def _keyed(self, state: State) -> Iterator[Step]:
        full = state.get("full_sync")
        reason = self._full_sync_reason(state)
        if full and (state.get("resync") or full.get("fingerprint") != self.fingerprint):
            full = None  # progress of an outdated full sync must not skip rows of a new one
        if full:
            self.logger.info("%s: resuming full sync after key %r", self.name, full["last_key"])
            yield from self._full_sync(state, full)
        elif reason:
            self.logger.info("%s: full sync (%s)", self.name, reason)
            full = self._start_full_sync(state)
            yield Checkpoint()
            yield from self._full_sync(state, full)
        elif self.table.load_type is LoadType.INCREMENTAL:
            yield from self._incremental(state)
        else:
            yield from self._load_by_id(state)

    def _full_sync_reason(self, state: State) -> str | None:
        if state.get("resync"):
            return "resync requested"
        if "table_version" not in state:
            return "no bookmark"
        if self.table.load_type is LoadType.INCREMENTAL and not state.get("replication_key_value"):
            return "no bookmark"
        if state.get("schema_fingerprint") != self.fingerprint:
            return "schema changed"
        return None

    def _start_full_sync(self, state: State) -> State:
        # The bookmark after the copy: no later than what the replica held when it began.
        started = datetime.now(UTC)
        if self.lag_aware and self.replica_time is not None:
            started = min(started, self.replica_time)
        full = {
            "started_at": _iso(started),
            "version": _next_version(state),
            "fingerprint": self.fingerprint,
            "last_key": None,
        }
        state.pop("resync", None)
        state["full_sync"] = full
        return full

    def _full_sync(self, state: State, full: State) -> Iterator[Step]:
        self._run_type = "full_sync"
        self.table_version = full["version"]
        for item in self._chunks(full["last_key"]):
            if isinstance(item, Rows):
                yield item
            else:
                full["last_key"] = item
                yield Checkpoint()
        before = self.rows_read
        yield Rows(self.table.query.null_key_sql(self.run.allow))
        if self.rows_read > before:
            self.logger.warning(
                "%s: %d rows have a NULL primary key '%s'; loaded, but dbt cannot deduplicate them",
                self.where,
                self.rows_read - before,
                self.table.primary_key,
            )
        yield Activate(full["version"])
        state["table_version"] = full["version"]
        state["schema_fingerprint"] = self.fingerprint
        if self.table.load_type is LoadType.INCREMENTAL:
            started = datetime.fromisoformat(full["started_at"])
            state["replication_key_value"] = _iso(started - self.run.lookback)
        else:
            state["replication_key_value"] = full["last_key"]
        del state["full_sync"]
        yield Checkpoint()

    @property
    def lag_aware(self) -> bool:
        """Whether windows end at the replica time (pgp did so for gitlab_com tables)."""
        mode = self.run.replica_lag_windows
        return self.table.load_type is LoadType.INCREMENTAL and (
            mode == "on" or (mode == "auto" and self.table.export_schema == "gitlab_com")
        )

    def _end_bound(self) -> datetime:
        """`execution_date` (or the run's start), no later than what the replica holds."""
        if self.lag_aware and self.replica_time is not None:
            return min(self.run.end_bound, self.replica_time)
        return self.run.end_bound

    def _incremental(self, state: State) -> Iterator[Step]:
        self._run_type = "incremental"
        self.table_version = state["table_version"]
        begin = datetime.fromisoformat(state["replication_key_value"]) - self.run.lookback
        end_bound = self._end_bound()
        if begin >= end_bound:
            self.logger.info("%s: nothing to do, bookmark is past %s", self.name, _iso(end_bound))
        while begin < end_bound:
            end = min(begin + self.run.max_window, end_bound)
            yield Rows(self.table.query.window_sql(Window(begin, end), self.run.allow))
            state["replication_key_value"] = _iso(end)
            yield Checkpoint()
            begin = end

    def _load_by_id(self, state: State) -> Iterator[Step]:
        self._run_type = "load_by_id"
        self.table_version = state["table_version"]
        for item in self._chunks(state.get("replication_key_value")):
            if isinstance(item, Rows):
                yield item
            else:
                state["replication_key_value"] = item
                yield Checkpoint()

    def _test_load(self, state: State) -> Iterator[Step]:
        """pgp's test load: the first rows of new or changed streams, bookmarks untouched."""
        if state.get("schema_fingerprint") == self.fingerprint:
            self.logger.info("%s: unchanged, skipped by the test load", self.name)
            return
        # A newer version but never activated: the test rows sit beside the warehouse copy
        # (never replacing it), and the next real full sync retires them with everything old.
        keyed = self.table.load_type is not LoadType.SCD
        self.table_version = _next_version(state) if keyed else None
        yield Rows(self.table.query.limited_sql(self.run.allow, self.run.test_rows))

    def _chunks(self, after: Any) -> Iterator[Rows | Any]:
        """Rows above key ``after`` in key order, chunk by chunk; after each chunk's Rows
        step, its last key. A chunk ends on a key boundary, so rows sharing a key never
        straddle a checkpoint."""
        query, allow = self.table.query, self.run.allow
        while True:
            bound = self.source.fetch_value(
                query.chunk_bound_sql(allow, after, self.run.chunk_size)
            )
            if bound is None:
                return
            upto = state_key(bound)
            yield Rows(query.chunk_sql(allow, after, upto))
            after = upto
            yield after

    # --- emitting -------------------------------------------------------------------

    def _parse_rows(self, sql: str) -> Iterator[Record]:
        for line in self.source.stream_json(sql, self.columns, self.row_constants):
            self.rows_read += 1
            yield json.loads(line, parse_float=Decimal)

    def _can_write_raw(self) -> bool:
        """Whether records may bypass the SDK: every property selected, no stream maps,
        no flattening (those need a Python dict per record)."""
        maps = self.stream_maps
        return (
            self.run.raw_records
            and all(self.mask[("properties", name)] for name in self.schema["properties"])
            and len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == self.name
            and not self.config.get("flattening_enabled")
        )

    def _write_raw_records(self, sql: str) -> None:
        """RECORD messages assembled by Postgres and copied to stdout as they come."""
        prefix = f'{{"type":"RECORD","stream":{json.dumps(self.name)},"record":'
        extracted = f'"time_extracted":"{_iso(datetime.now(UTC))}"'
        version = self.table_version
        suffix = f',"version":{version},{extracted}}}' if version is not None else f",{extracted}}}"
        sys.stdout.flush()  # earlier SDK messages first
        out = sys.stdout.buffer
        lines = self.source.stream_lines(sql, self.columns, self.row_constants, prefix, suffix)
        for block in lines:
            rows = block.count(b"\n")
            self.rows_read += rows
            self.count_records(rows)
            out.write(block)
        out.flush()

    def _checkpoint(self) -> None:
        state = self.stream_state
        if self.replication_key and "replication_key_value" in state:
            # singer-sdk reads a bookmark (and logs "Starting incremental sync ... with
            # bookmark value") only when the state names its replication key.
            state["replication_key"] = self.replication_key
        self.write_state()

    @property
    def where(self) -> str:
        """The manifest table, for messages."""
        return f"{self.table.source_file.name}: table '{self.table.key}'"


def _next_version(state: State) -> int:
    # Strictly newer than the live copy, so activating it retires every older row.
    return max(int(time.time()), int(state.get("table_version") or 0) + 1)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def state_key(value: object) -> Key:
    """A primary key as it can live in JSON state (and come back as a SQL literal)."""
    return value if isinstance(value, int | str) else str(value)
