"""Local S3 for tests and demos: moto's standalone server on a free loopback port.

One server per state directory (``--state-dir DIR``, default ``.local/locals3`` in the repo)::

    DIR/locals3.json   pid, port, endpoint_url of the running server
    DIR/moto.log       server log

The server keeps everything in memory: stopping it drops every bucket. It accepts any
credentials; ``env`` prints a set that boto3 and the target pick up.

Module use::

    from pgp_testkit.locals3 import LocalS3
    with LocalS3() as s3:                      # start() ... stop()
        client = s3.client()
        client.create_bucket(Bucket="pumps")
        print(s3.endpoint_url)                 # http://127.0.0.1:<port>

CLI (for ``make demo``; ``scripts/locals3.py`` runs it)::

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
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pgp_testkit.daemon import Daemon, DaemonError, pid_alive

STATE_FILE = "locals3.json"
LOG_FILE = "moto.log"
DEFAULT_STATE_DIR = Path(__file__).resolve().parents[3] / ".local" / "locals3"
# moto accepts any credentials; these keep boto3 from looking for real ones.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "locals3",
    "AWS_SECRET_ACCESS_KEY": "locals3",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


class LocalS3Error(DaemonError):
    """The local S3 server could not be started, reached or stopped."""


def _is_our_server(pid: int, port: int) -> bool:
    """The pid still runs moto on our port (guards against a recycled pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the pid
    return b"moto.server" in args and str(port).encode() in args


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGTERM the server if the process that started it dies (tests, not CLI)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalS3(Daemon):
    """One moto S3 server; state (pid, port) kept in ``state_dir`` for later processes.

    ``detach=True`` (the CLI) lets the server outlive this process; otherwise it is stopped
    when this process exits or dies.
    """

    state_name = STATE_FILE
    log_name = LOG_FILE
    error = LocalS3Error
    ready_timeout = _START_TIMEOUT

    def __init__(
        self, state_dir: Path | None = None, port: int | None = None, detach: bool = False
    ) -> None:
        super().__init__(state_dir or DEFAULT_STATE_DIR, port)
        self.state_dir = self.directory
        self.detach = detach
        self.pid: int | None = self.saved.get("pid")
        self._proc: subprocess.Popen[bytes] | None = None

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
        if not self.pid:
            return False
        return pid_alive(self.pid) and _is_our_server(self.pid, self.port) and self._responds()

    def info(self) -> dict[str, Any]:
        return {
            "running": self.is_running(),
            "pid": self.pid,
            # A server that does not run has no address yet (start() picks a free port).
            "port": self.port if self.pid else None,
            "endpoint_url": self.endpoint_url if self.pid else None,
            "state_dir": str(self.state_dir),
            "log": str(self.log_file),
        }

    def stop(self) -> None:
        """Stop the server of this state dir if it runs; forget its state."""
        if self.pid and pid_alive(self.pid) and _is_our_server(self.pid, self.port):
            self._kill()
        self.pid = None
        self._proc = None
        self.state_file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ Daemon hooks

    def _check(self) -> None:
        """Nothing blocks a start: the state of a server that died is simply replaced."""

    def _prepare(self) -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise LocalS3Error(
                f"moto[server] is not importable by {sys.executable} ({exc}); "
                "run `make bootstrap` (target-s3-pump[dev] installs it)"
            ) from None
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def _launch(self) -> str | None:
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
        return None

    def _alive(self) -> bool:
        return self._proc is None or self._proc.poll() is None  # exited: e.g. port taken

    def _abort(self) -> None:
        self._kill()

    def _lost_port_race(self, log_tail: str) -> bool:
        return "in use" in log_tail

    def _start_failure(self, detail: str | None) -> str:
        return f"moto server did not start on {self.endpoint_url}"

    def _state(self) -> dict[str, Any]:
        return {"pid": self.pid, "port": self.port, "endpoint_url": self.endpoint_url}

    # ------------------------------------------------------------------ internals

    def _responds(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
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
        return not pid_alive(pid)


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
