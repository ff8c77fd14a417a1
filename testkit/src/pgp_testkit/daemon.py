"""A local server process kept in one directory: what the local Postgres and S3 share.

A daemon listens on 127.0.0.1, on a free port kept across restarts while it stays free. Its
address lives in ``DIR/<state file>`` (JSON, mode 0600) so later processes can reach it, and
its output in ``DIR/<log file>``. :meth:`Daemon.start` launches it, waits until it answers
and, when the port was taken between choosing and binding, retries on another one; a failed
start raises the subclass's error with the last lines of the log.

Stdlib only: scripts/bootstrap runs this with the system python3 before .venv exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

HOST = "127.0.0.1"
D = TypeVar("D", bound="Daemon")


class DaemonError(RuntimeError):
    """A local server could not be found, started, reached or stopped."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Servers bind with SO_REUSEADDR too, so TIME_WAIT leftovers must not count as busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
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


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Daemon(ABC):
    """One server rooted in ``directory``; subclasses say how to launch, probe and stop it."""

    host: ClassVar[str] = HOST
    state_name: ClassVar[str]
    log_name: ClassVar[str]
    error: ClassVar[type[DaemonError]] = DaemonError
    ready_timeout: ClassVar[float] = 30.0

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self.state_file = self.directory / self.state_name
        self.log_file = self.directory / self.log_name
        self.saved: dict[str, Any] = self._load_state()
        # An explicit port is a promise to the caller: never silently move to another one.
        self._port_fixed = port is not None
        self.port: int = port or int(self.saved.get("port") or 0) or free_port()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.directory)!r}, port={self.port})"

    # ------------------------------------------------------------------ subclass hooks

    @abstractmethod
    def is_running(self) -> bool: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def _check(self) -> None:
        """Refuse to start (raise ``error``) before anything is touched."""

    @abstractmethod
    def _prepare(self) -> None:
        """Everything a launch needs that survives a failed attempt (dirs, binaries, data)."""

    @abstractmethod
    def _launch(self) -> str | None:
        """Start the process on ``self.port``; an error detail when it failed outright."""

    def _alive(self) -> bool:
        """False once the launched process has exited (no point waiting for it)."""
        return True

    @abstractmethod
    def _responds(self) -> bool: ...

    @abstractmethod
    def _abort(self) -> None:
        """Get rid of a process that did not come up."""

    @abstractmethod
    def _lost_port_race(self, log_tail: str) -> bool: ...

    @abstractmethod
    def _start_failure(self, detail: str | None) -> str: ...

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    # ------------------------------------------------------------------ shared

    def start(self: D) -> D:
        """Start unless running and wait until it answers."""
        return self._start(allow_new_port=not self._port_fixed)

    def _start(self: D, allow_new_port: bool) -> D:
        self._check()
        if self.is_running():  # e.g. started by an earlier CLI call
            return self
        self._prepare()
        attempts = 3 if allow_new_port else 1
        for attempt in range(attempts):
            if allow_new_port and not port_free(self.port):
                self.port = free_port()
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            detail = self._launch()
            if detail is None and self._wait_ready():
                self._save_state()
                return self
            log_tail = self._read_log(log_offset)
            with contextlib.suppress(DaemonError):
                self._abort()  # don't leave a half-started server behind
            if attempt + 1 < attempts and self._lost_port_race(log_tail):
                self.port = free_port()
                continue
            raise self.error(
                f"{self._start_failure(detail)}\n--- last lines of {self.log_file} ---\n{log_tail}"
            )
        raise AssertionError("unreachable")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self._alive():
                return False
            if self._responds():
                return True
            time.sleep(0.1)
        return False

    def _read_log(self, offset: int, lines: int = 30) -> str:
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                return tail(fh.read().decode(errors="replace"), lines)
        except OSError as exc:
            return f"(cannot read log: {exc})"

    def _load_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise self.error(f"cannot read {self.state_file}: {exc}") from exc

    def _save_state(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        # Created 0600 from the start: a state file may hold a password.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self._state(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.state_file)
        self.saved = self._state()
