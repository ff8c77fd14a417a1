"""The fast path: streams whose records skip singer-sdk's generic per-record path.

Most of the time per row went to that path (copy, map, metadata, validation, timestamp
parsing, metrics, one record at a time). For a stream that needs none of it, RECORD messages go
straight to the stream's sink (:meth:`PumpSink.add_record`), and its RECORD lines are decoded
by the sink itself when its schema allows typed rows (:mod:`target_s3_pump.rows`); the sink
validates a batch at a time, with the SDK's errors.
"""

from __future__ import annotations

from typing import Any

from singer_sdk.mapper import PluginMapper, SameRecordTransform

from target_s3_pump.sinks import PumpSink


class DirectRecords:
    """The streams on the fast path, and their sinks."""

    def __init__(self) -> None:
        self._sinks: dict[str, PumpSink] = {}  # stream -> sink taking its records as-is

    def register(self, sink: PumpSink, mapper: PluginMapper) -> None:
        """Put a new sink's stream on the fast path, or take it off.

        On it only when the SDK would hand the record to the sink unchanged: one identity map
        (no stream maps, aliases or flattening for it) and no metadata columns added.
        """
        maps = mapper.stream_maps.get(sink.stream_name, [])
        direct = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == sink.stream_name
            and not maps[0].flattening_enabled
            and not sink.include_sdc_metadata_properties
        )
        if direct:
            self._sinks[sink.stream_name] = sink
        else:
            self._sinks.pop(sink.stream_name, None)

    def take_record(self, message: dict[str, Any]) -> bool:
        """Hand a RECORD message's record to its sink; False when it takes the SDK's path.

        The SDK's drain-all after 5 minutes is skipped here: it would only move rows into the
        spool earlier, since the state is held until publication anyway.
        """
        sink = self._sinks.get(message.get("stream", ""))
        record = message.get("record")
        if sink is None or type(record) is not dict:
            return False
        sink.add_record(record)
        return True

    def line_taker(self, stream: str | None) -> PumpSink | None:
        """The sink that decodes the stream's RECORD lines itself, when it can."""
        sink = self._sinks.get(stream) if stream is not None else None
        return sink if sink is not None and sink.row_type is not None else None
