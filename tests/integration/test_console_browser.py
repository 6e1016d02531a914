"""The approver console end to end in a real headless Chromium (Debian's `chromium`, driven by
Playwright), against a real `verdict serve` on both backends.

The page gets an injected EIP-1193 wallet announced through EIP-6963 (an init script); its
`personal_sign` and `eth_signTypedData_v4` requests are answered in the test by eth-account
with a real private key (`expose_function`), so the gateway verifies real signatures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from audit.bundle import verify_bundle
from crypto.signing import verify_verdict_signature
from tests.integration.helpers import bearer
from tests.integration.process import GatewayProcess
from tests.integration.test_approvals import CEO, CFO, CONTROLLER, POLICY

# The approvals tests' policy, with signals for the action page (a risk model and a limit) and a
# one-minute window for wires (the shortest a policy may give), so that one expires during a test.
SIGNALS = """\
risk:
  factors:
    - {name: large-amount, match: {action.type: {eq: pay_invoice}, action.amount: {gt: "10000"}}, score: 30}
    - {name: new-vendor, match: {context.vendor.first_seen: {eq: true}}, score: 40}
limits:
  - id: daily-spend-per-agent
    per: agent
    window: 24h
    sum: action.amount
    match: {action.type: {eq: pay_invoice}}
    max: "1000000"
    decision: ESCALATE
    approvals: {threshold: 1, roles: [cfo]}
"""
CONSOLE_POLICY = POLICY.replace("rules:\n", SIGNALS + "rules:\n", 1).replace(
    "    reason: wire_needs_dual_control\n",
    "    reason: wire_needs_dual_control\n    timeout_minutes: 1\n",
    1,
)
AXE = Path(
    os.environ.get("VERDICT_AXE_JS", Path.home() / ".cache/verdict-axe/node_modules/axe-core/axe.min.js")
)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's and docs/console.md's screenshots, refreshed only when asked
# (VERDICT_UPDATE_SCREENSHOTS=1): otherwise every run would leave the checkout changed.
DOC_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"
CHAIN_ID = 8453
XSS = "<img src=x onerror=alert(1)>"

pytestmark = pytest.mark.slow

WALLET_SCRIPT = """
(() => {
  const listeners = {};
  const provider = {
    isVerdictTestWallet: true,
    async request({ method, params }) {
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [await window.__walletAddress()];
      if (method === "eth_chainId") return "0x" + (CHAIN_ID).toString(16);
      if (method === "wallet_switchEthereumChain") return null;
      if (method === "personal_sign" || method === "eth_signTypedData_v4") {
        return await window.__walletSign(method, JSON.stringify(params));
      }
      throw Object.assign(new Error("unsupported " + method), { code: 4200 });
    },
    on(event, fn) { (listeners[event] = listeners[event] || []).push(fn); },
    removeListener() {},
  };
  const info = { uuid: "5b0c3b64-0f5e-4e2b-9d43-verdicttest", name: "Test Wallet", icon: "data:image/svg+xml,<svg/>", rdns: "test.verdict.wallet" };
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
""".replace("CHAIN_ID", str(CHAIN_ID))


def _require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (.ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture
def gateway(backend: Any) -> Any:
    _require_chromium()
    env = backend.settings(public_rate_per_second=1000.0, public_burst=10000).to_env()
    env.pop("VERDICT_PORT", None)
    proc = GatewayProcess(env).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def browser() -> Any:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Setup:
    """A tenant with approvers, an agent and a policy, made through the API."""

    def __init__(self, url: str, data_dir: Path, tenant: str = "acme") -> None:
        self.url, self.tenant = url, tenant
        self.http = httpx.Client(base_url=url, timeout=30)
        admin = (data_dir / "admin.token").read_text().strip()
        self._ok(
            self.http.post(
                "/v1/tenants",
                json={"id": tenant, "name": tenant, "chain_id": CHAIN_ID},
                headers=bearer(admin),
            )
        )
        self.tenant_admin = self._ok(
            self.http.post(
                f"/v1/tenants/{tenant}/api-keys", json={"role": "tenant_admin"}, headers=bearer(admin)
            )
        )["token"]
        self.auditor = self._ok(
            self.http.post(f"/v1/tenants/{tenant}/api-keys", json={"role": "auditor"}, headers=self.admin_h)
        )["token"]
        self._ok(
            self.http.post(
                f"/v1/tenants/{tenant}/policies",
                content=CONSOLE_POLICY,
                headers={**self.admin_h, "Content-Type": "application/yaml"},
            )
        )
        self.agent_token = self._ok(
            self.http.post(
                f"/v1/tenants/{tenant}/agents", json={"id": "ap-bot", "name": "AP bot"}, headers=self.admin_h
            )
        )["token"]
        for account, roles in ((CFO, ["cfo"]), (CONTROLLER, ["controller"]), (CEO, ["ceo"])):
            self._ok(
                self.http.post(
                    f"/v1/tenants/{tenant}/approvers",
                    json={"address": account.address, "roles": roles},
                    headers=self.admin_h,
                )
            )

    @property
    def admin_h(self) -> dict[str, str]:
        return bearer(self.tenant_admin)

    @staticmethod
    def _ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in (200, 201), response.text
        return response.json()

    def pay(self, amount: str, vendor: str = "acme-supplies", kind: str = "pay_invoice", **extra: Any) -> str:
        body = {"action": {"type": kind, "amount": amount, "asset": "USDC", "vendor": vendor, **extra}}
        body["rationale"] = f"Invoice from {vendor}"
        answer = self._ok(
            self.http.post("/v1/agents/ap-bot/propose", json=body, headers=bearer(self.agent_token))
        )
        return answer["action_id"]

    def approve(self, action_id: str, account: Any, role: str) -> None:
        """Approve through the API (the approval-request's typed data, signed by `account`)."""
        typed = self._ok(self.http.get(f"/v1/actions/{action_id}/approval-request", params={"role": role}))
        signature = "0x" + bytes(Account.sign_typed_data(account.key, full_message=typed).signature).hex()
        body = {"approver_role": role, "signature": signature}
        self._ok(self.http.post(f"/v1/actions/{action_id}/approve", json=body))

    def action(self, action_id: str) -> dict[str, Any]:
        return self._ok(self.http.get(f"/v1/actions/{action_id}", headers=bearer(self.auditor)))


@pytest.fixture
def world(gateway: Any, backend: Any) -> Any:
    setup = Setup(gateway.url, backend.data_dir)
    try:
        yield setup
    finally:
        setup.http.close()


def wallet_page(browser: Any, url: str, account: Any) -> Any:
    """A fresh browser context (its own cookies) whose injected wallet signs with `account`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    def sign(method: str, params_json: str) -> str:
        params = json.loads(params_json)
        if method == "personal_sign":
            message, address = params
            assert address.lower() == account.address.lower()
            signed = Account.sign_message(encode_defunct(text=message), account.key)
        else:
            address, typed = params
            assert address.lower() == account.address.lower()
            signed = Account.sign_typed_data(account.key, full_message=json.loads(typed))
        return "0x" + bytes(signed.signature).hex()

    page.expose_function("__walletSign", sign)
    page.expose_function("__walletAddress", lambda: account.address)
    page.add_init_script(WALLET_SCRIPT)
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    return page


def sign_in(page: Any, url: str, tenant: str | None = None) -> None:
    """Sign in with the page's wallet; with `tenant`, pick it on the chooser that follows."""
    page.goto(f"{url}/console/")
    with page.expect_navigation():  # to the queue, or to the tenant chooser (loaded with its script)
        page.get_by_role("button", name="Connect wallet and sign in").click()
    if tenant is not None:
        page.get_by_role("button", name=tenant).click()
    page.wait_for_url(f"{url}/console/queue?view=awaiting")


def test_an_approver_signs_in_sees_the_signals_and_approves(gateway, browser, world, tmp_path):
    shots = DOC_SHOTS if os.environ.get("VERDICT_UPDATE_SCREENSHOTS") == "1" else tmp_path
    small = world.pay("7800.00")
    big = world.pay("60000.00", vendor="globex")
    xss = world.pay("6100.00", vendor=XSS)

    cfo = wallet_page(browser, gateway.url, CFO)
    sign_in(cfo, gateway.url)
    rows = cfo.locator("table.queue tbody tr")
    assert rows.count() == 3
    assert cfo.locator("#queue-count").inner_text() == "3"
    # the XSS vendor is text, and no dialog opened (the page fails the test on one)
    assert cfo.locator("td.vendor", has_text=XSS).count() == 1
    assert cfo.locator("img").count() == 0
    shots.mkdir(parents=True, exist_ok=True)
    cfo.screenshot(path=str(shots / "console-queue.png"), full_page=True)

    ceo = wallet_page(browser, gateway.url, CEO)
    sign_in(ceo, gateway.url)
    ceo_rows = ceo.locator("table.queue tbody tr")
    assert ceo_rows.count() == 1 and ceo_rows.first.get_attribute("data-action") == big

    cfo.goto(f"{gateway.url}/console/actions/{small}")
    assert "7800.00 USDC" in cfo.locator("#amount").inner_text()
    assert cfo.locator("#trace li").count() >= 1
    assert "cfo-over-5k" in cfo.locator("#trace").inner_text()
    assert "new-vendor" in cfo.locator("#risk").locator("..").inner_text()
    assert "daily-spend-per-agent" in cfo.locator("#limits").inner_text()
    assert "new vendor" in cfo.locator("#context").inner_text()
    cfo.screenshot(path=str(shots / "console-action.png"), full_page=True)
    cfo.locator("#answer-text").fill("Checked against PO 4411")
    answered(cfo, "Approve")
    record = world.action(small)
    assert record["status"] == "allowed"
    verdict = record["signed_verdict"]
    signers = world.http.get("/v1/keys").json()["verdict_signers"]
    verify_verdict_signature(verdict["typed_data"], verdict["signature"], signers[-1]["address"])
    bundle = world.http.get(f"/v1/actions/{small}/proof", headers=bearer(world.auditor)).json()
    vkey = world.http.get(f"/v1/tenants/{world.tenant}/keys", headers=bearer(world.auditor)).json()
    verify_bundle(bundle, vkey["log"]["vkey"])

    # 2-of-3 with two browsers: cfo then ceo approve the 60k payment
    cfo.goto(f"{gateway.url}/console/actions/{big}")
    answered(cfo, "Approve")
    assert world.action(big)["status"] == "pending_approval"
    ceo.goto(f"{gateway.url}/console/actions/{big}")
    answered(ceo, "Approve")
    assert world.action(big)["status"] == "allowed"

    # reject with a reason, and a refusal shown clearly (the action is no longer pending)
    cfo.goto(f"{gateway.url}/console/actions/{xss}")
    assert cfo.locator("#vendor").inner_text() == XSS
    cfo.locator("#answer-text").fill("Unknown vendor")
    answered(cfo, "Reject")
    rejected = world.action(xss)
    assert rejected["status"] == "rejected" and rejected["approvals"][0]["comment"] == "Unknown vendor"
    ceo.goto(f"{gateway.url}/console/actions/{small}")
    assert ceo.locator("#approve").count() == 0  # nothing to answer: no button at all

    # sign out: the session is gone, the queue sends back to sign-in
    cfo.goto(f"{gateway.url}/console/queue")
    cfo.get_by_role("button", name="Sign out").click()
    cfo.wait_for_url(f"{gateway.url}/console/")
    cfo.goto(f"{gateway.url}/console/queue")
    assert cfo.url == f"{gateway.url}/console/"
    assert cfo.get_by_role("button", name="Connect wallet and sign in").count() == 1


def answered(page: Any, button: str) -> None:
    """Press Approve or Reject, see the answer recorded, and wait for the reload that follows
    (a navigation the test started next would race with it)."""
    with page.expect_navigation(timeout=30_000):
        page.get_by_role("button", name=button).click()
        page.locator("#answer-result[data-kind=ok]").wait_for()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core findings on the page (axe-core from npm, evaluated in the page)."""
    if not AXE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AXE} is missing (.ci/run installs axe-core from npm)")
        pytest.skip(f"{AXE} is missing (npm install --prefix ~/.cache/verdict-axe axe-core@4)")
    page.evaluate(AXE.read_text())
    found = page.evaluate(
        "async () => (await axe.run(document)).violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))"
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_bulk_keyboard_live_updates_tenant_walls_accessibility_and_expiry(gateway, browser, world, backend):
    other = Setup(gateway.url, backend.data_dir, tenant="globex")
    try:
        hidden = other.pay("8000.00")
    finally:
        other.http.close()
    wire = world.pay("9000.00", kind="wire")
    bulk = [world.pay(amount) for amount in ("6000.00", "6500.00", "7000.00")]
    by_keyboard = world.pay("5500.00", vendor="initech")

    # CFO approves in acme and globex: after signing in, they pick a tenant
    cfo = wallet_page(browser, gateway.url, CFO)
    cfo.goto(f"{gateway.url}/console/")  # the sign-in page, too, passes axe
    assert axe_violations(cfo) == []
    sign_in(cfo, gateway.url, tenant="acme")
    assert hidden not in cfo.content()
    assert cfo.locator("table.queue tbody tr").count() == 5
    assert axe_violations(cfo) == []
    assert cfo.goto(f"{gateway.url}/console/actions/{hidden}").status == 404
    cfo.goto(f"{gateway.url}/console/queue?view=pending")
    assert hidden not in cfo.content()

    # live: the controller's queue shows a new wire without a reload by the user
    controller = wallet_page(browser, gateway.url, CONTROLLER)
    sign_in(controller, gateway.url, tenant="acme")
    assert controller.locator("table.queue tbody tr").count() == 1
    second_wire = world.pay("9100.00", kind="wire")
    controller.locator(f'tr[data-action="{second_wire}"]').wait_for(timeout=15_000)
    # ... and an open action page shows the CFO's approval of that wire as it lands
    controller.goto(f"{gateway.url}/console/actions/{second_wire}")
    approvals = controller.locator("ul.approvals li").count()
    world.approve(second_wire, CFO, "cfo")
    controller.locator("ul.approvals li").nth(approvals).wait_for(timeout=15_000)

    # bulk approve three with one BulkApproval signature; each item's result is shown
    cfo.goto(f"{gateway.url}/console/queue?view=awaiting")
    for action_id in bulk:
        cfo.locator(f"#sel-{action_id}").check()
    cfo.get_by_role("button", name="Approve selected").click()
    cfo.locator("#bulk-results li").nth(2).wait_for()
    assert cfo.locator("#bulk-results li.ok").count() == 3
    assert all(world.action(action_id)["status"] == "allowed" for action_id in bulk)

    # keyboard only: tab to the comment, type, tab to Approve, press Enter
    cfo.goto(f"{gateway.url}/console/actions/{by_keyboard}")
    assert axe_violations(cfo) == []
    for _ in range(60):
        cfo.keyboard.press("Tab")
        if cfo.evaluate("document.activeElement.id") == "answer-text":
            break
    cfo.keyboard.type("Paid by keyboard")
    cfo.keyboard.press("Tab")
    assert cfo.evaluate("document.activeElement.id") == "approve"
    with cfo.expect_navigation(timeout=30_000):  # the page reloads itself after an answer
        cfo.keyboard.press("Enter")
        cfo.locator("#answer-result[data-kind=ok]").wait_for()
    assert world.action(by_keyboard)["status"] == "allowed"

    # an expired action: the page was open, the window passed, Approve is refused clearly
    cfo.goto(f"{gateway.url}/console/actions/{wire}")
    cfo.locator("#answer-text").fill("Too late")  # typing: live updates do not reload the page
    ends = world.action(wire)["approval_expires_at"]
    while world.action(wire)["status"] == "pending_approval":
        cfo.wait_for_timeout(2000)
    assert ends
    cfo.get_by_role("button", name="Approve").click()
    result = cfo.locator("#answer-result[data-kind=error]")
    result.wait_for()
    assert "no longer pending" in result.inner_text() or "expired" in result.inner_text()
    cfo.goto(f"{gateway.url}/console/queue?view=decided&status=expired")
    assert cfo.locator(f'tr[data-action="{wire}"]').count() == 1
