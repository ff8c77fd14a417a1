"""Edge values through the real tap AND MeltanoLabs target-postgres into a warehouse.

GitLab's data holds timestamps Python cannot (year 10000, 'infinity'; BC is possible in
Postgres too) and a SQL_ASCII database can hold text that is not UTF-8. The documented
policy (tap README, schema.py, client.ValueChecks):

- dates/timestamps outside years 1..9999 are loaded as the nearest bound
  (0001-01-01T00:00:00+00:00 / 9999-12-31T23:59:59.999999+00:00, dates 0001-01-01 /
  9999-12-31), year 0001 itself unchanged; one warning per column with the count;
- invalid UTF-8 bytes become U+FFFD, the rest of the value and the row are kept; one
  warning per column with the count;
- NaN / ±Infinity in numeric and float columns arrive as NULL.

The target is the project's installed target-postgres with the loader config of
meltano.yml (append-only, record metadata, hard delete), fed the tap's stdout.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml
from pgp_testkit.dsn import connection_config
from pgp_testkit.tap import TAP, TapRun, run_tap, write_json, write_manifest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / ".meltano/loaders/target-postgres/venv/bin/target-postgres"
STREAM = "gitlab_db_things"
HIGH_TS = "9999-12-31T23:59:59.999999+00:00"
LOW_TS = "0001-01-01T00:00:00+00:00"

# id -> (title, created_at, due, closed_tz, price, ratio) as inserted (SQL literals).
SOURCE_ROWS = {
    1: ("'plain'", "'0001-01-01 00:00:00'", "'0001-01-01'", "'0001-01-01 00:00:00+00'",
        "1.5", "0.5"),
    2: ("'caf' || convert_from('\\xe9'::bytea, 'SQL_ASCII') || ' au lait'",
        "'10000-01-01 00:00:00'", "'10000-01-01'", "'infinity'", "'NaN'", "'NaN'"),
    3: ("convert_from('\\xfffe'::bytea, 'SQL_ASCII') || 'x'", "'infinity'", "'infinity'",
        "'-infinity'", "2", "'Infinity'"),
    4: ("'caf\u00e9 is valid'", "'0044-03-15 BC'", "'0044-03-15 BC'", "'0044-03-15 12:00 BC'",
        "3", "'-Infinity'"),
    5: ("NULL", "'9999-12-31 23:59:59.999999'", "'9999-12-31'", "'2024-02-29 10:00:00+02'",
        "'12345678901234567890.0123456789'", "1e300"),
}  # fmt: skip
# What the tap documents for each row (and what the warehouse must hold).
EXPECTED = {
    1: ("plain", LOW_TS, "0001-01-01", LOW_TS, "1.5", Decimal("0.5")),
    2: ("caf\ufffd au lait", HIGH_TS, "9999-12-31", HIGH_TS, None, None),
    3: ("\ufffd\ufffdx", HIGH_TS, "9999-12-31", LOW_TS, "2", None),
    4: ("caf\u00e9 is valid", LOW_TS, "0001-01-01", LOW_TS, "3", None),
    5: (None, HIGH_TS, "9999-12-31", "2024-02-29T08:00:00+00:00",
        "12345678901234567890.0123456789", Decimal("1e300")),
}  # fmt: skip
COLUMNS = ("title", "created_at", "due", "closed_tz", "price", "ratio")


@pytest.fixture
def ascii_db(pg) -> str:
    """A SQL_ASCII source database (Postgres stores its text bytes unchecked)."""
    name = f"t_edge_ascii_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' TEMPLATE template0 "
            "LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    dsn = pg.dsn(name)
    values = ",\n".join(
        f"({key}, {', '.join(row)}, now() - interval '1 hour')" for key, row in SOURCE_ROWS.items()
    )
    with psycopg.connect(dsn, autocommit=True, client_encoding="utf8") as conn:
        conn.execute(
            "CREATE TABLE things (id bigint PRIMARY KEY, title text, created_at timestamp, "
            "due date, closed_tz timestamptz, price numeric, ratio float8, updated_at timestamp);"
            f"INSERT INTO things VALUES {values}"
        )
        # The source really holds invalid UTF-8 (and Postgres refuses to send it as UTF8).
        raw = conn.execute("SELECT convert_to(title, 'SQL_ASCII') FROM things WHERE id = 2")
        assert raw.fetchone()[0] == b"caf\xe9 au lait"
    return dsn


def _manifest(tmp_path: Path) -> Path:
    return write_manifest(
        tmp_path,
        {
            "things": {
                "export_table": "things",
                "import_query": "SELECT id, title, created_at, due, closed_tz, price, ratio, "
                "updated_at FROM things WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp "
                "AND '{END_TIMESTAMP}'::timestamp",
            }
        },
    )


def _target_config(pg, database: str) -> dict:
    """target-postgres' config exactly as meltano.yml sets it, on a test warehouse."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    [loader] = [p for p in project["plugins"]["loaders"] if p["name"] == "target-postgres"]
    return {
        **loader["config"],
        "host": pg.host,
        "port": pg.port,
        "user": pg.user,
        "password": pg.password,
        "database": database,
    }


def _record_tuple(record: dict) -> tuple:
    return tuple(record[c] for c in COLUMNS)


def test_edge_values_reach_the_warehouse_as_documented(tmp_path: Path, ascii_db: str, pg) -> None:
    config = {**connection_config(ascii_db), "manifest_path": str(_manifest(tmp_path))}
    stdout, run = _tap(tmp_path, config)
    records = {r["id"]: r for r in run.records[STREAM]}
    assert sorted(records) == sorted(SOURCE_ROWS)  # no row dropped
    for key, expected in EXPECTED.items():
        assert _record_tuple(records[key]) == expected, key

    # One warning per changed column, with the count, naming the source table and column.
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line]
    for column in ("created_at", "due", "closed_tz"):
        # Rows 2-4; row 5's 9999-12-31 23:59:59.999999 is in range: loaded as is, not counted.
        count = 3
        [line] = [w for w in warnings if f"column '{column}'" in w]
        assert (
            f"source table things, column '{column}': {count} value(s) outside years 1-9999" in line
        )
    [line] = [w for w in warnings if "UTF-8" in w]
    assert "source table things, column 'title': 2 value(s) not valid UTF-8" in line
    assert "U+FFFD" in line
    assert not [w for w in warnings if re.search(r"column '(id|price|ratio)'", w)]

    # The same through the SDK's own record path (fast_records: false).
    slow = run_tap(tmp_path, {**config, "fast_records": False})
    assert {r["id"]: _record_tuple(r) for r in slow.records[STREAM]} == EXPECTED
    assert slow.stderr.count("not valid UTF-8") == 1

    # Through MeltanoLabs target-postgres, configured as in meltano.yml.
    assert TARGET.exists(), "target-postgres is not installed: run scripts/bootstrap"
    warehouse = f"t_edge_wh_{uuid.uuid4().hex[:8]}"
    pg.create_database(warehouse)
    tap_out = tmp_path / "tap.jsonl"
    tap_out.write_text(stdout)
    target = _target_config(pg, warehouse)
    with tap_out.open() as stdin:
        loaded = subprocess.run(
            [str(TARGET), "--config", str(write_json(tmp_path / "target.json", target))],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    with psycopg.connect(pg.dsn(warehouse), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        rows = conn.execute(
            "SELECT id, title, created_at, due, closed_tz, price, ratio "
            f"FROM tap_postgres.{STREAM} ORDER BY id"
        ).fetchall()
    warehouse_rows = {
        r[0]: (
            r[1],
            _utc(r[2]),
            r[3] and r[3].isoformat(),
            _utc(r[4]),
            r[5],
            r[6],
        )
        for r in rows
    }
    # An unconstrained numeric travels and lands as its exact text (no decimal type of
    # every warehouse holds it); floats load as NUMERIC (Decimal here).
    assert warehouse_rows == EXPECTED


def _utc(value) -> str | None:
    """A naive warehouse timestamp (target-postgres stores UTC) in the tap's JSON form."""
    return None if value is None else value.isoformat() + "+00:00"


def _tap(tmp_path: Path, config: dict) -> tuple[str, TapRun]:
    """The tap's raw stdout (for the target) and its parsed run."""
    proc = subprocess.run(
        [TAP, "--config", str(write_json(tmp_path / "config.json", config))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    messages = [json.loads(line, parse_float=Decimal) for line in proc.stdout.splitlines()]
    return proc.stdout, TapRun(proc.returncode, messages, proc.stderr)
