"""The source Postgres: connecting, describing a query's columns, streaming rows as JSON."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import psycopg

from tap_gitlab_postgres.manifest import ConnectionEnv
from tap_gitlab_postgres.schema import Column, PgType
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
            "host": pick("host", e and e.host),
            "port": pick("port", e and e.port),
            "user": pick("user", e and e.user),
            "password": pick("password", e and e.password),
            "database": pick("database", e and e.database),
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
        return cls(
            host=str(values["host"]),
            port=port,
            user=str(values["user"]),
            password=values["password"],
            database=str(values["database"]),
            sslmode=str(config["sslmode"]) if config.get("sslmode") else None,
            statement_timeout_ms=int(timeout) if timeout else None,  # type: ignore[call-overload]
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
        self._load_types({oid for _, oid in described})
        return [Column(name, self._types[oid]) for name, oid in described]

    def fetch_value(self, sql: str) -> object:
        with self.connect().cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
        return None if row is None else row[0]

    def stream_json(
        self, sql: str, columns: list[Column], constants: Mapping[str, str]
    ) -> Iterator[str]:
        """Each row of ``sql`` as one JSON object text, built by Postgres."""
        copy_sql = f"COPY ({record_json_sql(sql, columns, constants)}) TO STDOUT"
        with self.connect().cursor() as cur, cur.copy(copy_sql) as copy:
            copy.set_types(["text"])
            for (line,) in copy.rows():
                yield line

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
        with self.connect().cursor() as cur, cur.copy(copy_sql) as copy:
            for block in copy:
                yield bytes(block)

    def _load_types(self, oids: set[int]) -> None:
        rows: dict[int, tuple] = {}
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
