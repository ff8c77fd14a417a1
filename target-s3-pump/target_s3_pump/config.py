"""PumpSettings: the target's settings, checked against their declaration
(:mod:`target_s3_pump.settings`) and parsed together with pumps.yml, before anything is read
or written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

from target_s3_pump.pumps import Pump, PumpsFile, PumpsFileError, Schemas, load_pumps
from target_s3_pump.settings import FORMATS, SETTINGS

INTERVAL_FORMAT = "%Y_%m_%d__%H%M%S"  # GitLab's file names: 2024_09_27__050000


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
    def from_config(
        cls, config: Mapping[str, Any], now: datetime, schema: Mapping[str, Any] | None = None
    ) -> PumpSettings:
        """Check ``config`` against ``schema`` (default: the target's settings) and parse it;
        raise :class:`PumpConfigError` listing each problem once, one line each."""
        check = ConfigCheck(config, schema or SETTINGS.to_dict())
        default = None
        bucket, prefix = check.value("bucket"), check.value("prefix")
        if bucket:
            default = Location(bucket, _prefix(prefix))
        elif prefix:
            check.problem("setting 'prefix' is set but 'bucket' is not")
        stages = _stages(check, default)

        fmt, compression = check.value("format"), check.value("compression")
        header_case, encryption = check.value("header_case"), check.value("server_side_encryption")
        kms_key_id = check.value("sse_kms_key_id")
        if kms_key_id and encryption != "aws:kms":
            check.problem("setting 'sse_kms_key_id' needs server_side_encryption 'aws:kms'")
        max_rows = check.value("max_rows_per_file")
        chunk_mb = check.value("multipart_chunk_size_mb")

        interval_end = now
        given_end = check.value("interval_end")
        if given_end:  # a date-time string by the schema; its format is checked here
            try:
                interval_end = parse_timestamp(given_end)
            except ValueError:
                check.problem(
                    "setting 'interval_end' must be an ISO 8601 date-time "
                    f"(e.g. 2024-09-27T05:00:00Z), got {given_end!r}"
                )
        interval_end = interval_end.astimezone(timezone.utc).replace(microsecond=0)

        schemas = Schemas(
            pumps=check.value("pumps_schema") or "",
            sensitive=check.value("pumps_sensitive_schema") or "",
        )
        if schemas.pumps and schemas.pumps.casefold() == schemas.sensitive.casefold():
            check.problem("settings 'pumps_schema' and 'pumps_sensitive_schema' must differ")
        check.report_the_rest()

        pumps: PumpsFile | None = None
        pumps_path = check.value("pumps_file")
        if pumps_path:
            try:
                pumps = load_pumps(pumps_path, stages=stage_names(check.given("stages")))
            except PumpsFileError as exc:
                check.problems += exc.problems
        if pumps is not None and default is None:
            for p in pumps:
                if p.stage is None:
                    check.problem(
                        f"{pumps.path}:{p.line}: pump '{p.model}' has no stage and setting "
                        "'bucket' is not set"
                    )

        if check.problems or pumps is None:
            raise PumpConfigError(check.problems)
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


class ConfigCheck:
    """A config checked against its JSON schema: each setting's problem as one line naming it,
    worded from the setting's declaration, reported when the parser reads the setting (so
    problems come in the parser's order, each once)."""

    def __init__(self, config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
        self.config = config
        self.properties: Mapping[str, Any] = schema.get("properties") or {}
        self.problems: list[str] = []
        self._pending: dict[str, str] = {}  # setting path -> its first problem
        for name in schema.get("required") or ():
            if not config.get(name):
                self._pending[name] = f"setting '{name}' is required"
        for error in DEFAULT_JSONSCHEMA_VALIDATOR(schema).iter_errors(config):
            if error.validator != "required":
                path = ".".join(map(str, error.absolute_path))
                self._pending.setdefault(path, _wording(path, error.schema, error.instance))

    def given(self, name: str) -> Any:
        """The setting as given (None when absent), whatever its problems."""
        return self.config.get(name)

    def value(self, name: str) -> Any:
        """The setting's value (absent, null or empty: its declared default); None, with its
        problems reported, when it does not match its declaration."""
        problems = [p for path, p in self._pending.items() if path.partition(".")[0] == name]
        if problems:
            self.problems += problems
            for path in [path for path in self._pending if path.partition(".")[0] == name]:
                del self._pending[path]
            return None
        value = self.config.get(name)
        if value is None or value == "":
            return self.properties.get(name, {}).get("default", value)
        return value

    def problem(self, line: str) -> None:
        self.problems.append(line)

    def report_the_rest(self) -> None:
        """Problems of the settings the parser does not read (e.g. ones boto3 reads)."""
        self.problems += self._pending.values()
        self._pending.clear()


_NOUNS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
}


def _wording(path: str, declaration: Mapping[str, Any], value: Any) -> str:
    """``setting 'x' must be <what the declaration allows>, got <value>``."""
    if not path:  # the config itself
        return f"the config must be a mapping of settings, got {value!r}"
    return f"setting '{path}' must be {_allowed(declaration)}, got {value!r}"


def _allowed(declaration: Mapping[str, Any]) -> str:
    if "enum" in declaration:
        return "one of " + ", ".join(str(v) for v in declaration["enum"] if v is not None)
    declared = declaration.get("type", [])
    types = [t for t in ([declared] if isinstance(declared, str) else declared) if t != "null"]
    low, above = declaration.get("minimum"), declaration.get("exclusiveMinimum")
    if types == ["integer"] and low is not None:
        return "a positive integer" if low == 1 else f"an integer >= {low}"
    if types == ["number"] and above == 0:
        return "a positive number"
    return " or ".join(_NOUNS.get(t, t) for t in types) or "valid"


STAGE_KEYS = ("bucket", "prefix")


def _stages(check: ConfigCheck, default: Location | None) -> dict[str, Location]:
    raw = normalize_stages(check.value("stages") or {})
    stages: dict[str, Location] = {}
    for name, stage in raw.items():
        if not isinstance(stage, Mapping):
            check.problem(f"setting 'stages.{name}' must be a mapping with bucket/prefix")
            continue
        unknown = sorted(set(stage) - set(STAGE_KEYS))
        if unknown:
            check.problem(f"setting 'stages.{name}': unknown key(s) {', '.join(unknown)}")
        bucket = stage.get("bucket") or (default.bucket if default else None)
        if not bucket:
            check.problem(f"setting 'stages.{name}' has no bucket and 'bucket' is not set")
            continue
        stages[str(name)] = Location(str(bucket), _prefix(stage.get("prefix")))
    return stages


def stage_names(raw: Any) -> set[str]:
    """The stages a ``stages`` setting names, valid or not (so a pump naming a stage that is
    configured wrongly is not reported as naming an unknown stage too)."""
    stages = normalize_stages(raw or {})
    return {str(name) for name in stages} if isinstance(stages, Mapping) else set()


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


def fill_defaults(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Set absent settings to their declared defaults, in place (what singer-sdk's config
    validator does; the SDK reads its own settings' defaults from the config)."""
    for name, declaration in (schema.get("properties") or {}).items():
        if "default" in declaration:
            config.setdefault(name, declaration["default"])


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 date-time; naive values are UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _prefix(value: object) -> str:
    return str(value or "").strip("/")
