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
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from singer_sdk import Stream
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_gitlab_postgres.client import SourceDatabase, SourceError, first_line, sql_literal
from tap_gitlab_postgres.manifest import LoadType, ManifestTable
from tap_gitlab_postgres.query import Window
from tap_gitlab_postgres.schema import Column, fingerprint

if TYPE_CHECKING:
    from tap_gitlab_postgres.allowlist import AllowLists
    from tap_gitlab_postgres.tap import TapGitlabPostgres

UPLOADED_AT = "_uploaded_at"
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


class PgpStream(Stream):
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

    # The SDK would track a max replication value per record; bookmarks here move only
    # when a whole window or chunk is done, in _checkpoint.
    def _increment_stream_state(self, latest_record: Any, *, context: Any = None) -> None:
        pass

    def get_records(self, context: Any) -> Iterable[dict]:
        state = self.stream_state
        uploaded_at = time.time()
        constants = {UPLOADED_AT: f"{uploaded_at:.6f}::numeric"}
        if self.table.advanced_metadata:
            constants[TASK_INSTANCE] = sql_literal(self.run.task_instance)
        self._constants = constants
        self._rows_read = 0
        try:
            if self.run.test_rows:
                yield from self._test_load(state)
            elif self.table.load_type is LoadType.SCD:
                yield from self._snapshot(state, uploaded_at)
            else:
                yield from self._keyed(state)
        except (psycopg.Error, SourceError) as exc:
            self._tap.record_failure(self.name, f"{self._where()}: {first_line(exc)}")
        self.logger.info("%s: %d rows read from the source", self.name, self._rows_read)

    # --- load types -----------------------------------------------------------------

    def _snapshot(self, state: dict, uploaded_at: float) -> Iterator[dict]:
        self._stream_version = None  # snapshots append; nothing is ever deactivated
        yield from self._rows(self.table.query.full_sql(self.run.allow))
        state["schema_fingerprint"] = self.fingerprint
        state["last_snapshot_at"] = _iso(datetime.fromtimestamp(uploaded_at, UTC))
        self._checkpoint()

    def _keyed(self, state: dict) -> Iterator[dict]:
        full = state.get("full_sync")
        reason = self._full_sync_reason(state)
        if full and (state.get("resync") or full.get("fingerprint") != self.fingerprint):
            full = None  # progress of an outdated full sync must not skip rows of a new one
        if full:
            self.logger.info("%s: resuming full sync after key %r", self.name, full["last_key"])
            yield from self._full_sync(state, full)
        elif reason:
            self.logger.info("%s: full sync (%s)", self.name, reason)
            yield from self._full_sync(state, self._start_full_sync(state))
        elif self.table.load_type is LoadType.INCREMENTAL:
            yield from self._incremental(state)
        else:
            yield from self._load_by_id(state)

    def _full_sync_reason(self, state: dict) -> str | None:
        if state.get("resync"):
            return "resync requested"
        if "table_version" not in state:
            return "no bookmark"
        if self.table.load_type is LoadType.INCREMENTAL and not state.get("replication_key_value"):
            return "no bookmark"
        if state.get("schema_fingerprint") != self.fingerprint:
            return "schema changed"
        return None

    def _start_full_sync(self, state: dict) -> dict:
        started = datetime.now(UTC)
        # Strictly newer than the live copy, so activating it retires every older row.
        version = max(int(started.timestamp()), int(state.get("table_version") or 0) + 1)
        full = {
            "started_at": _iso(started),
            "version": version,
            "fingerprint": self.fingerprint,
            "last_key": None,
        }
        state.pop("resync", None)
        state["full_sync"] = full
        self._checkpoint()
        return full

    def _full_sync(self, state: dict, full: dict) -> Iterator[dict]:
        self._stream_version = full["version"]

        def chunk_done(key: Any) -> None:
            full["last_key"] = key
            self._checkpoint()

        yield from self._chunked(full["last_key"], chunk_done)
        self._write_activate_version_message(full["version"])
        state["table_version"] = full["version"]
        state["schema_fingerprint"] = self.fingerprint
        if self.table.load_type is LoadType.INCREMENTAL:
            started = datetime.fromisoformat(full["started_at"])
            state["replication_key_value"] = _iso(started - self.run.lookback)
        else:
            state["replication_key_value"] = full["last_key"]
        del state["full_sync"]
        self._checkpoint()

    def _incremental(self, state: dict) -> Iterator[dict]:
        self._stream_version = state["table_version"]
        begin = datetime.fromisoformat(state["replication_key_value"]) - self.run.lookback
        end_bound = self.run.end_bound
        if begin >= end_bound:
            self.logger.info("%s: nothing to do, bookmark is past %s", self.name, _iso(end_bound))
        while begin < end_bound:
            end = min(begin + self.run.max_window, end_bound)
            yield from self._rows(self.table.query.window_sql(Window(begin, end), self.run.allow))
            state["replication_key_value"] = _iso(end)
            self._checkpoint()
            begin = end

    def _load_by_id(self, state: dict) -> Iterator[dict]:
        self._stream_version = state["table_version"]

        def chunk_done(key: Any) -> None:
            state["replication_key_value"] = key
            self._checkpoint()

        yield from self._chunked(state.get("replication_key_value"), chunk_done)

    def _test_load(self, state: dict) -> Iterator[dict]:
        """pgp's test load: the first rows of new or changed streams, bookmarks untouched."""
        if state.get("schema_fingerprint") == self.fingerprint:
            self.logger.info("%s: unchanged, skipped by the test load", self.name)
            return
        keyed = self.table.load_type is not LoadType.SCD
        version = max(int(time.time()), int(state.get("table_version") or 0) + 1)
        self._stream_version = version if keyed else None
        yield from self._rows(self.table.query.limited_sql(self.run.allow, self.run.test_rows))
        if keyed:
            self._write_activate_version_message(version)

    # --- reading --------------------------------------------------------------------

    def _chunked(self, after: Any, chunk_done: Callable[[Any], None]) -> Iterator[dict]:
        """Rows with a primary key above ``after``, chunk by chunk in key order; a chunk
        ends on a key boundary, so a key's rows never straddle a checkpoint."""
        query, allow = self.table.query, self.run.allow
        while True:
            bound = self.source.fetch_value(
                query.chunk_bound_sql(allow, after, self.run.chunk_size)
            )
            if bound is None:
                return
            yield from self._rows(query.chunk_sql(allow, after, bound))
            after = state_key(bound)
            chunk_done(after)

    def _rows(self, sql: str) -> Iterator[dict]:
        for line in self.source.stream_json(sql, self.columns, self._constants):
            self._rows_read += 1
            yield json.loads(line, parse_float=Decimal)

    def _checkpoint(self) -> None:
        self.state_manager.is_flushed = False
        self._write_state_message()

    def _where(self) -> str:
        return f"{self.table.source_file.name}: table '{self.table.key}'"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def state_key(value: Any) -> Any:
    """A primary key as it can live in JSON state (and come back as a SQL literal)."""
    return value if isinstance(value, int | str) else str(value)
