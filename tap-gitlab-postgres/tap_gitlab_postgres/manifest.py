"""pgp manifests: parsed and validated once, into frozen dataclasses.

A manifest is YAML with a top-level ``tables`` mapping and, in the legacy form,
a ``connection_info`` block naming environment variables. Today's form keeps
connections in a separate file (see :func:`load_connection_file`).

Every problem is collected (not just the first) and reported as one line,
``<path>: table '<key>': <problem>`` or ``<path>: <problem>``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tap_gitlab_postgres.query import QueryError, QueryTemplate

REQUIRED_KEYS = (
    "import_db",
    "import_query",
    "export_schema",
    "export_table",
    "export_table_primary_key",
)
OPTIONAL_KEYS = (
    "additional_filtering",
    "advanced_metadata",
    "incremental_type",
    "database_type",
    "deletes_exempt",
)
# Present in GitLab's manifests but never read by pgp itself.
INFORMATIONAL_KEYS = (
    "is_incremental",
    "dbt_source_model",
    "dbt_snapshots",
    "export_db",
    "import_schema",
)
KNOWN_TABLE_KEYS = frozenset(REQUIRED_KEYS + OPTIONAL_KEYS + INFORMATIONAL_KEYS)
KNOWN_TOP_KEYS = frozenset({"tables", "connection_info"})
# YAML key -> ConnectionEnv field; values are environment variable names.
CONNECTION_KEYS = {
    "database": "database",
    "host": "host",
    "pass": "password",
    "port": "port",
    "user": "user",
}
LOAD_BY_ID = "load_by_id"
_NAME = re.compile(r"[A-Za-z0-9_]+")


class ManifestError(Exception):
    """Invalid manifest(s); ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str] | str, warnings: Sequence[str] = ()) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.warnings = list(warnings)  # kept so callers can still show them
        super().__init__("\n".join(self.problems))


class LoadType(enum.StrEnum):
    INCREMENTAL = "incremental"
    LOAD_BY_ID = "load_by_id"
    SCD = "scd"


@dataclass(frozen=True)
class ConnectionEnv:
    """Names of the environment variables holding the connection settings."""

    database: str
    host: str
    password: str  # YAML key `pass`
    port: str
    user: str


@dataclass(frozen=True)
class ManifestTable:
    source_file: Path
    key: str  # the YAML key; usually but not always export_table
    import_db: str
    import_query: str
    export_schema: str
    export_table: str
    # The output column of export_table_primary_key (lower case unless quoted); for an
    # expression such as CONCAT(a, '_', b) the alias the query selects it under.
    primary_key: str
    additional_filtering: str | None
    advanced_metadata: bool
    incremental_type: str | None
    database_type: str | None
    deletes_exempt: bool
    load_type: LoadType
    replication_key: str | None
    placeholders: tuple[str, ...]  # sorted, from query and filtering
    query: QueryTemplate = field(repr=False)

    @property
    def stream_name(self) -> str:
        return f"{self.import_db}_{self.export_table}".lower()

    @property
    def target_table(self) -> str:
        return self.stream_name.upper()


@dataclass(frozen=True)
class Manifest:
    path: Path
    tables: tuple[ManifestTable, ...]
    connection_env: ConnectionEnv | None
    warnings: tuple[str, ...] = ()  # one line each, same format as problems

    def for_database_type(self, database_type: str | None) -> Manifest:
        """Only the tables of that database type, plus those without one."""
        if database_type is None:
            return self
        kept = tuple(t for t in self.tables if t.database_type in (None, database_type))
        return replace(self, tables=kept)


def load_manifest(path: Path | str, database_type: str | None = None) -> Manifest:
    """Load and validate one manifest; raises ManifestError with all its problems.

    The whole file is validated (also tables of other database types), including
    duplicate stream names within it.
    """
    manifest = _parse_manifest(Path(path))
    return manifest.for_database_type(database_type)


def load_manifests(paths: Iterable[Path | str], database_type: str | None = None) -> list[Manifest]:
    """Load several manifests meant to run together: stream names must be unique across all
    of them (before the database_type filter, since they share target tables)."""
    manifests: list[Manifest] = []
    problems: list[str] = []
    warnings: list[str] = []
    for path in paths:
        try:
            manifests.append(_parse_manifest(Path(path)))
        except ManifestError as exc:
            problems += exc.problems
            warnings += exc.warnings
    problems += duplicate_stream_problems(manifests)
    if problems:
        raise ManifestError(problems, warnings + [w for m in manifests for w in m.warnings])
    return [m.for_database_type(database_type) for m in manifests]


def duplicate_stream_problems(
    manifests: Sequence[Manifest], *, per_connection: bool = False
) -> list[str]:
    """One problem per table whose stream name an earlier table already uses.

    With ``per_connection``, only tables of manifests with the same embedded
    ``connection_info`` (or none) compete, i.e. manifests of one source.
    """
    seen: dict[tuple[ConnectionEnv | None, str], ManifestTable] = {}
    problems: list[str] = []
    for manifest in manifests:
        scope = manifest.connection_env if per_connection else None
        for table in manifest.tables:
            first = seen.setdefault((scope, table.stream_name), table)
            if first is not table:
                elsewhere = (
                    "" if first.source_file == table.source_file else f" in {first.source_file}"
                )
                problems.append(
                    f"{_where(table.source_file, table.key)}: duplicate stream "
                    f"'{table.stream_name}' (also table '{first.key}'{elsewhere})"
                )
    return problems


def load_connection_file(path: Path | str, database_type: str) -> ConnectionEnv:
    """The ``connection_info.postgres_source_connection_<database_type>`` block."""
    path = Path(path)
    report = _Report(path)
    data = _read_yaml(path, report)
    block_name = f"postgres_source_connection_{database_type}"
    if not report.problems:
        info = data.get("connection_info") if isinstance(data, dict) else None
        if not isinstance(info, dict):
            report.problem("must be a mapping with a 'connection_info' mapping")
        elif block_name not in info:
            available = sorted(
                k.removeprefix("postgres_source_connection_")
                for k in info
                if isinstance(k, str) and k.startswith("postgres_source_connection_")
            )
            report.problem(
                f"no block 'connection_info.{block_name}' "
                f"(database types in this file: {', '.join(available) or 'none'})"
            )
        else:
            env = _connection_env(info[block_name], f"connection_info.{block_name}", report)
            if env is not None and not report.problems:
                return env
    raise ManifestError(report.problems, report.warnings)


# --- parsing ------------------------------------------------------------------


class _Report:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, text: str, table: str | None = None) -> None:
        self.problems.append(f"{_where(self.path, table)}: {text}")

    def warn(self, text: str, table: str | None = None) -> None:
        self.warnings.append(f"{_where(self.path, table)}: {text}")


def _where(path: Path, table: str | None) -> str:
    return f"{path}" if table is None else f"{path}: table '{table}'"


# libyaml's parser when available: several times faster on GitLab's big manifests. The
# type checker sees the pure-Python class; the C one has the same interface.
if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """SafeLoader that records duplicate mapping keys (plain YAML keeps only the last)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[object, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # merge keys may legitimately be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    self.duplicates.append((key, key_node.start_mark.line + 1))
                seen.add(key)
            except TypeError:
                pass  # unhashable key: the base class reports it
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path, report: _Report) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        report.problem("file not found")
        return None
    except IsADirectoryError:
        report.problem("is a directory, not a file")
        return None
    except OSError as exc:
        report.problem(f"cannot read file: {exc.strerror}")
        return None
    except UnicodeDecodeError as exc:
        report.problem(f"not UTF-8 text: {exc.reason}")
        return None
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        detail = f"{exc.problem} ({exc.context})" if exc.context else f"{exc.problem}"
        report.problem(f"invalid YAML{where}: {' '.join(detail.split())}")
        return None
    except yaml.YAMLError as exc:
        report.problem(f"invalid YAML: {' '.join(str(exc).split())}")
        return None
    finally:
        loader.dispose()
    for key, line in loader.duplicates:
        report.problem(f"duplicate key {key!r} at line {line} (YAML would keep only the last)")
    return data


def _parse_manifest(path: Path) -> Manifest:
    report = _Report(path)
    data = _read_yaml(path, report)
    if report.problems:
        raise ManifestError(report.problems, report.warnings)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        report.problem(f"must be a mapping with a 'tables' key, got {got}")
        raise ManifestError(report.problems, report.warnings)
    for key in data:
        if key not in KNOWN_TOP_KEYS:
            report.warn(f"unknown top-level key {key!r} (ignored)")

    connection_env = None
    if "connection_info" in data:
        connection_env = _connection_env(data["connection_info"], "connection_info", report)

    tables_raw = data.get("tables")
    tables: list[ManifestTable] = []
    if not isinstance(tables_raw, dict) or not tables_raw:
        got = "missing" if "tables" not in data else f"got {_describe(tables_raw)}"
        report.problem(f"'tables' must be a non-empty mapping ({got})")
    else:
        for key, raw in tables_raw.items():
            table = _parse_table(path, key, raw, report)
            if table is not None:
                tables.append(table)

    manifest = Manifest(path, tuple(tables), connection_env, tuple(report.warnings))
    report.problems += duplicate_stream_problems([manifest])
    if report.problems:
        raise ManifestError(report.problems, report.warnings)
    return manifest


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict | list | str) and not value:
        return f"an empty {type(value).__name__}"
    return type(value).__name__


def _connection_env(raw: object, where: str, report: _Report) -> ConnectionEnv | None:
    if not isinstance(raw, dict):
        report.problem(
            f"'{where}' must be a mapping of {', '.join(CONNECTION_KEYS)}"
            " to environment variable names"
        )
        return None
    values: dict[str, str] = {}
    for yaml_key, attr in CONNECTION_KEYS.items():
        value = raw.get(yaml_key)
        if isinstance(value, str) and value.strip():
            values[attr] = value.strip()
        elif yaml_key not in raw:
            report.problem(f"'{where}' is missing key '{yaml_key}' (an environment variable name)")
        else:
            report.problem(
                f"'{where}.{yaml_key}' must be an environment variable name, got {_describe(value)}"
            )
    for key in raw:
        if key not in CONNECTION_KEYS:
            report.warn(f"unknown key {key!r} in '{where}' (ignored)")
    return ConnectionEnv(**values) if len(values) == len(CONNECTION_KEYS) else None


def _flag(value: object) -> bool:
    """pgp's flags: YAML true or the string "true" (any case); anything else is false."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _check_flag(raw: dict[Any, Any], key: str, table: str, report: _Report) -> bool:
    value = raw.get(key)
    if not (value is None or isinstance(value, bool)) and not (
        isinstance(value, str) and value.strip().lower() in ("true", "false")
    ):
        report.warn(f"'{key}' should be true or false, got {value!r}; treated as false", table)
    return _flag(value)


def _parse_table(path: Path, key: object, raw: object, report: _Report) -> ManifestTable | None:
    name = str(key)
    start = len(report.problems)
    if not isinstance(key, str):
        report.problem(f"table key must be a string, got {type(key).__name__}", name)
    if not isinstance(raw, dict):
        report.problem(f"must be a mapping of table settings, got {_describe(raw)}", name)
        return None

    text: dict[str, str] = {}
    for required in REQUIRED_KEYS:
        value = raw.get(required)
        if required not in raw:
            report.problem(f"missing required key '{required}'", name)
        elif not isinstance(value, str) or not value.strip():
            report.problem(f"'{required}' must be a non-empty string, got {_describe(value)}", name)
        else:
            text[required] = value.strip() if required != "import_query" else value
    for ident in ("import_db", "export_table"):
        # They name the stream and target table, so keep them identifier-like.
        if ident in text and not _NAME.fullmatch(text[ident]):
            report.problem(
                f"'{ident}' must contain only letters, digits and underscores, got {text[ident]!r}",
                name,
            )

    optional: dict[str, str | None] = {}
    for key_name in ("additional_filtering", "database_type", "incremental_type"):
        value = raw.get(key_name)
        if value is not None and not isinstance(value, str):
            report.problem(f"'{key_name}' must be a string, got {_describe(value)}", name)
        optional[key_name] = (value.strip() or None) if isinstance(value, str) else None
    incremental_type = optional["incremental_type"]
    if incremental_type is not None and incremental_type != LOAD_BY_ID:
        report.problem(f"'incremental_type' must be '{LOAD_BY_ID}', got {incremental_type!r}", name)

    for unknown in raw:
        if unknown not in KNOWN_TABLE_KEYS:
            report.warn(f"unknown key {unknown!r} (ignored)", name)
    advanced_metadata = _check_flag(raw, "advanced_metadata", name, report)
    deletes_exempt = _check_flag(raw, "deletes_exempt", name, report)

    if len(text) < len(REQUIRED_KEYS) or len(report.problems) > start:
        return None
    try:
        query = QueryTemplate.parse(
            text["import_query"], optional["additional_filtering"], text["export_table_primary_key"]
        )
    except QueryError as exc:
        report.problem(str(exc), name)
        return None
    for warning in query.warnings:
        report.warn(warning, name)

    if query.is_windowed:
        if incremental_type == LOAD_BY_ID:
            report.problem(
                "'incremental_type: load_by_id' cannot be combined with time-window placeholders",
                name,
            )
            return None
        load_type = LoadType.INCREMENTAL
    else:
        load_type = LoadType.LOAD_BY_ID if incremental_type == LOAD_BY_ID else LoadType.SCD
    if "is_incremental" in raw and _flag(raw["is_incremental"]) != (load_type != LoadType.SCD):
        report.warn(
            f"is_incremental is {raw['is_incremental']!r} but the table loads as {load_type}"
            " (decided by the query's placeholders and incremental_type)",
            name,
        )

    return ManifestTable(
        source_file=path,
        key=name,
        import_db=text["import_db"],
        import_query=text["import_query"],
        export_schema=text["export_schema"],
        export_table=text["export_table"],
        primary_key=query.primary_key,
        additional_filtering=query.additional_filtering,
        advanced_metadata=advanced_metadata,
        incremental_type=incremental_type,
        database_type=optional["database_type"],
        deletes_exempt=deletes_exempt,
        load_type=load_type,
        replication_key=query.replication_key,
        placeholders=tuple(sorted(query.placeholders)),
        query=query,
    )
