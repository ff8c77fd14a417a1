#!/usr/bin/env python3
"""Local S3 for tests and demos: moto's standalone server on a free loopback port.

One server per state directory (``--state-dir DIR``, default ``.local/locals3`` in the repo)::

    DIR/locals3.json   pid, port, endpoint_url of the running server
    DIR/moto.log       server log

The server keeps everything in memory: stopping it drops every bucket. It accepts any
credentials; ``env`` prints a set that boto3 and the target pick up.

Module use::

    from locals3 import LocalS3
    with LocalS3() as s3:                      # start() ... stop()
        client = s3.client()
        client.create_bucket(Bucket="pumps")
        print(s3.endpoint_url)                 # http://127.0.0.1:<port>

CLI (for ``make demo``)::

    python scripts/locals3.py start [--state-dir DIR] [--port N] [--bucket NAME ...]  # JSON
    python scripts/locals3.py stop [--state-dir DIR]
    python scripts/locals3.py status [--state-dir DIR]   # JSON; exit 0 running, 3 not
    python scripts/locals3.py env [--state-dir DIR]      # `export AWS_...=...` lines

Needs ``moto[server]`` importable by the Python running this script (the project's .venv).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
STATE_FILE = "locals3.json"
LOG_FILE = "moto.log"
DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".local" / "locals3"
# moto accepts any credentials; these keep boto3 from looking for real ones.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "locals3",
    "AWS_SECRET_ACCESS_KEY": "locals3",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


class LocalS3Error(RuntimeError):
    """The local S3 server could not be started, reached or stopped."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not a running server.
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    return True


def _is_our_server(pid: int, port: int) -> bool:
    """The pid still runs moto on our port (guards against a recycled pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _pid_alive(pid)  # no /proc: trust the pid
    return b"moto.server" in args and str(port).encode() in args


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGTERM the server if the process that started it dies (tests, not CLI)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalS3:
    """One moto S3 server; state (pid, port) kept in ``state_dir`` for later processes.

    ``detach=True`` (the CLI) lets the server outlive this process; otherwise it is stopped
    when this process exits or dies.
    """

    host = HOST

    def __init__(
        self, state_dir: Path | None = None, port: int | None = None, detach: bool = False
    ) -> None:
        self.state_dir = Path(state_dir or DEFAULT_STATE_DIR).expanduser().absolute()
        self.state_file = self.state_dir / STATE_FILE
        self.log_file = self.state_dir / LOG_FILE
        self.detach = detach
        state = self._load_state()
        self._port_fixed = port is not None
        self.port: int = port or int(state.get("port") or 0)
        self.pid: int | None = state.get("pid")
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"LocalS3(state_dir={str(self.state_dir)!r}, port={self.port})"

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Env vars that point boto3 (and so the target) at this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": self.endpoint_url}

    def client(self) -> Any:
        import boto3  # a dependency of moto

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def create_buckets(self, *names: str) -> None:
        client = self.client()
        for name in names:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=name)

    def reset(self) -> None:
        """Drop every bucket and object (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def is_running(self) -> bool:
        if not self.pid or not self.port:
            return False
        return _pid_alive(self.pid) and _is_our_server(self.pid, self.port) and self._responds()

    def info(self) -> dict[str, Any]:
        return {
            "running": self.is_running(),
            "pid": self.pid,
            "port": self.port,
            "endpoint_url": self.endpoint_url if self.port else None,
            "state_dir": str(self.state_dir),
            "log": str(self.log_file),
        }

    def start(self) -> LocalS3:
        """Start the server (no-op if this state dir's server runs) and wait until it answers."""
        if self.is_running():
            return self
        self._check_moto()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            if not self._port_fixed:
                self.port = _free_port()
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with open(self.log_file, "ab") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=self.detach,
                    preexec_fn=None if self.detach else _die_with_parent,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            self.pid = self._proc.pid
            if self._wait_ready():
                self._save_state()
                return self
            tail = self._read_log(log_offset)
            self._kill()
            if attempt + 1 < attempts and "in use" in tail:
                continue  # lost a race for the port
            raise LocalS3Error(
                f"moto server did not start on {self.endpoint_url}\n"
                f"--- last lines of {self.log_file} ---\n{tail}"
            )
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server of this state dir if it runs; forget its state."""
        if self.pid and _pid_alive(self.pid) and _is_our_server(self.pid, self.port):
            self._kill()
        self.pid = None
        self._proc = None
        self.state_file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check_moto() -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise LocalS3Error(
                f"moto[server] is not importable by {sys.executable} ({exc}); "
                "run `make bootstrap` (target-s3-pump[dev] installs it)"
            ) from None

    def _responds(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                return False  # exited (e.g. port taken)
            if self._responds():
                return True
            time.sleep(0.1)
        return False

    def _kill(self) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline:
            if self._reap(pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while time.monotonic() < deadline and not self._reap(pid):
            time.sleep(0.05)

    def _reap(self, pid: int) -> bool:
        """True once ``pid`` is gone (reaping it when it is our child)."""
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is not None
        return not _pid_alive(pid)

    def _read_log(self, offset: int, lines: int = 30) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError as exc:
            return f"(cannot read log: {exc})"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _load_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LocalS3Error(f"cannot read {self.state_file}: {exc}") from exc

    def _save_state(self) -> None:
        state = {"pid": self.pid, "port": self.port, "endpoint_url": self.endpoint_url}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locals3.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="server state directory"
        )
        return sp

    start = command("start", "start (if not running), create buckets; print JSON")
    start.add_argument("--port", type=int, help="port (default: a free one)")
    start.add_argument("--bucket", action="append", default=[], help="bucket to create")
    command("stop", "stop if running")
    command("status", "print JSON; exit 0 if running, 3 if not")
    command("env", "print `export AWS_...=...` lines for boto3")
    args = parser.parse_args(argv)

    try:
        server = LocalS3(args.state_dir, port=getattr(args, "port", None), detach=True)
        if args.cmd == "start":
            server.start()
            server.create_buckets(*args.bucket)
            print(json.dumps(server.info(), indent=2))
        elif args.cmd == "stop":
            server.stop()
        elif args.cmd == "status":
            info = server.info()
            print(json.dumps(info, indent=2))
            return 0 if info["running"] else 3
        elif args.cmd == "env":
            if not server.is_running():
                raise LocalS3Error(f"no server running for {server.state_dir}; run `start`")
            for key, value in server.env().items():
                print(f"export {key}={shlex.quote(value)}")
    except LocalS3Error as exc:
        print(f"locals3: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
