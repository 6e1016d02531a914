"""The demo's rail: `verdict serve --demo` starts a demo bank beside the gateway and configures it as
the demo tenant's `bank_api` rail, so the walk-through can execute an allowed action."""

from __future__ import annotations

import os
import secrets

from gateway.auth import Principal
from gateway.execution_schemas import ConfigureRail
from gateway.ledger import Ledger
from gateway.rails.demo_bank import DemoBank
from gateway.rails.outbound import ALLOW_PRIVATE_ENV
from gateway.services.published_keys import establish_keys
from gateway.services.rails import RailService
from gateway.settings import Settings
from gateway.storage import open_database

DEMO_ADMIN = Principal(
    key_id="demo", role="tenant_admin", tenant_id="demo", agent_id=None, token_backed=False
)


def start_demo_bank() -> tuple[DemoBank, str, str]:
    """Start the demo bank (a daemon thread of this process); returns it, its URL and its API key.
    Lets the gateway's workers reach a loopback bank (`VERDICT_RAIL_ALLOW_PRIVATE=1`)."""
    api_key = "demo_" + secrets.token_urlsafe(16)
    bank = DemoBank(api_key)
    url = bank.start()
    os.environ[ALLOW_PRIVATE_ENV] = "1"
    return bank, url, api_key


async def seed_demo_rail(settings: Settings, url: str, api_key: str) -> None:
    """Configure (or re-point) the demo tenant's `bank_api` rail at the demo bank."""
    db = open_database(settings.database_url, data_dir=settings.data_dir, schema=settings.database_schema)
    await db.open()
    ledger = Ledger(db)
    try:
        keyring = await establish_keys(db, settings.data_dir, lease=None)  # (established: a read)
        rails = RailService(db, ledger, keyring.secrets.rails)
        body = ConfigureRail(kind="bank_api", config={"base_url": url, "api_key": api_key})
        await rails.configure(DEMO_ADMIN, "demo", "bank_api", body)
        await rails.close()
    finally:
        await ledger.close()
        await db.close()


def execution_walkthrough(base_url: str) -> str:
    return f"""\
Execute an allowed action on the demo bank (pending → succeeded), then follow it:
  curl -s -X POST {base_url}/v1/actions/<action_id>/execute -H "Authorization: Bearer $TOKEN" \\
       -H "Content-Type: application/json" -d '{{}}'
  curl -s {base_url}/v1/executions/<execution_id> -H "Authorization: Bearer $TOKEN"
  verdict executions show <execution_id> --url {base_url} --token $TOKEN
"""
