"""`verdict serve --demo`: a tenant, an example policy and an agent, ready for the README walk-through."""

from __future__ import annotations

import sys
from pathlib import Path

from crypto.keys import generate_secp256k1_key_file, write_secret_file
from crypto.signing import LocalSigner
from gateway.auth import Principal
from gateway.ledger import Ledger
from gateway.schemas import CreateAgent, CreateApprover, CreateTenant
from gateway.services.policies import PolicyService
from gateway.services.tenants import TenantService
from gateway.settings import Settings
from gateway.storage import open_database

DEMO_TENANT = "demo"
DEMO_AGENT = "demo-agent"
AGENT_TOKEN_FILE = "demo-agent.token"  # noqa: S105 - a file name
CFO_KEY_FILE = "demo-cfo.key"  # the demo CFO's wallet key, for `verdict approve --key-file`

# The same document as examples/policy.yaml (a test keeps the two equal).
DEMO_POLICY = """\
schema: verdict.policy/v1
default: DENY                 # when no rule matches; fail closed
verdict_ttl_seconds: 60
lists:
  blocked_vendors: [evil-corp, shady-llc]
rules:
  - id: block-vendors
    decision: DENY
    reason: vendor_blocked
    match: {action.vendor: {in: blocked_vendors}}
  - id: cfo-over-5k
    decision: ESCALATE
    reason: amount_above_threshold
    match: {action.type: {eq: pay_invoice}, action.amount: {gt: "5000", lte: "50000"}}
    approvals: {threshold: 1, roles: [cfo]}
    timeout_minutes: 60
  - id: execs-over-50k
    decision: ESCALATE
    reason: amount_above_exec_threshold
    match: {action.amount: {gt: "50000"}}
    approvals: {threshold: 2, roles: [cfo, controller, ceo]}
  - id: night-trades
    decision: DENY
    reason: after_hours
    when: 'action.type == "trade_execution" && now.getHours("UTC") >= 22'
  - id: allow-rest
    decision: ALLOW
    match: {}
"""

SYSTEM = Principal(key_id="demo", role="admin", tenant_id=None, agent_id=None, token_backed=False)


async def seed_demo(settings: Settings) -> tuple[Path, bool]:
    """Create the demo tenant, policy and agent unless they exist. Returns the agent token's path
    and whether anything was created. The token file is written with mode 0600."""
    token_path = settings.data_dir / AGENT_TOKEN_FILE
    db = open_database(settings.database_url, data_dir=settings.data_dir, schema=settings.database_schema)
    await db.open()
    ledger = Ledger(db)
    try:
        async with db.read() as conn:
            exists = await conn.fetchrow("SELECT 1 AS x FROM tenants WHERE id = ?", DEMO_TENANT)
        if exists and token_path.exists():
            return token_path, False
        tenants, policies = TenantService(db, ledger), PolicyService(db, ledger)
        if not exists:
            await tenants.create_tenant(SYSTEM, CreateTenant(id=DEMO_TENANT, name="Demo Corp"))
            admin = Principal(
                key_id="demo", role="tenant_admin", tenant_id=DEMO_TENANT, agent_id=None, token_backed=False
            )
            await policies.publish(
                admin, DEMO_TENANT, DEMO_POLICY.encode(), "application/yaml", activate=True
            )
            # a CFO with a wallet key on disk, so the walk-through can approve an escalation
            cfo_key = settings.data_dir / CFO_KEY_FILE
            if cfo_key.exists():
                cfo_key.unlink()
            cfo = LocalSigner(generate_secp256k1_key_file(cfo_key))
            await tenants.create_approver(
                admin, DEMO_TENANT, CreateApprover(address=cfo.address, roles=["cfo"], name="Demo CFO")
            )
        admin = Principal(
            key_id="demo", role="tenant_admin", tenant_id=DEMO_TENANT, agent_id=None, token_backed=False
        )
        agent_id = DEMO_AGENT
        async with db.read() as conn:
            taken = await conn.fetchrow(
                "SELECT 1 AS x FROM agents WHERE tenant_id = ? AND id = ?", DEMO_TENANT, agent_id
            )
        if taken:  # the token file was lost: register a fresh agent rather than reuse a token we cannot show
            from gateway.clock import new_id

            agent_id = new_id("demo-agent").replace("_", "-")
        created = await tenants.create_agent(admin, DEMO_TENANT, CreateAgent(id=agent_id, name="Demo AP bot"))
        if token_path.exists():
            token_path.unlink()
        write_secret_file(token_path, f"{created.id} {created.token}\n")
        return token_path, True
    finally:
        await ledger.close()
        await db.close()


def read_agent_token(path: Path) -> tuple[str, str]:
    agent_id, token = path.read_text().split()
    return agent_id, token


def walkthrough(base_url: str, token_path: Path, agent_id: str) -> str:
    propose = f"{base_url}/v1/agents/{agent_id}/propose"
    head = f'curl -s -X POST {propose} -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json"'
    return f"""\
Try it (in another shell):
  TOKEN=$(cut -d' ' -f2 {token_path})
  # ALLOW, with an EIP-712 signed verdict:
  {head} -d '{{"action": {{"type": "pay_invoice", "invoice_id": "inv_8230", "amount": "1200.00", "asset": "USDC", "vendor": "acme-supplies"}}}}'
  # ESCALATE (a CFO must approve), then approve it with the demo CFO's wallet key:
  {head} -d '{{"action": {{"type": "pay_invoice", "invoice_id": "inv_8231", "amount": "7800.00", "asset": "USDC", "vendor": "acme-supplies"}}}}'
  {_verdict_command()} approve <action_id> --role cfo --key-file {token_path.parent / CFO_KEY_FILE} --url {base_url}
  # ... or in the approver console, with a browser wallet holding that key (docs/console.md):
  #   {base_url}/console
  # DENY (blocked vendor):
  {head} -d '{{"action": {{"type": "pay_invoice", "invoice_id": "inv_8232", "amount": "10.00", "asset": "USDC", "vendor": "evil-corp"}}}}'
  # The signer's public address, for executors:
  curl -s {base_url}/v1/keys
"""


def _verdict_command() -> str:
    """How this shell ran `verdict` (`.venv/bin/verdict` under `make demo`), for copy and paste."""
    command = Path(sys.argv[0])
    if command.name != "verdict":
        return "verdict"
    try:
        return str(command.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(command)
