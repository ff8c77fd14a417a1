"""Every use of a private singer-sdk or psycopg name in the tap, behind small named hooks.

Written against singer-sdk 0.54.9 and psycopg 3.3.9 (the versions pyproject.toml pins).
Each hook says what it relies on; ``tests/test_sdk_compat.py`` holds one contract test per
hook, so an upgrade that moves one of them fails there, in one obvious place.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
from psycopg.abc import PQGen
from psycopg.generators import _fetch_many
from psycopg.pq import ExecStatus
from singer_sdk import Stream, Tap, metrics

# singer-sdk 0.54.9 defines its batch types only in this private module (its own
# streams/core.py imports them from there); the rest of the tap imports them from here.
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
from singer_sdk.singerlib import SchemaMessage

__all__ = [
    "BaseBatchFileEncoding",
    "BatchConfig",
    "CheckpointStream",
    "ScopedSyncTap",
    "finish_copy_out",
]


class CheckpointStream(Stream):
    """A singer-sdk Stream that moves its bookmarks itself, may write RECORD messages past
    the SDK, and amends its SCHEMA messages (singer-sdk 0.54.9)."""

    _sdk_record_counter: metrics.Counter | None = None

    def _increment_stream_state(self, latest_record: Any, *, context: Any = None) -> None:
        """No bookmark per record: the SDK's ``_sync_records`` calls this private hook after
        every record to track a max replication value; here bookmarks move only when a
        whole window or chunk is done (``write_state``)."""

    def _generate_schema_messages(self) -> Generator[SchemaMessage, None, None]:
        """The SDK's SCHEMA messages (one per stream map, from the private
        ``_generate_schema_messages``), each passed through ``amend_schema``."""
        for message in super()._generate_schema_messages():
            self.amend_schema(message.schema)
            yield message

    def amend_schema(self, schema: dict[str, Any]) -> None:
        """Change an outgoing SCHEMA message's schema in place (after stream maps)."""

    def get_record_counter(self, **kwargs: Any) -> metrics.Counter:
        # The SDK asks for its counter once per sync, before get_records, and logs it at
        # the end: kept, so that records written past the SDK count in record_count.
        self._sdk_record_counter = super().get_record_counter(**kwargs)
        return self._sdk_record_counter

    def count_records(self, rows: int) -> None:
        """Add ``rows`` records written past the SDK to its record_count metric."""
        if self._sdk_record_counter is not None:
            self._sdk_record_counter.increment(rows)

    @property
    def table_version(self) -> int | None:
        """The version the SDK tags this stream's RECORD messages with (its private
        ``_stream_version``); None: unversioned, appended."""
        return self._stream_version

    @table_version.setter
    def table_version(self, version: int | None) -> None:
        self._stream_version = version

    def write_state(self) -> None:
        """Send a STATE message now. The SDK's private ``_write_state_message`` sends one
        only when its state manager has seen a record since the last (``is_flushed``)."""
        self.state_manager.is_flushed = False
        self._write_state_message()

    def write_activate_version(self, version: int) -> None:
        """Send ACTIVATE_VERSION ``version`` (per stream map, as the SDK does for its own
        full-table streams with the private ``_write_activate_version_message``)."""
        self._write_activate_version_message(version)


class ScopedSyncTap(Tap):
    """A singer-sdk Tap whose sync of all streams runs inside ``sync_scope()``.

    singer-sdk 0.54.9 marks ``Tap.sync_all`` final and offers no hook around the sync of
    all streams; its CLI (``Tap.invoke``) calls ``sync_all``.
    """

    def sync_scope(self) -> AbstractContextManager[None]:
        """What surrounds the sync of all streams (default: nothing)."""
        return nullcontext()

    def sync_all(self) -> None:  # type: ignore[misc]  # final in singer-sdk: see the class
        with self.sync_scope():
            super().sync_all()


def finish_copy_out(conn: psycopg.Connection, copy: psycopg.Copy) -> PQGen[None]:
    """The end of a ``COPY TO`` read with ``pgconn.get_copy_data`` past ``Copy.read``: the
    command's result (its error raised as psycopg raises it), then the Copy marked done so
    that it reads nothing more. As psycopg 3.3.9's ``generators.copy_from`` and
    ``Copy._read_gen`` do, with the private ``generators._fetch_many`` and
    ``Copy._finished``."""
    results = yield from _fetch_many(conn.pgconn)
    if len(results) != 1 or results[0].status != ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(results[-1], encoding=conn.info.encoding)
    copy._finished = True
