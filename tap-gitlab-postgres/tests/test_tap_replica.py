"""The tap against a real streaming replica: the replica-time guard and lag-aware windows.

A hot standby made by ``LocalPostgres.start_replica`` (pg_basebackup -R) replays what its primary
commits; ``pg_wal_replay_pause()`` freezes it, so rows committed on the primary stay invisible
on the replica exactly as they do on a lagging GitLab replica.

The module runs its own small primary rather than the session cluster: the replica time is the
commit time of the last transaction replayed, so foreign commits on the primary (autovacuum
after earlier test modules) must not move it, and pg_basebackup of a small cluster is quick.
Databases still get unique, fresh_db-style names, since every database of the primary
replicates physically to the replica.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from pgp_testkit.dsn import connection_config
from pgp_testkit.localpg import LocalPostgres, cluster_root
from pgp_testkit.tap import TapRun, run_tap, write_manifest

pytestmark = pytest.mark.slow

STREAM = "gitlab_db_issues"
ISSUES = (
    "SELECT id, title, updated_at FROM issues "
    "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp"
)
CREATE_ISSUES = """
CREATE TABLE issues (id bigint PRIMARY KEY, title text,
                     updated_at timestamp DEFAULT (now() AT TIME ZONE 'utc'))
"""
A_IDS = list(range(1, 21))  # on the replica before the first run
B_IDS = list(range(101, 106))  # committed while the replica's replay is paused
REPLAY_TIMEOUT = 30.0  # seconds for the replica to show what the primary committed
ERROR_PREFIX = "tap-gitlab-postgres: error: "


# --------------------------------------------------------------------------- clusters


@pytest.fixture(scope="module")
def cluster_dir() -> Iterator[Path]:
    with cluster_root("localpg-replica-") as root:
        yield root


@pytest.fixture(scope="module")
def primary(cluster_dir: Path) -> Iterator[LocalPostgres]:
    server = LocalPostgres(cluster_dir / "primary")
    try:
        yield server.start()
    finally:
        server.stop("immediate")


@contextlib.contextmanager
def running_replica(
    primary: LocalPostgres, datadir: Path, **settings: str
) -> Iterator[LocalPostgres]:
    """A replica of ``primary``, stopped and deleted afterwards whatever happened."""
    handle = LocalPostgres(datadir)  # stops a half-started replica too
    try:
        yield primary.start_replica(datadir, settings=settings)
    finally:
        try:
            handle.stop("immediate")
        finally:
            shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture(scope="module")
def replica(primary: LocalPostgres, cluster_dir: Path) -> Iterator[LocalPostgres]:
    with running_replica(primary, cluster_dir / "replica") as server:
        yield server


@pytest.fixture
def db(primary: LocalPostgres, request: pytest.FixtureRequest) -> str:
    """A new database on the primary (fresh_db-style name), with an empty issues table."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{slug}_{uuid.uuid4().hex[:8]}"
    execute(primary.create_database(name), CREATE_ISSUES)
    return name


# --------------------------------------------------------------------------- helpers


def execute(dsn: str, sql: str, params: object = None) -> None:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql, params)


def value(dsn: str, sql: str, params: object = None) -> object:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]


def insert_issues(dsn: str, ids: list[int], age: timedelta | None = None) -> None:
    """Rows stamped now (the column default), or ``age`` ago."""
    if age is None:
        execute(
            dsn, "INSERT INTO issues (id, title) SELECT i, 'issue ' || i FROM unnest(%s) i", [ids]
        )
    else:
        execute(
            dsn,
            "INSERT INTO issues (id, title, updated_at) "
            "SELECT i, 'issue ' || i, (now() AT TIME ZONE 'utc') - %s FROM unnest(%s) i",
            [age, ids],
        )


def wait_until(dsn: str, sql: str, expected: object, timeout: float = REPLAY_TIMEOUT) -> None:
    """Poll the replica until ``sql`` gives ``expected`` (the database may not exist yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got: object = value(dsn, sql)
        except psycopg.Error as exc:  # database or table not replayed yet
            got = exc
        if got == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"replica: {sql} gave {got!r}, not {expected!r}, after {timeout}s")
        time.sleep(0.05)


@contextlib.contextmanager
def replay_paused(replica: LocalPostgres) -> Iterator[None]:
    """Replay stopped (the WAL receiver keeps receiving); resumed on exit, even on failure."""
    execute(replica.dsn(), "SELECT pg_wal_replay_pause()")
    try:
        wait_until(replica.dsn(), "SELECT pg_get_wal_replay_pause_state()", "paused")
        yield
    finally:
        execute(replica.dsn(), "SELECT pg_wal_replay_resume()")


def replay_time(replica: LocalPostgres) -> datetime | None:
    stamp = value(replica.dsn(), "SELECT pg_last_xact_replay_timestamp()")
    assert stamp is None or isinstance(stamp, datetime)
    return stamp


def tap_config(tmp_path: Path, dsn: str, **settings: object) -> dict:
    # write_manifest's default export_schema is gitlab_com: lag-aware under the default `auto`.
    manifest = write_manifest(
        tmp_path, {"issues": {"export_table": "issues", "import_query": ISSUES}}
    )
    return {**connection_config(dsn), "manifest_path": str(manifest), **settings}


def assert_refused(run: TapRun, *phrases: str) -> str:
    """Exit 1 with one error line, and nothing on stdout a target could act on."""
    assert run.returncode == 1, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    for phrase in phrases:
        assert phrase in errors[0]
    assert not run.of_type("RECORD")
    assert not run.of_type("STATE")
    return errors[0]


def bookmark(state: dict) -> datetime:
    return datetime.fromisoformat(state["bookmarks"][STREAM]["replication_key_value"])


def final_state(run: TapRun, before: dict) -> dict:
    return run.state if run.states else before


def stamp(record: dict) -> datetime:
    return datetime.fromisoformat(record["updated_at"]).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- the guard


def test_null_replica_time_refuses_to_run(
    tmp_path: Path, primary: LocalPostgres, cluster_dir: Path, db: str
) -> None:
    """A replica that has replayed no transaction since it started has no replica time
    (pg_last_xact_replay_timestamp() is NULL): a lag-aware run refuses before reading anything.

    The table and its rows are in the base backup, so they are there without replaying
    anything. The new replica holds back commits for an hour (recovery_min_apply_delay) so
    that no later commit on the primary (autovacuum) can end the NULL state mid-test."""
    insert_issues(primary.dsn(db), A_IDS)
    with running_replica(
        primary, cluster_dir / "null-replica", recovery_min_apply_delay="'1h'"
    ) as fresh:
        assert value(fresh.dsn(db), "SELECT count(*) FROM issues") == len(A_IDS)
        assert replay_time(fresh) is None, "precondition: the new replica replayed a commit"
        config = tap_config(tmp_path, fresh.dsn(db))

        refused = run_tap(tmp_path, config, check=False)
        assert_refused(refused, "replica time is NULL", "max_replica_lag_hours")

        # Not a broken replica: without lag-aware windows the same source syncs.
        unguarded = run_tap(tmp_path, {**config, "replica_lag_windows": "off"})
        assert sorted(unguarded.ids(STREAM)) == A_IDS
        assert replay_time(fresh) is None


@pytest.mark.parametrize(
    "limit_hours",
    [
        0,
        0.0005,  # 1.8 s: a fractional limit (singer-sdk reads it as a Decimal)
    ],
)
def test_stale_replica_time_refuses_and_keeps_state(
    tmp_path: Path, primary: LocalPostgres, replica: LocalPostgres, db: str, limit_hours: float
) -> None:
    """Replay paused after some commits: once the replica time is older than
    max_replica_lag_hours the run refuses, and the state it was given stays as it was."""
    insert_issues(primary.dsn(db), A_IDS)
    wait_until(replica.dsn(db), "SELECT count(*) FROM issues", len(A_IDS))
    config = tap_config(tmp_path, replica.dsn(db))
    state = run_tap(tmp_path, config).state

    with replay_paused(replica):
        insert_issues(primary.dsn(db), B_IDS)  # commits the replica does not replay
        replayed = replay_time(replica)
        assert replayed is not None
        while datetime.now(UTC) - replayed < timedelta(hours=limit_hours, seconds=0.5):
            time.sleep(0.1)

        refused = run_tap(
            tmp_path, {**config, "max_replica_lag_hours": limit_hours}, state, check=False
        )
        line = assert_refused(refused, "replica time", "s old, over max_replica_lag_hours")
        assert replayed.astimezone(UTC).isoformat() in line
        assert not refused.messages, "nothing at all reaches the target"

        # The limit is what refused: within the default 12 hours the same replica runs,
        # and its window stops at the replica time (B is not visible and not passed; A
        # repeats within the lookback overlap).
        allowed = run_tap(tmp_path, config, state)
        assert sorted(allowed.ids(STREAM)) == A_IDS
        assert bookmark(final_state(allowed, state)) <= replayed


# --------------------------------------------------------------------------- lag-aware windows


@dataclass
class PauseResume:
    """Three runs against the replica: before, during and after a replay pause."""

    runs: list[TapRun]
    states: list[dict]  # the state after each run
    b_first_stamp: datetime  # the earliest updated_at of the rows committed during the pause
    old_ids: list[int]

    def ids(self, run: int) -> list[int]:
        return self.runs[run].ids(STREAM)

    @property
    def arrived(self) -> Counter[int]:
        return Counter(i for run in self.runs for i in run.ids(STREAM))


def pause_resume_runs(
    tmp_path: Path,
    primary: LocalPostgres,
    replica: LocalPostgres,
    db: str,
    old_ids: list[int] | None = None,
    **settings: object,
) -> PauseResume:
    """Rows A on the replica, full sync; pause replay, commit rows B on the primary, run;
    resume, wait for B on the replica, run again. ``old_ids`` of A are stamped 2 hours ago."""
    old_ids = old_ids or []
    source, mirror = primary.dsn(db), replica.dsn(db)
    insert_issues(source, [i for i in A_IDS if i not in old_ids])
    if old_ids:
        insert_issues(source, old_ids, age=timedelta(hours=2))
    wait_until(mirror, "SELECT count(*) FROM issues", len(A_IDS))
    config = tap_config(tmp_path, mirror, **settings)

    first = run_tap(tmp_path, config)
    states = [first.state]
    with replay_paused(replica):
        insert_issues(source, B_IDS)
        b_first = value(source, "SELECT min(updated_at) FROM issues WHERE id = ANY(%s)", [B_IDS])
        assert isinstance(b_first, datetime)
        second = run_tap(tmp_path, config, states[-1])
        states.append(final_state(second, states[-1]))
        # Still invisible on the replica after the run.
        assert value(mirror, "SELECT count(*) FROM issues WHERE id = ANY(%s)", [B_IDS]) == 0
    wait_until(mirror, "SELECT count(*) FROM issues", len(A_IDS) + len(B_IDS))
    third = run_tap(tmp_path, config, states[-1])
    states.append(final_state(third, states[-1]))
    return PauseResume([first, second, third], states, b_first.replace(tzinfo=UTC), old_ids)


def test_lag_aware_windows_wait_for_the_replica(
    tmp_path: Path, primary: LocalPostgres, replica: LocalPostgres, db: str
) -> None:
    """No lookback overlap to hide a loss: the window of the run during the pause ends at the
    replica time, before the unreplayed rows, so the run after the replay reads them."""
    s = pause_resume_runs(tmp_path, primary, replica, db, lookback_minutes=0)
    assert sorted(s.ids(0)) == A_IDS  # the full sync
    assert not set(s.ids(1)) & set(B_IDS)  # not visible during the pause
    assert bookmark(s.states[1]) <= s.b_first_stamp, "the bookmark passed unreplayed rows"
    assert sorted(set(s.ids(2)) & set(B_IDS)) == B_IDS
    assert sorted(s.arrived) == A_IDS + B_IDS  # no row skipped
    assert all(s.arrived[i] == 1 for i in B_IDS), s.arrived


def test_without_lag_aware_windows_the_same_runs_lose_rows(
    tmp_path: Path, primary: LocalPostgres, replica: LocalPostgres, db: str
) -> None:
    """The control: windows ending at "now" move the bookmark past rows the replica has not
    replayed, and nothing reads them later. This is the loss the test above must not show."""
    s = pause_resume_runs(
        tmp_path, primary, replica, db, lookback_minutes=0, replica_lag_windows="off"
    )
    assert sorted(s.ids(0)) == A_IDS
    assert bookmark(s.states[1]) > s.b_first_stamp
    assert not set(s.ids(1)) & set(B_IDS)
    assert not set(s.ids(2)) & set(B_IDS)
    assert sorted(s.arrived) == A_IDS  # B is lost


def test_lag_aware_windows_with_the_default_lookback(
    tmp_path: Path, primary: LocalPostgres, replica: LocalPostgres, db: str
) -> None:
    """The default 30 minute overlap: every row arrives; a row repeats only when its
    updated_at lies within the overlap before the previous bookmark."""
    old = A_IDS[:10]  # stamped 2 hours ago: before any overlap
    s = pause_resume_runs(tmp_path, primary, replica, db, old_ids=old)
    assert sorted(s.ids(0)) == A_IDS
    assert not set(s.ids(1)) & set(B_IDS)
    assert bookmark(s.states[1]) <= s.b_first_stamp
    assert sorted(s.arrived) == A_IDS + B_IDS
    assert all(s.arrived[i] == 1 for i in old + B_IDS), s.arrived
    lookback = timedelta(minutes=30)
    for run in (1, 2):
        begin = bookmark(s.states[run - 1]) - lookback
        for record in s.runs[run].records.get(STREAM, []):
            assert stamp(record) >= begin, (run, record)
