"""PumpSink: one per stream; drained batches go to the pump's local spool."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec

from target_s3_pump.rows import RowType
from target_s3_pump.sdk_compat import PumpBatchSinkBase
from target_s3_pump.validation import BatchCheck, compile_batch_check

if TYPE_CHECKING:
    from target_s3_pump.spool import PumpSpool
    from target_s3_pump.target import TargetS3Pump

_RECORD = attrgetter("record")


class PumpSink(PumpBatchSinkBase):
    """Collects a stream's records in batches of ``batch_size_rows`` and spools each batch.

    Nothing is uploaded here: the target publishes every pump after the whole input was read
    (see :meth:`TargetS3Pump.process_endofpipe`), so a stream rejected later in the input, or
    any failure, leaves nothing in S3.
    """

    def __init__(
        self,
        target: TargetS3Pump,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: Sequence[str] | None,
    ) -> None:
        self._pump_target = target
        self.spool: PumpSpool | None = None
        self._batch_check: BatchCheck | None = None
        self._uncounted = 0  # records taken by add_record, not yet in the SDK's counter metric
        self._records: list[Any] | None = None  # the batch add_record / take_line append to
        self._typed = False  # that batch holds typed rows (else dicts)
        self.row_type: RowType | None = None
        self._counted = 0  # of those, already in the SDK's counters
        self._max_rows = 0
        super().__init__(target, stream_name, schema, key_properties)

    def setup(self) -> None:
        super().setup()
        self.spool = self._pump_target.spool_for(self.stream_name, self.schema)
        self._max_rows = self.max_size
        if self.validates_records:
            self._batch_check = compile_batch_check(self.schema)
        self.row_type = RowType.for_schema(self.stream_name, self.schema, self.key_properties)
        if self.row_type is not None:
            self._decode_line = self.row_type.decode_line
            self._decode_lines = self.row_type.decode_lines
        self._pump_target.register_sink(self)

    def add_record(self, record: dict[str, Any]) -> None:
        """The SDK's per-record work for a stream without maps, flattening or metadata
        columns, minus what is a no-op here (copy, identity transform, timestamp parsing,
        per-record debug log and metric call) and with the counters kept per batch.

        Validation keeps its semantics but moves to the batch (:meth:`_check_batch`), before
        anything of it is spooled: a record the SDK would reject still fails the run, with
        the SDK's error, and nothing reaches S3.
        """
        records = self._records
        if records is None:
            records = self._start_batch(typed=False)
        elif self._typed:  # a record msgspec rejected, in a batch of typed rows: all dicts
            assert self.row_type is not None
            records[:] = self.row_type.as_dicts(records)
            self._typed = False
        records.append(record)
        if len(records) >= self._max_rows:
            self._drain()

    def take_line(self, line: bytes | str) -> None:
        """A RECORD line of this stream as a typed row (see rows.py), skipping the dict and
        the reader's dispatch. Raises ``msgspec.MsgspecError``, having taken nothing, when
        the line is not one: the reader then sends it the usual way."""
        self._take_rows([self._decode_line(line).record])

    def take_lines(self, chunk: bytes | str, lines: int) -> None:
        """``lines`` lines, all RECORD lines of this stream, decoded in one call; else raises
        ``msgspec.MsgspecError``, having taken nothing (the reader goes line by line)."""
        messages = self._decode_lines(chunk)
        if len(messages) != lines:  # msgspec skips blank lines; the SDK's way rejects them
            raise msgspec.DecodeError("a blank line")
        self._take_rows(list(map(_RECORD, messages)))

    def _take_rows(self, rows: list[Any]) -> None:
        while rows:
            records = self._records
            if records is None:
                records = self._start_batch(typed=True)
            room = self._max_rows - len(records)
            taken, rows = (rows, []) if len(rows) <= room else (rows[:room], rows[room:])
            if not self._typed:  # a batch of dicts (it holds records the SDK's way took)
                assert self.row_type is not None  # rows are taken only with a row type
                taken = self.row_type.as_dicts(taken)
            records += taken
            if len(records) >= self._max_rows:
                self._drain()

    def _start_batch(self, *, typed: bool) -> list[Any]:
        context = self.pending_batch()
        records: list[Any] = context.setdefault("records", [])
        context["unchecked"] = True  # typed batches: only their unchecked columns
        self._records, self._typed = records, typed
        return records

    def _drain(self) -> None:
        self.logger.info("Target sink for '%s' is full. Draining...", self.stream_name)
        self._pump_target.drain_one(self)

    @property
    def current_size(self) -> int:
        if self._records is not None:  # the SDK's counters, for records taken here
            taken = len(self._records) - self._counted
            self.tally_record_read(taken)
            self._uncounted += taken
            self._counted += taken
        return super().current_size

    def _check_batch(self, records: list[dict[str, Any]]) -> None:
        """What the SDK checks of each record (schema, key properties), for records taken by
        :meth:`add_record`: the quick check over the whole batch, else record by record."""
        check = self._batch_check  # None: no quick check for this schema's root
        if self.validates_records and (check is None or not check(records)):
            for record in records:
                if check is None or not check([record]):
                    self.validate_record(record)
        for key in self.key_properties:
            if not all(map(dict.__contains__, records, repeat(key))):
                self.check_key_properties(next(r for r in records if key not in r))

    def process_batch(self, context: dict[str, Any]) -> None:
        assert self.spool is not None  # set in setup()
        records = context.get("records", [])
        row_type = self.row_type if self._typed else None
        self._records, self._counted, self._typed = None, 0, False  # the next record: a new batch
        if context.pop("unchecked", False):
            if row_type is not None and self.validates_records and not row_type.valid(records):
                records, row_type = row_type.as_dicts(records), None
            if row_type is None:
                self._check_batch(records)
        self.spool.append(records, row_type)
        if self._uncounted:
            self.record_counter_metric.increment(self._uncounted)
            self._uncounted = 0

    def activate_version(self, new_version: int) -> None:
        """Full-table pumps are replaced as a whole on every run: nothing to activate."""
        self.logger.debug("ignoring ACTIVATE_VERSION %s for %s", new_version, self.stream_name)
