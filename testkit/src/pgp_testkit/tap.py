"""Runs the real tap executable on a manifest and collects its Singer messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml

TAP = str(Path(sys.executable).with_name("tap-gitlab-postgres"))


@dataclass
class TapRun:
    returncode: int
    messages: list[dict]
    stderr: str
    records: dict[str, list[dict]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for m in self.messages:
            if m["type"] == "RECORD":
                self.records.setdefault(m["stream"], []).append(m["record"])

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def state(self) -> dict:
        return self.states[-1]

    def bookmark(self, stream: str) -> dict:
        return self.state["bookmarks"][stream]

    def of_type(self, kind: str, stream: str | None = None) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind and stream in (None, m.get("stream"))]

    def ids(self, stream: str, key: str = "id") -> list:
        return [r[key] for r in self.records.get(stream, [])]


def write_manifest(tmp_path: Path, tables: dict, name: str = "manifest.yaml") -> Path:
    """A pgp manifest of ``tables`` (GitLab's defaults filled in) as ``tmp_path/name``."""
    path = tmp_path / name
    for spec in tables.values():
        spec.setdefault("import_db", "GITLAB_DB")
        spec.setdefault("export_schema", "gitlab_com")
        spec.setdefault("export_table_primary_key", "id")
    path.write_text(yaml.safe_dump({"tables": tables}, sort_keys=False))
    return path


def write_json(path: Path, value: dict) -> Path:
    path.write_text(json.dumps(value, default=str))
    return path


def run_tap(
    tmp_path: Path,
    config: dict,
    state: dict | None = None,
    *,
    check: bool = True,
    extra_args: tuple[str, ...] = (),
) -> TapRun:
    args = [TAP, "--config", str(write_json(tmp_path / "config.json", config))]
    if state is not None:
        args += ["--state", str(write_json(tmp_path / "state.json", state))]
    proc = subprocess.run(
        [*args, *extra_args], capture_output=True, text=True, timeout=300, env=os.environ.copy()
    )
    messages = [
        json.loads(line, parse_float=Decimal)
        for line in proc.stdout.splitlines()
        if line.startswith("{")
    ]
    run = TapRun(proc.returncode, messages, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"tap exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return run
