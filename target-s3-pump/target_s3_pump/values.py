"""How pump objects spell values and column names, in every format."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from singer_sdk.singerlib.json import serialize_json


class ConversionError(ValueError):
    """A value cannot be written in the pump's format."""


def plain_text(value: Any) -> str:
    """A non-null value as text, unquoted."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return serialize_json(value, ensure_ascii=False)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def header_names(columns: Sequence[str], header_case: str) -> list[str]:
    if header_case == "upper":
        return [c.upper() for c in columns]
    if header_case == "lower":
        return [c.lower() for c in columns]
    return list(columns)
