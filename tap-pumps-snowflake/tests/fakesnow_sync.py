"""Two incremental runs of a pump reader against fakesnow, in one process (fakesnow patches
the Snowflake connector in-process). Run by the test venv's Python; prints one JSON object.

    python fakesnow_sync.py {pump|stock}
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import fakesnow
import snowflake.connector

CONFIG = {
    "account": "fake",
    "user": "fake",
    "password": "snow",
    "database": "PROD",
    "schema": "PUMPS",
}
STREAM = "pumps-pump_project_activity"


def invoke(tap_class: type, workdir: Path, *args: str) -> list[dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tap_class.cli.main(["--config", str(workdir / "config.json"), *args], standalone_mode=False)
    text = out.getvalue()
    return (
        [json.loads(text)]
        if args == ("--discover",)
        else [json.loads(x) for x in text.splitlines()]
    )


def select_incremental(catalog: dict, key: str) -> dict:
    # fakesnow's inspector lists a table once per matching schema row: keep one entry.
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == STREAM)
    for item in entry["metadata"]:
        if item["breadcrumb"] == []:
            item["metadata"].update(
                {"selected": True, "replication-method": "INCREMENTAL", "replication-key": key}
            )
    return {"streams": [entry]}


def sync(tap_class: type, workdir: Path, state: dict) -> dict:
    (workdir / "state.json").write_text(json.dumps(state))
    messages = invoke(
        tap_class, workdir, "--catalog", str(workdir / "catalog.json"),
        "--state", str(workdir / "state.json"),
    )  # fmt: skip
    return {
        "records": [m["record"] for m in messages if m["type"] == "RECORD"],
        "state": [m["value"] for m in messages if m["type"] == "STATE"][-1],
    }


def main(which: str) -> dict:
    if which == "pump":
        from tap_pumps_snowflake.tap import TapPumpsSnowflake as tap_class
    else:
        from tap_snowflake.tap import TapSnowflake as tap_class
    workdir = Path(tempfile.mkdtemp(prefix="fakesnow-sync-"))
    (workdir / "config.json").write_text(json.dumps(CONFIG))
    result: dict = {}
    with fakesnow.patch(create_database_on_connect=True, create_schema_on_connect=True):
        cur = snowflake.connector.connect(**CONFIG).cursor()
        cur.execute(
            "CREATE TABLE pump_project_activity (project_id INT, report_date DATE, events INT)"
        )
        cur.execute(
            "INSERT INTO pump_project_activity VALUES (1, '2024-09-26', 3), (2, '2024-09-27', 5)"
        )
        catalog = invoke(tap_class, workdir, "--discover")[0]
        (workdir / "catalog.json").write_text(
            json.dumps(select_incremental(catalog, "report_date"))
        )
        result["first"] = sync(tap_class, workdir, {})
        cur.execute("INSERT INTO pump_project_activity VALUES (3, '2024-09-28', 7)")
        try:
            result["second"] = sync(tap_class, workdir, result["first"]["state"])
        except Exception as exc:  # the stock tap's failure is the point of the comparison
            result["second_error"] = f"{type(exc).__name__}: {exc}"
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), default=str))
