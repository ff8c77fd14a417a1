"""The part of dbt's Jinja context this project's SQL calls, for sqlfluff's `jinja` templater.

sqlfluff (transform/.sqlfluff: `library_path`) exposes the names of this module to the
templates, next to its own dbt builtins (ref, source, config, var, return). The stand-ins
render what dbt-postgres renders, so the linter sees the dev warehouse's SQL, without dbt
or a database in the linter's venv.
"""

from types import SimpleNamespace
from typing import Any

import jinja2

# As in a real `dbt run`: render the branches that query the warehouse at compile time
# (macros/deletes/pgp_flag_deletes.sql, tests/assert_raw_matches_pgp_row_counts.sql).
execute = True


@jinja2.pass_context
def _dispatch(context: jinja2.runtime.Context, macro_name: str) -> Any:
    """adapter.dispatch on Postgres: `postgres__<name>`, else `default__<name>`."""
    for candidate in (f"postgres__{macro_name}", f"default__{macro_name}"):
        macro = context.resolve_or_missing(candidate)
        if macro is not jinja2.runtime.missing:
            return macro
    raise jinja2.UndefinedError(f"macro {macro_name!r}: no postgres__ or default__ implementation")


def _get_relation(database: Any, schema: Any, identifier: Any) -> str:
    """An existing relation: the branch for a warehouse that has the table is linted."""
    return f"{database}.{schema}.{identifier}"


adapter = SimpleNamespace(dispatch=_dispatch, get_relation=_get_relation)

# dbt's cross-database macros, as dbt-postgres renders them.
dbt = SimpleNamespace(
    hash=lambda field: f"md5(cast({field} as varchar))",
    concat=lambda fields: " || ".join(fields),
    bool_or=lambda expression: f"bool_or({expression})",
    position=lambda substring, string: f"position({substring} in {string})",
    type_string=lambda: "varchar",
    type_bigint=lambda: "bigint",
    type_float=lambda: "float",
    type_numeric=lambda: "numeric(28,6)",
    type_timestamp=lambda: "timestamp",
)


def run_query(sql: str) -> SimpleNamespace:
    """A one-column result with one row: a single RAW table (one stream) to render over."""
    return SimpleNamespace(columns=[SimpleNamespace(values=lambda: ["gitlab_db_issues"])])
