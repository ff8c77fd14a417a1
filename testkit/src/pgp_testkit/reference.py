"""GitLab's real manifests and the schema of the tables they read
(``gitlab_manifest_tables.sql``), kept in the workspace's shared/ folder beside the repository.

``tap-gitlab-postgres/tests/data/gitlab/`` holds verbatim copies (checked against shared/ when
it is there), so a clone without the workspace around it still tests against the real files.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgp_testkit.paths import ROOT

SHARED = ROOT.parent / "shared/reference/gitlab"
COPIES = ROOT / "tap-gitlab-postgres" / "tests" / "data" / "gitlab"
REFERENCE = Path(os.environ.get("PGP_REFERENCE_DIR") or (SHARED if SHARED.is_dir() else COPIES))


def reference_dir() -> Path:
    # Missing reference files are a broken checkout, not a reason to pass quietly.
    assert REFERENCE.is_dir(), f"GitLab reference manifests not found in {REFERENCE}"
    return REFERENCE


# The files of shared/ that data/gitlab/ copies (test_manifest.py checks they are verbatim).
COPIED = ("*.yaml", "*.sql")


def reference_file(name: str) -> Path:
    """One reference file (e.g. ``gitlab_manifest_tables.sql``): shared/'s, else the copy."""
    path = reference_dir() / name
    assert path.is_file(), f"GitLab reference file {name} not found in {REFERENCE}"
    return path
