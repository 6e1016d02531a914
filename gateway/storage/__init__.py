"""Storage backends: SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from pathlib import Path

from gateway.storage.base import Conn, Database, Insert, IntegrityError


def open_database(
    url: str | None, *, data_dir: Path, schema: str | None = None, pool_size: int = 10
) -> Database:
    """Pick the backend from a URL: `postgresql://…` or `sqlite:///path`; None means SQLite in data_dir.
    `pool_size`: PostgreSQL connections at most (SQLite has one writer and one reader)."""
    if url and url.startswith(("postgresql://", "postgres://")):
        from gateway.storage.postgres import PostgresDatabase

        return PostgresDatabase(url, schema=schema, min_size=min(2, pool_size), max_size=pool_size)
    from gateway.storage.sqlite import SQLiteDatabase

    if url and url.startswith("sqlite:///"):
        return SQLiteDatabase(Path(url.removeprefix("sqlite:///")))
    if url:
        raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")
    return SQLiteDatabase(data_dir / "verdict.db")


__all__ = ["Conn", "Database", "Insert", "IntegrityError", "open_database"]
