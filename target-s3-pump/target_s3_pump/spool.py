"""Local spool of one pump's records until the end of the input.

Records reach S3 only after the whole input was read and every stream was accepted, so a
rejected stream (or a failure anywhere) leaves nothing behind in the bucket. Until then each
drained batch is appended to a local file; memory holds at most one batch.

* CSV pumps (:class:`CsvSpool`) spool the CSV lines themselves, so publishing copies bytes
  instead of rendering every row again;
* Parquet/JSONL pumps (:class:`PumpSpool`) spool pickled batches (exact Python values, fast,
  produced and read only by this process).

Both cut what they write at multiples of the part size, so every spooled piece belongs to one
part file. The spool also keeps the pump's columns. If the stream's schema changes mid-run,
columns are the union in order of first appearance; rows that lack a column get NULL there.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from target_s3_pump.formats import csv_rows
from target_s3_pump.pumps import Pump
from target_s3_pump.rows import RowType
from target_s3_pump.streaming import SpooledPiece


class PumpSpool:
    """Pickled batches; :meth:`pieces` yields them as lists of records."""

    suffix = ".spool"

    def __init__(
        self, directory: Path, pump: Pump, stream_name: str, part_rows: int | None = None
    ) -> None:
        self.pump = pump
        self.stream_name = stream_name
        self.part_rows = part_rows  # None: one part (single: true)
        self.path = directory / f"{pump.model}{self.suffix}"
        self.columns: list[str] = []
        self.properties: dict[str, Mapping[str, Any]] = {}
        self.rows = 0
        self._piece_rows: list[int] = []  # rows of each piece written, in order
        self._fh: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115  (closed in finish())

    def update_schema(self, schema: Mapping[str, Any], logger: logging.Logger) -> None:
        properties = dict(schema.get("properties") or {})
        added = [name for name in properties if name not in self.properties]
        if self.columns and (added or list(properties) != self.columns):
            logger.warning(
                "stream %s: schema changed mid-run; pump %s keeps the union of columns "
                "(new: %s); earlier rows get NULL in new columns",
                self.stream_name,
                self.pump.model,
                ", ".join(added) or "none",
            )
        self.columns += added
        self.properties.update(properties)  # latest type wins for Parquet

    def append(self, records: Sequence[Any], row_type: RowType | None = None) -> None:
        """A batch of dict records, or of typed rows of ``row_type``."""
        if not records:
            return
        if self._fh is None:
            raise RuntimeError(f"spool of pump {self.pump.model} is already finished")
        position = 0
        while position < len(records):
            room = len(records) - position
            if self.part_rows is not None:
                room = min(room, self.part_rows - self.rows % self.part_rows)
            self._write_piece(self._fh, records[position : position + room], row_type)
            self._piece_rows.append(room)
            self.rows += room
            position += room

    def _write_piece(self, fh: IO[bytes], records: Sequence[Any], row_type: RowType | None) -> None:
        records = row_type.as_dicts(records) if row_type is not None else list(records)
        pickle.dump(records, fh, protocol=pickle.HIGHEST_PROTOCOL)

    def finish(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def pieces(self) -> Iterator[tuple[int, Any]]:
        """``(rows, payload)`` in arrival order (finishes the spool). A piece never crosses
        a multiple of ``part_rows``."""
        self.finish()
        with open(self.path, "rb") as fh:
            for rows in self._piece_rows:
                yield rows, pickle.load(fh)  # our own file, written above

    def remove(self) -> None:
        self.finish()
        self.path.unlink(missing_ok=True)


class CsvSpool(PumpSpool):
    """CSV lines (UTF-8, no header), rendered with the columns known when they were spooled;
    :meth:`pieces` yields them as bytes, padded with NULLs for columns added later."""

    suffix = ".csv.spool"

    def __init__(
        self, directory: Path, pump: Pump, stream_name: str, part_rows: int | None = None
    ) -> None:
        super().__init__(directory, pump, stream_name, part_rows)
        self._piece_shapes: list[tuple[int, int]] = []  # (columns, bytes) of each piece
        self._size = 0
        # Told of every piece once it is in the file (streaming.PumpStreamer.add).
        self.listener: Callable[[SpooledPiece, bytes], None] | None = None

    def _write_piece(self, fh: IO[bytes], records: Sequence[Any], row_type: RowType | None) -> None:
        data = csv_rows(records, self.columns, row_type).encode()
        fh.write(data)
        self._piece_shapes.append((len(self.columns), len(data)))
        if self.listener is not None:
            fh.flush()  # another file handle reads it back
            part = self.rows // self.part_rows if self.part_rows else 0
            piece = SpooledPiece(part, self._size, len(data), len(records), tuple(self.columns))
            self.listener(piece, data)
        self._size += len(data)

    def pieces(self) -> Iterator[tuple[int, Any]]:
        self.finish()
        width = len(self.columns)
        with open(self.path, "rb") as fh:
            for rows, (columns, size) in zip(self._piece_rows, self._piece_shapes, strict=True):
                data = fh.read(size)
                if columns < width:
                    data = pad_rows(data.decode(), columns, width).encode()
                yield rows, data


def pad_rows(text: str, columns: int, width: int) -> str:
    """CSV lines of ``columns`` fields, extended with empty (NULL) fields to ``width``.

    A line ends at a ``\\n`` outside quotes; quotes come in pairs (a quoted field opens and
    closes, an embedded quote is doubled), so a ``\\n`` ends the line when the count of quotes
    before it on the line is even.
    """
    pad = "," * (width - columns) if columns else "," * (width - 1)
    lines: list[str] = []
    pending = ""
    for chunk in text.split("\n")[:-1]:  # the text ends with "\n"
        pending += chunk
        if pending.count('"') % 2:
            pending += "\n"
            continue
        lines.append(pending + pad)
        pending = ""
    return "\n".join(lines) + "\n" if lines else ""
