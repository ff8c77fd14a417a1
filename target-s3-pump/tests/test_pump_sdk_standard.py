"""singer-sdk's standard target tests, against the real (moto) S3 server.

The SDK builds its test class while pytest collects, so the server, the bucket and a pumps.yml
listing the SDK's test streams exist before the tests run. The one SDK stream whose name is not
a model name (``test:SpecialChars!in?attributes``; it tests odd *attribute* names) is renamed
with a stream map, the standard way to feed a stream under another name.
"""

from __future__ import annotations

import importlib.resources
import json
import tempfile
from pathlib import Path
from typing import Any

from pgp_testkit.s3pump import new_bucket, pump, target_config, write_pumps
from singer_sdk.testing import get_target_test_class, target_test_streams

from target_s3_pump.pumps import MODEL_RE
from target_s3_pump.target import TargetS3Pump


def _sdk_stream_names() -> set[str]:
    names = set()
    for entry in importlib.resources.files(target_test_streams).iterdir():
        if entry.name.endswith(".singer"):
            for line in entry.read_text(encoding="utf-8").splitlines():
                message = json.loads(line) if line.strip() else {}
                if message.get("type") == "SCHEMA":
                    names.add(message["stream"])
    return names


def _config() -> dict[str, Any]:
    names = _sdk_stream_names()
    aliases = {n: "test_special_chars_in_attributes" for n in names if not MODEL_RE.match(n)}
    models = sorted((names - aliases.keys()) | set(aliases.values()))
    pumps_file = write_pumps(
        Path(tempfile.mkdtemp(prefix="sdk-standard-")),
        [pump(m, None, single=(i % 2 == 0)) for i, m in enumerate(models)],
    )
    stream_maps = {name: {"__alias__": alias} for name, alias in aliases.items()}
    return target_config(new_bucket(), pumps_file, stream_maps=stream_maps)


TestTargetS3Pump = get_target_test_class(TargetS3Pump, config=_config())
