"""Where the repository is, and how another venv's Python runs a module of the kit."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]  # testkit/src: the kit is installed editable
ROOT = SOURCE.parents[1]


def kit_command(python: Path | str, module: str, *args: str) -> list[str]:
    """``python -m pgp_testkit.<module> args``; run it with :func:`kit_env`."""
    return [str(python), "-m", f"pgp_testkit.{module}", *args]


def kit_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) for a Python that does not have the kit installed
    (the fakesnow and target-snowflake venvs): the kit's source directory on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE), env.get("PYTHONPATH")]))
    return env
