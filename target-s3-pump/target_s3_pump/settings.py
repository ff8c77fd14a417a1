"""The target's settings, each declared once: type, default, allowed values, bounds, description.

This declaration is the plugin's ``config_jsonschema`` (so ``--about``, Meltano and the READMEs
read it), and :mod:`target_s3_pump.config` validates every config against it.
"""

from __future__ import annotations

from singer_sdk import typing as th

FORMATS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}  # format -> file extension
COMPRESSIONS = ("none", "gzip")
ENCRYPTIONS = ("AES256", "aws:kms", "none")
HEADER_CASES = ("as_is", "upper", "lower")
MIN_MULTIPART_MB = 5  # S3's smallest multipart part

SETTINGS = th.PropertiesList(
    th.Property(
        "pumps_file",
        th.StringType,
        required=True,
        description="Path of pumps.yml (GitLab's format): the models that may be pumped.",
    ),
    th.Property(
        "bucket",
        th.StringType,
        description="Bucket for pumps without a 'stage' (and default bucket of stages).",
    ),
    th.Property(
        "prefix",
        th.StringType,
        default="",
        description="Key prefix under 'bucket' for pumps without a 'stage'.",
    ),
    th.Property(
        "stages",
        th.CustomType(
            {
                "type": ["object", "null"],
                # Values are {bucket, prefix}, or strings under dotted keys
                # ("stage.prefix"): Meltano's flattened form, folded by config.normalize_stages.
                "additionalProperties": {
                    "type": ["object", "string", "null"],
                    "properties": {
                        "bucket": {"type": ["string", "null"]},
                        "prefix": {"type": ["string", "null"]},
                    },
                },
            }
        ),
        description="Stage name (pumps.yml 'stage') -> {bucket, prefix}; a stage without a "
        "bucket uses 'bucket'. A pump naming a stage that is not configured here fails "
        "validation. Meltano's flattened form with dotted keys ('s3_data_pump.prefix': 'x') "
        "is accepted too.",
    ),
    th.Property(
        "format",
        th.StringType,
        default="csv",
        allowed_values=list(FORMATS),
        description="csv (as Snowflake unloaded it for GitLab), parquet or jsonl.",
    ),
    th.Property(
        "compression",
        th.StringType,
        default="none",
        allowed_values=list(COMPRESSIONS),
        description="none or gzip (csv/jsonl: .gz objects; parquet: gzip codec inside).",
    ),
    th.Property(
        "max_rows_per_file",
        th.IntegerType(minimum=1),
        default=1_000_000,
        description="Rows per part for 'single: false' pumps. There is no cap per run.",
    ),
    th.Property(
        "interval_end",
        th.DateTimeType,
        description="End of the run's data interval (ISO 8601, naive = UTC); names the "
        "files YYYY_MM_DD__HHMMSS. Default: the run's start, UTC, whole seconds. Pass the "
        "scheduler's interval end to make retries overwrite the same objects.",
    ),
    th.Property(
        "header_case",
        th.StringType,
        default="as_is",
        allowed_values=list(HEADER_CASES),
        description="Column names in headers: as_is, upper (like Snowflake unquoted "
        "identifiers), lower.",
    ),
    th.Property(
        "pumps_schema",
        th.StringType,
        default="pumps",
        description="Warehouse schema of non-sensitive pump models.",
    ),
    th.Property(
        "pumps_sensitive_schema",
        th.StringType,
        default="pumps_sensitive",
        description="Warehouse schema of sensitive pump models.",
    ),
    th.Property(
        "endpoint_url",
        th.StringType,
        description="S3 endpoint (e.g. the local moto server); default: AWS.",
    ),
    th.Property("region", th.StringType, description="AWS region of the bucket(s)."),
    th.Property(
        "aws_access_key_id",
        th.StringType,
        secret=True,
        description="Access key; default: boto3's credential chain (env, profile, role).",
    ),
    th.Property(
        "aws_secret_access_key",
        th.StringType,
        secret=True,
        description="Secret key; default: boto3's credential chain.",
    ),
    th.Property(
        "aws_session_token",
        th.StringType,
        secret=True,
        description="Session token for temporary credentials.",
    ),
    th.Property("aws_profile", th.StringType, description="Named profile to use."),
    th.Property(
        "server_side_encryption",
        th.StringType,
        default="AES256",
        allowed_values=list(ENCRYPTIONS),
        description="x-amz-server-side-encryption of every object: AES256, aws:kms, none.",
    ),
    th.Property(
        "sse_kms_key_id",
        th.StringType,
        description="KMS key id/ARN for aws:kms (default: the account's aws/s3 key).",
    ),
    th.Property(
        "multipart_chunk_size_mb",
        th.IntegerType(minimum=MIN_MULTIPART_MB),
        default=16,
        description="Multipart upload threshold and part size in MiB (min 5).",
    ),
    th.Property(
        "max_attempts",
        th.IntegerType(minimum=1),
        default=5,
        description="Attempts per S3 request, the first included (boto3 standard retry "
        "mode: exponential backoff with jitter on 5xx, throttling, connection errors and "
        "timeouts). Then the pump fails without a marker.",
    ),
    th.Property(
        "s3_connect_timeout_seconds",
        th.NumberType(exclusive_minimum=0),
        default=10,
        description="Seconds to wait for a connection to S3, per attempt.",
    ),
    th.Property(
        "s3_read_timeout_seconds",
        th.NumberType(exclusive_minimum=0),
        default=120,
        description="Seconds to wait for S3 to answer (or send more of its answer), per "
        "attempt; a slower request counts as a failed attempt.",
    ),
    th.Property(
        "spool_dir",
        th.StringType,
        description="Directory for the local spool (default: the system temp dir). "
        "Needs room for the run's data; holds sensitive rows until the run ends.",
    ),
    th.Property(
        "summary_file",
        th.StringType,
        description="Write a JSON summary of the published objects here.",
    ),
)


def default_of(setting: str) -> object:
    """The declared default of ``setting``."""
    return SETTINGS.to_dict()["properties"][setting]["default"]
