"""``pgp-manifest``: validate pgp manifests without a database.

``pgp-manifest check PATH...`` prints how every table will load; ``--json``
prints one JSON array instead. Problems go to stderr, one line each, and make
the exit status 1; warnings go to stderr and do not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tap_gitlab_postgres.manifest import (
    LoadType,
    Manifest,
    ManifestError,
    ManifestTable,
    duplicate_stream_problems,
    load_manifest,
)

EXIT_OK = 0
EXIT_INVALID = 1

_COLUMNS = (
    "TABLE",
    "STREAM",
    "LOAD_TYPE",
    "REPLICATION_KEY",
    "PRIMARY_KEY",
    "TARGET_TABLE",
    "PLACEHOLDERS",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pgp-manifest", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="validate manifests and show how each table loads",
        description=(
            "Validate manifests and show how each table loads. Stream names must be unique"
            " within a file and across files of the same source (files with their own"
            " legacy connection_info are separate sources)."
        ),
    )
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="manifest YAML file")
    check.add_argument("--json", action="store_true", help="print one JSON array of tables")
    check.add_argument(
        "--database-type",
        metavar="TYPE",
        help="only list tables of this database_type (and those without one)",
    )
    args = parser.parse_args(argv)
    # sqlglot logs its own parse fallbacks; our problems already say what is wrong.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    return _check(args.paths, as_json=args.json, database_type=args.database_type)


def _check(paths: Sequence[Path], *, as_json: bool, database_type: str | None) -> int:
    manifests: list[Manifest] = []
    problems: list[str] = []
    warnings: list[str] = []
    for path in paths:
        try:
            manifest = load_manifest(path)
        except ManifestError as exc:
            problems += exc.problems
            warnings += exc.warnings
        else:
            manifests.append(manifest)
            warnings += manifest.warnings
    # Legacy and current manifests define the same tables for different sources,
    # so only manifests sharing a connection must not repeat a stream.
    problems += duplicate_stream_problems(manifests, per_connection=True)

    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID

    selected = [m.for_database_type(database_type) for m in manifests]
    if as_json:
        rows = [_row(table) for manifest in selected for table in manifest.tables]
        print(json.dumps(rows, indent=2))
    else:
        _print_text(selected)
    return EXIT_OK


def _row(table: ManifestTable) -> dict[str, object]:
    return {
        "file": str(table.source_file),
        "table": table.key,
        "stream": table.stream_name,
        "load_type": str(table.load_type),
        "replication_key": table.replication_key,
        "primary_key": table.primary_key,
        "target_table": table.target_table,
        "placeholders": list(table.placeholders),
        "database_type": table.database_type,
    }


def _counts(tables: Sequence[ManifestTable]) -> str:
    counts = Counter(table.load_type for table in tables)
    return ", ".join(f"{load_type} {counts[load_type]}" for load_type in LoadType)


def _print_text(manifests: Sequence[Manifest]) -> None:
    for manifest in manifests:
        print(f"{manifest.path}: {len(manifest.tables)} tables ({_counts(manifest.tables)})")
        rows = [
            (
                t.key,
                t.stream_name,
                str(t.load_type),
                t.replication_key or "-",
                t.primary_key,
                t.target_table,
                ",".join(t.placeholders) or "-",
            )
            for t in manifest.tables
        ]
        widths = [max(len(v) for v in column) for column in zip(_COLUMNS, *rows, strict=True)]
        for row in (_COLUMNS, *rows):
            print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        print()
    tables = [t for m in manifests for t in m.tables]
    print(f"OK: {len(manifests)} files, {len(tables)} tables ({_counts(tables)})")
