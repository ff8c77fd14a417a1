"""Airflow DAG file: the pgp DAGs (`pgp`, `pgp_resync`), generated from meltano.yml and
the manifests every time Airflow parses it (orchestrate/dags.py, orchestrate/README.md).
Point Airflow's dags_folder here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_ROOT = os.environ.get("PGP_PROJECT_ROOT") or str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from orchestrate.dags import build  # noqa: E402  (needs the project on sys.path)

globals().update(build())
