"""Hard deletes end to end: the deletes pass (job `el-main-deletes`), target-postgres, dbt.

The real `meltano` on this meltano.yml (see pipeline_support.Pipeline), one scenario shared
by the tests in file order:
  run 1  `el-main el-main-scd` + dbt: no key set was ever loaded, nothing is deleted
  run 2  rows deleted in the source (issues, notes, merge_requests, namespaces and the
         deletes_exempt milestones), then `el-main el-main-deletes` + dbt: the deleted rows
         are flagged in `*_dedupe_source` and gone from `*_source`, the rest untouched; the
         exempt table keeps its rows
  run 3  more issues deleted, a pass interrupted before its marker (the tap's output cut
         there, piped into target-postgres) + dbt: nothing changes
  run 4  a complete pass + dbt: the run-3 deletions are flagged; older key sets retired
  run 5  an issue created after the pass, `el-main` + dbt: present, not judged
Then RAW is copied into fakesnow and the Snowflake SQL must flag the same rows.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime

import demo_source
import pytest
from pgp_testkit.dbt import (
    dbt_snowflake,
    fakesnow_python,
    fakesnow_server,
    load_fakesnow,
    query_fakesnow,
)
from pgp_testkit.pipeline import MAIN, MELTANO, RAW_SCHEMA, ROOT, Pipeline, manifest_streams

pytestmark = pytest.mark.e2e

ROWS = 1500
DELETES = "tap-gitlab-postgres--main-deletes"
ANALYTICS = "analytics"
# tables with a deletes pass (no deletes_exempt in the demo manifest) -> first deletions
PASS_TABLES = {"issues": 5, "notes": 4, "merge_requests": 3, "namespaces": 2}
EXEMPT = "milestones"


def _source_ids(pipe: Pipeline, table: str) -> list[int]:
    """Ids the manifest query returns from the source now (additional_filtering applied)."""
    (stream,) = [
        s for s in manifest_streams(MAIN, pipe.manifests[MAIN]) if s.name == f"gitlab_db_{table}"
    ]
    return pipe.source_keys(stream)


def _delete(pipe: Pipeline, table: str, count: int, offset: int = 0) -> list[int]:
    """Delete ``count`` ids from the middle of ``table``; returns them."""
    with pipe.connect(pipe.source_db) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM {table} ORDER BY id OFFSET %s LIMIT %s",  # type: ignore[arg-type]
                (len(pipe.source_table_keys(table)) // 2 + offset, count),
            )
        ]
        conn.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (ids,))  # type: ignore[arg-type]
    return ids


def _model(pipe: Pipeline, sql: str, params: tuple = ()) -> list[tuple]:
    with pipe.connect(pipe.warehouse_db) as conn:
        conn.execute(f"SET search_path = {ANALYTICS}, {RAW_SCHEMA}")  # type: ignore[arg-type]
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def _flags(pipe: Pipeline, table: str) -> dict[int, tuple]:
    """{id: (pgp_is_deleted, pgp_is_deleted_updated_at)} of the dedupe source model."""
    rows = _model(
        pipe,
        "SELECT id, pgp_is_deleted, pgp_is_deleted_updated_at"
        f" FROM gitlab_dotcom_{table}_dedupe_source",
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def _deleted(pipe: Pipeline, table: str) -> list[int]:
    return sorted(k for k, (deleted, _) in _flags(pipe, table).items() if deleted)


def _staged(pipe: Pipeline, table: str) -> dict[int, tuple]:
    """The staging model consumers use, by id, without its uploaded_at."""
    entity = {"issues": "issue", "notes": "note", "merge_requests": "merge_request"}
    key = f"{entity.get(table, table.rstrip('s'))}_id"
    with pipe.connect(pipe.warehouse_db) as conn:
        cur = conn.execute(f"SELECT * FROM {ANALYTICS}.gitlab_dotcom_{table}_source")  # type: ignore[arg-type]
        names = [d.name for d in cur.description]
        return {
            row[names.index(key)]: tuple(
                v for n, v in zip(names, row, strict=True) if n != "uploaded_at"
            )
            for row in cur.fetchall()
        }


def _passes(pipe: Pipeline, table: str) -> list[tuple]:
    """(version, keys, marker count, _uploaded_at) of every key set in RAW <table>_pks."""
    return _model(
        pipe,
        f"SELECT _sdc_table_version, count(id), max(_pgp_key_count), max(_uploaded_at)"
        f" FROM {RAW_SCHEMA}.gitlab_db_{table}_pks GROUP BY 1 ORDER BY 1",
    )


def _invoke(pipe: Pipeline, plugin: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [str(MELTANO), "--env-file", str(pipe.env_file), "invoke", plugin],
        cwd=ROOT,
        env=pipe.env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# ============================================================================ the runs


@pytest.fixture(scope="module")
def run1(pg, tmp_path_factory):
    if not MELTANO.exists():
        pytest.fail("meltano is not installed in .venv: run scripts/bootstrap (make test does)")
    source, warehouse = (f"deletes_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("src", "wh"))
    pg.create_database(source)
    pg.create_database(warehouse)
    pipe = Pipeline(pg, tmp_path_factory.mktemp("deletes"), source, warehouse)
    demo_source.create(pg.dsn(source), rows=ROWS)
    pipe.run("el-main", "el-main-scd", "dbt-postgres:seed", "dbt-postgres:run")
    pipe.staged1 = {t: _staged(pipe, t) for t in [*PASS_TABLES, EXEMPT]}
    return pipe


@pytest.fixture(scope="module")
def run2(run1):
    pipe = run1
    pipe.deleted2 = {t: _delete(pipe, t, n) for t, n in {**PASS_TABLES, EXEMPT: 3}.items()}
    pipe.run("el-main", "el-main-deletes", "dbt-postgres:run")
    return pipe


@pytest.fixture(scope="module")
def run3(run2):
    pipe = run2
    pipe.deleted3 = _delete(pipe, "issues", 6, offset=50)
    # RECORD messages, so that the test can cut them anywhere.
    messages = pipe.record_mode_output(DELETES).splitlines()
    marker = next(
        i
        for i, line in enumerate(messages)
        if line.startswith("{")
        and (m := json.loads(line))["type"] == "RECORD"
        and m["stream"] == "gitlab_db_issues_pks"
        and m["record"]["id"] is None
    )
    # The tap "dies" just before the first marker: every issue key arrived, the end did not.
    pipe.cut_keys = sum(
        '"type":"RECORD","stream":"gitlab_db_issues_pks"' in m for m in messages[:marker]
    )
    _invoke(pipe, "target-postgres", "\n".join(messages[:marker]) + "\n")
    pipe.run("dbt-postgres:run")
    return pipe


@pytest.fixture(scope="module")
def run4(run3):
    pipe = run3
    pipe.run("el-main-deletes", "dbt-postgres:run")
    return pipe


@pytest.fixture(scope="module")
def run5(run4):
    pipe = run4
    with pipe.connect(pipe.source_db) as conn:
        conn.execute(
            "CREATE TEMP TABLE new_issue AS"
            " SELECT * FROM issues WHERE id = (SELECT min(id) FROM issues)"
        )
        conn.execute("UPDATE new_issue SET id = id + 1000000, updated_at = now()")
        (pipe.new_id,) = conn.execute(
            "INSERT INTO issues SELECT * FROM new_issue RETURNING id"
        ).fetchone()
    pipe.run("el-main", "dbt-postgres:run")
    return pipe


# ============================================================================ the tests


def test_without_any_key_set_nothing_is_deleted(run1):
    pipe = run1
    for table in PASS_TABLES:
        assert not pipe.raw_exists(f"gitlab_db_{table}_pks")
        flags = _flags(pipe, table)
        assert sorted(flags) == _source_ids(pipe, table)
        assert set(flags.values()) == {(False, None)}
        assert sorted(pipe.staged1[table]) == _source_ids(pipe, table)


def test_pass_flags_deleted_rows_and_staging_drops_them(run2):
    pipe = run2
    for table in PASS_TABLES:
        gone = sorted(pipe.deleted2[table])
        assert len(gone) == PASS_TABLES[table]
        # RAW: one complete key set = the source's keys now, plus its marker.
        ((_, keys, count, uploaded_at),) = _passes(pipe, table)
        assert keys == count == len(_source_ids(pipe, table))
        flags = _flags(pipe, table)
        assert _deleted(pipe, table) == gone, table
        # Every row was loaded before the pass, so the pass judged all of them.
        stamps = {stamp for _, stamp in flags.values()}
        assert len(stamps) == 1
        pass_time = datetime.fromtimestamp(float(uploaded_at), UTC).replace(tzinfo=None)
        assert abs((stamps.pop() - pass_time).total_seconds()) < 0.001
        # The staging model: the deleted rows are gone, every other row as it was.
        staged = _staged(pipe, table)
        assert sorted(staged) == _source_ids(pipe, table)
        assert staged == {k: v for k, v in pipe.staged1[table].items() if k not in gone}
    # deletes_exempt: no pass, no key set, the deleted rows stay.
    assert not pipe.raw_exists(f"gitlab_db_{EXEMPT}_pks")
    assert _staged(pipe, EXEMPT) == pipe.staged1[EXEMPT]
    assert set(pipe.deleted2[EXEMPT]) <= set(pipe.staged1[EXEMPT])
    # The deletes extractor keeps its own state: only the key-set streams.
    assert set(pipe.stored_state(DELETES)) == {f"gitlab_db_{t}_pks" for t in PASS_TABLES}
    assert not [s for s in pipe.stored_state(MAIN) if s.endswith("_pks")]


def test_interrupted_pass_marks_nothing(run3):
    pipe = run3
    assert pipe.cut_keys == len(_source_ids(pipe, "issues"))  # every key, but no marker
    passes = _passes(pipe, "issues")
    assert len(passes) == 2 and passes[1][2] is None  # the new set has no marker
    assert _deleted(pipe, "issues") == sorted(pipe.deleted2["issues"])
    staged = _staged(pipe, "issues")
    assert set(pipe.deleted3) <= set(staged)
    for table in PASS_TABLES:
        assert _deleted(pipe, table) == sorted(pipe.deleted2[table])


def test_next_complete_pass_flags_the_rest_and_retires_old_key_sets(run4):
    pipe = run4
    assert _deleted(pipe, "issues") == sorted(pipe.deleted2["issues"] + pipe.deleted3)
    assert sorted(_staged(pipe, "issues")) == _source_ids(pipe, "issues")
    for table in PASS_TABLES:
        # ACTIVATE_VERSION retired the older and the interrupted key sets.
        ((_, keys, count, _),) = _passes(pipe, table)
        assert keys == count == len(_source_ids(pipe, table))


def test_rows_loaded_after_the_last_pass_are_not_judged(run5):
    pipe = run5
    flags = _flags(pipe, "issues")
    assert flags[pipe.new_id] == (False, None)
    assert pipe.new_id in _staged(pipe, "issues")
    assert _deleted(pipe, "issues") == sorted(pipe.deleted2["issues"] + pipe.deleted3)


def test_snowflake_sql_flags_the_same_rows_on_fakesnow(run5):
    """The macro's Snowflake SQL, with key sets present, on RAW copied into fakesnow."""
    pipe = run5
    python = fakesnow_python()
    workdir = pipe.home / "dbt-snowflake"
    workdir.mkdir()
    with fakesnow_server(python, workdir / "fakesnow.log") as port:
        loaded = load_fakesnow(python, pipe.pg.dsn(pipe.warehouse_db), port, "RAW", ["PROD"])
        assert "RAW.TAP_POSTGRES.GITLAB_DB_ISSUES_PKS" in loaded
        dbt = dbt_snowflake(port, workdir, database="PROD", raw_database="RAW", schema="analytics")
        dbt("seed")
        dbt("run", "--select", "+gitlab_dotcom_issues_source", "+gitlab_dotcom_notes_source")
        issues, notes, stamps = query_fakesnow(
            python,
            port,
            "SELECT id FROM PROD.ANALYTICS.GITLAB_DOTCOM_ISSUES_DEDUPE_SOURCE"
            " WHERE pgp_is_deleted ORDER BY id",
            "SELECT id FROM PROD.ANALYTICS.GITLAB_DOTCOM_NOTES_DEDUPE_SOURCE"
            " WHERE pgp_is_deleted ORDER BY id",
            "SELECT COUNT(*), COUNT(pgp_is_deleted_updated_at), COUNT_IF(pgp_is_deleted),"
            " (SELECT COUNT(*) FROM PROD.ANALYTICS.GITLAB_DOTCOM_ISSUES_SOURCE)"
            " FROM PROD.ANALYTICS.GITLAB_DOTCOM_ISSUES_DEDUPE_SOURCE",
        )
    assert [r[0] for r in issues] == _deleted(pipe, "issues")
    assert [r[0] for r in notes] == _deleted(pipe, "notes")
    flags = _flags(pipe, "issues")
    judged = sum(1 for _, stamp in flags.values() if stamp is not None)
    deleted = len(_deleted(pipe, "issues"))
    assert stamps[0] == [len(flags), judged, deleted, len(flags) - deleted]
