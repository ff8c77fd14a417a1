"""PumpSink: one per stream; drained batches go to the pump's local spool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink

if TYPE_CHECKING:
    from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum

    from target_s3_pump.spool import PumpSpool
    from target_s3_pump.target import TargetS3Pump


class PumpSink(BatchSink):
    """Collects a stream's records in batches of ``batch_size_rows`` and spools each batch.

    Nothing is uploaded here: the target publishes every pump after the whole input was read
    (see :meth:`TargetS3Pump.process_endofpipe`), so a stream rejected later in the input, or
    any failure, leaves nothing in S3.
    """

    def __init__(
        self,
        target: TargetS3Pump,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        self._pump_target = target
        self.spool: PumpSpool | None = None
        super().__init__(target, stream_name, schema, key_properties)

    def setup(self) -> None:
        super().setup()
        self.spool = self._pump_target.spool_for(self.stream_name, self.schema)

    def _parse_timestamps_in_record(
        self,
        record: dict,
        schema: dict,
        treatment: DatetimeErrorTreatmentEnum,
    ) -> None:
        """Keep date-time strings exactly as the extractor sent them.

        The SDK would turn them into ``datetime`` objects, and writing those back changes their
        spelling (``Z`` vs ``+00:00``, a space vs ``T``, fractional digits). Pumps pass values
        through; Parquet parses them itself when it needs timestamps.
        """

    def process_batch(self, context: dict[str, Any]) -> None:
        assert self.spool is not None  # set in setup()
        self.spool.append(context.get("records", []))

    def activate_version(self, new_version: int) -> None:
        """Full-table pumps are replaced as a whole on every run: nothing to activate."""
        self.logger.debug("ignoring ACTIVATE_VERSION %s for %s", new_version, self.stream_name)
