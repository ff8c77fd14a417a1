"""Quoting for the SQL text the tap builds: identifiers and literals, nothing else."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """Postgres string literal (standard_conforming_strings: only ``'`` needs escaping)."""
    if "\x00" in value:
        raise ValueError("SQL strings cannot contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def sql_literal(value: int | str) -> str:
    """A key as a SQL literal; strings stay untyped so Postgres coerces them to the key's type."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"key must be int or str, got {type(value).__name__}")
    return str(value) if isinstance(value, int) else sql_string(value)
