"""BATCH mode into the local warehouse target: the tap's batch files (jsonl and parquet)
load, and a resync through them still leaves exactly one fresh copy (the version travels
inside the files); parquet files load the same values as RECORD messages."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from demo_source import create
from pgp_testkit.dsn import connection_config
from pgp_testkit.pipeline import MANIFESTS, ROOT, SEEDS

pytestmark = pytest.mark.e2e

TAP = ROOT / ".venv" / "bin" / "tap-gitlab-postgres"
TARGET = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"


def run(tmp_path: Path, tap: dict, target: dict, state: dict | None) -> dict:
    (tmp_path / "tap.json").write_text(json.dumps(tap))
    (tmp_path / "target.json").write_text(json.dumps(target))
    args = [str(TAP), "--config", str(tmp_path / "tap.json")]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        args += ["--state", str(tmp_path / "state.json")]
    assert TARGET.exists(), "target-postgres is not installed: run `make bootstrap`"
    tap_proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = subprocess.run(
        [str(TARGET), "--config", str(tmp_path / "target.json")],
        stdin=tap_proc.stdout,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert tap_proc.wait() == 0
    return json.loads(out.strip().splitlines()[-1])


def target_config(warehouse: str) -> dict:
    return {
        **connection_config(warehouse),
        "default_target_schema": "tap_postgres",
        "add_record_metadata": True,
        "hard_delete": True,
        "activate_version": True,
        "process_activate_version_messages": True,
        "stream_maps": {"*": {"__key_properties__": []}},
    }


def tap_config(source: str, tmp_path: Path, encoding: dict | None) -> dict:
    config = {
        **connection_config(source),
        "manifest_path": str(MANIFESTS / "gitlab_demo_db_manifest.yaml"),
        "internal_projects_csv": str(SEEDS / "internal_gitlab_projects.csv"),
        "internal_namespaces_csv": str(SEEDS / "internal_gitlab_namespaces.csv"),
        "chunk_size": 500,
    }
    if encoding is not None:
        config["batch_config"] = {
            "encoding": encoding,
            "storage": {"root": (tmp_path / "batches").as_uri(), "prefix": "pgp-"},
            "batch_size": 400,
        }
    return config


@pytest.mark.parametrize(
    "encoding", [{"format": "jsonl", "compression": "gzip"}, {"format": "parquet"}]
)
def test_batch_files_load_and_resync_to_one_fresh_copy(
    tmp_path: Path, pg, fresh_db: str, encoding: dict
) -> None:
    counts = create(fresh_db, rows=3000)
    warehouse = pg.create_database(f"wh_{urlsplit(fresh_db).path.lstrip('/')}"[:60])
    tap = tap_config(fresh_db, tmp_path, encoding)
    target = target_config(warehouse)
    state = run(tmp_path, tap, target, None)
    state["bookmarks"]["gitlab_db_issues"]["resync"] = True
    run(tmp_path, tap, target, state)
    with psycopg.connect(warehouse) as conn:
        rows, versions = conn.execute(
            "SELECT count(*), count(DISTINCT _sdc_table_version) FROM tap_postgres.gitlab_db_issues"
        ).fetchone()
        notes = conn.execute("SELECT count(*) FROM tap_postgres.gitlab_db_notes").fetchone()[0]
    assert (rows, versions) == (counts["issues"], 1)
    assert notes == counts["notes"]


def warehouse_rows(warehouse: str, table: str) -> tuple[list[str], list[tuple]]:
    """Every row of a RAW table without the per-run columns, as Postgres prints them."""
    with psycopg.connect(warehouse) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "'tap_postgres' AND table_name = %s AND column_name NOT LIKE '\\_%%' "
                "ORDER BY column_name",
                [table],
            )
        ]
        cols = ", ".join(f'"{n}"::text' for n in names)
        rows = conn.execute(f"SELECT {cols} FROM tap_postgres.{table}").fetchall()
    return names, sorted(rows, key=repr)


def test_parquet_loads_the_same_values_as_records(tmp_path: Path, pg, fresh_db: str) -> None:
    create(fresh_db, rows=1500)
    base = urlsplit(fresh_db).path.lstrip("/")
    by_records = pg.create_database(f"whr_{base}"[:60])
    by_parquet = pg.create_database(f"whp_{base}"[:60])
    (tmp_path / "r").mkdir()
    (tmp_path / "p").mkdir()
    run(tmp_path / "r", tap_config(fresh_db, tmp_path, None), target_config(by_records), None)
    parquet = tap_config(fresh_db, tmp_path, {"format": "parquet"})
    run(tmp_path / "p", parquet, target_config(by_parquet), None)
    with psycopg.connect(by_records) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'tap_postgres' AND table_name LIKE 'gitlab_db_%'"
            )
        ]
    assert len(tables) >= 10
    for table in tables:
        names, expected = warehouse_rows(by_records, table)
        assert expected, table
        assert warehouse_rows(by_parquet, table) == (names, expected), table
