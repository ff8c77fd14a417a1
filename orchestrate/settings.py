"""The DAGs' deployment settings: environment variables of the scheduler and workers,
read once at DAG parse time (README.md here lists them with production values)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrate.project import ROOT, ProjectError

EXECUTORS = ("local", "kubernetes")
DEFAULT_RESOURCES = {
    # An extract holds one batch file of rows (100,000 in prod) in the loader.
    "extract": "cpu=1,memory=2Gi",
    "transform": "cpu=1,memory=2Gi",
    "pump": "cpu=500m,memory=1Gi",
}


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str

    @classmethod
    def parse(cls, text: str, variable: str) -> Resources:
        """``cpu=1,memory=2Gi``."""
        values = dict(part.partition("=")[::2] for part in text.split(",") if part.strip())
        values = {k.strip(): v.strip() for k, v in values.items()}
        if set(values) != {"cpu", "memory"} or not all(values.values()):
            raise ProjectError(f"{variable}: expected cpu=<n>,memory=<n>, got {text!r}")
        return cls(values["cpu"], values["memory"])


@dataclass(frozen=True)
class Kubernetes:
    image: str  # the project's image (Dockerfile), tag pinned
    namespace: str
    secret: str  # env of every pod: MELTANO_DATABASE_URI, MELTANO_STATE_BACKEND_URI, secrets
    service_account: str  # its role reads/writes the state bucket (and the pump bucket)
    resources: Mapping[str, Resources]  # extract, transform, pump


@dataclass(frozen=True)
class Settings:
    root: Path  # the Meltano project (where the DAG files read meltano.yml)
    environment: str  # the Meltano environment the tasks run in
    job: str | None  # the job(s) the DAG runs; None: `pipeline` (dev) or `pipeline-<env>`
    executor: str  # local: BashOperator with .venv/bin/meltano; kubernetes: a pod per task
    retries: int
    retry_delay_seconds: int
    kubernetes: Kubernetes | None
    env_file: Path | None  # local: meltano --env-file (tests ignore a developer's .env)
    # Where a run's catalogs go (catalogs.py): file:// or s3://; None: each task discovers.
    catalogs: str | None = None

    @property
    def meltano(self) -> list[str]:
        if self.executor != "local":
            return ["meltano"]
        return [str(self.root / ".venv" / "bin" / "meltano"), *self.env_file_args]

    @property
    def env_file_args(self) -> list[str]:
        """``--env-file FILE`` of the Meltano commands (and of stale_runs), or nothing."""
        return ["--env-file", str(self.env_file)] if self.env_file else []

    @property
    def python(self) -> str:
        """The project venv's python (the image's PATH has it first)."""
        return str(self.root / ".venv" / "bin" / "python") if self.executor == "local" else "python"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        executor = env.get("PGP_EXECUTOR", "local")
        if executor not in EXECUTORS:
            raise ProjectError(f"PGP_EXECUTOR: expected one of {EXECUTORS}, got {executor!r}")
        kubernetes = None
        if executor == "kubernetes":
            if not env.get("PGP_IMAGE"):
                raise ProjectError("PGP_IMAGE: required with PGP_EXECUTOR=kubernetes")
            kubernetes = Kubernetes(
                image=env["PGP_IMAGE"],
                namespace=env.get("PGP_K8S_NAMESPACE", "pgp"),
                secret=env.get("PGP_K8S_SECRET", "pgp-meltano"),
                service_account=env.get("PGP_K8S_SERVICE_ACCOUNT", "pgp-meltano"),
                resources={
                    kind: Resources.parse(
                        env.get(f"PGP_RESOURCES_{kind.upper()}", default),
                        f"PGP_RESOURCES_{kind.upper()}",
                    )
                    for kind, default in DEFAULT_RESOURCES.items()
                },
            )
        root = Path(env.get("PGP_PROJECT_ROOT") or ROOT)
        catalogs = env.get("PGP_CATALOG_URI") or (
            f"file://{root}/.meltano/run/pgp-catalogs" if executor == "local" else None
        )
        if catalogs and not catalogs.startswith(("file:///", "s3://")):
            raise ProjectError(
                f"PGP_CATALOG_URI: expected file:///... or s3://..., got {catalogs!r}"
            )
        return cls(
            root=root,
            environment=env.get("PGP_MELTANO_ENVIRONMENT", "prod" if kubernetes else "dev"),
            job=env.get("PGP_PIPELINE_JOB") or None,
            executor=executor,
            retries=_int(env, "PGP_RETRIES", 2),
            retry_delay_seconds=_int(env, "PGP_RETRY_DELAY_SECONDS", 300),
            kubernetes=kubernetes,
            env_file=Path(env["PGP_MELTANO_ENV_FILE"]) if env.get("PGP_MELTANO_ENV_FILE") else None,
            catalogs=catalogs.rstrip("/") if catalogs else None,
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise ProjectError(f"{name}: expected a whole number >= 0, got {text!r}")
    return int(text)
