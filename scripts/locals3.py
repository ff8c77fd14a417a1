#!/usr/bin/env python3
"""``python3 scripts/locals3.py ...``: the local S3 (moto) of `make demo`.

The code is the test kit's (testkit/src/pgp_testkit/locals3.py); this entry runs it from the
source tree, with whichever Python has moto (the project's .venv). ``--help`` lists the commands.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testkit" / "src"))

from pgp_testkit.locals3 import LocalS3, LocalS3Error, main

__all__ = ["LocalS3", "LocalS3Error"]

if __name__ == "__main__":
    sys.exit(main())
