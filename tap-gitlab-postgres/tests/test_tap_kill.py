"""SIGKILL of the real tap process in the middle of a full sync, then a resume."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import psycopg
from tap_runner import TAP, connection_config, run_tap, write_json
from test_tap_sync import write_manifest

ROWS = 20_000
STREAM = "gitlab_db_notes"


def test_killed_full_sync_resumes_without_missing_rows(tmp_path: Path, fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE notes (id bigint PRIMARY KEY, note text, updated_at timestamp);"
            # Gaps in the keys: chunks are by rows, not by key arithmetic.
            f"INSERT INTO notes SELECT g * 3, repeat('n', 50), now() "
            f"FROM generate_series(1, {ROWS}) g"
        )
    manifest = write_manifest(
        tmp_path,
        {
            "notes": {
                "export_table": "notes",
                "import_query": "SELECT id, note, updated_at FROM notes "
                "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp "
                "AND '{END_TIMESTAMP}'::timestamp",
            }
        },
    )
    config = {**connection_config(fresh_db), "manifest_path": str(manifest), "chunk_size": 1000}
    proc = subprocess.Popen(
        [TAP, "--config", str(write_json(tmp_path / "config.json", config))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    seen_ids: set[int] = set()
    last_state: dict | None = None
    checkpoints = 0
    for line in proc.stdout:
        message = json.loads(line)
        if message["type"] == "RECORD":
            seen_ids.add(message["record"]["id"])
        elif message["type"] == "STATE":
            last_state = message["value"]
            if last_state["bookmarks"].get(STREAM, {}).get("full_sync", {}).get("last_key"):
                checkpoints += 1
        if checkpoints == 5 and len(seen_ids) > 5 * 1000:
            # Killed after the 6th chunk started but before its checkpoint.
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert last_state is not None
    resume_after = last_state["bookmarks"][STREAM]["full_sync"]["last_key"]
    assert resume_after == 5000 * 3

    resumed = run_tap(tmp_path, config, last_state)
    resumed_ids = set(resumed.ids(STREAM))
    assert min(resumed_ids) == resume_after + 3  # no chunk is read twice after its checkpoint
    assert seen_ids | resumed_ids == {g * 3 for g in range(1, ROWS + 1)}
    version = last_state["bookmarks"][STREAM]["full_sync"]["version"]
    assert [m["version"] for m in resumed.of_type("ACTIVATE_VERSION", STREAM)] == [version]
    assert "full_sync" not in resumed.bookmark(STREAM)
