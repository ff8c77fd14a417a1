"""File formats of pump objects: CSV (as Snowflake unloaded it for GitLab), JSONL; Parquet is
in :mod:`target_s3_pump.parquet`.

CSV follows GitLab's ``COPY INTO`` unload (``TYPE = CSV, NULL_IF = (), FIELD_OPTIONALLY_ENCLOSED_BY
= '"', COMPRESSION = NONE, HEADER = TRUE``):

* a header row, then one line per row, ``\\n`` line ends, UTF-8 without BOM;
* comma-delimited, columns in schema order;
* NULL is an empty field; an empty string is ``""`` so the two stay distinct;
* a field is enclosed in ``"`` only when needed (it contains ``,``, ``"``, CR or LF, or is the
  empty string); an embedded ``"`` is doubled;
* values are written as the extractor sent them: strings (including date-times) byte for byte,
  numbers with their JSON digits (``1.10`` stays ``1.10``; an exponent is written ``1E-7``),
  booleans ``true``/``false``, objects and arrays as compact JSON (UTF-8).

Each writer writes one local part file; the caller rotates and uploads them.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import msgspec
from singer_sdk.singerlib.json import serialize_json

from target_s3_pump.values import header_names, plain_text

if TYPE_CHECKING:
    from target_s3_pump.rows import RowType

_NEEDS_QUOTES = re.compile(r'[,"\r\n]')

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


def csv_text(value: Any) -> str:
    """One CSV field (see module docstring)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else plain_text(value)
    if not text or _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(values: Sequence[Any]) -> str:
    return ",".join(csv_text(v) for v in values) + "\n"


def csv_rows(
    records: Sequence[Any], columns: Sequence[str], row_type: RowType | None = None
) -> str:
    """CSV lines of ``records`` (dicts, or typed rows of ``row_type``; columns in order),
    byte for byte what ``csv_line`` gives.

    Rendered a column at a time: a column's values usually share one type, so most columns
    are converted by C-level calls over the whole column (``map(str, ...)``, one quoting
    check over the joined column) instead of a Python step per field, which was most of the
    target's time per row.
    """
    if not columns:
        return "\n" * len(records)
    column = row_type.column if row_type is not None else _column
    texts = [_column_texts(column(records, c)) for c in columns]
    return "\n".join(map(",".join, zip(*texts, strict=True))) + "\n" if records else ""


def _column(records: Sequence[Any], column: str) -> list[Any]:
    """A column of dict records (or of other mappings, the slower way)."""
    try:
        return list(map(dict.get, records, repeat(column, len(records))))
    except TypeError:  # records that are not dicts
        return [r.get(column) for r in records]


_NONE = type(None)
_JSON = msgspec.json.Encoder()


def _column_texts(values: list[Any]) -> Sequence[str]:
    """``csv_text`` of every value of one column."""
    kinds = set(map(type, values))
    if kinds <= {str, _NONE}:
        # csv_text quotes the empty string and text holding , " CR or LF.
        joined = "\x00".join(filter(None, values))
        if "" not in values and not any(c in joined for c in ',"\n\r'):  # fast scans
            return ["" if v is None else v for v in values] if _NONE in kinds else values
        search = _NEEDS_QUOTES.search
        return [
            "" if v is None else v if v and not search(v) else '"' + v.replace('"', '""') + '"'
            for v in values
        ]
    if kinds == {int}:  # msgspec spells a list of ints as str() does, a few times faster
        return _JSON.encode(values)[1:-1].decode().split(",")
    if kinds <= {int, Decimal, _NONE}:  # str() is plain_text for these; never quoted
        return (
            ["" if v is None else str(v) for v in values] if _NONE in kinds else [*map(str, values)]
        )
    if kinds <= {bool, _NONE}:
        return ["" if v is None else "true" if v else "false" for v in values]
    return [csv_text(v) for v in values]


class PartWriter(Protocol):
    path: Path
    rows: int

    def write(self, records: Sequence[Mapping[str, Any]]) -> None: ...

    def close(self) -> None: ...


def open_part(
    path: Path,
    fmt: str,
    compression: str,
    columns: Sequence[str],
    properties: Mapping[str, Mapping[str, Any]],
    header_case: str = "as_is",
) -> PartWriter:
    if fmt == "csv":
        return CsvPart(path, compression, columns, header_case)
    if fmt == "jsonl":
        return JsonlPart(path, compression, columns)
    if fmt == "parquet":
        from target_s3_pump.parquet import ParquetPart  # pyarrow: ~30 MB, only when needed

        return ParquetPart(path, compression, columns, properties, header_case)
    raise ValueError(f"unknown format {fmt!r}")


class _TextOut:
    """A UTF-8 text file, optionally gzip-compressed, closed in the right order."""

    def __init__(self, path: Path, compression: str) -> None:
        self._raw: IO[bytes] = open(path, "wb")  # noqa: SIM115  (closed in close())
        # mtime=0: the same rows give the same bytes (and sha256) on every run.
        self._gzip = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
            if compression == "gzip"
            else None
        )
        self.text = io.TextIOWrapper(self._gzip or self._raw, encoding="utf-8", newline="")

    def write_bytes(self, data: bytes) -> None:
        """Already-encoded UTF-8 text, written past the text layer (after flushing it)."""
        self.text.flush()
        (self._gzip or self._raw).write(data)

    def close(self) -> None:
        self.text.close()  # flushes; closes the GzipFile (writes its trailer) or the file
        self._raw.close()  # GzipFile never closes a fileobj it was handed


class CsvPart:
    def __init__(
        self, path: Path, compression: str, columns: Sequence[str], header_case: str
    ) -> None:
        self.path = path
        self.rows = 0
        self.columns = list(columns)
        self._out = _TextOut(path, compression)
        self._out.text.write(csv_line(header_names(self.columns, header_case)))

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._out.text.write(csv_rows(records, self.columns))
        self.rows += len(records)

    def write_rendered(self, data: bytes, rows: int) -> None:
        """``rows`` CSV lines rendered earlier (by the spool) with this part's columns."""
        self._out.write_bytes(data)
        self.rows += rows

    def close(self) -> None:
        self._out.close()


class JsonlPart:
    def __init__(self, path: Path, compression: str, columns: Sequence[str]) -> None:
        self.path = path
        self.rows = 0
        self.columns = list(columns)
        self._out = _TextOut(path, compression)

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        columns = self.columns
        self._out.text.writelines(
            serialize_json({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n"
            for r in records
        )
        self.rows += len(records)

    def close(self) -> None:
        self._out.close()
