"""Every generated Meltano definition is in sync with its source (no database, no network).

scripts/plugin_definitions.py regenerates, in memory, the lock files, the in-repo plugins'
meltano-plugin.yml and README settings tables (from each installed plugin's --about) and
plugins/pumps.meltano.yml (from pumps.yml); any difference from the files fails, naming the
file and the command that rewrites it. Then Meltano itself resolves the project with Meltano
Hub unreachable: the pump extractors select exactly pumps.yml's streams.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MELTANO = ROOT / ".venv" / "bin" / "meltano"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "plugin_definitions", ROOT / "scripts" / "plugin_definitions.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


definitions = _load_generator()


@pytest.fixture(scope="module")
def abouts() -> dict[str, Mapping[str, Any]]:
    abouts: dict[str, Mapping[str, Any]] = definitions.read_abouts()
    return abouts


@pytest.fixture(scope="module")
def expected(abouts: dict[str, Mapping[str, Any]]) -> dict[Path, str]:
    files: dict[Path, str] = definitions.expected_files(abouts)
    return files


def test_every_generated_file_is_current(expected: dict[Path, str]) -> None:
    stale = [str(p.relative_to(ROOT)) for p in definitions.stale_files(expected)]
    assert not stale, f"stale: {', '.join(stale)}; regenerate: {definitions.REGENERATE}"


def test_a_drifted_description_is_caught(expected: dict[Path, str], tmp_path: Path) -> None:
    """A description edited by hand (as `stages` once drifted) or cut off mid-word no
    longer matches the plugin's own text."""
    path = ROOT / "target-s3-pump" / "meltano-plugin.yml"
    text = expected[path]
    entry = yaml.safe_load(text)["plugins"]["loaders"][0]
    stages = next(s for s in entry["settings"] if s["name"] == "stages")
    assert stages["description"] in text  # one line, whole: never folded or cut
    for drifted in (
        text.replace(stages["description"], "Stage name -> {bucket, prefix}."),
        text.replace(stages["description"], stages["description"][:-7]),
    ):
        copy = tmp_path / "meltano-plugin.yml"
        copy.write_text(drifted)
        assert definitions.stale_files({copy: text}) == [copy]


def test_in_repo_settings_are_the_plugins_own(abouts: dict[str, Mapping[str, Any]]) -> None:
    """Names, descriptions and secrets of each in-repo definition are the --about's."""
    for plugin in definitions.IN_REPO:
        path = ROOT / str(plugin.source_dir) / "meltano-plugin.yml"
        (entry,) = yaml.safe_load(path.read_text())["plugins"][plugin.kind]
        known = abouts[plugin.name]["settings"]["properties"]
        assert [s["name"] for s in entry["settings"]] == list(known), path
        for setting in entry["settings"]:
            schema = known[setting["name"]]
            assert setting.get("description") == schema.get("description"), (path, setting)
            assert setting.get("sensitive", False) == schema.get("secret", False), (path, setting)


def test_readme_settings_tables_list_every_setting(abouts: dict[str, Mapping[str, Any]]) -> None:
    for plugin in definitions.IN_REPO:
        readme = (ROOT / str(plugin.source_dir) / "README.md").read_text()
        table = readme.split(definitions.README_START)[1].split(definitions.README_END)[0]
        rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
        assert set(abouts[plugin.name]["settings"]["properties"]) <= rows, plugin.name


def test_meltano_yml_declares_no_settings() -> None:
    """meltano.yml keeps what a person decides; definitions live in the generated files."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    for kind, plugins in project["plugins"].items():
        for plugin in plugins:
            declared = {"settings", "capabilities", "namespace", "executable"} & set(plugin)
            assert not declared, f"meltano.yml: {kind} {plugin['name']} declares {declared}"


def test_dbt_settings_are_what_the_profiles_read() -> None:
    """Each env_var() of a dbt profile is the `env` of a setting of its utility."""
    (utilities,) = yaml.safe_load((ROOT / "plugins" / "dbt.meltano.yml").read_text())[
        "plugins"
    ].values()
    for utility in utilities:
        adapter = utility["name"].removeprefix("dbt-")
        profile = (ROOT / "transform" / "profiles" / adapter / "profiles.yml").read_text()
        read = set(re.findall(r"env_var\('(DBT_[A-Z_]+)'", profile))
        exported = {s["env"] for s in utility["settings"]}
        assert read <= exported, (utility["name"], read - exported)


def _meltano(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_PUMPS"))},
        # Nothing may come from Meltano Hub: its address goes nowhere.
        "MELTANO_HUB_URL": "http://127.0.0.1:9",
        "MELTANO_HUB_API_ROOT": "http://127.0.0.1:9/meltano/api/v1",
    }
    return subprocess.run(
        [str(MELTANO), "--log-level=warning", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_meltano_resolves_the_pump_selection_from_pumps_yml_alone() -> None:
    """Plain Meltano (no make, no eval, Hub unreachable): each pump extractor selects
    exactly the streams pumps.yml lists, INCREMENTAL on timestamp_column or FULL_TABLE."""
    pumps = yaml.safe_load((ROOT / "pumps.yml").read_text())["pumps"]
    schema = {False: "pumps", True: "pumps_sensitive"}
    expected_select = [f"{schema[bool(p['sensitive'])]}-{p['model']}.*" for p in pumps]
    calls = {
        (env, extractor): ("--environment", env, "config", "print", "--extras", extractor)
        for env, extractor in (("dev", "tap-pumps"), ("prod", "tap-pumps-snowflake"))
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(calls, pool.map(lambda a: _meltano(*a), calls.values()), strict=True))
    for (env, extractor), proc in results.items():
        assert proc.returncode == 0, f"{env} {extractor}: {proc.stderr}"
        extras = json.loads(proc.stdout)
        assert extras["_select"] == expected_select, (extractor, extras["_select"])
        assert extras["_use_cached_catalog"] is False, extractor  # a new pump model is seen
        for pump in pumps:
            stream = f"{schema[bool(pump['sensitive'])]}-{pump['model']}"
            column = pump["timestamp_column"]
            assert extras["_metadata"][stream] == (
                {"replication-method": "INCREMENTAL", "replication-key": column}
                if column
                else {"replication-method": "FULL_TABLE"}
            ), (extractor, stream)
        assert set(extras["_metadata"]) == {s.removesuffix(".*") for s in expected_select}


# Names that hold a secret (a private key's path does not).
SECRET_NAME = re.compile(r"password|secret|private_key$|token|passphrase|sqlalchemy_url|ssh_tunnel")


def test_every_secret_is_sensitive(expected: dict[Path, str]) -> None:
    """Meltano masks sensitive settings in `config list` and logs; a secret the plugin
    forgot to mark `secret` is marked here (Plugin.secrets), never printed."""
    for path, text in expected.items():
        if path.suffix == ".lock":
            settings = json.loads(text)["settings"]
        elif path.name == "meltano-plugin.yml":
            (entry,) = next(iter(yaml.safe_load(text)["plugins"].values()))
            settings = entry["settings"]
        else:
            continue
        plain = [s["name"] for s in settings if SECRET_NAME.search(s["name"])]
        plain = [
            n for n in plain if not next(s for s in settings if s["name"] == n).get("sensitive")
        ]
        assert not plain, f"{path.relative_to(ROOT)}: not sensitive: {plain}"
