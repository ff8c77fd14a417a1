from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from pgp_testkit.reference import COPIED, COPIES, REFERENCE, SHARED, reference_dir

from tap_gitlab_postgres.manifest import (
    ConnectionEnv,
    LoadType,
    Manifest,
    ManifestError,
    load_connection_file,
    load_manifest,
    load_manifests,
)

DOTCOM = REFERENCE / "el_gitlab_dotcom_db_manifest.yaml"
DOTCOM_SCD = REFERENCE / "el_gitlab_dotcom_scd_db_manifest.yaml"
LEGACY = REFERENCE / "legacy_el_gitlab_com_db_manifest.yaml"
DATA = Path(__file__).parent / "data"

BOARDS = """\
  boards:
    export_schema: 'gitlab_com'
    export_table: 'boards'
    export_table_primary_key: id
    import_db: GITLAB_DB
    import_query: |-
      SELECT id, updated_at
      FROM boards
      WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp
        AND '{END_TIMESTAMP}'::timestamp
"""


@pytest.fixture
def reference() -> None:
    reference_dir()


@cache
def loaded(path: Path) -> Manifest:
    return load_manifest(path)


def by_key(manifest: Manifest) -> dict:
    return {table.key: table for table in manifest.tables}


def write(tmp_path: Path, text: str, name: str = "manifest.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path | list[Path]) -> list[str]:
    with pytest.raises(ManifestError) as exc:
        load_manifests(path if isinstance(path, list) else [path])
    assert str(exc.value) == "\n".join(exc.value.problems)
    return exc.value.problems


# --- GitLab's real manifests --------------------------------------------------------


@pytest.mark.usefixtures("reference")
def test_reference_copies_are_verbatim() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present beside the repository")
    shared = sorted(p.name for pattern in COPIED for p in SHARED.glob(pattern))
    assert shared == sorted(p.name for pattern in COPIED for p in COPIES.glob(pattern))
    assert "gitlab_manifest_tables.sql" in shared
    for name in shared:
        assert (COPIES / name).read_bytes() == (SHARED / name).read_bytes(), name


def test_current_incremental_manifest() -> None:
    manifest = loaded(DOTCOM)
    assert len(manifest.tables) == 143
    assert manifest.connection_env is None
    assert Counter(t.load_type for t in manifest.tables) == {
        LoadType.INCREMENTAL: 142,
        LoadType.LOAD_BY_ID: 1,
    }
    assert Counter(t.replication_key for t in manifest.tables) == {
        "updated_at": 133,
        "created_at": 9,
        None: 1,
    }
    assert sum(t.deletes_exempt for t in manifest.tables) == 132
    assert sum(t.advanced_metadata for t in manifest.tables) == 4
    tables = by_key(manifest)

    diff_commits = tables["merge_request_diff_commits"]
    assert diff_commits.load_type is LoadType.LOAD_BY_ID
    assert diff_commits.primary_key == "merge_request_diff_id"
    assert diff_commits.replication_key is None

    pipelines = tables["p_ci_pipelines"]
    assert pipelines.stream_name == "gitlab_db_ci_pipelines"
    assert pipelines.target_table == "GITLAB_DB_CI_PIPELINES"
    assert pipelines.database_type == "ci"

    labels = tables["labels_internal_only"]
    assert labels.placeholders == (
        "BEGIN_TIMESTAMP",
        "END_TIMESTAMP",
        "INTERNAL_NAMESPACE_IDS",
        "INTERNAL_PROJECT_IDS",
    )
    assert labels.additional_filtering is not None
    assert tables["audit_events"].replication_key == "created_at"
    assert tables["merge_requests"].target_table == "GITLAB_DB_MERGE_REQUESTS"


@pytest.mark.usefixtures("reference")
def test_is_incremental_disagreements_are_warnings() -> None:
    warnings = loaded(DOTCOM).warnings
    assert [w.split(": ")[1] for w in warnings] == [
        "table 'keys'",
        "table 'namespaces'",  # selects traversal_ids twice: loaded once
        "table 'related_epic_links'",
    ]
    assert "select item 'traversal_ids' appears 2 times" in warnings[1]
    assert by_key(loaded(DOTCOM))["keys"].load_type is LoadType.INCREMENTAL


@pytest.mark.usefixtures("reference")
def test_current_scd_manifest() -> None:
    manifest = loaded(DOTCOM_SCD)
    assert len(manifest.tables) == 67
    assert {t.load_type for t in manifest.tables} == {LoadType.SCD}
    assert manifest.warnings == ()
    tables = by_key(manifest)
    assert sum(t.advanced_metadata for t in manifest.tables) == 18
    assert tables["requirements"].advanced_metadata is False
    assert tables["ci_pipeline_metadata_internal_only"].primary_key == "pipeline_id"
    # Expression keys resolve to the alias the query selects them under.
    assert tables["deployment_merge_requests"].primary_key == "deployment_merge_request_id"
    assert tables["repository_languages"].primary_key == "project_programming_language_id"
    lower_import_db = [t for t in manifest.tables if t.import_db == "gitlab_db"]
    assert len(lower_import_db) == 2
    assert all(t.target_table.startswith("GITLAB_DB_") for t in lower_import_db)


@pytest.mark.usefixtures("reference")
def test_legacy_manifest_with_connection_info() -> None:
    manifest = loaded(LEGACY)
    assert len(manifest.tables) == 117
    assert {t.load_type for t in manifest.tables} == {LoadType.INCREMENTAL}
    assert {t.database_type for t in manifest.tables} == {None}
    assert manifest.connection_env == ConnectionEnv(
        database="GITLAB_COM_DB_NAME",
        host="GITLAB_COM_DB_HOST",
        password="GITLAB_COM_DB_PASS",
        port="GITLAB_COM_PG_PORT",
        user="GITLAB_COM_DB_USER",
    )


@pytest.mark.usefixtures("reference")
def test_database_type_filter() -> None:
    assert len(loaded(DOTCOM).for_database_type("main").tables) == 129
    assert len(loaded(DOTCOM).for_database_type("ci").tables) == 14
    assert len(loaded(DOTCOM_SCD).for_database_type("ci").tables) == 8
    # Tables without database_type are kept.
    assert len(loaded(LEGACY).for_database_type("ci").tables) == 117
    main, scd = load_manifests([DOTCOM, DOTCOM_SCD], database_type="main")
    assert (len(main.tables), len(scd.tables)) == (129, 59)


@pytest.mark.usefixtures("reference")
def test_legacy_and_current_cannot_run_together() -> None:
    problems = problems_of([DOTCOM, LEGACY])
    assert len(problems) == 110
    assert problems[0].startswith(f"{LEGACY}: table '")
    assert f"(also table 'alert_management_http_integrations' in {DOTCOM})" in "\n".join(problems)


def test_placeholder_styles_and_informational_keys() -> None:
    manifest = load_manifest(DATA / "ops_and_customers_manifest.yaml")
    assert manifest.warnings == ()
    tables = by_key(manifest)
    assert tables["ci_stages"].placeholders == ("EXECUTION_DATE", "HOURS")
    assert tables["ci_stages"].target_table == "GITLAB_OPS_DB_CI_STAGES"
    assert tables["usage_data"].placeholders == ("DAYS", "EXECUTION_DATE")
    assert tables["usage_data"].replication_key == "updated_at"
    assert tables["billing_accounts"].load_type is LoadType.SCD
    assert tables["billing_accounts"].advanced_metadata is True
    assert [t.key for t in load_manifest(manifest.path, "ops").tables] == [
        "ci_stages",
        "usage_data",
    ]


# --- flags, warnings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected", "warns"),
    [
        ("true", True, False),
        ("'true'", True, False),
        ("'TRUE'", True, False),
        ("True", True, False),
        ("false", False, False),
        ("'yes please'", False, True),
        ("1", False, True),
    ],
)
def test_flags(tmp_path: Path, value: str, expected: bool, warns: bool) -> None:
    text = f"tables:\n{BOARDS}    advanced_metadata: {value}\n    deletes_exempt: {value}\n"
    manifest = load_manifest(write(tmp_path, text))
    table = manifest.tables[0]
    assert (table.advanced_metadata, table.deletes_exempt) == (expected, expected)
    assert bool(manifest.warnings) == warns


def test_unknown_keys_warn(tmp_path: Path) -> None:
    path = write(tmp_path, f"owner: me\ntables:\n{BOARDS}    append_only: true\n")
    manifest = load_manifest(path)
    assert len(manifest.tables) == 1
    assert manifest.warnings == (
        f"{path}: unknown top-level key 'owner' (ignored)",
        f"{path}: table 'boards': unknown key 'append_only' (ignored)",
    )


def test_connection_file() -> None:
    env = load_connection_file(DATA / "el_saas_connection_info.yaml", "ci")
    assert env == ConnectionEnv(
        database="GITLAB_COM_CI_DB_NAME",
        host="GITLAB_COM_CI_DB_HOST",
        password="GITLAB_COM_CI_DB_PASS",
        port="GITLAB_COM_CI_DB_PORT",
        user="GITLAB_COM_CI_DB_USER",
    )
    assert (
        load_connection_file(DATA / "el_saas_connection_info.yaml", "customers").port == "PG_PORT"
    )


def test_connection_file_missing_block(tmp_path: Path) -> None:
    path = DATA / "el_saas_connection_info.yaml"
    with pytest.raises(ManifestError) as exc:
        load_connection_file(path, "nope")
    assert exc.value.problems == [
        f"{path}: no block 'connection_info.postgres_source_connection_nope'"
        " (database types in this file: cells, ci, customers, main, ops)"
    ]
    incomplete = write(
        tmp_path, "connection_info:\n  postgres_source_connection_main:\n    host: H\n"
    )
    with pytest.raises(ManifestError, match="is missing key 'database'"):
        load_connection_file(incomplete, "main")


# --- invalid manifests: one line per problem, naming file and table -----------------


@pytest.mark.parametrize(
    ("table_yaml", "problem"),
    [
        (BOARDS.replace("    import_db: GITLAB_DB\n", ""), "missing required key 'import_db'"),
        (
            BOARDS.replace("import_db: GITLAB_DB", "import_db: ''"),
            "'import_db' must be a non-empty string, got an empty str",
        ),
        (
            BOARDS.replace("export_table_primary_key: id", "export_table_primary_key: 5"),
            "'export_table_primary_key' must be a non-empty string, got int",
        ),
        (
            BOARDS.replace("export_table: 'boards'", "export_table: 'my.boards'"),
            "'export_table' must contain only letters, digits and underscores, got 'my.boards'",
        ),
        (
            BOARDS.replace("FROM boards", "FROM boards_{USER}"),
            "import_query has unknown placeholder {USER}",
        ),
        (BOARDS.replace("FROM boards", "FROM"), "query does not parse: "),
        (BOARDS + "    incremental_type: by_magic\n", "'incremental_type' must be 'load_by_id'"),
        (
            BOARDS + "    incremental_type: load_by_id\n",
            "'incremental_type: load_by_id' cannot be combined with time-window placeholders",
        ),
        (BOARDS + "    additional_filtering: 5\n", "'additional_filtering' must be a string"),
        ("  boards: [1, 2]\n", "must be a mapping of table settings, got list"),
    ],
)
def test_invalid_table(tmp_path: Path, table_yaml: str, problem: str) -> None:
    path = write(tmp_path, f"tables:\n{table_yaml}")
    [line] = problems_of(path)
    assert line.startswith(f"{path}: table 'boards': {problem}")


def test_all_problems_of_a_file_are_reported(tmp_path: Path) -> None:
    text = "tables:\n" + BOARDS.replace("import_db: GITLAB_DB", "import_db:") + "  other: {}\n"
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}: table 'boards': 'import_db' must be a non-empty string, got nothing",
        *(
            f"{path}: table 'other': missing required key '{key}'"
            for key in (
                "import_db",
                "import_query",
                "export_schema",
                "export_table",
                "export_table_primary_key",
            )
        ),
    ]


def test_duplicate_stream_in_file(tmp_path: Path) -> None:
    copy = BOARDS.replace("  boards:", "  boards_copy:")
    path = write(tmp_path, f"tables:\n{BOARDS}{copy}")
    assert problems_of(path) == [
        f"{path}: table 'boards_copy': duplicate stream 'gitlab_db_boards' (also table 'boards')"
    ]


def test_duplicate_stream_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, f"tables:\n{BOARDS}", "a.yaml")
    second = write(tmp_path, f"tables:\n{BOARDS}", "b.yaml")
    assert problems_of([first, second]) == [
        f"{second}: table 'boards': duplicate stream 'gitlab_db_boards'"
        f" (also table 'boards' in {first})"
    ]


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = write(tmp_path, f"tables:\n{BOARDS}{BOARDS}")
    assert problems_of(path) == [
        f"{path}: duplicate key 'boards' at line 12 (YAML would keep only the last)"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- a\n- b\n", "must be a mapping with a 'tables' key, got list"),
        ("", "must be a mapping with a 'tables' key, got an empty file"),
        ("{}\n", "'tables' must be a non-empty mapping (missing)"),
        ("tables:\n", "'tables' must be a non-empty mapping (got nothing)"),
        ("tables: [a]\n", "'tables' must be a non-empty mapping (got list)"),
        ("tables:\n  a: [\n", "invalid YAML at line 3, column 1: "),
        ("tables: {a: 1}\n  b: 2\n", "invalid YAML at line 2"),
    ],
)
def test_invalid_file(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    [line] = problems_of(path)
    assert line.startswith(f"{path}: {problem}")


def test_invalid_connection_info(tmp_path: Path) -> None:
    path = write(tmp_path, f"connection_info:\n  user: U\n  pass: 3\ntables:\n{BOARDS}")
    assert problems_of(path) == [
        f"{path}: 'connection_info' is missing key 'database' (an environment variable name)",
        f"{path}: 'connection_info' is missing key 'host' (an environment variable name)",
        f"{path}: 'connection_info.pass' must be an environment variable name, got int",
        f"{path}: 'connection_info' is missing key 'port' (an environment variable name)",
    ]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert problems_of(missing) == [f"{missing}: file not found"]
    assert problems_of(tmp_path) == [f"{tmp_path}: is a directory, not a file"]
