"""Errors of the audit package: one root, one subclass per kind of failure."""

from __future__ import annotations


class AuditError(Exception):
    """Root of every error raised by `audit`."""


class EntryFormatError(AuditError):
    """Entry bytes that are not a well-formed `v: 1` log entry."""


class ChainError(AuditError):
    """Entries that do not link: a gap in `seq`, a wrong `prev`, another tenant.

    Carries the evidence: the position, what was expected and what was found.
    """

    def __init__(self, message: str, *, seq: int, expected: object, found: object) -> None:
        super().__init__(f"{message} at seq {seq}: expected {expected!r}, found {found!r}")
        self.seq = seq
        self.expected = expected
        self.found = found
