"""The target's message reader: singer-sdk's reader loop with msgspec's JSON parser, handing
whole chunks of a stream's RECORD lines to the sink that decodes them itself (the fast path)."""

from __future__ import annotations

import io
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import IO, Any, Protocol

import msgspec
from singer_sdk.io_base import SingerReader
from singer_sdk.singerlib import SingerMessageType

from target_s3_pump.sdk_compat import reject_unknown_message


class LineTaker(Protocol):
    """A sink decoding its stream's RECORD lines itself (PumpSink). Both methods raise
    ``msgspec.MsgspecError``, having taken nothing, for input they do not take."""

    def take_line(self, line: bytes | str) -> None: ...

    def take_lines(self, chunk: bytes | str, lines: int) -> None: ...


def no_line_taker(stream: str | None) -> LineTaker | None:
    return None


class PumpMessageReader(SingerReader):
    """The SDK's reader with msgspec's JSON parser (several times faster than the stdlib's),
    as singer_sdk.contrib.msgspec's reader, reading stdin as bytes.

    Numbers come out exactly as with the SDK's parser: integers as ``int``, others as
    ``Decimal`` of their JSON spelling (``1.10`` stays ``1.10``). A line msgspec rejects (e.g.
    ``NaN``, which Python's parser accepts) goes to the SDK's parser, so what is accepted and
    the error for a bad line stay the SDK's.
    """

    _decoder = msgspec.json.Decoder(float_hook=Decimal)

    # Set by the target: the sink that takes a stream's RECORD lines itself, if it has one.
    line_taker: Callable[[str | None], LineTaker | None] = staticmethod(no_line_taker)
    # Bytes read at once from a binary input; the chunk's whole lines are tried as one block.
    chunk_bytes = 1 << 20

    def process_lines(
        self,
        file_input: IO[str] | IO[bytes] | None,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
    ) -> Counter[str]:
        """The SDK's loop, with the checks that only an odd line needs kept for odd lines.

        Once a stream's records come and its sink takes lines (typed rows, see rows.py), each
        chunk of input is offered to that sink whole, in one decoding call; a chunk it refuses
        (another message in it, a line it does not type) is read line by line: lines it still
        takes one at a time, the others the SDK's way, in order.
        """
        stats: dict[str, int] = {}
        decode = self._decoder.decode
        on_record = callbacks[SingerMessageType.RECORD]
        records = 0
        taker: LineTaker | None = None
        # stdin as bytes: msgspec parses UTF-8 itself, no text decoding first.
        source = file_input if file_input is not None else sys.stdin.buffer
        for chunk, lines in _chunks(source, self.chunk_bytes):
            if taker is not None:
                try:
                    taker.take_lines(chunk, lines)
                except msgspec.MsgspecError:
                    pass
                else:
                    records += lines
                    continue
            for line in _lines(chunk):
                if taker is not None:
                    try:
                        taker.take_line(line)
                    except msgspec.MsgspecError:
                        pass
                    else:
                        records += 1
                        continue
                try:
                    message = decode(line)
                except msgspec.DecodeError:
                    message = self.deserialize_json(line)  # the SDK's parser, and its error
                kind: Any = message.get("type") if type(message) is dict else None
                if kind == "RECORD":
                    on_record(message)
                    records += 1
                    taker = self.line_taker(message.get("stream"))
                    continue
                if kind is None:
                    self.assert_line_requires(message, requires={"type"})  # the SDK's error
                callback = callbacks.get(kind)
                if callback is not None:
                    callback(message)
                    if kind == "SCHEMA":  # a new sink, perhaps replacing the one taker fed
                        taker = self.line_taker(message.get("stream"))
                else:
                    reject_unknown_message(self, message)
                stats[kind] = stats.get(kind, 0) + 1
        if records:
            stats[SingerMessageType.RECORD] = records
        return Counter(stats)

    def deserialize_json(self, line: str | bytes) -> dict[str, Any]:
        # Bytes too: stdin is read as bytes (the SDK's reader only takes text).
        try:
            message: dict[str, Any] = self._decoder.decode(line)
        except msgspec.DecodeError:
            text = line.decode() if isinstance(line, bytes) else line
            return super().deserialize_json(text)
        return message


def _chunks(source: IO[Any], size: int) -> Iterator[tuple[bytes | str, int]]:
    """``(chunk, number of lines)``: whole lines of a binary input, as much as one read
    gives (a pipe gives what the writer has written: no waiting for a full chunk); a text
    input (tests) line by line."""
    read1 = getattr(source, "read1", None)
    if read1 is None:
        for line in source:
            yield line, 1
        return
    pending: list[bytes] = []  # the start of a line that continues in a later read
    while data := read1(size):
        end = data.rfind(b"\n") + 1
        if not end:
            pending.append(data)
            continue
        chunk = b"".join([*pending, data[:end]]) if pending else data[:end]
        pending = [data[end:]] if end < len(data) else []
        yield chunk, chunk.count(b"\n")
    if pending:
        yield b"".join(pending), 1


def _lines(chunk: bytes | str) -> Iterator[bytes | str]:
    """A chunk's lines as iterating the input gives them (split at LF only, ends kept)."""
    return iter(io.BytesIO(chunk)) if isinstance(chunk, bytes) else iter((chunk,))
