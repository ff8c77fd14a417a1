"""Allow lists of internal GitLab projects and namespaces (the dbt seed CSVs).

pgp filled the ``{INTERNAL_*}`` placeholders of ``additional_filtering`` from
these lists. We render them as SQL lists ourselves: pgp used Python tuple
reprs, which give invalid SQL for one element (``(1,)``) and for none (``()``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tap_gitlab_postgres.sqltext import sql_string

# ASCII only: int() also accepts other Unicode digits and "1_000".
_INT_RE = re.compile(r"-?[0-9]+")

_T = TypeVar("_T")


class AllowListError(ValueError):
    """An allow-list CSV is missing or malformed; the message names file and line."""


@dataclass(frozen=True)
class AllowLists:
    project_ids: tuple[int, ...] = ()
    namespace_ids: tuple[int, ...] = ()
    project_paths: tuple[str, ...] = ()
    namespace_paths: tuple[str, ...] = ()

    @classmethod
    def empty(cls) -> AllowLists:
        return cls()

    @classmethod
    def load(cls, projects_csv: Path | None, namespaces_csv: Path | None) -> AllowLists:
        """Read the seed CSVs; ``None`` means that list is empty."""
        project_ids, project_paths = (
            _read_csv(Path(projects_csv), "project_id", "project_path")
            if projects_csv
            else ((), ())
        )
        namespace_ids, namespace_paths = (
            _read_csv(Path(namespaces_csv), "namespace_id", "namespace_path")
            if namespaces_csv
            else ((), ())
        )
        return cls(project_ids, namespace_ids, project_paths, namespace_paths)

    def placeholder_values(self) -> dict[str, str]:
        """SQL list text for each ``{INTERNAL_*}`` placeholder."""
        return {
            "INTERNAL_PROJECT_IDS": _sql_list(str(i) for i in self.project_ids),
            "INTERNAL_NAMESPACE_IDS": _sql_list(str(i) for i in self.namespace_ids),
            "INTERNAL_PROJECT_PATHS": _sql_list(map(sql_string, self.project_paths)),
            "INTERNAL_NAMESPACE_PATHS": _sql_list(map(sql_string, self.namespace_paths)),
            "INTERNAL_PATHS": _sql_list(
                map(sql_string, _unique((*self.namespace_paths, *self.project_paths)))
            ),
        }


def _sql_list(items: Iterable[str]) -> str:
    # `x IN (NULL)` matches no row, where `x IN ()` would be a syntax error.
    return "(" + (", ".join(items) or "NULL") + ")"


def _unique(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def _read_csv(
    path: Path, id_column: str, path_column: str
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(_rows(path, handle, id_column, path_column))
    except FileNotFoundError:
        raise AllowListError(f"{path}: allow-list file not found") from None
    except OSError as exc:
        raise AllowListError(f"{path}: cannot read allow-list file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise AllowListError(f"{path}: not UTF-8 text: {exc.reason}") from None
    except csv.Error as exc:
        raise AllowListError(f"{path}: invalid CSV: {exc}") from None
    return _unique(i for i, _ in rows), _unique(p for _, p in rows)


def _rows(
    path: Path, handle: Iterable[str], id_column: str, path_column: str
) -> Iterator[tuple[int, str]]:
    reader = csv.reader(handle)
    header = [name.strip() for name in next(reader, [])]
    missing = [c for c in (id_column, path_column) if c not in header]
    if missing:
        raise AllowListError(
            f"{path}:1: header must contain columns {id_column},{path_column}; "
            f"missing {', '.join(missing)} (got {','.join(header) or 'an empty file'})"
        )
    id_index, path_index = header.index(id_column), header.index(path_column)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank line
        where = f"{path}:{reader.line_num}"
        if len(row) != len(header):
            raise AllowListError(f"{where}: expected {len(header)} fields, got {len(row)}")
        raw_id, raw_path = row[id_index].strip(), row[path_index].strip()
        if not _INT_RE.fullmatch(raw_id):
            raise AllowListError(f"{where}: {id_column} must be an integer, got {raw_id!r}")
        if not raw_path:
            raise AllowListError(f"{where}: {path_column} is empty")
        if "\x00" in raw_path:
            raise AllowListError(f"{where}: {path_column} contains a NUL character")
        yield int(raw_id), raw_path
