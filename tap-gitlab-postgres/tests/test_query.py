from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlglot
import yaml
from pgp_testkit.reference import REFERENCE, reference_dir
from sqlglot import exp

from tap_gitlab_postgres.allowlist import AllowLists
from tap_gitlab_postgres.query import QueryError, QueryTemplate, Window

ALLOW = AllowLists(project_ids=(1, 2), namespace_ids=(3,), project_paths=("a/b", "it's"))
EMPTY = AllowLists.empty()
BEGIN = datetime(2024, 1, 1, tzinfo=UTC)

BETWEEN_STYLE = """SELECT id
, updated_at
FROM boards
WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp
  AND '{END_TIMESTAMP}'::timestamp"""
HOURS_STYLE = """SELECT id, updated_at FROM ci_stages
WHERE updated_at BETWEEN '{EXECUTION_DATE}'::timestamp - interval '{HOURS} hours'
  AND '{EXECUTION_DATE}'::timestamp"""
DAYS_STYLE = """SELECT id, updated_at FROM usage_data
WHERE updated_at BETWEEN '{EXECUTION_DATE}'::timestamp - interval '{DAYS} day'
  AND '{EXECUTION_DATE}'::timestamp"""


def parse(query: str, filtering: str | None = None, pk: str = "id") -> QueryTemplate:
    return QueryTemplate.parse(query, filtering, pk)


def window(hours: float) -> Window:
    return Window(BEGIN, BEGIN + timedelta(hours=hours))


# --- window rendering -----------------------------------------------------------


def test_between_style_renders_window() -> None:
    sql = parse(BETWEEN_STYLE).window_sql(window(96), EMPTY)
    assert sql.endswith(
        "WHERE updated_at BETWEEN '2024-01-01T00:00:00'::timestamp\n"
        "  AND '2024-01-05T00:00:00'::timestamp"
    )


def test_execution_date_hours_style_renders_window() -> None:
    sql = parse(HOURS_STYLE).window_sql(window(48), EMPTY)
    assert sql.endswith(
        "BETWEEN '2024-01-03T00:00:00'::timestamp - interval '48 hours'\n"
        "  AND '2024-01-03T00:00:00'::timestamp"
    )


def test_execution_date_days_style_renders_window() -> None:
    sql = parse(DAYS_STYLE).window_sql(window(36), EMPTY)
    assert "'2024-01-02T12:00:00'::timestamp - interval '1.5 day'" in sql


@pytest.mark.parametrize(
    ("length", "hours", "days"),
    [
        (timedelta(hours=96), "96", "4"),
        (timedelta(hours=1), "1", "0.041666666667"),
        (timedelta(hours=36), "36", "1.5"),
        (timedelta(seconds=1), "0.000277777778", "0.000011574075"),
        (timedelta(microseconds=1), "0.000000000278", "0.000000000012"),
        (timedelta(0), "0", "0"),
    ],
)
def test_hours_and_days_round_up(length: timedelta, hours: str, days: str) -> None:
    values = Window(BEGIN, BEGIN + length).placeholder_values()
    assert (values["HOURS"], values["DAYS"]) == (hours, days)


def test_timestamps_are_utc_with_optional_microseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    values = Window(
        datetime(2024, 1, 1, 2, 0, tzinfo=plus_two),
        datetime(2024, 1, 1, 3, 0, 0, 250, tzinfo=plus_two),
    ).placeholder_values()
    assert values["BEGIN_TIMESTAMP"] == "2024-01-01T00:00:00"
    assert values["END_TIMESTAMP"] == values["EXECUTION_DATE"] == "2024-01-01T01:00:00.000250"


def test_window_rejects_naive_and_reversed() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2024, 1, 1), BEGIN)
    with pytest.raises(ValueError, match="after end"):
        Window(BEGIN + timedelta(hours=1), BEGIN)


def test_double_percent_means_percent() -> None:
    template = parse(
        "SELECT id, CASE WHEN name ilike '%%dast%%' THEN 'dast' END AS kind, updated_at"
        " FROM ci_builds WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp"
        " AND '{END_TIMESTAMP}'::timestamp"
    )
    assert "ilike '%dast%'" in template.window_sql(window(1), EMPTY)
    assert "ILIKE '%dast%'" in template.full_sql(EMPTY)
    scd = parse("SELECT id FROM t WHERE name LIKE 'x%%'")
    assert scd.full_sql(EMPTY) == "SELECT id FROM t WHERE name LIKE 'x%'"


def test_literal_braces() -> None:
    template = parse("SELECT id FROM t WHERE tags @> '{{a}}'::text[]")
    assert template.placeholders == frozenset()
    assert template.full_sql(EMPTY) == "SELECT id FROM t WHERE tags @> '{a}'::text[]"


def test_substituted_values_are_not_rendered_again() -> None:
    allow = AllowLists(project_paths=("{BEGIN_TIMESTAMP}", "100%%"))
    template = parse("SELECT id, path FROM routes", "WHERE path IN {INTERNAL_PROJECT_PATHS}")
    assert template.full_sql(allow).endswith("WHERE path IN ('{BEGIN_TIMESTAMP}', '100%%')")


# --- full sync, chunks ----------------------------------------------------------


def test_full_sql_drops_window_and_keeps_filtering() -> None:
    template = parse(
        BETWEEN_STYLE.replace("id\n", "id\n, project_id\n, group_id\n"),
        "AND (project_id in {INTERNAL_PROJECT_IDS} OR group_id in {INTERNAL_NAMESPACE_IDS})",
    )
    assert template.replication_key == "updated_at"
    assert template.full_sql(ALLOW) == (
        "SELECT id, project_id, group_id, updated_at FROM boards"
        " WHERE (project_id IN (1, 2) OR group_id IN (3))"
    )
    assert template.window_sql(window(1), ALLOW).endswith(
        "AND (project_id in (1, 2) OR group_id in (3))"
    )


def test_full_sql_without_other_conditions_has_no_where() -> None:
    assert parse(HOURS_STYLE).full_sql(EMPTY) == "SELECT id, updated_at FROM ci_stages"


def test_empty_allow_list_matches_nothing_but_parses() -> None:
    template = parse(BETWEEN_STYLE, "AND id IN {INTERNAL_PROJECT_IDS}")
    for sql in (template.full_sql(EMPTY), template.window_sql(window(1), EMPTY)):
        assert "IN (NULL)" in sql.replace("in (NULL)", "IN (NULL)")
        sqlglot.parse_one(sql, read="postgres")


def test_scd_query_is_text_plus_filtering() -> None:
    template = parse(
        "SELECT project_id\n, pipeline_id\nFROM ci_pipeline_metadata",
        "WHERE project_id in {INTERNAL_PROJECT_IDS}",
        "pipeline_id",
    )
    assert not template.is_windowed
    assert template.replication_key is None
    assert template.full_sql(ALLOW) == (
        "SELECT project_id\n, pipeline_id\nFROM ci_pipeline_metadata WHERE project_id in (1, 2)"
    )
    with pytest.raises(QueryError, match="no time window"):
        template.window_sql(window(1), ALLOW)


def test_comparison_style_window() -> None:
    template = parse(
        "SELECT id, created_at FROM audit_events"
        " WHERE '{BEGIN_TIMESTAMP}'::timestamp <= created_at"
        " AND created_at < '{END_TIMESTAMP}'::timestamp AND author_id > 0"
    )
    assert template.replication_key == "created_at"
    assert template.full_sql(EMPTY) == "SELECT id, created_at FROM audit_events WHERE author_id > 0"


def test_chunk_sql() -> None:
    template = parse(BETWEEN_STYLE)
    full = template.full_sql(EMPTY)
    assert template.chunk_sql(EMPTY, None, 100) == (
        f'SELECT * FROM (\n{full}\n) AS pgp_chunk WHERE "id" <= 100 ORDER BY "id"'
    )
    assert template.chunk_sql(EMPTY, 100, 200) == (
        f'SELECT * FROM (\n{full}\n) AS pgp_chunk WHERE "id" > 100 AND "id" <= 200 ORDER BY "id"'
    )


def test_chunk_bound_sql() -> None:
    template = parse(BETWEEN_STYLE)
    full = template.full_sql(EMPTY)
    assert template.chunk_bound_sql(EMPTY, None, 5000) == (
        f'SELECT max("id") FROM (SELECT "id" FROM (\n{full}\n) AS pgp_q'
        ' WHERE "id" IS NOT NULL ORDER BY "id" LIMIT 5000) AS pgp_bound'
    )
    assert 'WHERE "id" > 7 ORDER BY' in template.chunk_bound_sql(EMPTY, 7, 10)


def test_text_keys_are_quoted() -> None:
    template = parse("SELECT name, x FROM t", pk="name")
    sql = template.chunk_sql(EMPTY, "it's", "z\\")
    assert "\"name\" > 'it''s' AND \"name\" <= 'z\\'" in sql
    sqlglot.parse_one(sql, read="postgres")
    with pytest.raises(TypeError):
        template.chunk_sql(EMPTY, True, 2)
    with pytest.raises(ValueError):
        template.chunk_bound_sql(EMPTY, None, 0)


def test_limited_and_probe_sql() -> None:
    template = parse(BETWEEN_STYLE)
    full = template.full_sql(EMPTY)
    assert template.limited_sql(EMPTY, 100000) == (
        f'SELECT * FROM (\n{full}\n) AS pgp_q WHERE "id" IS NOT NULL ORDER BY "id" LIMIT 100000'
    )
    assert template.probe_sql(EMPTY) == f"SELECT * FROM (\n{full}\n) AS pgp_probe LIMIT 0"


def test_wrappers_survive_trailing_line_comment() -> None:
    template = parse("SELECT id FROM t -- trailing comment")
    sqlglot.parse_one(template.probe_sql(EMPTY), read="postgres")
    assert template.probe_sql(EMPTY).endswith("\n) AS pgp_probe LIMIT 0")


def test_primary_key_expression_resolves_to_alias() -> None:
    # As in GitLab's deployment_merge_requests / repository_languages.
    template = parse(
        "SELECT project_id\n, programming_language_id\n"
        ", CONCAT(project_id, '_', programming_language_id) AS project_programming_language_id\n"
        "FROM repository_languages",
        pk="CONCAT(project_id, '_', programming_language_id)",
    )
    assert template.primary_key == "project_programming_language_id"
    assert "\"project_programming_language_id\" <= '9_9'" in template.chunk_sql(EMPTY, None, "9_9")


def test_primary_key_is_folded_like_postgres() -> None:
    assert parse("SELECT ID FROM t", pk="ID").primary_key == "id"
    assert parse("SELECT * FROM t", pk="anything").primary_key == "anything"


def test_postgres_syntax_survives_regeneration() -> None:
    template = parse(
        "SELECT id, data->>'key' AS k, data #>> '{{a,b}}' AS ab, tags @> ARRAY['x'] AS has_x,"
        " x::text AS xt, name ~* '^a' AS re, CASE WHEN a IS DISTINCT FROM b THEN 1 END AS d,"
        " updated_at FROM t WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp"
        " AND '{END_TIMESTAMP}'::timestamp AND name ILIKE '%%x%%'"
        " AND created_at > now() - interval '3 days'"
    )
    full = template.full_sql(EMPTY)
    for fragment in ("->> 'key'", "#>> '{a,b}'", "@> ARRAY['x']", "ILIKE '%x%'", "~* '^a'"):
        assert fragment in full
    assert "IS DISTINCT FROM" in full
    assert "INTERVAL '3 DAYS'" in full.upper()


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "filtering", "pk", "message"),
    [
        ("SELECT id FROM t WHERE x = '{FOO}'", None, "id", r"unknown placeholder \{FOO\}"),
        (
            "SELECT id FROM t",
            "AND x = {HOME}",
            "id",
            r"additional_filtering has unknown placeholder",
        ),
        ("SELECT id FROM t WHERE x = '{}'", None, "id", r"unknown placeholder \{\}"),
        ("SELECT id FROM t WHERE x = '{HOURS:>3}'", None, "id", "format spec"),
        ("SELECT id FROM t WHERE x = '{'", None, "id", "unbalanced braces"),
        ("SELECT id FROM t WHERE a = '{{a,b}'", None, "id", "unbalanced braces"),
        ("SELECT id FROM t WHERE u > '{END_TIMESTAMP}'", None, "id", "not incremental"),
        (
            BETWEEN_STYLE,
            "AND updated_at < '{END_TIMESTAMP}'",
            "id",
            "time-window placeholders belong in import_query",
        ),
        (
            "SELECT id FROM t WHERE (u > '{BEGIN_TIMESTAMP}' OR c > '{BEGIN_TIMESTAMP}')",
            None,
            "id",
            "not `<column> BETWEEN",
        ),
        (
            "SELECT id, '{BEGIN_TIMESTAMP}' AS b FROM t WHERE u > '{BEGIN_TIMESTAMP}'",
            None,
            "id",
            "outside the top-level WHERE",
        ),
        (
            "SELECT id FROM t WHERE u > '{BEGIN_TIMESTAMP}' AND c < '{END_TIMESTAMP}'",
            None,
            "id",
            "different columns: c, u",
        ),
        ("SELECT id FROM t WHERE u > {BEGIN_TIMESTAMP}", None, "id", "must be inside quotes"),
        ("SELECT id FROM t -- '{BEGIN_TIMESTAMP}'", None, "id", "compared with a column"),
        (
            "SELECT id, count(*) FROM t WHERE u > '{BEGIN_TIMESTAMP}' GROUP BY id",
            None,
            "id",
            "needs an alias",
        ),
        ("SELECT id FROM t WHERE", None, "id", "does not parse"),
        ("SELECT id FROM t", "AND x = 1", "id", "after appending additional_filtering"),
        (BETWEEN_STYLE, "WHERE x = 1", "id", "after appending additional_filtering"),
        ("SELECT id FROM t -- note", "WHERE x = 1", "id", "swallowed by a trailing '--'"),
        ("SELECT id FROM t;", None, "id", "without ';'"),
        ("SELECT 1; SELECT 2", None, "id", "without ';'"),
        ("DELETE FROM t", None, "id", "must be a SELECT"),
        ("SELECT 'abc FROM t", None, "id", "does not parse"),
        ("SELECT a FROM t", None, "id", "'id' is not a column"),
        ("SELECT a FROM t", None, "a, b", "must be a column name, or an expression"),
        ("SELECT __pgp_x FROM t", None, "id", "reserved text"),
    ],
)
def test_invalid_queries(query: str, filtering: str | None, pk: str, message: str) -> None:
    with pytest.raises(QueryError, match=message) as exc:
        parse(query, filtering, pk)
    assert "\n" not in str(exc.value)


# --- GitLab's real manifests --------------------------------------------------------


def _reference_tables() -> list[tuple[str, dict]]:
    reference_dir()
    return [
        (f"{path.name}:{key}", table)
        for path in sorted(REFERENCE.glob("*manifest.yaml"))
        for key, table in yaml.safe_load(path.read_text())["tables"].items()
    ]


def _conjuncts(node: exp.Expression | None) -> list[str]:
    if node is None:
        return []
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [_sql(node)]


def _sql(node: exp.Expression) -> str:
    return node.sql(dialect="postgres", comments=False)


def _unwrapped(template: QueryTemplate, sql: str) -> exp.Expression:
    """The manifest query itself, inside the wrapper that keeps repeated items once."""
    parsed = sqlglot.parse_one(sql, read="postgres")
    return next(parsed.find_all(exp.Subquery)).this if template.output_names else parsed


def test_reference_queries_regenerate_faithfully() -> None:
    """The windowless query keeps every select item and every non-window condition."""
    allow = AllowLists(project_ids=(1,), namespace_ids=(2,), project_paths=("p",))
    checked = 0
    for name, table in _reference_tables():
        template = QueryTemplate.parse(
            table["import_query"],
            table.get("additional_filtering"),
            table["export_table_primary_key"],
        )
        full = _unwrapped(template, template.full_sql(allow))
        if not template.is_windowed:
            continue
        windowed = _unwrapped(template, template.window_sql(window(96), allow))
        assert [_sql(s) for s in full.selects] == [_sql(s) for s in windowed.selects], name
        window_conditions = _conjuncts(windowed.args["where"].this)
        assert window_conditions[0].startswith(f"{template.replication_key} BETWEEN"), name
        rest = _conjuncts(full.args["where"].this) if full.args.get("where") else []
        assert rest == window_conditions[1:], name
        checked += 1
    assert checked == 142 + 117


# --- repeated select items ------------------------------------------------------

REPEATED = """SELECT id
, CASE WHEN traversal_ids[1] = id THEN name ELSE NULL END AS name
, traversal_ids
, Traversal_IDS
FROM namespaces
WHERE updated_at BETWEEN '{BEGIN_TIMESTAMP}'::timestamp AND '{END_TIMESTAMP}'::timestamp"""


def test_identical_repeated_item_is_kept_once_with_a_warning() -> None:
    query = parse(REPEATED)
    assert query.output_names == ("id", "name", "traversal_ids", "traversal_ids")
    assert query.warnings == ("select item 'traversal_ids' appears 2 times; it is loaded once",)
    for sql in (query.window_sql(window(1), EMPTY), query.full_sql(EMPTY)):
        outer = sqlglot.parse_one(sql, read="postgres")
        assert [s.sql() for s in outer.selects] == ['"id"', '"name"', '"traversal_ids"']
        alias = next(outer.find_all(exp.Subquery)).args["alias"]
        assert [c.name for c in alias.columns] == ["id", "name", "traversal_ids", "pgp_repeated_3"]


def test_queries_without_repeats_are_not_wrapped() -> None:
    query = parse(BETWEEN_STYLE)
    assert query.output_names is None and query.warnings == ()
    assert query.full_sql(EMPTY).startswith("SELECT id")


@pytest.mark.parametrize(
    "items",
    ["traversal_ids, traversal_ids[1] AS traversal_ids", "id AS x, name AS x", 'a, "A" AS a'],
)
def test_different_items_under_one_name_are_an_error(items: str) -> None:
    query = f"SELECT id, {items} FROM t"
    with pytest.raises(QueryError, match="are both named"):
        parse(query)
