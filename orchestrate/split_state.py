"""One-off, before the first run of the `pgp` DAG: split the state of today's `meltano run`
(one state ID per extractor, ``<env>:<extractor>-to-<loader>``) into the DAG's per-table
state IDs (``<env>:pgp-<database>:<stream>``), so no table is copied again.

    .venv/bin/python -m orchestrate.split_state [--environment prod] [--job JOB] [--dry-run]

Uses `meltano state get` / `meltano state set --force` (so the state backend is whatever
the environment configures: the systemdb, or S3 in prod). Refuses, changing nothing, when
a per-table state ID holds anything but what the split would write: the DAG has run, its
state is newer. IDs that hold exactly that are left as they are, so a split that failed
half-way can be run again. Run it while nothing else runs (the schedule paused).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from orchestrate.plan import Extract, Plan, run_state_id
from orchestrate.project import ROOT, Project, ProjectError

MELTANO = ROOT / ".venv" / "bin" / "meltano"


class SplitError(Exception):
    pass


@dataclass(frozen=True)
class Move:
    source_id: str
    target_id: str
    state: dict | None  # None: no bookmark; the DAG's first run copies the table in full


def meltano(*args: str) -> str:
    env_file = os.environ.get("PGP_MELTANO_ENV_FILE")
    cmd = [str(MELTANO), *(["--env-file", env_file] if env_file else []), "--log-level=warning"]
    proc = subprocess.run(
        [*cmd, *args], cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise SplitError(f"meltano {args[0]} {args[1]} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def combined_id(step: Extract) -> str:
    """The state ID of `meltano run <extractor> <loader>` and of jobs running that pair."""
    return run_state_id(step.environment, step.extractor, step.loader)


def stored(state_id: str) -> dict:
    out = meltano("state", "get", state_id).strip()
    return json.loads(out) if out else {}


def steps_of(plan: Plan) -> list[Extract]:
    return [x for db in plan.databases for x in (*db.extracts, *db.deletes)]


def plan_moves(plan: Plan) -> list[Move]:
    steps = steps_of(plan)
    combined: dict[str, dict] = {}
    for source in sorted({combined_id(x) for x in steps}):
        combined[source] = stored(source)
    moves = []
    for step in steps:
        state = combined[combined_id(step)]
        bookmarks = state.get("singer_state", {}).get("bookmarks", {})
        if step.stream is None:  # the deletes pass: its extractor's whole state
            moves.append(Move(combined_id(step), step.state_id, state or None))
        elif step.stream in bookmarks:
            new = {"singer_state": {"bookmarks": {step.stream: bookmarks[step.stream]}}}
            moves.append(Move(combined_id(step), step.state_id, new))
        else:
            moves.append(Move(combined_id(step), step.state_id, None))
    return moves


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orchestrate.split_state", description=__doc__)
    parser.add_argument("--environment", default=os.environ.get("MELTANO_ENVIRONMENT", "dev"))
    parser.add_argument("--job", help="the pipeline job (default pipeline / pipeline-<env>)")
    parser.add_argument("--dry-run", action="store_true", help="print, change nothing")
    args = parser.parse_args(argv)
    try:
        plan = Plan.build(Project.load(), args.environment, args.job)
        moves = plan_moves(plan)
        planned = {m.target_id: m.state for m in moves}
        listed = meltano("state", "list", "--pattern", f"{args.environment}:pgp-*").split()
        existing = planned.keys() & set(listed)
        done = {i for i in existing if planned[i] is not None and stored(i) == planned[i]}
        clash = sorted(existing - done)
        if clash:
            raise SplitError(
                f"per-table state already exists ({', '.join(clash)}): the DAG has run, "
                "nothing changed"
            )
        for move in moves:
            if move.state is None:
                print(f"{move.target_id}: no bookmark in {move.source_id}: full copy on first run")
            elif move.target_id in done:
                print(f"{move.target_id}: already split from {move.source_id}")
            else:
                print(f"{move.target_id} <- {move.source_id}")
                if not args.dry_run:
                    meltano("state", "set", "--force", move.target_id, json.dumps(move.state))
    except (ProjectError, SplitError) as exc:
        print(f"split_state: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
