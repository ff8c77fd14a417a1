"""pumps.yml: which dbt models are pumped to S3, and how (GitLab's Data Pump format).

The file is GitLab's, unchanged::

    pumps:
      - model: pump_marketing_contact     # dbt model (table) name; required
        timestamp_column: last_changed    # column name, or null for a full export; required
        sensitive: True                   # True: comes from pumps_sensitive; required
        owner: '@jjstark'                 # informational; required
        single: True                      # optional (false): one file instead of parts
        stage: s3_data_pump               # optional: a configured stage (bucket/prefix)

Everything that reads pumps.yml goes through :func:`load_pumps`, so the target, ``pumps-check``
and the extractor selection derived from it (:func:`meltano_selection`) agree on one list.
Validation collects every problem as one line ``<file>:<line>: pump '<model>': <problem>``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REQUIRED_KEYS = ("model", "timestamp_column", "sensitive", "owner")
OPTIONAL_KEYS = ("single", "stage")
# dbt model names are relation names: unquoted SQL identifiers. They also become S3 key parts.
MODEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PumpsFileError(ValueError):
    """pumps.yml is missing, unreadable or invalid; one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class StreamRejected(ValueError):
    """A stream may not be pumped (unlisted, or from the wrong schema)."""


@dataclass(frozen=True)
class Schemas:
    """Warehouse schemas holding the pump models (Snowflake: PROD.PUMPS / PROD.PUMPS_SENSITIVE)."""

    pumps: str = "pumps"
    sensitive: str = "pumps_sensitive"

    def for_pump(self, pump: Pump) -> str:
        return self.sensitive if pump.sensitive else self.pumps


@dataclass(frozen=True)
class Pump:
    model: str
    timestamp_column: str | None
    sensitive: bool
    owner: str
    single: bool = False
    stage: str | None = None
    line: int = 0  # line of the entry in pumps.yml, for messages

    @property
    def incremental(self) -> bool:
        return self.timestamp_column is not None

    def stream_id(self, schemas: Schemas) -> str:
        """Stream name as SQL taps (tap-postgres, tap-snowflake) build it: ``<schema>-<table>``."""
        return f"{schemas.for_pump(self)}-{self.model}"


@dataclass(frozen=True)
class PumpsFile:
    path: Path
    pumps: tuple[Pump, ...]

    def __iter__(self) -> Iterator[Pump]:
        return iter(self.pumps)

    def __len__(self) -> int:
        return len(self.pumps)

    def get(self, model: str) -> Pump | None:
        """The pump for ``model``: exact name first, then case-insensitively (Snowflake)."""
        for pump in self.pumps:
            if pump.model == model:
                return pump
        folded = model.casefold()
        for pump in self.pumps:
            if pump.model.casefold() == folded:
                return pump
        return None

    def resolve_stream(self, stream_name: str, schemas: Schemas) -> Pump:
        """The pump fed by ``stream_name`` (``<model>`` or ``<schema>-<model>``), or raise.

        When the stream names its schema, a sensitive pump must come from the sensitive schema
        and any other pump from the non-sensitive one: nothing mislabelled leaves the warehouse.
        """
        pump = self.get(stream_name)
        if pump is not None:
            return pump  # bare model name: schema unknown, nothing to compare
        schema, sep, model = stream_name.partition("-")
        pump = self.get(model) if sep else None
        if pump is None:
            wanted = model if sep else stream_name
            raise StreamRejected(
                f"stream '{stream_name}': model '{wanted}' is not listed in {self.path}; "
                "only models listed in pumps.yml may be pumped"
            )
        expected = schemas.for_pump(pump)
        if schema.casefold() != expected.casefold():
            kind = "sensitive" if pump.sensitive else "not sensitive"
            raise StreamRejected(
                f"stream '{stream_name}': pump '{pump.model}' is {kind} in {self.path} "
                f"(line {pump.line}), so it must come from schema '{expected}', not '{schema}'"
            )
        return pump


# --------------------------------------------------------------------------- loading


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers its line (1-based)."""

    line: int = 0


class _Loader(yaml.SafeLoader):
    """SafeLoader that records mapping lines and reports duplicate keys instead of dropping one."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []

    def construct_line_mapping(self, node: yaml.MappingNode) -> _Mapping:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key; SafeLoader reports it below
                duplicate = False
            if duplicate:
                self.duplicates.append((key_node.start_mark.line + 1, str(key)))
        out = _Mapping(super().construct_mapping(node, deep=True))
        out.line = node.start_mark.line + 1
        return out


_Loader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_line_mapping
)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def load_pumps(path: str | Path, stages: Collection[str] | None = None) -> PumpsFile:
    """Read and validate pumps.yml; ``stages``: configured stage names (None: not checked)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PumpsFileError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PumpsFileError([f"{path}: cannot read: {exc}"]) from None
    return parse_pumps(text, path, stages)


def parse_pumps(text: str, path: Path, stages: Collection[str] | None = None) -> PumpsFile:
    where = str(path)
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PumpsFileError([f"{where}{at}: invalid YAML: {problem}"]) from None
    finally:
        loader.dispose()

    problems = [f"{where}:{line}: duplicate key '{key}'" for line, key in loader.duplicates]
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping with a 'pumps:' list, got {_describe(data)}")
        raise PumpsFileError(problems)
    problems += [
        f"{where}: unknown top-level key '{key}' (only 'pumps' is allowed)"
        for key in data
        if key != "pumps"
    ]
    entries = data.get("pumps")
    if "pumps" not in data:
        problems.append(f"{where}: missing top-level key 'pumps'")
    elif not isinstance(entries, list):
        problems.append(f"{where}: 'pumps' must be a list, got {_describe(entries)}")
    if problems:
        raise PumpsFileError(problems)

    pumps: list[Pump] = []
    first_seen: dict[str, Pump] = {}
    for index, entry in enumerate(entries or []):
        pump = _parse_entry(entry, index, where, stages, problems)
        if pump is None:
            continue
        other = first_seen.get(pump.model.casefold())
        if other is not None:
            problems.append(
                f"{where}:{pump.line}: pump '{pump.model}': duplicate model "
                f"(already listed at line {other.line})"
            )
            continue
        first_seen[pump.model.casefold()] = pump
        pumps.append(pump)
    if problems:
        raise PumpsFileError(problems)
    return PumpsFile(path=path, pumps=tuple(pumps))


def _parse_entry(
    entry: object,
    index: int,
    where: str,
    stages: Collection[str] | None,
    problems: list[str],
) -> Pump | None:
    if not isinstance(entry, dict):
        problems.append(
            f"{where}: pumps[{index}]: expected a mapping with "
            f"{', '.join(REQUIRED_KEYS)}; got {_describe(entry)}"
        )
        return None
    line = getattr(entry, "line", 0)
    model = entry.get("model")
    name = model if isinstance(model, str) and model else f"pumps[{index}]"
    at = f"{where}:{line}: pump '{name}'"
    before = len(problems)

    for key in entry:
        if key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
            hint = " (GitLab renamed it to 'timestamp_column')" if key == "timestamp" else ""
            problems.append(f"{at}: unknown key '{key}'{hint}")
    for key in REQUIRED_KEYS:
        if key not in entry:
            problems.append(f"{at}: missing key '{key}'")

    if "model" in entry and not (isinstance(model, str) and MODEL_RE.match(model)):
        problems.append(
            f"{at}: 'model' must be a dbt model name (letters, digits, underscores), "
            f"got {_describe(model)}"
        )
    column = entry.get("timestamp_column")
    if "timestamp_column" in entry and column is not None and not _nonblank(column):
        problems.append(
            f"{at}: 'timestamp_column' must be a column name or null, got {_describe(column)}"
        )
    for key in ("sensitive", "single"):
        if key in entry and not isinstance(entry[key], bool):
            problems.append(f"{at}: '{key}' must be true or false, got {_describe(entry[key])}")
    if "owner" in entry and not _nonblank(entry["owner"]):
        problems.append(
            f"{at}: 'owner' must be a non-empty string, got {_describe(entry['owner'])}"
        )
    stage = entry.get("stage")
    if stage is not None:
        if not _nonblank(stage):
            problems.append(f"{at}: 'stage' must be a stage name, got {_describe(stage)}")
        elif stages is not None and stage not in stages:
            known = ", ".join(sorted(stages)) or "none"
            problems.append(
                f"{at}: unknown stage '{stage}' (configured stages: {known}; "
                "add it to the target's 'stages' setting)"
            )

    if len(problems) > before:
        return None
    assert isinstance(model, str)  # else a problem was added above
    return Pump(
        model=model,
        timestamp_column=column,
        sensitive=entry["sensitive"],
        owner=entry["owner"],
        single=entry.get("single", False),
        stage=stage,
        line=line,
    )


def _nonblank(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


# --------------------------------------------------------------------------- extractor selection


def meltano_selection(pumps: PumpsFile, schemas: Schemas) -> dict[str, Any]:
    """Meltano ``select`` and ``metadata`` extras for a SQL tap reading the pump schemas.

    One stream per pump (``<schema>-<model>``, as MeltanoLabs tap-postgres and tap-snowflake
    name them): INCREMENTAL on ``timestamp_column``, or FULL_TABLE when it is null.
    """
    select: list[str] = []
    metadata: dict[str, dict[str, str]] = {}
    for pump in pumps:
        stream = pump.stream_id(schemas)
        select.append(f"{stream}.*")
        if pump.incremental:
            metadata[stream] = {
                "replication-method": "INCREMENTAL",
                "replication-key": str(pump.timestamp_column),
            }
        else:
            metadata[stream] = {"replication-method": "FULL_TABLE"}
    return {"select": select, "metadata": metadata}
