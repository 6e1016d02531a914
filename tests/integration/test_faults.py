"""The fault script (bench/faults.py), reduced: one PostgreSQL restart under load (a throwaway
cluster, never the shared one) and a full disk under load, against real `verdict serve`
processes. 0 answers lost, 0 actions without audit entries, 0 answers with status 500.
(SIGKILL under load is tests/integration/test_crash.py.)"""

from __future__ import annotations

import os

import pytest

from bench import faults
from tests.integration.filesystems import can_mount

pytestmark = pytest.mark.slow


async def test_postgresql_restart_under_load_answers_no_500_and_loses_nothing(tmp_path):
    """Regression (issue 11): a PostgreSQL restart under load gave 1-4 answers of 500."""
    if not (faults.PG_BIN / "initdb").exists() or (os.geteuid() == 0 and not _has_user("postgres")):
        pytest.skip(f"needs PostgreSQL's initdb in {faults.PG_BIN} (and a postgres user when root)")
    outcome = await faults.pg_restart(tmp_path / "verdict", restarts=1)
    assert outcome.tally.statuses[500] == 0, outcome.tally.statuses
    assert (outcome.lost, outcome.without_audit) == (0, 0)
    assert outcome.tally.statuses[201] > 0


async def test_full_disk_under_load_answers_no_500_and_loses_nothing(tmp_path):
    if not can_mount():
        pytest.skip("needs root to mount a tmpfs")
    outcome = await faults.full_disk(tmp_path)
    assert outcome.tally.statuses[500] == 0, outcome.tally.statuses
    assert (outcome.lost, outcome.without_audit) == (0, 0)
    assert outcome.tally.statuses[503] > 0  # the disk did fill up
    assert outcome.health_seen[503] > 0  # and /health said so


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
