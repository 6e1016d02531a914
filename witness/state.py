"""The witness's durable state: per log origin, the size and root of the latest checkpoint it
cosigned (SQLite, one file).

`advance` checks the submitted old size against the stored one and stores the new tree head in one
`BEGIN IMMEDIATE` transaction (SQLite's write lock), under a process lock as well: two requests can
never both pass the check against one stored size (the race c2sp.org/tlog-witness describes).
The head is committed before the cosignature is returned.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from audit.rfc6962 import EMPTY_ROOT

__all__ = ["WitnessState"]


class WitnessState:
    """Safe for the threads of one process; one process per state file."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS cosigned (origin TEXT PRIMARY KEY, size INTEGER NOT NULL,"
            " root BLOB NOT NULL, note TEXT NOT NULL, updated_at INTEGER NOT NULL)"
        )

    def latest(self, origin: str) -> tuple[int, bytes]:
        """(size, root) of the latest cosigned checkpoint of `origin`; (0, empty root) if none."""
        with self._lock:
            row = self._db.execute("SELECT size, root FROM cosigned WHERE origin = ?", (origin,)).fetchone()
        return (int(row[0]), bytes(row[1])) if row else (0, EMPTY_ROOT)

    def advance(
        self, origin: str, check: Callable[[int, bytes], None], size: int, root: bytes, note: str, now: int
    ) -> None:
        """Run `check(stored_size, stored_root)` and, if it returns, store (size, root) for `origin`,
        atomically. Whatever `check` raises propagates and nothing is stored."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT size, root FROM cosigned WHERE origin = ?", (origin,)
                ).fetchone()
                check(*((int(row[0]), bytes(row[1])) if row else (0, EMPTY_ROOT)))
                self._db.execute(
                    "INSERT INTO cosigned (origin, size, root, note, updated_at) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,"
                    " note = excluded.note, updated_at = excluded.updated_at",
                    (origin, size, root, note, now),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
