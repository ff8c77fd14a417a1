"""tap-gitlab-postgres: every table of a pgp manifest becomes a Singer stream."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_gitlab_postgres.allowlist import AllowListError, AllowLists
from tap_gitlab_postgres.batches import BATCH_CONFIG_SCHEMA
from tap_gitlab_postgres.client import ConnectionSettings, SourceDatabase, SourceError, first_line
from tap_gitlab_postgres.counts import RowCountsStream
from tap_gitlab_postgres.deletes import KeySetStream, has_deletes_pass
from tap_gitlab_postgres.manifest import (
    Manifest,
    ManifestError,
    load_connection_file,
    load_manifest,
)
from tap_gitlab_postgres.schema import Column
from tap_gitlab_postgres.sdk_compat import ScopedSyncTap
from tap_gitlab_postgres.streams import PgpStream, RunSettings

# Whether the source is a replica, and the commit time of the last transaction it replayed.
REPLICA_TIME_SQL = "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()"

# sqlglot explains its Postgres array-index handling at INFO on every parse: noise here.
logging.getLogger("sqlglot").setLevel(logging.WARNING)

PROJECTS_SETTING = "internal_projects_csv"
NAMESPACES_SETTING = "internal_namespaces_csv"
# The allow-list settings each {INTERNAL_*} placeholder is filled from.
PLACEHOLDER_SETTINGS = {
    "INTERNAL_PROJECT_IDS": (PROJECTS_SETTING,),
    "INTERNAL_PROJECT_PATHS": (PROJECTS_SETTING,),
    "INTERNAL_NAMESPACE_IDS": (NAMESPACES_SETTING,),
    "INTERNAL_NAMESPACE_PATHS": (NAMESPACES_SETTING,),
    "INTERNAL_PATHS": (NAMESPACES_SETTING, PROJECTS_SETTING),
}


class StreamsFailed(Exception):
    """Some streams failed; the others finished and their state was emitted."""


class TapGitlabPostgres(ScopedSyncTap):
    name = "tap-gitlab-postgres"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "manifest_path",
            th.StringType,
            required=True,
            description="Path of the pgp manifest (YAML) whose tables become streams.",
        ),
        th.Property(
            "connection_info_path",
            th.StringType,
            description="GitLab's split connection file (blocks "
            "postgres_source_connection_<database_type>) naming env variables.",
        ),
        th.Property(
            "database_type",
            th.StringType,
            allowed_values=["main", "ci", "customers", "ops", "cells"],  # pgp's CLI choices
            description="Keep only manifest tables of this database_type (main, ci, ...).",
        ),
        th.Property(
            "host", th.StringType, description="Source host; default from the manifest's env."
        ),
        th.Property(
            "port", th.IntegerType, description="Source port; default from the manifest's env."
        ),
        th.Property(
            "user", th.StringType, description="Source user; default from the manifest's env."
        ),
        th.Property(
            "password",
            th.StringType,
            secret=True,
            description="Source password; default from the manifest's env.",
        ),
        th.Property(
            "database",
            th.StringType,
            description="Source database; default from the manifest's env.",
        ),
        th.Property("sslmode", th.StringType, description="libpq sslmode (default prefer)."),
        th.Property(
            "statement_timeout",
            th.IntegerType,
            description="Statement timeout on the source in milliseconds.",
        ),
        th.Property(
            "execution_date",
            th.DateTimeType,
            description="End bound of incremental windows (default: now).",
        ),
        th.Property(
            "replica_lag_windows",
            th.StringType(allowed_values=["auto", "on", "off"]),
            default="auto",
            description="End incremental windows at the source's replica time (pgp's "
            "lag-aware window), so a bookmark never passes rows the replica has not replayed: "
            "auto = for tables whose manifest export_schema is gitlab_com, on = every "
            "incremental table, off = none.",
        ),
        th.Property(
            "replica_time_sql",
            th.StringType,
            description="Query returning the source's replica time (timestamptz). Default: "
            "pg_last_xact_replay_timestamp() when the source is a replica (pg_is_in_recovery), "
            "none on a primary (nothing lags). GitLab's own: SELECT last_replica_time FROM "
            "public.last_replication_timestamp.",
        ),
        th.Property(
            "max_replica_lag_hours",
            th.NumberType,
            default=12,
            description="Refuse to run (no state change) when a lag-aware table is selected "
            "and the replica time is NULL or older than this (pgp's check_replica_snapshot).",
        ),
        th.Property(
            "lookback_minutes",
            th.IntegerType,
            default=30,
            description="Overlap before the bookmark where each incremental run starts.",
        ),
        th.Property(
            "max_window_hours",
            th.NumberType,
            default=96,
            description="Longest incremental window; state is checkpointed after each.",
        ),
        th.Property(
            "chunk_size",
            th.IntegerType(minimum=1),
            default=500_000,
            description="Rows per primary-key chunk of full syncs and load_by_id.",
        ),
        th.Property(
            "test_rows",
            th.IntegerType,
            default=0,
            description="Test load: only the first N rows of new or changed streams.",
        ),
        th.Property(
            "fast_records",
            th.BooleanType,
            default=True,
            description="RECORD messages assembled by Postgres and copied to stdout as they "
            "come; false routes every record through singer-sdk (slower). Stream maps and "
            "deselected properties always take the SDK route.",
        ),
        th.Property(
            "row_counts",
            th.BooleanType,
            default=True,
            description="Send stream pgp_row_counts (rows read per stream, and the source's "
            "count(*) after each complete copy) for dbt's row-count checks.",
        ),
        th.Property(
            "deletes_pass",
            th.BooleanType,
            default=False,
            description="Add a stream <stream>_pks per incremental table without "
            "deletes_exempt: its current primary-key set, from which dbt flags rows deleted "
            "in the source (pgp_is_deleted).",
        ),
        th.Property(
            "skip_undescribable_tables",
            th.BooleanType,
            default=False,
            description="Leave out, with a warning, a manifest table whose query Postgres "
            "cannot describe (a missing column or table, no permission, a repeated column "
            "name, no primary-key column) instead of failing discovery for it.",
        ),
        th.Property(
            "task_instance",
            th.StringType,
            description="Value of _task_instance (default: the run's UTC start time).",
        ),
        th.Property(
            PROJECTS_SETTING,
            th.StringType,
            description="Allow list behind {INTERNAL_PROJECT_IDS} / _PATHS.",
        ),
        th.Property(
            NAMESPACES_SETTING,
            th.StringType,
            description="Allow list behind {INTERNAL_NAMESPACE_IDS} / _PATHS.",
        ),
    ).to_dict()
    # singer-sdk's batch_config allows jsonl and parquet only; this adds arrow (batches.py).
    config_jsonschema["properties"]["batch_config"] = BATCH_CONFIG_SCHEMA
    # A misspelt setting would otherwise be ignored silently, with its default in force.
    config_jsonschema["additionalProperties"] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.failures: list[str] = []
        self.undescribed: list[str] = []  # tables left out of the catalog, one line each
        self._source: SourceDatabase | None = None
        super().__init__(*args, **kwargs)

    def discover_streams(self) -> list[Stream]:
        config = self.config
        manifest = load_manifest(config["manifest_path"], config.get("database_type"))
        for warning in manifest.warnings:
            self.logger.warning("%s", warning)
        env_names = manifest.connection_env
        if env_names is None and config.get("connection_info_path"):
            if not config.get("database_type"):
                raise ManifestError(["setting 'connection_info_path' needs 'database_type'"])
            env_names = load_connection_file(
                config["connection_info_path"], config["database_type"]
            )
        source = self._source = SourceDatabase(ConnectionSettings.resolve(config, env_names))
        run = self._run_settings(self._allow_lists(manifest))
        streams: list[Stream] = []
        for table in manifest.tables:
            where = f"{table.source_file.name}: table '{table.key}'"
            try:
                columns = source.describe_columns(table.query.probe_sql(run.allow))
            except psycopg.Error as exc:
                self._undescribable(table.stream_name, f"{where}: {first_line(exc)}")
                continue
            names = [c.name for c in columns]
            duplicated = sorted({n for n in names if names.count(n) > 1})
            if duplicated:
                self._undescribable(table.stream_name, f"{where}: duplicate columns {duplicated}")
            elif table.primary_key not in names:
                self._undescribable(
                    table.stream_name,
                    f"{where}: primary key '{table.primary_key}' is not a column of the query",
                )
            else:
                relation = _relation(columns, table.primary_key) or table.export_table
                columns = [replace(c, relation=relation) for c in columns]
                streams.append(PgpStream(self, table, columns, source, run))
                if config.get("deletes_pass") and has_deletes_pass(table):
                    key_column = next(c for c in columns if c.name == table.primary_key)
                    streams.append(KeySetStream(self, table, key_column, source, run))
        names = [s.name for s in streams]
        for stream in [s for s in streams if isinstance(s, KeySetStream)]:
            if names.count(stream.name) > 1:
                # A manifest table already has that stream name: neither may be mixed up.
                self.record_failure(
                    stream.name,
                    f"{stream.where}: stream name {stream.name!r} is also a manifest"
                    " table's; its deletes pass is skipped",
                )
                streams.remove(stream)
        if config["row_counts"]:
            # Last, so that it reports every stream synced before it.
            tables = [s for s in streams if type(s) is PgpStream]
            streams.append(RowCountsStream(self, tables))
        return streams

    def _allow_lists(self, manifest: Manifest) -> AllowLists:
        """The allow lists behind the manifest's ``{INTERNAL_*}`` placeholders; each list
        a placeholder needs must be set (the plugin assumes no repository layout)."""
        used = False
        for table in manifest.tables:
            for placeholder in table.placeholders:
                for setting in PLACEHOLDER_SETTINGS.get(placeholder, ()):
                    used = True
                    if not self.config.get(setting):
                        raise AllowListError(
                            f"{table.source_file.name}: table '{table.key}' uses "
                            f"{{{placeholder}}}, but setting '{setting}' (the allow list CSV) "
                            "is not set"
                        )
        if not used:
            return AllowLists.empty()
        projects, namespaces = (self.config.get(s) for s in (PROJECTS_SETTING, NAMESPACES_SETTING))
        return AllowLists.load(
            Path(projects) if projects else None, Path(namespaces) if namespaces else None
        )

    def _run_settings(self, allow: AllowLists) -> RunSettings:
        config = self.config
        started = datetime.now(UTC)
        end_bound = started
        if config.get("execution_date"):
            end_bound = _parse_timestamp(config["execution_date"], "execution_date")
            if end_bound.tzinfo is None:
                end_bound = end_bound.replace(tzinfo=UTC)
        return RunSettings(
            end_bound=end_bound,
            lookback=timedelta(minutes=config["lookback_minutes"]),
            # float: singer-sdk reads fractional config values as Decimal.
            max_window=timedelta(hours=float(config["max_window_hours"])),
            chunk_size=config["chunk_size"],
            test_rows=config["test_rows"],
            task_instance=config.get("task_instance") or started.strftime("%Y%m%dT%H%M%SZ"),
            allow=allow,
            raw_records=config["fast_records"],
            replica_lag_windows=config["replica_lag_windows"],
            count_source_rows=config["row_counts"],
        )

    def _check_replica(self) -> None:
        """pgp's check_replica_snapshot, then the replica time for lag-aware windows."""
        lagged = [
            s
            for s in self.streams.values()
            if type(s) is PgpStream and s.selected and s.lag_aware
        ]
        if not lagged or self._source is None:
            return
        if self.config.get("replica_time_sql"):
            value = self._source.fetch_value(self.config["replica_time_sql"])
        else:
            in_recovery, value = self._source.fetch_row(REPLICA_TIME_SQL)
            if not in_recovery:
                self.logger.info("the source is a primary: no replica lag to wait for")
                return
        refuse = "refusing to run, no state changed (max_replica_lag_hours, replica_time_sql)"
        if value is None:
            raise SourceError(
                f"the source's replica time is NULL (a replica that has replayed no "
                f"transaction since it started); {refuse}"
            )
        if not isinstance(value, datetime):
            raise SourceError(f"replica_time_sql returned {value!r}, not a timestamp; {refuse}")
        replica_time = value if value.tzinfo else value.replace(tzinfo=UTC)
        lag = datetime.now(UTC) - replica_time
        limit = float(self.config["max_replica_lag_hours"])
        if lag > timedelta(hours=limit):
            raise SourceError(
                f"the source's replica time {replica_time.isoformat()} is "
                f"{lag.total_seconds():.0f} s old, over max_replica_lag_hours {limit:g}; {refuse}"
            )
        self.logger.info(
            "replica time %s (%.0f s behind): incremental windows of %d lag-aware stream(s) end"
            " there at the latest",
            replica_time.isoformat(),
            lag.total_seconds(),
            len(lagged),
        )
        for stream in lagged:
            stream.replica_time = replica_time

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()

    def record_failure(self, stream: str, message: str) -> None:
        """A stream that cannot be read is reported; the other streams go on."""
        self.logger.error("stream %s failed: %s", stream, message)
        self.failures.append(f"{stream} ({message})")

    def _undescribable(self, stream: str, message: str) -> None:
        """A manifest table without a schema: a failure (discovery fails, a sync goes on
        with the other streams and fails at the end), or left out when configured so."""
        if self.config["skip_undescribable_tables"]:
            self.logger.warning(
                "stream %s left out (skip_undescribable_tables): %s", stream, message
            )
            return
        self.undescribed.append(f"stream {stream}: {message}")
        self.record_failure(stream, message)

    def run_discovery(self) -> str:
        try:
            if self.streams and self.undescribed:
                # A catalog that silently lacks a manifest table would hide it for good.
                raise StreamsFailed(
                    "\n".join(self.undescribed)
                    + f"\ndiscovery failed for {len(self.undescribed)} manifest table(s): fix"
                    " the manifest or the source, or set skip_undescribable_tables to leave"
                    " them out"
                )
            return super().run_discovery()
        finally:
            self._close_source()

    @contextmanager
    def sync_scope(self) -> Iterator[None]:
        try:
            self._check_replica()
            yield
        finally:
            self._close_source()
        if self.failures:
            raise StreamsFailed(
                f"{len(self.failures)} stream(s) failed: " + "; ".join(self.failures)
            )


def _relation(columns: list[Column], primary_key: str) -> str | None:
    """The relation the query reads, as Postgres resolves it: its primary key's table."""
    origin = next((c.origin for c in columns if c.name == primary_key), "")
    return origin.rsplit(".", 1)[0] if origin else None


def _parse_timestamp(value: str, setting: str) -> datetime:
    # Raised as the SDK's own validation error: its CLI logs one line per problem.
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigValidationError(
            "Config validation failed",
            errors=[f"{value!r} is not an ISO 8601 timestamp in config[{setting!r}]"],
        ) from None


OPERATOR_ERRORS = (ManifestError, SourceError, AllowListError, StreamsFailed)


def main() -> None:
    """Console entry point: operator errors end in clear lines, not a traceback."""
    try:
        TapGitlabPostgres.cli()
    except OPERATOR_ERRORS as exc:
        for line in str(exc).splitlines():
            print(f"tap-gitlab-postgres: error: {line}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
