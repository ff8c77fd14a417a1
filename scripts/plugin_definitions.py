"""Regenerate every Meltano definition that is derived from a plugin or from pumps.yml.

    .venv/bin/python scripts/plugin_definitions.py           # write them (`make definitions`)
    .venv/bin/python scripts/plugin_definitions.py --check   # exit 1 naming each stale file
    .venv/bin/python scripts/plugin_definitions.py --pumps-only [--check]   # pumps.yml's part

What it writes, each from the source that owns the facts:

- ``plugins/<type>/<name>--<variant>.lock``: the MeltanoLabs plugins' definitions, from the
  installed package's ``--about --format=json``. Meltano reads an existing lock file instead
  of asking Meltano Hub, so the project needs no Hub (``meltano lock`` would need it).
- ``<plugin dir>/meltano-plugin.yml``: the in-repo plugins' entries (``include_paths``); the
  definition keys come from ``--about``, any other key (``config``, ...) is kept as written.
- the ``## Settings`` table of each in-repo plugin's README, from ``--about --format=markdown``.
- ``plugins/pumps.meltano.yml``: the pump extractors' ``select``/``metadata``, from pumps.yml.

The abouts come from the plugin venvs that ``meltano install`` made under ``.meltano/``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meltano.core.plugin.base import StandalonePlugin
from ruamel.yaml import YAML
from singer_sdk.about import AboutInfo, MarkdownFormatter
from target_s3_pump.pumps import PumpsFileError, Schemas, load_pumps, meltano_selection

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = ".venv/bin/python scripts/plugin_definitions.py (make definitions)"
README_START = (
    "<!-- settings: generated from `--about --format=markdown` by scripts/plugin_definitions.py;"
    " do not edit -->"
)
README_END = "<!-- settings: end -->"


@dataclass(frozen=True)
class Plugin:
    """A plugin whose definition is generated from its --about, and where that goes."""

    kind: str  # Meltano's plugin type: extractors, loaders
    name: str  # its name in the project
    executable: str
    label: str
    pip_url: str
    namespace: str
    variant: str | None = None  # set: a third-party plugin, locked under plugins/
    source_dir: str | None = None  # set: an in-repo plugin, defined beside its code
    # Secrets its --about does not mark `secret`: Meltano must still never print them.
    secrets: tuple[str, ...] = ()

    @property
    def installed_executable(self) -> Path:
        # Meltano's venv of a plugin that inherits from none is .meltano/<type>/<name>.
        return ROOT / ".meltano" / self.kind / self.name / "venv" / "bin" / self.executable


THIRD_PARTY = (
    Plugin(
        "extractors",
        "tap-postgres",
        "tap-postgres",
        "PostgreSQL",
        "meltanolabs-tap-postgres",
        "tap_postgres",
        variant="meltanolabs",
        secrets=("ssh_tunnel", "ssl_client_private_key"),
    ),
    Plugin(
        "loaders",
        "target-postgres",
        "target-postgres",
        "PostgreSQL",
        "meltanolabs-target-postgres",
        "target_postgres",
        variant="meltanolabs",
        secrets=("password", "sqlalchemy_url", "ssh_tunnel", "ssl_client_private_key"),
    ),
    Plugin(
        "loaders",
        "target-snowflake",
        "target-snowflake",
        "Snowflake",
        "meltanolabs-target-snowflake",
        "target_snowflake",
        variant="meltanolabs",
        secrets=("password", "private_key_passphrase"),
    ),
)
IN_REPO = (
    Plugin(
        "extractors",
        "tap-gitlab-postgres",
        "tap-gitlab-postgres",
        "GitLab postgres_pipeline (pgp)",
        "-e ./tap-gitlab-postgres",
        "tap_gitlab_postgres",
        source_dir="tap-gitlab-postgres",
    ),
    # MeltanoLabs tap-snowflake plus DATE bookmarks; named for what it is, so the pump
    # extractor tap-pumps-snowflake (plugins/pumps.meltano.yml) can inherit from it.
    Plugin(
        "extractors",
        "tap-snowflake",
        "tap-pumps-snowflake",
        "Snowflake (MeltanoLabs tap-snowflake, DATE bookmarks)",
        "-e ./tap-pumps-snowflake",
        "tap_snowflake",
        source_dir="tap-pumps-snowflake",
    ),
    Plugin(
        "loaders",
        "target-s3-pump",
        "target-s3-pump",
        "S3 Data Pump",
        "-e ./target-s3-pump",
        "target_s3_pump",
        source_dir="target-s3-pump",
    ),
)
# The pump extractors of the jobs `pump` (dev) and `pump-prod`, and the readers they inherit.
PUMP_EXTRACTORS = {"tap-pumps": "tap-postgres", "tap-pumps-snowflake": "tap-snowflake"}
PUMPS_FILE = "pumps.yml"
PUMPS_MELTANO_FILE = "plugins/pumps.meltano.yml"
# The keys of an in-repo entry that are generated; the others are the project's own.
GENERATED_KEYS = (
    "name",
    "namespace",
    "label",
    "description",
    "pip_url",
    "executable",
    "capabilities",
    "settings",
)


class DefinitionError(Exception):
    """A plugin that cannot describe itself (not installed, a broken --about)."""


def _yaml() -> YAML:
    yaml = YAML()
    yaml.indent(mapping=2, sequence=2, offset=0)
    yaml.width = 4096  # one line per description: never cut one up
    return yaml


def about(plugin: Plugin) -> Mapping[str, Any]:
    """The installed plugin's ``--about --format=json``."""
    cmd = [str(plugin.installed_executable), "--about", "--format", "json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    except FileNotFoundError:
        raise DefinitionError(
            f"{plugin.name}: {cmd[0]} not found; install the plugins first (make bootstrap)"
        ) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DefinitionError(f"{plugin.name}: `{' '.join(cmd)}` failed: {last}")
    try:
        info: Mapping[str, Any] = json.loads(proc.stdout)
    except ValueError as exc:
        raise DefinitionError(f"{plugin.name}: `{' '.join(cmd)}`: {exc}") from None
    return info


def read_abouts() -> dict[str, Mapping[str, Any]]:
    """Every plugin's about, three at a time (each starts a Python)."""
    plugins = [*THIRD_PARTY, *IN_REPO]
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip((p.name for p in plugins), pool.map(about, plugins), strict=True))


def about_markdown(info: Mapping[str, Any]) -> str:
    """What ``--about --format=markdown`` prints, rendered by singer-sdk's own formatter from
    the JSON (one process per plugin instead of two)."""
    about_info = AboutInfo(
        name=info["name"],
        description=info.get("description"),
        version=info.get("version", ""),
        sdk_version=info.get("sdk_version", ""),
        supported_python_versions=info.get("supported_python_versions"),
        capabilities=info.get("capabilities", []),
        settings=info["settings"],
        env_var_prefix=info.get("env_var_prefix", ""),
    )
    return MarkdownFormatter().format_about(about_info)


def _kind(schema: Mapping[str, Any]) -> str:
    """Meltano's setting kind for a JSON schema property."""
    types = schema.get("type", "string")
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    if "enum" in schema:
        return "options"
    first = types[0] if types else "string"
    if first == "string" and schema.get("format") == "date-time":
        return "date_iso8601"
    return {"number": "decimal"}.get(first, first)


def setting(name: str, schema: Mapping[str, Any], *, secret: bool = False) -> dict[str, Any]:
    """One Meltano setting from a property of the plugin's config schema. No `value`: a
    default written here would be sent as config, and the plugin's own must stay in charge."""
    out: dict[str, Any] = {"name": name, "kind": _kind(schema)}
    if out["kind"] == "options":
        out["options"] = [{"label": str(v), "value": v} for v in schema["enum"] if v is not None]
    if schema.get("description"):
        out["description"] = schema["description"]
    if secret or schema.get("secret"):
        out["sensitive"] = True
    return out


def definition(plugin: Plugin, info: Mapping[str, Any]) -> dict[str, Any]:
    """The plugin's Meltano definition, in the key order `meltano lock` writes."""
    properties = info["settings"]["properties"]
    if unknown := set(plugin.secrets) - set(properties):
        raise DefinitionError(f"{plugin.name}: secrets {sorted(unknown)} are not its settings")
    entry: dict[str, Any] = {
        "name": plugin.name,
        "namespace": plugin.namespace,
        "label": plugin.label,
        "description": info.get("description"),
        "pip_url": plugin.pip_url,
        "executable": plugin.executable,
        "capabilities": list(info.get("capabilities", [])),
        "settings": [setting(k, v, secret=k in plugin.secrets) for k, v in properties.items()],
    }
    return {k: v for k, v in entry.items() if v is not None}


def lock_file(plugin: Plugin, info: Mapping[str, Any]) -> tuple[Path, str]:
    """plugins/<type>/<name>--<variant>.lock, as Meltano's PluginLockService writes it."""
    locked = StandalonePlugin(
        plugin_type=plugin.kind, variant=plugin.variant, **definition(plugin, info)
    )
    path = ROOT / "plugins" / plugin.kind / f"{plugin.name}--{plugin.variant}.lock"
    return path, json.dumps(locked.canonical(), indent=2) + "\n"


def include_file(plugin: Plugin, info: Mapping[str, Any]) -> tuple[Path, str]:
    """<plugin dir>/meltano-plugin.yml: the generated keys, the project's own keys kept."""
    path = ROOT / str(plugin.source_dir) / "meltano-plugin.yml"
    yaml = _yaml()
    data = yaml.load(path.read_text(encoding="utf-8")) if path.exists() else None
    if data is None:
        data = yaml.load(f"plugins:\n  {plugin.kind}:\n  - name: {plugin.name}\n")
        data.yaml_set_start_comment(
            f"The Meltano definition of {plugin.name}; meltano.yml includes it. name ... settings\n"
            f"are generated from `{plugin.executable} --about` (make definitions); the keys after\n"
            "them are the project's own and are kept."
        )
    (entry,) = data["plugins"][plugin.kind]
    own = {k: v for k, v in entry.items() if k not in GENERATED_KEYS}
    entry.clear()
    entry.update(definition(plugin, info))
    entry.update(own)
    return path, _dump(yaml, data)


def readme(plugin: Plugin, info: Mapping[str, Any]) -> tuple[Path, str]:
    """The README with its settings table replaced by the one of --about --format=markdown."""
    path = ROOT / str(plugin.source_dir) / "README.md"
    text = path.read_text(encoding="utf-8")
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise DefinitionError(
            f"{path.relative_to(ROOT)}: needs the lines {README_START} and {README_END}"
        )
    table = _settings_table(plugin, about_markdown(info))
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    return path, f"{head}{README_START}\n{table}{README_END}{tail}"


def _settings_table(plugin: Plugin, markdown: str) -> str:
    lines = markdown.splitlines()
    try:
        start = lines.index("## Settings") + 1
    except ValueError:
        raise DefinitionError(
            f"{plugin.name}: --about --format=markdown has no Settings section"
        ) from None
    body = [line for line in lines[start:] if line.startswith("|")]
    if not body:
        raise DefinitionError(
            f"{plugin.name}: --about --format=markdown has an empty Settings table"
        )
    return "\n" + "\n".join(body) + "\n\n"


def pump_extractors(pumps_path: Path) -> list[dict[str, Any]]:
    """The pump extractors' entries: each selects the pumps of ``pumps_path``."""
    selection = meltano_selection(load_pumps(pumps_path, stages=None), Schemas())
    return [
        {"name": name, "inherit_from": parent, **copy.deepcopy(selection)}
        for name, parent in PUMP_EXTRACTORS.items()
    ]


def pumps_file() -> tuple[Path, str]:
    """plugins/pumps.meltano.yml: what the pump extractors read, from pumps.yml alone."""
    header = (
        f"# Generated from {PUMPS_FILE} by {REGENERATE}: do not edit.\n"
        "# The pump extractors read exactly the pumps listed there: one stream per pump,\n"
        "# INCREMENTAL on its timestamp_column, FULL_TABLE when that is null.\n"
    )
    extractors = pump_extractors(ROOT / PUMPS_FILE)
    return ROOT / PUMPS_MELTANO_FILE, header + _dump(
        _yaml(), {"plugins": {"extractors": extractors}}
    )


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def expected_files(abouts: Mapping[str, Mapping[str, Any]] | None = None) -> dict[Path, str]:
    """Every generated file with the content it must have."""
    abouts = read_abouts() if abouts is None else abouts
    files = dict(lock_file(p, abouts[p.name]) for p in THIRD_PARTY)
    for plugin in IN_REPO:
        files.update([include_file(plugin, abouts[plugin.name])])
        files.update([readme(plugin, abouts[plugin.name])])
    files.update([pumps_file()])
    return files


def stale_files(files: Mapping[Path, str]) -> list[Path]:
    return [
        p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument(
        "--pumps-only", action="store_true", help=f"only {PUMPS_MELTANO_FILE} (no plugin runs)"
    )
    args = parser.parse_args(argv)
    try:
        files = dict([pumps_file()]) if args.pumps_only else expected_files()
    except DefinitionError as exc:
        print(f"plugin_definitions: error: {exc}", file=sys.stderr)
        return 1
    except PumpsFileError as exc:  # one line per problem, each naming pumps.yml
        for problem in exc.problems:
            print(f"plugin_definitions: error: {problem}", file=sys.stderr)
        return 1
    stale = stale_files(files)
    for path in stale:
        rel = path.relative_to(ROOT)
        if args.check:
            print(
                f"plugin_definitions: error: {rel} is stale; regenerate: {REGENERATE}",
                file=sys.stderr,
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path], encoding="utf-8")
            print(f"plugin_definitions: wrote {rel}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
