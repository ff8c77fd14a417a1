#!/usr/bin/env python3
"""Side-by-side throughput benchmark of Postgres extractors on one `issues` table.

Run it through ``bench/run`` (see bench/README.md). In one run, on the same data:

  1. a throwaway Postgres (scripts/localpg.py) in .local/bench/pg, database ``bench_<rows>``;
  2. ``issues`` loaded from ../shared/bench/issues_table.sql with ``--rows`` rows (kept between
     runs while the row count and the SQL are unchanged), VACUUM (FREEZE, ANALYZE), one COPY
     to warm the cache;
  3. every tool in turn, its stdout piped to a small counter (this process, reading the pipe
     and counting newlines / message types in C via bytes.count), its wall time, the peak RSS
     of its process tree (polled from /proc, and GNU time's %M) and its CPU time;
     the Postgres server's CPU for the same interval is reported separately;
  4. row counts checked exactly against the table (RECORD messages counted on stdout; BATCH
     files decompressed and their lines counted after the timed run);
  5. a table: tool | rows | seconds | rows/s | peak RSS MB | x best peer | x COPY | CPU ...

End to end (the headline), with the configuration meltano.yml ships, read from it at run time:
``e2e`` (dev: the tap's BATCH parquet into target-postgres, into the ``warehouse`` database),
``e2e-record`` (the old default as the baseline: RECORD into target-postgres with use_copy) and
``snowflake-load`` (target-snowflake alone, fed the tap's recorded output, into the Snowflake
emulator of tests/snowflake_emulator.py: BATCH arrow as in prod, and RECORD).

Peers live in their own virtualenvs under .local/bench/venvs (git-ignored), built on demand.
Results are also written to .local/bench/results/<rows>.json; the flat-memory check compares
peak RSS with the results of other row counts found there.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gzip
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pgp_testkit.localpg import LocalPostgres, find_bindir

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOCAL = ROOT / ".local" / "bench"  # git-ignored (.local/)
VENVS = LOCAL / "venvs"
WORK = LOCAL / "work"
LOGS = LOCAL / "logs"
RESULTS = LOCAL / "results"
TABLE_SQL = ROOT.parent / "shared" / "bench" / "issues_table.sql"
MANIFEST = BENCH / "manifests" / "issues.yaml"
SOURCE_DB_PREFIX = "bench_"  # one source database per row count: bench_1000000, ...
WAREHOUSE_DB = "warehouse"
DEFAULT_ROWS = 1_000_000
CHUNK = 500_000  # chunk_size / batch_size, as in the issue

MELTANO_YML = ROOT / "meltano.yml"
MELTANO_LOADERS = ROOT / ".meltano" / "loaders"
EXTRACTOR = "tap-gitlab-postgres--main"  # whose per-environment batch_config the bench uses

# --------------------------------------------------------------------------- data model


@dataclass
class Result:
    tool: str  # id, as --only takes it
    label: str
    kind: str  # "limit" | "ours" | "peer" | "pipeline" | "stage"
    rows: int | None = None
    seconds: float | None = None
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None  # user+sys of the tool's process tree
    pg_cpu_seconds: float | None = None  # the Postgres server's CPU over the same interval
    background_cores: float | None = None  # other processes of the machine during the run
    expected_rows: int | None = None
    ok: bool = False
    skipped: str | None = None  # reason, when the tool could not run
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float | None:
        if self.rows is None or not self.seconds:
            return None
        return self.rows / self.seconds

    @property
    def rows_per_cpu_s(self) -> float | None:
        """Rows per CPU second of the tool and the Postgres server together: much less
        sensitive to other processes than rows/s (they take cores, not cycles)."""
        cpu = (self.cpu_seconds or 0) + (self.pg_cpu_seconds or 0)
        return self.rows / cpu if self.rows is not None and cpu else None

    @property
    def cpu_s_per_million(self) -> float | None:
        """CPU seconds of the measured processes (not the Postgres server) per 1M rows."""
        if not self.rows or self.cpu_seconds is None:
            return None
        return self.cpu_seconds / self.rows * 1_000_000


class Skip(Exception):
    """A tool cannot run here; the reason is reported in the table."""


# --------------------------------------------------------------------------- measuring


class Counter(threading.Thread):
    """Reads a pipe to EOF, counting newlines and byte patterns (with carry over reads).

    Keeps the first and last ``keep`` bytes (or everything with ``keep_all``) so that a
    few messages can be checked after the run, and the tail for COPY's command tag.
    """

    def __init__(self, fd: int, patterns: Sequence[bytes] = (), keep: int = 1 << 16,
                 keep_all: bool = False) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.fd = fd
        self.patterns = list(patterns)
        self.counts = [0] * len(self.patterns)
        self.newlines = 0
        self.bytes = 0
        self.keep = keep
        self.keep_all = keep_all
        self.head = bytearray()
        self.tail = b""
        self.all = bytearray()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def _run(self) -> None:
        fd, patterns, counts = self.fd, self.patterns, self.counts
        longest = max((len(p) for p in patterns), default=1)
        carry = b""  # the last (longest - 1) bytes read so far
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            self.bytes += len(data)
            self.newlines += data.count(b"\n")
            if patterns:
                for i, p in enumerate(patterns):
                    n = len(p) - 1
                    # Both halves are shorter than p: every match in `edge` straddles the reads.
                    edge = (carry[-n:] if n else b"") + data[:n]
                    counts[i] += data.count(p) + edge.count(p)
                carry = (carry + data[-(longest - 1):])[-(longest - 1):] if longest > 1 else b""
            if self.keep_all:
                self.all += data
            elif len(self.head) < self.keep:
                self.head += data[: self.keep - len(self.head)]
            self.tail = (self.tail + data)[-self.keep:]
        os.close(fd)


def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _tree(roots: Sequence[int]) -> list[int]:
    children = _proc_children()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssPoller(threading.Thread):
    """Peak of the summed RSS of the process trees under ``roots`` (polled every 50 ms)."""

    def __init__(self, roots: Sequence[int], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.roots = list(roots)
        self.interval = interval
        self.peak_kb = 0
        self.per_root_peak_kb = dict.fromkeys(self.roots, 0)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total = 0
            for root in self.roots:
                # The roots are GNU time wrappers: count what runs under them.
                kb = sum(_rss_kb(pid) for pid in _tree([root]) if pid != root)
                self.per_root_peak_kb[root] = max(self.per_root_peak_kb[root], kb)
                total += kb
            self.peak_kb = max(self.peak_kb, total)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int, with_children: bool) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return 0
    f = stat[stat.rfind(b")") + 2:].split()
    ticks = int(f[11]) + int(f[12])  # utime, stime
    if with_children:
        ticks += int(f[13]) + int(f[14])  # cutime, cstime: reaped children (ended backends)
    return ticks


class ServerCpu:
    """CPU seconds of one Postgres cluster: postmaster (+ reaped backends) + live backends."""

    def __init__(self, pg: LocalPostgres) -> None:
        self.pg = pg

    def _postmaster(self) -> int | None:
        try:
            return int((self.pg.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def children(self) -> set[int]:
        pm = self._postmaster()
        return set(_proc_children().get(pm, ())) if pm else set()

    def seconds(self) -> float:
        pm = self._postmaster()
        if pm is None:
            return 0.0
        ticks = _cpu_ticks(pm, with_children=True)
        ticks += sum(_cpu_ticks(p, with_children=False) for p in _proc_children().get(pm, ()))
        return ticks / _TICKS

    def settle(self, baseline: set[int], timeout: float = 5.0) -> None:
        """Wait until the backends started since ``baseline`` are gone *and reaped*: an
        exiting backend (a zombie) shows no CPU time until the postmaster reaps it and adds
        it to its own cutime, so reading too early loses a whole backend's CPU."""
        deadline = time.monotonic() + timeout
        while self.children() - baseline and time.monotonic() < deadline:
            time.sleep(0.02)


def busy_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used (all CPUs), from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS


def _own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def background_cores(sample: float = 2.0) -> float:
    """Cores busy with processes outside the bench over ``sample`` seconds (idle bench)."""
    busy, own = busy_cpu_seconds(), _own_cpu_seconds()
    time.sleep(sample)
    return max(0.0, (busy_cpu_seconds() - busy) - (_own_cpu_seconds() - own)) / sample


def wait_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (up to ``max_wait`` s) until other processes use less than ``threshold`` cores;
    return the last background load seen."""
    deadline = time.monotonic() + max_wait
    load = background_cores()
    told = False
    while load >= threshold and time.monotonic() < deadline:
        if not told:
            print(f"bench:   other processes use {load:.1f} cores; waiting up to "
                  f"{max_wait:.0f}s for a quieter machine ...", flush=True)  # fmt: skip
            told = True
        time.sleep(3)
        load = background_cores()
    return load


@dataclass
class Proc:
    """One measured process of a run."""

    name: str
    popen: subprocess.Popen
    log: Path
    rss_file: Path
    rc: int | None = None
    cpu: float = 0.0
    maxrss_kb: int = 0
    ended: float = 0.0


def _wait(p: Proc) -> None:
    _, status, usage = os.wait4(p.popen.pid, 0)
    p.ended = time.perf_counter()
    p.rc = os.waitstatus_to_exitcode(status)
    p.popen.returncode = p.rc
    p.cpu = usage.ru_utime + usage.ru_stime
    # Not usage.ru_maxrss: a child spawned from this (big) Python process inherits its
    # RSS high-water mark through fork/vfork + exec. GNU time's child starts from time's.
    with contextlib.suppress(OSError, ValueError, IndexError):
        p.maxrss_kb = int(p.rss_file.read_text().split()[-1])


TIME = "/usr/bin/time"  # GNU time: -f %M is the peak RSS (KB) of the command and its children


def _tail_file(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "VIRTUAL_ENV"))}
    env.pop("PYTHONPATH", None)
    env.update(extra or {})
    return env


@dataclass
class Run:
    t0: float
    seconds: float
    background_cores: float  # cores busy with other processes (not tool, server, bench)
    peak_rss_kb: int
    cpu: float
    pg_cpu: float
    counter: Counter
    procs: list[Proc]
    per_proc_peak_kb: dict[str, int]


def run_pipeline(
    stages: Sequence[tuple[str, list[str]]],
    server: ServerCpu,
    patterns: Sequence[bytes] = (),
    keep_all: bool = False,
    stdin_path: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    cwd: Path = ROOT,
) -> Run:
    """Run ``stages`` as a shell-style pipeline; the last one's stdout goes to a Counter.

    Each stage runs under GNU time (``-f %M``: its peak RSS, children included). Wall time:
    from the first spawn to the last process's exit. RSS: the peak of the summed RSS of all
    the stages' process trees (polled every 50 ms), at least the largest GNU time peak.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    env = env or _clean_env()
    procs: list[Proc] = []
    pg_children = server.children()
    pg_before = server.seconds()
    busy_before, own_before = busy_cpu_seconds(), _own_cpu_seconds()
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    t0 = time.perf_counter()
    prev_out: Any = stdin
    try:
        for name, cmd in stages:
            log = LOGS / f"{name}.log"
            rss_file = LOGS / f"{name}.maxrss"
            rss_file.unlink(missing_ok=True)
            with open(log, "wb") as err:
                popen = subprocess.Popen(
                    [TIME, "-f", "%M", "-o", str(rss_file), *cmd],
                    stdin=prev_out, stdout=subprocess.PIPE, stderr=err, env=env,
                    cwd=cwd, bufsize=0,
                )  # fmt: skip
            if prev_out not in (subprocess.DEVNULL, None) and hasattr(prev_out, "close"):
                prev_out.close()  # the child has its own copy
            prev_out = popen.stdout
            procs.append(Proc(name, popen, log, rss_file))
        fd = os.dup(procs[-1].popen.stdout.fileno())
        procs[-1].popen.stdout.close()
        counter = Counter(fd, patterns, keep_all=keep_all)
        counter.start()
        poller = RssPoller([p.popen.pid for p in procs])
        poller.start()
        killer = threading.Timer(timeout, lambda: [_kill(p) for p in procs])
        killer.start()
        waiters = [threading.Thread(target=_wait, args=(p,)) for p in procs]
        for w in waiters:
            w.start()
        for w in waiters:
            w.join()
        killer.cancel()
        t1 = max(p.ended for p in procs)
        poller.stop()
        counter.join()
    finally:
        if stdin_path:
            stdin.close()
        for p in procs:
            if p.popen.returncode is None:
                _kill(p)
    server.settle(pg_children)
    pg_after = server.seconds()
    busy = busy_cpu_seconds() - busy_before
    own = _own_cpu_seconds() - own_before
    other = busy - own - sum(p.cpu for p in procs) - (pg_after - pg_before)
    if counter.error:
        raise counter.error
    peak = max(poller.peak_kb, *(p.maxrss_kb for p in procs))
    return Run(
        t0=t0,
        seconds=t1 - t0,
        background_cores=max(0.0, other) / (t1 - t0),
        peak_rss_kb=peak,
        cpu=sum(p.cpu for p in procs),
        pg_cpu=pg_after - pg_before,
        counter=counter,
        procs=procs,
        per_proc_peak_kb={
            p.name: max(poller.per_root_peak_kb[p.popen.pid], p.maxrss_kb) for p in procs
        },
    )


def _kill(p: Proc) -> None:
    with contextlib.suppress(ProcessLookupError):
        p.popen.kill()


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*")


def _exception_line(path: Path) -> str:
    """The last ``SomeError: ...`` line of a log (a traceback's message), or ""."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next((ln for ln in reversed(lines) if _EXCEPTION_LINE.match(ln)), "")


def _check_rc(run: Run) -> None:
    # Downstream first: a target that fails breaks its tap's pipe, and the tap's error
    # (BrokenPipeError) would hide the cause.
    for p in reversed(run.procs):
        if p.rc != 0:
            what = _exception_line(p.log)
            raise RuntimeError(f"{p.name} exited {p.rc}{': ' + what if what else ''}; "
                               f"log {p.log}:\n{_tail_file(p.log)}")  # fmt: skip


# --------------------------------------------------------------------------- Singer output

RECORD_PATTERNS = (b'"type":"RECORD"', b'"type": "RECORD"')
BATCH_PATTERNS = (b'"type":"BATCH"', b'"type": "BATCH"')
MESSAGE_TYPES = {"SCHEMA", "RECORD", "STATE", "ACTIVATE_VERSION", "BATCH"}


def _complete_lines(data: bytes, *, from_end: bool) -> list[bytes]:
    lines = data.split(b"\n")
    # Drop a possibly cut line at the edge of the kept bytes (and the empty last item).
    lines = lines[1:-1] if from_end else lines[:-1]
    return [ln for ln in lines if ln.strip()]


def check_singer_sample(counter: Counter) -> list[str]:
    """Parse the kept first and last messages: JSON objects of known Singer types."""
    problems = []
    lines = _complete_lines(bytes(counter.head), from_end=False)[:200]
    lines += _complete_lines(counter.tail, from_end=True)[-200:]
    for line in lines:
        if line.startswith(b"py-spy> "):  # py-spy's own lines (--profile)
            continue
        try:
            msg = json.loads(line)
        except ValueError as exc:
            problems.append(f"not JSON ({exc}): {line[:120]!r}")
            continue
        if not isinstance(msg, dict) or msg.get("type") not in MESSAGE_TYPES:
            problems.append(f"not a Singer message: {line[:120]!r}")
        elif msg["type"] == "RECORD" and not (
            isinstance(msg.get("record"), dict) and isinstance(msg.get("stream"), str)
        ):
            problems.append(f"malformed RECORD: {line[:120]!r}")
    return problems[:5]


def count_records(counter: Counter) -> int:
    return sum(counter.counts)


def count_batch_rows(counter: Counter, storage_dir: Path) -> tuple[int, int, int]:
    """(BATCH messages, files, rows) from the BATCH messages of a run (all output kept)."""
    messages = files = rows = 0
    for line in bytes(counter.all).splitlines():
        if not line.strip() or line.startswith(b"py-spy> "):  # py-spy's own lines (--profile)
            continue
        msg = json.loads(line)
        if msg.get("type") != "BATCH":
            continue
        messages += 1
        encoding = msg.get("encoding", {})
        for url in msg["manifest"]:
            path = Path(urlparse(url).path)
            if storage_dir.resolve() not in path.resolve().parents:
                raise RuntimeError(f"batch file outside the storage root: {url}")
            files += 1
            if encoding.get("format") == "parquet":
                import pyarrow.parquet as pq

                rows += pq.ParquetFile(path).metadata.num_rows
                continue
            if encoding.get("format") == "arrow":
                import pyarrow as pa

                with pa.memory_map(str(path)) as source, pa.ipc.open_file(source) as reader:
                    rows += sum(reader.get_batch(i).num_rows
                                for i in range(reader.num_record_batches))  # fmt: skip
                continue
            opener = gzip.open if encoding.get("compression") == "gzip" else open
            with opener(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    rows += chunk.count(b"\n")
    return messages, files, rows


# --------------------------------------------------------------------------- virtualenvs


def _python(version: str) -> Path | None:
    """An interpreter of ``version`` (e.g. "3.9"): pyenv's, or on PATH."""
    pyenv = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    if pyenv.is_dir():
        for cand in sorted(pyenv.glob(f"{version}.*"), reverse=True):
            exe = cand / "bin" / "python"
            if exe.is_file():
                return exe
    found = shutil.which(f"python{version}")
    return Path(found) if found else None


def base_python() -> Path:
    """The interpreter behind the running one (not a venv's), for 3.11 peer venvs."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return Path(exe)


VENV_SPECS: dict[str, tuple[Callable[[], Path | None], list[str]]] = {
    "meltanolabs-tap-postgres": (base_python, ["meltanolabs-tap-postgres==0.10.0"]),
    # Its psycopg2/ujson pins need an older Python (< 3.10).
    "pipelinewise-tap-postgres": (lambda: _python("3.9"), ["pipelinewise-tap-postgres>=2.1,<2.2"]),
    "py-spy": (base_python, ["py-spy"]),
}


def ensure_venv(name: str) -> Path:
    """Path of the venv ``name``, built (once) when missing or when its spec changed."""
    find_python, packages = VENV_SPECS[name]
    python = find_python()
    if python is None:
        raise Skip(f"no interpreter for the {name} venv (see VENV_SPECS)")
    venv = VENVS / name
    marker = venv / ".bench-spec.json"
    spec = {"python": str(python), "packages": packages}
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker.read_text()) == spec and (venv / "bin" / "python").exists():
            return venv
    print(f"bench: building venv {venv} ({python}, {' '.join(packages)}) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    VENVS.mkdir(parents=True, exist_ok=True)
    log = VENVS / f"{name}.install.log"
    with open(log, "wb") as out:
        steps = [
            [str(python), "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *packages],
        ]
        for cmd in steps:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False,
                                env=_clean_env()).returncode  # fmt: skip
            if rc != 0:
                raise Skip(f"cannot install {' '.join(packages)} on {python}: "
                           f"{_tail_file(log, 3)} (log {log})")  # fmt: skip
    marker.write_text(json.dumps(spec))
    return venv


def installed_version(venv: Path, dist: str) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip() or "?"


# --------------------------------------------------------------------------- meltano.yml

# The end-to-end tools follow the configuration meltano.yml ships: its loaders' `config`
# blocks, the batch_config of an environment, the loaders' venvs that `meltano install` built
# from their pip_url. Only the connections (and the batch storage root) are the bench's.


@functools.cache
def meltano_project() -> dict[str, Any]:
    import yaml  # the repo's .venv has PyYAML (the tap depends on it)

    return yaml.safe_load(MELTANO_YML.read_text())


def loader_config(name: str) -> dict[str, Any]:
    """The plugin-level ``config`` of meltano.yml's loader ``name`` (a copy)."""
    for loader in meltano_project()["plugins"]["loaders"]:
        if loader["name"] == name:
            return copy.deepcopy(loader.get("config") or {})
    raise RuntimeError(f"{MELTANO_YML} declares no loader {name}")


def environment_batch_config(environment: str, extractor: str = EXTRACTOR) -> dict[str, Any]:
    """The ``batch_config`` meltano.yml's ``environment`` gives ``extractor`` (a copy)."""
    for env in meltano_project().get("environments") or []:
        if env.get("name") != environment:
            continue
        for plugin in ((env.get("config") or {}).get("plugins") or {}).get("extractors") or []:
            config = plugin.get("config") or {}
            if plugin.get("name") == extractor and "batch_config" in config:
                return copy.deepcopy(config["batch_config"])
    raise RuntimeError(f"{MELTANO_YML}: environment {environment} sets no batch_config "
                       f"for {extractor}")  # fmt: skip


def meltano_loader_venv(name: str) -> Path:
    """The venv `meltano install` built for loader ``name`` (its pinned pip_url)."""
    venv = MELTANO_LOADERS / name / "venv"
    if not (venv / "bin" / "python").exists():
        raise Skip(f"{venv.relative_to(ROOT)} missing (run `make bootstrap`: meltano install)")
    return venv


def _child_with_args(*args: str) -> int | None:
    """pid of a child of this process whose command line holds every one of ``args``."""
    for pid in _proc_children().get(os.getpid(), ()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(a.encode() in argv for a in args):
            return pid
    return None


# --------------------------------------------------------------------------- the source table


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows_wanted: int = args.rows
        self.db = f"{SOURCE_DB_PREFIX}{args.rows}"
        self.pg = LocalPostgres(LOCAL / "pg")
        self.server = ServerCpu(self.pg)
        self.bindir = find_bindir()
        self.expected = 0
        self.results: list[Result] = []

    # -- connection helpers

    def psql(self, db: str, *args: str, sql: str | None = None, **kw: Any) -> str:
        cmd = [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
               "-h", self.pg.host, "-p", str(self.pg.port), "-U", self.pg.user, "-d", db,
               *args]  # fmt: skip
        if sql is not None:
            cmd += ["-c", sql]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                             env=self.pg_env(), **kw)  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout.strip()

    def pg_env(self) -> dict[str, str]:
        return _clean_env({"PGPASSWORD": self.pg.password})

    def source_config(self) -> dict[str, Any]:
        return {"host": self.pg.host, "port": self.pg.port, "user": self.pg.user,
                "password": self.pg.password}  # fmt: skip

    def write_json(self, name: str, data: Any) -> Path:
        WORK.mkdir(parents=True, exist_ok=True)
        path = WORK / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds a password
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        return path

    # -- setup

    def setup(self) -> None:
        if self.bindir is None:
            raise SystemExit("bench: no PostgreSQL server binaries (run `make bootstrap`)")
        self.pg.start()
        self.pg.create_database(self.db)
        print(f"bench: Postgres {self.psql(self.db, sql='SHOW server_version')} "
              f"at {self.pg.host}:{self.pg.port} ({self.pg.datadir})", flush=True)  # fmt: skip
        self.load_table()
        print("bench: VACUUM (FREEZE, ANALYZE) and one COPY to warm the cache ...", flush=True)
        self.psql(self.db, sql="VACUUM (FREEZE, ANALYZE) public.issues")
        self.psql(self.db, sql="CHECKPOINT")
        self.measure_copy("warmup", "binary", record=False)
        size = self.psql(self.db, sql="SELECT pg_size_pretty(pg_total_relation_size("
                                        "'public.issues'))")  # fmt: skip
        print(f"bench: public.issues: {self.expected:,} rows, {size}", flush=True)

    def load_table(self) -> None:
        if not TABLE_SQL.is_file():
            raise SystemExit(f"bench: {TABLE_SQL} not found (expected ../shared/bench/)")
        text = TABLE_SQL.read_text()
        pattern = re.compile(r"generate_series\(\s*1\s*,\s*1000000\s*\)")
        if len(pattern.findall(text)) != 1:
            raise SystemExit(f"bench: {TABLE_SQL}: expected one generate_series(1, 1000000)")
        text = pattern.sub(f"generate_series(1, {self.rows_wanted})", text)
        tag = f"bench rows={self.rows_wanted} sql={hashlib.sha256(text.encode()).hexdigest()[:16]}"
        current = self.psql(
            self.db,
            sql="SELECT obj_description(c.oid, 'pg_class') FROM pg_class c "
            "WHERE c.oid = to_regclass('public.issues')",
        )
        if current == tag and not self.args.reload:
            self.expected = int(self.psql(self.db, sql="SELECT count(*) FROM public.issues"))
            if self.expected == self.rows_wanted:
                print(f"bench: reusing public.issues ({tag})", flush=True)
                return
        print(f"bench: loading public.issues with {self.rows_wanted:,} rows "
              f"from {TABLE_SQL} ...", flush=True)  # fmt: skip
        t0 = time.perf_counter()
        script = WORK / "issues_table.sql"
        WORK.mkdir(parents=True, exist_ok=True)
        script.write_text(text)
        self.psql(self.db, "-f", str(script))
        self.psql(self.db, sql=f"COMMENT ON TABLE public.issues IS '{tag}'")
        self.expected = int(self.psql(self.db, sql="SELECT count(*) FROM public.issues"))
        if self.expected != self.rows_wanted:
            raise SystemExit(f"bench: loaded {self.expected} rows, wanted {self.rows_wanted}")
        print(f"bench: loaded in {time.perf_counter() - t0:.0f}s", flush=True)

    # -- tools

    def measure_copy(self, tool: str, fmt: str, record: bool = True) -> Result:
        """COPY (SELECT * FROM issues) TO STDOUT through psql: the limit for any client.

        The data goes to the counter (psql's ``\\g /dev/fd/3``), the command tag ``COPY n``
        to a file: the row count comes from the server.
        """
        opts = {"binary": "(FORMAT binary)", "csv": "(FORMAT csv)"}[fmt]
        WORK.mkdir(parents=True, exist_ok=True)
        script, tag_file = WORK / f"{tool}.sql", WORK / f"{tool}.tag"
        script.write_text(f"COPY (SELECT * FROM public.issues) TO STDOUT {opts} \\g /dev/fd/3\n")
        psql = [str(self.bindir / "psql"), "-X", "-h", self.pg.host, "-p", str(self.pg.port),
                "-U", self.pg.user, "-d", self.db, "-v", "ON_ERROR_STOP=1", "-f", str(script)]
        cmd = ["bash", "-c", 'exec "$@" 3>&1 1>"$0"', str(tag_file), *psql]  # fmt: skip
        res = Result(tool, f"COPY TO STDOUT ({fmt}, psql)", "limit", expected_rows=self.expected)
        run = run_pipeline([(tool, cmd)], self.server, env=self.pg_env())
        _check_rc(run)
        m = re.fullmatch(r"COPY (\d+)\n", tag_file.read_text())
        if not m:
            raise RuntimeError(f"{tool}: no COPY command tag: {tag_file.read_text()[:200]!r}")
        rows = int(m.group(1))
        if fmt == "csv" and run.counter.newlines != rows:
            raise RuntimeError(f"{tool}: {run.counter.newlines} CSV lines, the tag says {rows}")
        self._fill(res, run, rows)
        res.extra["bytes"] = run.counter.bytes
        return res

    def measure_pg_json(self, tool: str) -> Result:
        """Diagnostic: the tap's own row-to-JSON COPY (RECORD lines), run by psql.

        The SQL comes from tap_gitlab_postgres' functions (one chunk spanning the table), so
        this is the Postgres side of the tap alone: no Python, no Singer SDK.
        """
        try:
            from tap_gitlab_postgres.allowlist import AllowLists
            from tap_gitlab_postgres.client import (
                ConnectionSettings,
                SourceDatabase,
                record_json_sql,
            )
            from tap_gitlab_postgres.manifest import load_manifest
            from tap_gitlab_postgres.sqltext import sql_string

            table = load_manifest(MANIFEST, None).tables[0]
            allow = AllowLists.empty()
            source = SourceDatabase(ConnectionSettings(
                host=self.pg.host, port=self.pg.port, user=self.pg.user,
                password=self.pg.password, database=self.db))  # fmt: skip
            columns = source.describe_columns(table.query.probe_sql(allow))
            source.close()
            top = int(self.psql(self.db, sql="SELECT max(id) FROM public.issues"))
            inner = record_json_sql(table.query.chunk_sql(allow, None, top), columns,
                                    {"_uploaded_at": "1700000000.000000::numeric"})  # fmt: skip
            prefix = sql_string('{"type":"RECORD","stream":"gitlab_db_issues","record":')
            suffix = sql_string(',"version":1,"time_extracted":"2025-01-01T00:00:00+00:00"}')
        except Exception as exc:  # the tap's internals moved: this diagnostic only
            raise Skip(f"cannot build the tap's SQL from tap_gitlab_postgres: {exc!r}") from None
        copy = (f"COPY (SELECT {prefix} || j || {suffix} FROM ({inner}) AS r) TO STDOUT "
                "WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')")  # fmt: skip
        WORK.mkdir(parents=True, exist_ok=True)
        script, tag_file = WORK / f"{tool}.sql", WORK / f"{tool}.tag"
        script.write_text(copy + " \\g /dev/fd/3\n")
        psql = [str(self.bindir / "psql"), "-X", "-h", self.pg.host, "-p", str(self.pg.port),
                "-U", self.pg.user, "-d", self.db, "-v", "ON_ERROR_STOP=1", "-f", str(script)]
        cmd = ["bash", "-c", 'exec "$@" 3>&1 1>"$0"', str(tag_file), *psql]  # fmt: skip
        env = {**self.pg_env(),
               "PGOPTIONS": "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601"}
        res = Result(tool, "diagnostic: the tap's JSON COPY query alone (psql)", "stage",
                     expected_rows=self.expected)  # fmt: skip
        run = run_pipeline([(tool, cmd)], self.server, RECORD_PATTERNS, env=env)
        _check_rc(run)
        rows = count_records(run.counter)
        m = re.fullmatch(r"COPY (\d+)\n", tag_file.read_text())
        if not m or int(m.group(1)) != rows:
            raise RuntimeError(f"{tool}: {rows} lines, tag {tag_file.read_text()[:100]!r}")
        self._fill(res, run, rows)
        res.extra["bytes"] = run.counter.bytes
        problems = check_singer_sample(run.counter)
        if problems:
            res.ok, res.error = False, "; ".join(problems)
        return res

    def _fill(self, res: Result, run: Run, rows: int) -> None:
        res.rows = rows
        res.seconds = run.seconds
        res.peak_rss_mb = run.peak_rss_kb / 1024
        res.cpu_seconds = run.cpu
        res.pg_cpu_seconds = run.pg_cpu
        res.background_cores = run.background_cores
        res.ok = rows == self.expected
        if not res.ok:
            res.error = f"row count {rows} != {self.expected}"

    def _singer_run(self, res: Result, stages: list[tuple[str, list[str]]],
                    batch_dir: Path | None = None, env: dict[str, str] | None = None) -> Run:
        """Run a Singer tap (RECORD or BATCH) and fill ``res`` from its output."""
        if batch_dir is not None:
            shutil.rmtree(batch_dir, ignore_errors=True)
            batch_dir.mkdir(parents=True)
            run = run_pipeline(stages, self.server, BATCH_PATTERNS, keep_all=True, env=env)
            _check_rc(run)
            t0 = time.perf_counter()
            messages, files, rows = count_batch_rows(run.counter, batch_dir)
            res.extra.update(batch_messages=messages, batch_files=files,
                             batch_bytes=sum(f.stat().st_size for f in batch_dir.iterdir()),
                             count_seconds=round(time.perf_counter() - t0, 2))  # fmt: skip
            if not self.args.keep_batches:
                shutil.rmtree(batch_dir, ignore_errors=True)
        else:
            run = run_pipeline(stages, self.server, RECORD_PATTERNS, env=env)
            _check_rc(run)
            rows = count_records(run.counter)
            res.extra["bytes"] = run.counter.bytes
            res.extra["messages"] = run.counter.newlines
        problems = check_singer_sample(run.counter)
        self._fill(res, run, rows)
        if problems:
            res.ok = False
            res.error = "; ".join(problems)
        return run

    def batch_config(self, tool: str, fmt: str = "jsonl") -> tuple[dict[str, Any], Path]:
        """BATCH settings: jsonl gzip-compressed (every tap), or the tap's parquet / arrow
        (uncompressed, its default)."""
        batch_dir = LOCAL / "batches" / tool
        encoding = {"format": fmt} if fmt != "jsonl" else {"format": "jsonl", "compression": "gzip"}
        return {
            "encoding": encoding,
            "storage": {"root": batch_dir.as_uri(), "prefix": "x-"},
            "batch_size": CHUNK,
        }, batch_dir

    def gitlab_config(self, **extra: Any) -> dict[str, Any]:
        return {**self.source_config(), "database": self.db,
                "manifest_path": str(MANIFEST), "chunk_size": CHUNK, **extra}  # fmt: skip

    def gitlab_cmd(self, config: dict[str, Any], name: str) -> list[str]:
        exe = ROOT / ".venv" / "bin" / "tap-gitlab-postgres"
        if not exe.exists():
            raise Skip(f"{exe} missing (run `make bootstrap`)")
        # No --state: every run is the first, i.e. a full sync of the table.
        return [str(exe), "--config", str(self.write_json(f"{name}.config.json", config))]

    def tap_gitlab(self, tool: str, mode: str) -> Result:
        labels = {
            "record": "tap-gitlab-postgres RECORD (fast_records, Postgres builds messages)",
            "record-sdk": "tap-gitlab-postgres RECORD via singer-sdk (fast_records: false)",
            "batch": "tap-gitlab-postgres BATCH jsonl.gz",
            "batch-parquet": "tap-gitlab-postgres BATCH parquet (COPY CSV -> pyarrow)",
            "batch-arrow": "tap-gitlab-postgres BATCH arrow IPC (COPY CSV -> pyarrow)",
        }
        res = Result(tool, labels[mode], "ours", expected_rows=self.expected)
        batch_dir = None
        # The extraction alone: no pgp_row_counts stream (one more record, and a count(*)).
        if mode.startswith("batch"):
            cfg, batch_dir = self.batch_config(tool, mode.partition("-")[2] or "jsonl")
            config = self.gitlab_config(batch_config=cfg, row_counts=False)
        else:
            config = self.gitlab_config(fast_records=mode == "record", row_counts=False)
        self._singer_run(res, [(tool, self.gitlab_cmd(config, tool))], batch_dir)
        return res

    def tap_meltanolabs(self, tool: str, mode: str) -> Result:
        venv = ensure_venv("meltanolabs-tap-postgres")
        version = installed_version(venv, "meltanolabs-tap-postgres")
        sdk = installed_version(venv, "singer-sdk")
        res = Result(tool, f"MeltanoLabs tap-postgres {version} {mode.upper()}"
                     + (" jsonl.gz" if mode == "batch" else ""), "peer",
                     expected_rows=self.expected)  # fmt: skip
        res.notes.append(f"singer-sdk {sdk}")
        config: dict[str, Any] = {**self.source_config(), "database": self.db,
                                  "filter_schemas": ["public"]}  # fmt: skip
        batch_dir = None
        if mode == "batch":
            config["batch_config"], batch_dir = self.batch_config(tool)
        catalog = self.selected_catalog(
            venv / "bin" / "tap-postgres", config, tool, "public-issues", sdk_style=True
        )
        cmd = [str(venv / "bin" / "tap-postgres"),
               "--config", str(self.write_json(f"{tool}.config.json", config)),
               "--catalog", str(catalog)]  # fmt: skip
        self._singer_run(res, [(tool, cmd)], batch_dir)
        return res

    def tap_pipelinewise(self, tool: str) -> Result:
        venv = ensure_venv("pipelinewise-tap-postgres")
        version = installed_version(venv, "pipelinewise-tap-postgres")
        py = subprocess.run([str(venv / "bin" / "python"), "-V"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
        res = Result(tool, f"pipelinewise-tap-postgres {version} RECORD (FULL_TABLE)", "peer",
                     expected_rows=self.expected)  # fmt: skip
        res.notes.append(py)
        config = {**self.source_config(), "dbname": self.db, "filter_schemas": "public",
                  "default_replication_method": "FULL_TABLE"}  # fmt: skip
        catalog = self.selected_catalog(
            venv / "bin" / "tap-postgres", config, tool, "public-issues", sdk_style=False
        )
        cmd = [str(venv / "bin" / "tap-postgres"),
               "--config", str(self.write_json(f"{tool}.config.json", config)),
               "--catalog", str(catalog)]  # fmt: skip
        self._singer_run(res, [(tool, cmd)])
        return res

    def selected_catalog(self, exe: Path, config: dict[str, Any], tool: str,
                         stream_id: str, *, sdk_style: bool) -> Path:  # fmt: skip
        """``--discover``, then select ``stream_id`` (FULL_TABLE) and all its columns."""
        cfg = self.write_json(f"{tool}.discover-config.json",
                              {k: v for k, v in config.items() if k != "batch_config"})
        out = subprocess.run([str(exe), "--config", str(cfg), "--discover"],
                             capture_output=True, text=True, check=False, cwd=ROOT,
                             env=_clean_env())  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"{tool} --discover failed: {out.stderr.strip()[-800:]}")
        catalog = json.loads(out.stdout)
        found = False
        for stream in catalog["streams"]:
            chosen = stream["tap_stream_id"] == stream_id
            found |= chosen
            if not sdk_style:
                stream["replication_method"] = "FULL_TABLE"
            for md in stream.get("metadata", []):
                meta = md.setdefault("metadata", {})
                if md.get("breadcrumb") == []:
                    meta["selected"] = chosen
                    if chosen:
                        meta["replication-method"] = "FULL_TABLE"
                        meta.pop("replication-key", None)
                elif chosen:
                    meta["selected"] = True
        if not found:
            raise RuntimeError(f"{tool}: stream {stream_id} not discovered")
        return self.write_json(f"{tool}.catalog.json", catalog)

    # --- target-s3-pump -----------------------------------------------------------------
    # Goal (issue #5): >= 100k rows/s to CSV on the local S3 server, flat memory (< 150 MB).
    # "s3-pump": the target alone, fed the tap's RECORD output recorded to a file first (so the
    # number is the target's, not the tap's: the tap's RECORD mode alone is ~80k rows/s here);
    # "s3-pump-pipeline": tap-gitlab-postgres RECORD | target-s3-pump. Both with the target's
    # defaults (validate_records on), uploading to scripts/locals3.py's moto server; rows/s
    # counts from the first spawn to the target's exit, i.e. including the S3 upload.
    S3_BUCKET = "bench-pumps"

    def target_s3_pump(self, tool: str, mode: str) -> Result:
        exe = ROOT / ".venv" / "bin" / "target-s3-pump"
        if not (ROOT / "target-s3-pump").is_dir():
            raise Skip("target-s3-pump/ does not exist (slot: Bench.target_s3_pump)")
        if not exe.exists():
            raise Skip(f"{exe} missing (run `make bootstrap`)")
        try:
            from pgp_testkit.locals3 import CREDENTIALS, LocalS3
        except ImportError as exc:
            raise Skip(f"pgp_testkit.locals3 not importable: {exc}") from None
        s3 = LocalS3(LOCAL / "s3")  # dies with this process
        s3.start()
        try:
            return self._s3_pump_run(tool, mode, exe, s3, CREDENTIALS)
        finally:
            s3.stop()

    def _s3_pump_tap_config(self) -> dict[str, Any]:
        # Only the pump's stream: pgp_row_counts is not a pump (the target would refuse it).
        return self.gitlab_config(row_counts=False)

    def _s3_pump_input(self) -> Path:
        """The tap's RECORD output for the table, recorded once per table (reused)."""
        path = WORK / f"s3-pump-input-{self.expected}.jsonl"
        tag = path.with_suffix(".tag")
        recorded = f"{self.expected} rows, without pgp_row_counts"
        if path.exists() and tag.exists() and tag.read_text() == recorded:
            return path
        tap = self.gitlab_cmd(self._s3_pump_tap_config(), "s3-pump-input-tap")
        print(f"bench: recording the tap's output for target-s3-pump alone: {path}", flush=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out, open(LOGS / "s3-pump-input-tap.log", "wb") as err:
            subprocess.run(tap, stdout=out, stderr=err, cwd=ROOT, env=_clean_env(), check=True)
        tag.write_text(recorded)
        return path

    def _s3_pump_run(
        self, tool: str, mode: str, exe: Path, s3: Any, credentials: dict[str, str]
    ) -> Result:
        s3.reset()
        s3.create_buckets(self.S3_BUCKET)
        stream = "gitlab_db_issues"
        pumps = WORK / "pumps.yml"
        pumps.write_text(
            "pumps:\n"
            f"  - model: {stream}\n"
            "    timestamp_column: null\n"
            "    sensitive: False\n"
            "    owner: '@bench'\n"
        )
        spool = LOCAL / "spool"
        shutil.rmtree(spool, ignore_errors=True)
        spool.mkdir(parents=True)
        target_config = {
            "pumps_file": str(pumps),
            "bucket": self.S3_BUCKET,
            "prefix": "bench",
            "format": "csv",
            "interval_end": "2025-01-01T00:00:00Z",
            "endpoint_url": s3.endpoint_url,
            "region": credentials["AWS_DEFAULT_REGION"],
            "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
            "spool_dir": str(spool),
        }
        target = [str(exe), "--config",
                  str(self.write_json(f"{tool}.target-config.json", target_config))]
        if mode == "alone":
            input_path = self._s3_pump_input()
            res = Result(tool, "target-s3-pump alone on the tap's RECORD output (CSV, local S3)",
                         "ours", expected_rows=self.expected)  # fmt: skip
            stages = [(f"{tool}-target", target)]
        else:
            input_path = None
            tap = self.gitlab_cmd(self._s3_pump_tap_config(), f"{tool}-tap")
            res = Result(tool, "tap-gitlab-postgres RECORD | target-s3-pump (CSV, local S3)",
                         "pipeline", expected_rows=self.expected)  # fmt: skip
            stages = [(f"{tool}-tap", tap), (f"{tool}-target", target)]
        moto_before = _cpu_ticks(s3.pid, with_children=True) / _TICKS
        run = run_pipeline(stages, self.server, stdin_path=input_path)
        moto_cpu = _cpu_ticks(s3.pid, with_children=True) / _TICKS - moto_before
        _check_rc(run)
        # Rows: the marker's count, checked against the CSV lines of every part (minus headers).
        client = s3.client()
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.S3_BUCKET, Prefix=f"bench/{stream}/")
                for o in page.get("Contents", [])]  # fmt: skip
        markers = [k for k in keys if k.endswith("_SUCCESS.json")]
        if len(markers) != 1:
            raise RuntimeError(f"{tool}: expected one _SUCCESS.json marker, found {markers}")
        marker_obj = client.get_object(Bucket=self.S3_BUCKET, Key=markers[0])
        marker = json.loads(marker_obj["Body"].read())
        csv_rows = 0
        for f in marker["files"]:
            body = client.get_object(Bucket=self.S3_BUCKET, Key=f["key"])["Body"]
            while chunk := body.read(1 << 20):
                csv_rows += chunk.count(b"\n")
            csv_rows -= 1  # the header
        self._fill(res, run, int(marker["rows"]))
        if csv_rows != marker["rows"]:
            res.ok = False
            res.error = f"marker says {marker['rows']} rows, the CSV parts hold {csv_rows}"
        target_p = run.procs[-1]
        target_rss = run.per_proc_peak_kb[target_p.name] / 1024
        res.extra.update(
            files=len(marker["files"]),
            csv_bytes=sum(f["bytes"] for f in marker["files"]),
            moto_cpu=round(moto_cpu, 1),
            per_process_peak_rss_mb={
                k: round(v / 1024, 1) for k, v in run.per_proc_peak_kb.items()
            },
            target_peak_rss_mb=round(target_rss, 1),
        )
        cpu = ", ".join(f"{p.name.removeprefix(tool + '-')} {p.cpu:.1f}" for p in run.procs)
        res.notes.append(
            f"CPU s: {cpu}, moto S3 {moto_cpu:.1f}, Postgres {run.pg_cpu:.1f} "
            f"(wall {run.seconds:.1f}); target peak RSS {target_rss:.0f} MB"
        )
        shutil.rmtree(spool, ignore_errors=True)
        return res

    # --- end to end: tap -> MeltanoLabs target-postgres (dev) ---------------------------
    # "e2e": the dev configuration as meltano.yml ships it: the tap with the dev environment's
    # batch_config (parquet files) | target-postgres with meltano.yml's `config` block.
    # "e2e-record": the old local default as the named baseline: RECORD messages | the same
    # target with `use_copy: true` (what meltano.yml shipped before). Both into the bench
    # Postgres' `warehouse` database, rows counted in the warehouse table; rows/s from the
    # first spawn to the last exit.

    def target_postgres_config(self, **overrides: Any) -> dict[str, Any]:
        """meltano.yml's target-postgres `config` + the bench Postgres (database warehouse)."""
        return {**loader_config("target-postgres"), **self.source_config(),
                "database": WAREHOUSE_DB, **overrides}  # fmt: skip

    def shipped_batch_config(self, environment: str, tool: str) -> tuple[dict[str, Any], Path]:
        """``environment``'s batch_config for the tap, its storage root a fresh bench dir."""
        cfg = environment_batch_config(environment)
        batch_dir = LOCAL / "batches" / tool
        cfg["storage"] = {**(cfg.get("storage") or {}), "root": batch_dir.as_uri()}
        shutil.rmtree(batch_dir, ignore_errors=True)
        batch_dir.mkdir(parents=True)
        return cfg, batch_dir

    def _target_cmd(self, tool: str, config: dict[str, Any]) -> tuple[list[str], str]:
        venv = meltano_loader_venv("target-postgres")
        version = installed_version(venv, "meltanolabs-target-postgres")
        cfg = self.write_json(f"{tool}.target-config.json", config)
        return [str(venv / "bin" / "target-postgres"), "--config", str(cfg)], version

    def _warehouse_rows(self) -> int:
        sql = "SELECT count(*) FROM tap_postgres.gitlab_db_issues"
        return int(self.psql(WAREHOUSE_DB, sql=sql))

    def end_to_end(self, tool: str, mode: str) -> Result:
        """tap | target-postgres into the warehouse: ``batch`` (dev) or ``record`` (old)."""
        batch_dir = None
        if mode == "batch":
            target_config = self.target_postgres_config()
            batch_cfg, batch_dir = self.shipped_batch_config("dev", tool)
            tap_config = self.gitlab_config(batch_config=batch_cfg)
            target, version = self._target_cmd(tool, target_config)
            fmt = batch_cfg.get("encoding", {}).get("format", "jsonl")
            label = (f"e2e, dev: tap BATCH {fmt} ({_count(batch_cfg.get('batch_size'))} "
                     f"rows/file) | target-postgres {version}, "
                     f"use_copy {str(target_config.get('use_copy')).lower()}")  # fmt: skip
        else:
            target_config = self.target_postgres_config(use_copy=True)
            tap_config = self.gitlab_config()
            target, version = self._target_cmd(tool, target_config)
            label = (f"e2e, old default: tap RECORD | target-postgres {version}, "
                     "use_copy true")  # fmt: skip
        res = Result(tool, label, "pipeline", expected_rows=self.expected)
        tap = self.gitlab_cmd(tap_config, f"{tool}-tap")
        self.pg.create_database(WAREHOUSE_DB, drop=True)
        try:
            run = run_pipeline([(f"{tool}-tap", tap), (f"{tool}-target", target)], self.server)
            _check_rc(run)
            self._fill(res, run, self._warehouse_rows())
            if batch_dir is not None:
                files = [f for f in batch_dir.iterdir() if f.is_file()]
                res.extra.update(batch_files=len(files),
                                 batch_bytes=sum(f.stat().st_size for f in files))  # fmt: skip
        finally:
            if batch_dir is not None and not self.args.keep_batches:
                shutil.rmtree(batch_dir, ignore_errors=True)
        tap_p, target_p = run.procs
        tap_mb = run.per_proc_peak_kb[tap_p.name] / 1024
        target_mb = run.per_proc_peak_kb[target_p.name] / 1024
        res.extra.update(
            per_process_cpu={p.name: round(p.cpu, 1) for p in run.procs},
            per_process_peak_rss_mb={k: round(v / 1024, 1)
                                     for k, v in run.per_proc_peak_kb.items()},
            per_process_end_s={p.name: round(p.ended - run.t0, 1) for p in run.procs},
            tap_peak_rss_mb=round(tap_mb, 1),
            target_peak_rss_mb=round(target_mb, 1),
            target_config={k: v for k, v in target_config.items()
                           if k not in ("host", "port", "user", "password")},
            tap_batch_config=tap_config.get("batch_config"),
        )  # fmt: skip
        res.notes.append(
            f"CPU s: tap {tap_p.cpu:.1f}, target {target_p.cpu:.1f}, Postgres {run.pg_cpu:.1f} "
            f"(wall {run.seconds:.1f}); the tap exited after {tap_p.ended - run.t0:.1f}s; "
            f"peak RSS tap {tap_mb:.0f} MB, target {target_mb:.0f} MB; rows counted in "
            f"{WAREHOUSE_DB}.tap_postgres.gitlab_db_issues"
        )
        return res

    # --- target-snowflake alone, into the Snowflake emulator (prod) ---------------------
    # Two lines, each into a fresh emulator (tests/snowflake_emulator.py: a fakesnow server on
    # 127.0.0.1, in memory) with database RAW created first: the tap's RECORD output, and its
    # BATCH output with the prod environment's batch_config (arrow). The tap's output is
    # recorded first (messages to a file, batch files in a bench dir), untimed; then the real
    # target-snowflake (Meltano venv, unmodified; only its connection is pointed at the
    # emulator) is timed alone, fed from that file, with meltano.yml's target-snowflake config.
    # Counted: the target's process tree only (CPU user+sys, peak RSS), not the emulator
    # server's work, which stands in for Snowflake's.

    def snowflake_load(self, tool: str) -> list[Result]:
        try:
            from pgp_testkit import snowflake_emulator as emu
        except ImportError as exc:
            raise Skip(f"pgp_testkit.snowflake_emulator not importable: {exc}") from None
        python = emu.TARGET_SNOWFLAKE_PYTHON
        if not python.exists():
            raise Skip(f"{python.relative_to(ROOT)} missing (run `make bootstrap`: "
                       "meltano install)")  # fmt: skip
        version = installed_version(python.parent.parent, "meltanolabs-target-snowflake")
        prod = environment_batch_config("prod")
        out = []
        for mode in ("batch", "record"):
            name = tool if mode == "batch" else f"{tool}-record"
            if mode == "batch":
                what = (f"BATCH {prod.get('encoding', {}).get('format')} "
                        f"(prod, {_count(prod.get('batch_size'))} rows/file)")
            else:
                what = "RECORD"
            res = Result(name, f"target-snowflake {version} alone, {what} -> Snowflake "
                         "emulator (fakesnow; target CPU only)", "stage",
                         expected_rows=self.expected)  # fmt: skip
            if out and self.args.quiet_wait > 0:
                wait_quiet(self.args.quiet_wait)
            try:
                self._snowflake_line(res, emu, mode)
            except Exception as exc:  # one failing line must not hide the other
                res.ok, res.error = False, f"{type(exc).__name__}: {exc}"
                print(f"bench: {name} FAILED: {exc}", flush=True)
            out.append(res)
        return out

    def _snowflake_line(self, res: Result, emu: Any, mode: str) -> None:
        base = LOCAL / "snowflake" / res.tool
        shutil.rmtree(base, ignore_errors=True)
        run_dir, tmp = base / "cwd", base / "tmp"  # the target's cwd and TMPDIR
        run_dir.mkdir(parents=True)
        tmp.mkdir()
        # 1. The tap's output, recorded untimed.
        batch_dir = None
        if mode == "batch":
            batch_cfg, batch_dir = self.shipped_batch_config("prod", res.tool)
            tap_config = self.gitlab_config(batch_config=batch_cfg)
            res.extra["tap_batch_config"] = batch_cfg
        else:
            tap_config = self.gitlab_config()
        messages = base / "tap-output.singer.jsonl"
        tap = self.gitlab_cmd(tap_config, f"{res.tool}-input-tap")
        print(f"bench:   recording the tap's {mode.upper()} output (untimed): {messages}",
              flush=True)  # fmt: skip
        LOGS.mkdir(parents=True, exist_ok=True)
        tap_log = LOGS / f"{res.tool}-input-tap.log"
        with open(messages, "wb") as fh, open(tap_log, "wb") as err:
            rc = subprocess.run(tap, stdout=fh, stderr=err, cwd=ROOT, env=_clean_env(),
                                check=False).returncode  # fmt: skip
        if rc != 0:
            raise RuntimeError(f"recording the tap's output failed (exit {rc}); log {tap_log}:\n"
                               f"{_tail_file(tap_log)}")  # fmt: skip
        res.extra["input_bytes"] = messages.stat().st_size
        if batch_dir is not None:
            files = [f for f in batch_dir.iterdir() if f.is_file()]
            res.extra.update(batch_files=len(files),
                             batch_bytes=sum(f.stat().st_size for f in files))  # fmt: skip
        # 2. The target alone, from that file, into a fresh emulator.
        config = {**loader_config("target-snowflake"), **emu.FAKESNOW_ACCOUNT}
        table = (f"{config['database']}.{config['default_target_schema']}."
                 "gitlab_db_issues").upper()  # fmt: skip
        cfg_file = self.write_json(f"{res.tool}.target-config.json", config)
        try:
            with emu.snowflake_emulator(base / "emulator") as emulator:
                emulator.query(f"CREATE DATABASE IF NOT EXISTS {config['database']}")
                server = _child_with_args("serve", str(emulator.port))
                server_cpu0 = _cpu_ticks(server, with_children=True) / _TICKS if server else 0.0
                cmd = [str(emu.TARGET_SNOWFLAKE_PYTHON), str(emu.SCRIPT), "run-target",
                       "--port", str(emulator.port), "--config", str(cfg_file)]  # fmt: skip
                env = _clean_env({**emu.QUIET_ENV, "TMPDIR": str(tmp)})
                run = run_pipeline([(f"{res.tool}-target", cmd)], self.server,
                                   stdin_path=messages, env=env, cwd=run_dir)  # fmt: skip
                server_cpu = (_cpu_ticks(server, with_children=True) / _TICKS - server_cpu0
                              if server else None)  # fmt: skip
                server_mb = _rss_kb(server) / 1024 if server else None
                _check_rc(run)
                ((count,),) = emulator.query(f"SELECT count(*) FROM {table}")
                # Start-up alone, for reading small runs: the same target on the first
                # SCHEMA message only (imports, login, the table found; no rows).
                schema_only = base / "schema-only.singer.jsonl"
                with open(messages, "rb") as fh:
                    schema_only.write_bytes(next((ln for ln in fh if b'"SCHEMA"' in ln), b""))
                startup = run_pipeline([(f"{res.tool}-target-startup", cmd)], self.server,
                                       stdin_path=schema_only, env=env, cwd=run_dir)  # fmt: skip
                _check_rc(startup)
        finally:
            messages.unlink(missing_ok=True)
            if batch_dir is not None and not self.args.keep_batches:
                shutil.rmtree(batch_dir, ignore_errors=True)
        self._fill(res, run, int(count))
        if server_cpu is not None:  # the emulator is Snowflake's stand-in, not background
            res.background_cores = max(0.0, res.background_cores - server_cpu / run.seconds)
        target_mb = run.per_proc_peak_kb[run.procs[0].name] / 1024
        left = sorted(str(f.relative_to(base)) for d in (run_dir, tmp) for f in d.rglob("*")
                      if f.is_file())  # fmt: skip
        res.extra.update(
            target_cpu_s=round(run.cpu, 2),
            cpu_s_per_1m_rows=round(run.cpu / max(1, int(count)) * 1e6, 2),
            target_startup_cpu_s=round(startup.cpu, 2),
            cpu_s_per_1m_rows_after_startup=round(
                max(0.0, run.cpu - startup.cpu) / max(1, int(count)) * 1e6, 2),
            target_peak_rss_mb=round(target_mb, 1),
            emulator_cpu_s=None if server_cpu is None else round(server_cpu, 1),
            emulator_rss_mb_after=None if server_mb is None else round(server_mb),
            target_files_left=left,
            target_config={k: v for k, v in config.items() if k != "password"},
        )
        res.notes.append(
            "Snowflake's side is the local emulator (fakesnow server, "
            "tests/snowflake_emulator.py), not Snowflake; only the target's process tree is "
            f"counted: CPU {run.cpu:.1f} s = "
            f"{run.cpu / max(1, int(count)) * 1e6:.1f} CPU s per 1M rows, peak RSS "
            f"{target_mb:.0f} MB (the emulator server: CPU {_fmt(server_cpu, '.1f')} s, RSS "
            f"{_fmt(server_mb, '.0f')} MB after the load; not counted, not in bg cores); "
            f"rows counted with SELECT count(*) FROM {table}"
        )
        res.notes.append(
            f"of the target's CPU, start-up (the SCHEMA message alone: imports, login) is "
            f"{startup.cpu:.1f} s; the rows alone: "
            f"{res.extra['cpu_s_per_1m_rows_after_startup']:.1f} CPU s per 1M rows"
        )
        if left:
            res.notes.append(f"files the target left in its cwd/TMPDIR ({base}): {len(left)}, "
                             f"e.g. {left[0]}")  # fmt: skip

    # --- profiling (--profile) ----------------------------------------------------------

    def profile(self, tool: str, mode: str) -> Path:
        """py-spy record of one tap-gitlab-postgres run (output still counted, not timed)."""
        spy = ensure_venv("py-spy") / "bin" / "py-spy"
        out = LOCAL / "profiles" / f"{tool}.{self.rows_wanted}.speedscope.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        if mode.startswith("batch"):
            cfg, batch_dir = self.batch_config(f"{tool}-profile", mode.partition("-")[2] or "jsonl")
            config = self.gitlab_config(batch_config=cfg, row_counts=False)
        else:
            batch_dir = None
            config = self.gitlab_config(fast_records=mode == "record", row_counts=False)
        cmd = [str(spy), "record", "--format", "speedscope", "--rate", "200", "--subprocesses",
               "--output", str(out), "--", *self.gitlab_cmd(config, f"{tool}-profile")]
        res = Result(f"{tool}-profile", f"{tool} under py-spy", "ours",
                     expected_rows=self.expected)  # fmt: skip
        self._singer_run(res, [(f"{tool}-profile", cmd)], batch_dir)
        print(f"bench: profile of {tool}: {out} ({res.rows_per_s or 0:,.0f} rows/s under py-spy)")
        return out


# --------------------------------------------------------------------------- driver

TOOLS: dict[str, tuple[str, Callable[[Bench, str], Result | list[Result]]]] = {
    "copy-binary": ("COPY binary to /dev/null (the limit)",
                    lambda b, t: b.measure_copy(t, "binary")),
    "copy-csv": ("COPY CSV to /dev/null", lambda b, t: b.measure_copy(t, "csv")),
    "pg-json": ("diagnostic: the tap's JSON COPY query alone, through psql",
                lambda b, t: b.measure_pg_json(t)),
    "gitlab-record": ("our tap, RECORD, Postgres-built messages",
                      lambda b, t: b.tap_gitlab(t, "record")),
    "gitlab-record-sdk": ("our tap, RECORD through singer-sdk",
                          lambda b, t: b.tap_gitlab(t, "record-sdk")),
    "gitlab-batch": ("our tap, BATCH jsonl.gz", lambda b, t: b.tap_gitlab(t, "batch")),
    "gitlab-batch-parquet": ("our tap, BATCH parquet (target-postgres)",
                             lambda b, t: b.tap_gitlab(t, "batch-parquet")),
    "gitlab-batch-arrow": ("our tap, BATCH arrow IPC (target-snowflake)",
                           lambda b, t: b.tap_gitlab(t, "batch-arrow")),
    "meltanolabs-record": ("MeltanoLabs tap-postgres 0.10.0, RECORD",
                           lambda b, t: b.tap_meltanolabs(t, "record")),
    "meltanolabs-batch": ("MeltanoLabs tap-postgres 0.10.0, BATCH jsonl.gz",
                          lambda b, t: b.tap_meltanolabs(t, "batch")),
    "pipelinewise": ("pipelinewise-tap-postgres 2.1.x (Python 3.9 venv)",
                     lambda b, t: b.tap_pipelinewise(t)),
    "s3-pump": ("target-s3-pump alone on the tap's recorded RECORD output, CSV to local S3",
                lambda b, t: b.target_s3_pump(t, "alone")),
    "s3-pump-pipeline": ("tap RECORD | target-s3-pump, CSV to local S3",
                         lambda b, t: b.target_s3_pump(t, "pipeline")),
    "e2e": ("end to end, dev config: tap BATCH (dev batch_config) | target-postgres (meltano.yml)",
            lambda b, t: b.end_to_end(t, "batch")),
    "e2e-record": ("end to end, the old default: tap RECORD | target-postgres, use_copy: true",
                   lambda b, t: b.end_to_end(t, "record")),
    "snowflake-load": ("target-snowflake alone into the local Snowflake emulator (fakesnow), "
                       "BATCH arrow (prod batch_config) and RECORD; target CPU only",
                       lambda b, t: b.snowflake_load(t)),
}
DEFAULT_TOOLS = list(TOOLS)
PIPELINES = {"s3-pump-pipeline", "e2e", "e2e-record", "snowflake-load"}


def select_tools(only: str | None, skip: str | None) -> list[str]:
    def expand(spec: str) -> list[str]:
        out = []
        for word in (w.strip() for w in spec.split(",") if w.strip()):
            # A tool's own name selects it alone; otherwise a prefix selects its family.
            matched = [word] if word in TOOLS else [t for t in TOOLS if t.startswith(word + "-")]
            if not matched:
                raise SystemExit(f"bench: unknown tool {word!r}; known: {', '.join(TOOLS)}")
            out += matched
        return out

    chosen = expand(only) if only else list(DEFAULT_TOOLS)
    if skip:
        dropped = set(expand(skip))
        chosen = [t for t in chosen if t not in dropped]
    return list(dict.fromkeys(chosen))


def _median_run(results: list[Result]) -> Result:
    ok = [r for r in results if r.ok and r.seconds]
    if not ok:
        return results[-1]
    by_time = sorted(ok, key=lambda r: r.seconds or 0)
    best = by_time[(len(by_time) - 1) // 2]  # the median (lower middle) run
    if len(results) > 1:
        best.notes.append(
            f"median of {len(results)} runs; rows/s range "
            f"{min(r.rows_per_s or 0 for r in ok):,.0f}-{max(r.rows_per_s or 0 for r in ok):,.0f}; "
            f"RSS max over runs"
        )
        best.peak_rss_mb = max(r.peak_rss_mb or 0 for r in ok)
    return best


def machine() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg_before": os.getloadavg(),
    }


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _first_line(text: str | None, width: int = 120) -> str:
    """The first line of an error, cut to ``width``: the table keeps one line per tool
    (``print_notes`` prints the whole error after it)."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def print_notes(results: list[Result]) -> None:
    for r in results:
        for note in r.notes:
            print(f"note: {r.tool}: {note}")
        if not r.ok and not r.skipped and r.error and r.error != _first_line(r.error):
            print(f"error: {r.tool}: {r.error}")


def _count(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def render(results: list[Result], markdown: bool) -> str:
    peers = [r for r in results if r.kind == "peer" and r.ok and r.rows_per_s]
    best_peer = max(peers, key=lambda r: r.rows_per_s or 0, default=None)
    copy = next((r for r in results if r.tool == "copy-binary" and r.ok), None)
    head = ["tool", "rows", "seconds", "rows/s", "peak RSS MB", "x best peer", "x COPY",
            "CPU s", "CPU s/1M rows", "PG CPU s", "rows/CPU-s", "bg cores", "check"]
    rows = []
    for r in results:
        rps = r.rows_per_s
        if r.skipped:
            rows.append([r.label, *["-"] * (len(head) - 2), f"SKIPPED: {r.skipped}"])
            continue
        vs_peer = rps / best_peer.rows_per_s if rps and best_peer else None
        vs_copy = rps / copy.rows_per_s if rps and copy else None
        check = "exact" if r.ok else f"FAIL: {_first_line(r.error)}"
        rows.append([
            r.label, _fmt(r.rows, ","), _fmt(r.seconds, ".2f"), _fmt(rps, ",.0f"),
            _fmt(r.peak_rss_mb, ".0f"), _fmt(vs_peer, ".2f"), _fmt(vs_copy, ".2f"),
            _fmt(r.cpu_seconds, ".1f"), _fmt(r.cpu_s_per_million, ".1f"),
            _fmt(r.pg_cpu_seconds, ".1f"),
            _fmt(r.rows_per_cpu_s, ",.0f"), _fmt(r.background_cores, ".2f"), check,
        ])  # fmt: skip
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    else:
        widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
        def fmt_row(row: list[str]) -> str:
            return "  ".join(
                c.ljust(w) if i in (0, len(head) - 1) else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )

        lines = [fmt_row(head), fmt_row(["-" * w for w in widths]), *map(fmt_row, rows)]
    if best_peer:
        lines.append(f"\nbest peer: {best_peer.label} ({best_peer.rows_per_s:,.0f} rows/s)")
    return "\n".join(lines)


def goals(results: list[Result], rows: int) -> list[str]:
    by = {r.tool: r for r in results if r.ok}
    peers = [r for r in results if r.kind == "peer" and r.ok and r.rows_per_s]
    pw = by.get("pipelinewise")
    ref = pw or max(peers, key=lambda r: r.rows_per_s or 0, default=None)
    out = []
    if ref:
        # BATCH: every encoding is checked; the goal needs one that the targets accept
        # (parquet for target-postgres, arrow for target-snowflake; jsonl for any).
        batches = ("gitlab-batch", "gitlab-batch-parquet", "gitlab-batch-arrow")
        for tool, factor in (("gitlab-record", 2), *((b, 10) for b in batches)):
            if tool in by:
                ratio = (by[tool].rows_per_s or 0) / (ref.rows_per_s or 1)
                out.append(f"{tool}: {ratio:.1f}x {ref.tool} (goal >= {factor}x): "
                           + ("MET" if ratio >= factor else "MISSED"))  # fmt: skip
    copy = by.get("copy-binary")
    for tool in ("gitlab-batch", "gitlab-batch-parquet", "gitlab-batch-arrow"):
        if tool in by and copy and copy.rows_per_s:
            ratio = (by[tool].rows_per_s or 0) / copy.rows_per_s
            out.append(f"{tool}: {ratio:.2f}x copy-binary (goal >= 0.5x): "
                       + ("MET" if ratio >= 0.5 else "MISSED"))  # fmt: skip
    for tool in ("gitlab-record", "gitlab-record-sdk", "gitlab-batch", "gitlab-batch-parquet",
                 "gitlab-batch-arrow"):  # fmt: skip
        if tool in by:
            mb = by[tool].peak_rss_mb or 0
            out.append(f"{tool}: peak RSS {mb:.0f} MB (goal < 150 MB): "
                       + ("MET" if mb < 150 else "MISSED"))  # fmt: skip
    for tool in ("s3-pump", "s3-pump-pipeline"):
        if tool in by:
            rps = by[tool].rows_per_s or 0
            if tool == "s3-pump":  # the goal is the target's; the pipeline's is reported only
                out.append(f"{tool}: {rps:,.0f} rows/s (goal >= 100k for the target): "
                           + ("MET" if rps >= 100_000 else "MISSED"))  # fmt: skip
            mb = by[tool].extra.get("target_peak_rss_mb")
            if mb is not None:
                out.append(f"{tool}: target peak RSS {mb:.0f} MB (goal < 150 MB, flat: compare "
                           "--rows runs): " + ("MET" if mb < 150 else "MISSED"))  # fmt: skip
    # End to end (the headline): the dev configuration into RAW, and the Snowflake load.
    e2e, baseline = by.get("e2e"), by.get("e2e-record")
    if e2e:
        rps = e2e.rows_per_s or 0
        out.append(f"e2e: {rps:,.0f} rows/s end to end (goal >= 25k): "
                   + ("MET" if rps >= 25_000 else "MISSED"))  # fmt: skip
        mb = e2e.extra.get("target_peak_rss_mb")
        if mb is not None:
            out.append(f"e2e: target-postgres peak RSS {mb:.0f} MB (goal < 300 MB): "
                       + ("MET" if mb < 300 else "MISSED"))  # fmt: skip
        if baseline and baseline.rows_per_s:
            out.append(f"e2e: {rps / baseline.rows_per_s:.1f}x e2e-record (the old default, "
                       f"{baseline.rows_per_s:,.0f} rows/s)")  # fmt: skip
    snow = by.get("snowflake-load")
    if snow:
        per = snow.cpu_s_per_million
        if per is not None:
            out.append(f"snowflake-load BATCH: {per:.1f} target CPU s per 1M rows (goal <= 15; "
                       "the emulator's CPU not counted): "
                       + ("MET" if per <= 15 else "MISSED"))  # fmt: skip
        mb = snow.extra.get("target_peak_rss_mb")
        if mb is not None:
            out.append(f"snowflake-load BATCH: target-snowflake peak RSS {mb:.0f} MB "
                       "(goal < 400 MB): " + ("MET" if mb < 400 else "MISSED"))  # fmt: skip
        record = by.get("snowflake-load-record")
        if per is not None and record and record.cpu_s_per_million:
            out.append(f"snowflake-load: RECORD {record.cpu_s_per_million:.1f} target CPU s per "
                       f"1M rows ({record.cpu_s_per_million / per:.1f}x BATCH)")  # fmt: skip
    # Flat memory: compare with saved results of other row counts.
    for path in sorted(RESULTS.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            other = json.loads(path.read_text())
            if other["rows"] == rows:
                continue
            for r in results:
                o = next((x for x in other["results"] if x["tool"] == r.tool and x["ok"]), None)
                if r.ok and o and r.kind in ("ours", "limit") and r.peak_rss_mb:
                    out.append(
                        f"flat memory {r.tool}: {r.peak_rss_mb:.0f} MB at {rows:,} rows vs "
                        f"{o['peak_rss_mb']:.0f} MB at {other['rows']:,} rows"
                    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run", description="Throughput and memory of Postgres taps, side by side."
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help="rows in the benchmark table (default 1000000)")
    parser.add_argument("--only", help="comma-separated tools (or prefixes: gitlab, copy, ...)")
    parser.add_argument("--skip", help="comma-separated tools to leave out")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per extractor (pipelines run once); the median run is "
                        "reported (default 1)")
    parser.add_argument("--quiet-wait", type=float, default=180, metavar="SECONDS",
                        help="before each tool, wait up to this long until other processes "
                        "use < 0.3 cores (default 180; 0: do not wait)")
    parser.add_argument("--reload", action="store_true",
                        help="reload the table even if it already has --rows rows")
    parser.add_argument("--keep-batches", action="store_true",
                        help="keep BATCH files under .local/bench/batches")
    parser.add_argument("--profile", action="store_true",
                        help="also record a py-spy profile of each tap-gitlab-postgres mode run")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--list", action="store_true", help="list the tools and exit")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="print the table of a saved results file and exit")
    parser.add_argument("--stop", action="store_true", help="stop the bench Postgres at the end")
    args = parser.parse_args(argv)  # fmt: skip

    if args.list:
        for name, (desc, _) in TOOLS.items():
            opt = "" if name in DEFAULT_TOOLS else "  [not in the default set]"
            print(f"{name:20} {desc}{opt}")
        return 0
    if args.render:
        saved = json.loads(args.render.read_text())
        fields = set(Result.__dataclass_fields__)
        results = [Result(**{k: v for k, v in r.items() if k in fields})
                   for r in saved["results"]]  # fmt: skip
        m = saved["machine"]
        print(f"{saved['rows']:,} rows, {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, "
              f"{m['date']}")  # fmt: skip
        print(render(results, args.markdown))
        print_notes(results)
        for line in goals(results, saved["rows"]):
            print(f"goal: {line}")
        return 0
    tools = select_tools(args.only, args.skip)
    bench = Bench(args)
    info = machine()
    print(f"bench: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
          f"load {info['loadavg_before'][0]:.2f}; tools: {', '.join(tools)}",
          flush=True)  # fmt: skip
    bench.setup()
    for tool in tools:
        desc, fn = TOOLS[tool]
        print(f"bench: {tool}: {desc} ...", flush=True)
        runs: list[Result] = []
        extra: list[Result] = []
        # Pipelines (target-bound, minutes each) run once; --repeat is for the extractors.
        repeat = 1 if tool in PIPELINES else max(1, args.repeat)
        for _ in range(repeat):
            if args.quiet_wait > 0:
                wait_quiet(args.quiet_wait)
            try:
                got = fn(bench, tool)
            except Skip as exc:
                runs = [Result(tool, desc, "peer", skipped=str(exc))]
                break
            except Exception as exc:  # one failing tool must not hide the others
                runs.append(Result(tool, desc, "peer", error=f"{type(exc).__name__}: {exc}"))
                print(f"bench: {tool} FAILED: {exc}", flush=True)
                continue
            got_list = got if isinstance(got, list) else [got]
            runs.append(got_list[0])
            extra = got_list[1:]
            r = got_list[0]
            print(f"bench:   {_fmt(r.rows, ',')} rows in {_fmt(r.seconds, '.2f')}s = "
                  f"{_fmt(r.rows_per_s, ',.0f')} rows/s, "
                  f"peak RSS {_fmt(r.peak_rss_mb, '.0f')} MB, "
                  f"background {_fmt(r.background_cores, '.2f')} cores"
                  f"{'' if r.ok else '  FAIL: ' + str(r.error)}", flush=True)  # fmt: skip
            for e in extra:
                print(f"bench:   {e.label}: {_fmt(e.rows, ',')} rows in "
                      f"{_fmt(e.seconds, '.2f')}s = {_fmt(e.rows_per_s, ',.0f')} rows/s",
                      flush=True)  # fmt: skip
        bench.results.append(_median_run(runs))
        bench.results.extend(extra)
    if args.profile:
        for tool, mode in (("gitlab-record", "record"), ("gitlab-record-sdk", "record-sdk"),
                           ("gitlab-batch", "batch"), ("gitlab-batch-parquet", "batch-parquet"),
                           ("gitlab-batch-arrow", "batch-arrow")):  # fmt: skip
            if tool in tools:
                try:
                    bench.profile(tool, mode)
                except Exception as exc:  # a profile is extra: report and go on
                    print(f"bench: profiling {tool} failed: {type(exc).__name__}: {exc}")
    info["loadavg_after"] = os.getloadavg()
    print()
    print(f"{args.rows:,} rows, {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
          f"{info['date']}")  # fmt: skip
    print(render(bench.results, args.markdown))
    print_notes(bench.results)
    for line in goals(bench.results, args.rows):
        print(f"goal: {line}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.rows}.json"
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = {r["tool"]: r for r in json.loads(out.read_text())["results"]}
    merged = {**previous, **{r.tool: {**asdict(r), "rows_per_s": r.rows_per_s}
                             for r in bench.results}}  # fmt: skip
    out.write_text(json.dumps({"rows": args.rows, "machine": info,
                               "results": list(merged.values())}, indent=2))  # fmt: skip
    print(f"\nresults: {out}")
    if args.stop:
        bench.pg.stop()
    failed = [r for r in bench.results if not r.ok and not r.skipped]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
