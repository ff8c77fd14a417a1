"""Print the DAG folder as Airflow parses it, as JSON: import errors, and per DAG its
settings and tasks (operator, pool, retries, upstream tasks, the command; the env as Airflow
renders it for a run triggered without a logical date).

    .airflow-venv/bin/python -m orchestrate.describe OUT.json   (settings: PGP_* env variables)

The tests read it from the project venv (Airflow lives in its own venv).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from airflow.dag_processing.dagbag import DagBag

from orchestrate.local import DAG_FOLDER

# What a task's templates see in a run triggered without a logical date: no data interval.
MANUAL_RUN = {
    "dag_run": SimpleNamespace(run_after=datetime(2026, 12, 6, 5, 0, tzinfo=UTC)),
    "ti": SimpleNamespace(try_number=1),
}


def describe_task(op: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operator": type(op).__name__,
        "pool": op.pool,
        "retries": op.retries,
        "trigger_rule": str(op.trigger_rule),
        "upstream": sorted(op.upstream_task_ids),
    }
    if type(op).__name__ == "BashOperator":
        out.update(command=op.bash_command, env=op.env, cwd=op.cwd)
        out["env_manual_run"] = op.render_template(op.env, MANUAL_RUN, op.dag.get_template_env())
    elif type(op).__name__ == "KubernetesPodOperator":
        resources = op.container_resources
        out.update(
            image=op.image,
            namespace=op.namespace,
            cmds=op.cmds,
            arguments=op.arguments,
            env=op.env_vars
            if isinstance(op.env_vars, dict)
            else {e.name: e.value for e in op.env_vars},
            env_from=[e.secret_ref.name for e in op.env_from],
            service_account=op.service_account_name,
            requests=resources.requests,
            limits=resources.limits,
        )
    return out


def main(argv: list[str]) -> int:
    bag = DagBag(dag_folder=str(DAG_FOLDER))
    out = {
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dags": {
            dag.dag_id: {
                "schedule": dag.schedule if isinstance(dag.schedule, str) else None,
                "max_active_runs": dag.max_active_runs,
                "catchup": dag.catchup,
                "params": {k: dag.params[k] for k in dag.params},
                "tasks": {t.task_id: describe_task(t) for t in dag.tasks},
            }
            for dag in bag.dags.values()
        },
    }
    # A file, not stdout: Airflow logs to stdout.
    with open(argv[0], "w") as f:
        json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
