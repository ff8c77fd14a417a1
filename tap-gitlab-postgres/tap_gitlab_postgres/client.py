"""The source Postgres: connecting, describing a query's columns, streaming rows as JSON."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.abc import PQGen
from psycopg.generators import WAIT_R

from tap_gitlab_postgres.manifest import ConnectionEnv
from tap_gitlab_postgres.schema import CLAMP_MARK, CLAMPED_JSON, Column, PgType
from tap_gitlab_postgres.sdk_compat import finish_copy_out
from tap_gitlab_postgres.sqltext import quote_ident, sql_string


class SourceError(Exception):
    """A problem with the source database, worded for an operator (never holds secrets)."""


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    user: str
    password: str | None
    database: str
    sslmode: str | None = None
    statement_timeout_ms: int | None = None

    @classmethod
    def resolve(
        cls,
        config: Mapping[str, object],
        env_names: ConnectionEnv | None,
        environ: Mapping[str, str] = os.environ,
    ) -> ConnectionSettings:
        """Settings win; anything unset comes from the env variables the manifest names."""

        def pick(setting: str, env_name: str | None) -> str | None:
            value = config.get(setting)
            if value not in (None, ""):
                return str(value)
            if env_name is None:
                return None
            if env_name not in environ:
                raise SourceError(
                    f"setting '{setting}' is unset and the manifest's env variable "
                    f"{env_name} is not set"
                )
            return environ[env_name]

        e = env_names
        values = {
            "host": pick("host", e.host if e else None),
            "port": pick("port", e.port if e else None),
            "user": pick("user", e.user if e else None),
            "password": pick("password", e.password if e else None),
            "database": pick("database", e.database if e else None),
        }
        missing = [k for k in ("host", "user", "database") if not values[k]]
        if missing:
            raise SourceError(
                "no connection settings for " + ", ".join(missing) + " (set them, or a "
                "manifest connection_info / connection_info_path naming env variables)"
            )
        try:
            port = int(values["port"] or 5432)
        except ValueError:
            raise SourceError(f"setting 'port' is not a number: {values['port']!r}") from None
        timeout = config.get("statement_timeout")
        if timeout is not None and not isinstance(timeout, int | float | str):
            raise SourceError(f"setting 'statement_timeout' is not a number: {timeout!r}")
        return cls(
            host=str(values["host"]),
            port=port,
            user=str(values["user"]),
            password=values["password"],
            database=str(values["database"]),
            sslmode=str(config["sslmode"]) if config.get("sslmode") else None,
            statement_timeout_ms=int(timeout) if timeout else None,
        )

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.database}"


# Session settings that make Postgres render JSON the way the schema promises.
_SESSION_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601"


class SourceDatabase:
    """One autocommit connection: each statement is its own short snapshot, which keeps a
    long full sync from holding a transaction open on a replica."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._conn: psycopg.Connection | None = None
        self._types: dict[int, PgType] = {}

    def connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            s = self.settings
            options = _SESSION_OPTIONS
            if s.statement_timeout_ms:
                options += f" -c statement_timeout={s.statement_timeout_ms}"
            try:
                self._conn = psycopg.connect(
                    host=s.host,
                    port=s.port,
                    user=s.user,
                    password=s.password,
                    dbname=s.database,
                    sslmode=s.sslmode or "prefer",
                    options=options,
                    application_name="tap-gitlab-postgres",
                    client_encoding="utf8",
                    autocommit=True,
                    connect_timeout=30,
                )
            except psycopg.Error as exc:
                raise SourceError(
                    f"cannot connect to Postgres {s.describe()}: {first_line(exc)}"
                ) from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def describe_columns(self, probe_sql: str) -> list[Column]:
        """Columns of a query as Postgres resolves them (``probe_sql`` returns no rows)."""
        with self.connect().cursor() as cur:
            cur.execute(probe_sql)
            described = [(d.name, d.type_code) for d in cur.description or []]
            # numeric(p, s) from the type modifier (None when unconstrained).
            decimals = [(d.precision, d.scale) for d in cur.description or []]
            result = cur.pgresult
            origins = [
                (result.ftable(i), result.ftablecol(i)) if result else (0, 0)
                for i in range(len(described))
            ]
        self._load_types({oid for _, oid in described})
        names = self._origin_names({o for o in origins if o[0]})
        columns = []
        for (name, oid), origin, (precision, scale) in zip(
            described, origins, decimals, strict=True
        ):
            pg_type = self._types[oid]
            if pg_type.name != "numeric":
                precision = scale = None
            columns.append(
                Column(name, pg_type, names.get(origin, ""), precision=precision, scale=scale)
            )
        return columns

    def _origin_names(self, origins: set[tuple[int, int]]) -> dict[tuple[int, int], str]:
        """{(table oid, column number): 'table.column'} for warnings about values."""
        if not origins:
            return {}
        with self.connect().cursor() as cur:
            cur.execute(
                "SELECT attrelid::int, attnum::int, attrelid::regclass::text || '.' || attname "
                "FROM pg_attribute WHERE (attrelid, attnum) IN (SELECT * FROM unnest("
                "%s::oid[], %s::int2[]))",
                [[o[0] for o in origins], [o[1] for o in origins]],
            )
            return {(r[0], r[1]): r[2] for r in cur.fetchall()}

    def fetch_value(self, sql: str) -> object:
        with self.connect().cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
        return None if row is None else row[0]

    def fetch_count(self, sql: str) -> int:
        count = self.fetch_value(sql)
        if not isinstance(count, int):
            raise SourceError(f"no count from {sql[:80]}: {count!r}")
        return count

    def fetch_row(self, sql: str) -> tuple[Any, ...]:
        with self.connect().cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
        if row is None:
            raise SourceError(f"no row from {sql[:80]}")
        return tuple(row)

    def stream_json(
        self, sql: str, columns: list[Column], constants: Mapping[str, str]
    ) -> Iterator[str]:
        """Each row of ``sql`` as one JSON object text, built by Postgres."""
        for block in self.stream_lines(sql, columns, constants):
            # JSON texts hold no raw newline; "\n" ends every row (not str.splitlines,
            # which also splits on U+2028 inside strings).
            yield from block.decode().split("\n")[:-1]

    def stream_lines(
        self,
        sql: str,
        columns: list[Column],
        constants: Mapping[str, str],
        prefix: str = "",
        suffix: str = "",
    ) -> Iterator[bytes]:
        """Rows as newline-terminated ``prefix + JSON + suffix`` lines, in COPY's own blocks.

        CSV mode with control characters as delimiter and quote never escapes anything in
        a JSON text (JSON has no raw control characters), so the bytes pass through as
        they are: no per-row work in Python.
        """
        line = f"{sql_string(prefix)} || j || {sql_string(suffix)}"
        copy_sql = (
            f"COPY (SELECT {line} FROM ({record_json_sql(sql, columns, constants)}) AS r) "
            "TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
        )
        checks = ValueChecks(columns, record_key="record" if prefix else None)
        conn = self.connect()
        # A SQL_ASCII database holds whatever bytes were written, and Postgres refuses to
        # send invalid UTF-8 to a UTF8 client: read such a database's bytes as they are
        # (the query goes as UTF-8 bytes) and repair them here (ValueChecks.utf8).
        raw = conn.info.parameter_status("server_encoding") == "SQL_ASCII"
        if raw:
            conn.execute("SET client_encoding TO 'SQL_ASCII'")
        try:
            with conn.cursor() as cur, cur.copy(copy_sql.encode()) as copy:
                for block in copy:
                    data = bytes(block)
                    if raw:
                        data = checks.utf8(data)
                    if checks.clamp_columns and CLAMP_MARK in data:
                        checks.count_clamped(data)
                    yield data
        finally:
            if raw and not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SET client_encoding TO 'UTF8'")
            checks.report()

    @contextlib.contextmanager
    def copy_csv(self, sql: str, columns: list[Column]) -> Iterator[CsvReader]:
        """Rows of ``sql`` as CSV (``Column.csv_sql`` of each column), read in pieces."""
        exprs = [f"{c.csv_sql('q.' + quote_ident(c.name))}" for c in columns]
        copy_sql = f"COPY (SELECT {', '.join(exprs)} FROM ({sql}) AS q) TO STDOUT (FORMAT csv)"
        conn = self.connect()
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            yield CsvReader(conn, copy)

    def _load_types(self, oids: set[int]) -> None:
        rows: dict[int, tuple[Any, ...]] = {}
        todo = oids - self._types.keys()
        while todo:
            with self.connect().cursor() as cur:
                cur.execute(
                    "SELECT oid::int, typname, typtype, typcategory, typelem::int, "
                    "typbasetype::int FROM pg_type WHERE oid = ANY(%s)",
                    [list(todo)],
                )
                fetched = {r[0]: r for r in cur.fetchall()}
            rows |= fetched
            # Arrays and domains refer to other types, which may not be loaded yet.
            refs = {r[4] for r in fetched.values() if r[3] == "A" and r[4]}
            refs |= {r[5] for r in fetched.values() if r[2] == "d"}
            todo = refs - self._types.keys() - rows.keys()

        def build(oid: int) -> PgType:
            if oid not in self._types:
                _, name, kind, category, elem, base = rows[oid]
                if kind == "d":
                    self._types[oid] = build(base)
                elif category == "A" and elem:
                    self._types[oid] = PgType(name=name, kind=kind, element=build(elem))
                else:
                    self._types[oid] = PgType(name=name, kind=kind)
            return self._types[oid]

        for oid in rows:
            build(oid)


logger = logging.getLogger("tap-gitlab-postgres")


class ValueChecks:
    """Values the tap had to change on their way out, counted per column and reported once
    per query as one warning line naming the source table and column:

    - dates and timestamps outside years 1..9999 ('infinity', BC, year 10000): loaded as
      the nearest bound (schema.CLAMPED_JSON), marked in the JSON by schema.CLAMP_MARK;
    - text that is not valid UTF-8 (only a SQL_ASCII database can hold it): every invalid
      byte becomes U+FFFD, the rest of the value and the row are kept.
    """

    def __init__(self, columns: list[Column], record_key: str | None) -> None:
        self.columns = columns
        self.record_key = record_key
        self.clamp_columns = [
            (c, f'"{c.name}": "'.encode())
            for c in columns
            if c.pg_type.element is None and c.pg_type.name in CLAMPED_JSON
        ]
        self.clamped: Counter[Column] = Counter()
        self.repaired: Counter[str] = Counter()

    def count_clamped(self, data: bytes) -> None:
        for column, pattern in self.clamp_columns:
            if pattern in data:
                self.clamped[column] += data.count(pattern)

    def utf8(self, data: bytes) -> bytes:
        try:
            data.decode()
            return data
        except UnicodeDecodeError:
            pass
        text = data.decode(errors="replace")
        for line in text.split("\n")[:-1]:
            try:
                record = json.loads(line)
                if self.record_key:
                    record = record[self.record_key]
                bad = [
                    key
                    for key, value in record.items()
                    if "\ufffd" in (value if isinstance(value, str) else json.dumps(value))
                ]
            except (ValueError, KeyError, TypeError, AttributeError):
                bad = []
            self.repaired.update(bad or ["?"])
        return text.encode()

    def report(self) -> None:
        by_name = {c.name: c for c in self.columns}
        for column, count in self.clamped.items():
            low, high = CLAMPED_JSON[column.pg_type.name]
            logger.warning(
                "%s: %d value(s) outside years 1-9999 ('infinity', BC, year 10000+) loaded as "
                "%s or %s",
                _column_label(column),
                count,
                low,
                high,
            )
        for name, count in self.repaired.items():
            logger.warning(
                "%s: %d value(s) not valid UTF-8 (SQL_ASCII database); invalid bytes loaded "
                "as U+FFFD",
                _column_label(by_name[name]) if name in by_name else f"column '{name}'",
                count,
            )
        self.clamped.clear()
        self.repaired.clear()


def _column_label(column: Column) -> str:
    name, origin = column.name, column.origin
    if origin and origin.rsplit(".", 1)[-1] == name:
        return f"source table {origin.rsplit('.', 1)[0]}, column '{name}'"
    if origin:
        return f"column '{name}' (from source table column {origin})"
    if column.relation:
        return f"column '{name}' (computed in the query on source table {column.relation})"
    return f"column '{name}'"


class CsvReader:
    """A ``COPY TO`` in pieces of whole rows, with no Python object kept per row.

    Postgres sends every row of a ``COPY TO`` as its own message, so rows are counted by
    messages (a quoted CSV value may hold newlines). Each row is appended to the piece as
    it arrives and its libpq buffer freed at once: holding thousands of them until a
    piece is complete costs more than the copy. The loop is psycopg's ``copy_from``
    generator (psycopg 3.3), for many rows at a time; the end of the data is handled as
    ``Copy.read`` does.
    """

    def __init__(self, conn: psycopg.Connection, copy: psycopg.Copy) -> None:
        self._conn = conn
        self._copy = copy
        self.done = False

    def read(self, rows: int, size: int) -> tuple[bytearray, int]:
        """The next piece: ``rows`` rows, or fewer once it holds ``size`` bytes or the data
        ends (then ``done`` is true). Returns (CSV bytes, rows)."""
        out = bytearray()
        if self.done:
            return out, 0
        return out, self._conn.wait(self._fill(out, rows, size))

    def _fill(self, out: bytearray, rows: int, size: int) -> PQGen[int]:
        pgconn = self._conn.pgconn
        get = pgconn.get_copy_data
        n = 0
        while True:
            nbytes, data = get(1)
            if nbytes > 0:
                out += data
                n += 1
                if n >= rows or len(out) >= size:
                    return n
            elif nbytes == 0:  # nothing buffered: wait for the socket
                while not (yield WAIT_R):
                    pass
                pgconn.consume_input()
            else:
                yield from finish_copy_out(self._conn, self._copy)
                self.done = True
                return n


def record_json_sql(sql: str, columns: list[Column], constants: Mapping[str, str]) -> str:
    """``sql`` reshaped to one JSON text column ``j`` per row, each value in its schema form.

    ``constants`` maps extra column names to SQL literals (run metadata).
    """
    exprs = [f"{c.json_sql('q.' + quote_ident(c.name))} AS {quote_ident(c.name)}" for c in columns]
    exprs += [f"{value} AS {quote_ident(name)}" for name, value in constants.items()]
    return (
        f"SELECT row_to_json(p)::text AS j FROM (SELECT {', '.join(exprs)} FROM ({sql}) AS q) AS p"
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
