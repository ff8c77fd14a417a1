"""The production pump reader against fakesnow: a DATE timestamp_column bookmarks and
resumes, where stock tap-snowflake fails its second incremental run.

The tap runs in its own venv (.local/venvs/tap-pumps-snowflake: this package with the
`test` extra, i.e. tap-snowflake + fakesnow), built by uv on first use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent
VENV = ROOT / ".local" / "venvs" / "tap-pumps-snowflake"
SYNC = Path(__file__).with_name("fakesnow_sync.py")
UV = Path(sys.executable).with_name("uv")


def venv_python() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".pyproject-stamp"
    want = hashlib.sha256((PACKAGE / "pyproject.toml").read_bytes()).hexdigest()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with (VENV.parent / ".tap-pumps-snowflake.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == want:
            return python
        shutil.rmtree(VENV, ignore_errors=True)
        for cmd in (
            [str(UV), "venv", "--quiet", "--python", sys.executable, str(VENV)],
            [str(UV), "pip", "install", "--quiet", "--python", str(python),
             "-e", f"{PACKAGE}[test]"],
        ):  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stderr[-3000:]}"
        stamp.write_text(want)
    return python


@pytest.fixture(scope="module")
def python() -> Path:
    return venv_python()


def two_runs(python: Path, which: str) -> dict:
    done = subprocess.run(
        [str(python), str(SYNC), which], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_date_key_bookmarks_and_resumes(python: Path) -> None:
    result = two_runs(python, "pump")
    assert [r["project_id"] for r in result["first"]["records"]] == [1, 2]
    bookmark = result["first"]["state"]["bookmarks"]["pumps-pump_project_activity"]
    assert bookmark == {"replication_key": "report_date", "replication_key_value": "2024-09-27"}
    # The second run starts at the bookmark (>=): the last day again, then the new day.
    assert result["second"]["records"] == [
        {"project_id": 2, "report_date": "2024-09-27", "events": 5},
        {"project_id": 3, "report_date": "2024-09-28", "events": 7},
    ]
    bookmark = result["second"]["state"]["bookmarks"]["pumps-pump_project_activity"]
    assert bookmark["replication_key_value"] == "2024-09-28"


def test_stock_tap_snowflake_fails_the_same_second_run(python: Path) -> None:
    # Why this package exists; if an upgrade fixes it upstream, this fails and it can go.
    result = two_runs(python, "stock")
    assert "second" not in result
    assert result["second_error"].startswith("TypeError")
    assert "datetime.date" in result["second_error"]
