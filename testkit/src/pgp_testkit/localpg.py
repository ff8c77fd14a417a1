"""Throwaway local PostgreSQL clusters for tests, demos and CI.

A cluster lives in one directory (``--datadir DIR``)::

    DIR/localpg.json   port + superuser password (mode 0600), so later processes can reconnect
    DIR/postgres.log   server log
    DIR/pgdata/        the real PGDATA, created by initdb on first start

The server listens on 127.0.0.1 only, on a free port picked at first start and kept
afterwards. Durability is switched off (fsync=off): data survives clean restarts, not crashes.

Module use::

    from pgp_testkit.localpg import LocalPostgres
    pg = LocalPostgres(Path("/tmp/pg")).start()
    dsn = pg.create_database("demo")
    replica = pg.start_replica(Path("/tmp/pg-replica"))  # hot standby, streaming from pg
    replica.stop()
    pg.stop()

CLI (``--datadir DIR`` everywhere except ensure-server; ``scripts/localpg.py`` runs it with any
python3, before .venv exists)::

    python scripts/localpg.py start --datadir DIR [--port N]  # JSON: host, port, password, dsn
    python scripts/localpg.py stop --datadir DIR [--mode fast]
    python scripts/localpg.py status --datadir DIR            # JSON; exit 0 running, 3 not
    python scripts/localpg.py env --datadir DIR               # `export PGHOST=...` lines
    python scripts/localpg.py createdb --datadir DIR NAME [--drop]  # prints the DSN
    python scripts/localpg.py start-replica --datadir DIR --primary PRIMARY_DIR [--port N]
    python scripts/localpg.py ensure-server   # print bindir; as root apt-installs if missing

Stdlib only; psycopg is used when importable, otherwise the server's own psql.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pgp_testkit.daemon import Daemon, DaemonError, tail

PG_LIB_ROOT = Path("/usr/lib/postgresql")  # Debian/Ubuntu layout: <root>/<major>/bin
SERVER_USER = "postgres"  # postgres refuses to run as root; root runs it as this user
STATE_FILE = "localpg.json"
LOG_FILE = "postgres.log"
PGDATA_DIR = "pgdata"
BINDIR_ENV = "LOCALPG_BINDIR"  # escape hatch for non-Debian installs
# Unix socket paths must fit sockaddr_un.sun_path (108 bytes incl. NUL); keep some headroom.
_SOCKET_PATH_MAX = 100
_PG_CTL_TIMEOUT = 60
_READY_TIMEOUT = 30.0
_BIND_ERRORS = ("could not bind", "could not create any TCP/IP sockets")
INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: `sudo apt-get install -y postgresql`) "
    f"or set {BINDIR_ENV} to a directory containing initdb and pg_ctl"
)


class LocalPostgresError(DaemonError):
    """Anything that prevents a local cluster from being found, created, started or stopped."""


# --------------------------------------------------------------------------- binaries


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _has_server(bindir: Path) -> bool:
    return all(
        (bindir / exe).is_file() and os.access(bindir / exe, os.X_OK)
        for exe in ("initdb", "pg_ctl")
    )


@contextlib.contextmanager
def cluster_root(prefix: str = "localpg-test-") -> Iterator[Path]:
    """A new directory for clusters, removed afterwards: like pytest's tmp_path, but outside
    /tmp/pytest-of-<user>, which a pytest session starting meanwhile (another checkout's)
    resets to 0700, locking the server user out of a running cluster's files."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def find_bindir(root: Path = PG_LIB_ROOT, pg_config: str | None = "pg_config") -> Path | None:
    """Newest ``<root>/<version>/bin`` holding initdb and pg_ctl, else ``pg_config --bindir``.

    ``pg_config=None`` skips the pg_config fallback (used by tests).
    """
    if root.is_dir():
        versions = [p for p in root.iterdir() if p.is_dir() and _version_key(p.name)]
        # Numeric sort so that 9.6 < 13 < 16.
        for vdir in sorted(versions, key=lambda p: _version_key(p.name), reverse=True):
            if _has_server(vdir / "bin"):
                return vdir / "bin"
    exe = shutil.which(pg_config) if pg_config else None
    if exe:
        try:
            out = subprocess.run(
                [exe, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        # libpq-dev ships pg_config without the server, so check what it points at.
        if out and _has_server(Path(out)):
            return Path(out)
    return None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _apt_install_postgres() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
    ):
        print(f"localpg: running {' '.join(cmd)}", file=sys.stderr)
        proc = subprocess.run(
            cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise LocalPostgresError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                f"{tail(proc.stdout + proc.stderr)}"
            )


def ensure_bindir(
    root: Path = PG_LIB_ROOT, pg_config: str | None = "pg_config", install: bool | None = None
) -> Path:
    """Server binary directory; installs Debian's ``postgresql`` when missing.

    ``install=None`` means: install only if we are root and apt-get exists.
    """
    override = os.environ.get(BINDIR_ENV)
    if override:
        if _has_server(Path(override)):
            return Path(override)
        raise LocalPostgresError(f"{BINDIR_ENV}={override} does not contain initdb and pg_ctl")
    found = find_bindir(root, pg_config)
    if found:
        return found
    if install is None:
        install = _is_root() and shutil.which("apt-get") is not None
    if not install:
        raise LocalPostgresError(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found in {root}/<version>/bin "
            f"or via pg_config; {INSTALL_HINT}"
        )
    _apt_install_postgres()
    found = find_bindir(root, pg_config)
    if not found:
        raise LocalPostgresError(f"installed postgresql but still no initdb/pg_ctl in {root}")
    return found


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------- cluster


class LocalPostgres(Daemon):
    """One throwaway cluster rooted at ``datadir`` (see module docstring for the layout).

    ``start()`` runs initdb if needed, starts the server and waits until it accepts TCP
    connections.
    """

    state_name = STATE_FILE
    log_name = LOG_FILE
    error = LocalPostgresError
    ready_timeout = _READY_TIMEOUT
    user: str = "postgres"

    def __init__(self, datadir: Path, port: int | None = None) -> None:
        super().__init__(datadir, port)
        self.datadir = self.directory
        self.pgdata = self.datadir / PGDATA_DIR
        self.password: str = self.saved.get("password") or secrets.token_urlsafe(24)
        self._bindir: Path | None = None

    # ------------------------------------------------------------------ public API

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``; a no-op when the server is not running."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        if not self.is_running():
            return
        proc = self._pg_ctl("stop", "-m", mode, "-w", "-t", str(_PG_CTL_TIMEOUT))
        if proc.returncode != 0 and self.is_running():
            raise LocalPostgresError(
                f"pg_ctl stop failed (exit {proc.returncode}): {tail(proc.stdout + proc.stderr)}"
            )

    def restart(self) -> None:
        """Stop and start again on the same port (error if that port got taken meanwhile)."""
        self.stop()
        self._start(allow_new_port=False)

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").is_file():
            return False
        try:
            self._resolve_bindir(install=False)  # never install packages just to ask
        except LocalPostgresError:
            return False  # no server binaries -> nothing of ours can be running
        # pg_ctl status: 0 running, 3 not running, 4 no/invalid data directory.
        return self._pg_ctl("status").returncode == 0

    def dsn(self, dbname: str = "postgres") -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname, safe='')}"
        )

    def create_database(self, name: str, drop: bool = False) -> str:
        """Create ``name`` unless it exists (``drop=True``: recreate it empty); return its DSN."""
        if not name or len(name.encode()) > 63:
            # Postgres would silently truncate longer names, making the returned DSN wrong.
            raise ValueError(f"database name must be 1..63 bytes: {name!r}")
        psycopg = _import_psycopg()
        if psycopg is not None:
            from psycopg import sql

            with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
                ident = sql.Identifier(name)
                if drop:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        else:
            self._psql_create_database(name, drop)
        return self.dsn(name)

    def env(self, prefix: str = "PG", dbname: str | None = None) -> dict[str, str]:
        """Connection settings as env vars: ``env("PG")`` -> PGHOST, PGPORT, PGUSER, PGPASSWORD."""
        out = {
            f"{prefix}HOST": self.host,
            f"{prefix}PORT": str(self.port),
            f"{prefix}USER": self.user,
            f"{prefix}PASSWORD": self.password,
        }
        if dbname is not None:
            out[f"{prefix}DATABASE"] = dbname
        return out

    def info(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dsn": self.dsn(),
            "datadir": str(self.datadir),
            "log": str(self.log_file),
        }

    def start_replica(
        self,
        datadir: Path,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> LocalPostgres:
        """Clone this running cluster into a hot-standby streaming replica in ``datadir``.

        ``pg_basebackup -R`` (same binaries, as the server user, over TCP to 127.0.0.1 with our
        superuser password) copies the cluster and writes ``standby.signal`` plus a
        ``primary_conninfo`` holding that password (``postgresql.auto.conf``, mode 0600). The
        replica is an ordinary localpg cluster on a free port (or ``port``), with the same
        superuser and password, read-only, replaying what the primary commits. ``settings``
        are extra postgresql.conf values for it, written as in the file (e.g.
        ``{"recovery_min_apply_delay": "'1h'"}``). Stop it with ``stop()``; a later
        ``LocalPostgres(datadir).start()`` resumes it as a standby. No replication slot: a
        replica left stopped while the primary writes a lot may need a new base backup.
        """
        if not self.is_running():
            raise LocalPostgresError(f"the primary in {self.datadir} is not running")
        replica = LocalPostgres(datadir, port=port)
        if replica.datadir == self.datadir:
            raise LocalPostgresError("a replica needs its own directory, not the primary's")
        if (replica.pgdata / "PG_VERSION").is_file():
            raise LocalPostgresError(
                f"{replica.pgdata} already holds a cluster; start it with `start` or delete "
                f"{replica.datadir} for a new replica"
            )
        replica._bindir = self._resolve_bindir()  # the primary's major version
        replica.password = self.password  # a physical copy: same roles, same password
        replica._prepare_dirs()  # empty pgdata owned by the server user
        # initdb's pg_hba.conf (--auth-host=scram-sha-256) already has
        # `host replication all 127.0.0.1/32 scram-sha-256`; wal_level and max_wal_senders
        # are pinned in _initdb.
        proc = replica._run_server_cmd(
            [str(replica._bindir / "pg_basebackup"), "-h", self.host, "-p", str(self.port),
             "-U", self.user, "-w", "-D", str(replica.pgdata), "-R", "-X", "stream",
             "--checkpoint=fast", "--no-sync"],
            timeout=600,
            extra_env={"PGPASSWORD": self.password},
        )  # fmt: skip
        if proc.returncode != 0:
            shutil.rmtree(replica.pgdata, ignore_errors=True)  # never half a cluster
            raise LocalPostgresError(
                f"pg_basebackup from {self.host}:{self.port} failed (exit {proc.returncode}):\n"
                f"{tail(proc.stdout + proc.stderr)}"
            )
        replica_settings = {
            # The copied postgresql.conf points at the primary's socket directory.
            "unix_socket_directories": _conf_quote(replica._socket_dir()),
            "hot_standby": "on",
            **(settings or {}),
        }
        with (replica.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# --- added by pgp_testkit.localpg (replica of port {self.port}) ---\n")
            conf.writelines(f"{key} = {value}\n" for key, value in replica_settings.items())
        replica._save_state()
        return replica.start()

    # ------------------------------------------------------------------ Daemon hooks

    def _check(self) -> None:
        if (self.pgdata / "PG_VERSION").is_file() and not self.saved:
            raise LocalPostgresError(
                f"{self.pgdata} exists but {self.state_file} (port, password) is missing; "
                "delete the directory to start over"
            )

    def _prepare(self) -> None:
        self._resolve_bindir()
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb()

    def _launch(self) -> str | None:
        self._save_state()  # the port, before anyone can connect
        proc = self._pg_ctl(
            "start", "-w", "-t", str(_PG_CTL_TIMEOUT), "-l", str(self.log_file),
            "-o", f"-c port={self.port}",
        )  # fmt: skip
        if proc.returncode != 0:
            return f"pg_ctl exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()}"
        return None

    def _responds(self) -> bool:
        # pg_ctl -w already waits for "ready"; this double-checks the TCP listener we hand out.
        pg_isready = self._resolve_bindir() / "pg_isready"
        if pg_isready.is_file():
            probe = subprocess.run(
                [str(pg_isready), "-q", "-h", self.host, "-p", str(self.port), "-t", "2"],
                env=self._server_env(), stdin=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            return probe.returncode == 0
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 2):
            return True
        return False

    def _abort(self) -> None:
        self.stop("immediate")

    def _lost_port_race(self, log_tail: str) -> bool:
        return any(e in log_tail for e in _BIND_ERRORS)

    def _start_failure(self, detail: str | None) -> str:
        reason = detail or f"not accepting connections after {self.ready_timeout:.0f} s"
        return f"postgres failed to start on {self.host}:{self.port} ({reason})"

    def _state(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password}

    # ------------------------------------------------------------------ internals

    def _socket_dir(self) -> str:
        socket_dir = str(self.pgdata)
        if len(socket_dir) + len("/.s.PGSQL.65535") > _SOCKET_PATH_MAX:
            return ""  # too long for a unix socket: TCP only (all we use anyway)
        return socket_dir

    def _resolve_bindir(self, install: bool | None = None) -> Path:
        if self._bindir is None:
            version_file = self.pgdata / "PG_VERSION"
            if version_file.is_file():
                # An existing cluster needs binaries of its own major version, not the newest.
                same = PG_LIB_ROOT / version_file.read_text().strip() / "bin"
                if _has_server(same) and not os.environ.get(BINDIR_ENV):
                    self._bindir = same
                    return same
            self._bindir = ensure_bindir(install=install)
        return self._bindir

    def _server_user(self) -> pwd.struct_passwd | None:
        """The account that runs initdb/pg_ctl: ourselves, or SERVER_USER when we are root."""
        if not _is_root():
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            pass
        # Normally created by the Debian package; make one for source/other installs.
        proc = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/var/lib/postgresql", "--shell", "/usr/sbin/nologin", SERVER_USER],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise LocalPostgresError(f"cannot create system user {SERVER_USER!r}: {proc.stderr}")
        return pwd.getpwnam(SERVER_USER)

    def _prepare_dirs(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        owner = self._server_user()
        if owner is not None:
            # The server user must be able to reach DIR (pytest's /tmp/pytest-of-root is 0700):
            # add search-only permission (o+x, no listing) to every ancestor that lacks it.
            for path in (self.datadir, *self.datadir.parents):
                mode = path.stat().st_mode
                if not mode & stat.S_IXOTH:
                    path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        if self.pgdata.exists() and not (self.pgdata / "PG_VERSION").is_file():
            shutil.rmtree(self.pgdata)  # leftovers of an interrupted initdb
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch(mode=0o600, exist_ok=True)
        if owner is not None:
            os.chown(self.pgdata, owner.pw_uid, owner.pw_gid)
            os.chown(self.log_file, owner.pw_uid, owner.pw_gid)

    def _initdb(self) -> None:
        self._save_state()  # before initdb, so the password is never lost
        pwfile = self.datadir / ".pwfile"
        owner = self._server_user()
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if owner is not None:
                os.fchown(fd, owner.pw_uid, owner.pw_gid)
            os.write(fd, (self.password + "\n").encode())
        finally:
            os.close(fd)
        try:
            proc = self._run_server_cmd(
                [str(self._resolve_bindir() / "initdb"), "-D", str(self.pgdata),
                 "-U", self.user, f"--pwfile={pwfile}",
                 "--auth-local=trust", "--auth-host=scram-sha-256",
                 "-E", "UTF8", "--locale=C", "--no-sync"],
                timeout=300,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise LocalPostgresError(
                f"initdb failed (exit {proc.returncode}):\n{tail(proc.stdout + proc.stderr)}"
            )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": _conf_quote(self._socket_dir()),
            # Throwaway cluster: trade durability for speed.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "'32MB'",
            "max_connections": "50",
            # PG defaults, pinned because start_replica streams from this cluster.
            "wal_level": "replica",
            "max_wal_senders": "10",
        }
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n# --- added by pgp_testkit.localpg ---\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _server_env(self) -> dict[str, str]:
        # PGPORT/PGDATA/... from the caller's shell would override our explicit settings.
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")}

    def _run_server_cmd(
        self,
        args: Sequence[str],
        timeout: float = _PG_CTL_TIMEOUT + 30,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a server program, dropping to SERVER_USER when we are root."""
        args = list(args)
        kwargs: dict[str, Any] = {}
        owner = self._server_user()
        if owner is not None:
            runuser = shutil.which("runuser")
            if runuser:
                args = [runuser, "-u", owner.pw_name, "--", *args]
            else:  # non-util-linux systems: let Python switch ids itself
                kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        try:
            return subprocess.run(
                args,
                cwd=self.datadir,  # the server user may not be able to access our cwd
                env={**self._server_env(), **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **kwargs,
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalPostgresError(f"timed out after {timeout}s: {shlex.join(args)}") from exc

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        pg_ctl = str(self._resolve_bindir() / "pg_ctl")
        return self._run_server_cmd([pg_ctl, "-D", str(self.pgdata), *args])

    def _psql_create_database(self, name: str, drop: bool) -> None:
        ident = '"' + name.replace('"', '""') + '"'
        literal = "'" + name.replace("'", "''") + "'"
        script = ""
        if drop:
            script += f"DROP DATABASE IF EXISTS {ident} WITH (FORCE);\n"
        # \gexec runs the generated CREATE outside a transaction block, only if missing.
        script += (
            f"SELECT 'CREATE DATABASE ' || quote_ident({literal}) "
            f"WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {literal})\\gexec\n"
        )
        psql = str(self._resolve_bindir() / "psql")
        proc = subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
             "-U", self.user, "-d", "postgres"],
            input=script, capture_output=True, text=True, timeout=120, check=False,
            env={**self._server_env(), "PGPASSWORD": self.password},
        )  # fmt: skip
        if proc.returncode != 0:
            raise LocalPostgresError(f"creating database {name!r} failed: {proc.stderr.strip()}")


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localpg.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def cluster_cmd(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--datadir", type=Path, required=True, help="cluster directory")
        return sp

    cluster_cmd("start", "init (if needed) and start; print JSON").add_argument("--port", type=int)
    cluster_cmd("stop", "stop if running").add_argument(
        "--mode", default="fast", choices=["smart", "fast", "immediate"]
    )
    cluster_cmd("status", "print JSON; exit 0 if running, 3 if not")
    env_p = cluster_cmd("env", "print `export PG...=...` lines")
    env_p.add_argument("--prefix", default="PG")
    env_p.add_argument("--dbname")
    db_p = cluster_cmd("createdb", "create a database; print its DSN")
    db_p.add_argument("name")
    db_p.add_argument("--drop", action="store_true", help="drop and recreate if it exists")
    replica_p = cluster_cmd("start-replica", "clone --primary into a streaming hot standby")
    replica_p.add_argument("--primary", type=Path, required=True, help="the primary's directory")
    replica_p.add_argument("--port", type=int)
    sub.add_parser("ensure-server", help="print the server bindir; apt-install it when root")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "ensure-server":
            print(ensure_bindir())
            return 0
        if args.cmd == "start-replica":
            primary = LocalPostgres(args.primary)
            if not primary.state_file.exists():
                raise LocalPostgresError(f"no cluster in {primary.datadir}; run `start` first")
            replica = primary.start_replica(args.datadir, port=args.port)
            print(json.dumps(replica.info(), indent=2))
            return 0
        pg = LocalPostgres(args.datadir, port=getattr(args, "port", None))
        if args.cmd == "start":
            print(json.dumps(pg.start().info(), indent=2))
        elif args.cmd == "stop":
            pg.stop(args.mode)
        elif args.cmd == "status":
            running = pg.is_running()
            initialized = (pg.pgdata / "PG_VERSION").is_file()
            info = pg.info() if pg.state_file.exists() else {"datadir": str(pg.datadir)}
            print(json.dumps({"running": running, "initialized": initialized, **info}, indent=2))
            return 0 if running else 3
        elif args.cmd in ("env", "createdb"):
            if not pg.state_file.exists():
                raise LocalPostgresError(f"no cluster in {pg.datadir}; run `start` first")
            if args.cmd == "env":
                for key, value in pg.env(args.prefix, args.dbname).items():
                    print(f"export {key}={shlex.quote(value)}")
            else:
                print(pg.create_database(args.name, drop=args.drop))
    except LocalPostgresError as exc:
        print(f"localpg: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
