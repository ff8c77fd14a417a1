"""BATCH mode: rows from Postgres written straight into singer-sdk batch files.

Three encodings (``batch_config.encoding.format``):

- ``jsonl``: JSON lines built by Postgres (``row_to_json``) copied into the files as they
  come; ``compression: gzip`` or none. Every target reads it, but ``row_to_json`` itself
  caps it at ~100k rows/s.
- ``parquet``: Parquet files (singer-sdk's own ``parquet`` encoding: MeltanoLabs
  target-postgres reads it when pyarrow is installed beside it).
- ``arrow``: Arrow IPC files (MeltanoLabs target-snowflake's ``arrow`` encoding).

The columnar encodings read ``COPY ... (FORMAT csv)`` and let pyarrow's CSV reader build
the columns in C++ (no Python object per row), in a worker thread while the main thread
keeps reading the socket. Their column types are in ``schema.ArrowKind``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import uuid4

from singer_sdk.batch import BaseBatcher, lazy_chunked_generator

from tap_gitlab_postgres.client import SourceError
from tap_gitlab_postgres.schema import ArrowKind, Column
from tap_gitlab_postgres.sdk_compat import BaseBatchFileEncoding, BatchConfig

if TYPE_CHECKING:
    import pyarrow as pa

    from tap_gitlab_postgres.streams import PgpStream

Batch = tuple[BaseBatchFileEncoding, list[str]]

# Batch records carry their table version themselves: BATCH messages have no version field,
# and without it ACTIVATE_VERSION could not retire the rows of an older full copy.
VERSION_COLUMN = "_sdc_table_version"
WRITE_SIZE = 1 << 20

FORMATS = ("jsonl", "parquet", "arrow")
# Compression per format; None (unset) and "none" write uncompressed files: they are
# short-lived transport, and on 2 cores every codec costs throughput.
COMPRESSIONS = {
    "jsonl": ("gzip", "none"),
    "parquet": ("none", "snappy", "lz4", "zstd", "gzip"),
    "arrow": ("none", "lz4", "zstd"),
}
# The tap's `batch_config` setting: singer-sdk's own (which allows only jsonl and parquet)
# plus the `arrow` format and the codecs above.
BATCH_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Batch Configuration",
    "description": "Configuration for BATCH message capabilities.",
    "properties": {
        "encoding": {
            "type": "object",
            "title": "Batch Encoding Configuration",
            "description": "Specifies the format and compression of the batch files.",
            "properties": {
                "format": {
                    "type": ["string", "null"],
                    "enum": list(FORMATS),
                    "title": "Batch Encoding Format",
                    "description": "Format to use for batch files: jsonl, parquet "
                    "(target-postgres) or arrow (Arrow IPC files, target-snowflake).",
                },
                "compression": {
                    "type": ["string", "null"],
                    "enum": sorted({c for cs in COMPRESSIONS.values() for c in cs}),
                    "title": "Batch Compression Format",
                    "description": "jsonl: gzip or none; parquet: none, snappy, lz4, zstd "
                    "or gzip; arrow: none, lz4 or zstd.",
                },
            },
        },
        "storage": {
            "type": "object",
            "title": "Batch Storage Configuration",
            "description": "Defines the storage layer to use when writing batch files",
            "properties": {
                "root": {
                    "type": ["string", "null"],
                    "title": "Batch Storage Root",
                    "description": "Root path to use when writing batch files.",
                },
                "prefix": {
                    "type": ["string", "null"],
                    "title": "Batch Storage Prefix",
                    "description": "Prefix to use when writing batch files.",
                },
            },
        },
        "batch_size": {
            "type": ["integer", "null"],
            "title": "Batch Size",
            "description": "Maximum number of records to write in one batch.",
        },
    },
}


def open_batch_files(
    stream: PgpStream, config: BatchConfig
) -> JsonlBatchFiles | ColumnarBatchFiles:
    """The writer for ``config``'s encoding (a bad format or codec fails here, before any
    query runs)."""
    fmt, compression = config.encoding.format, config.encoding.compression
    if fmt not in FORMATS:
        raise ValueError(
            f"batch_config.encoding.format {fmt!r} is not supported; use one of "
            + ", ".join(FORMATS)
        )
    if compression is not None and compression not in COMPRESSIONS[fmt]:
        raise ValueError(
            f"batch_config.encoding.compression {compression!r} is not supported with "
            f"format {fmt!r}; use one of " + ", ".join(COMPRESSIONS[fmt])
        )
    remove_earlier_files(config, stream.tap_name, stream.name)
    if fmt == "jsonl":
        return JsonlBatchFiles(stream, config)
    return ColumnarBatchFiles(stream, config)


def remove_earlier_files(config: BatchConfig, tap_name: str, stream_name: str) -> list[Path]:
    """Delete a stream's batch files left by earlier runs (local storage only).

    Loaders read a BATCH message's files after the tap has moved on, and neither
    target-postgres nor target-snowflake (with ``clean_up_batch_files: false``, which keeps
    a file until its COPY has succeeded) deletes them. The next run of a stream starts only
    after the previous run's loader has exited (Meltano refuses a second run of a pipeline),
    so its files are no longer needed then; a failed load leaves them until that run.
    """
    url = urlsplit(config.storage.get_url(""))
    if url.scheme != "file" or not Path(url.path).is_dir():
        return []
    name = re.compile(
        re.escape(f"{config.storage.prefix or ''}{tap_name}--{stream_name}-")
        + r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}-\d+\.(json|json\.gz|parquet|arrow)"
    )
    removed = [f for f in Path(url.path).iterdir() if name.fullmatch(f.name) and f.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


class JsonlBatchFiles:
    """The files of one stream's run, rotated every ``batch_size`` rows (at block bounds)."""

    def __init__(self, stream: PgpStream, config: BatchConfig) -> None:
        self.stream = stream
        self.config = config
        self.gzip = config.encoding.compression == "gzip"
        self.sync_id = f"{stream.tap_name}--{stream.name}-{uuid4()}"
        self.files = 0
        self._stack: ExitStack | None = None
        self._out: IO[bytes] | gzip.GzipFile | None = None
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

    def _open(self) -> IO[bytes] | gzip.GzipFile:
        self.files += 1
        storage = self.config.storage
        suffix = ".json.gz" if self.gzip else ".json"
        self._name = f"{storage.prefix or ''}{self.sync_id}-{self.files}{suffix}"
        stack = ExitStack()
        out: IO[bytes] | gzip.GzipFile = stack.enter_context(storage.open(self._name, "wb"))
        if self.gzip:
            # Level 1: the files are short-lived transport; speed matters more than size.
            out = stack.enter_context(gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1))
        self._stack, self._out = stack, out
        return out


# Bytes of CSV per piece handed to the worker (~1.2k rows of the benchmark table; one
# Parquet row group each): large enough that pyarrow's per-call costs vanish, small enough
# that the peak RSS stays under 150 MB (1 MB pieces, two in flight: parquet reached 152 MB
# at 5M rows; these: 141).
CHUNK_BYTES = 1 << 19
# Timestamps outside years 1-9999 load as these bounds (Python's datetime range), as the
# JSON records do.
LOW_STAMP, HIGH_STAMP = "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"
# Pieces read ahead of the worker: bounds memory while the socket keeps flowing.
MAX_PENDING = 1


class ColumnarBatchFiles:
    """Parquet or Arrow IPC files of one stream's run, rotated at exactly ``batch_size`` rows.

    The main thread reads COPY (one block per row) and cuts the stream into pieces of whole
    rows; one worker thread parses each piece with pyarrow's CSV reader and appends it to
    the current file. pyarrow releases the GIL, so parsing and writing overlap reading.
    """

    def __init__(self, stream: PgpStream, config: BatchConfig) -> None:
        _use_lean_memory_pool()
        self.stream = stream
        self.config = config
        self.format = config.encoding.format
        compression = config.encoding.compression
        self.compression = None if compression in (None, "none") else compression
        self.sync_id = f"{stream.tap_name}--{stream.name}-{uuid4()}"
        self.files = 0
        self._rows = 0  # rows handed to the worker for the current file
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[Any]] = deque()
        # Worker state (touched only by the worker thread).
        self._stack: ExitStack | None = None
        self._writer: Any = None
        self._name = ""

    @property
    def pending(self) -> bool:
        return self._rows > 0

    def write(self, sql: str) -> Iterator[Batch]:
        stream = self.stream
        layout = _Layout(stream.columns, self._constants())
        batch_size = self.config.batch_size
        with stream.source.copy_csv(sql, stream.columns) as reader:
            while not reader.done:
                data, rows = reader.read(batch_size - self._rows, CHUNK_BYTES)
                if rows:
                    yield from self._hand_over(layout, data, rows)

    def _hand_over(self, layout: _Layout, data: bytearray, rows: int) -> Iterator[Batch]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"batch-{self.stream.name}")
        self._pending.append(self._pool.submit(self._append, layout, data, rows))
        self._rows += rows
        self.stream.rows_read += rows
        while len(self._pending) > MAX_PENDING:
            self._pending.popleft().result()
        if self._rows >= self.config.batch_size:
            yield from self.close()

    def close(self) -> Iterator[Batch]:
        if not self._rows or self._pool is None:
            return
        closing = self._pool.submit(self._close_file)
        self._pending.append(closing)
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._rows = 0
        yield self.config.encoding, [closing.result()]

    def discard(self) -> None:
        """Stop after a failed query: the unfinished file is never announced."""
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending.clear()
        if self._stack is not None:
            with suppress(Exception):  # a half-written file that nobody will read
                self._stack.close()
            self._stack, self._writer = None, None
        self._rows = 0

    def _constants(self) -> dict[str, tuple[str, Any]]:
        """Run metadata columns: name -> (arrow kind, value), evaluated once by Postgres
        from the same SQL literals the JSON records use."""
        stream = self.stream
        literals = dict(stream.row_constants)
        values: dict[str, tuple[str, Any]] = {}
        if literals:
            exprs = ", ".join(f"({sql})::text" for sql in literals.values())
            row = stream.source.fetch_row(f"SELECT {exprs}")
            for name, value in zip(literals, row, strict=True):
                # Numbers (_uploaded_at) keep their exact decimal text, as numeric columns.
                values[name] = ("string", value)
        if stream.table_version is not None:
            values[VERSION_COLUMN] = ("int64", int(stream.table_version))
        return values

    # --- worker thread ------------------------------------------------------------------

    def _append(self, layout: _Layout, data: bytearray, rows: int) -> None:
        try:
            table = layout.table(data, rows)
            if self._writer is None:
                self._open(layout)
            self._writer.write_table(table)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot write {self.format} batch file: {exc}") from exc

    def _open(self, layout: _Layout) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.files += 1
        storage = self.config.storage
        suffix = ".parquet" if self.format == "parquet" else ".arrow"
        self._name = f"{storage.prefix or ''}{self.sync_id}-{self.files}{suffix}"
        stack = ExitStack()
        url = urlsplit(storage.get_url(self._name))
        if url.scheme == "file":
            # A local file is written by pyarrow itself: no Python call (and no GIL) per
            # write, so the main thread keeps reading meanwhile.
            Path(url.path).parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(pa.OSFile(url.path, "wb"))
        else:
            out = stack.enter_context(storage.open(self._name, "wb"))
        if self.format == "parquet":
            writer = pq.ParquetWriter(
                out,
                layout.schema,
                compression=self.compression or "none",
                # Mostly unique text: dictionaries would be tried and dropped; the files
                # are read once, whole, so statistics buy nothing.
                use_dictionary=False,
                write_statistics=False,
            )
        else:
            options = pa.ipc.IpcWriteOptions(compression=self.compression)
            writer = pa.ipc.new_file(out, layout.schema, options=options)
        stack.callback(writer.close)
        self._stack, self._writer = stack, writer

    def _close_file(self) -> str:
        try:
            assert self._stack is not None
            self._stack.close()
        except Exception as exc:
            raise SourceError(f"cannot write {self.format} batch file: {exc}") from exc
        finally:
            self._stack, self._writer = None, None
        return self.config.storage.get_url(self._name)


def _use_lean_memory_pool() -> None:
    """jemalloc (in pyarrow's Linux wheels) returns freed memory; mimalloc, pyarrow's
    default, kept ~40 MB more per run here. The tap uses pyarrow for nothing else."""
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)


class _Layout:
    """The Arrow schema of one stream's rows, and CSV pieces turned into tables of it."""

    def __init__(self, columns: list[Column], constants: dict[str, tuple[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        self.names = [c.name for c in columns]
        kinds: list[ArrowKind] = [c.arrow_kind for c in columns]
        self.kinds = kinds
        self.constants = {
            name: pa.scalar(value, type=_arrow_type(ArrowKind(kind)))
            for name, (kind, value) in constants.items()
        }
        self.schema = pa.schema(
            [pa.field(n, _arrow_type(k)) for n, k in zip(self.names, kinds, strict=True)]
            + [pa.field(n, s.type) for n, s in self.constants.items()]
        )
        self.lists = {i: self.schema.field(i).type for i, k in enumerate(kinds) if k.name == "list"}
        self.stamps = [i for i, k in enumerate(kinds) if k.name in {"timestamp", "timestamptz"}]
        # An empty line is a row: a one-column row whose value is NULL (the deletes pass's
        # end-of-set marker); with more columns COPY never writes one.
        self._parse = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
        # What COPY's CSV means: an unquoted empty field is NULL, a quoted one ("") is
        # the empty string; booleans are t/f. UTF-8 is checked (cheap, vectorised): only a
        # SQL_ASCII database can send invalid bytes, and they fail the stream here instead
        # of reaching a target (the jsonl encoding repairs them instead).
        self._convert = pacsv.ConvertOptions(
            column_types={n: self._csv_type(k) for n, k in zip(self.names, kinds, strict=True)},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
            check_utf8=True,
        )

    @staticmethod
    def _csv_type(kind: ArrowKind) -> pa.DataType:
        import pyarrow as pa

        if kind.name == "list":
            return pa.string()  # JSON text, parsed below
        if kind.name == "timestamp":
            return pa.timestamp("us")  # naive UTC: no offset in its text
        return _arrow_type(kind)

    def table(self, data: bytearray, rows: int) -> pa.Table:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        read = pacsv.ReadOptions(
            column_names=self.names, block_size=len(data) + 1, use_threads=False
        )
        try:
            table = pacsv.read_csv(
                pa.py_buffer(data),
                read_options=read,
                parse_options=self._parse,
                convert_options=self._convert,
            )
        except pa.ArrowInvalid as exc:
            table = self._tolerant_read(data, read, exc)
        if table.num_rows != rows:
            raise SourceError(f"{table.num_rows} rows parsed from {rows} COPY rows")
        utc = pa.timestamp("us", tz="UTC")
        for i in self.stamps:  # naive UTC, or already UTC: a change of type label only
            table = table.set_column(i, self.names[i], table.column(i).cast(utc))
        for i, list_type in self.lists.items():
            table = table.set_column(i, self.names[i], _json_lists(table.column(i), list_type))
        for name, value in self.constants.items():
            table = table.append_column(name, pa.repeat(value, rows))
        return table.cast(self.schema) if table.schema != self.schema else table

    def _tolerant_read(self, data: bytearray, read: Any, error: Exception) -> pa.Table:
        """Timestamps Arrow's reader refuses (``infinity``, BC, years past 9999) become the
        nearest loadable bound, as in the JSON records; everything else must parse."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        stamps = [i for i, k in enumerate(self.kinds) if k.name in {"timestamp", "timestamptz"}]
        if not stamps:
            raise error
        types = dict(self._convert.column_types)
        for i in stamps:
            types[self.names[i]] = pa.string()
        convert = pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
            check_utf8=True,
        )
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=read,
            parse_options=self._parse,
            convert_options=convert,
        )
        naive = pa.timestamp("us")
        for i in stamps:
            text = pc.replace_substring_regex(table.column(i), r"\+00$", "")
            usual = pc.match_substring_regex(text, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?$")
            low = pc.or_(pc.starts_with(text, "-"), pc.ends_with(text, " BC"))
            text = pc.if_else(usual, text, pc.if_else(low, LOW_STAMP, HIGH_STAMP))
            table = table.set_column(i, self.names[i], text.cast(naive))
        return table


def _arrow_type(kind: ArrowKind) -> pa.DataType:
    import pyarrow as pa

    if kind.name == "list":
        assert kind.element is not None
        return pa.list_(_arrow_type(kind.element))
    if kind.name in {"timestamp", "timestamptz"}:
        return pa.timestamp("us", tz="UTC")
    return {"int64": pa.int64(), "bool": pa.bool_()}.get(kind.name, pa.string())


def _json_lists(texts: pa.ChunkedArray, list_type: pa.ListType) -> pa.Array:
    """Arrays arrive as JSON text (``to_json``): parsed in Python, as they are rare."""
    import pyarrow as pa

    as_text = pa.types.is_string(list_type.value_type)
    values: list[list[Any] | None] = []
    for text in texts.to_pylist():
        if text is None:
            values.append(None)
        elif as_text:
            # numeric[] elements keep their exact digits as text, like numeric columns.
            items = json.loads(text, parse_float=str, parse_int=str)
            values.append([None if v is None else str(v) for v in items])
        else:
            values.append(json.loads(text))
    return pa.array(values, type=list_type)


class ArrowRecordBatcher(BaseBatcher):
    """The ``arrow`` format for streams of Python records (``pgp_row_counts``): one Arrow
    IPC file per ``batch_size`` records, the schema inferred by pyarrow as singer-sdk's own
    Parquet batcher does. Called directly, never registered as a
    ``singer_sdk.batch_encoders`` entry point (singer-sdk 0.55 registers its own
    ``arrow``)."""

    def get_batches(self, records: Iterator[dict[str, Any]]) -> Iterator[list[str]]:
        import pyarrow as pa

        sync_id = f"{self.tap_name}--{self.stream_name}-{uuid4()}"
        storage = self.batch_config.storage
        compression = self.batch_config.encoding.compression
        options = pa.ipc.IpcWriteOptions(
            compression=None if compression in (None, "none") else compression
        )
        for i, chunk in enumerate(lazy_chunked_generator(records, self.batch_config.batch_size), 1):
            table = pa.Table.from_pylist(list(chunk))
            filename = f"{storage.prefix or ''}{sync_id}-{i}.arrow"
            with (
                storage.open(filename, "wb") as out,
                pa.ipc.new_file(out, table.schema, options=options) as writer,
            ):
                writer.write_table(table)
            yield [storage.get_url(filename)]
