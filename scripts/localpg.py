#!/usr/bin/env python3
"""``python3 scripts/localpg.py ...``: the throwaway Postgres of tests, `make demo` and CI.

The code is the test kit's (testkit/src/pgp_testkit/localpg.py, stdlib only); this entry runs
it from the source tree because scripts/bootstrap calls it with the system python3 before
.venv exists. ``--help`` lists the commands.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testkit" / "src"))

from pgp_testkit.localpg import LocalPostgres, LocalPostgresError, main

__all__ = ["LocalPostgres", "LocalPostgresError"]

if __name__ == "__main__":
    sys.exit(main())
