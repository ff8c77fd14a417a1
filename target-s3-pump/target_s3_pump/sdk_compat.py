"""Every use of a private singer-sdk name in target-s3-pump, behind named hooks.

Written against singer-sdk 0.54.9 (the version pyproject.toml pins). The target needs a few
things the SDK has no public hook for: its own wording of config problems, a RECORD path that
skips the SDK's per-record work for streams that need none of it, STATE held until the data is
published, no draining on SIGTERM, and the SDK's per-record validation applied a batch at a
time. Each is one method here; ``tests/test_sdk_compat.py`` checks, hook by hook, that the
private names still exist and behave as relied on, so an SDK upgrade fails there first.
"""

from __future__ import annotations

from types import FrameType
from typing import TYPE_CHECKING, Any

from singer_sdk import Target
from singer_sdk.io_base import SingerReader
from singer_sdk.sinks import BatchSink

if TYPE_CHECKING:
    from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum


class PumpTargetBase(Target):
    """singer-sdk's Target with its private hooks as named methods for the subclass."""

    def check_config(self, config: dict[str, Any], schema: dict[str, Any]) -> None:
        """Check ``config`` against ``schema`` (the plugin's settings and the SDK's built-in
        ones); raise the target's own error, all problems at once, one line each."""
        raise NotImplementedError

    def take_record(self, message: dict[str, Any]) -> bool:
        """Handle a RECORD message without the SDK's per-record path; False: not taken."""
        return False

    def hold_state(self, state: dict[str, Any]) -> bool:
        """Keep a STATE the SDK is about to write (True), or let it through (False)."""
        return False

    def write_state(self, state: dict[str, Any]) -> None:
        """Write a STATE message as the SDK does, held or not."""
        super()._write_state_message(state)

    def stop_on_signal(self, signum: int) -> None:
        """SIGTERM/SIGINT; the SDK's handling (drain every sink, then exit 0) is not used."""
        raise NotImplementedError

    # The SDK calls these; each hands over to a hook above.

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # Called once by PluginBase.__init__ on the raw config dict, which the SDK's validator
        # also fills with defaults. Its own errors are jsonschema's wording, without the checks
        # across settings; the target reports every problem its way, and runs on no invalid
        # config (raise_errors=False is no exception).
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        self.check_config(self._config, schema)
        return []

    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        if not self.take_record(message_dict):
            super()._process_record_message(message_dict)

    def _write_state_message(self, state: dict[str, Any]) -> None:
        if not self.hold_state(state):
            super()._write_state_message(state)

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        self.stop_on_signal(signum)


class PumpBatchSinkBase(BatchSink):
    """singer-sdk's BatchSink with the private parts of its per-record path as named methods,
    for records the sink takes itself; date-time strings stay as sent."""

    def pending_batch(self) -> dict[str, Any]:
        """The batch context the next drain hands to ``process_batch`` (started if need be)."""
        return self._get_context({})

    @property
    def validates_records(self) -> bool:
        """Whether records are validated against the schema (setting ``validate_records``)."""
        return self._validator is not None

    def validate_record(self, record: dict[str, Any]) -> None:
        """The SDK's validation of one record (metadata columns dropped first), with its error."""
        self._remove_sdc_metadata_from_record(record)
        self._validate_and_parse(record)

    def check_key_properties(self, record: dict[str, Any]) -> None:
        """The SDK's check that a record has every key property, with its error."""
        self._singer_validate_message(record)

    def _parse_timestamps_in_record(
        self,
        record: dict[str, Any],
        schema: dict[str, Any],
        treatment: DatetimeErrorTreatmentEnum,
    ) -> None:
        """Keep date-time strings exactly as the extractor sent them.

        The SDK would turn them into ``datetime`` objects, and writing those back changes their
        spelling (``Z`` vs ``+00:00``, a space vs ``T``, fractional digits). Pumps pass values
        through; Parquet parses them itself when it needs timestamps.
        """


def reject_unknown_message(reader: SingerReader, message: dict[str, Any]) -> None:
    """The SDK reader's error for a message of an unknown type."""
    reader._process_unknown_message(message)
