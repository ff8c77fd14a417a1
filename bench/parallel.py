"""The orchestrated full load against today's single `meltano run`, same data, one run each.

    .venv/bin/python bench/parallel.py [--rows 100000] [--workers N]   (needs make airflow-venv)

On a throwaway Postgres (.local/bench/parallel/pg): the demo source (scripts/demo_source.py,
``--rows``), then two fresh warehouses loaded with every table of both extractors:

  serial  `meltano run el-main el-main-scd` (one process, the tables one after another);
  dag     the `pgp` DAG on the same jobs (PGP_PIPELINE_JOB=el-main,el-main-scd): one
          discovery per extractor, then one `meltano el` per table, ``--workers`` at a
          time (pool and executor), through `airflow dags test --use-executor`.

Both warehouses must hold the same row count per table. Printed: both wall times and the
CPU seconds the whole machine spent in each (loaders, tap, Meltano, Airflow, Postgres), the
speed-up, the ceiling on ``--workers`` cores (the serial run already keeps more than one core
busy: the tap, the loader and Postgres overlap), the CPU each table task adds, each task's
time, and the projection for N workers from those times (the discoveries, then the tables,
each longest-first onto N workers, plus the DAG's fixed cost), assuming a core per worker.
Results also in .local/bench/parallel/results.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench import busy_cpu_seconds  # noqa: E402
from orchestrate.local import LocalAirflow, demo_source, meltano_sandbox  # noqa: E402
from orchestrate.plan import Plan  # noqa: E402
from orchestrate.project import Project  # noqa: E402

WORK = ROOT / ".local" / "bench" / "parallel"
JOBS = "el-main,el-main-scd"


def raw_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'tap_postgres' ORDER BY 1"
            )
        ]
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM tap_postgres.{}").format(sql.Identifier(t))
            ).fetchone()[0]
            for t in tables
        }


def makespan(durations: list[float], workers: int) -> float:
    """Longest task first onto the least busy worker."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/parallel.py", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)

    demo_source()  # scripts/ on sys.path
    from localpg import LocalPostgres

    shutil.rmtree(WORK / "serial", ignore_errors=True)
    shutil.rmtree(WORK / "dag", ignore_errors=True)
    pg = LocalPostgres(WORK / "pg").start()
    try:
        source = pg.create_database("bench_source", drop=True)
        counts = demo_source().create(source, rows=args.rows)
        print(f"source: {sum(counts.values()):,} rows in {len(counts)} tables", flush=True)
        results: dict = {"rows": sum(counts.values()), "workers": args.workers}

        # serial: today's single meltano run
        pg.create_database("wh_serial", drop=True)
        env = meltano_sandbox(WORK / "serial", pg, "bench_source", "wh_serial")
        run_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_"))},
            **env,
        }
        meltano = [str(ROOT / ".venv/bin/meltano"), "--env-file", env["PGP_MELTANO_ENV_FILE"]]
        started, cpu = time.monotonic(), busy_cpu_seconds()
        subprocess.run(
            [*meltano, "--environment=dev", "run", *JOBS.split(",")],
            cwd=ROOT,
            env=run_env,
            check=True,
            capture_output=True,
        )
        results["serial_seconds"] = time.monotonic() - started
        results["serial_cpu_seconds"] = busy_cpu_seconds() - cpu
        print(
            f"serial `meltano run {JOBS.replace(',', ' ')}`: {results['serial_seconds']:.0f} s, "
            f"{results['serial_cpu_seconds']:.0f} CPU s "
            f"({results['serial_cpu_seconds'] / results['serial_seconds']:.2f} cores busy)"
        )

        # dag: one task per table
        pg.create_database("wh_dag", drop=True)
        env = meltano_sandbox(WORK / "dag", pg, "bench_source", "wh_dag")
        # The same work as serial: no deletes pass (the jobs' own runs have none).
        env.update(
            PGP_PIPELINE_JOB=JOBS,
            PGP_RETRIES="0",
            TAP_GITLAB_POSTGRES__MAIN_DELETES_DELETES_PASS="false",
        )
        plan = Plan.build(Project.load(), "dev", JOBS)
        airflow = LocalAirflow(WORK / "dag" / "airflow", env, parallelism=args.workers)
        airflow.setup({db.pool: args.workers for db in plan.databases})
        with airflow.execution_api():
            cpu = busy_cpu_seconds()
            run = airflow.dags_test("pgp", datetime.now(UTC))
            dag_cpu = busy_cpu_seconds() - cpu
        if run.failed():
            print(f"dag run failed: {run.failed()} (log {run.log})", file=sys.stderr)
            return 1
        tasks = list(run.tasks.values())
        span = (max(t.ended for t in tasks) - min(t.started for t in tasks)).total_seconds()
        # Each extractor's discovery comes before its tables: a step of its own.
        discoveries = [t.seconds for t in tasks if t.task_id.endswith(".catalog")]
        durations = [t.seconds for t in tasks if not t.task_id.endswith(".catalog")]
        results.update(
            dag_seconds=run.seconds,
            dag_cpu_seconds=dag_cpu,
            dag_task_span_seconds=span,
            task_seconds={t.task_id: t.seconds for t in tasks},
        )
        fixed = run.seconds - span  # parsing, the run's start and end: paid once per run
        results["projection_seconds"] = {
            n: fixed + makespan(discoveries, n) + makespan(durations, n)
            for n in (1, 2, 4, 8, 16, 32)
        }

        serial, dag = raw_counts(pg.dsn("wh_serial")), raw_counts(pg.dsn("wh_dag"))
        results["same_rows"] = serial == dag
        print(
            f"dag `pgp` ({len(tasks)} tasks, {args.workers} workers): {run.seconds:.0f} s, "
            f"{dag_cpu:.0f} CPU s (tasks from first start to last end: {span:.0f} s)"
        )
        # Perfect parallelism with no per-task cost keeps every core busy with the serial
        # run's CPU: the serial run's busy cores set how much faster the DAG can be.
        ceiling = min(args.workers, os.cpu_count() or 1) * results["serial_seconds"]
        ceiling /= results["serial_cpu_seconds"]
        per_task = (dag_cpu - results["serial_cpu_seconds"]) / len(tasks)
        results.update(ceiling=ceiling, added_cpu_seconds_per_task=per_task)
        print(
            f"speed-up: {results['serial_seconds'] / run.seconds:.2f}x "
            f"(tasks only: {results['serial_seconds'] / span:.2f}x; ceiling on "
            f"{args.workers} workers: {ceiling:.2f}x); each task adds {per_task:.1f} CPU s"
        )
        print(f"same rows per RAW table in both warehouses: {results['same_rows']}")
        for task in sorted(tasks, key=lambda t: -t.seconds):
            print(f"  {task.task_id:<64} {task.seconds:6.0f} s")
        print(f"projection, a core per worker (fixed cost {fixed:.0f} s):")
        for n, seconds in results["projection_seconds"].items():
            print(f"  {n:>3} workers  {seconds:6.0f} s")
        WORK.mkdir(parents=True, exist_ok=True)
        (WORK / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return 0 if results["same_rows"] else 1
    finally:
        pg.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
