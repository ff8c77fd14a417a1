"""GitLab's real schema filled with edge values, the dev pipeline run on it, and a value-by-value
comparison of RAW with the source. Used by tests/test_gitlab_schema.py.

Source: ``gitlab_manifest_tables.sql`` (the 206 tables GitLab's manifests read, with the column
types, NOT NULL flags and primary keys of gitlab.com's db/structure.sql), found like the
manifests (:mod:`pgp_testkit.reference`: ../shared when present, else the copy).

Rows: :func:`fill` writes :data:`ROWS` rows into every table, generated from the catalog
(``pg_attribute`` / ``pg_constraint``). Row ``r`` of every table takes the ``r``-th edge value
of each column's type (:func:`edge_value`):

- integers: the type's max, its min, 0 (NULL when the column is nullable), 1, 2 -- so the
  allow-list filters (ids 1, 2, 3, 4 / 1, 2, 4 in transform/seeds) keep rows 3 and 4 and drop
  the others, and every key column is unique;
- text: quotes, CSV and COPY specials, newlines, tabs, backslashes, é 😀, the empty string,
  the string ``NULL``, a 4-byte-character string exactly as long as a ``varchar(n)`` allows
  (8,000 characters when unbounded), and (rotating over the columns) what a CSV reader could
  take for NULL, a number or a boolean, a BOM, combining and zero-width characters; a column
  named ``path`` holds an allow-listed path in row 3 (``routes_internal_only`` filters on it);
- timestamps (with and without time zone), dates: 0001-01-01, 9999-12-31 23:59:59.999999,
  NULL / the epoch, a leap day / a fraction / the Julian gap with offsets from -12:00 to
  +14:00, and in row 4 one value outside years 1-9999 (``infinity``, ``-infinity``, BC, year
  10000+, offsets that leave the range), rotating over the columns;
- double precision: 1e308, -0.0, NULL / 5e-324, a rotating extreme, NaN / ±Infinity;
- numeric(18,4): ±99999999999999.9999, NaN (NULL when nullable), -0.0001, 0.0001 / 0 / a
  full-width value;
- boolean, uuid, jsonb (nested, escapes, big decimals, ``null``, ``[]``), bytea (empty, NUL,
  a sha), integer[] (empty, NULL items, the extremes, ``traversal_ids[1] = id``).

Key columns (the table's primary key and the manifests' ``export_table_primary_key``) are
never NULL. A type the generator does not know fails the test (``UnknownType``).

Expected rows: the manifest query rendered independently of the tap (:func:`oracle_sql`: the
time window ``<col> BETWEEN '{BEGIN_TIMESTAMP}' ... '{END_TIMESTAMP}'`` replaced by ``true``,
``additional_filtering`` appended after a space, the allow-list placeholders rendered from the
seed CSVs, ``%%`` -> ``%``), run in the source in the tap's session settings, each value as
Postgres prints it (``::text``). The test also checks it returns the same rows as the tap's
own ``QueryTemplate.full_sql``.

Comparison: every RAW value ``::text`` against the source's, through :func:`normalise` --
the only place where a documented conversion (tap-gitlab-postgres/README.md, "Types are
mapped" and "BATCH mode") is allowed to change a value's text.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgp_testkit.paths import ROOT
from pgp_testkit.pipeline import meltano_project

TAP = ROOT / ".venv" / "bin" / "tap-gitlab-postgres"
TARGET = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
SEEDS = ROOT / "transform" / "seeds"
PROJECTS_CSV = SEEDS / "internal_gitlab_projects.csv"
NAMESPACES_CSV = SEEDS / "internal_gitlab_namespaces.csv"
SCHEMA_SQL = "gitlab_manifest_tables.sql"
# manifest file -> the meltano.yml extractor that runs it in dev (whose batch_config we use)
MANIFESTS = {
    "el_gitlab_dotcom_db_manifest.yaml": "tap-gitlab-postgres--main",
    "el_gitlab_dotcom_scd_db_manifest.yaml": "tap-gitlab-postgres--main-scd",
}
DATABASE_TYPES = ("main", "ci")  # every table of GitLab's two gitlab.com manifests is one
RAW_SCHEMA = "tap_postgres"
ROWS = 5
# Rows per primary-key chunk of a full sync: 5 rows -> 3 chunks, each its own batch file.
CHUNK_SIZE = 2
# The tap's session (tap_gitlab_postgres/client.py): the oracle runs in the same one, since
# e.g. pages_domains' CAST(verified_at AS VARCHAR) prints in the session's zone and style.
SESSION = {"TimeZone": "UTC", "DateStyle": "ISO", "IntervalStyle": "iso_8601"}
# The source database's own defaults are none of these: the tap must set its session.
SOURCE_DEFAULTS = {"TimeZone": "Asia/Kathmandu", "DateStyle": "SQL, DMY"}
# Columns RAW adds to the query's: the tap's and target-postgres' (add_record_metadata).
TAP_METADATA = ("_uploaded_at", "_task_instance")


# =============================================================================== catalog


@dataclass(frozen=True)
class SourceColumn:
    table: str
    name: str
    attnum: int
    typname: str  # pg_type.typname: int4, _int4, varchar, ...
    declared: str  # format_type(): "character varying(12)"
    not_null: bool
    generated: bool
    max_length: int | None  # varchar(n)
    in_primary_key: bool


class UnknownType(AssertionError):
    pass


def catalog(conn: psycopg.Connection) -> dict[str, list[SourceColumn]]:
    """Every column of every table of schema public, in table and column order."""
    rows = conn.execute(
        """
        SELECT c.relname, a.attnum, a.attname, t.typname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, a.attgenerated <> '',
               CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 0
                    THEN a.atttypmod - 4 END,
               coalesce(a.attnum = ANY (pk.conkey), false)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_constraint pk ON pk.conrelid = c.oid AND pk.contype = 'p'
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
        """
    ).fetchall()
    tables: dict[str, list[SourceColumn]] = {}
    for table, attnum, name, *rest in rows:
        tables.setdefault(table, []).append(SourceColumn(table, name, attnum, *rest))
    return tables


# =========================================================================== edge values

_INT_RANGE = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
}
_TRICKY = (
    "quote ' dq \" comma , semicolon ; pipe | nl \n crlf \r\n cr \r tab \t back \\ "
    "\\N \\. NULL é 😀 中文 end"
)
_TEXT = (_TRICKY, "", "NULL", None, None)  # rows 3 and 4: see edge_value
# Row 4 of each text column (rotating): what a CSV reader would take for NULL, a number or a
# boolean, invisible characters, lone specials.
_TEXT_ROW4 = (
    "\\.\n  padded  ",
    "NaN",
    "null",
    "N/A",
    "#N/A",
    "-nan",
    "NA",
    "00123",
    "1e5",
    "true",
    "\ufeffbom",
    "e\u0301 \u200b zero width",
    '"',
    "\\",
    "'",
    ",",
    "\r\n",
    " ",
    "\\N",
)
_LOW_TS, _HIGH_TS = "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"
# Row 3 of each timestamp / date column (rotating), timestamptz with an offset (rotating).
_TS_ROW3 = (
    "2024-02-29 23:30:00.000001",
    "2000-02-29 00:00:00.5",
    "1969-12-31 23:59:59.999999",
    "1582-10-10 12:00:00",  # in the Julian calendar's gap: proleptic Gregorian everywhere
)
_OFFSETS = ("-05:00", "+05:45", "+14:00", "-12:00", "+00:00")
_DATE_ROW3 = ("2024-02-29", "1969-12-31", "2000-01-01", "1582-10-10")
# Row 4 of each timestamp / date column: one value outside years 1-9999 (rotating).
_OUT_TS = (
    "infinity",
    "-infinity",
    "4714-11-24 00:00:00 BC",
    "10000-01-01 00:00:00",
    "294276-12-31 23:59:59.999999",
    "0001-12-31 23:59:59.999999 BC",
)
_OUT_TSTZ = (
    *_OUT_TS,
    "9999-12-31 23:59:59.999999-01:00",  # year 10000 in UTC
    "0001-01-01 00:00:00+01:00",  # 1 BC in UTC
)
_OUT_DATE = (
    "infinity",
    "-infinity",
    "4714-11-24 BC",
    "10000-01-01",
    "5874897-12-31",
    "0001-12-31 BC",
)
_FLOAT_ROW3 = ("-2.2250738585072014e-308", "0.30000000000000004", "1.7976931348623157e308")
_FLOAT_ROW4 = ("NaN", "Infinity", "-Infinity", "4.9406564584124654e-324")
_NUMERIC_ROW4 = ("0.0001", "0", "12345678901234.5678")
_JSONB = (
    '{"k": "quote \\" back \\\\ nl \\n tab \\t é 😀 \\u00e9 \\ud83d\\ude00", '
    '"big": 123456789012345678901234567890.123456789012345678901234567890, "tiny": 1e-30, '
    '"arr": [1, null, true, false, -0, 1.0], "nested": {"a": {}, "": ""}}',
    "[]",
    "null",
    '"😀"',
    "{}",
)
_BYTEA = (
    "\\x",
    "\\x00",
    "\\xdeadbeef",
    "\\x" + "0123456789abcdef" * 2 + "ff00ff00",
    "\\x5c2e0a2c22",
)
_UUID = (
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "123e4567-e89b-12d3-a456-426614174000",
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12}",
)


def edge_value(column: SourceColumn, row: int, serial: int, key: bool) -> str | None:
    """Postgres input text of ``column`` in row ``row`` (None: NULL). ``serial`` numbers the
    columns of the whole schema, rotating the row-4 extremes over them; ``key`` columns are
    never NULL."""
    nullable = not column.not_null and not key
    null_row = row == 2 and nullable
    t = column.typname
    if t in _INT_RANGE:
        low, high = _INT_RANGE[t]
        return None if null_row else str((high, low, 0, 1, 2)[row])
    if t == "_int4":
        ident = edge_value(replace_type(column, "int4"), row, serial, key=True)
        arrays = (
            f"{{{ident},2147483647,NULL,-2147483648}}",
            "{}",
            "{NULL}",
            f"{{{ident}}}",
            f"{{{ident},1,2}}",
        )
        return None if null_row else arrays[row]
    if t in ("text", "varchar"):
        if null_row:
            return None
        if row == 3:
            if column.name == "path":
                return allow_list_paths()[0]
            return "😀" * column.max_length if column.max_length else "é😀 " * 2667
        value = _TEXT_ROW4[serial % len(_TEXT_ROW4)] if row == 4 else _TEXT[row]
        assert value is not None
        return value[: column.max_length] if column.max_length else value
    if t == "bool":
        return None if null_row else ("true", "false", "true", "true", "false")[row]
    if t in ("timestamp", "timestamptz"):
        tz = t == "timestamptz"
        values = (
            _LOW_TS + ("+00" if tz else ""),
            _HIGH_TS + ("+00" if tz else ""),
            "1970-01-01 00:00:00" + ("+00" if tz else ""),
            _TS_ROW3[serial % 4] + (_OFFSETS[serial % 5] if tz else ""),
            (_OUT_TSTZ if tz else _OUT_TS)[serial % len(_OUT_TSTZ if tz else _OUT_TS)],
        )
        return None if null_row else values[row]
    if t == "date":
        values = (
            "0001-01-01",
            "9999-12-31",
            "1970-01-01",
            _DATE_ROW3[serial % 4],
            _OUT_DATE[serial % 6],
        )
        return None if null_row else values[row]
    if t == "float8":
        values = ("1e308", "-0.0", "5e-324", _FLOAT_ROW3[serial % 3], _FLOAT_ROW4[serial % 4])
        return None if null_row else values[row]
    if t == "numeric":
        assert column.declared == "numeric(18,4)", column
        values = (
            "99999999999999.9999",
            "-99999999999999.9999",
            "NaN",  # NULL when nullable
            "-0.0001",
            _NUMERIC_ROW4[serial % 3],
        )
        return None if null_row else values[row]
    if t == "jsonb":
        return None if null_row else _JSONB[row]
    if t == "bytea":
        return None if null_row else _BYTEA[row]
    if t == "uuid":
        return None if null_row else _UUID[row]
    raise UnknownType(
        f"{column.table}.{column.name}: no edge values for type {column.declared}; "
        "teach pgp_testkit.gitlab_schema's edge_value() about it"
    )


def replace_type(column: SourceColumn, typname: str) -> SourceColumn:
    return SourceColumn(
        column.table, column.name, column.attnum, typname, typname, True, False, None, False
    )


def fill(conn: psycopg.Connection, key_columns: dict[str, set[str]]) -> dict[str, int]:
    """:data:`ROWS` rows in every table; ``key_columns``: table -> columns that must be
    unique and never NULL besides its primary key. Returns table -> rows written."""
    written: dict[str, int] = {}
    serial = 0
    for table, columns in catalog(conn).items():
        insertable = [c for c in columns if not c.generated]
        keys = {c.name for c in columns if c.in_primary_key} | key_columns.get(table, set())
        rows = []
        for row in range(ROWS):
            values = []
            for i, column in enumerate(insertable):
                text = edge_value(column, row, serial + i, column.name in keys)
                values.append(
                    sql.SQL("NULL")
                    if text is None
                    else sql.SQL("{}::{}").format(sql.Literal(text), sql.SQL(column.declared))
                )
            rows.append(sql.SQL("({})").format(sql.SQL(", ").join(values)))
        serial += len(insertable)
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
                sql.Identifier(table),
                sql.SQL(", ").join(sql.Identifier(c.name) for c in insertable),
                sql.SQL(", ").join(rows),
            )
        )
        written[table] = ROWS
    return written


# ============================================================================ allow lists


def _csv_column(path: Path, column: str) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row[column].strip() for row in csv.DictReader(handle)]


def allow_list_paths() -> list[str]:
    return _csv_column(NAMESPACES_CSV, "namespace_path") + _csv_column(PROJECTS_CSV, "project_path")


def _sql_list(items: list[str]) -> str:
    return "(" + (", ".join(items) or "NULL") + ")"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def allow_list_sql() -> dict[str, str]:
    """The allow-list placeholders as SQL lists, read from the seed CSVs here (not by the
    tap's code): what pgp's tuples meant."""
    namespace_paths = _csv_column(NAMESPACES_CSV, "namespace_path")
    project_paths = _csv_column(PROJECTS_CSV, "project_path")
    return {
        "INTERNAL_PROJECT_IDS": _sql_list(_csv_column(PROJECTS_CSV, "project_id")),
        "INTERNAL_NAMESPACE_IDS": _sql_list(_csv_column(NAMESPACES_CSV, "namespace_id")),
        "INTERNAL_PROJECT_PATHS": _sql_list([_quoted(p) for p in project_paths]),
        "INTERNAL_NAMESPACE_PATHS": _sql_list([_quoted(p) for p in namespace_paths]),
        "INTERNAL_PATHS": _sql_list(
            [_quoted(p) for p in dict.fromkeys(namespace_paths + project_paths)]
        ),
    }


# ================================================================================ oracle

_WINDOW = re.compile(
    r"WHERE\s+(\w+)\s+BETWEEN\s+'\{BEGIN_TIMESTAMP\}'::timestamp\s+"
    r"AND\s+'\{END_TIMESTAMP\}'::timestamp",
    re.IGNORECASE,
)


def oracle_sql(import_query: str, additional_filtering: str | None) -> tuple[str, str | None]:
    """(the manifest query without its time window, rendered; the window's column)."""
    windows = _WINDOW.findall(import_query)
    assert len(windows) <= 1, import_query
    text = _WINDOW.sub("WHERE true", import_query)
    if additional_filtering:
        text = f"{text} {additional_filtering}"
    for name, value in allow_list_sql().items():
        text = text.replace("{" + name + "}", value)
    assert "{" not in text and "}" not in text, f"unrendered placeholder in {text}"
    return text.replace("%%", "%"), (windows[0] if windows else None)


@dataclass
class QueryResult:
    names: list[str]  # output names, each once (a repeated select item kept once)
    types: list[str]  # pg_type.typname of each
    rows: list[tuple[str | None, ...]]  # ::text of each value
    repeated: dict[str, int] = field(default_factory=dict)  # name -> extra occurrences


def run_as_text(conn: psycopg.Connection, query: str) -> QueryResult:
    """``query``'s rows, every value ``::text``, in the tap's session settings."""
    for name, value in SESSION.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    cur = conn.execute(f"SELECT * FROM (\n{query}\n) AS q LIMIT 0")  # type: ignore[arg-type]
    assert cur.description is not None
    names = [d.name for d in cur.description]
    oids = [d.type_code for d in cur.description]
    typnames: dict[int, str] = dict(
        conn.execute("SELECT oid::int, typname FROM pg_type WHERE oid = ANY(%s)", (oids,))
    )
    aliases = [f"c{i}" for i in range(len(names))]
    text_sql = "SELECT {} FROM (\n{}\n) AS q({})".format(
        ", ".join(f"{a}::text" for a in aliases), query, ", ".join(aliases)
    )
    rows = conn.execute(text_sql).fetchall()  # type: ignore[arg-type]
    # Normalisation (README "Failures"): an identical select item repeated (GitLab's
    # namespaces query selects traversal_ids twice) is loaded once. Identical: checked here.
    first: dict[str, int] = {}
    repeated: Counter[str] = Counter()
    for i, name in enumerate(names):
        if name in first:
            j = first[name]
            assert all(r[i] == r[j] for r in rows), f"select item {name} repeated, not identical"
            repeated[name] += 1
        else:
            first[name] = i
    keep = list(first.values())
    return QueryResult(
        [names[i] for i in keep],
        [typnames[oids[i]] for i in keep],
        [tuple(r[i] for i in keep) for r in rows],
        dict(repeated),
    )


# ========================================================================= normalisation

_LOW = datetime(1, 1, 1, tzinfo=UTC)
_HIGH = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_DT = re.compile(
    r"(?P<y>\d{4,})-(?P<mo>\d\d)-(?P<d>\d\d)"
    r"(?: (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:\.(?P<f>\d{1,6}))?"
    r"(?P<tz>[+-]\d\d(?::\d\d(?::\d\d)?)?)?)?(?P<bc> BC)?"
)


def _instant(text: str, *, source: bool) -> str:
    """A date / timestamp as Postgres prints it (ISO style), as a UTC instant; a naive
    timestamp is UTC. Source values outside years 1-9999 are brought to the nearest bound
    (README: "Dates and timestamps outside years 1-9999 ... arrive as the nearest bound")."""
    if text in ("infinity", "-infinity"):
        assert source, f"warehouse holds {text}"
        return _fmt(_HIGH if text == "infinity" else _LOW)
    m = _DT.fullmatch(text)
    assert m, f"not an ISO date/timestamp: {text!r}"
    year = int(m["y"])
    if m["bc"] or year > 9999:
        assert source, f"warehouse holds {text}"
        return _fmt(_LOW if m["bc"] else _HIGH)
    micros = int((m["f"] or "0").ljust(6, "0"))
    value = datetime(
        year, int(m["mo"]), int(m["d"]), int(m["h"] or 0), int(m["mi"] or 0),
        int(m["s"] or 0), micros, tzinfo=UTC,
    )  # fmt: skip
    if m["tz"]:
        sign = -1 if m["tz"][0] == "-" else 1
        parts = [int(p) for p in m["tz"][1:].split(":")] + [0, 0]
        offset = timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])
        try:
            value -= sign * offset
        except OverflowError:  # an offset takes it past year 1 or 9999
            assert source, f"warehouse holds {text}"
            return _fmt(_LOW if sign > 0 else _HIGH)
    return _fmt(value)


def _fmt(value: datetime) -> str:
    return f"{value.year:04d}-{value:%m-%d %H:%M:%S.%f}+00"


def _date(text: str, *, source: bool) -> str:
    if text in ("infinity", "-infinity") or text.endswith(" BC") or len(text.split("-")[0]) > 4:
        assert source, f"warehouse holds {text}"
        low = text == "-infinity" or text.endswith(" BC")
        return "0001-01-01" if low else "9999-12-31"
    return text


def _pg_array(text: str) -> list[Any]:
    """A one-dimensional integer array as Postgres prints it ('{1,NULL,2}')."""
    assert text.startswith("{") and text.endswith("}"), text
    inner = text[1:-1]
    return [None if x == "NULL" else int(x) for x in inner.split(",")] if inner else []


def normalise(
    typname: str, value: str | None, *, source: bool, hits: Counter[str] | None = None
) -> Any:
    """One value's text (source: the query's; warehouse: the RAW column's) in the form both
    sides must agree on. Each branch is a documented conversion of the tap (README):

    - float4/float8: NaN and ±Infinity -> NULL (JSON cannot carry them); otherwise the same
      IEEE double (RAW's NUMERIC has no signed zero, so -0.0 == 0.0);
    - numeric: NaN -> NULL; otherwise the exact decimal (scale ignored: 1.50 == 1.5);
    - timestamp (read as UTC) / timestamptz: the same UTC instant ("+00:00"), values outside
      years 1-9999 at the nearest bound; date likewise;
    - bytea: hex (Postgres prints ``\\x`` before it);
    - integer arrays: JSON arrays (RAW's column holds JSON);
    - everything else (integers, booleans, text, varchar, json/jsonb text, uuid, tsvector,
      ``NULL AS x``): the text itself, unchanged.
    """
    if value is None:
        return None
    hits = Counter() if hits is None else hits
    if typname in ("float4", "float8"):
        if source and value in ("NaN", "Infinity", "-Infinity"):
            hits[f"{typname} NaN/Infinity -> NULL"] += 1
            return None
        return float(Decimal(value))
    if typname == "numeric":
        if source and value == "NaN":
            hits["numeric NaN -> NULL"] += 1
            return None
        return Decimal(value)
    if typname in ("timestamp", "timestamptz", "date"):
        normal = (
            _date(value, source=source) if typname == "date" else _instant(value, source=source)
        )
        if source and _out_of_range(value):
            hits[f"{typname} outside years 1-9999 -> bound"] += 1
        return normal
    if typname == "bytea":
        if source:
            hits["bytea -> hex"] += 1
        return value.removeprefix("\\x")
    if typname.startswith("_"):
        # RAW holds the JSON array the tap sends in a Postgres array (bigint[] for int4[]).
        return _pg_array(value) if value.startswith("{") else json.loads(value)
    return value


def _out_of_range(text: str) -> bool:
    """A date / timestamp text (UTC session) outside years 1-9999."""
    return (
        text in ("infinity", "-infinity")
        or text.endswith(" BC")
        or bool(re.match(r"\d{5,}-", text))
    )


@dataclass
class Comparison:
    """What comparing one stream found."""

    stream: str
    rows: int = 0  # rows matched by key and compared
    values: int = 0  # values compared
    non_null: int = 0  # of which not NULL in the source
    problems: list[str] = field(default_factory=list)
    conversions: Counter[str] = field(default_factory=Counter)  # documented rule -> values


def diff_rows(
    stream: str,
    names: list[str],
    types: list[str],
    key: str,
    expected: list[tuple[str | None, ...]],
    raw: list[tuple[str | None, ...]],
) -> Comparison:
    """Compare the source query's rows (``expected``) with RAW's (``raw``, same columns),
    matched by the query's primary key ``key``, value by value through :func:`normalise`."""
    result = Comparison(stream)
    k = names.index(key)

    def keyed(rows: list[tuple[str | None, ...]], source: bool) -> dict[Any, tuple]:
        out: dict[Any, tuple] = {}
        where = "the source query" if source else "RAW"
        for row in rows:
            value = normalise(types[k], row[k], source=source)
            if value is None:
                result.problems.append(f"{stream}: a row of {where} has {key} NULL: {row}")
            elif value in out:
                result.problems.append(f"{stream}: {key}={row[k]!r} twice in {where}")
            out[value] = row
        return out

    want, got = keyed(expected, True), keyed(raw, False)
    for value in sorted(want.keys() - got.keys(), key=str):
        result.problems.append(f"{stream}: row {key}={value!r} missing from RAW")
    for value in sorted(got.keys() - want.keys(), key=str):
        result.problems.append(f"{stream}: row {key}={value!r} in RAW, not in the source query")
    for value in want.keys() & got.keys():
        result.rows += 1
        for name, typname, source, loaded in zip(
            names, types, want[value], got[value], strict=True
        ):
            hits: Counter[str] = Counter()
            try:
                same = normalise(typname, source, source=True, hits=hits) == normalise(
                    typname, loaded, source=False
                )
            except (AssertionError, ArithmeticError, ValueError) as exc:
                same, hits = False, Counter({f"unreadable: {exc}": 1})
            result.values += 1
            if not same:
                result.problems.append(
                    f"{stream}.{name} ({typname}) {key}={value!r}: "
                    f"source {source!r} -> RAW {loaded!r}"
                )
                continue
            result.non_null += source is not None
            result.conversions.update(hits)
            if source != loaded:
                result.conversions[f"{typname}: other text, same value"] += 1
    return result


# ========================================================================== the pipeline


def _named(items: list[dict], name: str) -> dict:
    (found,) = [i for i in items if i["name"] == name]
    return found


def _inherited_config(plugins: list[dict], name: str) -> dict:
    """A plugin's config over its inherit_from chain's, as Meltano resolves it."""
    plugin = _named(plugins, name)
    parent = plugin.get("inherit_from")
    own = plugin.get("config") or {}
    return {**_inherited_config(plugins, parent), **own} if parent else dict(own)


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$MELTANO_PROJECT_ROOT", str(ROOT))
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


@dataclass
class DevConfig:
    """The dev environment's configs from meltano.yml, pointed at the test's databases."""

    # extractor -> its config, without manifest_path and database_type (set per run) and
    # with batch_config.storage.root still meltano.yml's (each run sets its own folder)
    tap: dict[str, dict]
    target: dict

    @classmethod
    def load(cls, pg: Any, source_db: str, warehouse_db: str) -> DevConfig:
        project = meltano_project()
        dev = _named(project["environments"], "dev")["config"]["plugins"]
        taps = {}
        for extractor in MANIFESTS.values():
            config = _expand(_inherited_config(project["plugins"]["extractors"], extractor))
            config["batch_config"] = _expand(
                _named(dev["extractors"], extractor)["config"]["batch_config"]
            )
            # GitLab's connection file form (connection_info_path) names env variables per
            # database type; the project's file has only `main`. Settings win over it
            # (README "Settings"), so the test passes the connection as settings.
            config.pop("connection_info_path")
            config.pop("manifest_path")
            config.pop("database_type")
            config.update(
                host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                database=source_db, chunk_size=CHUNK_SIZE,
            )  # fmt: skip
            taps[extractor] = config
        target = dict(_named(project["plugins"]["loaders"], "target-postgres")["config"])
        dev_target = _named(dev["loaders"], "target-postgres")["config"]
        assert set(dev_target) == {"host", "port", "user", "password", "database"}, dev_target
        target.update(
            host=pg.host, port=pg.port, user=pg.user, password=pg.password, database=warehouse_db
        )
        return cls(taps, target)


@dataclass
class Run:
    name: str
    tap_rc: int
    target_rc: int
    tap_log: str
    target_log: str
    seconds: float


def write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config, indent=1))
    path.chmod(0o600)
    return path


def start_pipeline(name: str, tap_config: Path, target_config: Path, logs: Path):
    """``tap --config ... | target-postgres --config ...`` in the background."""
    tap_err = (logs / f"{name}.tap.log").open("w")
    target_out = (logs / f"{name}.target.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_"))}
    tap = subprocess.Popen(
        [str(TAP), "--config", str(tap_config)],
        stdout=subprocess.PIPE, stderr=tap_err, stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
    )  # fmt: skip
    target = subprocess.Popen(
        [str(TARGET), "--config", str(target_config)],
        stdin=tap.stdout, stdout=target_out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )  # fmt: skip
    assert tap.stdout is not None
    tap.stdout.close()  # the target holds the pipe now: the tap sees it close if it dies
    return name, tap, target, tap_err, target_out, time.monotonic()


def finish_pipeline(started, timeout: float = 600) -> Run:
    name, tap, target, tap_err, target_out, began = started
    try:
        target_rc = target.wait(timeout=timeout)
        tap_rc = tap.wait(timeout=60)
    finally:
        for proc in (tap, target):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        tap_err.close()
        target_out.close()
    return Run(
        name,
        tap_rc,
        target_rc,
        Path(tap_err.name).read_text(),
        Path(target_out.name).read_text(),
        time.monotonic() - began,
    )
