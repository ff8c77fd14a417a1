"""An offline Snowflake for the real target-snowflake: fakesnow's server, extended.

The unmodified MeltanoLabs target-snowflake (its Meltano venv) loads into a fakesnow server on
127.0.0.1 over HTTP, in RECORD mode (gzip JSONL files) and BATCH mode (Arrow IPC -> Parquet):
PUT to the user stage ``@~``, ``COPY INTO ... FROM (SELECT $1:col::TYPE ...)``, ``REMOVE``,
file formats created and dropped per sink. fakesnow 0.12.1 lacks parts of that path; the
``serve`` command fills them in inside the server process (``install_extensions``), each
helper below says what real Snowflake does. The target's own code is never touched: in its
process only ``snowflake.connector.connect`` is wrapped, to point the client at the server.

Imported by the tests (stdlib only at module level); run by another venv's Python for the parts
that need it (:func:`pgp_testkit.paths.kit_command`, the kit's source on PYTHONPATH)::

    .local/venvs/fakesnow/bin/python -m pgp_testkit.snowflake_emulator serve --port N
    .local/venvs/fakesnow/bin/python -m pgp_testkit.snowflake_emulator query --port N "SELECT ..."
    <target venv>/bin/python -m pgp_testkit.snowflake_emulator run-target --port N --config F
    <target venv>/bin/python -m pgp_testkit.snowflake_emulator write-arrow OUT  < columns.json
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgp_testkit.daemon import free_port
from pgp_testkit.dbt import (
    FAKESNOW_ACCOUNT,
    MELTANO_DIR,
    QUIET_ENV,
    ToolError,
    fakesnow_python,
    require,
    tail,
)
from pgp_testkit.paths import kit_command, kit_env

if TYPE_CHECKING:
    from fakesnow.conn import FakeSnowflakeConnection
    from fakesnow.copy_into import CopyParams, FileTypeHandler
    from fakesnow.cursor import FakeSnowflakeCursor
    from sqlglot import Expr, exp

SELF = "snowflake_emulator"  # this module, as kit_command runs it
TARGET_SNOWFLAKE_PYTHON = MELTANO_DIR / "loaders" / "target-snowflake" / "venv" / "bin" / "python"


# --------------------------------------------------------------------------- test side


@dataclass(frozen=True)
class Emulator:
    """A running emulator: where it listens and how to load into / read from it."""

    port: int
    fakesnow_python: Path
    log_dir: Path

    def run_target(
        self, config: dict[str, Any], messages: bytes, cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        """target-snowflake (Meltano venv, unmodified) on ``messages``; stdout holds STATE.

        The account/user/password of ``config`` are sent to the emulator, which accepts any.
        """
        (cwd / "tmp").mkdir(parents=True, exist_ok=True)
        config_file = cwd / "target-snowflake.json"
        config_file.write_text(json.dumps(config))
        cmd = kit_command(
            require(TARGET_SNOWFLAKE_PYTHON), SELF, "run-target", "--port", str(self.port),
            "--config", str(config_file),
        )  # fmt: skip
        done = subprocess.run(
            cmd,
            input=messages,
            capture_output=True,
            cwd=cwd,
            # Its own temp dir: its JSONL/Parquet files stay with the run, not in /tmp.
            env=kit_env({**os.environ, **QUIET_ENV, "TMPDIR": str(cwd / "tmp")}),
            timeout=300,
        )
        with (self.log_dir / "target-snowflake.log").open("ab") as log:
            log.write(done.stderr)
        return subprocess.CompletedProcess(
            cmd, done.returncode, done.stdout.decode(), done.stderr.decode()
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql``, read through the Snowflake connector (fakesnow venv) as JSON values.

        NUMBER/DECIMAL come back as exact strings (e.g. "-99999999999999.9999"), timestamps,
        dates and times as ISO strings, VARIANT as its JSON text, NULL as None.
        """
        return self.queries(sql)[0]

    def queries(self, *statements: str) -> list[list[tuple[Any, ...]]]:
        """Rows of each statement, as ``query``, in one session (one Python start-up)."""
        cmd = kit_command(self.fakesnow_python, SELF, "query", "--port", str(self.port))
        done = subprocess.run(
            [*cmd, *statements], capture_output=True, text=True, timeout=120, env=kit_env()
        )
        if done.returncode:
            raise ToolError(f"query failed: {statements}\n{tail(done.stdout + done.stderr)}")
        return [[tuple(row) for row in rows] for rows in json.loads(done.stdout)]


@dataclass(frozen=True)
class RealSnowflake:
    """The same API on a real Snowflake account (credential-gated tests): the target and the
    queries connect with the ``SNOWFLAKE_*`` variables production uses for loading."""

    log_dir: Path

    def run_target(
        self, config: dict[str, Any], messages: bytes, cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        config_file = cwd / "target-snowflake.json"
        config_file.write_text(json.dumps(config))
        config_file.chmod(0o600)
        cmd = kit_command(
            require(TARGET_SNOWFLAKE_PYTHON), SELF, "run-target", "--config", str(config_file)
        )
        done = subprocess.run(
            cmd, input=messages, capture_output=True, cwd=cwd, timeout=900, env=kit_env()
        )
        return subprocess.CompletedProcess(
            cmd, done.returncode, done.stdout.decode(), done.stderr.decode()
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        cmd = kit_command(require(TARGET_SNOWFLAKE_PYTHON), SELF, "query", sql)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=kit_env())
        if done.returncode:
            raise ToolError(f"query failed: {sql}\n{tail(done.stdout + done.stderr)}")
        return [tuple(row) for row in json.loads(done.stdout)[0]]


@contextmanager
def snowflake_emulator(log_dir: Path) -> Iterator[Emulator]:
    """The emulator on a free 127.0.0.1 port for the duration (in memory, shared by sessions).

    Its log, with every statement it ran, is ``log_dir/snowflake-emulator.log``; staged files
    are under ``log_dir/stages``.
    """
    python = fakesnow_python()
    stages = log_dir / "stages"  # fakesnow keeps internal stages in a temp dir it never removes
    stages.mkdir(parents=True, exist_ok=True)
    log = log_dir / "snowflake-emulator.log"
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            kit_command(python, SELF, "serve", "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=kit_env({**os.environ, "FAKESNOW_DEBUG": "snowflake", "TMPDIR": str(stages)}),
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise ToolError(f"emulator exited {proc.returncode}:\n{tail(log.read_text())}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise ToolError(f"emulator not listening after 60 s:\n{tail(log.read_text())}")
            time.sleep(0.1)
        yield Emulator(port=port, fakesnow_python=python, log_dir=log_dir)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def write_arrow(path: Path, columns: Sequence[dict[str, Any]]) -> None:
    """An Arrow IPC file of ``columns`` ({"name", "type", "values"}), by the target's pyarrow.

    Types: int64, float64, string, bool, date32, time64[us], timestamp[us, tz=UTC] (values as
    ISO strings), or null to let pyarrow infer one (e.g. a struct from dicts).
    """
    done = subprocess.run(
        kit_command(require(TARGET_SNOWFLAKE_PYTHON), SELF, "write-arrow", str(path)),
        input=json.dumps(list(columns)),
        capture_output=True,
        text=True,
        env=kit_env(),
    )
    if done.returncode:
        raise ToolError(f"write-arrow failed:\n{tail(done.stdout + done.stderr)}")


# --------------------------------------------------------------------------- emulator side


def _user_key(login_name: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", login_name.upper())


# Each user's stage @~ is stored as the internal stage _FS_USER_STAGES.<USER>."~".
USER_STAGES = "_FS_USER_STAGES"
USER_STAGE = "~"
_DEFAULT_USER = _user_key(FAKESNOW_ACCOUNT["user"])
_current_user: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_user", default=_DEFAULT_USER
)


def install_extensions() -> None:
    """Extend fakesnow 0.12.1 (in this process) where target-snowflake's load path needs it."""
    import fakesnow.arrow as fs_arrow
    import fakesnow.checks as fs_checks
    import fakesnow.copy_into as fs_copy
    import fakesnow.server as fs_server
    import fakesnow.transforms as fs_transforms
    import fakesnow.transforms.file_format as fs_file_format
    import fakesnow.transforms.stage as fs_stage
    from fakesnow.cursor import FakeSnowflakeCursor
    from starlette.routing import Route

    # Names: @~, and quoted names holding dots or dashes, wherever a stage/format is named.
    fs_stage.parts_from_var = fs_file_format.parts_from_var = _parts_from_var
    fs_stage.stage_lookup_sql = _wrap(fs_stage.stage_lookup_sql, _stage_lookup_sql)
    fs_stage._file_name_prefix = _wrap(fs_stage._file_name_prefix, _file_name_prefix)
    fs_copy.stage_url_from_var = _wrap(fs_copy.stage_url_from_var, _stage_url_from_var)
    # COPY INTO ... FROM (SELECT $1:col::TYPE ... FROM '@stage/path') from JSON and Parquet.
    fs_checks._missing_qualifiers = _wrap(fs_checks._missing_qualifiers, _missing_qualifiers)
    fs_copy._from_source = _wrap(fs_copy._from_source, _copy_from_source)
    fs_copy._inserts = _wrap(fs_copy._inserts, _copy_inserts)
    # REMOVE, DROP FILE FORMAT, PUT to a quoted location; the session's user for @~.
    FakeSnowflakeCursor._transform = _wrap(FakeSnowflakeCursor._transform, _transform)
    FakeSnowflakeCursor.execute = _wrap(FakeSnowflakeCursor.execute, _execute_as_user)
    # Snowflake's login doesn't create the session's database: a missing one stays missing
    # (target-snowflake checks SHOW DATABASES for it), so tests create RAW as production has it.
    fs_server.shared_fs.create_database_on_connect = False
    fs_server.shared_fs.create_schema_on_connect = False
    # NUMBER(38, 0) holds 38 digits (fakesnow makes it a BIGINT, which holds 19).
    fs_transforms.integer_precision = _wrap(fs_transforms.integer_precision, _wide_integers)
    # NULL timestamps in results (fakesnow sends them as 1970-01-01).
    fs_arrow.timestamp_to_sf_struct = _wrap(fs_arrow.timestamp_to_sf_struct, _null_timestamps)
    # Remember who logged in: routes match in order, so this one shadows fakesnow's.
    login = functools.partial(_login, fs_server.login_request, fs_server.sessions)
    fs_server.app.router.routes.insert(
        0, Route("/session/v1/login-request", login, methods=["POST"])
    )


def _wide_integers(original: Callable[[Expr], Expr], expression: Expr) -> Expr:
    """An explicit NUMBER(p, 0) keeps its digits: DuckDB's DECIMAL(p, 0) holds up to 38, as
    Snowflake's does. A bare NUMBER/INT stays fakesnow's BIGINT (Python ints in results)."""
    from sqlglot import exp

    if (
        isinstance(expression, exp.DataType)
        and expression.this == exp.DataType.Type.DECIMAL
        and len(expression.expressions) == 2
    ):
        return expression
    return original(expression)


def _wrap(original: Callable[..., Any], extension: Callable[..., Any]) -> Callable[..., Any]:
    """``extension(original, *args)``: an extension may defer to what it extends."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return extension(original, *args, **kwargs)

    return wrapper


async def _login(original: Callable[..., Any], sessions: dict[str, Any], request: Any) -> Any:
    response = await original(request)
    body = await request.body()  # starlette caches it: the original read it already
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    token = json.loads(response.body)["data"]["token"]
    sessions[token].emulator_user = _user_key(json.loads(body)["data"].get("LOGIN_NAME", ""))
    return response


def _execute_as_user(
    original: Callable[..., Any], cursor: FakeSnowflakeCursor, *args: Any, **kwargs: Any
) -> Any:
    user = getattr(cursor._conn, "emulator_user", None) or _current_user.get()
    token = _current_user.set(user)
    try:
        return original(cursor, *args, **kwargs)
    finally:
        _current_user.reset(token)


def _split_name(name: str) -> list[str]:
    # Dots inside double quotes are part of the name: RAW.S."tf-a.b-uuid" has 3 parts.
    return re.findall(r'"(?:[^"]|"")*"|[^.]+', name)


def _ident(part: str) -> str:
    """Unquoted identifiers resolve upper-case; quoted ones keep their case (and "" is ")."""
    if part.startswith('"') and part.endswith('"') and len(part) > 1:
        return part[1:-1].replace('""', '"')
    return part.upper()


def _parts_from_var(
    var: str, current_database: str | None, current_schema: str | None
) -> tuple[str, str, str]:
    """(database, schema, name) of a stage or file format reference; ``~`` is the user stage.

    Snowflake: ``@~`` is the current user's stage, in no database or schema, and quoted
    identifiers may hold any character (target-snowflake's ``"tf-<stream>-<uuid>"``).
    """
    if var == USER_STAGE:
        return USER_STAGES, _current_user.get(), USER_STAGE
    parts = _split_name(var)
    if len(parts) == 2:
        parts.insert(0, current_database or "")
    elif len(parts) == 1:
        parts[:0] = [current_database or "", current_schema or ""]
    if len(parts) != 3 or not all(parts):
        import snowflake.connector.errors

        raise snowflake.connector.errors.ProgrammingError(
            msg=f"SQL compilation error:\nCannot resolve '{var}': no current database/schema.",
            errno=90105,
            sqlstate="22000",
        )
    database, schema, name = parts
    return _ident(database), _ident(schema), _ident(name)


def _is_user_stage(database: str, name: str) -> bool:
    return database == USER_STAGES and name == USER_STAGE


def _stage_lookup_sql(
    original: Callable[..., str], database: str, schema: str, name: str, *args: Any
) -> str:
    # The user stage always exists (Snowflake creates it with the user); it has no row in
    # fakesnow's stage table, so SHOW STAGES doesn't list it, as in Snowflake.
    if _is_user_stage(database, name):
        return f"SELECT '{database}.{schema}.{name}' AS storage_name"
    return original(database, schema, name, *args)


def _file_name_prefix(original: Callable[[str], str], stage_name: str) -> str:
    # LIST/REMOVE @~ name files by their path alone, as for table stages.
    return "" if stage_name == USER_STAGE else original(stage_name)


def _stage_url_from_var(original: Callable[..., str], var: str, *args: Any) -> str:
    import fakesnow.transforms.stage as fs_stage

    stage_var, _, path = var.partition("/")
    if stage_var != USER_STAGE:
        return original(var, *args)
    url = fs_stage.internal_dir(f"{USER_STAGES}.{_current_user.get()}.{USER_STAGE}")
    return f"{url.rstrip('/')}/{path}" if path else url


def _missing_qualifiers(original: Callable[[exp.Table], Any], table: exp.Table) -> Any:
    """A stage location in FROM is no table: it needs no current schema (``@~`` none at all)."""
    from sqlglot import exp

    location = table.this.name if isinstance(table.this, exp.Literal | exp.Var) else ""
    if location.lstrip("'").startswith("@"):
        return False, False
    return original(table)


def _copy_from_source(original: Callable[[exp.Copy], str], copy: exp.Copy) -> str:
    """Snowflake accepts a quoted location: ``FROM (SELECT ... FROM '@~/target-snowflake/x')``."""
    from sqlglot import exp

    select = copy.args["files"][0].this
    if isinstance(select, exp.Select) and (source := select.args.get("from_")):
        table = source.this
        if (
            isinstance(table, exp.Table)
            and isinstance(table.this, exp.Literal)
            and table.this.name.startswith("@")
        ):
            return table.this.name
    return original(copy)


def _copy_inserts(
    original: Callable[..., list[Expr]],
    copy: exp.Copy,
    params: CopyParams,
    urls: list[str],
    *args: Any,
) -> list[Expr]:
    """The INSERTs of a COPY with transformation from JSON or Parquet files, per file.

    Snowflake: ``$1`` is the whole row, an OBJECT (each JSON value, or each Parquet row);
    ``$1:col`` an element of it, NULL where the file has no such element (target-snowflake
    selects its ``_sdc_*`` columns from Arrow batches that lack them); ``::TYPE`` casts the
    element exactly, and ``::VARIANT`` keeps it as it is (a string stays a string).

    fakesnow 0.12.1 instead reads ``$1:col`` as a column ``col`` of the file: a missing one
    fails, and JSON files have none. Here ``$1`` becomes the row as JSON, so fakesnow's own
    translation of ``$1:col::TYPE`` (``CAST($1 ->> '$.col' AS TYPE)``) applies.
    """
    from fakesnow.copy_into import ReadJSON, ReadParquet
    from sqlglot import exp

    source = copy.args["files"][0]
    fmt = params.file_format
    if not isinstance(source, exp.Subquery) or not isinstance(fmt, ReadJSON | ReadParquet):
        return original(copy, params, urls, *args)

    row = exp.column("_fs_row", quoted=True)
    dollar1 = exp.Parameter(this=exp.Literal.number(1))

    def from_row(node: Expr) -> Expr:
        if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.JSON):
            element = node.this.unnest()
            if isinstance(element, exp.JSONExtractScalar) and element.this == dollar1:
                # fakesnow casts the element's text to JSON, parsing a string that holds JSON
                return exp.JSONExtract(this=row.copy(), expression=element.expression.copy())
        return row.copy() if node == dollar1 else node

    columns = [column.copy().transform(from_row) for column in source.this.expressions]
    return [
        exp.Insert(
            this=copy.this.copy(),
            expression=exp.select(*columns).from_(
                exp.select(_row_as_json(url, fmt).as_("_fs_row", quoted=True))
                .from_(exp.Table(this=fmt.read_expression(url)))
                .subquery("_fs_rows")
            ),
        )
        for url in urls
    ]


def _row_as_json(url: str, fmt: FileTypeHandler) -> Expr:
    """``$1`` of a row of ``url``: JSON lines as they are, a Parquet row as a JSON object."""
    import fakesnow.transforms.stage as fs_stage
    import pyarrow as pa
    import pyarrow.parquet as pq
    from fakesnow.copy_into import ReadJSON
    from sqlglot import exp

    if isinstance(fmt, ReadJSON):
        return exp.column("json")  # read_json_objects' one column
    args: list[Expr] = []
    for field in pq.read_schema(fs_stage.file_path(url)):
        value: Expr = exp.column(field.name, quoted=True)
        if pa.types.is_decimal(field.type) or pa.types.is_uint64(field.type):
            # A JSON number would round-trip through a double (DuckDB's JSON); as text, the
            # ->> of fakesnow's casts reads it back digit for digit, as Snowflake's NUMBER.
            value = exp.cast(value, exp.DataType.Type.VARCHAR)
        args += [exp.Literal.string(field.name), value]
    return exp.func("json_object", *args)


def _transform(
    original: Callable[..., Expr],
    cursor: FakeSnowflakeCursor,
    expression: Expr,
    params: Any = None,
) -> Expr:
    from sqlglot import exp

    if isinstance(expression, exp.Command) and expression.name.upper() in {"REMOVE", "RM"}:
        expression = _remove(cursor, expression.expression.name)
    elif isinstance(expression, exp.Drop) and _kind(expression) == "FILE FORMAT":
        expression = _drop_file_format(cursor, expression)
    elif isinstance(expression, exp.Put):
        target = expression.args.get("target")
        if isinstance(target, exp.Var) and target.name.startswith("'"):
            # Snowflake: PUT 'file://...' '@~/path' (a quoted location) is a plain one
            expression.set("target", exp.Var(this=target.name[1:-1].replace("''", "'")))
    return original(cursor, expression, params)


def _kind(expression: Expr) -> str:
    return str(expression.args.get("kind") or "").upper()


_REMOVE_ARGS = re.compile(r"\s*'?(@[^'\s]*)'?(?:\s+PATTERN\s*=\s*'((?:[^']|'')*)')?\s*;?\s*", re.I)


def _remove(cursor: FakeSnowflakeCursor, arguments: str) -> Expr:
    """``REMOVE @stage[/path] [PATTERN = 're']``: delete the internal stage's files under
    the path prefix (matching the pattern), returning (name, result) per file, as Snowflake.
    """
    import fakesnow.transforms.stage as fs_stage
    import snowflake.connector.errors
    from sqlglot import exp

    match = _REMOVE_ARGS.fullmatch(arguments)
    if not match:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"SQL compilation error:\nsyntax error in REMOVE {arguments}",
            errno=1003,
            sqlstate="42000",
        )
    location, pattern = match[1], match[2]
    stage_var, _, path = location[1:].partition("/")
    conn = cursor._conn
    database, schema, name = _parts_from_var(stage_var, conn.database, conn.schema)
    duck = cursor._duck_conn.cursor()
    if not fs_stage.is_table_stage(name) and not _is_user_stage(database, name):
        found = duck.execute(
            "SELECT url FROM _fs_global._fs_information_schema._fs_stages "
            "WHERE database_name = ? AND schema_name = ? AND name = ?",
            [database, schema, name],
        ).fetchone()
        if found and found[0]:
            raise NotImplementedError(f"REMOVE from external stage {location}")
    lookup = duck.execute(
        fs_stage.stage_lookup_sql(database, schema, name, conn.table_stages)
    ).fetchone()
    if lookup is None:
        raise fs_stage.not_found_error(f"{database}.{schema}.{name}")
    prefix = fs_stage.internal_dir(lookup[0], path)
    removed = []
    for (file,) in duck.execute(fs_stage.internal_files_sql(prefix)).fetchall():
        file_name = fs_stage.internal_file_name(file)
        if pattern is None or re.fullmatch(pattern.replace("''", "'"), file_name):
            os.remove(file)
            removed.append((file_name, "removed"))
    if not removed:
        return exp.select("CAST(NULL AS TEXT) AS name", "CAST(NULL AS TEXT) AS result").where(
            "FALSE"
        )
    return exp.select("*").from_(exp.values(removed, alias="removed", columns=["name", "result"]))


def _drop_file_format(cursor: FakeSnowflakeCursor, drop: exp.Drop) -> Expr:
    """``DROP FILE FORMAT [IF EXISTS] name``: forget it, answering as Snowflake does."""
    import snowflake.connector.errors
    from sqlglot import exp

    table = drop.find(exp.Table)
    assert table is not None
    conn: FakeSnowflakeConnection = cursor._conn
    database, schema, name = _parts_from_var(
        table.sql(dialect="snowflake"), conn.database, conn.schema
    )
    # File formats live outside the session's transaction, as fakesnow's CREATE does it.
    dropped = (
        cursor._duck_conn.cursor()
        .execute(
            "DELETE FROM _fs_global._fs_information_schema._fs_file_formats "
            "WHERE database_name = ? AND schema_name = ? AND name = ? RETURNING name",
            [database, schema, name],
        )
        .fetchall()
    )
    if dropped:
        status = f"{name} successfully dropped."
    elif drop.args.get("exists"):
        status = f"Drop statement executed successfully ({name} already dropped)."
    else:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"SQL compilation error:\nFile format '{name}' does not exist or not authorized.",
            errno=2003,
            sqlstate="02000",
        )
    return exp.select(exp.Literal.string(status).as_("status"))


def _null_timestamps(original: Callable[[Any], Any], ts: Any) -> Any:
    """Snowflake sends a NULL timestamp as a NULL struct; fakesnow sent a valid 1970-01-01."""
    import pyarrow as pa
    import pyarrow.compute as pc

    struct = original(ts)
    if not ts.null_count:
        return struct
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    children = [pc.fill_null(struct.field(i), 0) for i in range(struct.type.num_fields)]
    return pa.StructArray.from_arrays(children, fields=list(struct.type), mask=ts.is_null())


# --------------------------------------------------------------------------- commands


def _cmd_serve(args: argparse.Namespace) -> int:
    import fakesnow.server
    import uvicorn

    install_extensions()
    # uvicorn stops on SIGINT/SIGTERM; the in-memory databases go with the process.
    uvicorn.run(fakesnow.server.app, host="127.0.0.1", port=args.port, log_level="info")
    return 0


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact, whatever the scale
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def _cmd_query(args: argparse.Namespace) -> int:
    import snowflake.connector

    if args.port:
        where: dict[str, Any] = {
            **FAKESNOW_ACCOUNT,
            "host": "127.0.0.1",
            "port": args.port,
            "protocol": "http",
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        }
    else:  # a real account, as the loader connects
        where = {
            "account": os.environ["SNOWFLAKE_ACCOUNT"],
            "user": os.environ["SNOWFLAKE_LOAD_USER"],
            "password": os.environ["SNOWFLAKE_LOAD_PASSWORD"],
            "role": os.environ.get("SNOWFLAKE_LOAD_ROLE"),
            "warehouse": os.environ.get("SNOWFLAKE_LOAD_WAREHOUSE"),
        }
    with snowflake.connector.connect(**where, network_timeout=60) as conn:
        cursor = conn.cursor()
        results = [cursor.execute(sql).fetchall() for sql in args.statements]
    print(json.dumps([[[_json_value(v) for v in row] for row in rows] for rows in results]))
    return 0


def _cmd_run_target(args: argparse.Namespace) -> int:
    import snowflake.connector

    connect = snowflake.connector.connect

    @functools.wraps(connect)
    def to_emulator(*cargs: Any, **cparams: Any) -> Any:
        # Only where to connect: the emulator, over plain HTTP (so no OCSP), and no
        # out-of-band telemetry (it would go to Snowflake). Everything else is the target's.
        cparams.update(host="127.0.0.1", port=args.port, protocol="http")
        cparams["disable_ocsp_checks"] = True
        cparams["session_parameters"] = {
            **(cparams.get("session_parameters") or {}),
            "CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
        }
        return connect(*cargs, **cparams)

    if args.port:
        snowflake.connector.connect = to_emulator  # snowflake-sqlalchemy calls the module's
    from target_snowflake.target import TargetSnowflake

    TargetSnowflake.cli(args=["--config", args.config], prog_name="target-snowflake")
    return 0


def _cmd_write_arrow(args: argparse.Namespace) -> int:
    import pyarrow as pa
    from pyarrow import ipc

    parse: dict[str, tuple[Any, Callable[[str], Any]]] = {
        "timestamp[us, tz=UTC]": (pa.timestamp("us", tz="UTC"), datetime.fromisoformat),
        "date32": (pa.date32(), date.fromisoformat),
        "time64[us]": (pa.time64("us"), time_of_day.fromisoformat),
    }
    arrays, names = [], []
    for column in json.load(sys.stdin):
        kind, values = column["type"], column["values"]
        if kind in parse:
            arrow_type, from_text = parse[kind]
            values = [None if v is None else from_text(v) for v in values]
        else:
            arrow_type = kind and pa.type_for_alias(kind)
        arrays.append(pa.array(values, type=arrow_type))
        names.append(column["name"])
    table = pa.Table.from_arrays(arrays, names=names)
    with ipc.new_file(args.out, table.schema) as writer:
        writer.write_table(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="fakesnow venv: the extended server, until SIGINT")
    serve.add_argument("--port", type=int, required=True)
    query = sub.add_parser("query", help="print statements' rows as JSON (no --port: real)")
    query.add_argument("--port", type=int, default=0)
    query.add_argument("statements", nargs="+")
    target = sub.add_parser("run-target", help="target venv: target-snowflake on stdin")
    target.add_argument("--port", type=int, default=0, help="the emulator's (0: real)")
    target.add_argument("--config", required=True)
    arrow = sub.add_parser("write-arrow", help="target venv: JSON columns on stdin -> IPC")
    arrow.add_argument("out")
    args = parser.parse_args(argv)
    commands = {
        "serve": _cmd_serve,
        "query": _cmd_query,
        "run-target": _cmd_run_target,
        "write-arrow": _cmd_write_arrow,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
