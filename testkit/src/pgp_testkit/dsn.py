"""A Postgres DSN as the connection settings every Singer plugin here takes."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit


def connection_config(dsn: str) -> dict[str, Any]:
    """``postgresql://user:password@host:port/db`` -> host, port, user, password, database."""
    url = urlsplit(dsn)
    return {
        "host": url.hostname,
        "port": url.port,
        "user": unquote(url.username or ""),
        "password": unquote(url.password or ""),
        "database": unquote(url.path.lstrip("/")),
    }
