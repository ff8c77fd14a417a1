"""singer-sdk's standard tap tests, against a real source built at collection time.

The SDK builds its test class while pytest collects, from live streams, so the cluster
and the source database must exist before the test functions run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
from pgp_testkit.dsn import connection_config
from pgp_testkit.session import session_cluster
from pgp_testkit.tap import write_manifest
from singer_sdk.testing import get_tap_test_class

from tap_gitlab_postgres.tap import TapGitlabPostgres


def _source_config() -> dict:
    dsn = session_cluster().create_database("sdk_standard_tests", drop=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE projects (id bigint PRIMARY KEY, name text, archived boolean,
                                   updated_at timestamp without time zone);
            INSERT INTO projects SELECT g, 'project ' || g, g % 3 = 0,
                now()::timestamp - g * interval '1 minute' FROM generate_series(1, 40) g;
            CREATE TABLE members (id bigint PRIMARY KEY, user_id bigint, access_level int);
            INSERT INTO members SELECT g, g + 100, 30 FROM generate_series(1, 15) g;
            """
        )
    manifest = write_manifest(
        Path(tempfile.mkdtemp(prefix="sdk-standard-")),
        {
            "projects": {
                "export_table": "projects",
                "import_query": "SELECT id, name, archived, updated_at FROM projects\n"
                "WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp "
                "AND '{END_TIMESTAMP}'::timestamp",
            },
            "members": {
                "export_table": "members",
                "advanced_metadata": True,
                "import_query": "SELECT id, user_id, access_level FROM members",
            },
        },
    )
    return {**connection_config(dsn), "manifest_path": str(manifest)}


TestTapGitlabPostgres = get_tap_test_class(TapGitlabPostgres, config=_source_config())
