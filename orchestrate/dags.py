"""The pgp DAGs, built from the plan at parse time (orchestrate/dags/pgp.py loads them).

``pgp``         the pipeline job, one task per manifest table:

    [tap-gitlab-postgres--main.<stream> ...] --> tap-gitlab-postgres--main-deletes -+
    [tap-gitlab-postgres--main-scd.<stream> ...] ----------------------------------+
      --> transform (dbt seed, run) --> trust (dbt's row-count checks) --> pump

    (with PGP_CATALOG_URI, always locally: each extractor's group starts with
    `<extractor>.catalog`, one discovery whose catalog its tables read)

``pgp_resync``  manual: a full refresh of one table (param ``stream``) or of all, then
                transform and trust.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from airflow.sdk import DAG, Param, TaskGroup, task

from orchestrate.operators import OperatorFactory
from orchestrate.plan import Plan
from orchestrate.project import Project
from orchestrate.settings import Settings

START = datetime(2026, 1, 1, tzinfo=UTC)
ALL = "all"


def build(settings: Settings | None = None) -> dict[str, DAG]:
    settings = settings or Settings.from_env()
    project = Project.load(settings.root)
    plan = Plan.build(project, settings.environment, settings.job)
    factory = OperatorFactory(settings, project)
    return {
        "pgp": pipeline_dag(plan, settings, factory),
        "pgp_resync": resync_dag(plan, settings, factory),
    }


def _defaults(settings: Settings) -> dict:
    return {
        "owner": "data",
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
    }


def pipeline_dag(plan: Plan, settings: Settings, factory: OperatorFactory) -> DAG:
    with DAG(
        dag_id="pgp",
        description=f"Meltano job {plan.job} ({plan.environment}), one task per manifest table",
        schedule=plan.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=_defaults(settings),
        tags=["pgp", plan.environment],
    ) as dag:
        extracted = []
        for database in plan.databases:
            groups = {}
            catalogs = {}
            for step in database.extracts:
                uri = factory.catalog_uri(step.extractor)
                if step.extractor not in groups:
                    groups[step.extractor] = TaskGroup(step.extractor)
                    if uri:
                        with groups[step.extractor]:
                            catalogs[step.extractor] = factory.catalog(
                                step.extractor, uri, pool=database.pool
                            )
                with groups[step.extractor]:
                    op = factory.extract(step, pool=database.pool, catalog=uri)
                if uri:
                    catalogs[step.extractor] >> op
            extracted += groups.values()
            for step in database.deletes:
                # pgp's deletes task: after the tables whose key sets it reads.
                deletes = factory.extract(step, pool=database.pool)
                parent = next(
                    p.name for p in factory.project.lineage(step.extractor)[1:] if p.name in groups
                )
                groups[parent] >> deletes
                extracted.append(deletes)
        _after(extracted, plan, factory, pump=True)
    return dag


def resync_dag(plan: Plan, settings: Settings, factory: OperatorFactory) -> DAG:
    streams = list(dict.fromkeys(x.stream for x in plan.extracts if x.stream))
    with DAG(
        dag_id="pgp_resync",
        description="Full refresh of one manifest table (param stream) or all, then dbt",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=_defaults(settings),
        params={"stream": Param(ALL, enum=[ALL, *streams], description="a stream, or all")},
        tags=["pgp", plan.environment, "resync"],
    ) as dag:
        groups: dict[str, TaskGroup] = {}
        task_ids: dict[str, list[str]] = {}  # a stream: its task in every database
        for database in plan.databases:
            for step in database.extracts:
                if step.extractor not in groups:
                    groups[step.extractor] = TaskGroup(step.extractor)
                with groups[step.extractor]:
                    op = factory.extract(step, pool=database.pool, full_refresh=True)
                task_ids.setdefault(str(step.stream), []).append(op.task_id)

        @task.branch
        def choose(params: dict | None = None) -> list[str]:
            wanted = (params or {}).get("stream", ALL)
            return (
                [t for ids in task_ids.values() for t in ids] if wanted == ALL else task_ids[wanted]
            )

        choose() >> list(groups.values())
        _after(list(groups.values()), plan, factory, pump=False)
    return dag


def _after(upstream: list, plan: Plan, factory: OperatorFactory, *, pump: bool) -> None:
    """dbt once every extract is done (skipped ones included), then the trust checks, then
    the pump."""
    chain = []
    if plan.transform:
        chain.append(
            factory.meltano_run(plan.transform, trigger_rule="none_failed_min_one_success")
        )
    if plan.trust:
        chain.append(factory.meltano_run(plan.trust))
    if pump and plan.pump:
        chain.append(factory.meltano_run(plan.pump))
    if not chain:
        return
    upstream >> chain[0]
    for before, after in pairwise(chain):
        before >> after
