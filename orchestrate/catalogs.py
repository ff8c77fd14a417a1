"""A DAG run's catalogs: one discovery per extractor and run, which its table tasks read
instead of each running the tap's discovery again.

    .venv/bin/python -m orchestrate.catalogs put FILE URI   (the <extractor>.catalog task)
    .venv/bin/python -m orchestrate.catalogs get URI FILE   (a table task, then --catalog FILE)

URI is ``<PGP_CATALOG_URI>/<run_id>/<extractor>.json``: ``file://`` (the local default,
under .meltano/run/pgp-catalogs) or ``s3://bucket/prefix`` (pods share no filesystem; boto3's
credentials, and AWS_ENDPOINT_URL_S3 for an S3-compatible store). A put to a file URI
deletes the other runs' folders older than KEEP_DAYS; on S3 a lifecycle rule does that.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

KEEP_DAYS = 7
SCHEMES = ("file", "s3")


class CatalogError(Exception):
    pass


def put(file: Path, uri: str) -> None:
    url = urlparse(uri)
    if url.scheme == "s3":
        _s3_call("write", uri, lambda s3: s3.upload_file(str(file), url.netloc, _key(url.path)))
        return
    target = Path(url.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, target)
    _prune(target.parent)


def get(uri: str, file: Path) -> None:
    url = urlparse(uri)
    if url.scheme == "s3":
        _s3_call("read", uri, lambda s3: s3.download_file(url.netloc, _key(url.path), str(file)))
        return
    try:
        shutil.copyfile(url.path, file)
    except OSError as exc:
        raise CatalogError(f"cannot read {uri}: {exc.strerror}") from None


def _key(path: str) -> str:
    return path.lstrip("/")


def _s3_call(verb: str, uri: str, call: Callable[[Any], None]) -> None:
    import boto3  # only pods and S3 tests need it
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        call(boto3.client("s3"))
    except (BotoCoreError, ClientError) as exc:
        raise CatalogError(f"cannot {verb} {uri}: {exc}") from None


def _prune(run_dir: Path) -> None:
    """Other runs' folders beside ``run_dir`` untouched for KEEP_DAYS."""
    cutoff = time.time() - KEEP_DAYS * 86400
    for other in run_dir.parent.iterdir():
        if other.is_dir() and other != run_dir and other.stat().st_mtime < cutoff:
            shutil.rmtree(other, ignore_errors=True)


def main(argv: list[str]) -> int:
    try:
        if len(argv) != 3 or argv[0] not in ("put", "get"):
            raise CatalogError("usage: put FILE URI | get URI FILE")
        action, first, second = argv
        uri = second if action == "put" else first
        if urlparse(uri).scheme not in SCHEMES:
            raise CatalogError(f"{uri}: expected a file:// or s3:// URI")
        if action == "put":
            put(Path(first), uri)
        else:
            get(first, Path(second))
    except CatalogError as exc:
        print(f"catalogs: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
