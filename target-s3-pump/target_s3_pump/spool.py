"""Local spool of one pump's records until the end of the input.

Records reach S3 only after the whole input was read and every stream was accepted, so a
rejected stream (or a failure anywhere) leaves nothing behind in the bucket. Until then each
drained batch is appended to a local file (pickle, one batch per frame: exact Python values,
fast, produced and read only by this process); memory holds at most one batch.

The spool also keeps the pump's columns. If the stream's schema changes mid-run, columns are
the union in order of first appearance; rows that lack a column get NULL there.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from target_s3_pump.pumps import Pump


class PumpSpool:
    def __init__(self, directory: Path, pump: Pump, stream_name: str) -> None:
        self.pump = pump
        self.stream_name = stream_name
        self.path = directory / f"{pump.model}.spool"
        self.columns: list[str] = []
        self.properties: dict[str, Mapping[str, Any]] = {}
        self.rows = 0
        self.batches_written = 0
        self._fh: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115  (closed in finish())

    def update_schema(self, schema: Mapping[str, Any], logger: logging.Logger) -> None:
        properties = dict(schema.get("properties") or {})
        added = [name for name in properties if name not in self.properties]
        if self.columns and (added or list(properties) != self.columns):
            logger.warning(
                "stream %s: schema changed mid-run; pump %s keeps the union of columns "
                "(new: %s); earlier rows get NULL in new columns",
                self.stream_name,
                self.pump.model,
                ", ".join(added) or "none",
            )
        self.columns += added
        self.properties.update(properties)  # latest type wins for Parquet

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        if self._fh is None:
            raise RuntimeError(f"spool of pump {self.pump.model} is already finished")
        pickle.dump(list(records), self._fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.rows += len(records)
        self.batches_written += 1

    def finish(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        """The spooled batches in arrival order (finishes the spool)."""
        self.finish()
        with open(self.path, "rb") as fh:
            for _ in range(self.batches_written):
                yield pickle.load(fh)  # our own file, written above

    def remove(self) -> None:
        self.finish()
        self.path.unlink(missing_ok=True)
