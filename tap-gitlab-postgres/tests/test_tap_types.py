"""Every Postgres type the manifests use, through the real tap, value by value."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
from pgp_testkit.dsn import connection_config
from pgp_testkit.tap import run_tap, write_manifest

COLUMNS = """
    id, small, big, price, ratio, flag, title, code, created_at, created_tz, due, starts,
    spent, prefs, settings, tags, scores, stamps, uuid, ip, sha, state, nothing, NULL AS masked
"""


def test_type_round_trip(tmp_path: Path, fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TYPE issue_state AS ENUM ('opened', 'closed');
            CREATE DOMAIN short_code AS varchar(8);
            CREATE TABLE things (
                id bigint PRIMARY KEY, small smallint, big bigint, price numeric(30, 10),
                ratio double precision, flag boolean, title text, code short_code,
                created_at timestamp without time zone, created_tz timestamp with time zone,
                due date, starts time, spent interval, prefs jsonb, settings json,
                tags text[], scores int[], stamps timestamp[], uuid uuid, ip inet, sha bytea,
                state issue_state, nothing text
            );
            INSERT INTO things VALUES (
                1, -32768, 9223372036854775807, 12345678901234567890.0123456789,
                0.1, true, E'quote " comma , newline \\n tab \\t back \\\\ emoji \U0001f600',
                'abc', '2024-02-29 23:59:59.123456', '2024-03-01 01:02:03+02', '2024-02-29',
                '13:14:15', '1 day 2 hours 3 minutes', '{"a": [1, 2.50, null]}', '{"b": true}',
                ARRAY['x', 'y"z', NULL], ARRAY[1, NULL, 3], ARRAY['2024-01-01 00:00:00'::timestamp],
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.1.2.3', '\\xdeadbeef', 'closed', NULL
            );
            INSERT INTO things (id, price, ratio) VALUES (2, 'NaN', 'Infinity');
            """
        )
    manifest = write_manifest(
        tmp_path,
        {"things": {"export_table": "things", "import_query": f"SELECT {COLUMNS} FROM things"}},
    )
    run = run_tap(tmp_path, {**connection_config(fresh_db), "manifest_path": str(manifest)})
    [schema_message] = run.of_type("SCHEMA", "gitlab_db_things")
    props = schema_message["schema"]["properties"]
    assert schema_message["key_properties"] == ["id"]
    assert props["small"]["type"] == ["integer", "null"]
    # numeric(30, 10): its exact digits as singer-sdk's decimal string, DECIMAL(30, 10) in SQL.
    assert props["price"] == {
        "type": ["string", "null"], "format": "x-singer.decimal", "precision": 30, "scale": 10
    }
    assert props["flag"]["type"] == ["boolean", "null"]
    assert props["created_at"]["format"] == "date-time"
    assert props["created_tz"]["format"] == "date-time"
    assert props["due"]["format"] == "date"
    assert props["starts"]["format"] == "time"
    assert props["uuid"]["format"] == "uuid"
    assert props["tags"] == {"type": ["array", "null"], "items": {"type": ["string", "null"]}}
    assert props["scores"]["items"]["type"] == ["integer", "null"]
    assert props["code"]["type"] == ["string", "null"]  # domain resolved to varchar
    assert props["masked"]["type"] == ["string", "null"]
    assert props["_uploaded_at"]["type"] == ["number", "null"]

    first, second = sorted(run.records["gitlab_db_things"], key=lambda r: r["id"])
    assert first["small"] == -32768
    assert first["big"] == 9223372036854775807
    assert first["price"] == "12345678901234567890.0123456789"
    assert first["ratio"] == Decimal("0.1")
    assert first["flag"] is True
    assert first["title"] == 'quote " comma , newline \n tab \t back \\ emoji \U0001f600'
    assert first["code"] == "abc"
    assert first["created_at"] == "2024-02-29T23:59:59.123456+00:00"
    assert first["created_tz"] == "2024-02-29T23:02:03+00:00"
    assert first["due"] == "2024-02-29"
    assert first["starts"] == "13:14:15"
    assert first["spent"] == "P1DT2H3M"
    assert first["prefs"] == '{"a": [1, 2.50, null]}'
    assert first["settings"] == '{"b": true}'
    assert first["tags"] == ["x", 'y"z', None]
    assert first["scores"] == [1, None, 3]
    assert first["stamps"] == ["2024-01-01 00:00:00"]
    assert first["uuid"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert first["ip"] == "10.1.2.3"
    assert first["sha"] == "deadbeef"
    assert first["state"] == "closed"
    assert first["nothing"] is None and first["masked"] is None
    # NaN and infinities have no JSON form: they arrive as NULL instead of breaking targets.
    assert second["price"] is None and second["ratio"] is None
