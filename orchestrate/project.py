"""The Meltano project as the DAGs see it: meltano.yml (with its include_paths) and the
pgp manifests, read with PyYAML only, so DAG files parse in the Airflow venv without
running `meltano` (seconds per call) or importing the tap.

Everything is parsed once into frozen dataclasses; bad input raises ProjectError with one
line naming the file and the entry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_TYPES = ("extractors", "loaders", "utilities", "mappers", "orchestrators", "transformers")
# Every Airflow task process parses the DAG file: libyaml's loader reads the files 4x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A stream name is a SQL identifier (the tap's rule for import_db and export_table).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ProjectError(Exception):
    """meltano.yml, an included file or a manifest that the DAGs cannot use."""


@dataclass(frozen=True)
class Plugin:
    kind: str  # extractors, loaders, utilities, ...
    name: str
    inherit_from: str | None
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Job:
    name: str
    tasks: tuple[tuple[str, ...], ...]  # each task: its blocks (plugin or plugin:command)


@dataclass(frozen=True)
class Project:
    """meltano.yml merged with every file its include_paths match (Meltano's own rule:
    plugins, environments, jobs and schedules of included files add to the main file's)."""

    root: Path
    plugins: Mapping[str, Plugin]
    environments: Mapping[str, Mapping[str, Any]]  # name -> its `config.plugins` block
    jobs: Mapping[str, Job]
    schedules: Mapping[str, str]  # job -> cron interval

    @classmethod
    def load(cls, root: Path = ROOT) -> Project:
        main = root / "meltano.yml"
        documents = [(main, _read_yaml(main))]
        for pattern in documents[0][1].get("include_paths") or []:
            for path in sorted(glob(str(root / pattern), recursive=True)):
                documents.append((Path(path), _read_yaml(Path(path))))
        plugins: dict[str, Plugin] = {}
        environments: dict[str, Mapping[str, Any]] = {}
        jobs: dict[str, Job] = {}
        schedules: dict[str, str] = {}
        for path, doc in documents:
            for kind in PLUGIN_TYPES:
                for entry in (doc.get("plugins") or {}).get(kind) or []:
                    name = _name_of(entry, path, f"plugins.{kind}")
                    if name in plugins:
                        raise ProjectError(f"{path}: plugin '{name}' is declared twice")
                    plugins[name] = Plugin(
                        kind, name, entry.get("inherit_from"), entry.get("config") or {}
                    )
            for entry in doc.get("environments") or []:
                name = _name_of(entry, path, "environments")
                environments[name] = (entry.get("config") or {}).get("plugins") or {}
            for entry in doc.get("jobs") or []:
                name = _name_of(entry, path, "jobs")
                tasks = entry.get("tasks")
                if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                    raise ProjectError(f"{path}: job '{name}': tasks must be a list of strings")
                jobs[name] = Job(name, tuple(tuple(t.split()) for t in tasks))
            for entry in doc.get("schedules") or []:
                if entry.get("job") and entry.get("interval"):
                    schedules[str(entry["job"])] = str(entry["interval"])
        return cls(root, plugins, environments, jobs, schedules)

    def plugin(self, name: str) -> Plugin:
        try:
            return self.plugins[name]
        except KeyError:
            raise ProjectError(f"{self.root / 'meltano.yml'}: no plugin '{name}'") from None

    def job(self, name: str) -> Job:
        try:
            return self.jobs[name]
        except KeyError:
            raise ProjectError(f"{self.root / 'meltano.yml'}: no job '{name}'") from None

    def lineage(self, name: str) -> list[Plugin]:
        """The plugin, then its parent, grandparent... (inherit_from)."""
        chain = [self.plugin(name)]
        while chain[-1].inherit_from:
            if len(chain) > len(self.plugins):
                raise ProjectError(f"{self.root / 'meltano.yml'}: inherit_from loop at '{name}'")
            chain.append(self.plugin(chain[-1].inherit_from))
        return chain

    def setting(self, plugin: str, setting: str, environment: str) -> Any:
        """A setting as Meltano resolves it, minus the namespace-wide variables: the plugin's
        own env variable, then the environment's config, then meltano.yml's (each plugin of
        the inheritance chain in turn); $VARS expanded, MELTANO_PROJECT_ROOT included."""
        value = os.environ.get(env_var(plugin, setting))
        if value is None:
            env_plugins = self.environments.get(environment, {})
            for p in self.lineage(plugin):
                env_entry = next(
                    (e for e in env_plugins.get(p.kind) or [] if e.get("name") == p.name), None
                )
                env_config = (env_entry or {}).get("config") or {}
                if setting in env_config:
                    value = env_config[setting]
                    break
                if setting in p.config:
                    value = p.config[setting]
                    break
        return _expand(value, self.root)

    def heirs(self, name: str) -> list[str]:
        """The plugins that inherit from ``name``, directly or not."""
        return [p for p in self.plugins if name in (x.name for x in self.lineage(p)[1:])]

    def is_pgp_extractor(self, name: str) -> bool:
        """Inherits from tap-gitlab-postgres (or is it)."""
        return self.plugins.get(name) is not None and any(
            p.name == "tap-gitlab-postgres" for p in self.lineage(name)
        )


def env_var(plugin: str, setting: str) -> str:
    """Meltano's env variable of a plugin setting: tap-x--main, a_b -> TAP_X__MAIN_A_B."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"{plugin}_{setting}").upper()


def manifest_streams(path: Path, database_type: str | None) -> list[str]:
    """Stream names of a pgp manifest's tables of ``database_type`` (None: all), in file
    order, as the tap keeps and names them: a table without a type (or an empty one) is in
    every database; <import_db>_<export_table> in lower case (the tap validates the rest)."""
    doc = _read_yaml(path)
    tables = doc.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise ProjectError(f"{path}: no 'tables' mapping")
    streams: list[str] = []
    for key, table in tables.items():
        if not isinstance(table, dict):
            raise ProjectError(f"{path}: table '{key}': not a mapping")
        table_type = table.get("database_type")
        if table_type is not None and not isinstance(table_type, str):
            raise ProjectError(f"{path}: table '{key}': database_type must be a string")
        table_type = (table_type or "").strip() or None
        if database_type is not None and table_type not in (None, database_type):
            continue
        parts = [table.get("import_db"), table.get("export_table")]
        if not all(isinstance(p, str) and _NAME.fullmatch(p) for p in parts):
            raise ProjectError(
                f"{path}: table '{key}': import_db and export_table must be identifiers"
            )
        stream = f"{parts[0]}_{parts[1]}".lower()
        if stream in streams:
            raise ProjectError(f"{path}: table '{key}': stream '{stream}' appears twice")
        streams.append(stream)
    return streams


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.load(path.read_text(), Loader=_LOADER)
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ProjectError(f"{path}: expected a mapping at the top level")
    return doc


def _name_of(entry: Any, path: Path, where: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ProjectError(f"{path}: an entry of {where} has no name")
    return entry["name"]


def _expand(value: Any, root: Path) -> Any:
    if isinstance(value, str):
        return os.path.expandvars(value.replace("$MELTANO_PROJECT_ROOT", str(root)))
    if isinstance(value, dict):
        return {k: _expand(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, root) for v in value]
    return value
