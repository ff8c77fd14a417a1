"""Edge values of every numeric type (and a few others), and how to compare a warehouse
copy with the source value by value. Used by tests/test_exact_values.py.

Every column declares how its values compare, so a warehouse's own representation (NUMERIC
text, a DOUBLE, a VARCHAR holding a decimal) is read back into the source's value space:

- ``decimal``: exact decimal equality (``Decimal``), scale ignored (``1.50 == 1.5``);
- ``int``: exact integer equality;
- ``float8`` / ``float4``: the same IEEE double / single. ``-0.0`` equals ``0.0`` here:
  Postgres' NUMERIC, which target-postgres creates for JSON numbers, has no signed zero;
- ``text``: the same string.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

TABLE = "edge_values"
STREAM = f"gitlab_db_{TABLE}"

# column -> (Postgres type, comparison)
COLUMNS: dict[str, tuple[str, str]] = {
    "n18_4": ("numeric(18,4)", "decimal"),
    "n_free": ("numeric", "decimal"),
    "n38": ("numeric(38,0)", "decimal"),
    "n38_10": ("numeric(38,10)", "decimal"),
    "i8": ("bigint", "int"),
    "i4": ("integer", "int"),
    "i2": ("smallint", "int"),
    "f8": ("double precision", "float8"),
    "f4": ("real", "float4"),
    "label": ("text", "text"),
}

NINES_38 = "9" * 38
# id -> SQL literal per column (None: NULL), in COLUMNS order.
ROWS: dict[int, tuple[str | None, ...]] = {
    1: ("99999999999999.9999", "99999999999999.9999", NINES_38, "9" * 28 + "." + "9" * 10,
        "9223372036854775807", "2147483647", "32767", "1e308", "3.4028235e38",
        "'plain'"),
    2: ("-99999999999999.9999", "-99999999999999.9999", "-" + NINES_38,
        "-" + "9" * 28 + "." + "9" * 10, "-9223372036854775808", "-2147483648", "-32768",
        "'-0.0'", "'-3.4028235e38'", "'quote \" comma , newline \n tab \t back \\ é 😀'"),
    3: ("0.0001", "12345678901234567890.123456789012345678", "1", "0.0000000001", "0", "0",
        "0", "5e-324", "1.4e-45", "''"),
    4: ("-0.0001", "-0.00000000000000000000000000000000000001", "-1", "-0.0000000001", "1",
        "-1", "1", "1.7976931348623157e308", "1.17549435e-38", "'x'"),
    5: ("0", "0", "0", "0", "-1", "1", "-1", "-2.2250738585072014e-308", "-1.4e-45", "'y'"),
    6: (None, None, None, None, None, None, None, None, None, None),
}  # fmt: skip


def create_source(conn: Any) -> None:
    """The edge table in the (autocommit) source connection ``conn``."""
    columns = ", ".join(f"{name} {pg_type}" for name, (pg_type, _) in COLUMNS.items())
    conn.execute(
        f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, {columns}, "
        "updated_at timestamp NOT NULL DEFAULT now() - interval '1 hour')"
    )
    for key, row in ROWS.items():
        values = ", ".join("NULL" if v is None else v for v in row)
        conn.execute(f"INSERT INTO {TABLE} (id, {', '.join(COLUMNS)}) VALUES ({key}, {values})")


def write_manifest(path: Path) -> Path:
    """A pgp manifest holding the edge table as an incremental table."""
    query = (
        f"SELECT id, {', '.join(COLUMNS)}, updated_at FROM {TABLE} "
        "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp"
    )
    spec = {
        "database_type": "main",
        "export_schema": "gitlab_com",
        "export_table": TABLE,
        "export_table_primary_key": "id",
        "import_db": "GITLAB_DB",
        "import_query": query,
    }
    path.write_text(yaml.safe_dump({"tables": {TABLE: spec}}, sort_keys=False))
    return path


def source_rows(conn: Any) -> dict[int, dict[str, Any]]:
    """{id: {column: value as text}} of the source (Postgres' own text output)."""
    cols = ", ".join(f"{c}::text" for c in COLUMNS)
    return {
        r[0]: dict(zip(COLUMNS, r[1:], strict=True))
        for r in conn.execute(f"SELECT id, {cols} FROM {TABLE}").fetchall()
    }


def canonical(kind: str, value: Any) -> Any:
    """A value (text or a driver's type) in the comparison space of ``kind``."""
    if value is None:
        return None
    if kind == "decimal":
        return Decimal(str(value)).normalize()
    if kind == "int":
        return int(value)
    if kind == "float8":
        number = float(Decimal(str(value)))
        return 0.0 if number == 0 else number
    if kind == "float4":
        number = struct.unpack("f", struct.pack("f", float(Decimal(str(value)))))[0]
        return 0.0 if number == 0 else number
    return str(value)


def differences(
    source: dict[int, dict[str, Any]], warehouse: dict[int, dict[str, Any]]
) -> list[str]:
    """Every (row, column) whose warehouse value is not the source's, one line each."""
    problems = [f"row {k}: missing in the warehouse" for k in source.keys() - warehouse.keys()]
    problems += [f"row {k}: not in the source" for k in warehouse.keys() - source.keys()]
    for key in sorted(source.keys() & warehouse.keys()):
        for column, (_, kind) in COLUMNS.items():
            want = canonical(kind, source[key][column])
            got = canonical(kind, warehouse[key][column])
            same = want == got or (
                isinstance(want, float) and isinstance(got, float) and math.isnan(want)
                and math.isnan(got)
            )  # fmt: skip
            if not same:
                problems.append(
                    f"row {key} column {column}: source {source[key][column]!r}, "
                    f"warehouse {warehouse[key][column]!r}"
                )
    return problems
