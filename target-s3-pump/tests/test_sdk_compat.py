"""Contracts of target_s3_pump.sdk_compat: one test per hook into singer-sdk's private names.

Each test runs the SDK's own code path through a minimal target built on the hooks (no S3, no
pumps.yml), so a singer-sdk release that renames, re-signs or stops calling one of those
names fails here, by name, before it shows up as odd behaviour in the pump tests.
"""

from __future__ import annotations

import io
import json
import signal
from datetime import datetime
from typing import Any

import pytest
from singer_sdk import typing as th
from singer_sdk.exceptions import InvalidRecord, MissingKeyPropertiesError
from singer_sdk.io_base import SingerReader
from singer_sdk.sinks import BatchSink

from target_s3_pump.sdk_compat import PumpBatchSinkBase, PumpTargetBase, reject_unknown_message

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "at": {"type": ["string", "null"], "format": "date-time"},
    },
}
AT = "2024-09-27 05:00:00Z"  # a spelling the SDK's parsing would not keep


class ContractSink(PumpBatchSinkBase):
    def setup(self) -> None:
        super().setup()
        self.batches: list[dict[str, Any]] = []

    def process_batch(self, context: dict[str, Any]) -> None:
        self.batches.append(context)


class ContractTarget(PumpTargetBase):
    name = "target-contract"
    config_jsonschema = th.PropertiesList(
        th.Property("x", th.StringType, default="declared"),
    ).to_dict()
    default_sink_class = ContractSink

    def __init__(self, config: dict[str, Any], holding: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.holding = holding
        super().__init__(config=config)

    def check_config(self, config: dict[str, Any], schema: dict[str, Any]) -> None:
        self.calls.append(("config", (config, schema)))
        config.setdefault("filled", True)

    def take_record(self, message: dict[str, Any]) -> bool:
        self.calls.append(("record", message))
        return bool(message["stream"] == "fast")

    def hold_state(self, state: dict[str, Any]) -> bool:
        self.calls.append(("hold", state))
        return self.holding

    def stop_on_signal(self, signum: int) -> None:
        self.calls.append(("signal", signum))


def lines(*messages: dict[str, Any]) -> io.StringIO:
    return io.StringIO("".join(json.dumps(m) + "\n" for m in messages))


def schema_msg(stream: str) -> dict[str, Any]:
    return {"type": "SCHEMA", "stream": stream, "schema": SCHEMA, "key_properties": ["id"]}


def record_msg(stream: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": record}


def calls(target: ContractTarget, kind: str) -> list[Any]:
    return [arg for k, arg in target.calls if k == kind]


def sink_of(target: ContractTarget, stream: str) -> ContractSink:
    sink = target.get_sink(stream)
    assert isinstance(sink, ContractSink)
    return sink


def sink_for(target: ContractTarget, stream: str = "s") -> ContractSink:
    target.listen(lines(schema_msg(stream)))
    return sink_of(target, stream)


def test_validate_config_hands_the_raw_config_and_full_schema_to_check_config() -> None:
    """``_validate_config``: called by PluginBase.__init__; the dict it checks is the config."""
    target = ContractTarget({"x": "given"})
    [(config, schema)] = calls(target, "config")
    assert config["x"] == "given"
    assert "batch_size_rows" in schema["properties"]  # the SDK's built-in settings too
    assert "x" in schema["properties"]
    assert target.config["filled"] is True  # defaults filled in are the target's config


def test_process_record_message_is_the_record_callback() -> None:
    """``_process_record_message``: every RECORD goes through it; not taken: the SDK's path."""
    target = ContractTarget({})
    target.listen(
        lines(
            schema_msg("fast"),
            schema_msg("slow"),
            record_msg("fast", {"id": 1}),
            record_msg("slow", {"id": 2}),
        )
    )
    assert [m["record"] for m in calls(target, "record")] == [{"id": 1}, {"id": 2}]
    assert sink_of(target, "fast").batches == []  # taken
    assert [b["records"] for b in sink_of(target, "slow").batches] == [[{"id": 2}]]


def test_write_state_message_is_where_drained_state_goes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``_write_state_message``: the latest STATE after a drain; held or written as the SDK does."""
    state = {"bookmarks": {"s": {"id": 1}}}
    held = ContractTarget({}, holding=True)
    held.listen(lines({"type": "STATE", "value": state}))
    assert calls(held, "hold") == [state]
    assert capsys.readouterr().out == ""
    held.write_state(state)
    assert capsys.readouterr().out == json.dumps(state) + "\n"

    passed = ContractTarget({}, holding=False)
    passed.listen(lines({"type": "STATE", "value": state}))
    assert calls(passed, "hold") == [state]
    assert capsys.readouterr().out == json.dumps(state) + "\n"


def test_handle_termination_is_the_signal_handler() -> None:
    """``_handle_termination``: installed for SIGTERM and SIGINT by PluginBase.__init__."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        target = ContractTarget({})
        handler = signal.getsignal(signal.SIGTERM)
        assert handler == target._handle_termination
        assert signal.getsignal(signal.SIGINT) == target._handle_termination
        assert callable(handler)
        handler(signal.SIGTERM, None)
        assert calls(target, "signal") == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])


def test_get_context_is_the_batch_the_drain_processes() -> None:
    """``_get_context``: BatchSink's pending batch, handed to process_batch by a drain."""
    target = ContractTarget({})
    sink = sink_for(target)
    batch = sink.pending_batch()
    assert sink.pending_batch() is batch
    batch["records"] = [{"id": 1}]
    sink.tally_record_read(1)
    target.drain_one(sink)
    assert sink.batches == [batch]
    assert sink.pending_batch() is not batch  # a drain starts a new batch


def test_validator_follows_the_validate_records_setting() -> None:
    """``_validator``: set unless ``validate_records`` is false."""
    assert sink_for(ContractTarget({})).validates_records
    assert not sink_for(ContractTarget({"validate_records": False})).validates_records


def test_validate_and_parse_validates_and_keeps_timestamps_as_sent() -> None:
    """``_validate_and_parse`` and ``_remove_sdc_metadata_from_record``: the SDK's checks of a
    record, metadata columns dropped; ``_parse_timestamps_in_record`` (overridden) keeps the
    date-time string."""
    sink = sink_for(ContractTarget({}))
    record = {"id": 1, "at": AT, "_sdc_extracted_at": AT}
    sink.validate_record(record)
    assert record == {"id": 1, "at": AT}
    with pytest.raises(InvalidRecord):
        sink.validate_record({"id": "one"})


def test_parse_timestamps_in_record_is_what_parses_timestamps() -> None:
    """``_parse_timestamps_in_record``: called by ``_validate_and_parse`` with these keyword
    arguments; the stock sink turns the string into a datetime, so the override is what keeps it."""

    class StockSink(BatchSink):
        def process_batch(self, context: dict[str, Any]) -> None:
            pass

    target = ContractTarget({})
    stock = StockSink(target, "s", SCHEMA, ["id"])
    record = stock._validate_and_parse({"id": 1, "at": AT})
    assert isinstance(record["at"], datetime)

    seen: list[dict[str, Any]] = []

    class SpySink(PumpBatchSinkBase):
        def process_batch(self, context: dict[str, Any]) -> None:
            pass

        def _parse_timestamps_in_record(self, *, record: Any, schema: Any, treatment: Any) -> None:
            seen.append({"record": record, "schema": schema, "treatment": treatment})

    spy = SpySink(target, "s", SCHEMA, ["id"])
    spy.validate_record({"id": 1, "at": AT})
    treatment = spy.datetime_error_treatment
    assert seen == [{"record": {"id": 1, "at": AT}, "schema": spy.schema, "treatment": treatment}]


def test_singer_validate_message_requires_key_properties() -> None:
    """``_singer_validate_message``: the SDK's error for a record without a key property."""
    sink = sink_for(ContractTarget({}))
    sink.check_key_properties({"id": 1})
    with pytest.raises(MissingKeyPropertiesError):
        sink.check_key_properties({"at": AT})


def test_process_unknown_message_rejects_an_unknown_type() -> None:
    """``_process_unknown_message``: the SDK reader's error for an unknown message type."""
    with pytest.raises(ValueError, match="Unknown message type 'NOPE'"):
        reject_unknown_message(SingerReader(), {"type": "NOPE"})
