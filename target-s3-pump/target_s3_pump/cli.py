"""pumps-check: validate pumps.yml without writing anything; derive the extractor's selection.

Validate (for review of a change; exit 0 valid, 1 invalid, 2 usage)::

    pumps-check transform/pumps.yml --stage s3_data_pump --stage s3_data_science_pump
    pumps-check --config target-config.json        # also every target setting, buckets per pump

Print what the extractor reads from pumps.yml (one stream per pump, ``<schema>-<model>``;
INCREMENTAL on ``timestamp_column``, FULL_TABLE when it is null); the project writes the same
into its Meltano project (``make definitions``)::

    pumps-check pumps.yml --select-json

Without ``--config``, stages come from ``--stage`` or ``TARGET_S3_PUMP_STAGES`` (JSON, as Meltano
sets it for the loader); if none is given, stage names are not checked (and a note says so).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from target_s3_pump.config import PumpConfigError, PumpSettings, normalize_stages
from target_s3_pump.pumps import (
    PumpsFile,
    PumpsFileError,
    Schemas,
    load_pumps,
    meltano_selection,
)
from target_s3_pump.settings import default_of

ENV_PREFIX = "TARGET_S3_PUMP_"
PROG = "pumps-check"


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Validate pumps.yml (writes nothing) and derive the extractor selection.",
        epilog="See the module docstring / README for examples.",
    )
    parser.add_argument("pumps_file", nargs="?", type=Path, help="pumps.yml to check")
    parser.add_argument("--config", type=Path, help="target config JSON: validate all settings too")
    parser.add_argument(
        "--stage", action="append", default=[], help="a configured stage name (repeatable)"
    )
    parser.add_argument("--pumps-schema", help="schema of non-sensitive pumps (default pumps)")
    parser.add_argument(
        "--sensitive-schema", help="schema of sensitive pumps (default pumps_sensitive)"
    )
    parser.add_argument(
        "--select-json", action="store_true", help="print {select, metadata} as JSON"
    )
    return parser


def _load_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a JSON config: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a JSON object")
    return data


def _env_stages() -> set[str] | None:
    raw = os.environ.get(f"{ENV_PREFIX}STAGES")
    if not raw:
        return None
    try:
        stages = json.loads(raw)
    except ValueError:
        raise UsageError(f"{ENV_PREFIX}STAGES is not JSON") from None
    if not isinstance(stages, dict):
        raise UsageError(f"{ENV_PREFIX}STAGES must be a JSON object of stages")
    return set(normalize_stages(stages))  # Meltano may flatten it: {"stage.prefix": ...}


def _resolve(args: argparse.Namespace) -> tuple[PumpsFile, Schemas, PumpSettings | None]:
    config = _load_config(args.config) if args.config else None
    pumps_path = args.pumps_file
    if pumps_path is None and config is not None and config.get("pumps_file"):
        pumps_path = Path(config["pumps_file"])
    if pumps_path is None and os.environ.get(f"{ENV_PREFIX}PUMPS_FILE"):
        pumps_path = Path(os.environ[f"{ENV_PREFIX}PUMPS_FILE"])
    if pumps_path is None:
        raise UsageError(
            f"no pumps.yml given (argument, --config's pumps_file or {ENV_PREFIX}PUMPS_FILE)"
        )

    if config is not None:
        config = {**config, "pumps_file": str(pumps_path)}
        if args.stage:
            raise UsageError("--stage and --config exclude each other (stages come from config)")
        if args.pumps_schema:
            config["pumps_schema"] = args.pumps_schema
        if args.sensitive_schema:
            config["pumps_sensitive_schema"] = args.sensitive_schema
        settings = PumpSettings.from_config(config, now=datetime.now(timezone.utc))
        return settings.pumps, settings.schemas, settings

    stages: set[str] | None = set(args.stage) if args.stage else _env_stages()
    if stages is None and not args.select_json:
        print(
            f"{PROG}: note: stage names not checked (give --config, --stage or {ENV_PREFIX}STAGES)",
            file=sys.stderr,
        )
    schemas = Schemas(
        pumps=args.pumps_schema
        or os.environ.get(f"{ENV_PREFIX}PUMPS_SCHEMA")
        or str(default_of("pumps_schema")),
        sensitive=args.sensitive_schema
        or os.environ.get(f"{ENV_PREFIX}PUMPS_SENSITIVE_SCHEMA")
        or str(default_of("pumps_sensitive_schema")),
    )
    return load_pumps(pumps_path, stages=stages), schemas, None


def _table(pumps: PumpsFile, schemas: Schemas, settings: PumpSettings | None) -> str:
    rows: list[tuple[str, ...]] = [
        ("model", "stream", "replication", "files", "stage", "owner")
    ]
    if settings is not None:
        rows[0] += ("location",)
    for p in pumps:
        replication = f"INCREMENTAL on {p.timestamp_column}" if p.incremental else "FULL_TABLE"
        row: tuple[str, ...] = (
            p.model,
            p.stream_id(schemas),
            replication,
            "single" if p.single else "parts",
            p.stage or "-",
            p.owner,
        )
        if settings is not None:
            location = settings.location_for(p)
            row += (location.url(location.key(p.model)) + "/",)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        pumps, schemas, settings = _resolve(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (PumpsFileError, PumpConfigError) as exc:
        for line in exc.problems:
            print(f"{PROG}: error: {line}", file=sys.stderr)
        print(f"{PROG}: {len(exc.problems)} problem(s); nothing was written", file=sys.stderr)
        return 1

    if args.select_json:
        print(json.dumps(meltano_selection(pumps, schemas), indent=2))
    else:
        sys.stdout.write(_table(pumps, schemas, settings))
        print(f"{PROG}: {pumps.path}: {len(pumps)} pump(s), valid", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
