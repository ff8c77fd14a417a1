"""Zero values changed between source and RAW, for every loader configuration the project
ships: edge values of every numeric type (tests/exact_values.py) go through

- dev: `meltano run tap-gitlab-postgres--main target-postgres` as meltano.yml configures it
  (Parquet BATCH files into MeltanoLabs target-postgres), and the same tap in RECORD mode;
- prod: the tap and MeltanoLabs target-snowflake with the `prod` environment's resolved
  config (arrow BATCH), and in RECORD mode, into the Snowflake emulator
  (tests/snowflake_emulator.py: fakesnow's server, the real target, unmodified).

and the warehouse copy is compared with the source value by value.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pgp_testkit.exact_values import (
    COLUMNS,
    STREAM,
    create_source,
    differences,
    source_rows,
    write_manifest,
)
from pgp_testkit.pipeline import MAIN, RAW_SCHEMA, ROOT, Pipeline, manifest_env_name
from pgp_testkit.snowflake_emulator import Emulator, RealSnowflake, snowflake_emulator

pytestmark = pytest.mark.e2e

TAP = ROOT / ".venv" / "bin" / "tap-gitlab-postgres"


@pytest.fixture(scope="module")
def edge_source(pg, tmp_path_factory) -> tuple[str, Path]:
    """(source database, manifest of its edge table)."""
    name = "exact_values_src"
    pg.create_database(name, drop=True)
    with Pipeline(pg, tmp_path_factory.mktemp("src"), name, name).connect(name) as conn:
        create_source(conn)
    manifest = write_manifest(tmp_path_factory.mktemp("manifest") / "edge.yaml")
    return name, manifest


def _dev_pipeline(pg, home: Path, source: str, manifest: Path, warehouse: str) -> Pipeline:
    pg.create_database(warehouse, drop=True)
    pipe = Pipeline(pg, home, source, warehouse)
    pipe.extra_env[manifest_env_name(MAIN)] = str(manifest)
    return pipe


def _warehouse_rows(pipe: Pipeline) -> dict[int, dict[str, Any]]:
    cols = ", ".join(COLUMNS)
    with pipe.connect(pipe.warehouse_db) as conn:
        rows = conn.execute(f"SELECT id, {cols} FROM {RAW_SCHEMA}.{STREAM}").fetchall()
    return {r[0]: dict(zip(COLUMNS, r[1:], strict=True)) for r in rows}


@pytest.mark.parametrize("mode", ["shipped", "record"])
def test_dev_loader_keeps_every_value(pg, tmp_path, edge_source, mode: str) -> None:
    source, manifest = edge_source
    pipe = _dev_pipeline(pg, tmp_path, source, manifest, f"exact_wh_dev_{mode}")
    if mode == "shipped":
        assert pipe.config(MAIN)["batch_config"]["encoding"]["format"] == "parquet"
        pipe.run(MAIN, "target-postgres")
    else:
        messages = pipe.record_mode_output(MAIN)
        assert '"type":"RECORD"' in messages
        pipe.meltano("invoke", "target-postgres", input=messages)
    with pipe.connect(source) as conn:
        expected = source_rows(conn)
    assert differences(expected, _warehouse_rows(pipe)) == []
    # The target stamps _sdc_received_at on RECORD messages only: proof of the path taken.
    with pipe.connect(pipe.warehouse_db) as conn:
        received = conn.execute(
            f"SELECT count(_sdc_received_at) FROM {RAW_SCHEMA}.{STREAM}"
        ).fetchone()[0]
    assert received == (len(expected) if mode == "record" else 0)


# ============================================================================ production

# What the prod environment needs to resolve (the values never reach a real service).
PROD_ENV = {
    "SNOWFLAKE_ACCOUNT": "emulated",
    "SNOWFLAKE_LOAD_USER": "loader",
    "SNOWFLAKE_LOAD_PASSWORD": "load-secret",
    "SNOWFLAKE_LOAD_ROLE": "LOADER",
    "SNOWFLAKE_LOAD_WAREHOUSE": "LOADING",
}


def _prod_config(pipe: Pipeline, plugin: str) -> dict:
    """The config Meltano hands ``plugin`` in the prod environment."""
    return pipe.config(plugin, env={**pipe.env(), **PROD_ENV, "MELTANO_ENVIRONMENT": "prod"})


@pytest.fixture(scope="module", params=["emulator", "snowflake"])
def snowflake(request, tmp_path_factory) -> Iterator[Emulator | RealSnowflake]:
    """The offline emulator always; a real account too when its credentials are set."""
    log_dir = tmp_path_factory.mktemp("snowflake")
    if request.param == "emulator":
        with snowflake_emulator(log_dir) as running:
            yield running
    elif not os.environ.get("SNOWFLAKE_ACCOUNT"):
        pytest.skip(
            "real Snowflake: set SNOWFLAKE_ACCOUNT, SNOWFLAKE_LOAD_USER, SNOWFLAKE_LOAD_PASSWORD, "
            "SNOWFLAKE_LOAD_ROLE, SNOWFLAKE_LOAD_WAREHOUSE to run it (database RAW)"
        )
    else:
        yield RealSnowflake(log_dir)


@pytest.mark.parametrize("mode", ["shipped", "record"])
def test_prod_loader_keeps_every_value(
    pg, tmp_path, edge_source, snowflake: Emulator | RealSnowflake, mode: str
) -> None:
    source, manifest = edge_source
    pipe = Pipeline(pg, tmp_path, source, source)
    tap = _prod_config(pipe, MAIN)
    target = _prod_config(pipe, "target-snowflake")
    if isinstance(snowflake, RealSnowflake):
        target.update({k: v for k, v in _real_credentials().items() if v})
    assert tap["batch_config"]["encoding"]["format"] == "arrow"
    assert target["clean_up_batch_files"] is False
    batches = tmp_path / "batches"
    if mode == "record":
        del tap["batch_config"]
    else:
        tap["batch_config"]["storage"]["root"] = batches.as_uri()
    tap.update(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, database=source,
        manifest_path=str(manifest),
    )  # fmt: skip
    schema = f"PGP_EXACT_{mode.upper()}_{uuid.uuid4().hex[:8].upper()}"
    target["default_target_schema"] = schema
    if isinstance(snowflake, Emulator):
        snowflake.query("CREATE DATABASE IF NOT EXISTS RAW")
    try:
        loaded = snowflake.run_target(target, _tap_output(tap, tmp_path), tmp_path)
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        _check_prod_copy(pipe, snowflake, schema)
    finally:
        if isinstance(snowflake, RealSnowflake):
            snowflake.query(f'DROP SCHEMA IF EXISTS RAW."{schema}" CASCADE')
    if mode == "shipped":
        # The arrow files outlive their COPY (clean_up_batch_files: false) ...
        files = sorted(batches.iterdir())
        assert files and all(f.suffix == ".arrow" for f in files)
        # ... until the stream's next run starts.
        _tap_output(tap, tmp_path)
        assert not set(files) & set(batches.iterdir())


def _real_credentials() -> dict[str, str | None]:
    return {
        "account": os.environ.get("SNOWFLAKE_ACCOUNT"),
        "user": os.environ.get("SNOWFLAKE_LOAD_USER"),
        "password": os.environ.get("SNOWFLAKE_LOAD_PASSWORD"),
        "role": os.environ.get("SNOWFLAKE_LOAD_ROLE"),
        "warehouse": os.environ.get("SNOWFLAKE_LOAD_WAREHOUSE"),
    }


def _check_prod_copy(pipe: Pipeline, snowflake: Emulator | RealSnowflake, schema: str) -> None:
    cols = ", ".join(COLUMNS)
    rows = snowflake.query(f"SELECT id, {cols} FROM RAW.{schema}.{STREAM.upper()}")
    warehouse = {r[0]: dict(zip(COLUMNS, r[1:], strict=True)) for r in rows}
    with pipe.connect(pipe.source_db) as conn:
        expected = source_rows(conn)
    assert differences(expected, warehouse) == []
    # Snowflake types that hold the values: NUMBER(p, s) for numeric(p, s), text for an
    # unconstrained numeric (no Snowflake type holds every one).
    types = dict(
        snowflake.query(
            "SELECT column_name, data_type FROM RAW.information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = '{STREAM.upper()}'"
        )
    )
    assert (types["N18_4"], types["N38"], types["N_FREE"]) == ("NUMBER", "NUMBER", "TEXT")


def _tap_output(config: dict, tmp_path: Path) -> bytes:
    path = tmp_path / "tap.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(TAP), "--config", str(path)], capture_output=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_prod_state_advances_only_after_the_copy(
    pg, tmp_path, edge_source, snowflake: Emulator | RealSnowflake
) -> None:
    """A load that fails at a batch file keeps every earlier file's rows and forwards only
    the states that follow files already COPYed: a rerun from that state loses nothing."""
    if isinstance(snowflake, RealSnowflake):
        pytest.skip("the emulator's run is enough: it is the target's own ordering under test")
    source, manifest = edge_source
    pipe = Pipeline(pg, tmp_path, source, source)
    tap = _prod_config(pipe, MAIN)
    target = _prod_config(pipe, "target-snowflake")
    batches = tmp_path / "batches"
    tap["batch_config"]["storage"]["root"] = batches.as_uri()
    tap.update(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, database=source,
        manifest_path=str(manifest), chunk_size=2, row_counts=False,
    )  # fmt: skip
    schema = f"PGP_STATE_{uuid.uuid4().hex[:8].upper()}"
    target["default_target_schema"] = schema
    snowflake.query("CREATE DATABASE IF NOT EXISTS RAW")
    messages = [json.loads(line) for line in _tap_output(tap, tmp_path).splitlines()]
    files = [m["manifest"][0] for m in messages if m["type"] == "BATCH"]
    assert len(files) == 3  # 6 rows in chunks of 2 keys, a file and a state each
    # The last file is gone when the target gets to it (as if its COPY failed).
    Path(urlsplit(files[-1]).path).unlink()
    lines = b"".join(json.dumps(m).encode() + b"\n" for m in messages)

    loaded = snowflake.run_target(target, lines, tmp_path)
    assert loaded.returncode != 0
    rows = snowflake.query(f"SELECT id FROM RAW.{schema}.{STREAM.upper()} ORDER BY id")
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    # No state it forwarded runs ahead of what RAW holds: target-snowflake forwards state
    # only when it drains, so a failed load forwards none and Meltano keeps the previous
    # state; the rerun reads these rows again (RAW is append-only, dbt deduplicates).
    forwarded = [json.loads(line) for line in loaded.stdout.splitlines() if line.strip()]
    for state in forwarded:
        assert (state["bookmarks"][STREAM].get("full_sync") or {}).get("last_key", 0) <= 4
