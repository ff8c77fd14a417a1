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
NOTES = {
    "export_table": "notes",
    "import_query": "SELECT id, note, updated_at FROM notes "
    "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp",
}


def create_notes(dsn: str, key_step: int, extra_sql: str = "") -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE notes (id bigint PRIMARY KEY, note text, updated_at timestamp);"
            f"INSERT INTO notes SELECT g * {key_step}, repeat('n', 50), now() "
            f"FROM generate_series(1, {ROWS}) g;" + extra_sql
        )


def test_killed_full_sync_resumes_without_missing_rows(tmp_path: Path, fresh_db: str) -> None:
    create_notes(fresh_db, key_step=3)  # gaps in the keys: chunks are by rows, not key arithmetic
    manifest = write_manifest(tmp_path, {"notes": dict(NOTES)})
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


def test_dropped_source_connection_fails_the_stream_and_the_rerun_catches_up(
    tmp_path: Path, fresh_db: str
) -> None:
    create_notes(
        fresh_db,
        key_step=1,
        extra_sql="CREATE TABLE labels (id bigint PRIMARY KEY, title text);"
        "INSERT INTO labels SELECT g, 'l' FROM generate_series(1, 10) g",
    )
    manifest = write_manifest(
        tmp_path,
        {
            "notes": dict(NOTES),
            "labels": {"export_table": "labels", "import_query": "SELECT id, title FROM labels"},
        },
    )
    config = {**connection_config(fresh_db), "manifest_path": str(manifest), "chunk_size": 1000}
    proc = subprocess.Popen(
        [TAP, "--config", str(write_json(tmp_path / "config.json", config))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    messages = []
    terminated = False
    for line in proc.stdout:
        messages.append(json.loads(line))
        progress = messages[-1].get("value", {}).get("bookmarks", {}).get(STREAM, {})
        if not terminated and progress.get("full_sync", {}).get("last_key") == 3000:
            # What a replica rebuild does to a running extract: the server drops it.
            with psycopg.connect(fresh_db, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'tap-gitlab-postgres'"
                )
            terminated = True
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait() == 1
    assert terminated
    assert "gitlab_db_notes" in stderr and "error:" in stderr
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    last_key = states[-1]["bookmarks"][STREAM]["full_sync"]["last_key"]
    assert last_key >= 3000
    # The other stream reconnected and finished.
    assert "last_snapshot_at" in states[-1]["bookmarks"]["gitlab_db_labels"]
    seen = {m["record"]["id"] for m in messages if m.get("stream") == STREAM and "record" in m}

    rerun = run_tap(tmp_path, config, states[-1])
    assert min(rerun.ids(STREAM)) == last_key + 1
    assert seen | set(rerun.ids(STREAM)) == set(range(1, ROWS + 1))
