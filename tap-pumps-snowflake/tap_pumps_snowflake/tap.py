"""MeltanoLabs tap-snowflake, as the Data Pump reads its models in production.

The only change: a DATE replication key (a pump's ``timestamp_column`` may be a date, as
GitLab's ``pump_subscription_product_usage`` was) is bookmarked as its ISO string. singer-sdk
0.54.9 compares each record's key with the bookmark from state; a ``datetime.date`` against
the stored string raises TypeError on every incremental run after the first.
"""

from __future__ import annotations

import datetime
from typing import Any

from tap_snowflake.client import SnowflakeStream
from tap_snowflake.tap import TapSnowflake


class PumpStream(SnowflakeStream):
    """A pump model: bookmarks DATE keys as 'YYYY-MM-DD' (what JSON carries anyway)."""

    def post_process(
        self, row: dict[str, Any], context: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        row = super().post_process(row, context)
        key = self.replication_key
        if row is not None and key:
            value = row.get(key)
            # datetime is a subclass of date and is already handled by the SDK.
            if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
                row[key] = value.isoformat()
        return row


class TapPumpsSnowflake(TapSnowflake):
    """tap-snowflake whose streams are :class:`PumpStream`."""

    name = "tap-pumps-snowflake"
    default_stream_class = PumpStream
