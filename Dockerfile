# syntax=docker/dockerfile:1
# Images of the orchestrated pipeline (orchestrate/README.md), from the same pins as the
# local venvs:
#   pgp      (default: the last stage) the task pods of the pgp DAGs: `meltano el ...`.
#            scripts/bootstrap builds it as locally: .venv (meltano, the in-repo plugins) and
#            `meltano install` (every plugin of meltano.yml, pinned there and in plugins/).
#   airflow  scheduler, DAG processor and API server: orchestrate/requirements.txt, and the
#            project's files the DAG file reads at parse time (meltano.yml, manifests).
#
#   docker build --target pgp -t registry.example.com/data/pgp:2026.12.1 .  -> PGP_IMAGE
#   docker build --target airflow -t registry.example.com/data/pgp-airflow:2026.12.1 .
ARG PYTHON_VERSION=3.11.7

FROM python:${PYTHON_VERSION}-slim-bookworm AS airflow
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_INPUT=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1 \
    SCARF_ANALYTICS=false \
    PGP_PROJECT_ROOT=/project \
    PGP_EXECUTOR=kubernetes \
    AIRFLOW__CORE__DAGS_FOLDER=/project/orchestrate/dag_folder \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
RUN useradd --uid 10001 --create-home airflow
COPY orchestrate/requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/airflow-venv \
    && /opt/airflow-venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
WORKDIR /project
# The whole project: meltano.yml follows include_paths, the extractors name manifests.
COPY --chown=airflow . .
USER airflow
ENV PATH=/opt/airflow-venv/bin:$PATH
CMD ["airflow", "--help"]

FROM python:${PYTHON_VERSION}-slim-bookworm AS pgp
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_INPUT=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MELTANO_SEND_ANONYMOUS_USAGE_STATS=false \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    DO_NOT_TRACK=1 \
    MELTANO_ENVIRONMENT=prod
# WORKDIR would create /project as root, and COPY --chown owns only what it copies:
# bootstrap (as pgp) could not create .venv there.
RUN useradd --uid 10001 --create-home pgp && install -d -o pgp -g pgp /project
WORKDIR /project
COPY --chown=pgp . .
# Not root: bootstrap then skips the PostgreSQL server (only tests and the demo use one).
USER pgp
RUN bash scripts/bootstrap && rm -rf /home/pgp/.cache
ENV PATH=/project/.venv/bin:$PATH
CMD ["meltano", "--help"]
