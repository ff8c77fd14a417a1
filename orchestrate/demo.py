"""`make orchestrate-demo`: the `pgp` DAG on the demo source, tables in parallel, then dbt,
the trust checks and the pump, with a summary.

    .venv/bin/python -m orchestrate.demo [--workers N] [--reset] [--rows N] [--no-touch]

It shares `make demo`'s Postgres cluster (.local/pg), demo source (gitlab_demo) and local
S3, but loads its own warehouse database (warehouse_orchestrated) and keeps its own Meltano
state and Airflow home in .local/orchestrate: the two demos never see each other's state.
The first run copies every table; later runs first touch the source (as `make demo` does)
and run incrementally.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from orchestrate.local import (
    DagRun,
    LocalAirflow,
    OrchestrateError,
    demo_source,
    meltano_sandbox,
)
from orchestrate.plan import Plan
from orchestrate.project import ROOT, Project, ProjectError

LOCAL = ROOT / ".local"
HOME = LOCAL / "orchestrate"
SOURCE_DB = "gitlab_demo"  # make demo's
WAREHOUSE_DB = "warehouse_orchestrated"


def say(msg: str = "") -> None:
    print(msg, flush=True)


def exists(pg, name: str) -> bool:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        return conn.execute(query, (name,)).fetchone() is not None


def raw_rows(dsn: str, stream: str, since: float = 0) -> int | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            return conn.execute(
                sql.SQL("SELECT count(*) FROM tap_postgres.{} WHERE _uploaded_at >= %s").format(
                    sql.Identifier(stream)
                ),
                (since,),
            ).fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return None


def summary(
    run: DagRun, plan: Plan, warehouse: str, started: float, mode: str, workers: int
) -> None:
    say(f"\npgp DAG ({mode}): {run.state} in {run.seconds:.0f} s (`airflow dags test`)\n")
    header = f"  {'task':<64} {'state':<8} {'tries':>5} {'seconds':>8} {'moved':>8} {'in RAW':>8}"
    say(header)
    say("  " + "-" * (len(header) - 2))
    extract_seconds = 0.0
    for step in [x for db in plan.databases for x in (*db.extracts, *db.deletes)]:
        task_id = step.dag_task_id
        task = run.tasks.get(task_id)
        if task is None:
            continue
        extract_seconds += task.seconds
        moved = total = None
        if step.stream:
            moved, total = (
                raw_rows(warehouse, step.stream, started),
                raw_rows(warehouse, step.stream),
            )
        cells = ["-" if v is None else f"{v:,}" for v in (moved, total)]
        say(
            f"  {task_id:<64} {task.state:<8} {task.try_number:>5} {task.seconds:>8.0f} "
            f"{cells[0]:>8} {cells[1]:>8}"
        )
    for name in ("transform", "trust", "pump"):
        if name in run.tasks:
            task = run.tasks[name]
            say(f"  {name:<64} {task.state:<8} {task.try_number:>5} {task.seconds:>8.0f}")
    say("  " + "-" * (len(header) - 2))
    say(
        f"  extract tasks: {extract_seconds:.0f} s summed over tasks, run {workers} "
        "at a time (pool pgp-main)"
    )
    say("  moved: rows appended to RAW by this run; in RAW: all rows of the stream's table")


def run(args: argparse.Namespace) -> int:
    demo_source()  # puts scripts/ on sys.path, where `make demo`'s servers live
    from localpg import LocalPostgres
    from locals3 import LocalS3

    project = Project.load()
    pg = LocalPostgres(LOCAL / "pg").start()
    say(f"==> Postgres {pg.host}:{pg.port} (make demo's cluster, .local/pg)")
    s3 = LocalS3(LOCAL / "locals3", detach=True).start()
    s3.create_buckets(str(project.setting("target-s3-pump", "bucket", "dev")))
    say(f"==> local S3 {s3.endpoint_url}")

    source = pg.dsn(SOURCE_DB)
    fresh = args.reset or not exists(pg, SOURCE_DB) or not exists(pg, WAREHOUSE_DB)
    if args.reset or not exists(pg, SOURCE_DB):
        pg.create_database(SOURCE_DB, drop=True)
        counts = demo_source().create(source, rows=args.rows)
        say(f"==> demo source '{SOURCE_DB}': {sum(counts.values()):,} rows")
    if fresh:
        pg.create_database(WAREHOUSE_DB, drop=True)
        shutil.rmtree(HOME / ".meltano", ignore_errors=True)  # new warehouse, no state
        mode = "first run: every table copied"
    elif args.no_touch:
        mode = "incremental, source untouched"
    else:
        touched = demo_source().touch(source)
        say(f"==> touched the source: {sum(touched.values()):,} rows inserted or changed")
        mode = "incremental after a touch of the source"

    env = meltano_sandbox(HOME, pg, SOURCE_DB, WAREHOUSE_DB)
    env["LOCALS3_ENDPOINT_URL"] = s3.endpoint_url
    plan = Plan.build(project, "dev")
    airflow = LocalAirflow(HOME / "airflow", env, parallelism=args.workers)
    say(f"==> Airflow home {airflow.home} (SQLite), pools: pgp-main = {args.workers}")
    airflow.setup({db.pool: args.workers for db in plan.databases})
    started = time.time()
    with airflow.execution_api():
        say(f"==> airflow dags test --use-executor pgp ({mode}; log {airflow.log_dir})")
        result = airflow.dags_test("pgp", datetime.now(UTC))
    summary(result, plan, pg.dsn(WAREHOUSE_DB), started, mode, args.workers)
    say(f"\n  warehouse  {pg.dsn(WAREHOUSE_DB).replace(pg.password, '***')}")
    say(f"  logs       {airflow.log_dir}/dag_id=pgp/  and  {result.log}")
    say(f"  state      MELTANO_DATABASE_URI=sqlite:///{HOME}/.meltano/meltano.db")
    if result.failed():
        say(f"\nfailed tasks: {', '.join(result.failed())}")
        return 1
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orchestrate.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="parallel tasks (default 4)")
    parser.add_argument("--reset", action="store_true", help="new source, warehouse and state")
    parser.add_argument("--rows", type=int, default=100_000, help="size of a new source")
    parser.add_argument("--no-touch", action="store_true", help="don't change the source first")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ProjectError, OrchestrateError) as exc:
        print(f"orchestrate-demo: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
