from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pgp_testkit.reference import REFERENCE, reference_dir

from tap_gitlab_postgres.cli import main

DATA = Path(__file__).parent / "data"
OPS = DATA / "ops_and_customers_manifest.yaml"
REQUIRED_JSON_KEYS = {"stream", "load_type", "replication_key", "primary_key", "target_table"}

BOARDS = """\
tables:
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


def reference_manifests() -> list[str]:
    paths = sorted(str(p) for p in reference_dir().glob("*.yaml"))
    assert paths, f"no manifests in {REFERENCE}"
    return paths


def test_check_reference_manifests_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", *reference_manifests(), "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert len(rows) == 143 + 67 + 117
    assert all(row.keys() >= REQUIRED_JSON_KEYS for row in rows)
    counts = {
        t: sum(r["load_type"] == t for r in rows) for t in ("incremental", "load_by_id", "scd")
    }
    assert counts == {"incremental": 142 + 117, "load_by_id": 1, "scd": 67}
    pipelines = next(r for r in rows if r["table"] == "p_ci_pipelines")
    assert pipelines == {
        "file": str(REFERENCE / "el_gitlab_dotcom_db_manifest.yaml"),
        "table": "p_ci_pipelines",
        "stream": "gitlab_db_ci_pipelines",
        "load_type": "incremental",
        "replication_key": "updated_at",
        "primary_key": "id",
        "target_table": "GITLAB_DB_CI_PIPELINES",
        "placeholders": ["BEGIN_TIMESTAMP", "END_TIMESTAMP"],
        "database_type": "ci",
    }
    # The two is_incremental disagreements and namespaces' repeated traversal_ids are
    # warnings only.
    assert err.count("warning: ") == 3


def test_check_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(OPS)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"{OPS}: 3 tables (incremental 2, load_by_id 0, scd 1)"
    assert lines[1].split() == [
        "TABLE",
        "STREAM",
        "LOAD_TYPE",
        "REPLICATION_KEY",
        "PRIMARY_KEY",
        "TARGET_TABLE",
        "PLACEHOLDERS",
    ]
    assert lines[2].split() == [
        "ci_stages",
        "gitlab_ops_db_ci_stages",
        "incremental",
        "updated_at",
        "id",
        "GITLAB_OPS_DB_CI_STAGES",
        "EXECUTION_DATE,HOURS",
    ]
    assert lines[3].split()[2:4] == ["scd", "-"]
    assert lines[-1] == "OK: 1 files, 3 tables (incremental 2, load_by_id 0, scd 1)"
    assert err == ""


def test_database_type_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", "--database-type", "customers", str(OPS)]) == 0
    assert [r["table"] for r in json.loads(capsys.readouterr().out)] == [
        "billing_accounts",
        "usage_data",
    ]


def test_invalid_manifests_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BOARDS.replace("FROM boards", "FROM boards_{USER}") + "    owner: me\n")
    missing = tmp_path / "missing.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text("tables: [\n")
    assert main(["check", "--json", str(bad), str(missing), str(broken), str(OPS)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"warning: {bad}: table 'boards': unknown key 'owner' (ignored)",
        f"{bad}: table 'boards': import_query has unknown placeholder {{USER}}"
        " (known: {BEGIN_TIMESTAMP}, {DAYS}, {END_TIMESTAMP}, {EXECUTION_DATE}, {HOURS},"
        " {INTERNAL_NAMESPACE_IDS}, {INTERNAL_NAMESPACE_PATHS}, {INTERNAL_PATHS},"
        " {INTERNAL_PROJECT_IDS}, {INTERNAL_PROJECT_PATHS}; write literal braces as {{ and }})",
        f"{missing}: file not found",
        f"{broken}: invalid YAML at line 2, column 1:"
        " did not find expected node content (while parsing a flow node)",
    ]


def test_duplicate_streams_across_files_of_one_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(BOARDS)
    second.write_text(BOARDS)
    assert main(["check", str(first), str(second)]) == 1
    assert capsys.readouterr().err == (
        f"{second}: table 'boards': duplicate stream 'gitlab_db_boards'"
        f" (also table 'boards' in {first})\n"
    )
    # A manifest with its own (legacy) connection_info is another source.
    second.write_text(
        "connection_info: {database: D, host: H, pass: P, port: PORT, user: U}\n" + BOARDS
    )
    assert main(["check", str(first), str(second)]) == 0


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check"])
    assert exc.value.code == 2


def test_console_script(tmp_path: Path) -> None:
    script = shutil.which("pgp-manifest", path=str(Path(sys.executable).parent))
    assert script is not None, "pgp-manifest console script not installed"
    ok = subprocess.run([script, "check", "--json", str(OPS)], capture_output=True, text=True)
    assert (ok.returncode, len(json.loads(ok.stdout))) == (0, 3)
    bad = subprocess.run(
        [script, "check", str(tmp_path / "x.yaml")], capture_output=True, text=True
    )
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        1,
        "",
        f"{tmp_path / 'x.yaml'}: file not found\n",
    )
