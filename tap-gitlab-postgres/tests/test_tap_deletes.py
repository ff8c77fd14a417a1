"""The deletes pass (`deletes_pass: true`): one `<stream>_pks` stream per incremental table
without `deletes_exempt`, carrying the table's current primary-key set, a marker record at
its end and ACTIVATE_VERSION; nothing for exempt or SCD tables or when the setting is off."""

from __future__ import annotations

import gzip
import json
import subprocess
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from pgp_testkit.dsn import connection_config
from pgp_testkit.tap import TAP, TapRun, run_tap, write_manifest

from tap_gitlab_postgres.allowlist import AllowLists
from tap_gitlab_postgres.query import QueryTemplate

WINDOW = "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp"
PKS = "gitlab_db_issues_pks"


def execute(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture
def config(tmp_path: Path, fresh_db: str) -> dict:
    execute(
        fresh_db,
        """
        CREATE TABLE issues (id bigint PRIMARY KEY, title text, project_id int,
                             updated_at timestamp);
        INSERT INTO issues SELECT g, 'issue ' || g, g % 3, now() - interval '1 day'
        FROM generate_series(1, 300) g;
        CREATE TABLE labels (id bigint PRIMARY KEY, updated_at timestamp);
        INSERT INTO labels SELECT g, now() FROM generate_series(1, 20) g;
        CREATE TABLE commits (diff_id bigint, ord int, sha text);
        INSERT INTO commits SELECT g / 4, g % 4, md5(g::text) FROM generate_series(0, 39) g;
        CREATE TABLE members (id bigint PRIMARY KEY, user_id int);
        INSERT INTO members SELECT g, g FROM generate_series(1, 10) g;
        -- raises for the key in guard_cfg: a pass that breaks off in the middle
        CREATE TABLE guard_cfg (fail_at bigint);
        INSERT INTO guard_cfg VALUES (NULL);
        CREATE FUNCTION guard(i bigint) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
          IF i = (SELECT fail_at FROM guard_cfg) THEN RAISE EXCEPTION 'guard hit %', i; END IF;
          RETURN true;
        END $$;
        """,
    )
    manifest = write_manifest(
        tmp_path,
        {
            "issues": {
                "export_table": "issues",
                # project 2 is filtered out: its rows are not part of the table's key set
                "import_query": f"SELECT id, title, updated_at FROM issues {WINDOW}",
                "additional_filtering": "AND project_id <> 2 AND guard(id)",
            },
            "labels": {
                "export_table": "labels",
                "deletes_exempt": True,
                "import_query": f"SELECT id, updated_at FROM labels {WINDOW}",
            },
            "merge_request_diff_commits": {
                "export_table": "merge_request_diff_commits",
                "incremental_type": "load_by_id",
                "export_table_primary_key": "diff_id",
                "import_query": "SELECT diff_id, ord, sha FROM commits",
            },
            "members": {"export_table": "members", "import_query": "SELECT * FROM members"},
        },
    )
    return {
        **connection_config(fresh_db),
        "manifest_path": str(manifest),
        "chunk_size": 100,
        "deletes_pass": True,
    }


def source_keys(dsn: str, sql: str) -> list:
    with psycopg.connect(dsn) as conn:
        return sorted(r[0] for r in conn.execute(sql))


def key_set(run: TapRun, stream: str = PKS, key: str = "id") -> tuple[list, dict]:
    """(keys, marker) of a stream's pass; the marker must be its last record."""
    records = run.records[stream]
    *keys, marker = records
    assert marker[key] is None and all(r[key] is not None for r in keys)
    assert all(r.get("_pgp_key_count") is None for r in keys)  # the marker alone counts
    return sorted(r[key] for r in keys), marker


def test_pass_emits_the_key_set_of_non_exempt_incremental_tables(
    tmp_path: Path, config: dict, fresh_db: str
) -> None:
    run = run_tap(tmp_path, config)
    streams = {m["stream"] for m in run.of_type("SCHEMA")}
    # issues (incremental) and merge_request_diff_commits (load_by_id) get a pass;
    # labels (deletes_exempt) and members (SCD) do not.
    assert streams == {
        "gitlab_db_issues",
        PKS,
        "gitlab_db_labels",
        "gitlab_db_merge_request_diff_commits",
        "gitlab_db_merge_request_diff_commits_pks",
        "gitlab_db_members",
        "pgp_row_counts",
    }
    schema = next(m for m in run.of_type("SCHEMA", PKS))
    assert schema["key_properties"] == []
    assert set(schema["schema"]["properties"]) == {"id", "_uploaded_at", "_pgp_key_count"}
    assert schema["schema"]["properties"]["id"]["type"] == ["integer", "null"]

    keys, marker = key_set(run)
    assert keys == source_keys(fresh_db, "SELECT id FROM issues WHERE project_id <> 2")
    assert marker["_pgp_key_count"] == len(keys) == 200
    uploaded = {r["_uploaded_at"] for r in run.records[PKS]}
    assert len(uploaded) == 1

    # Every record of the pass carries its version, activated after the marker.
    records = run.of_type("RECORD", PKS)
    version = records[0]["version"]
    assert {m["version"] for m in records} == {version}
    activate = run.of_type("ACTIVATE_VERSION", PKS)
    assert [m["version"] for m in activate] == [version]
    assert run.messages.index(activate[0]) > run.messages.index(records[-1])
    # The table's own stream ran first (its rows are older than the pass).
    first_pks = run.messages.index(records[0])
    assert all(run.messages.index(m) < first_pks for m in run.of_type("RECORD", "gitlab_db_issues"))
    assert run.bookmark(PKS)["table_version"] == version
    assert run.bookmark(PKS)["keys"] == 200

    # load_by_id with a non-unique key: every row's key, as pgp exported them.
    diff_keys, diff_marker = key_set(run, "gitlab_db_merge_request_diff_commits_pks", "diff_id")
    assert diff_keys == source_keys(fresh_db, "SELECT diff_id FROM commits")
    assert diff_marker["_pgp_key_count"] == 40

    # The next pass has a newer version and sees deletions.
    execute(fresh_db, "DELETE FROM issues WHERE id IN (1, 4, 7)")
    again = run_tap(tmp_path, config, state=run.state)
    keys2, marker2 = key_set(again)
    assert keys2 == [k for k in keys if k not in (1, 4, 7)]
    assert marker2["_pgp_key_count"] == 197
    assert again.of_type("RECORD", PKS)[0]["version"] > version


def test_no_pass_when_the_setting_is_off(tmp_path: Path, config: dict) -> None:
    run = run_tap(tmp_path, {**config, "deletes_pass": False})
    assert not [m for m in run.messages if m.get("stream", "").endswith("_pks")]
    for setting, expected in (
        (False, set()),
        (True, {PKS, "gitlab_db_merge_request_diff_commits_pks"}),
    ):
        (tmp_path / "config.json").write_text(json.dumps({**config, "deletes_pass": setting}))
        out = subprocess.run(
            [TAP, "--config", str(tmp_path / "config.json"), "--discover"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        names = {s["tap_stream_id"] for s in json.loads(out)["streams"]}
        assert {n for n in names if n.endswith("_pks")} == expected


def test_interrupted_pass_sends_no_marker_and_no_activation(
    tmp_path: Path, config: dict, fresh_db: str
) -> None:
    first = run_tap(tmp_path, config)
    # The issues rows are a day old, outside the next incremental window: only the pass
    # reads key 150 again, and breaks off there.
    execute(fresh_db, "UPDATE guard_cfg SET fail_at = 150")
    broken = run_tap(tmp_path, config, state=first.state, check=False)
    assert broken.returncode == 1
    assert "gitlab_db_issues_pks" in broken.stderr and "guard hit 150" in broken.stderr
    records = broken.records.get(PKS, [])
    assert all(r["id"] is not None for r in records)  # no marker
    assert not broken.of_type("ACTIVATE_VERSION", PKS)
    assert broken.bookmark(PKS) == first.bookmark(PKS)
    # The other table's pass is complete.
    assert broken.of_type("ACTIVATE_VERSION", "gitlab_db_merge_request_diff_commits_pks")


def test_sdk_route_and_batch_files_carry_the_same_pass(tmp_path: Path, config: dict) -> None:
    fast = run_tap(tmp_path, config)
    sdk = run_tap(tmp_path, {**config, "fast_records": False})
    assert key_set(sdk)[0] == key_set(fast)[0]
    assert key_set(sdk)[1]["_pgp_key_count"] == 200
    assert {m["version"] for m in sdk.of_type("RECORD", PKS)} == {
        sdk.of_type("ACTIVATE_VERSION", PKS)[0]["version"]
    }

    root = tmp_path / "batches"
    batch = run_tap(
        tmp_path,
        {
            **config,
            "batch_config": {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": root.as_uri(), "prefix": "pgp-"},
                "batch_size": 150,
            },
        },
    )
    rows = []
    for message in batch.of_type("BATCH", PKS):
        for url in message["manifest"]:
            with gzip.open(urlsplit(url).path, "rt", encoding="utf-8") as lines:
                rows += [json.loads(line, parse_float=Decimal) for line in lines]
    (activate,) = batch.of_type("ACTIVATE_VERSION", PKS)
    assert {r["_sdc_table_version"] for r in rows} == {activate["version"]}
    assert sorted(r["id"] for r in rows if r["id"] is not None) == key_set(fast)[0]
    assert rows[-1]["id"] is None and rows[-1]["_pgp_key_count"] == 200
    # The files are announced before the activation retires older passes.
    last_batch = batch.of_type("BATCH", PKS)[-1]
    assert batch.messages.index(last_batch) < batch.messages.index(activate)


def test_keys_query_reads_only_the_key(fresh_db: str) -> None:
    """pgp rewrote the query to `SELECT <pk> FROM ...`; the wrapper lets Postgres drop the
    other select items (an expression that would fail is never evaluated)."""
    execute(
        fresh_db,
        "CREATE TABLE t (id int PRIMARY KEY, d int, updated_at timestamp);"
        "INSERT INTO t VALUES (1, 0, now()), (2, 1, now()), (3, 0, now());",
    )
    query = QueryTemplate.parse(
        f"SELECT id, 10 / d AS ratio, updated_at FROM t {WINDOW}", "AND id > 0", "id"
    )
    allow = AllowLists.empty()
    assert source_keys(fresh_db, query.keys_sql(allow)) == [1, 2, 3]
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute(query.null_key_row_sql(allow)).fetchall()
        assert row == [(None,)]
        cur = conn.execute(f"SELECT pg_typeof(id)::text FROM ({query.null_key_row_sql(allow)}) x")
        assert cur.fetchone() == ("integer",)
