"""RECORD lines decoded straight into typed rows, for streams whose schema allows it.

Parsing a RECORD line into a dict (and the dict's way through the reader loop) was most of
the target's time per row. For a stream whose schema is a plain object of plain types (what
SQL taps send), :class:`RowType` builds a msgspec decoder of the whole line into a Struct:
no dict per row, and msgspec checks the types while it parses. It only ever *rejects* more
than the SDK would, never less: a line it rejects (not a RECORD of this stream, a value of
another type, ``1.0`` for an integer, a property outside the schema, a missing required
property) takes the usual path, so what is accepted and every error stay the SDK's.

* ``string``, ``integer``, ``boolean`` and ``null`` are checked by msgspec (``bool`` is not an
  integer, a float is not an integer, a required or non-nullable property must be present);
* other types (``number``, ``array``, ``object``) are decoded as the SDK's reader does
  (``Decimal`` for non-integral numbers) and checked over the whole batch by :meth:`RowType.valid`,
  since msgspec's ``Decimal`` would also take a string.

A missing nullable property reads as None, as ``dict.get`` gives for a dict record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from operator import attrgetter
from typing import Any, Literal, Union

import msgspec

from target_s3_pump.validation import plain_object, plain_types, type_names

# JSON Schema types msgspec checks exactly as jsonschema does (for ints: rejects 1.0 where
# jsonschema accepts it, which only sends that record the usual way).
_CHECKED: dict[str, Any] = {"string": str, "integer": int, "boolean": bool, "null": None}


class RowType:
    """The typed rows of one stream's schema (see module docstring)."""

    def __init__(
        self,
        stream: str,
        columns: Sequence[str],
        annotations: Sequence[Any],
        required: Sequence[bool],
        unchecked: Mapping[str, frozenset[type]],
    ) -> None:
        self.columns = tuple(columns)
        # Attribute names: column names need not be identifiers.
        self._attributes = {c: f"c{i}" for i, c in enumerate(self.columns)}
        self._columns_of = {a: c for c, a in self._attributes.items()}
        fields: list[tuple[Any, ...]] = []
        for column, annotation, needed in zip(columns, annotations, required, strict=True):
            name = self._attributes[column]
            fields.append((name, annotation) if needed else (name, annotation, None))
        fields.sort(key=len)  # msgspec: fields without a default come first
        self._field_columns = [self._columns_of[f[0]] for f in fields]  # astuple order
        row = msgspec.defstruct(
            "Row",
            fields,
            rename=self._columns_of,
            forbid_unknown_fields=True,
            gc=False,  # rows hold no cycles; a batch of them would only slow the collector
        )
        message = msgspec.defstruct(
            "RecordMessage",
            [("type", Literal["RECORD"]), ("stream", Literal[stream]), ("record", row)],
            gc=False,
        )
        # A RECORD line of this stream -> its message (the row is ``.record``); raises
        # ``msgspec.MsgspecError`` for any other line.
        decoder = msgspec.json.Decoder(message, float_hook=Decimal)
        self.decode_line: Callable[[bytes | str], Any] = decoder.decode
        # Lines of such messages -> the messages (blank lines skipped); raises as above.
        self.decode_lines: Callable[[bytes | str], list[Any]] = decoder.decode_lines
        self._unchecked = [(self._attributes[c], types) for c, types in unchecked.items()]

    @classmethod
    def for_schema(
        cls, stream: str, schema: Mapping[str, Any], key_properties: Sequence[str]
    ) -> RowType | None:
        """The stream's row type, or None when its schema is not a plain object of plain types."""
        root = plain_object(schema)
        if root is None:
            return None
        properties, required = root
        needed = set(required) | set(key_properties)
        if not needed <= set(properties) or not properties:
            return None
        annotations: list[Any] = []
        unchecked: dict[str, frozenset[type]] = {}
        for column, prop in properties.items():
            types = plain_types(prop)
            if types is None:
                return None
            names = type_names(prop)
            if set(names) <= set(_CHECKED):
                annotations.append(Union[tuple(_CHECKED[n] for n in names)])  # noqa: UP007
            else:
                annotations.append(Any)
                unchecked[column] = types
        nullable = ["null" in type_names(prop) for prop in properties.values()]
        return cls(
            stream,
            list(properties),
            annotations,
            # Non-nullable: a missing property must not read as None (the SDK accepts it missing).
            [c in needed or not n for c, n in zip(properties, nullable, strict=True)],
            unchecked,
        )

    def valid(self, rows: Sequence[Any]) -> bool:
        """Whether the values msgspec did not check are all of their column's types."""
        return all(
            types.issuperset(map(type, map(attrgetter(name), rows)))
            for name, types in self._unchecked
        )

    def column(self, rows: Sequence[Any], column: str) -> list[Any]:
        """The values of ``column`` (None throughout for a column this type lacks)."""
        name = self._attributes.get(column)
        if name is None:
            return [None] * len(rows)
        return list(map(attrgetter(name), rows))

    def as_dict(self, row: Any) -> dict[str, Any]:
        return dict(zip(self._field_columns, msgspec.structs.astuple(row), strict=True))

    def as_dicts(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        return [self.as_dict(row) for row in rows]
