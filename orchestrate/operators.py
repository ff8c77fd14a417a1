"""One operator factory for both deployments: a step of the plan becomes a BashOperator
running the project's .venv/bin/meltano (local) or a KubernetesPodOperator running the
project's image (production). Only how the command runs differs; the command is the same."""

from __future__ import annotations

import json
import shlex
from typing import Any

from airflow.sdk import BaseOperator

from orchestrate.plan import DBT_POOL, NO_INSTALL, Extract, MeltanoRun
from orchestrate.project import Project
from orchestrate.settings import Resources, Settings

# The run's data interval end: the tap's execution_date (end of incremental windows) and
# the pump's interval_end, so a retry of a run reads and publishes the same interval. A run
# triggered without a logical date (Airflow 3's default for manual runs, e.g. a resync) has
# no data interval: its run_after, fixed for the run as well.
INTERVAL_END = "{{ (data_interval_end | default(dag_run.run_after, true)).isoformat() }}"
# Local runs' catalogs are kept this long (days) for a look after a failure, then deleted.
CATALOG_DAYS = 7


class OperatorFactory:
    def __init__(self, settings: Settings, project: Project) -> None:
        self.settings = settings
        self.project = project

    def extract(
        self, step: Extract, *, pool: str, full_refresh: bool = False, catalog: str | None = None
    ) -> BaseOperator:
        env = {step.execution_date_env: INTERVAL_END}
        if self.settings.executor == "local" and (batches := self._own_batch_folder(step)):
            env[step.batch_config_env] = batches
        argv = [*self.settings.meltano, *step.meltano_args(full_refresh=full_refresh)]
        if catalog:
            argv += ["--catalog", catalog]
        return self._operator(
            step.task_id, argv, env, "extract", pool=pool, before=self._on_retry(step.state_id)
        )

    @property
    def _catalogs(self) -> str:
        return f"{self.settings.root}/.meltano/run/pgp-catalogs"

    def catalog_path(self, extractor: str) -> str | None:
        """Local: where the run's catalog of ``extractor`` goes. Pods share no filesystem:
        each discovers for itself (None)."""
        if self.settings.executor != "local":
            return None
        return f"{self._catalogs}/{{{{ run_id }}}}/{extractor}.json"

    def catalog(self, extractor: str, path: str, *, pool: str) -> BaseOperator:
        """One discovery per extractor and run (a `meltano el` without a catalog runs the
        tap's discovery first, a tap start more, whatever it extracts): the catalog with
        meltano.yml's selection and metadata applied, which the table tasks take as it is
        (`meltano el --catalog`). Runs' catalogs older than CATALOG_DAYS are deleted."""
        argv = [*self.settings.meltano, "invoke", NO_INSTALL, "--dump=catalog", extractor]
        prune = (
            f"find {shlex.quote(self._catalogs)} -mindepth 1 -maxdepth 1 -type d "
            f"-mtime +{CATALOG_DAYS} -exec rm -rf {{}} +"
        )
        return self._operator("catalog", argv, {}, "extract", pool=pool, stdout=path, before=prune)

    def meltano_run(self, step: MeltanoRun, **kwargs: Any) -> BaseOperator:
        argv = [*self.settings.meltano, *step.meltano_args()]
        if step.task_id == "pump":
            env = {"PUMP_INTERVAL_END": INTERVAL_END}
            before = self._on_retry(step.state_id) if step.state_id else None
            return self._operator("pump", argv, env, "pump", before=before, **kwargs)
        return self._operator(step.task_id, argv, {}, "transform", pool=DBT_POOL, **kwargs)

    def _on_retry(self, state_id: str) -> str:
        """Local: a retry first fails the state ID's Meltano runs whose heartbeat stopped
        (a killed try's): Meltano would refuse the state ID for 5 minutes. Pods rely on
        the retry delay (>= 300 s) for the same."""
        argv = [
            str(self.settings.root / ".venv" / "bin" / "python"),
            "-m",
            "orchestrate.stale_runs",
        ]
        if self.settings.env_file:
            argv += ["--env-file", str(self.settings.env_file)]
        command = shlex.join([*argv, state_id])
        return f"{{% if ti.try_number > 1 %}}{command}{{% else %}}true{{% endif %}}"

    def _own_batch_folder(self, step: Extract) -> str | None:
        """Local runs share .meltano/run: each task writes its batch files to a folder of its
        own, because the tap deletes a stream's earlier files (pgp_row_counts is in every
        task) when the stream starts, which could be while another task's loader reads
        them. (Pods have their own filesystem.) None when the extractor sends no batches."""
        config = self.project.setting(step.extractor, "batch_config", self.settings.environment)
        if isinstance(config, str):  # from the plugin's env variable
            config = json.loads(config) if config.strip() else None
        if not config:
            return None
        config = dict(config)
        storage = dict(config.get("storage") or {})
        root = str(storage.get("root") or f"file://{self.settings.root}/.meltano/run/pgp-batches")
        storage["root"] = f"{root.rstrip('/')}/{step.state_id.replace(':', '-')}"
        config["storage"] = storage
        return json.dumps(config)

    def _operator(
        self,
        task_id: str,
        argv: list[str],
        env: dict[str, str],
        kind: str,
        *,
        stdout: str | None = None,  # local: the file the command's output goes to
        before: str | None = None,  # local: a shell command run first
        **kwargs: Any,
    ) -> BaseOperator:
        env = {"MELTANO_ENVIRONMENT": self.settings.environment, **env}
        common = {
            "task_id": task_id,
            "retries": self.settings.retries,
            **kwargs,
        }
        if self.settings.kubernetes is None:
            from airflow.providers.standard.operators.bash import BashOperator

            command = shlex.join(argv)
            if stdout:
                command = f"{command} > {shlex.quote(stdout)}"
            if before:
                command = f"{before} && {command}"
            if stdout:
                command = f"mkdir -p {shlex.quote(stdout.rpartition('/')[0])} && {command}"
            return BashOperator(
                bash_command=command,
                env=env,
                append_env=True,  # the worker's env: LOCALPG_*, MELTANO_DATABASE_URI, ...
                cwd=str(self.settings.root),
                **common,
            )
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
        from kubernetes.client import models as k8s

        pod = self.settings.kubernetes
        resources: Resources = pod.resources[kind]
        return KubernetesPodOperator(
            name=f"pgp-{task_id}".replace("_", "-")[:63],
            namespace=pod.namespace,
            image=pod.image,
            cmds=argv[:1],
            arguments=argv[1:],
            env_vars=env,
            env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=pod.secret))],
            service_account_name=pod.service_account,
            container_resources=k8s.V1ResourceRequirements(
                requests={"cpu": resources.cpu, "memory": resources.memory},
                limits={"memory": resources.memory},
            ),
            get_logs=True,
            on_finish_action="delete_pod",
            **common,
        )
