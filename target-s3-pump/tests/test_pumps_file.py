"""pumps.yml validation: GitLab's real file passes; each problem is one line naming file/pump."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgp_testkit.s3pump import GITLAB_PUMPS_YML, REFERENCE_PUMPS_YML

from target_s3_pump.pumps import (
    Pump,
    PumpsFile,
    PumpsFileError,
    Schemas,
    StreamRejected,
    load_pumps,
    parse_pumps,
)

GITLAB_STAGES = {"s3_data_pump", "s3_data_science_pump"}


def problems(text: str, stages: set[str] | None = None) -> list[str]:
    with pytest.raises(PumpsFileError) as info:
        parse_pumps(text, Path("pumps.yml"), stages)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_gitlab_pumps_yml_validates_unchanged() -> None:
    pumps = load_pumps(GITLAB_PUMPS_YML, stages=GITLAB_STAGES)
    assert [p.model for p in pumps] == [
        "pump_marketing_contact",
        "pump_subscription_product_usage",
        "pump_disaster_relief_fund",
        "pump_daily_data_science_scores",
        "pump_churn_forecasting_scores",
        "pump_opportunity_forecasting_scores",
    ]
    contact = pumps.get("pump_marketing_contact")
    assert contact == Pump(
        model="pump_marketing_contact",
        timestamp_column="last_changed",
        sensitive=True,
        owner="@jjstark",
        single=True,
        stage="s3_data_pump",
        line=2,
    )
    relief = pumps.get("pump_disaster_relief_fund")
    assert relief is not None and relief.timestamp_column is None and not relief.incremental
    assert all(p.sensitive for p in pumps)


def test_shared_reference_copy_is_verbatim() -> None:
    if not REFERENCE_PUMPS_YML.is_file():
        pytest.skip(f"{REFERENCE_PUMPS_YML} not present beside the repository")
    assert GITLAB_PUMPS_YML.read_bytes() == REFERENCE_PUMPS_YML.read_bytes()
    assert len(load_pumps(REFERENCE_PUMPS_YML, stages=GITLAB_STAGES)) == 6


def test_gitlab_pumps_yml_needs_its_stages_configured() -> None:
    with pytest.raises(PumpsFileError) as info:
        load_pumps(GITLAB_PUMPS_YML, stages={"s3_data_pump"})
    assert len(info.value.problems) == 3  # the three data-science pumps
    assert all("unknown stage 's3_data_science_pump'" in p for p in info.value.problems)
    assert info.value.problems[0].startswith(f"{GITLAB_PUMPS_YML}:20: pump ")


def test_optional_keys_default() -> None:
    pumps = parse_pumps(
        "pumps:\n  - model: pump_a\n    timestamp_column: null\n    sensitive: false\n"
        "    owner: '@me'\n",
        Path("p.yml"),
    )
    assert pumps.get("pump_a") == Pump(
        "pump_a", None, False, "@me", single=False, stage=None, line=2
    )


def test_each_problem_is_one_line_naming_file_line_and_pump() -> None:
    text = """\
pumps:
  - model: pump_ok
    timestamp_column: updated_at
    sensitive: False
    owner: '@a'
  - model: pump_types
    timestamp_column: 5
    sensitive: 'yes'
    single: 1
    owner: ''
    stage: nowhere
  - model: pump_missing
    sensitive: True
  - model: pump_ok
    timestamp_column: null
    sensitive: True
    owner: '@b'
  - model: pump-hyphen
    timestamp: updated_at
    timestamp_column: null
    sensitive: True
    owner: '@c'
  - just a string
"""
    got = problems(text, stages={"s3_data_pump"})
    assert got == [
        "pumps.yml:6: pump 'pump_types': 'timestamp_column' must be a column name or null, got 5",
        "pumps.yml:6: pump 'pump_types': 'sensitive' must be true or false, got 'yes'",
        "pumps.yml:6: pump 'pump_types': 'single' must be true or false, got 1",
        "pumps.yml:6: pump 'pump_types': 'owner' must be a non-empty string, got ''",
        "pumps.yml:6: pump 'pump_types': unknown stage 'nowhere' (configured stages: "
        "s3_data_pump; add it to the target's 'stages' setting)",
        "pumps.yml:12: pump 'pump_missing': missing key 'timestamp_column'",
        "pumps.yml:12: pump 'pump_missing': missing key 'owner'",
        "pumps.yml:14: pump 'pump_ok': duplicate model (already listed at line 2)",
        "pumps.yml:18: pump 'pump-hyphen': unknown key 'timestamp' "
        "(GitLab renamed it to 'timestamp_column')",
        "pumps.yml:18: pump 'pump-hyphen': 'model' must be a dbt model name (letters, digits, "
        "underscores), got 'pump-hyphen'",
        "pumps.yml: pumps[5]: expected a mapping with model, timestamp_column, sensitive, "
        "owner; got 'just a string'",
    ]
    assert all("\n" not in line for line in got)


def test_duplicate_models_are_case_insensitive() -> None:
    text = (
        "pumps:\n"
        "  - {model: pump_a, timestamp_column: null, sensitive: false, owner: x}\n"
        "  - {model: PUMP_A, timestamp_column: null, sensitive: false, owner: y}\n"
    )
    assert problems(text) == [
        "pumps.yml:3: pump 'PUMP_A': duplicate model (already listed at line 2)"
    ]


def test_duplicate_yaml_keys_are_reported_not_silently_dropped() -> None:
    text = (
        "pumps:\n"
        "  - model: pump_a\n"
        "    timestamp_column: null\n"
        "    sensitive: false\n"
        "    sensitive: true\n"
        "    owner: x\n"
    )
    assert problems(text) == ["pumps.yml:5: duplicate key 'sensitive'"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "pumps.yml: expected a mapping with a 'pumps:' list, got null"),
        ("- a\n- b\n", "pumps.yml: expected a mapping with a 'pumps:' list, got a list"),
        ("pumps: {model: x}\n", "pumps.yml: 'pumps' must be a list, got a mapping"),
        (
            "pump:\n  - model: x\n",
            "pumps.yml: unknown top-level key 'pump' (only 'pumps' is allowed)",
        ),
        (
            "pumps: [\n",
            "pumps.yml:2: invalid YAML: expected the node content, but found '<stream end>'",
        ),
    ],
)
def test_file_level_problems(text: str, expected: str) -> None:
    assert problems(text)[0] == expected


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PumpsFileError) as info:
        load_pumps(tmp_path / "nope.yml")
    assert info.value.problems == [f"{tmp_path / 'nope.yml'}: file not found"]


def test_empty_list_is_valid() -> None:
    assert len(parse_pumps("pumps: []\n", Path("p.yml"))) == 0


# --------------------------------------------------------------------------- stream guard

SCHEMAS = Schemas()


@pytest.fixture(scope="module")
def gitlab_pumps() -> PumpsFile:
    pumps = load_pumps(GITLAB_PUMPS_YML, stages=GITLAB_STAGES)
    # One non-sensitive pump, as GitLab's first pump was.
    extra = Pump("pump_hash_marketing_contact", "last_changed", False, "@x", line=99)
    return PumpsFile(path=pumps.path, pumps=(*pumps.pumps, extra))


@pytest.mark.parametrize(
    ("stream", "model"),
    [
        ("pump_marketing_contact", "pump_marketing_contact"),
        ("pumps_sensitive-pump_marketing_contact", "pump_marketing_contact"),
        ("PUMPS_SENSITIVE-PUMP_MARKETING_CONTACT", "pump_marketing_contact"),  # Snowflake
        ("pumps-pump_hash_marketing_contact", "pump_hash_marketing_contact"),
    ],
)
def test_stream_names_map_to_pumps(gitlab_pumps: PumpsFile, stream: str, model: str) -> None:
    assert gitlab_pumps.resolve_stream(stream, SCHEMAS).model == model


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        ("pumps-pump_unknown", "model 'pump_unknown' is not listed in"),
        ("pump_unknown", "model 'pump_unknown' is not listed in"),
        ("pumps-pump_marketing_contact", "is sensitive in"),
        ("public-pump_marketing_contact", "must come from schema 'pumps_sensitive', not 'public'"),
        ("pumps_sensitive-pump_hash_marketing_contact", "is not sensitive in"),
    ],
)
def test_unlisted_or_mislabelled_streams_are_rejected(
    gitlab_pumps: PumpsFile, stream: str, message: str
) -> None:
    with pytest.raises(StreamRejected) as info:
        gitlab_pumps.resolve_stream(stream, SCHEMAS)
    assert message in str(info.value)
    assert str(info.value).startswith(f"stream '{stream}': ")
    assert "\n" not in str(info.value)
