"""The Meltano project end to end: meltano.yml, tap-gitlab-postgres, target-postgres, dbt.

Real processes and servers only: `.venv/bin/meltano` runs this repository's meltano.yml
(plugins installed by scripts/bootstrap) against two databases of the session's throwaway
Postgres cluster, with its own Meltano state (see pipeline_support.Pipeline) and a copy of
the project's manifests (pointed to by TAP_GITLAB_POSTGRES__MAIN_MANIFEST_PATH etc.).

One scenario on a demo source of ~3000 rows, shared by the tests in file order
(each meltano run costs ~15 s of CPU, so they are few and each proves several things):
  run 1  `meltano run <tap> target-postgres` for both extractors + dbt seed/run: every
         stream full, RAW = source
  run 2  after `demo_source.touch`, as the jobs `el-main el-main-scd`: incremental streams
         move exactly their window (= the touched rows), SCD streams a new snapshot
  run 3  no touch, one stream flagged `resync` with `meltano state merge`, one table added
         to the manifest: the others move exactly the 30-minute lookback overlap again,
         the flagged stream is replaced by a fresh copy, the new one is backfilled
  run 4  one table removed from the manifest and one query changed: the run goes on,
         the changed stream is fully synced and its old rows deleted
  run 5  `--full-refresh`: every stream replaced by a fresh copy, duplicates gone
Row counts: the tap's pgp_row_counts match RAW after runs 1 and 5 (dbt-postgres:trust), and
the check fails once a loaded row goes missing.
Plus production config resolution and `target-snowflake --about`, offline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import demo_source
import pytest
import yaml
from pgp_testkit.pipeline import (
    EXTRACTORS,
    LOOKBACK,
    MAIN,
    MELTANO,
    ROOT,
    SCD,
    Pipeline,
    manifest_streams,
    parse_ts,
)

pytestmark = pytest.mark.e2e

ROWS = 3000
RESYNC = "gitlab_db_labels"  # run 3: `resync: true` merged into its bookmark
ADDED = "gitlab_db_users_copy"  # run 3: a new manifest table (a copy of `users`)
REMOVED = "gitlab_db_labels_internal_only"  # run 4: removed from the manifest
CHANGED = "gitlab_db_projects"  # run 4: its query loses a column


def _new_pipeline(pg, tmp_path_factory, name: str, rows: int) -> Pipeline:
    if not MELTANO.exists():
        pytest.fail("meltano is not installed in .venv: run scripts/bootstrap (make test does)")
    source, warehouse = (f"{name}_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("src", "wh"))
    pg.create_database(source)
    pg.create_database(warehouse)
    pipe = Pipeline(pg, tmp_path_factory.mktemp(name), source, warehouse)
    demo_source.create(pg.dsn(source), rows=rows)
    return pipe


def _keyed(pipe: Pipeline):
    """The incremental and load_by_id streams of the main manifest as it is now."""
    return [s for s in manifest_streams(MAIN, pipe.manifests[MAIN]) if s.load_type != "scd"]


def _edit_main_manifest(pipe: Pipeline, edit) -> None:
    path = pipe.manifests[MAIN]
    doc = yaml.safe_load(path.read_text())
    edit(doc["tables"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _window(before: dict, after: dict):
    """The incremental window of a run, from the bookmarks before and after it."""
    return (
        parse_ts(before["replication_key_value"]) - LOOKBACK,
        parse_ts(after["replication_key_value"]),
    )


def _has_repeats(pipe: Pipeline, stream) -> bool:
    keys = pipe.raw_keys(stream)
    return len(keys) > len(set(keys))


# ============================================================================ the runs


@pytest.fixture(scope="module")
def run1(pg, tmp_path_factory):
    pipe = _new_pipeline(pg, tmp_path_factory, "pipeline", ROWS)
    pipe.use_manifest_copies()
    # The form: tap -> target -> dbt, both extractors in one `meltano run`.
    pipe.run1 = pipe.run(
        MAIN, "target-postgres", SCD, "target-postgres", "dbt-postgres:seed", "dbt-postgres:run"
    )
    pipe.state1 = pipe.stored_state(MAIN)
    return pipe


@pytest.fixture(scope="module")
def run2(run1):
    pipe = run1
    pipe.touched = demo_source.touch(pipe.pg.dsn(pipe.source_db))
    pipe.run2 = pipe.run("el-main", "el-main-scd")  # the jobs of meltano.yml
    pipe.state2 = pipe.stored_state(MAIN)
    return pipe


@pytest.fixture(scope="module")
def run3(run2):
    pipe = run2
    pipe.streams2 = _keyed(pipe)
    # Resync one stream, the documented way: a deep merge into the stored state.
    pipe.before_merge = pipe.state(MAIN)
    pipe.meltano(
        "state", "merge", pipe.state_id(MAIN),
        json.dumps({"singer_state": {"bookmarks": {RESYNC: {"resync": True}}}}),
    )  # fmt: skip
    pipe.merged = pipe.state(MAIN)
    pipe.resync_had_repeats = _has_repeats(pipe, RESYNC)
    # Add a table to the manifest: same file, same config, so only a fresh discovery sees it.
    _edit_main_manifest(
        pipe,
        lambda tables: tables.update(users_copy={**tables["users"], "export_table": "users_copy"}),
    )
    pipe.run3 = pipe.run(MAIN, "target-postgres")
    pipe.state3 = pipe.state(MAIN)  # completed + partial: a leftover resync flag shows here
    return pipe


@pytest.fixture(scope="module")
def run4(run3):
    pipe = run3
    pipe.removed_rows = pipe.raw_keys(REMOVED)
    pipe.changed_had_repeats = _has_repeats(pipe, CHANGED)

    def edit(tables):
        tables.pop("labels_internal_only")
        query = tables["projects"]["import_query"]
        assert "\n, NULL AS avatar" in query
        tables["projects"]["import_query"] = query.replace("\n, NULL AS avatar", "")

    _edit_main_manifest(pipe, edit)
    pipe.run4 = pipe.run(MAIN, "target-postgres")  # exit 0, or it raises
    pipe.state4 = pipe.stored_state(MAIN)
    return pipe


@pytest.fixture(scope="module")
def run5(run4):
    pipe = run4
    pipe.streams_with_repeats = [s.name for s in _keyed(pipe) if _has_repeats(pipe, s)]
    pipe.run5 = pipe.run(MAIN, "target-postgres", full_refresh=True)
    pipe.state5 = pipe.stored_state(MAIN)
    return pipe


# ====================================================================== run 1: full


def test_first_run_loads_every_stream_exactly_once(run1):
    pipe = run1
    for extractor in EXTRACTORS:
        for stream in manifest_streams(extractor, pipe.manifests[extractor]):
            raw = pipe.raw_keys(stream)
            # Exactly the rows of the manifest query, each once (full syncs and snapshots).
            assert raw == pipe.source_keys(stream), stream.name
            if stream.unfiltered:  # independent of the tap's SQL: the whole source table
                assert raw == pipe.source_table_keys(stream.source_table, stream.primary_key)
    for stream in _keyed(pipe):
        bookmark = pipe.state1[stream.name]
        assert pipe.raw_versions(stream.name) == [bookmark["table_version"]], stream.name
        assert "full_sync" not in bookmark and "resync" not in bookmark


def test_first_run_builds_the_dbt_models(run1):
    results_file = run1.home / "dbt-target" / "run_results.json"
    assert results_file.exists(), "dbt-postgres:run wrote no run_results.json"
    results = json.loads(results_file.read_text())["results"]
    assert results, "dbt ran no model"
    assert Counter(r["status"] for r in results) == {"success": len(results)}
    assert all(r["unique_id"].startswith("model.gitlab_pgp.") for r in results)


def _trust(pipe: Pipeline) -> list[tuple]:
    """Run `dbt-postgres:trust`; the failing checks (stream, check, expected, actual), which
    it stores in the warehouse (store_failures), and which must agree with its exit code."""
    proc = pipe.meltano("invoke", "dbt-postgres:trust", check=False)
    with pipe.connect(pipe.warehouse_db) as conn:
        failed = conn.execute(
            "SELECT stream, check_name, expected, actual"
            " FROM dbt_test__audit.assert_raw_matches_pgp_row_counts ORDER BY 1, 2"
        ).fetchall()
    assert (proc.returncode == 0) == (not failed), (proc.returncode, failed)
    return failed


def test_row_counts_match_raw_after_the_first_run(run1):
    with run1.connect(run1.warehouse_db) as conn:
        counts = conn.execute(
            "SELECT stream, run_type, rows_read, source_rows FROM tap_postgres.pgp_row_counts"
        ).fetchall()
    streams = {s.name for e in EXTRACTORS for s in manifest_streams(e, run1.manifests[e])}
    assert {row[0] for row in counts} == streams
    for stream, run_type, rows_read, source_rows in counts:
        assert run_type in ("full_sync", "snapshot"), stream
        assert rows_read == source_rows, stream
    assert _trust(run1) == []  # as `meltano run ... dbt-postgres:trust` does in the jobs


# =============================================================== run 2: incremental


def test_second_run_moves_exactly_the_changed_rows(run2):
    pipe = run2
    assert sum(pipe.touched.values()) > 0
    for stream in _keyed(pipe):
        before, after = pipe.state1[stream.name], pipe.state2[stream.name]
        # A job and `tap target` blocks share the state ID: no new full sync.
        assert after["table_version"] == before["table_version"], stream.name
        moved = pipe.raw_keys(stream, since_ms=pipe.run2.started_ms)
        if stream.load_type == "incremental":
            window = _window(before, after)
            assert moved == pipe.source_keys(stream, window), stream.name
            if stream.unfiltered:
                # Run 1's lookback overlap is empty (demo rows are >= 1 h old), so the
                # window holds exactly the rows `touch` changed or inserted.
                assert len(moved) == pipe.touched[stream.source_table], stream.name
                assert moved == pipe.source_table_keys(stream.source_table, updated_between=window)
        else:  # load_by_id: the keys above the bookmark
            assert moved == pipe.source_table_keys(
                stream.source_table, stream.primary_key, key_above=before["replication_key_value"]
            )
            assert len(moved) == pipe.touched[stream.source_table]
            assert after["replication_key_value"] == max(moved)
    for stream in manifest_streams(SCD, pipe.manifests[SCD]):  # a second snapshot, appended
        moved = pipe.raw_keys(stream, since_ms=pipe.run2.started_ms)
        assert moved == pipe.source_keys(stream), stream.name
        first = pipe.raw_keys(stream, until_ms=pipe.run2.started_ms)
        assert len(pipe.raw_keys(stream)) == len(first) + len(moved)


# ====================================================== run 3: lookback, resync, added


def test_third_run_repeats_only_the_lookback_overlap(run3):
    pipe = run3
    for stream in pipe.streams2:
        if stream.name == RESYNC:
            continue
        before, after = pipe.state2[stream.name], pipe.state3[stream.name]
        assert after["table_version"] == before["table_version"], stream.name
        assert after["schema_fingerprint"] == before["schema_fingerprint"], stream.name
        moved3 = pipe.raw_keys(stream, since_ms=pipe.run3.started_ms)
        if stream.load_type == "incremental":
            assert moved3 == pipe.source_keys(stream, _window(before, after)), stream.name
            # Nothing changed since run 2, but the touch happened within the 30-minute
            # lookback: run 3 appends the very rows run 2 moved, once more.
            moved2 = pipe.raw_keys(
                stream, since_ms=pipe.run2.started_ms, until_ms=pipe.run3.started_ms
            )
            assert moved3 == moved2, stream.name
        else:
            assert moved3 == [], stream.name  # ids have no lookback


def test_resync_of_one_stream_keeps_the_other_bookmarks(run3):
    pipe = run3
    before = pipe.before_merge
    # `meltano state merge` is a deep merge: one key added, every other bookmark kept.
    assert pipe.merged[RESYNC] == {**before[RESYNC], "resync": True}
    assert {k: v for k, v in pipe.merged.items() if k != RESYNC} == {
        k: v for k, v in before.items() if k != RESYNC
    }
    assert pipe.resync_had_repeats  # run 2's overlap duplicates
    after = pipe.state3[RESYNC]
    assert "resync" not in after and "full_sync" not in after  # consumed, once
    assert after["table_version"] > before[RESYNC]["table_version"]
    # hard_delete + ACTIVATE_VERSION: only the fresh copy is left, each row once.
    stream = next(s for s in _keyed(pipe) if s.name == RESYNC)
    assert pipe.raw_keys(stream) == pipe.source_keys(stream)
    assert pipe.raw_versions(RESYNC) == [after["table_version"]]
    # The other streams kept table_version and fingerprint and moved an ordinary window:
    # test_third_run_repeats_only_the_lookback_overlap.


def test_added_table_is_discovered_and_backfilled_alone(run3):
    pipe = run3
    assert ADDED not in pipe.state2
    added = next(s for s in _keyed(pipe) if s.name == ADDED)
    assert pipe.raw_keys(added) == pipe.source_keys(added)  # backfilled: a full sync
    assert pipe.raw_versions(ADDED) == [pipe.state3[ADDED]["table_version"]]
    # No other stream resynced: test_third_run_repeats_only_the_lookback_overlap.
    # Meltano kept no catalog cache key: discovery runs on every `meltano run`.
    run_dir = pipe.sys_dir / "run" / MAIN
    assert not (run_dir / "tap.properties.cache_key").exists()
    catalog = json.loads((run_dir / "tap.properties.json").read_text())
    assert ADDED in {s["tap_stream_id"] for s in catalog["streams"]}


# ========================================================== run 4: removed, changed


def test_removed_table_does_not_break_the_run(run4):
    pipe = run4
    assert REMOVED not in {s.name for s in _keyed(pipe)}
    assert pipe.raw_keys(REMOVED) == pipe.removed_rows  # left alone
    for stream in _keyed(pipe):  # the others go on (CHANGED: next test)
        if stream.name == CHANGED:
            continue
        before, after = pipe.state3[stream.name], pipe.state4[stream.name]
        assert after["table_version"] == before["table_version"], stream.name
        if stream.load_type == "incremental":
            moved = pipe.raw_keys(stream, since_ms=pipe.run4.started_ms)
            assert moved == pipe.source_keys(stream, _window(before, after)), stream.name


def test_query_change_full_syncs_and_replaces_the_old_copy(run4):
    pipe = run4
    before, after = pipe.state3[CHANGED], pipe.state4[CHANGED]
    assert pipe.changed_had_repeats  # overlap duplicates of runs 2 and 3
    assert after["schema_fingerprint"] != before["schema_fingerprint"]
    assert after["table_version"] > before["table_version"]
    # Schema change -> full sync -> ACTIVATE_VERSION deletes every older row.
    stream = next(s for s in _keyed(pipe) if s.name == CHANGED)
    assert pipe.raw_keys(stream) == pipe.source_keys(stream)
    assert pipe.raw_versions(CHANGED) == [after["table_version"]]


# ===================================================================== run 5: full


def test_full_refresh_resyncs_everything(run5):
    pipe = run5
    assert pipe.streams_with_repeats, "expected overlap duplicates before the full refresh"
    for stream in _keyed(pipe):
        assert pipe.state5[stream.name]["table_version"] > pipe.state4[stream.name]["table_version"]
        # Every older version deleted: the warehouse holds exactly the source, once.
        assert pipe.raw_keys(stream) == pipe.source_keys(stream), stream.name
        assert pipe.raw_versions(stream.name) == [pipe.state5[stream.name]["table_version"]]


def test_row_count_check_catches_a_lost_row(run5):
    pipe = run5
    assert _trust(pipe) == []
    with pipe.connect(pipe.warehouse_db) as conn:
        conn.execute(f"DELETE FROM tap_postgres.{RESYNC} WHERE ctid IN "
                     f"(SELECT ctid FROM tap_postgres.{RESYNC} LIMIT 1)")  # fmt: skip
        read = conn.execute(
            f"SELECT rows_read FROM tap_postgres.pgp_row_counts WHERE stream = '{RESYNC}'"
            " ORDER BY counted_at DESC LIMIT 1"
        ).fetchone()[0]
    # Both checks of that stream fail: loaded (rows read vs RAW) and source (count(*)).
    assert _trust(pipe) == [(RESYNC, "loaded", read, read - 1), (RESYNC, "source", read, read - 1)]


# ========================================================================== production


PROD_ENV = {
    "SNOWFLAKE_ACCOUNT": "acme-test",
    "SNOWFLAKE_LOAD_USER": "loader",
    "SNOWFLAKE_LOAD_PASSWORD": "load-secret",
    "SNOWFLAKE_LOAD_ROLE": "LOADER",
    "SNOWFLAKE_LOAD_WAREHOUSE": "LOADING",
    "SNOWFLAKE_TRANSFORM_USER": "transformer",
    "SNOWFLAKE_TRANSFORM_PASSWORD": "transform-secret",
    "SNOWFLAKE_TRANSFORM_ROLE": "TRANSFORMER",
    "SNOWFLAKE_TRANSFORM_WAREHOUSE": "TRANSFORMING",
    "GITLAB_COM_DB_HOST": "replica.example",
    "GITLAB_COM_PG_PORT": "5432",
    "GITLAB_COM_DB_USER": "pgp",
    "GITLAB_COM_DB_PASS": "source-secret",
    "GITLAB_COM_DB_NAME": "gitlabhq_production",
}
# setting -> expected value, per plugin (sensitive ones resolved but shown redacted).
PROD_EXPECTED = {
    "target-snowflake": {
        "account": "acme-test",
        "user": "loader",
        "password": "(redacted)",
        "role": "LOADER",
        "warehouse": "LOADING",
        "database": "RAW",
        "default_target_schema": "tap_postgres",
        "load_method": "append-only",
        "hard_delete": "True",
        "add_record_metadata": "True",
    },
    "dbt-snowflake": {
        "account": "acme-test",
        "user": "transformer",
        "password": "(redacted)",
        "role": "TRANSFORMER",
        "warehouse": "TRANSFORMING",
        "database": "PROD",
        "raw_database": "RAW",
        "schema": "analytics",
        "type": "snowflake",
    },
    "tap-gitlab-postgres--main": {"database_type": "main", "lookback_minutes": "30"},
    "tap-gitlab-postgres--main-scd": {"database_type": "main", "lookback_minutes": "30"},
}


@pytest.fixture(scope="module")
def config_only(pg, tmp_path_factory):
    return Pipeline(pg, tmp_path_factory.mktemp("config"), "unused_src", "unused_wh")


def _current_values(listing: str) -> dict[str, str]:
    """{setting: value} from `meltano config list` lines
    `name [env: X] current value: 'v' (from ...)` / `(inherited from ...)` / `(default)`."""
    values = {}
    for line in listing.splitlines():
        match = re.match(
            r"(\S+) \[env: [^]]*\](?: \(default: .*?\))? current value: (.*?)"
            r" \((?:from .*|inherited from .*|default)\)$",
            line,
        )
        if match:
            values[match.group(1)] = match.group(2).strip("'")
    return values


def test_prod_config_resolves_every_plugin(config_only):
    env = {**config_only.env(), **PROD_ENV, "MELTANO_ENVIRONMENT": "prod"}
    # Every plugin of meltano.yml and of the files it includes.
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    files = [project] + [yaml.safe_load((ROOT / p).read_text()) for p in project["include_paths"]]
    names = [p["name"] for f in files for kind in f["plugins"].values() for p in kind]

    def listing(name: str) -> tuple[str, subprocess.CompletedProcess]:
        return name, config_only.meltano(
            "--environment=prod", "config", "list", "--all", name, env=env, check=False
        )

    results = dict([listing(names[0])])  # alone first: it creates the systemdb
    with ThreadPoolExecutor(max_workers=2) as pool:
        results.update(pool.map(listing, names[1:]))
    for name, proc in results.items():
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"
    for name, expected in PROD_EXPECTED.items():
        values = _current_values(results[name].stdout)
        for setting, value in expected.items():
            assert values.get(setting) == value, (name, setting, results[name].stdout)
    for extractor, manifest in EXTRACTORS.items():
        path = _current_values(results[extractor].stdout)["manifest_path"]
        assert Path(path).resolve() == ROOT / "manifests" / manifest, extractor
    # Secrets are declared sensitive: never printed by `config list`.
    joined = "".join(p.stdout for p in results.values())
    for secret in ("load-secret", "transform-secret", "source-secret"):
        assert secret not in joined


@pytest.fixture(scope="module")
def snowflake_about(config_only) -> dict:
    """`meltano invoke target-snowflake --about`: the installed plugin, through Meltano."""
    proc = config_only.meltano("invoke", "target-snowflake", "--about", "--format", "json")
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def test_target_snowflake_about_runs_from_the_installed_plugin(snowflake_about):
    assert snowflake_about["name"] == "target-snowflake"
    assert snowflake_about["version"] == "0.20.4"
    assert {"activate-version", "hard-delete"} <= set(snowflake_about["capabilities"])


# ===================================================================== real Snowflake load


@pytest.mark.skipif(
    not os.environ.get("SNOWFLAKE_ACCOUNT"),
    reason="real Snowflake load: set SNOWFLAKE_ACCOUNT, SNOWFLAKE_LOAD_USER, "
    "SNOWFLAKE_LOAD_PASSWORD, SNOWFLAKE_LOAD_ROLE, SNOWFLAKE_LOAD_WAREHOUSE "
    "(and SNOWFLAKE_TEST_DATABASE, default RAW) to run it",
)
def test_real_snowflake_load(pg, tmp_path_factory):
    """tap-gitlab-postgres--main -> target-snowflake in prod, into a throwaway schema."""
    pipe = _new_pipeline(pg, tmp_path_factory, "snowflake", 600)
    schema = f"PGP_TEST_{uuid.uuid4().hex[:8]}".upper()
    database = os.environ.get("SNOWFLAKE_TEST_DATABASE", "RAW")
    env = {
        **pipe.env(),
        **{k: v for k, v in os.environ.items() if k.startswith("SNOWFLAKE_")},
        "MELTANO_ENVIRONMENT": "prod",
        "GITLAB_COM_DB_HOST": pg.host,
        "GITLAB_COM_PG_PORT": str(pg.port),
        "GITLAB_COM_DB_USER": pg.user,
        "GITLAB_COM_DB_PASS": pg.password,
        "GITLAB_COM_DB_NAME": pipe.source_db,
        "TARGET_SNOWFLAKE_DATABASE": database,
        "TARGET_SNOWFLAKE_DEFAULT_TARGET_SCHEMA": schema,
    }
    pipe.meltano("--environment=prod", "run", MAIN, "target-snowflake", env=env)
    check = f"""
import os, snowflake.connector
conn = snowflake.connector.connect(
    account=os.environ["SNOWFLAKE_ACCOUNT"], user=os.environ["SNOWFLAKE_LOAD_USER"],
    password=os.environ["SNOWFLAKE_LOAD_PASSWORD"], role=os.environ.get("SNOWFLAKE_LOAD_ROLE"),
    warehouse=os.environ.get("SNOWFLAKE_LOAD_WAREHOUSE"), database="{database}")
cur = conn.cursor()
try:
    print(cur.execute('SELECT count(*) FROM "{schema}".GITLAB_DB_USERS').fetchone()[0])
finally:
    cur.execute('DROP SCHEMA IF EXISTS "{schema}" CASCADE')
"""
    python = ROOT / ".meltano/loaders/target-snowflake/venv/bin/python"
    out = subprocess.run(
        [str(python), "-c", check], env=env, check=True, capture_output=True, text=True
    ).stdout
    users = next(s for s in _keyed(pipe) if s.name == "gitlab_db_users")
    assert int(out.split()[-1]) == len(pipe.source_keys(users))
