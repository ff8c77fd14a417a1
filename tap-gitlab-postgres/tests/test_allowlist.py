from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml
from pgp_testkit.dsn import connection_config

from tap_gitlab_postgres.allowlist import AllowListError, AllowLists
from tap_gitlab_postgres.sqltext import sql_string
from tap_gitlab_postgres.streams import PgpStream
from tap_gitlab_postgres.tap import TapGitlabPostgres

DATA = Path(__file__).parent / "data"
PROJECTS = DATA / "internal_gitlab_projects.csv"
NAMESPACES = DATA / "internal_gitlab_namespaces.csv"


def test_load_seed_csvs() -> None:
    allow = AllowLists.load(PROJECTS, NAMESPACES)
    assert allow.project_ids == (278964, 13083, 7764, 4359271)
    assert allow.project_paths[-1] == "gitlab-data/it's-quoted"
    assert allow.namespace_ids == (9970, 6543)
    assert allow.namespace_paths == ("gitlab-org", "gitlab-com")


def test_placeholder_values_are_sql_lists() -> None:
    values = AllowLists.load(PROJECTS, NAMESPACES).placeholder_values()
    assert values["INTERNAL_PROJECT_IDS"] == "(278964, 13083, 7764, 4359271)"
    assert values["INTERNAL_NAMESPACE_IDS"] == "(9970, 6543)"
    assert values["INTERNAL_NAMESPACE_PATHS"] == "('gitlab-org', 'gitlab-com')"
    assert values["INTERNAL_PROJECT_PATHS"] == (
        "('gitlab-org/gitlab', 'gitlab-org/gitlab-foss', 'gitlab-com/www-gitlab-com',"
        " 'gitlab-data/it''s-quoted')"
    )
    # Namespace paths first, then project paths.
    assert values["INTERNAL_PATHS"].startswith("('gitlab-org', 'gitlab-com', 'gitlab-org/gitlab'")


def test_single_element_is_valid_sql() -> None:
    # pgp's Python tuple repr would give "(1,)".
    assert AllowLists(project_ids=(1,)).placeholder_values()["INTERNAL_PROJECT_IDS"] == "(1)"


def test_empty_lists_render_as_null() -> None:
    values = AllowLists.empty().placeholder_values()
    assert set(values) == {
        "INTERNAL_PROJECT_IDS",
        "INTERNAL_NAMESPACE_IDS",
        "INTERNAL_PROJECT_PATHS",
        "INTERNAL_NAMESPACE_PATHS",
        "INTERNAL_PATHS",
    }
    assert set(values.values()) == {"(NULL)"}
    assert AllowLists.load(None, None) == AllowLists.empty()


def test_duplicates_are_dropped_and_paths_merged(tmp_path: Path) -> None:
    projects = tmp_path / "p.csv"
    projects.write_text("project_id,project_path,extra\n1,a,x\n1,a,x\n2,shared,y\n")
    namespaces = tmp_path / "n.csv"
    namespaces.write_text("\ufeffnamespace_path,namespace_id\nshared,3\n")  # BOM, other order
    allow = AllowLists.load(projects, namespaces)
    assert allow.project_ids == (1, 2)
    assert allow.namespace_ids == (3,)
    assert allow.placeholder_values()["INTERNAL_PATHS"] == "('shared', 'a')"


def test_sql_string_quoting() -> None:
    assert sql_string("it's") == "'it''s'"
    # standard_conforming_strings: backslashes are literal.
    assert sql_string("a\\b") == "'a\\b'"
    with pytest.raises(ValueError, match="NUL"):
        sql_string("a\x00b")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("project_id,project_path\n1,a\nx1,b\n", ":3: project_id must be an integer, got 'x1'"),
        ("project_id,project_path\n1.0,a\n", ":2: project_id must be an integer, got '1.0'"),
        ("project_id,project_path\n1,\n", ":2: project_path is empty"),
        ("project_id,project_path\n1,a,b\n", ":2: expected 2 fields, got 3"),
        ("id,path\n1,a\n", ":1: header must contain columns project_id,project_path"),
        ("", ":1: header must contain columns project_id,project_path"),
    ],
)
def test_junk_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "projects.csv"
    path.write_text(content)
    with pytest.raises(AllowListError) as exc:
        AllowLists.load(path, None)
    assert str(exc.value).startswith(f"{path}{message}")


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(AllowListError, match=r"nope\.csv: allow-list file not found"):
        AllowLists.load(PROJECTS, missing)


def _tap_with(
    tmp_path: Path, filtering: str, dsn: str | None = None, **settings: str
) -> TapGitlabPostgres:
    table = {
        "import_db": "GITLAB_DB",
        "export_schema": "gitlab_com",
        "export_table": "issues",
        "export_table_primary_key": "id",
        "import_query": "SELECT id, project_id FROM issues",
        "additional_filtering": filtering,
    }
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"tables": {"issues": table}}))
    config = {
        "manifest_path": str(manifest),
        **connection_config(dsn or "postgresql://u@localhost:5432/d"),
    }
    return TapGitlabPostgres(config={**config, **settings}, validate_config=True)


@pytest.mark.parametrize(
    ("placeholder", "setting"),
    [
        ("INTERNAL_PROJECT_IDS", "internal_projects_csv"),
        ("INTERNAL_NAMESPACE_PATHS", "internal_namespaces_csv"),
        ("INTERNAL_PATHS", "internal_namespaces_csv"),
    ],
)
def test_a_placeholder_needs_its_allow_list_setting(
    tmp_path: Path, placeholder: str, setting: str
) -> None:
    # No database is reached: the allow lists are settled before any query.
    with pytest.raises(AllowListError) as exc:
        _tap_with(tmp_path, f"WHERE project_id IN {{{placeholder}}}")
    assert str(exc.value) == (
        f"manifest.yaml: table 'issues' uses {{{placeholder}}}, but setting '{setting}'"
        " (the allow list CSV) is not set"
    )


def test_only_the_lists_a_manifest_uses_are_needed(tmp_path: Path, fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE issues (id bigint PRIMARY KEY, project_id bigint)")
    tap = _tap_with(
        tmp_path,
        "WHERE project_id IN {INTERNAL_PROJECT_IDS}",
        fresh_db,
        internal_projects_csv=str(PROJECTS),
    )
    stream = tap.streams["gitlab_db_issues"]
    assert isinstance(stream, PgpStream)
    assert stream.run.allow == AllowLists.load(PROJECTS, None)
