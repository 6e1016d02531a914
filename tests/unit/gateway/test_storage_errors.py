"""Which driver errors mean "the database or the disk failed" (503) and which are ours (500)."""

from __future__ import annotations

import logging
import sqlite3

import asyncpg
import pytest

from gateway.errors import DatabaseUnavailable, StorageFull, StorageUnavailable
from gateway.health import OncePerInterval
from gateway.storage.postgres import is_unavailable, unavailable_error
from gateway.storage.sqlite import storage_error


@pytest.mark.parametrize(
    "error",
    [
        # issue 11: a PostgreSQL restart under load gave these as 500 internal_error
        asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ],
)
def test_outages_of_postgresql_are_503(error):
    assert is_unavailable(error)
    assert isinstance(unavailable_error(error), DatabaseUnavailable)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
        asyncpg.exceptions.SyntaxOrAccessError("syntax error"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),  # a bug of ours
        ValueError("x"),
    ],
)
def test_statements_the_database_refused_are_not_outages(error):
    assert not is_unavailable(error)


def test_a_full_postgresql_disk_is_storage_full():
    assert isinstance(unavailable_error(asyncpg.exceptions.DiskFullError("no space left")), StorageFull)


def sqlite_error(code: int, message: str = "x") -> sqlite3.Error:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


def test_sqlite_full_disk_is_storage_full_and_io_errors_are_storage_unavailable():
    assert isinstance(storage_error(sqlite_error(13, "database or disk is full")), StorageFull)
    assert storage_error(sqlite_error(13)).code == "storage_full"
    io = storage_error(sqlite_error(10 | (4 << 8), "disk I/O error"))  # SQLITE_IOERR_WRITE
    assert isinstance(io, StorageUnavailable) and io.code == "storage_unavailable"
    assert storage_error(sqlite_error(5, "database is locked")).code == "storage_unavailable"
    assert storage_error(sqlite_error(1, "no such table: x")) is None  # ours: a 500
    assert storage_error(sqlite3.OperationalError("no code")) is None


def test_a_real_sqlite_size_limit_is_storage_full(tmp_path):
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count = 3")
    with pytest.raises(sqlite3.Error) as raised:
        for _ in range(100):
            conn.execute("INSERT INTO t VALUES (zeroblob(4096))")
    conn.close()
    assert isinstance(storage_error(raised.value), StorageFull)


def test_the_same_failure_is_logged_once_per_interval(caplog):
    logger = logging.getLogger("test.once")
    once = OncePerInterval(logger, interval=3600)
    with caplog.at_level(logging.ERROR, logger="test.once"):
        written = [once.log(logging.ERROR, "disk full") for _ in range(1000)]
        written.append(once.log(logging.ERROR, "another failure"))
    assert written.count(True) == 2
    assert [r.getMessage() for r in caplog.records] == ["disk full", "another failure"]
