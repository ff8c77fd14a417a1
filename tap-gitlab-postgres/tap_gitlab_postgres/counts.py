"""Row counts for the Trusted Data Framework's checks: stream ``pgp_row_counts``.

One record per manifest stream that finished in this run, sent after every other stream:

- ``rows_read``: rows this run read and emitted (RAW rows carrying its ``uploaded_at``);
- ``source_rows``: after a complete copy (``run_type`` ``snapshot`` or ``full_sync``), the
  query's ``count(*)`` in the source, taken right after the copy; otherwise null;
- ``table_version``, ``primary_key``: where the copy lives in RAW.

dbt compares them with RAW (``transform/tests/assert_raw_matches_pgp_row_counts.sql``). A
stream that failed sends no record: it has nothing to vouch for.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream

from tap_gitlab_postgres.batches import ArrowRecordBatcher, remove_earlier_files
from tap_gitlab_postgres.sdk_compat import BaseBatchFileEncoding, BatchConfig

if TYPE_CHECKING:
    from tap_gitlab_postgres.streams import PgpStream
    from tap_gitlab_postgres.tap import TapGitlabPostgres

STREAM = "pgp_row_counts"


def _nullable(kind: str, **extra: str) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


SCHEMA = {
    "type": "object",
    "properties": {
        "stream": {"type": "string"},
        "source_table": _nullable("string"),
        "primary_key": _nullable("string"),
        "load_type": _nullable("string"),
        "run_type": _nullable("string"),
        "uploaded_at": _nullable("number"),
        "table_version": _nullable("integer"),
        "rows_read": _nullable("integer"),
        "source_rows": _nullable("integer"),
        "counted_at": _nullable("string", format="date-time"),
    },
}


class RowCountsStream(Stream):
    """Reports the manifest streams that ran before it (see the module docstring)."""

    def __init__(self, tap: TapGitlabPostgres, streams: list[PgpStream]) -> None:
        super().__init__(tap, schema=SCHEMA, name=STREAM)
        self.streams = streams
        self.primary_keys = []  # appended run after run

    def get_batches(
        self, batch_config: BatchConfig, context: Any = None
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        remove_earlier_files(batch_config, self.tap_name, self.name)
        if batch_config.encoding.format != "arrow":
            yield from super().get_batches(batch_config, context)
            return
        # The tap's own Arrow writer, not the SDK's batcher registry: singer-sdk 0.55
        # registers an `arrow` batcher of its own, and which of two wins is undefined.
        batcher = ArrowRecordBatcher(self.tap_name, self.name, batch_config)
        for manifest in batcher.get_batches(iter(self.get_records(context))):
            yield batch_config.encoding, manifest

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        for stream in self.streams:
            report = stream.run_report
            if report is None:  # failed, deselected or skipped
                continue
            yield {
                "stream": stream.name,
                # The relation the query reads (p_ci_builds), not export_table (ci_builds).
                "source_table": stream.columns[0].relation or stream.table.export_table,
                "primary_key": stream.table.primary_key,
                "load_type": stream.table.load_type.value,
                "run_type": report.run_type,
                "uploaded_at": Decimal(report.uploaded_at),
                "table_version": report.table_version,
                "rows_read": report.rows_read,
                "source_rows": report.source_rows,
                "counted_at": datetime.now(UTC).isoformat(),
            }
