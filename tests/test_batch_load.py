"""BATCH mode into the local warehouse target: the tap's batch files load, and a resync
through them still leaves exactly one fresh copy (the version travels inside the files)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from demo_source import create
from pipeline_support import MANIFESTS, ROOT

TAP = ROOT / ".venv" / "bin" / "tap-gitlab-postgres"
TARGET = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"


def connection(dsn: str) -> dict:
    url = urlsplit(dsn)
    return {
        "host": url.hostname,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.path.lstrip("/"),
    }


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


def test_batch_files_load_and_resync_to_one_fresh_copy(tmp_path: Path, pg, fresh_db: str) -> None:
    counts = create(fresh_db, rows=3000)
    warehouse = pg.create_database(f"wh_{urlsplit(fresh_db).path.lstrip('/')}"[:60])
    tap = {
        **connection(fresh_db),
        "manifest_path": str(MANIFESTS / "gitlab_demo_db_manifest.yaml"),
        "chunk_size": 500,
        "batch_config": {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": (tmp_path / "batches").as_uri(), "prefix": "pgp-"},
            "batch_size": 400,
        },
    }
    target = {
        **connection(warehouse),
        "default_target_schema": "tap_postgres",
        "add_record_metadata": True,
        "hard_delete": True,
        "activate_version": True,
        "process_activate_version_messages": True,
        "stream_maps": {"*": {"__key_properties__": []}},
    }
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
