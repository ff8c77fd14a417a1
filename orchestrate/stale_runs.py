"""Before a local task's retry: fail the Meltano runs of its state ID whose heartbeat has
stopped, so the retry needs no `--force` and Meltano's guard against two live runs of one
state ID stays whole.

    .venv/bin/python -m orchestrate.stale_runs [--env-file FILE] STATE_ID

Meltano writes a running job's heartbeat every second, but counts the job dead only after
5 minutes without one, and refuses the state ID until then. A try killed mid-load (OOM,
SIGKILL) leaves such a job; this fails it once its heartbeat is DEAD_AFTER old. A run still
beating (e.g. a `meltano el` orphaned by a killed task process, still loading) is left as
it is, and Meltano refuses the retry. Runs in the project venv (Meltano's own job model).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from meltano.core.db import project_engine
from meltano.core.job import JobFinder
from meltano.core.project import Project

DEAD_AFTER = timedelta(seconds=30)


def fail_dead_runs(state_id: str, env_file: Path | None = None) -> int:
    """Fail the state ID's running jobs without a heartbeat for DEAD_AFTER; how many."""
    project = Project.find(dotenv_file=env_file)
    _, make_session = project_engine(project)
    now = datetime.now(UTC)
    failed = 0
    with make_session() as session:
        for job in JobFinder(state_id).running(session):
            beat = job.last_heartbeat_at or job.started_at
            if beat.tzinfo is None:
                beat = beat.replace(tzinfo=UTC)
            if now - beat > DEAD_AFTER:
                job.fail(f"No heartbeat for {DEAD_AFTER.seconds} s before a retry of the task.")
                job.save(session)
                failed += 1
    return failed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orchestrate.stale_runs", description=__doc__)
    parser.add_argument("state_id")
    parser.add_argument("--env-file", type=Path)
    args = parser.parse_args(argv)
    failed = fail_dead_runs(args.state_id, args.env_file)
    print(f"stale_runs: {args.state_id}: {failed} run(s) without a heartbeat marked failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
