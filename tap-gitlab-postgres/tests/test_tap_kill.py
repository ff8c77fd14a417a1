"""SIGKILL of the real tap process, and the source going away, in the middle of a run."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from pgp_testkit.dsn import connection_config
from pgp_testkit.tap import TAP, run_tap, write_json, write_manifest

pytestmark = pytest.mark.slow

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


@pytest.mark.parametrize(
    ("checkpoints_before_kill", "records_after"),
    [(0, 500), (5, 0), (5, 500)],
    ids=["before-first-checkpoint", "right-after-a-checkpoint", "mid-chunk"],
)
def test_killed_full_sync_resumes_without_missing_rows(
    tmp_path: Path, fresh_db: str, checkpoints_before_kill: int, records_after: int
) -> None:
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
    last_state: dict = {}
    checkpoints = records = 0
    for line in proc.stdout:
        message = json.loads(line)
        if message["type"] == "RECORD":
            seen_ids.add(message["record"]["id"])
            records += checkpoints == checkpoints_before_kill
        elif message["type"] == "STATE":
            last_state = message["value"]
            if last_state.get("bookmarks", {}).get(STREAM, {}).get("full_sync", {}).get("last_key"):
                checkpoints += 1
        if checkpoints == checkpoints_before_kill and records >= records_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(seen_ids) == checkpoints_before_kill * 1000 + records_after
    progress = last_state.get("bookmarks", {}).get(STREAM, {}).get("full_sync", {})
    resume_after = progress.get("last_key")
    assert resume_after == (checkpoints_before_kill * 1000 * 3 or None)

    resumed = run_tap(tmp_path, config, last_state)
    resumed_ids = set(resumed.ids(STREAM))
    # No chunk is read twice after its checkpoint; nothing before it is skipped.
    assert min(resumed_ids) == (resume_after or 0) + 3
    assert seen_ids | resumed_ids == {g * 3 for g in range(1, ROWS + 1)}
    activated = [m["version"] for m in resumed.of_type("ACTIVATE_VERSION", STREAM)]
    if resume_after:
        assert activated == [progress["version"]]  # the interrupted copy is the one finished
    else:
        assert len(activated) == 1
    assert "full_sync" not in resumed.bookmark(STREAM)


def interrupt_at_checkpoint(
    config: dict, tmp_path: Path, interrupt: Callable[[], None], at_key: int = 3000
) -> tuple[int, list[dict], str]:
    """Run the tap; when the notes' full sync checkpoints ``at_key``, call ``interrupt``.
    Returns (exit code, messages, stderr)."""
    proc = subprocess.Popen(
        [TAP, "--config", str(write_json(tmp_path / "config.json", config))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    messages = []
    interrupted = False
    for line in proc.stdout:
        messages.append(json.loads(line))
        progress = messages[-1].get("value", {}).get("bookmarks", {}).get(STREAM, {})
        if not interrupted and progress.get("full_sync", {}).get("last_key") == at_key:
            interrupt()
            interrupted = True
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert interrupted
    return proc.wait(), messages, stderr


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

    def drop_connection() -> None:
        # What a replica rebuild does to a running extract: the server drops it.
        with psycopg.connect(fresh_db, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'tap-gitlab-postgres'"
            )

    returncode, messages, stderr = interrupt_at_checkpoint(config, tmp_path, drop_connection)
    assert returncode == 1
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


def test_source_stopped_mid_run_fails_clearly_and_the_run_after_its_restart_catches_up(
    tmp_path: Path, cluster_root: Path
) -> None:
    # A cluster of its own: the replica rebuild stops the whole server, not one session.
    from pgp_testkit.localpg import LocalPostgres

    replica = LocalPostgres(cluster_root / "replica").start()
    try:
        dsn = replica.create_database("gitlab")
        create_notes(dsn, key_step=1)
        manifest = write_manifest(tmp_path, {"notes": dict(NOTES)})
        config = {**connection_config(dsn), "manifest_path": str(manifest), "chunk_size": 1000}
        returncode, messages, stderr = interrupt_at_checkpoint(
            config, tmp_path, lambda: replica.stop("immediate")
        )
        assert returncode == 1
        assert "gitlab_db_notes" in stderr and "error:" in stderr
        assert config["password"] not in stderr
        states = [m["value"] for m in messages if m["type"] == "STATE"]
        last_key = states[-1]["bookmarks"][STREAM]["full_sync"]["last_key"]
        assert last_key >= 3000
        seen = {m["record"]["id"] for m in messages if m["type"] == "RECORD"}
        assert set(range(1, last_key + 1)) <= seen  # the checkpoint vouches only for these

        # While the server is down, a run fails in one line and moves no bookmark.
        down = run_tap(tmp_path, config, states[-1], check=False)
        assert down.returncode != 0
        errors = [line for line in down.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and "cannot connect to Postgres" in errors[0]
        assert config["password"] not in down.stderr
        assert not down.records and not down.states  # Meltano keeps the stored state

        replica.start()
        rerun = run_tap(tmp_path, config, states[-1])
        assert min(rerun.ids(STREAM)) == last_key + 1
        assert seen | set(rerun.ids(STREAM)) == set(range(1, ROWS + 1))
        assert "full_sync" not in rerun.bookmark(STREAM)
    finally:
        replica.stop("immediate")
