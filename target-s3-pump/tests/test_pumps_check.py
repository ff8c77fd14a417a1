"""pumps-check: validation for review, and the extractor selection derived from pumps.yml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pgp_testkit.s3pump import GITLAB_PUMPS_YML, pump, write_pumps

from target_s3_pump.cli import main
from target_s3_pump.config import normalize_stages

GITLAB_STAGES = ["--stage", "s3_data_pump", "--stage", "s3_data_science_pump"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_gitlab_pumps_yml_validates(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([str(GITLAB_PUMPS_YML), *GITLAB_STAGES], capsys)
    assert code == 0
    assert err == f"pumps-check: {GITLAB_PUMPS_YML}: 6 pump(s), valid\n"
    lines = out.splitlines()
    assert lines[0].split() == ["model", "stream", "replication", "files", "stage", "owner"]
    assert lines[1].split() == [
        "pump_marketing_contact",
        "pumps_sensitive-pump_marketing_contact",
        "INCREMENTAL",
        "on",
        "last_changed",
        "single",
        "s3_data_pump",
        "@jjstark",
    ]
    assert "FULL_TABLE" in lines[3] and "pump_disaster_relief_fund" in lines[3]


def test_stages_unchecked_without_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([str(GITLAB_PUMPS_YML)], capsys)
    assert code == 0
    assert "note: stage names not checked" in err


def test_stages_from_meltano_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARGET_S3_PUMP_STAGES", json.dumps({"s3_data_pump": {"bucket": "b"}}))
    code, _, err = run([str(GITLAB_PUMPS_YML)], capsys)
    assert code == 1
    assert err.count("unknown stage 's3_data_science_pump'") == 3
    assert err.splitlines()[-1] == "pumps-check: 3 problem(s); nothing was written"


# Meltano may deliver an object setting set through the environment with dotted keys.
FLAT_STAGES = {
    "s3_data_pump.prefix": "data_pump",
    "s3_data_science_pump.bucket": "gitlab-data-science",
    "s3_data_science_pump.prefix": "scores",
}


def test_flattened_stages_from_meltano_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARGET_S3_PUMP_STAGES", json.dumps(FLAT_STAGES))
    code, _, err = run([str(GITLAB_PUMPS_YML)], capsys)
    assert code == 0, err
    assert "unknown stage" not in err


def test_flattened_stages_in_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {"pumps_file": str(GITLAB_PUMPS_YML), "bucket": "gitlab-pumps", "stages": FLAT_STAGES}
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, out, err = run(["--config", str(tmp_path / "config.json")], capsys)
    assert code == 0, err
    assert "s3://gitlab-pumps/data_pump/pump_marketing_contact/" in out
    assert "s3://gitlab-data-science/scores/pump_churn_forecasting_scores/" in out


def test_normalize_stages_folds_dotted_keys_into_the_nested_form() -> None:
    assert normalize_stages(FLAT_STAGES) == {
        "s3_data_pump": {"prefix": "data_pump"},
        "s3_data_science_pump": {"bucket": "gitlab-data-science", "prefix": "scores"},
    }
    nested = {"a": {"bucket": "b", "prefix": "p"}}
    assert normalize_stages(nested) == nested
    # Both forms for one stage merge; the dotted key is the more specific setting.
    assert normalize_stages({"a.prefix": "x", "a": {"bucket": "b", "prefix": "p"}}) == {
        "a": {"bucket": "b", "prefix": "x"}
    }
    assert normalize_stages({"a": {"bucket": "b"}, "a.prefix": "x"}) == {
        "a": {"bucket": "b", "prefix": "x"}
    }
    # A dotted key that is not bucket/prefix stays as it is (reported as not a mapping).
    assert normalize_stages({"a.region": "x"}) == {"a.region": "x"}
    assert normalize_stages("nope") == "nope"


def test_invalid_file_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pumps(tmp_path, [pump("pump_a"), pump("pump_a"), {"model": "pump_b"}])
    code, out, err = run([str(path), "--stage", "s3_data_pump"], capsys)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"pumps-check: error: {path}:6: pump 'pump_a': duplicate model (already listed at line 2)",
        f"pumps-check: error: {path}:10: pump 'pump_b': missing key 'timestamp_column'",
        f"pumps-check: error: {path}:10: pump 'pump_b': missing key 'sensitive'",
        f"pumps-check: error: {path}:10: pump 'pump_b': missing key 'owner'",
        "pumps-check: 4 problem(s); nothing was written",
    ]


def test_config_validates_every_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {
        "pumps_file": str(GITLAB_PUMPS_YML),
        "bucket": "gitlab-pumps",
        "stages": {
            "s3_data_pump": {"prefix": "data_pump"},
            "s3_data_science_pump": {"bucket": "gitlab-data-science", "prefix": "scores"},
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, out, _ = run(["--config", str(tmp_path / "config.json")], capsys)
    assert code == 0
    assert "s3://gitlab-pumps/data_pump/pump_marketing_contact/" in out
    assert "s3://gitlab-data-science/scores/pump_churn_forecasting_scores/" in out

    config["stages"] = {"s3_data_pump": {"prefix": "data_pump"}}
    config["format"] = "xml"
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, _, err = run(["--config", str(tmp_path / "config.json")], capsys)
    assert code == 1
    assert (
        "pumps-check: error: setting 'format' must be one of csv, jsonl, parquet, got 'xml'" in err
    )
    assert err.count("unknown stage 's3_data_science_pump'") == 3


def test_usage_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TARGET_S3_PUMP_PUMPS_FILE", raising=False)
    code, _, err = run([], capsys)
    assert code == 2 and "no pumps.yml given" in err
    with pytest.raises(SystemExit) as info:
        main([str(GITLAB_PUMPS_YML), "--no-such-option"])
    assert info.value.code == 2


# --------------------------------------------------------------------------- selection


def test_adding_a_pump_entry_adds_its_stream_to_the_extractor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = yaml.safe_load(GITLAB_PUMPS_YML.read_text())["pumps"]
    path = write_pumps(tmp_path, entries)
    code, before, _ = run([str(path), "--select-json"], capsys)
    assert code == 0 and len(json.loads(before)["select"]) == 6

    # The one change a new pump needs (besides its dbt model):
    write_pumps(
        tmp_path,
        [
            *entries,
            pump(
                "pump_smb_daily_case_automation",
                "query_run_date",
                True,
                single=True,
                stage="s3_data_pump",
                owner="@mfleisher",
            ),
        ],
    )
    code, after, _ = run([str(path), "--select-json"], capsys)
    selection = json.loads(after)
    assert selection["select"][:-1] == json.loads(before)["select"]
    assert selection["select"][-1] == "pumps_sensitive-pump_smb_daily_case_automation.*"
    assert selection["metadata"]["pumps_sensitive-pump_smb_daily_case_automation"] == {
        "replication-method": "INCREMENTAL",
        "replication-key": "query_run_date",
    }
    assert len(selection["select"]) == len(selection["metadata"]) == 7


def test_schema_names_for_snowflake(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_pumps(tmp_path, [pump("pump_open", None), pump("pump_closed", sensitive=True)])
    code, out, _ = run(
        [
            str(path),
            "--select-json",
            "--pumps-schema",
            "PUMPS",
            "--sensitive-schema",
            "PUMPS_SENSITIVE",
        ],
        capsys,
    )
    assert code == 0
    assert json.loads(out) == {
        "select": ["PUMPS-pump_open.*", "PUMPS_SENSITIVE-pump_closed.*"],
        "metadata": {
            "PUMPS-pump_open": {"replication-method": "FULL_TABLE"},
            "PUMPS_SENSITIVE-pump_closed": {
                "replication-method": "INCREMENTAL",
                "replication-key": "updated_at",
            },
        },
    }


def test_invalid_pumps_yml_generates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pumps(tmp_path, [{"model": "pump_x"}])
    code, out, err = run([str(path), "--select-json"], capsys)
    assert code == 1 and out == ""
    assert "missing key 'timestamp_column'" in err
