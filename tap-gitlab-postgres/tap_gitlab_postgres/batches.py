"""BATCH mode: JSON lines from Postgres written straight into singer-sdk batch files."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, BinaryIO
from uuid import uuid4

from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig

if TYPE_CHECKING:
    from tap_gitlab_postgres.streams import PgpStream

Batch = tuple[BaseBatchFileEncoding, list[str]]

# Batch records carry their table version themselves: BATCH messages have no version field,
# and without it ACTIVATE_VERSION could not retire the rows of an older full copy.
VERSION_COLUMN = "_sdc_table_version"
WRITE_SIZE = 1 << 20


class BatchFiles:
    """The files of one stream's run, rotated every ``batch_size`` rows (at block bounds)."""

    def __init__(self, stream: PgpStream, config: BatchConfig) -> None:
        if config.encoding.format != "jsonl":
            raise ValueError(
                f"batch_config.encoding.format {config.encoding.format!r} is not supported; "
                "use jsonl"
            )
        self.stream = stream
        self.config = config
        self.gzip = config.encoding.compression == "gzip"
        self.sync_id = f"{stream.tap_name}--{stream.name}-{uuid4()}"
        self.files = 0
        self._stack: ExitStack | None = None
        self._out: BinaryIO | None = None
        self._name = ""
        self._rows = 0

    @property
    def pending(self) -> bool:
        return self._out is not None

    def write(self, sql: str) -> Iterator[Batch]:
        stream = self.stream
        constants = dict(stream.row_constants)
        if stream.table_version is not None:
            constants[VERSION_COLUMN] = str(stream.table_version)
        # COPY hands over one row per block: gather them so the (fsspec, gzip) file sees
        # a few large writes instead of a Python call per row.
        buffer, rows = bytearray(), 0
        for block in stream.source.stream_lines(sql, stream.columns, constants):
            buffer += block
            rows += block.count(b"\n")
            if len(buffer) >= WRITE_SIZE or self._rows + rows >= self.config.batch_size:
                yield from self._write(buffer, rows)
                buffer, rows = bytearray(), 0
        if buffer:
            yield from self._write(buffer, rows)

    def _write(self, data: bytearray, rows: int) -> Iterator[Batch]:
        (self._out or self._open()).write(data)
        self._rows += rows
        self.stream.rows_read += rows
        if self._rows >= self.config.batch_size:
            yield from self.close()

    def close(self) -> Iterator[Batch]:
        if self._stack is None:
            return
        self._stack.close()
        self._stack, self._out, self._rows = None, None, 0
        yield self.config.encoding, [self.config.storage.get_url(self._name)]

    def discard(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack, self._out, self._rows = None, None, 0

    def _open(self) -> BinaryIO:
        self.files += 1
        storage = self.config.storage
        suffix = ".json.gz" if self.gzip else ".json"
        self._name = f"{storage.prefix or ''}{self.sync_id}-{self.files}{suffix}"
        stack = ExitStack()
        out: BinaryIO = stack.enter_context(storage.open(self._name, "wb"))
        if self.gzip:
            # Level 1: the files are short-lived transport; speed matters more than size.
            out = stack.enter_context(gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1))
        self._stack, self._out = stack, out
        return out
