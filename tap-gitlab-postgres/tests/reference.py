"""GitLab's real manifests, kept in the workspace's shared/ folder beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("PGP_REFERENCE_DIR") or _REPO.parent / "shared/reference/gitlab")


def reference_dir() -> Path:
    # Missing reference files are a broken checkout, not a reason to pass quietly.
    assert REFERENCE.is_dir(), f"GitLab reference manifests not found in {REFERENCE}"
    return REFERENCE
