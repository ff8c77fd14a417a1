"""The Data Pump in the Meltano project: dbt pump models -> tap-pumps -> target-s3-pump -> S3.

Real processes and servers only: `.venv/bin/meltano` runs this repository's meltano.yml
against two databases of the session's throwaway Postgres cluster (pipeline_support.Pipeline:
own Meltano state, empty --env-file) and a moto S3 server of its own (scripts/locals3.py).
The pump extractor's selection is plugins/pumps.meltano.yml, generated from pumps.yml
(`make definitions`), so run 1 is plain Meltano.

One scenario on a small demo source, shared by the tests in file order:
  run 1  `meltano run pipeline` (EL, dbt seed + run, then the pump): every pump listed in
         pumps.yml is exported in full (no bookmark yet); objects read back with boto3
  run 2  after `demo_source.touch`, with a temp copy of transform/ and of pumps.yml
         (DBT_POSTGRES_PROJECT_DIR, TARGET_S3_PUMP_PUMPS_FILE) holding one new dbt model in
         marts/pumps plus its pumps.yml entry, and one more model without an entry (the
         copy's selection, as `make definitions` derives it, goes in through Meltano's env
         override of the extractor's extras, TAP_PUMPS__SELECT / __METADATA):
         `meltano run el-main el-main-scd dbt-postgres:run pump`. The existing pumps send
         exactly the rows with timestamp_column >= their bookmark, the new pump appears
         (FULL_TABLE, another stage) with meltano.yml untouched, the unlisted model never
         leaves the warehouse.
Plus: plain Meltano selects exactly pumps.yml's pumps, and the prod config of the pump
plugins resolves.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import sqlite3
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import demo_source
import plugin_definitions
import pytest
import yaml
from pgp_testkit.locals3 import LocalS3
from pgp_testkit.pipeline import MELTANO, ROOT, Pipeline

pytestmark = pytest.mark.e2e

ROWS = 1000
PUMPS_FILE = ROOT / "pumps.yml"
PUMPS_CHECK = ROOT / ".venv" / "bin" / "pumps-check"
EXTRACTOR, LOADER = "tap-pumps", "target-s3-pump"
STATE_ID = f"dev:{EXTRACTOR}-to-{LOADER}"
MELTANO_YML_SHA = hashlib.sha256((ROOT / "meltano.yml").read_bytes()).hexdigest()

# The project's pumps (pumps.yml) and their keys in the dbt models.
CONTACT, ACTIVITY = "pump_marketing_contact", "pump_project_activity"
KEYS = {CONTACT: ("user_id",), ACTIVITY: ("project_id", "report_date")}
# Run 2: a pump added through config alone, and a model in the pumps schema nobody listed.
ADDED, UNLISTED = "pump_namespace_overview", "pump_unlisted_draft"
ADDED_SQL = """\
-- Added by tests/test_pump_pipeline.py: a pump through config alone (this model + one
-- pumps.yml entry). Ids and counts only.
select
    namespace_id,
    namespace_type,
    parent_namespace_id,
    ultimate_parent_namespace_id,
    visibility_level
from {{ ref('dim_namespaces') }}
"""
ADDED_ENTRY = f"""\
  - model: {ADDED}
    timestamp_column: null
    sensitive: False
    single: True
    stage: s3_data_science_pump
    owner: '@data-platform'
"""
UNLISTED_SQL = """\
-- In the pumps schema, but not in pumps.yml.
select project_id from {{ ref('dim_projects') }}
"""

# Variables a developer's shell might carry that would change what the pump resolves.
_PUMP_PREFIXES = ("TAP_PUMPS", "TARGET_S3_PUMP", "LOCALS3_", "AWS_", "PUMP_")


class PumpPipeline(Pipeline):
    """Pipeline plus the local S3 and the pump's selection, nothing from the shell."""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if not k.startswith(_PUMP_PREFIXES)}
        env.update(self.extra_env)
        return env


def dev_bucket() -> str:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    dev = next(e for e in project["environments"] if e["name"] == "dev")
    loader = next(p for p in dev["config"]["plugins"]["loaders"] if p["name"] == LOADER)
    return loader["config"]["bucket"]


def pump_selection(pumps_file: Path) -> dict[str, str]:
    """The selection `make definitions` derives from a pumps.yml, as Meltano's env override
    of the pump extractor's extras (run 2 reads a copy of pumps.yml)."""
    (entry,) = (e for e in plugin_definitions.pump_extractors(pumps_file) if e["name"] == EXTRACTOR)
    prefix = re.sub(r"[^A-Za-z0-9]", "_", EXTRACTOR).upper()
    return {
        f"{prefix}__SELECT": json.dumps(entry["select"]),
        f"{prefix}__METADATA": json.dumps(entry["metadata"]),
    }


def stamp(interval_end: str) -> str:
    """2024-09-27T05:00:00Z -> 2024_09_27__050000 (the target's file naming)."""
    return re.sub(r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)Z", r"\1_\2_\3__\4\5\6", interval_end)


class Bucket:
    def __init__(self, server: LocalS3, name: str) -> None:
        self.client = server.client()
        self.name = name

    def list_keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def head(self, key: str) -> dict:
        return self.client.head_object(Bucket=self.name, Key=key)


def parse_csv(body: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    return rows[0], rows[1:]


def pump_state(pipe: Pipeline) -> dict[str, str]:
    """{stream: replication_key_value} of the pump's Meltano state (systemdb)."""
    with sqlite3.connect(pipe.sys_dir / "meltano.db") as db:
        row = db.execute(
            "SELECT completed_state, partial_state FROM state WHERE state_id = ?", (STATE_ID,)
        ).fetchone()
    assert row is not None, f"no state {STATE_ID}"
    out = {}
    for part in row:
        for stream, mark in (
            (json.loads(part) if part else {}).get("singer_state", {}).get("bookmarks", {}).items()
        ):
            if "replication_key_value" in mark:  # FULL_TABLE streams keep none
                out[stream] = mark["replication_key_value"]
    return out


def model_schema(model: str) -> str:
    return "pumps_sensitive" if model == CONTACT else "pumps"


def model_columns(pipe: Pipeline, model: str) -> list[tuple[str, str]]:
    with pipe.connect(pipe.warehouse_db) as conn:
        return [
            (name, dtype)
            for name, dtype in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (model_schema(model), model),
            )
        ]


def model_keys(
    pipe: Pipeline,
    model: str,
    key: tuple[str, ...],
    since: tuple[str, str] | None = None,
    op: str = ">=",
) -> list[tuple[str, ...]]:
    """Keys (as text, like the CSV) of the model's rows; ``since``: (column, bookmark) keeps
    the rows with column >= bookmark (``op``), the tap's incremental condition."""
    from psycopg import sql

    query = sql.SQL("SELECT {} FROM {}.{}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in key),
        sql.Identifier(model_schema(model)),
        sql.Identifier(model),
    )
    params: list = []
    if since is not None:
        column, bookmark = since
        dtype = dict(model_columns(pipe, model))[column]
        assert op in (">=", ">", "=")
        query += sql.SQL(" WHERE {} {} CAST(%s AS {})").format(
            sql.Identifier(column), sql.SQL(op), sql.SQL(dtype)
        )
        params.append(bookmark)
    with pipe.connect(pipe.warehouse_db) as conn:
        return sorted(tuple(r) for r in conn.execute(query, params))


def csv_keys(header: list[str], rows: list[list[str]], key: tuple[str, ...]) -> list[tuple]:
    index = [header.index(k.upper()) for k in key]  # header_case: upper
    return sorted(tuple(row[i] for i in index) for row in rows)


def published(pipe: Pipeline, summary: dict, model: str) -> tuple[dict, list[str], list[list]]:
    """(marker, header, rows) of one pump in one run, every file checked against its marker."""
    result = next(p for p in summary["published"] if p["pump"] == model)
    marker = json.loads(pipe.bucket.read(result["marker"]))
    header: list[str] | None = None
    rows: list[list[str]] = []
    for f in marker["files"]:
        body = pipe.bucket.read(f["key"])
        assert len(body) == f["bytes"], f["key"]
        assert hashlib.sha256(body).hexdigest() == f["sha256"], f["key"]
        file_header, file_rows = parse_csv(body)
        assert len(file_rows) == f["rows"], f["key"]
        assert header in (None, file_header)
        header = file_header
        rows += file_rows
    assert header is not None
    assert marker["rows"] == len(rows) == result["rows"]
    assert [c.upper() for c in marker["columns"]] == header
    return marker, header, rows


# ============================================================================ the runs


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = LocalS3(tmp_path_factory.mktemp("locals3"))  # dies with pytest
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def run1(pg, s3, tmp_path_factory):
    if not MELTANO.exists():
        pytest.fail("meltano is not installed in .venv: run scripts/bootstrap (make test does)")
    source, warehouse = (f"pump_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("src", "wh"))
    pg.create_database(source)
    pg.create_database(warehouse)
    pipe = PumpPipeline(pg, tmp_path_factory.mktemp("pump"), source, warehouse)
    demo_source.create(pg.dsn(source), rows=ROWS)
    pipe.bucket = Bucket(s3, dev_bucket())
    s3.create_buckets(pipe.bucket.name)
    pipe.extra_env.update(
        LOCALS3_ENDPOINT_URL=s3.endpoint_url,
        TARGET_S3_PUMP_SUMMARY_FILE=str(pipe.home / "summary1.json"),
    )
    pipe.run1 = pipe.run("pipeline")  # the job, plain: EL, dbt seed + run, then the pump
    pipe.summary1 = json.loads((pipe.home / "summary1.json").read_text())
    pipe.keys1 = pipe.bucket.list_keys()
    pipe.state1 = pump_state(pipe)
    return pipe


@pytest.fixture(scope="module")
def run2(run1):
    pipe = run1
    # The source changes; remember which users did, independently of the pipeline.
    users_before = _source_users(pipe)
    pipe.touched = demo_source.touch(pipe.pg.dsn(pipe.source_db))
    users_after = _source_users(pipe)
    pipe.touched_users = {
        uid for uid, (updated, email) in users_after.items()
        if users_before.get(uid, (None, None))[0] != updated and email
    }  # fmt: skip
    # A pump added through config alone: a copy of transform/ with one more model in
    # marts/pumps, a copy of pumps.yml with one more entry; plus a model nobody listed.
    transform = pipe.home / "transform"
    shutil.copytree(
        ROOT / "transform",
        transform,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )
    (transform / "models/marts/pumps" / f"{ADDED}.sql").write_text(ADDED_SQL)
    (transform / "models/marts/pumps" / f"{UNLISTED}.sql").write_text(UNLISTED_SQL)
    pumps_file = pipe.home / "pumps.yml"
    pumps_file.write_text(PUMPS_FILE.read_text() + ADDED_ENTRY)
    pipe.extra_env.update(
        DBT_POSTGRES_PROJECT_DIR=str(transform),
        TARGET_S3_PUMP_PUMPS_FILE=str(pumps_file),
        TARGET_S3_PUMP_SUMMARY_FILE=str(pipe.home / "summary2.json"),
        **pump_selection(pumps_file),
    )
    pipe.run2 = pipe.run("el-main", "el-main-scd", "dbt-postgres:run", "pump")
    pipe.summary2 = json.loads((pipe.home / "summary2.json").read_text())
    pipe.keys2 = pipe.bucket.list_keys() - pipe.keys1
    pipe.state2 = pump_state(pipe)
    return pipe


def _source_users(pipe: Pipeline) -> dict[int, tuple]:
    with pipe.connect(pipe.source_db) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, updated_at, email FROM users")}


# ============================================================= run 1: the first export


def test_pipeline_job_ends_by_pumping_every_listed_model(run1):
    pipe = run1
    assert {p["pump"] for p in pipe.summary1["published"]} == {CONTACT, ACTIVITY}
    assert pipe.summary1["failed"] == []
    s = stamp(pipe.summary1["interval_end"])
    # GitLab's layout under each pump's stage prefix (both pumps: stage s3_data_pump).
    assert pipe.keys1 == {
        f"data_pump/{CONTACT}/{s}.csv",  # single: True
        f"data_pump/{CONTACT}/{s}_SUCCESS.json",
        f"data_pump/{ACTIVITY}/{s}/part-00000.csv",  # parts
        f"data_pump/{ACTIVITY}/{s}/_SUCCESS.json",
    }
    for key in pipe.keys1:  # dev: SSE-S3 on every object
        assert pipe.bucket.head(key)["ServerSideEncryption"] == "AES256", key


@pytest.mark.parametrize("model", [CONTACT, ACTIVITY])
def test_first_export_is_the_whole_dbt_model(run1, model):
    pipe = run1
    marker, header, rows = published(pipe, pipe.summary1, model)
    columns = model_columns(pipe, model)
    assert header == [name.upper() for name, _ in columns]  # header_case: upper
    assert len(rows) == len(model_keys(pipe, model, KEYS[model])) > 0
    assert csv_keys(header, rows, KEYS[model]) == model_keys(pipe, model, KEYS[model])
    pump = next(p for p in yaml.safe_load(PUMPS_FILE.read_text())["pumps"] if p["model"] == model)
    assert marker["pump"] == model
    assert marker["stream"] == f"{model_schema(model)}-{model}"
    assert marker["sensitive"] is pump["sensitive"]
    assert marker["stage"] == pump["stage"] == "s3_data_pump"
    assert marker["timestamp_column"] == pump["timestamp_column"]
    assert marker["bucket"] == pipe.bucket.name
    # The bookmark is the largest timestamp_column value sent (Postgres' text form).
    column = pump["timestamp_column"]
    with pipe.connect(pipe.warehouse_db) as conn:
        top = conn.execute(
            f'SELECT max("{column}")::text FROM {model_schema(model)}.{model}'
        ).fetchone()[0]
    assert pipe.state1[marker["stream"]] == top


def test_sensitive_pump_lands_under_its_stage_only(run1):
    pipe = run1
    marker, _, _ = published(pipe, pipe.summary1, CONTACT)
    assert marker["sensitive"] is True
    assert marker["stream"] == f"pumps_sensitive-{CONTACT}"
    keys = [f["key"] for f in marker["files"]]
    assert keys == [f"data_pump/{CONTACT}/{stamp(pipe.summary1['interval_end'])}.csv"]
    assert all(k.startswith(f"data_pump/{CONTACT}/") for k in pipe.keys1 if CONTACT in k)


# ======================================================== run 2: incremental, added pump


@pytest.mark.parametrize("model", [CONTACT, ACTIVITY])
def test_second_run_sends_only_rows_at_or_after_the_bookmark(run2, model):
    pipe = run2
    _, header, rows = published(pipe, pipe.summary2, model)
    stream = f"{model_schema(model)}-{model}"
    column = next(
        p["timestamp_column"]
        for p in yaml.safe_load(PUMPS_FILE.read_text())["pumps"]
        if p["model"] == model
    )
    bookmark = pipe.state1[stream]
    sent = csv_keys(header, rows, KEYS[model])
    # Exactly the tap's incremental condition: timestamp_column >= the previous bookmark.
    assert sent == model_keys(pipe, model, KEYS[model], since=(column, bookmark))
    assert 0 < len(sent) < len(model_keys(pipe, model, KEYS[model]))
    # The bookmark moved to the largest value sent.
    assert pipe.state2[stream] >= bookmark
    assert pipe.state2[stream] == max(row[header.index(column.upper())] for row in rows)


def test_second_run_carries_every_touched_contact(run2):
    """What `>= bookmark` means for pump_marketing_contact: the contacts changed since run 1
    (last_changed > bookmark: every touched user among them) plus those whose last_changed
    is the bookmark itself. After a first run on a new warehouse that second group is large:
    last_changed counts a membership's first SCD snapshot as a change, so every contact with
    memberships shares run 1's snapshot time, the bookmark (README.md, "The Data Pump")."""
    pipe = run2
    _, header, rows = published(pipe, pipe.summary2, CONTACT)
    since = ("last_changed", pipe.state1[f"pumps_sensitive-{CONTACT}"])
    newer = model_keys(pipe, CONTACT, ("user_id",), since, op=">")
    at_bookmark = model_keys(pipe, CONTACT, ("user_id",), since, op="=")
    assert csv_keys(header, rows, ("user_id",)) == sorted(newer + at_bookmark)
    assert pipe.touched["users"] > 0 and pipe.touched_users
    assert pipe.touched_users <= {int(k[0]) for k in newer}


def test_pump_added_through_config_alone(run2):
    pipe = run2
    assert hashlib.sha256((ROOT / "meltano.yml").read_bytes()).hexdigest() == MELTANO_YML_SHA
    s = stamp(pipe.summary2["interval_end"])
    assert pipe.keys2 == {
        f"data_pump/{CONTACT}/{s}.csv",
        f"data_pump/{CONTACT}/{s}_SUCCESS.json",
        f"data_pump/{ACTIVITY}/{s}/part-00000.csv",
        f"data_pump/{ACTIVITY}/{s}/_SUCCESS.json",
        f"data_science_pump/{ADDED}/{s}.csv",  # its stage, single file
        f"data_science_pump/{ADDED}/{s}_SUCCESS.json",
    }
    marker, header, rows = published(pipe, pipe.summary2, ADDED)
    assert (marker["stage"], marker["sensitive"], marker["single"]) == (
        "s3_data_science_pump",
        False,
        True,
    )
    assert marker["timestamp_column"] is None  # FULL_TABLE: every row
    assert header == [name.upper() for name, _ in model_columns(pipe, ADDED)]
    assert csv_keys(header, rows, ("namespace_id",)) == model_keys(pipe, ADDED, ("namespace_id",))
    assert f"pumps-{ADDED}" not in pipe.state2  # no bookmark for a full export


def test_model_without_pumps_yml_entry_never_leaves(run2):
    pipe = run2
    assert model_columns(pipe, UNLISTED), "dbt did not build the unlisted model"
    catalog = json.loads((pipe.sys_dir / "run" / EXTRACTOR / "tap.properties.json").read_text())
    selected = {
        s["tap_stream_id"]: next(m for m in s["metadata"] if m["breadcrumb"] == [])["metadata"].get(
            "selected"
        )
        for s in catalog["streams"]
    }
    assert f"pumps-{UNLISTED}" in selected  # discovered (no catalog cache) ...
    assert selected[f"pumps-{UNLISTED}"] is not True  # ... and not selected
    assert {k for k, v in selected.items() if v} == {
        f"pumps_sensitive-{CONTACT}",
        f"pumps-{ACTIVITY}",
        f"pumps-{ADDED}",
    }
    assert not any(UNLISTED in key for key in pipe.bucket.list_keys())
    assert {p["pump"] for p in pipe.summary2["published"]} == {CONTACT, ACTIVITY, ADDED}


def test_plain_meltano_selects_exactly_pumps_yml(run2):
    """Without any override, the pump extractor selects the pumps of the project's
    pumps.yml (plugins/pumps.meltano.yml): not run 2's added pump, not the unlisted model."""
    pipe = run2
    env = {k: v for k, v in pipe.env().items() if not k.startswith("TAP_PUMPS__")}
    listing = pipe.meltano("select", EXTRACTOR, "--list", "--all", env=env)
    lines = re.findall(r"^\s*\[(\w+)\s*\] ([^.\s]+)\.", listing.stdout, re.M)
    assert {f"pumps-{ADDED}", f"pumps-{UNLISTED}"} <= {stream for _, stream in lines}
    selected = {stream for status, stream in lines if status in ("selected", "automatic")}
    assert selected == {f"pumps_sensitive-{CONTACT}", f"pumps-{ACTIVITY}"}, listing.stdout


# ========================================================================== production


PROD_ENV = {
    "SNOWFLAKE_ACCOUNT": "acme-test",
    "SNOWFLAKE_PUMP_USER": "pumper",
    "SNOWFLAKE_PUMP_PASSWORD": "pump-secret",
    "SNOWFLAKE_PUMP_ROLE": "PUMPER",
    "SNOWFLAKE_PUMP_WAREHOUSE": "PUMPING",
    "PUMP_S3_BUCKET": "gitlab-data-pumps-prod",
    "PUMP_S3_REGION": "us-east-1",
    "PUMP_S3_KMS_KEY_ID": "arn:aws:kms:us-east-1:111122223333:key/pump-key",
    "PUMP_INTERVAL_END": "2024-09-27T05:00:00Z",
}
PROD_EXPECTED = {
    "target-s3-pump": {
        "bucket": "gitlab-data-pumps-prod",
        "region": "us-east-1",
        "server_side_encryption": "aws:kms",
        "sse_kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/pump-key",
        "interval_end": "2024-09-27T05:00:00Z",
        "header_case": "upper",
        "pumps_file": str(ROOT / "pumps.yml"),
        "endpoint_url": None,  # real S3
        "aws_access_key_id": None,  # boto3's chain (role)
    },
    "tap-pumps-snowflake": {
        "account": "acme-test",
        "user": "pumper",
        "password": "(redacted)",
        "role": "PUMPER",
        "warehouse": "PUMPING",
        "database": "PROD",
        "schema": "PUMPS",
    },
}


def _current_values(listing: str) -> dict[str, str]:
    """{setting: value} from `meltano config list` lines (as in test_pipeline.py)."""
    values = {}
    for line in listing.splitlines():
        match = re.match(
            r"(\S+) \[env: [^]]*\](?: \(default: .*?\))? current value: (.*?)"
            r" \((?:from .*|default)\)$",
            line,
        )
        if match:
            values[match.group(1)] = match.group(2).strip("'")
    return values


@pytest.fixture(scope="module")
def config_only(pg, tmp_path_factory):
    return PumpPipeline(pg, tmp_path_factory.mktemp("pump-config"), "unused", "unused")


def test_prod_pump_config(config_only):
    pipe = config_only
    env = {**pipe.env(), **PROD_ENV, "MELTANO_ENVIRONMENT": "prod"}
    unset_interval = {k: v for k, v in env.items() if k != "PUMP_INTERVAL_END"}
    prod = ("--environment=prod",)
    calls = {
        "target-s3-pump": (*prod, "config", "list", "--all", LOADER),
        "tap-pumps-snowflake": (*prod, "config", "list", "--all", "tap-pumps-snowflake"),
        "dump": (*prod, "invoke", "--dump=config", LOADER),
        # The target itself accepts the prod settings (no input: nothing reaches S3).
        "invoke": (*prod, "invoke", LOADER),
        "invoke-no-interval": (*prod, "invoke", LOADER),
    }
    first = pipe.meltano(*calls.pop("target-s3-pump"), env=env)  # creates the systemdb
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(
            zip(
                calls,
                pool.map(
                    lambda item: pipe.meltano(
                        *item[1], env=unset_interval if item[0] == "invoke-no-interval" else env
                    ),
                    calls.items(),
                ),
                strict=True,
            )
        )
    results["target-s3-pump"] = first
    for plugin, expected in PROD_EXPECTED.items():
        values = _current_values(results[plugin].stdout)
        for setting, value in expected.items():
            assert values.get(setting, "None") == str(value), (plugin, setting, values)
    assert "pump-secret" not in results["tap-pumps-snowflake"].stdout
    # The resolved prod config validates against pumps.yml (stages, buckets): pumps-check.
    config = json.loads(results["dump"].stdout[results["dump"].stdout.index("{") :])
    assert config["stages"] == {
        "s3_data_pump": {"prefix": "data_pump"},
        "s3_data_science_pump": {"prefix": "data_science_pump"},
    }
    config_file = pipe.home / "prod-target.json"
    config_file.write_text(json.dumps(config))
    check = subprocess.run(
        [str(PUMPS_CHECK), "--config", str(config_file)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "s3://gitlab-data-pumps-prod/data_pump/pump_marketing_contact/" in check.stdout
    for name in ("invoke", "invoke-no-interval"):
        assert "0 pump(s) failed" in results[name].stderr, results[name].stderr
