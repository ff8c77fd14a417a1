"""What the pgp DAG runs, derived from the Meltano project: the environment's pipeline job
(`pipeline` in dev, `pipeline-<env>` elsewhere) split into one step per manifest table.

    job `pipeline`:  tap-gitlab-postgres--main target-postgres      -> one extract per table
                     tap-gitlab-postgres--main-scd target-postgres  -> one extract per table
                     dbt-postgres:seed dbt-postgres:run dbt-postgres:trust
                                                  -> transform (seed, run), then trust
                     tap-pumps target-s3-pump     -> pump
    + every pgp extractor with `deletes_pass: true` that inherits from an extractor of the
      job: the deletes pass, after that extractor's tables.

Each table's extract has its own Meltano state ID, ``<env>:pgp-<database>:<stream>``, so
tables run in parallel (`meltano el --state-id ... --select <stream>`) and resync alone.
No Airflow import here: the tests and the state-split command use it from the project venv.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrate.project import Project, ProjectError, env_var, manifest_streams

ROW_COUNTS_STREAM = "pgp_row_counts"  # the tap's row counts for dbt's trust checks
DELETES = "deletes"
# Tasks run where the plugins are installed already (the image, bootstrap's .venv). Meltano's
# default checks every plugin's venv first (~1.7 s a command) and would pip install a stale one.
NO_INSTALL = "--no-install"
# One dbt at a time across `pgp` and `pgp_resync`: both build the same models (and locally
# share dbt's target folder).
DBT_POOL = "pgp-dbt"


def run_state_id(environment: str, extractor: str, loader: str) -> str:
    """Meltano's state ID of `meltano run <extractor> <loader>` in ``environment``."""
    return f"{environment}:{extractor}-to-{loader}"


_STATE_ID = re.compile(r"[a-z0-9_-]+:pgp-[a-z0-9_]+:[a-z0-9_]+")


@dataclass(frozen=True)
class Extract:
    """`meltano el` of one extractor into its loader: one manifest table, or (stream None)
    the extractor's own selection (the deletes pass)."""

    environment: str
    database: str
    extractor: str
    loader: str
    stream: str | None
    follows: str | None = None  # the deletes pass: the extractor whose tables go first

    @property
    def state_id(self) -> str:
        return f"{self.environment}:pgp-{self.database}:{self.stream or DELETES}"

    @property
    def task_id(self) -> str:
        return self.stream or self.extractor

    @property
    def group_id(self) -> str | None:
        """The TaskGroup of a table's task: its extractor (tap-gitlab-postgres--main ...)."""
        return self.extractor if self.stream else None

    @property
    def dag_task_id(self) -> str:
        """The task's ID in the DAG (TaskGroup prefix included)."""
        return f"{self.group_id}.{self.task_id}" if self.group_id else self.task_id

    def meltano_args(self, *, full_refresh: bool = False) -> list[str]:
        args = ["el", NO_INSTALL, self.extractor, self.loader, "--state-id", self.state_id]
        if full_refresh:
            args.append("--full-refresh")
        if self.stream:
            # The row counts report on the streams of the same run (dbt's trust checks).
            args += ["--select", self.stream, "--select", ROW_COUNTS_STREAM]
        return args

    @property
    def execution_date_env(self) -> str:
        return env_var(self.extractor, "execution_date")

    @property
    def batch_config_env(self) -> str:
        return env_var(self.extractor, "batch_config")


@dataclass(frozen=True)
class MeltanoRun:
    """A `meltano run` of some blocks (dbt commands, the pump)."""

    task_id: str  # transform, trust or pump
    blocks: tuple[str, ...]
    state_id: str | None = None  # the pump's `<env>:<tap>-to-<target>`; dbt has none

    def meltano_args(self) -> list[str]:
        return ["run", NO_INSTALL, *self.blocks]


@dataclass(frozen=True)
class Database:
    name: str  # database_type: main, ci, ...
    extracts: tuple[Extract, ...]  # one per manifest table
    deletes: tuple[Extract, ...]  # after the extracts of the extractor they inherit from

    @property
    def pool(self) -> str:
        return f"pgp-{self.name}"


@dataclass(frozen=True)
class Plan:
    environment: str
    job: str
    schedule: str | None
    databases: tuple[Database, ...]
    transform: MeltanoRun | None
    trust: MeltanoRun | None
    pump: MeltanoRun | None

    @property
    def extracts(self) -> list[Extract]:
        return [x for db in self.databases for x in db.extracts]

    @classmethod
    def build(cls, project: Project, environment: str, job: str | None = None) -> Plan:
        """``job``: a job of meltano.yml, or several separated by commas (their tasks in
        turn); default `pipeline` (dev) or `pipeline-<env>`."""
        job_name = job or ("pipeline" if environment == "dev" else f"pipeline-{environment}")
        if environment not in project.environments:
            raise ProjectError(f"{project.root / 'meltano.yml'}: no environment '{environment}'")
        where = f"{project.root / 'meltano.yml'}: job '{job_name}'"
        pairs: list[tuple[str, str]] = []
        utility_blocks: list[str] = []
        tasks = [t for name in job_name.split(",") for t in project.job(name.strip()).tasks]
        for task in tasks:
            blocks = list(task)
            while blocks:
                block = blocks.pop(0)
                plugin = project.plugin(block.split(":")[0])
                if plugin.kind == "extractors":
                    if not blocks or project.plugin(blocks[0]).kind != "loaders":
                        raise ProjectError(f"{where}: extractor '{block}' has no loader after it")
                    pairs.append((block, blocks.pop(0)))
                elif plugin.kind == "utilities":
                    utility_blocks.append(block)
                else:
                    raise ProjectError(f"{where}: cannot orchestrate '{block}' ({plugin.kind})")

        by_db: dict[str, list[Extract]] = {}
        deletes: dict[str, list[Extract]] = {}
        pumps = [(x, loader) for x, loader in pairs if not project.is_pgp_extractor(x)]
        for extractor, loader in pairs:
            if not project.is_pgp_extractor(extractor):
                continue
            # Unset: the tap keeps every table; "main" still names the state IDs and pool.
            database_type = str(project.setting(extractor, "database_type", environment) or "")
            database_type = database_type.strip() or None
            database = database_type or "main"
            path = project.setting(extractor, "manifest_path", environment)
            if not path:
                raise ProjectError(f"{where}: extractor '{extractor}' has no manifest_path")
            by_db.setdefault(database, []).extend(
                Extract(environment, database, extractor, loader, stream)
                # Meltano runs the tap in the project root: a relative path is from there.
                for stream in manifest_streams(project.root / path, database_type)
            )
            deletes.setdefault(database, []).extend(
                Extract(environment, database, heir, loader, None, follows=extractor)
                for heir in project.heirs(extractor)
                if _truthy(project.setting(heir, "deletes_pass", environment))
            )
        if not by_db:
            raise ProjectError(f"{where}: no tap-gitlab-postgres extractor")
        if len(pumps) > 1:
            raise ProjectError(f"{where}: more than one pump ({pumps})")

        trust = [b for b in utility_blocks if b.split(":", 1)[-1] == "trust"]
        transform = [b for b in utility_blocks if b not in trust]
        plan = cls(
            environment=environment,
            job=job_name,
            schedule=project.schedules.get(job_name),
            databases=tuple(
                Database(db, tuple(xs), tuple(deletes.get(db, ()))) for db, xs in by_db.items()
            ),
            transform=MeltanoRun("transform", tuple(transform)) if transform else None,
            trust=MeltanoRun("trust", tuple(trust)) if trust else None,
            pump=(
                MeltanoRun("pump", pumps[0], run_state_id(environment, *pumps[0]))
                if pumps
                else None
            ),
        )
        plan.check()
        return plan

    def check(self) -> None:
        """State IDs unique and well formed (environment, database and stream names that
        Meltano and the tap accept)."""
        ids = [x.state_id for db in self.databases for x in (*db.extracts, *db.deletes)]
        for state_id in ids:
            if not _STATE_ID.fullmatch(state_id):
                raise ProjectError(f"state ID '{state_id}' is not <env>:pgp-<database>:<stream>")
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ProjectError(f"state IDs used by two tables: {', '.join(duplicates)}")


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes", "on"}
