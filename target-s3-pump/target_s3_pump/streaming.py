"""CSV data objects uploaded while their rows still arrive.

Without this, a pump's objects are uploaded after the whole input was read, so the upload adds
to the run's time. Here a background thread sends the CSV spool to S3 in multipart chunks as
it grows; the objects stay invisible (multipart uploads are not objects until completed) and
are completed only when the pump is published, in the order :mod:`target_s3_pump.publish`
requires. If anything is off at publication (an upload failed, the schema gained columns so
earlier rows need padding), the uploads are aborted and the pump is published the usual way,
from the spool, which is kept whole until then.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from target_s3_pump.s3 import S3Error, S3Store


@dataclass(frozen=True)
class SpooledPiece:
    """CSV lines the spool has written (and flushed) at ``offset`` of its file."""

    part: int  # index of the data object they belong to
    offset: int
    size: int
    rows: int
    columns: tuple[str, ...]


@dataclass
class _Upload:
    key: str
    columns: tuple[str, ...]
    header: bytes  # the CSV header line, sent at the head of part 1
    start: int  # spool offset of the bytes not yet handed to a worker
    end: int
    rows: int = 0
    size: int = 0  # bytes of the object (header included) handed over so far
    parts: int = 0  # parts handed over; part N is [start, end) of the Nth hand-over
    upload_id: str | None = None  # created by the first worker that needs it
    etags: dict[int, str] = field(default_factory=dict)
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class StreamedFile:
    key: str
    rows: int
    bytes: int
    sha256: str


# Parts in flight at once (each holds one chunk in memory while it is sent).
UPLOAD_THREADS = 2


class PumpStreamer:
    """Uploads one pump's CSV spool (``spool_path``) while it is written.

    ``add`` runs in the reading thread for each flushed piece. Once a data object has
    ``chunk_bytes`` pending, the pump goes to S3 in chunks from worker threads, which read
    them back from the spool file as they send them (no chunk is held in memory); one more thread
    computes each object's sha256 from the pieces, in order. A pump that never reaches one
    chunk is left to the usual upload. ``finish`` completes the uploads, ``abort`` drops them.
    """

    def __init__(
        self,
        store: S3Store,
        bucket: str,
        key_for: Callable[[int], str],
        spool_path: Path,
        header_for: Callable[[tuple[str, ...]], bytes],
        chunk_bytes: int,
        content_type: str,
        metadata: dict[str, str],
        logger: logging.Logger,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.key_for = key_for
        self.spool_path = spool_path
        self.header_for = header_for
        self.chunk_bytes = chunk_bytes
        self.content_type = content_type
        self.metadata = metadata
        self.logger = logger
        self.failure: str | None = None  # why the uploads are unusable
        self._uploads: list[_Upload] = []  # one per data object, in order
        self._pool: ThreadPoolExecutor | None = None  # set once a chunk was handed over
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="pump-sha256")
        self._futures: list[Future[None]] = []
        self._fd = -1
        self._fd_lock = threading.Lock()

    # --- reading thread ------------------------------------------------------------------

    def add(self, piece: SpooledPiece, data: bytes) -> None:
        """``data``: the piece's bytes, as written to the spool."""
        if self.failure is not None:
            return
        if piece.part >= len(self._uploads):
            if self._pool is not None:
                self._submit(self._uploads[-1], final=True)  # that object is complete
            header = self.header_for(piece.columns)
            start = piece.offset
            upload = _Upload(self.key_for(piece.part), piece.columns, header, start, start)
            self._hasher.submit(upload.digest.update, header)
            self._uploads.append(upload)
        upload = self._uploads[-1]
        if upload.columns != piece.columns:
            self._fail("the schema changed mid-run")
            return
        self._hasher.submit(upload.digest.update, data)  # hashlib runs without the GIL
        upload.end = piece.offset + piece.size
        upload.rows += piece.rows
        if upload.end - upload.start >= self.chunk_bytes:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="pump-upload")
                for earlier in self._uploads[:-1]:  # small complete objects before this one
                    self._submit(earlier, final=True)
            self._submit(upload, final=False)

    def _submit(self, upload: _Upload, *, final: bool) -> None:
        """Hand over whole chunks (parts of one size, as boto3's own uploads); ``final``: the
        rest too, as the object's last part."""
        assert self._pool is not None
        while upload.end - upload.start >= self.chunk_bytes or (
            final and upload.end > upload.start
        ):
            end = min(upload.start + self.chunk_bytes, upload.end)
            upload.parts += 1
            upload.size += end - upload.start + (len(upload.header) if upload.parts == 1 else 0)
            self._futures.append(
                self._pool.submit(self._upload, upload, upload.parts, upload.start, end)
            )
            upload.start = end

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            if self._pool is not None:
                self.logger.warning(
                    "pump %s: uploading while reading stopped (%s); the pump is uploaded "
                    "after the input ends instead",
                    self.metadata.get("pump"),
                    reason,
                )

    # --- worker threads ------------------------------------------------------------------

    def _upload(self, upload: _Upload, number: int, start: int, end: int) -> None:
        if self.failure is not None:
            return
        try:
            with self._fd_lock:
                if self._fd < 0:
                    self._fd = os.open(self.spool_path, os.O_RDONLY)
            prefix = upload.header if number == 1 else b""
            body = _FileRange(self._fd, start, end - start, prefix)
            with upload.lock:
                if upload.upload_id is None:
                    upload.upload_id = self.store.start_upload(
                        self.bucket, upload.key, self.content_type, self.metadata
                    )
            etag = self.store.upload_part(self.bucket, upload.key, upload.upload_id, number, body)
        except (S3Error, OSError) as exc:
            self._fail(str(exc))
            return
        upload.etags[number] = etag

    # --- publication ---------------------------------------------------------------------

    def finish(self, columns: list[str]) -> list[StreamedFile] | None:
        """Complete every upload, in order: the pump's data objects. None (and nothing
        visible) when the pump must be uploaded from the spool instead: it never reached a
        chunk, an upload failed, or rows were spooled with fewer columns than it has now."""
        if self._pool is None:
            self._drain()
            return None
        if self.failure is None:
            self._submit(self._uploads[-1], final=True)
        self._drain()
        if any(u.columns != tuple(columns) for u in self._uploads):
            self._fail("the schema changed mid-run")
        if self.failure is not None:
            self.abort()
            return None
        files = []
        while self._uploads:
            upload = self._uploads[0]
            assert upload.upload_id is not None and len(upload.etags) == upload.parts
            etags = [upload.etags[n] for n in range(1, upload.parts + 1)]
            self.store.complete_upload(self.bucket, upload.key, upload.upload_id, etags)
            self._uploads.pop(0)
            files.append(
                StreamedFile(upload.key, upload.rows, upload.size, upload.digest.hexdigest())
            )
        return files

    def upload_ids(self) -> set[str]:
        return {u.upload_id for u in self._uploads if u.upload_id}

    def abort(self) -> None:
        """Drop the unfinished uploads (best effort: S3 may be what failed)."""
        self.failure = self.failure or "aborted"
        self._drain()
        for upload in self._uploads:
            if upload.upload_id and not self.store.abort_upload(
                self.bucket, upload.key, upload.upload_id
            ):
                self.logger.warning(
                    "pump %s: could not abort the upload of s3://%s/%s; the next run of the "
                    "pump aborts it",
                    self.metadata.get("pump"),
                    self.bucket,
                    upload.key,
                )
        self._uploads.clear()

    def _drain(self) -> None:
        for future in self._futures:
            future.result()
        self._futures.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._hasher.shutdown(wait=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _FileRange(io.RawIOBase):
    """A part's body: ``prefix``, then ``size`` bytes of the file ``fd`` from ``start``, read
    as the request is signed and sent (and again on a retry) instead of held in memory."""

    def __init__(self, fd: int, start: int, size: int, prefix: bytes = b"") -> None:
        super().__init__()
        self._fd = fd
        self._start = start
        self._prefix = prefix
        self._length = len(prefix) + size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        if self._pos < len(self._prefix):
            data = self._prefix[self._pos : self._pos + want]
        else:
            data = os.pread(self._fd, want, self._start + self._pos - len(self._prefix))
            if len(data) != want:
                raise OSError(f"spool is shorter than written ({len(data)} of {want} bytes)")
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
