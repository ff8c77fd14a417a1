"""Target settings, checked together with pumps.yml before anything is read or written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from target_s3_pump.pumps import Pump, PumpsFile, PumpsFileError, Schemas, load_pumps

FORMATS = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
COMPRESSIONS = ("none", "gzip")
ENCRYPTIONS = ("AES256", "aws:kms", "none")
HEADER_CASES = ("as_is", "upper", "lower")
INTERVAL_FORMAT = "%Y_%m_%d__%H%M%S"  # GitLab's file names: 2024_09_27__050000
MIN_MULTIPART_MB = 5  # S3's smallest multipart part
# boto3 client settings (read by s3.make_client, checked here): name -> default.
DEFAULT_MAX_ATTEMPTS = 5
TIMEOUT_SETTINGS = {"s3_connect_timeout_seconds": 10, "s3_read_timeout_seconds": 120}


class PumpConfigError(ValueError):
    """Settings (or pumps.yml) are invalid; one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Location:
    """Where a pump's objects go: a bucket and a key prefix (no leading/trailing slash)."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class PumpSettings:
    pumps: PumpsFile
    schemas: Schemas
    default_location: Location | None
    stages: Mapping[str, Location]
    format: str = "csv"
    compression: str = "none"
    max_rows_per_file: int = 1_000_000
    interval_end: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    header_case: str = "as_is"
    encryption: str | None = "AES256"
    kms_key_id: str | None = None
    multipart_chunk_mb: int = 16

    @property
    def interval_name(self) -> str:
        """The run's interval end as GitLab named pump files: ``YYYY_MM_DD__HHMMSS`` (UTC)."""
        return self.interval_end.strftime(INTERVAL_FORMAT)

    @property
    def extension(self) -> str:
        ext = FORMATS[self.format]
        if self.compression == "gzip" and self.format != "parquet":
            ext += ".gz"  # Parquet compresses inside the file
        return ext

    def location_for(self, pump: Pump) -> Location:
        if pump.stage is not None:
            return self.stages[pump.stage]
        if self.default_location is None:  # excluded by from_config
            raise PumpConfigError([f"pump '{pump.model}': no stage and no 'bucket' setting"])
        return self.default_location

    @classmethod
    def from_config(cls, config: Mapping[str, Any], now: datetime) -> PumpSettings:
        """Validate everything; raise :class:`PumpConfigError` listing each problem once."""
        problems: list[str] = []
        default = None
        if config.get("bucket"):
            default = Location(str(config["bucket"]), _prefix(config.get("prefix")))
        elif config.get("prefix"):
            problems.append("setting 'prefix' is set but 'bucket' is not")

        stages: dict[str, Location] = {}
        raw_stages = normalize_stages(config.get("stages") or {})
        if not isinstance(raw_stages, Mapping):
            problems.append("setting 'stages' must map stage names to {bucket, prefix}")
            raw_stages = {}
        for name, stage in raw_stages.items():
            if not isinstance(stage, Mapping):
                problems.append(f"setting 'stages.{name}' must be a mapping with bucket/prefix")
                continue
            unknown = sorted(set(stage) - {"bucket", "prefix"})
            if unknown:
                problems.append(f"setting 'stages.{name}': unknown key(s) {', '.join(unknown)}")
            bucket = stage.get("bucket") or (default.bucket if default else None)
            if not bucket:
                problems.append(f"setting 'stages.{name}' has no bucket and 'bucket' is not set")
                continue
            stages[str(name)] = Location(str(bucket), _prefix(stage.get("prefix")))

        fmt = config.get("format") or "csv"
        compression = config.get("compression") or "none"
        header_case = config.get("header_case") or "as_is"
        encryption = config.get("server_side_encryption") or "AES256"
        for setting, value, allowed in (
            ("format", fmt, tuple(FORMATS)),
            ("compression", compression, COMPRESSIONS),
            ("header_case", header_case, HEADER_CASES),
            ("server_side_encryption", encryption, ENCRYPTIONS),
        ):
            if value not in allowed:
                problems.append(
                    f"setting '{setting}' must be one of {', '.join(allowed)}, got {value!r}"
                )
        kms_key_id = config.get("sse_kms_key_id") or None
        if kms_key_id and encryption != "aws:kms":
            problems.append("setting 'sse_kms_key_id' needs server_side_encryption 'aws:kms'")

        max_rows = config.get("max_rows_per_file", 1_000_000)
        if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
            problems.append(
                f"setting 'max_rows_per_file' must be a positive integer, got {max_rows!r}"
            )
        chunk_mb = config.get("multipart_chunk_size_mb", 16)
        if (
            not isinstance(chunk_mb, int)
            or isinstance(chunk_mb, bool)
            or chunk_mb < MIN_MULTIPART_MB
        ):
            problems.append(
                "setting 'multipart_chunk_size_mb' must be an integer >= "
                f"{MIN_MULTIPART_MB}, got {chunk_mb!r}"
            )

        max_attempts = config.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        if max_attempts is not None and (
            not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1
        ):
            problems.append(
                f"setting 'max_attempts' must be a positive integer, got {max_attempts!r}"
            )
        for setting, default_seconds in TIMEOUT_SETTINGS.items():
            seconds = config.get(setting, default_seconds)
            if seconds is not None and (
                not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0
            ):
                problems.append(f"setting '{setting}' must be a positive number, got {seconds!r}")

        interval_end = now
        if config.get("interval_end"):
            try:
                interval_end = parse_timestamp(str(config["interval_end"]))
            except ValueError:
                problems.append(
                    "setting 'interval_end' must be an ISO 8601 date-time "
                    f"(e.g. 2024-09-27T05:00:00Z), got {config['interval_end']!r}"
                )
        interval_end = interval_end.astimezone(timezone.utc).replace(microsecond=0)

        schemas = Schemas(
            pumps=str(config.get("pumps_schema") or "pumps"),
            sensitive=str(config.get("pumps_sensitive_schema") or "pumps_sensitive"),
        )
        if schemas.pumps.casefold() == schemas.sensitive.casefold():
            problems.append("settings 'pumps_schema' and 'pumps_sensitive_schema' must differ")

        pumps_path = config.get("pumps_file")
        pumps: PumpsFile | None = None
        if not pumps_path:
            problems.append("setting 'pumps_file' (path of pumps.yml) is required")
        else:
            try:
                pumps = load_pumps(pumps_path, stages=stages.keys() | raw_stages.keys())
            except PumpsFileError as exc:
                problems += exc.problems
        if pumps is not None and default is None:
            problems += [
                f"{pumps.path}:{p.line}: pump '{p.model}' has no stage and setting 'bucket' "
                "is not set"
                for p in pumps
                if p.stage is None
            ]

        if problems or pumps is None:
            raise PumpConfigError(problems)
        return cls(
            pumps=pumps,
            schemas=schemas,
            default_location=default,
            stages=stages,
            format=fmt,
            compression=compression,
            max_rows_per_file=max_rows,
            interval_end=interval_end,
            header_case=header_case,
            encryption=None if encryption == "none" else encryption,
            kms_key_id=kms_key_id,
            multipart_chunk_mb=chunk_mb,
        )


STAGE_KEYS = ("bucket", "prefix")


def normalize_stages(raw: Any) -> Any:
    """The ``stages`` setting as ``{stage: {bucket, prefix}}``.

    Meltano may deliver an object setting set through the environment flattened, with dotted
    keys: ``{"s3_data_pump.prefix": "x", "s3_data_pump.bucket": "b"}``. Those are folded into
    the nested form (and merged with nested entries of the same stage). Anything that is not a
    mapping is returned unchanged for the caller to report.
    """
    if not isinstance(raw, Mapping):
        return raw
    stages: dict[str, Any] = {}
    for name, value in raw.items():
        stage, dot, key = str(name).rpartition(".")
        if dot and stage and key in STAGE_KEYS and not isinstance(value, Mapping):
            entry = stages.setdefault(stage, {})
            if isinstance(entry, Mapping):
                stages[stage] = {**entry, key: value}
                continue
        elif isinstance(stages.get(name), Mapping) and isinstance(value, Mapping):
            stages[name] = {**value, **stages[name]}
            continue
        stages[name] = value
    return stages


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 date-time; naive values are UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _prefix(value: object) -> str:
    return str(value or "").strip("/")
