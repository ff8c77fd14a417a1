"""The dbt project (transform/) on demo data, on Postgres and on Snowflake (offline).

RAW is built as in production: the demo source (scripts/demo_source.py), the tap for both demo
manifests piped into target-postgres (meltano.yml's loader config: append-only), twice, with
`touch` in between, so incremental RAW tables hold duplicates and SCD tables two snapshots.

- Postgres: `dbt build` (seeds, models, every data test) and `dbt source freshness` pass; the
  staging models keep exactly the latest row per key, the SCD models the last snapshot and a
  type-2 history whose windows follow each other; the pumps land in `pumps` and
  `pumps_sensitive`, the sensitive one with every user's email.
- Snowflake: the same RAW copied into a fakesnow server on 127.0.0.1 (RAW.TAP_POSTGRES, with
  target-snowflake's column types), `dbt build` with the snowflake profile, and every model
  has the same rows as on Postgres.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import demo_source
import psycopg
import pytest
from pgp_testkit.dbt import (
    TRANSFORM,
    dbt_postgres,
    dbt_snowflake,
    fakesnow_python,
    fakesnow_server,
    load_fakesnow,
    query_fakesnow,
    run_pipeline,
)

pytestmark = pytest.mark.e2e

ROWS = 3_000
SEED = 11
TOUCH_FRACTION = 0.05
TAP = Path(sys.executable).with_name("tap-gitlab-postgres")

PROJECTS = ", ".join(map(str, demo_source.INTERNAL_PROJECT_IDS))  # = the seeds
NAMESPACES = ", ".join(map(str, demo_source.INTERNAL_NAMESPACE_IDS))
# Incremental RAW table -> (staging key, source table, rows of the source it holds).
INCREMENTAL = {
    "application_settings": ("application_settings_id", "application_settings", "true"),
    "ci_builds": ("ci_build_id", "p_ci_builds", "true"),
    "issues": ("issue_id", "issues", "true"),
    "issues_internal_only": ("issue_id", "issues", f"project_id IN ({PROJECTS})"),
    "labels": ("label_id", "labels", "true"),
    "labels_internal_only": (
        "label_id",
        "labels",
        f"project_id IN ({PROJECTS}) OR group_id IN ({NAMESPACES})",
    ),
    "merge_request_diffs": ("merge_request_diff_id", "merge_request_diffs", "true"),
    "merge_requests": ("merge_request_id", "merge_requests", "true"),
    "milestones": ("milestone_id", "milestones", "true"),
    "namespaces": ("namespace_id", "namespaces", "true"),
    "notes": ("note_id", "notes", "true"),
    "projects": ("project_id", "projects", "true"),
    "projects_internal_only": (
        "project_id",
        "projects",
        f"namespace_id IN ({NAMESPACES}) OR id IN ({PROJECTS})",
    ),
    "users": ("user_id", "users", "true"),
}
# Source tables whose updated_at is timestamptz (RAW holds it as UTC without time zone).
TIMESTAMPTZ_UPDATED_AT = {"milestones"}
# SCD RAW table -> (staging key, source table, rows of the source it holds).
SCD = {
    "members": ("member_id", "members", "true"),
    "label_links": ("label_link_id", "label_links", "true"),
    "namespace_statistics": ("namespace_statistics_id", "namespace_statistics", "true"),
    "ci_builds_internal_only": ("ci_build_id", "p_ci_builds", f"project_id IN ({PROJECTS})"),
}
# SCD tables whose every touched row changes a column the manifest extracts.
SCD_TOUCH_VISIBLE = ("members", "label_links", "namespace_statistics")


@dataclass(frozen=True)
class Raw:
    source: str  # DSN of the demo source
    warehouse: str  # DSN of the warehouse: RAW in tap_postgres, dbt's schemas
    workdir: Path
    touched: dict[str, int]  # demo_source.touch(): rows changed or added per source table


@dataclass(frozen=True)
class PostgresBuild:
    results: list[dict]
    counts: dict[str, int]  # "<schema>.<model>" -> rows


def scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


def rows(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(scope="module")
def raw(pg, tmp_path_factory: pytest.TempPathFactory) -> Raw:
    workdir = tmp_path_factory.mktemp("dbt")
    tag = uuid.uuid4().hex[:8]
    source = pg.create_database(f"dbt_source_{tag}")
    warehouse = pg.create_database(f"dbt_warehouse_{tag}")
    demo_source.create(source, rows=ROWS, seed=SEED)
    run_pipeline(source, warehouse, workdir / "pipeline", TAP)
    touched = demo_source.touch(source, fraction=TOUCH_FRACTION, seed=SEED)
    run_pipeline(source, warehouse, workdir / "pipeline", TAP)
    return Raw(source, warehouse, workdir, touched)


@pytest.fixture(scope="module")
def postgres_build(raw: Raw) -> PostgresBuild:
    dbt = dbt_postgres(raw.warehouse, raw.workdir / "dbt-postgres")
    dbt("build")
    results = dbt.run_results()
    dbt("source", "freshness")
    tables = rows(
        raw.warehouse,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('analytics', 'pumps', 'pumps_sensitive') ORDER BY 1, 2",
    )
    counts = {
        f"{schema}.{name}": scalar(raw.warehouse, f'SELECT count(*) FROM {schema}."{name}"')
        for schema, name in tables
    }
    return PostgresBuild(results, counts)


def test_source_freshness_slo(fresh_db: str, tmp_path: Path) -> None:
    """RAW passes while `_uploaded_at` is under 24 h old, warns after, fails after 32 h."""
    ages = {"users": 1, "issues": 25, "notes": 40}
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA tap_postgres")
        for table, hours in ages.items():
            conn.execute(
                f"CREATE TABLE tap_postgres.gitlab_db_{table} AS SELECT 1 AS id, "
                f"extract(epoch FROM now() - interval '{hours} hours') AS _uploaded_at"
            )
    dbt = dbt_postgres(fresh_db, tmp_path)
    selected = [f"source:gitlab_dotcom.{table}" for table in ages]
    done = dbt("source", "freshness", "--select", *selected, check=False)
    assert done.returncode == 1, done.stdout
    results = json.loads((tmp_path / "target" / "sources.json").read_text())["results"]
    status = {r["unique_id"].rsplit(".", 1)[1]: r["status"] for r in results}
    assert status == {"users": "pass", "issues": "warn", "notes": "error"}


def test_postgres_build_passes_every_data_test(postgres_build: PostgresBuild) -> None:
    statuses = Counter(r["status"] for r in postgres_build.results)
    kinds = Counter(r["unique_id"].split(".")[0] for r in postgres_build.results)
    assert set(statuses) <= {"success", "pass"}, statuses
    models = len(list((TRANSFORM / "models").rglob("*.sql")))
    seeds = len(list((TRANSFORM / "seeds").glob("*.csv")))
    assert (kinds["model"], kinds["seed"]) == (models, seeds) and kinds["test"] > 150, kinds
    assert {"pumps.pump_project_activity", "pumps_sensitive.pump_marketing_contact"} <= set(
        postgres_build.counts
    )


def test_incremental_staging_keeps_the_latest_row_per_key(
    raw: Raw, postgres_build: PostgresBuild
) -> None:
    duplicated = 0
    for table, (key, source_table, where) in INCREMENTAL.items():
        staged = postgres_build.counts[f"analytics.gitlab_dotcom_{table}_source"]
        in_raw = rows(
            raw.warehouse,
            f"SELECT count(*), count(DISTINCT id) FROM tap_postgres.gitlab_db_{table}",
        )[0]
        duplicated += in_raw[0] - in_raw[1]
        in_source = scalar(raw.source, f"SELECT count(*) FROM {source_table} WHERE {where}")
        assert staged == in_raw[1] == in_source, table
        # The newest version of every row: the source's current updated_at, row by row.
        latest = rows(
            raw.warehouse,
            f"SELECT {key}, updated_at FROM analytics.gitlab_dotcom_{table}_source ORDER BY 1",
        )
        updated_at = (
            "updated_at AT TIME ZONE 'UTC'"
            if source_table in TIMESTAMPTZ_UPDATED_AT
            else "updated_at"
        )
        current = rows(
            raw.source, f"SELECT id, {updated_at} FROM {source_table} WHERE {where} ORDER BY 1"
        )
        assert latest == current, table
    assert duplicated > 0, "RAW should hold several versions of the touched rows"
    # The composite key of merge_request_diff_commits (load_by_id on merge_request_diff_id).
    staged = postgres_build.counts["analytics.gitlab_dotcom_merge_request_diff_commits_source"]
    assert staged == scalar(raw.source, "SELECT count(*) FROM merge_request_diff_commits")


def test_scd_latest_state_is_the_last_snapshot(raw: Raw, postgres_build: PostgresBuild) -> None:
    for table, (key, source_table, where) in SCD.items():
        raw_table = f"tap_postgres.gitlab_db_{table}"
        assert scalar(raw.warehouse, f"SELECT count(DISTINCT _uploaded_at) FROM {raw_table}") == 2
        last_snapshot = rows(
            raw.warehouse,
            f"SELECT id FROM {raw_table} "
            f"WHERE _uploaded_at = (SELECT max(_uploaded_at) FROM {raw_table}) ORDER BY 1",
        )
        latest = rows(
            raw.warehouse, f"SELECT {key} FROM analytics.gitlab_dotcom_{table}_source ORDER BY 1"
        )
        in_source = rows(raw.source, f"SELECT id FROM {source_table} WHERE {where} ORDER BY 1")
        assert latest == last_snapshot == in_source, table
    # Values too: the members' current access levels.
    assert rows(
        raw.warehouse,
        "SELECT member_id, access_level FROM analytics.gitlab_dotcom_members_source ORDER BY 1",
    ) == rows(raw.source, "SELECT id, access_level FROM members ORDER BY 1")


def test_scd_type_2_history_windows(raw: Raw, postgres_build: PostgresBuild) -> None:
    for table in SCD_TOUCH_VISIBLE:
        key = SCD[table][0]
        history = f"analytics.gitlab_dotcom_{table}_history"
        first, second = (
            r[0]
            for r in rows(
                raw.warehouse,
                f"SELECT DISTINCT valid_from FROM {history} ORDER BY 1",
            )
        )
        versions = rows(
            raw.warehouse,
            f"SELECT {key}, valid_from, valid_to, is_current FROM {history} "
            f"ORDER BY {key}, valid_from",
        )
        by_key: dict[int, list[tuple]] = {}
        for row in versions:
            by_key.setdefault(row[0], []).append(row)
        changed = [k for k, v in by_key.items() if len(v) == 2]
        added = [k for k, v in by_key.items() if len(v) == 1 and v[0][1] == second]
        # Every row `touch` changed or added shows up as a new version in the second snapshot.
        assert len(changed) + len(added) == raw.touched[table] > 0, table
        assert all(len(v) <= 2 for v in by_key.values()), table
        for k in changed:
            old, new = by_key[k]
            assert (old[1], old[2], old[3]) == (first, second, False), (table, k)
            assert (new[1], new[2], new[3]) == (second, None, True), (table, k)
        current = sum(1 for v in by_key.values() if v[-1][3])
        assert current == postgres_build.counts[f"analytics.gitlab_dotcom_{table}_source"]


def test_pumps_land_in_their_schemas_with_the_contacts(
    raw: Raw, postgres_build: PostgresBuild
) -> None:
    emails = {
        r[0]
        for r in rows(
            raw.warehouse, "SELECT email_address FROM pumps_sensitive.pump_marketing_contact"
        )
    }
    source_emails = {r[0] for r in rows(raw.source, "SELECT email FROM users WHERE email <> ''")}
    assert emails == source_emails and len(emails) > 50
    # last_changed moves with the user: a touched user changed in the second run.
    assert (
        scalar(
            raw.warehouse,
            "SELECT count(*) FROM pumps_sensitive.pump_marketing_contact c "
            "JOIN analytics.gitlab_dotcom_users_source u USING (user_id) "
            "WHERE c.last_changed < u.updated_at",
        )
        == 0
    )
    issues = scalar(raw.warehouse, "SELECT sum(issues_created) FROM pumps.pump_project_activity")
    assert issues == scalar(raw.source, "SELECT count(*) FROM issues")
    # Nothing else leaks into the pump schemas.
    assert {k for k in postgres_build.counts if not k.startswith("analytics.")} == {
        "pumps.pump_project_activity",
        "pumps_sensitive.pump_marketing_contact",
    }


def test_snowflake_build_on_fakesnow_matches_postgres(
    raw: Raw, postgres_build: PostgresBuild
) -> None:
    python = fakesnow_python()
    workdir = raw.workdir / "dbt-snowflake"
    workdir.mkdir()
    with fakesnow_server(python, workdir / "fakesnow.log") as port:
        loaded = load_fakesnow(python, raw.warehouse, port, "RAW", create=["PROD"])
        assert "RAW.TAP_POSTGRES.GITLAB_DB_MEMBERS" in loaded
        dbt = dbt_snowflake(port, workdir, database="PROD", raw_database="RAW", schema="analytics")
        dbt("build")
        statuses = Counter(r["status"] for r in dbt.run_results())
        assert set(statuses) <= {"success", "pass"}, statuses
        assert sum(statuses.values()) == len(postgres_build.results)
        dbt("source", "freshness")

        names = sorted(postgres_build.counts)
        counts, emails, activity, history = query_fakesnow(
            python,
            port,
            " UNION ALL ".join(
                f"SELECT '{name}', COUNT(*) FROM PROD.{name.split('.')[0]}.{name.split('.')[1]}"
                for name in names
            ),
            "SELECT email_address FROM PROD.PUMPS_SENSITIVE.PUMP_MARKETING_CONTACT",
            "SELECT SUM(issues_created), SUM(issues_closed), SUM(merge_requests_created), "
            "SUM(notes_created), SUM(ci_builds_created), SUM(ci_builds_failed), "
            "COUNT_IF(is_internal_project) FROM PROD.PUMPS.PUMP_PROJECT_ACTIVITY",
            "SELECT COUNT_IF(is_current), COUNT_IF(valid_to IS NULL), COUNT(*) "
            "FROM PROD.ANALYTICS.GITLAB_DOTCOM_MEMBERS_HISTORY",
        )
    assert dict(counts) == postgres_build.counts
    assert {r[0] for r in emails} == {
        r[0]
        for r in rows(
            raw.warehouse, "SELECT email_address FROM pumps_sensitive.pump_marketing_contact"
        )
    }
    assert activity[0] == list(
        rows(
            raw.warehouse,
            "SELECT sum(issues_created), sum(issues_closed), sum(merge_requests_created), "
            "sum(notes_created), sum(ci_builds_created), sum(ci_builds_failed), "
            "count(*) FILTER (WHERE is_internal_project) FROM pumps.pump_project_activity",
        )[0]
    )
    assert history[0] == list(
        rows(
            raw.warehouse,
            "SELECT count(*) FILTER (WHERE is_current), count(*) FILTER (WHERE valid_to IS NULL), "
            "count(*) FROM analytics.gitlab_dotcom_members_history",
        )[0]
    )
