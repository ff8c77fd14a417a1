"""One operator factory for both deployments: a step of the plan becomes a BashOperator
running the project's .venv/bin/meltano (local) or a KubernetesPodOperator running the
project's image (production). Only how the command runs differs; the command is the same."""

from __future__ import annotations

import json
import shlex
from typing import Any

from airflow.sdk import BaseOperator

from orchestrate.plan import DBT_POOL, NO_INSTALL, Extract, MeltanoRun
from orchestrate.project import Project, ProjectError
from orchestrate.settings import Resources, Settings

# The run's data interval end: the tap's execution_date (end of incremental windows) and
# the pump's interval_end, so a retry of a run reads and publishes the same interval. A run
# triggered without a logical date (Airflow 3's default for manual runs, e.g. a resync) has
# no data interval: its run_after, fixed for the run as well.
INTERVAL_END = "{{ (data_interval_end | default(dag_run.run_after, true)).isoformat() }}"
# A task's copy of its run's catalog: a temp file, removed when the script ends.
CATALOG_FILE = """catalog="$(mktemp)" && trap 'rm -f "$catalog"' EXIT"""


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
        meltano = shlex.join(
            [*self.settings.meltano, *step.meltano_args(full_refresh=full_refresh)]
        )
        steps = []
        if catalog:
            steps += [CATALOG_FILE, self._catalogs("get", shlex.quote(catalog), '"$catalog"')]
            meltano += ' --catalog "$catalog"'
        if self.settings.executor == "local":
            steps.append(self._on_retry(step.state_id))
        return self._operator(step.task_id, [*steps, meltano], env, "extract", pool=pool)

    def catalog_uri(self, extractor: str) -> str | None:
        """Where the run's catalog of ``extractor`` goes (PGP_CATALOG_URI); None: each table
        task discovers for itself."""
        if not self.settings.catalogs:
            return None
        return f"{self.settings.catalogs}/{{{{ run_id }}}}/{extractor}.json"

    def catalog(self, extractor: str, uri: str, *, pool: str) -> BaseOperator:
        """One discovery per extractor and run (a `meltano el` without a catalog runs the
        tap's discovery first, a tap start more, whatever it extracts): the catalog with
        meltano.yml's selection and metadata applied, which the table tasks take as it is
        (`meltano el --catalog`)."""
        dump = shlex.join(
            [*self.settings.meltano, "invoke", NO_INSTALL, "--dump=catalog", extractor]
        )
        steps = [
            CATALOG_FILE,
            f'{dump} > "$catalog"',
            self._catalogs("put", '"$catalog"', shlex.quote(uri)),
        ]
        return self._operator("catalog", steps, {}, "extract", pool=pool)

    def _catalogs(self, action: str, source: str, target: str) -> str:
        python = shlex.quote(self.settings.python)
        return f"{python} -m orchestrate.catalogs {action} {source} {target}"

    def meltano_run(self, step: MeltanoRun, **kwargs: Any) -> BaseOperator:
        steps = [shlex.join([*self.settings.meltano, *step.meltano_args()])]
        if step.task_id == "pump":
            if self.settings.executor == "local" and step.state_id:
                steps.insert(0, self._on_retry(step.state_id))
            env = {"PUMP_INTERVAL_END": INTERVAL_END}
            return self._operator("pump", steps, env, "pump", **kwargs)
        return self._operator(step.task_id, steps, {}, "transform", pool=DBT_POOL, **kwargs)

    def _on_retry(self, state_id: str) -> str:
        """Local: a retry first fails the state ID's Meltano runs whose heartbeat stopped
        (a killed try's): Meltano would refuse the state ID for 5 minutes. Pods rely on
        the retry delay (>= 300 s) for the same."""
        stale_runs = [self.settings.python, "-m", "orchestrate.stale_runs"]
        command = shlex.join([*stale_runs, *self.settings.env_file_args, state_id])
        return f"{{% if ti.try_number > 1 %}}{command}{{% else %}}true{{% endif %}}"

    def _own_batch_folder(self, step: Extract) -> str | None:
        """Local runs share .meltano/run: each task writes its batch files to a folder of its
        own, because the tap deletes a stream's earlier files (pgp_row_counts is in every
        task) when the stream starts, which could be while another task's loader reads
        them. (Pods have their own filesystem.) None when the extractor sends no batches."""
        config = self.project.setting(step.extractor, "batch_config", self.settings.environment)
        if isinstance(config, str):  # from the plugin's env variable
            try:
                config = json.loads(config) if config.strip() else None
            except json.JSONDecodeError as exc:
                raise ProjectError(f"{step.batch_config_env}: not JSON: {exc}") from None
        if not config:
            return None
        config = dict(config)
        storage = dict(config.get("storage") or {})
        root = str(storage.get("root") or f"file://{self.settings.root}/.meltano/run/pgp-batches")
        storage["root"] = f"{root.rstrip('/')}/{step.state_id.replace(':', '-')}"
        config["storage"] = storage
        return json.dumps(config)

    def _operator(
        self, task_id: str, steps: list[str], env: dict[str, str], kind: str, **kwargs: Any
    ) -> BaseOperator:
        """``steps``: shell commands run in turn, each only if the one before succeeded."""
        env = {"MELTANO_ENVIRONMENT": self.settings.environment, **env}
        common = {
            "task_id": task_id,
            "retries": self.settings.retries,
            **kwargs,
        }
        script = " && ".join(steps)
        if self.settings.kubernetes is None:
            from airflow.providers.standard.operators.bash import BashOperator

            return BashOperator(
                bash_command=script,
                env=env,
                append_env=True,  # the worker's env: LOCALPG_*, MELTANO_DATABASE_URI, ...
                cwd=str(self.settings.root),
                **common,
            )
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
        from kubernetes.client import models as k8s

        pod = self.settings.kubernetes
        resources: Resources = pod.resources[kind]
        if len(steps) == 1:  # one command: as it is, readable in the pod spec
            argv = shlex.split(script)
            cmds, arguments = argv[:1], argv[1:]
        else:
            cmds, arguments = ["sh", "-c"], [script]
        return KubernetesPodOperator(
            name=f"pgp-{task_id}".replace("_", "-")[:63],
            namespace=pod.namespace,
            image=pod.image,
            cmds=cmds,
            arguments=arguments,
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
