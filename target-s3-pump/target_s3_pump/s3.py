"""The S3 client of the target: boto3 with the standard credential chain.

Credentials come, in boto3's usual order, from the ``aws_*`` settings when given, else the
environment (``AWS_ACCESS_KEY_ID``...), ``aws_profile`` / shared config files, or the instance
role. ``endpoint_url`` (or boto3's ``AWS_ENDPOINT_URL_S3``) points at another S3 implementation,
such as the local moto server. Every object is written with the configured server-side
encryption. Uploads stream from local files in multipart chunks, so memory does not grow with
object size.

Permissions needed on the pump prefixes: ``s3:PutObject``, ``s3:DeleteObject``,
``s3:ListBucket``, ``s3:AbortMultipartUpload`` and ``s3:ListBucketMultipartUploads`` (plus
``kms:GenerateDataKey`` for ``aws:kms``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from target_s3_pump.settings import default_of

MIB = 1024 * 1024
_BUCKET_ERRORS = {"404": "does not exist", "NoSuchBucket": "does not exist", "403": "access denied"}


class S3Error(RuntimeError):
    """An S3 call failed; the message is one line naming the object."""


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        message = error.get("Message") or str(exc)
        return f"{code}: {message}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def make_client(config: Mapping[str, Any]) -> Any:
    """boto3 S3 client from the target settings (unset settings: boto3's defaults)."""
    session = boto3.session.Session(
        aws_access_key_id=config.get("aws_access_key_id") or None,
        aws_secret_access_key=config.get("aws_secret_access_key") or None,
        aws_session_token=config.get("aws_session_token") or None,
        profile_name=config.get("aws_profile") or None,
        region_name=config.get("region") or None,
    )
    # Every request is retried by botocore (standard mode: exponential backoff with jitter) on
    # 5xx answers, throttling, dropped connections and timeouts, up to max_attempts attempts in
    # all; then the call fails and the pump gets no marker. (botocore's own "max_attempts" key
    # counts retries only, one more attempt than the setting says; total_max_attempts does not.)
    boto_config = BotoConfig(
        retries={"total_max_attempts": _setting(config, "max_attempts"), "mode": "standard"},
        connect_timeout=_setting(config, "s3_connect_timeout_seconds"),
        read_timeout=_setting(config, "s3_read_timeout_seconds"),
    )
    return session.client("s3", endpoint_url=config.get("endpoint_url") or None, config=boto_config)


def _setting(config: Mapping[str, Any], name: str) -> Any:
    value = config.get(name)
    return default_of(name) if value is None else value


class S3Store:
    """The few S3 operations a pump needs, with one-line errors."""

    def __init__(
        self,
        client: Any,
        encryption: str | None = "AES256",
        kms_key_id: str | None = None,
        multipart_chunk_mb: int = 16,
    ) -> None:
        self.client = client
        self.encryption = encryption
        self.kms_key_id = kms_key_id
        chunk = multipart_chunk_mb * MIB
        # Memory in flight is about max_concurrency * chunk.
        self.transfer = TransferConfig(
            multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=4
        )
        self._checked_buckets: set[str] = set()

    def _encryption_args(self) -> dict[str, str]:
        args: dict[str, str] = {}
        if self.encryption:
            args["ServerSideEncryption"] = self.encryption
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    def check_bucket(self, bucket: str) -> None:
        """Fail early (before any data is read) when a bucket is missing or not reachable."""
        if bucket in self._checked_buckets:
            return
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            reason = _BUCKET_ERRORS.get(code) or describe_error(exc)
            raise S3Error(f"bucket s3://{bucket}: {reason}") from None
        except BotoCoreError as exc:
            raise S3Error(f"bucket s3://{bucket}: {describe_error(exc)}") from None
        self._checked_buckets.add(bucket)

    def upload_file(
        self,
        path: Path,
        bucket: str,
        key: str,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        extra: dict[str, Any] = {"ContentType": content_type, **self._encryption_args()}
        if metadata:
            extra["Metadata"] = dict(metadata)
        try:
            self.client.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=self.transfer)
        # Boto3Error: the transfer manager re-raises a ClientError (e.g. 5xx after the last
        # retry) as S3UploadFailedError, which is neither a BotoCoreError nor a ClientError.
        except (BotoCoreError, ClientError, Boto3Error, OSError) as exc:
            raise S3Error(f"upload of s3://{bucket}/{key} failed: {_cause(exc)}") from None

    def put_bytes(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        try:
            self.client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                **self._encryption_args(),
            )
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(f"upload of s3://{bucket}/{key} failed: {_cause(exc)}") from None

    # --- multipart uploads written while the rows still arrive (streaming.py) ------------

    def start_upload(
        self, bucket: str, key: str, content_type: str, metadata: Mapping[str, str]
    ) -> str:
        """A new multipart upload: invisible until :meth:`complete_upload`."""
        try:
            response = self.client.create_multipart_upload(
                Bucket=bucket,
                Key=key,
                ContentType=content_type,
                Metadata=dict(metadata),
                **self._encryption_args(),
            )
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(f"upload of s3://{bucket}/{key} failed: {_cause(exc)}") from None
        return str(response["UploadId"])

    def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: bytes | IO[bytes] | io.RawIOBase,
    ) -> str:
        try:
            response = self.client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(f"upload of s3://{bucket}/{key} failed: {_cause(exc)}") from None
        return str(response["ETag"])

    def complete_upload(self, bucket: str, key: str, upload_id: str, etags: list[str]) -> None:
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]
        try:
            self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(f"upload of s3://{bucket}/{key} failed: {_cause(exc)}") from None

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> bool:
        """Best effort (the run is failing anyway): False when S3 did not confirm."""
        try:
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError):
            return False
        return True

    def unfinished_uploads(self, bucket: str, prefix: str) -> list[tuple[str, str]]:
        """(key, upload id) of multipart uploads under ``prefix`` never completed or aborted
        (e.g. by a run that was killed)."""
        found: list[tuple[str, str]] = []
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=bucket, Prefix=prefix
            ):
                found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(
                f"listing uploads under s3://{bucket}/{prefix} failed: {_cause(exc)}"
            ) from None
        return found

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            ):
                keys += [item["Key"] for item in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(f"listing s3://{bucket}/{prefix} failed: {_cause(exc)}") from None
        return keys

    def delete(self, bucket: str, keys: Iterable[str]) -> None:
        pending = sorted(set(keys))
        for start in range(0, len(pending), 1000):  # DeleteObjects takes 1000 keys at most
            chunk = pending[start : start + 1000]
            try:
                response = self.client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as exc:
                more = f" (and {len(chunk) - 1} more)" if len(chunk) > 1 else ""
                raise S3Error(
                    f"deleting s3://{bucket}/{chunk[0]}{more} failed: {_cause(exc)}"
                ) from None
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise S3Error(
                    f"deleting s3://{bucket}/{first.get('Key')} failed: "
                    f"{first.get('Code')}: {first.get('Message')}"
                )


def _cause(exc: BaseException) -> str:
    # boto3's transfer manager wraps the real error; show the innermost useful one.
    inner = getattr(exc, "last_exception", None) or exc.__cause__ or exc.__context__
    if isinstance(inner, (ClientError, BotoCoreError)):
        return describe_error(inner)
    return describe_error(exc)
