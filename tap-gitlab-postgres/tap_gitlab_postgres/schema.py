"""Postgres result columns -> Singer JSON schema, and the SQL that renders each as JSON.

Rows are turned into JSON by Postgres itself (``row_to_json``), so every column gets a
SQL expression here that makes its JSON form exact and target-friendly: timestamps in
UTC with an offset, numerics without float rounding, bytea as hex, json as text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

JsonSchema = dict[str, Any]

INTEGER_TYPES = {"int2", "int4", "int8", "oid"}
FLOAT_TYPES = {"float4", "float8"}
STRING_TYPES = {"text", "varchar", "bpchar", "char", "name", "citext", "unknown"}


@dataclass(frozen=True)
class PgType:
    """What Postgres says about one type (domains already resolved to their base)."""

    name: str
    kind: str  # pg_type.typtype: b base, e enum, c composite, r range, ...
    element: PgType | None = None  # for arrays


# Widest decimal the warehouses hold exactly: Snowflake's NUMBER has 38 digits.
MAX_DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: PgType
    # "table.column" the value comes from, as Postgres reports it (warnings name it).
    origin: str = field(default="", compare=False)
    # The relation the query reads (its primary key's table): names computed columns.
    relation: str = field(default="", compare=False, kw_only=True)
    # numeric(precision, scale) when the column declares them (None: unconstrained).
    precision: int | None = field(default=None, kw_only=True)
    scale: int | None = field(default=None, kw_only=True)

    @property
    def type_label(self) -> str:
        """Stable type name for the schema fingerprint."""
        t = self.pg_type
        return f"{t.element.name}[]" if t.element else t.name

    def json_schema(self) -> JsonSchema:
        if self.pg_type.name == "numeric" and self.pg_type.element is None:
            return _nullable(_numeric_schema(self.precision, self.scale))
        return _nullable(_schema_for(self.pg_type))

    @property
    def decimal_annotations(self) -> JsonSchema:
        """``precision`` / ``scale`` of an ``x-singer.decimal`` property ({} otherwise)."""
        schema = self.json_schema()
        return {k: schema[k] for k in ("precision", "scale") if k in schema}

    def json_sql(self, ref: str) -> str:
        """SQL expression rendering column reference ``ref`` as its JSON value."""
        return _sql_for(self.pg_type, ref)

    @property
    def arrow_kind(self) -> ArrowKind:
        """How the columnar batch files (Parquet, Arrow IPC) hold this column."""
        return _arrow_kind(self.pg_type)

    def csv_sql(self, ref: str) -> str:
        """SQL expression for ``COPY ... (FORMAT csv)`` feeding the columnar batch files.

        The same value as :meth:`json_sql` in the text form Arrow's CSV reader parses:
        timestamps stay timestamps (read as UTC instants; the session runs in UTC; values
        outside years 1-9999 are brought to the nearest bound by the reader), dates outside
        years 1-9999 become the nearest bound, arrays become their JSON text (parsed into
        Arrow lists), everything else is the JSON expression itself.
        """
        t = self.pg_type
        if t.element is not None:
            return f"to_json({_sql_for(t, ref)})::text"
        if t.name in {"timestamp", "timestamptz"}:
            return ref
        if t.name == "date":
            return (
                f"CASE WHEN {ref} > '9999-12-31'::date THEN '9999-12-31'::date "
                f"WHEN {ref} < '0001-01-01'::date THEN '0001-01-01'::date ELSE {ref} END"
            )
        return _sql_for(t, ref)


def _nullable(schema: JsonSchema) -> JsonSchema:
    types = schema.get("type")
    if isinstance(types, str):
        schema = {**schema, "type": [types, "null"]}
    return schema


def _numeric_schema(precision: int | None, scale: int | None) -> JsonSchema:
    """A numeric travels as its exact decimal text, never as a JSON number (which targets
    read as a double). ``numeric(p, s)`` with p <= 38 is singer-sdk's ``x-singer.decimal``,
    which SQL targets create as DECIMAL(p, s) (Snowflake NUMBER(p, s)); a wider or
    unconstrained numeric fits no warehouse's decimal type, so it lands as text."""
    if precision is not None and precision <= MAX_DECIMAL_PRECISION:
        return {
            "type": "string",
            "format": "x-singer.decimal",
            "precision": precision,
            "scale": scale or 0,
        }
    return {"type": "string"}


def _schema_for(t: PgType) -> JsonSchema:
    if t.element is not None:
        items = _schema_for(t.element) if _keeps_json_form(t.element) else {"type": "string"}
        return {"type": "array", "items": _nullable(items)}
    name = t.name
    if name in INTEGER_TYPES:
        return {"type": "integer"}
    if name == "numeric":
        return _numeric_schema(None, None)
    if name in FLOAT_TYPES:
        return {"type": "number"}
    if name == "bool":
        return {"type": "boolean"}
    if name in {"timestamp", "timestamptz"}:
        return {"type": "string", "format": "date-time"}
    if name == "date":
        return {"type": "string", "format": "date"}
    if name in {"time", "timetz"}:
        return {"type": "string", "format": "time"}
    if name == "uuid":
        return {"type": "string", "format": "uuid"}
    if name in {"json", "jsonb"}:
        # Kept as JSON text, as pgp did: every warehouse can parse it downstream.
        return {"type": "string", "contentMediaType": "application/json"}
    if name == "bytea":
        return {"type": "string", "contentEncoding": "base16"}
    return {"type": "string"}


def _sql_for(t: PgType, ref: str) -> str:
    if t.element is not None:
        # Arrays of anything but plain scalars: elements as text keep them exact and portable.
        return ref if _keeps_json_form(t.element) else f"{ref}::text[]"
    name = t.name
    if name in INTEGER_TYPES or name in STRING_TYPES or name in {"bool", "uuid"}:
        return ref
    if name == "numeric":
        # NaN has no JSON form; Postgres treats NaN = NaN, so NULLIF catches it.
        return f"NULLIF({ref}, 'NaN'::numeric)::text"
    if name in FLOAT_TYPES:
        return f"CASE WHEN {ref} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {ref} END"
    if name == "timestamp":
        # GitLab stores naive UTC; the session runs in UTC so this renders +00:00.
        return _clamped(ref, "timestamp", f"({ref} AT TIME ZONE 'UTC')")
    if name == "timestamptz":
        return _clamped(ref, "timestamptz", ref)
    if name == "date":
        return _clamped(ref, "date", ref)
    if name in {"json", "jsonb"}:
        return f"{ref}::text"
    if name == "bytea":
        return f"encode({ref}, 'hex')"
    if t.kind == "c":
        return f"{ref}::text"  # row_to_json would nest a composite as an object
    # Everything else (enums, inet, money, ...) renders through its own output function,
    # which is what its text form means to Postgres users (inet without a /32 suffix).
    return ref


# Dates and timestamps Python (so every singer-sdk target) can hold: years 1 to 9999.
# Postgres also has 'infinity', '-infinity', BC dates and years up to 294276; a target
# fails on those ("Could not parse value ..."). They are loaded as the nearest bound:
LOADABLE_RANGE = {
    "timestamp": ("0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"),
    "timestamptz": ("0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00"),
    "date": ("0001-01-01", "9999-12-31"),
}
CLAMPED_JSON = {
    "timestamp": ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"),
    "timestamptz": ("0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"),
    "date": ("0001-01-01", "9999-12-31"),
}
# A clamped value is written with a space after its key's colon (`"col": "9999-..."`),
# which row_to_json never writes: same JSON, but the tap can count exactly the values it
# changed (client.ValueChecks) and warn naming the column.
CLAMP_MARK = b'": "'


def _clamped(ref: str, name: str, rendered: str) -> str:
    low, high = LOADABLE_RANGE[name]
    json_low, json_high = CLAMPED_JSON[name]
    return (
        f"CASE WHEN {ref} > '{high}'::{name} THEN ' \"{json_high}\"'::json "
        f"WHEN {ref} < '{low}'::{name} THEN ' \"{json_low}\"'::json "
        f"ELSE to_json({rendered}) END"
    )


@dataclass(frozen=True)
class ArrowKind:
    """A column's Arrow type, named without importing pyarrow (RECORD mode never needs it).

    ``name`` is one of ``int64``, ``bool``, ``string``, ``timestamp`` (naive UTC in
    Postgres), ``timestamptz`` (both become ``timestamp[us, tz=UTC]``), ``list``
    (``element`` is the kind of the items).

    Only integers, booleans and timestamps are typed. ``numeric`` stays the exact decimal
    text Postgres prints (as in the JSON records: no float rounding, and an unconstrained
    numeric fits no Arrow decimal). Floats stay their shortest exact text too: a double
    handed to target-postgres reaches its NUMERIC column through Postgres' float8 ->
    numeric cast, which keeps 15 digits; both loaders parse the text exactly. json/jsonb,
    dates, times, intervals, uuid, bytea (hex) and the rest stay the strings their JSON
    schema says.
    """

    name: str
    element: ArrowKind | None = None


def _arrow_kind(t: PgType) -> ArrowKind:
    if t.element is not None:
        items = _arrow_kind(t.element) if _keeps_json_form(t.element) else ArrowKind("string")
        return ArrowKind("list", items)
    if t.name in INTEGER_TYPES:
        return ArrowKind("int64")
    if t.name == "bool":
        return ArrowKind("bool")
    if t.name in {"timestamp", "timestamptz"}:
        return ArrowKind(t.name)
    return ArrowKind("string")


def _keeps_json_form(t: PgType) -> bool:
    return t.element is None and (
        t.name in INTEGER_TYPES | FLOAT_TYPES | STRING_TYPES | {"bool"}
    )


def fingerprint(columns: list[Column]) -> str:
    """Hash of column names and types: a change means the warehouse copy must be rebuilt."""
    payload = json.dumps([[c.name, c.type_label] for c in columns])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
