"""GitLab's real manifests, kept in the workspace's shared/ folder beside the repository.

``data/gitlab/`` holds verbatim copies (checked against shared/ when it is there), so a clone
without the workspace around it still tests against the real files.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
SHARED = _REPO.parent / "shared/reference/gitlab"
COPIES = Path(__file__).resolve().parent / "data" / "gitlab"
REFERENCE = Path(os.environ.get("PGP_REFERENCE_DIR") or (SHARED if SHARED.is_dir() else COPIES))


def reference_dir() -> Path:
    # Missing reference files are a broken checkout, not a reason to pass quietly.
    assert REFERENCE.is_dir(), f"GitLab reference manifests not found in {REFERENCE}"
    return REFERENCE
