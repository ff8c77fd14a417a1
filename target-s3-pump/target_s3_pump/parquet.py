"""Parquet part files (pyarrow), imported only by pumps that write Parquet.

Types: integer -> int64, number -> float64, boolean -> bool, date-time -> timestamp(us, UTC)
(naive values are UTC), date -> date32, anything else -> string (objects/arrays as JSON).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from target_s3_pump.values import ConversionError, header_names, plain_text


def _json_types(prop: Mapping[str, Any]) -> tuple[set[str], str | None]:
    """Non-null JSON types of a property schema, and its string format (anyOf flattened)."""
    types: set[str] = set()
    fmt = prop.get("format")
    raw = prop.get("type")
    if isinstance(raw, str):
        types.add(raw)
    elif isinstance(raw, list):
        types.update(t for t in raw if isinstance(t, str))
    for alternative in prop.get("anyOf", []) or []:
        sub_types, sub_fmt = _json_types(alternative)
        types |= sub_types
        fmt = fmt or sub_fmt
    types.discard("null")
    return types, fmt


def arrow_type(prop: Mapping[str, Any]) -> pa.DataType:
    """Parquet column type for a JSON schema property; anything ambiguous is a string."""
    types, fmt = _json_types(prop)
    if types == {"integer"}:
        return pa.int64()
    if types <= {"integer", "number"} and types:
        return pa.float64()
    if types == {"boolean"}:
        return pa.bool_()
    if types == {"string"} and fmt == "date-time":
        return pa.timestamp("us", tz="UTC")
    if types == {"string"} and fmt == "date":
        return pa.date32()
    return pa.string()


def _to_arrow_value(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_timestamp(kind):
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        raise TypeError(type(value).__name__)
    if pa.types.is_date(kind):
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    if pa.types.is_floating(kind):
        return float(value)
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_boolean(kind):
        if not isinstance(value, bool):
            raise TypeError(type(value).__name__)
        return value
    return plain_text(value)


class ParquetPart:
    def __init__(
        self,
        path: Path,
        compression: str,
        columns: Sequence[str],
        properties: Mapping[str, Mapping[str, Any]],
        header_case: str,
    ) -> None:
        self.path = path
        self.rows = 0
        self.columns = list(columns)
        self.kinds = [arrow_type(properties.get(c, {})) for c in self.columns]
        names = header_names(self.columns, header_case)
        self.schema = pa.schema([pa.field(n, k) for n, k in zip(names, self.kinds, strict=True)])
        self._writer = pq.ParquetWriter(
            str(path), self.schema, compression="gzip" if compression == "gzip" else "none"
        )

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        arrays = []
        for column, kind in zip(self.columns, self.kinds, strict=True):
            try:
                values = [_to_arrow_value(r.get(column), kind) for r in records]
            except (TypeError, ValueError) as exc:
                raise ConversionError(
                    f"column '{column}': cannot write a value as Parquet {kind} ({exc})"
                ) from None
            arrays.append(pa.array(values, type=kind))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += len(records)

    def close(self) -> None:
        self._writer.close()
