"""Publishing one pump: data files first, the marker last.

Object layout (``<prefix>`` from the pump's stage, else the ``bucket``/``prefix`` settings;
``<stamp>`` is the run's interval end, ``YYYY_MM_DD__HHMMSS`` UTC; ``<ext>`` e.g. ``.csv``)::

    single: true    <prefix>/<model>/<stamp><ext>            the only data object
                    <prefix>/<model>/<stamp>_SUCCESS.json    marker
    single: false   <prefix>/<model>/<stamp>/part-00000<ext> parts of max_rows_per_file rows
                    <prefix>/<model>/<stamp>/_SUCCESS.json   marker

A consumer may read the data once the marker exists: it lists every data object with its rows,
bytes and sha256. Publication order makes that safe:

1. delete the marker of the same ``<stamp>`` (a rerun: the old files stop being "complete");
2. upload the data objects (same keys: overwritten), or complete the multipart uploads that
   already hold them (:mod:`target_s3_pump.streaming`);
3. delete objects under ``<stamp>/`` that this run did not write (leftovers of a failed or
   larger earlier attempt);
4. write the marker.

A failure at any step leaves no marker; a retry with the same interval end redoes all four steps
and so replaces whatever the failed attempt left. A pump with no rows still gets one file with
the header only (and a marker saying 0 rows), so "no new data" is distinguishable from "did not
run".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from target_s3_pump.config import Location, PumpSettings
from target_s3_pump.formats import CONTENT_TYPES, CsvPart, open_part
from target_s3_pump.pumps import Pump
from target_s3_pump.s3 import S3Error, S3Store
from target_s3_pump.spool import PumpSpool
from target_s3_pump.streaming import PumpStreamer
from target_s3_pump.values import ConversionError

MARKER_NAME = "_SUCCESS.json"
MARKER_CONTENT_TYPE = "application/json"


class PublishError(RuntimeError):
    """A pump could not be published; no marker was written for it."""


@dataclass(frozen=True)
class Layout:
    location: Location
    model: str
    base: str  # <prefix>/<model>/<stamp>
    single: bool
    extension: str

    @classmethod
    def for_pump(cls, pump: Pump, settings: PumpSettings) -> Layout:
        location = settings.location_for(pump)
        return cls(
            location=location,
            model=pump.model,
            base=location.key(pump.model, settings.interval_name),
            single=pump.single,
            extension=settings.extension,
        )

    @property
    def model_prefix(self) -> str:
        """Prefix of every run's objects of this pump."""
        return self.location.key(self.model) + "/"

    def data_key(self, index: int) -> str:
        if self.single:
            return self.base + self.extension
        return f"{self.base}/part-{index:05d}{self.extension}"

    @property
    def marker_key(self) -> str:
        return self.base + ("" if self.single else "/") + MARKER_NAME

    @property
    def run_prefix(self) -> str | None:
        """Prefix holding only this run's objects (None for single: one fixed key)."""
        return None if self.single else self.base + "/"


@dataclass(frozen=True)
class PublishedFile:
    key: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class PumpResult:
    pump: Pump
    stream: str
    bucket: str
    marker_key: str
    files: list[PublishedFile] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pump": self.pump.model,
            "stream": self.stream,
            "bucket": self.bucket,
            "marker": self.marker_key,
            "rows": self.rows,
            "files": [asdict(f) for f in self.files],
            "removed_leftovers": self.removed,
        }


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def render_parts(
    spool: PumpSpool, settings: PumpSettings, workdir: Path
) -> Iterator[tuple[Path, int]]:
    """Write the spooled rows as local part files, one at a time: (path, rows) when complete.

    The spool cuts its pieces at multiples of ``max_rows_per_file``, so a piece never spans
    two parts."""
    limit = None if spool.pump.single else settings.max_rows_per_file
    index = 0

    def new_part() -> Any:
        path = workdir / f"{spool.pump.model}.part{index:05d}{settings.extension}"
        return open_part(
            path,
            settings.format,
            settings.compression,
            spool.columns,
            spool.properties,
            settings.header_case,
        )

    part = new_part()
    try:
        for rows, payload in spool.pieces():
            if limit is not None and part.rows >= limit:
                part.close()
                yield part.path, part.rows
                index += 1
                part = new_part()
            if isinstance(payload, bytes):  # CsvSpool: CSV lines already
                assert isinstance(part, CsvPart)
                part.write_rendered(payload, rows)
            else:
                part.write(payload)
        part.close()
    except ConversionError as exc:
        part.close()
        raise PublishError(f"pump '{spool.pump.model}': {exc}; no marker written") from None
    yield part.path, part.rows


def object_metadata(pump: Pump) -> dict[str, str]:
    """User metadata of every data object. Rows and sha256 are in the marker: an object
    uploaded while its rows arrive is created before they are known."""
    return {"pump": pump.model}


def content_type_of(settings: PumpSettings) -> str:
    if settings.compression == "gzip" and settings.format != "parquet":
        return "application/gzip"
    return CONTENT_TYPES[settings.format]


def _abort_stale_uploads(
    store: S3Store, layout: Layout, streamer: PumpStreamer | None, logger: logging.Logger
) -> None:
    """Multipart uploads a killed run of this pump left behind (invisible, but billed)."""
    prefix = layout.model_prefix
    ours = streamer.upload_ids() if streamer is not None else set()
    try:
        stale = [
            (k, u)
            for k, u in store.unfinished_uploads(layout.location.bucket, prefix)
            if u not in ours
        ]
    except S3Error as exc:  # e.g. no s3:ListBucketMultipartUploads: not worth failing over
        logger.warning("pump %s: %s", layout.model, exc)
        return
    for key, upload_id in stale:
        store.abort_upload(layout.location.bucket, key, upload_id)
    if stale:
        logger.info(
            "pump %s: aborted %d unfinished upload(s) of an earlier run", layout.model, len(stale)
        )


def publish_pump(
    spool: PumpSpool,
    settings: PumpSettings,
    store: S3Store,
    workdir: Path,
    logger: logging.Logger,
    writer: str,
    streamer: PumpStreamer | None = None,
) -> PumpResult:
    pump = spool.pump
    layout = Layout.for_pump(pump, settings)
    bucket = layout.location.bucket
    result = PumpResult(
        pump=pump, stream=spool.stream_name, bucket=bucket, marker_key=layout.marker_key
    )
    try:
        store.delete(bucket, [layout.marker_key])
        previous = store.list_keys(bucket, layout.run_prefix) if layout.run_prefix else []
        content_type = content_type_of(settings)
        _abort_stale_uploads(store, layout, streamer, logger)
        streamed = streamer.finish(spool.columns) if streamer is not None else None
        if streamed is not None:  # uploaded while the rows arrived, completed just now
            result.files = [PublishedFile(f.key, f.rows, f.bytes, f.sha256) for f in streamed]
        else:
            for path, rows in render_parts(spool, settings, workdir):
                key = layout.data_key(len(result.files))
                sha256, size = file_digest(path)
                store.upload_file(path, bucket, key, content_type, metadata=object_metadata(pump))
                path.unlink()
                result.files.append(PublishedFile(key=key, rows=rows, bytes=size, sha256=sha256))
        for f in result.files:
            logger.info(
                "pump %s: wrote s3://%s/%s (%d rows, %d bytes)",
                pump.model,
                bucket,
                f.key,
                f.rows,
                f.bytes,
            )
        written = {f.key for f in result.files}
        result.removed = sorted(k for k in previous if k not in written and k != layout.marker_key)
        if result.removed:
            store.delete(bucket, result.removed)
            logger.info(
                "pump %s: removed %d leftover object(s) of an earlier attempt",
                pump.model,
                len(result.removed),
            )
        marker = build_marker(result, spool, settings, writer)
        store.put_bytes(bucket, layout.marker_key, marker, MARKER_CONTENT_TYPE)
    except S3Error as exc:
        raise PublishError(f"pump '{pump.model}': {exc}; no marker written") from None
    logger.info(
        "pump %s: published s3://%s/%s (%d rows in %d file(s))",
        pump.model,
        bucket,
        layout.marker_key,
        result.rows,
        len(result.files),
    )
    return result


def build_marker(
    result: PumpResult, spool: PumpSpool, settings: PumpSettings, writer: str
) -> bytes:
    pump = result.pump
    marker = {
        "pump": pump.model,
        "stream": result.stream,
        "sensitive": pump.sensitive,
        "owner": pump.owner,
        "stage": pump.stage,
        "timestamp_column": pump.timestamp_column,
        "single": pump.single,
        "interval_end": settings.interval_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "format": settings.format,
        "compression": settings.compression,
        "columns": spool.columns,
        "rows": result.rows,
        "bucket": result.bucket,
        "files": [asdict(f) for f in result.files],
        "published_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "writer": writer,
    }
    return (json.dumps(marker, indent=2) + "\n").encode()
