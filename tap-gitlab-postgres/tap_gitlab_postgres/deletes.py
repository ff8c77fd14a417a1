"""The deletes pass (setting ``deletes_pass``): pgp's ``--load_type deletes`` as a stream.

pgp exported the full primary-key set of every incremental table without
``deletes_exempt`` and UPDATEd RAW in place (``pgp_is_deleted``,
``pgp_is_deleted_updated_at``). RAW is append-only here, so the tap only reports the key
set and dbt derives the flags (``transform/macros/deletes/pgp_flag_deletes.sql``):

- stream ``<stream>_pks`` (e.g. ``gitlab_db_issues_pks``), no key properties, columns:
  the primary key (named and typed as in the table's stream), ``_uploaded_at`` (epoch
  seconds when the pass started, the same on every record of a pass) and
  ``_pgp_key_count``;
- one pass = every key (streamed through COPY like the table's own rows), then one
  **marker** record whose key is NULL and whose ``_pgp_key_count`` is the number of keys
  sent, then ACTIVATE_VERSION. Every record of a pass carries the pass's table version
  (``_sdc_table_version`` in RAW); the target retires older passes on activation.
- a pass is complete iff its marker is in RAW: the marker is the last record of the same
  stream, so a target that loaded it has loaded every key before it. An interrupted pass
  leaves no marker and changes nothing; its keys are retired by the next complete pass.

State: ``bookmarks.<stream>_pks`` holds ``table_version``, ``last_pass_at`` and ``keys`` of
the last complete pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tap_gitlab_postgres.manifest import LoadType, ManifestTable
from tap_gitlab_postgres.schema import Column, PgType
from tap_gitlab_postgres.streams import UPLOADED_AT, Activate, Checkpoint, PgpStream, Rows

if TYPE_CHECKING:
    from tap_gitlab_postgres.client import SourceDatabase
    from tap_gitlab_postgres.streams import RunSettings
    from tap_gitlab_postgres.tap import TapGitlabPostgres

SUFFIX = "_pks"
KEY_COUNT = "_pgp_key_count"


def has_deletes_pass(table: ManifestTable) -> bool:
    """pgp's rule: incremental tables (load_by_id included) not marked ``deletes_exempt``."""
    return table.load_type is not LoadType.SCD and not table.deletes_exempt


def keys_stream_name(table: ManifestTable) -> str:
    return f"{table.stream_name}{SUFFIX}"


def deletes_tables(tables: Iterable[ManifestTable]) -> list[ManifestTable]:
    return [t for t in tables if has_deletes_pass(t)]


class KeySetStream(PgpStream):
    """The current primary-key set of one manifest table (see the module docstring)."""

    def __init__(
        self,
        tap: TapGitlabPostgres,
        table: ManifestTable,
        key_column: Column,
        source: SourceDatabase,
        run: RunSettings,
    ) -> None:
        self.base_table = table
        # The stream's name is the table's plus the suffix; no _task_instance column.
        keys_table = replace(
            table, export_table=f"{table.export_table}{SUFFIX}", advanced_metadata=False
        )
        count = Column(KEY_COUNT, PgType(name="int8", kind="b"))
        super().__init__(tap, keys_table, [key_column, count], source, run)
        self.columns = [key_column]  # what the queries return; KEY_COUNT is a constant
        self.primary_keys = []  # a key set is only ever appended, pass after pass
        self.replication_key = None

    def _plan(self) -> Iterator[Rows | Checkpoint | Activate]:
        uploaded_at = time.time()
        # Every row carries the count column (NULL but in the marker), so the columnar
        # batch files of a pass share one schema.
        self.row_constants = {
            UPLOADED_AT: f"{uploaded_at:.6f}::numeric",
            KEY_COUNT: "NULL::bigint",
        }
        self.rows_read = 0
        if self.run.test_rows:
            self.logger.info("%s: no deletes pass in a test load", self.name)
            return
        state = self.stream_state
        query, allow = self.table.query, self.run.allow
        version = max(int(uploaded_at), int(state.get("table_version") or 0) + 1)
        self.table_version = version
        self.logger.info("%s: deletes pass, version %d", self.name, version)
        yield Rows(query.keys_sql(allow))
        keys = self.rows_read
        # The marker: the pass is complete once a reader sees it (same stream, so after
        # every key). The count lets a reader check it has them all.
        self.row_constants = {**self.row_constants, KEY_COUNT: str(keys)}
        yield Rows(query.null_key_row_sql(allow))
        yield Checkpoint()  # BATCH mode: the keys' files go out before the activation
        yield Activate(version)
        state["table_version"] = version
        state["last_pass_at"] = datetime.fromtimestamp(uploaded_at, UTC).isoformat()
        state["keys"] = keys
        yield Checkpoint()
        self.logger.info("%s: %d primary keys", self.name, keys)

    @property
    def where(self) -> str:
        return f"{self.table.source_file.name}: table '{self.table.key}' (deletes pass)"
