// The client against a real `verdict serve`, started and seeded by
// tests/integration/test_typescript_client.py (which sets the VERDICT_* variables below).
// Without VERDICT_URL these tests are skipped (the vectors still run).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { privateKeyToAccount } from "viem/accounts";

import {
  ConflictError,
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  UnauthenticatedError,
  VerdictClient,
  VerdictInvalid,
  WaitTimeout,
  isProblem,
} from "../dist/index.js";

const env = process.env;
const url = env.VERDICT_URL;
const agentId = env.VERDICT_AGENT;
const skip = url ? false : "VERDICT_URL is not set (run through pytest)";

const invoice = (amount, extra = {}) => ({
  type: "pay_invoice",
  invoice_id: `inv_${amount}`,
  amount,
  asset: "USDC",
  vendor: "acme-supplies",
  ...extra,
});

/** A minimal EIP-1193 provider around a viem account, as a browser wallet would answer. */
function walletProvider(account) {
  return {
    async request({ method, params }) {
      if (method === "eth_accounts" || method === "eth_requestAccounts") return [account.address];
      if (method === "eth_signTypedData_v4") {
        const [address, json] = params;
        assert.equal(address, account.address);
        const { types, ...rest } = JSON.parse(json);
        const { EIP712Domain, ...others } = types;
        return account.signTypedData({ ...rest, types: others });
      }
      throw new Error(`unsupported ${method}`);
    },
  };
}

describe("against a real gateway", { skip }, () => {
  const agent = new VerdictClient(url ?? "http://127.0.0.1:9", { token: env.VERDICT_AGENT_TOKEN });
  const admin = new VerdictClient(url ?? "http://127.0.0.1:9", { token: env.VERDICT_TENANT_ADMIN_TOKEN });
  const approver = new VerdictClient(url ?? "http://127.0.0.1:9"); // no token: the signature is the credential
  const cfo = env.VERDICT_APPROVER_KEY ? privateKeyToAccount(env.VERDICT_APPROVER_KEY) : undefined;
  const stranger = env.VERDICT_STRANGER_KEY ? privateKeyToAccount(env.VERDICT_STRANGER_KEY) : undefined;

  test("ALLOW: the verdict verifies, executes once on the rail, and rolls back from the action", async () => {
    const action = invoice("120.00");
    const answer = await agent.propose(agentId, action, { idempotencyKey: "ts-allow-1" });
    assert.equal(answer.decision, "ALLOW");
    const again = await agent.propose(agentId, action, { idempotencyKey: "ts-allow-1" });
    assert.equal(again.action_id, answer.action_id); // the idempotent replay
    const message = await agent.verifyVerdict(answer.signed_verdict, action);
    assert.equal(message.actionId, answer.action_id);
    assert.deepEqual(await agent.verdict(answer.action_id), answer.signed_verdict);
    await assert.rejects(agent.verifyVerdict(answer.signed_verdict, invoice("121.00")), (e) => e instanceof VerdictInvalid && e.reason === "action_hash");
    await assert.rejects(
      agent.verifyVerdict(answer.signed_verdict, action, { now: message.expiresAt }),
      (e) => e instanceof VerdictInvalid && e.reason === "expired",
    );
    const record = await agent.get(answer.action_id);
    assert.deepEqual(record.operations.map((o) => o.name).sort(), ["execute", "verdict"]);
    const accepted = await agent.execute(answer.action_id);
    const done = await agent.waitForExecution(accepted.execution_id, { timeoutMs: 60_000 });
    assert.equal(done.status, "succeeded");
    await assert.rejects(agent.execute(answer.action_id), (e) => e instanceof ConflictError && e.code === "already_executed" && e.problem.execution_id === accepted.execution_id);
    await assert.rejects(agent.rollbackAction(answer.action_id, "duplicate"), (e) => e instanceof ForbiddenError && e.code === "forbidden_role");
    assert.ok((await admin.get(answer.action_id)).operations.some((o) => o.name === "rollback"));
    const rolling = await admin.rollbackAction(answer.action_id, "duplicate invoice");
    assert.equal(rolling.execution_id, accepted.execution_id);
    const rolled = await admin.waitForExecution(accepted.execution_id, { timeoutMs: 60_000 });
    assert.equal(rolled.status, "rolled_back");
  });

  test("ESCALATE: waitForApproval returns once a viem account approves; its verdict verifies", async () => {
    const action = invoice("7800.00");
    const answer = await agent.propose(agentId, action);
    assert.equal(answer.decision, "ESCALATE");
    await assert.rejects(agent.execute(answer.action_id), (e) => isProblem(e, "approval_pending"));
    const offered = await approver.operations(answer.action_id, cfo.address);
    assert.deepEqual(offered.operations.map((o) => [o.name, o.role]), [["approve", "cfo"], ["reject", "cfo"]]);
    const waiting = agent.waitForApproval(answer.action_id, { timeoutMs: 60_000 });
    const outcome = await approver.approve(answer.action_id, "cfo", cfo, { note: "checked the invoice" });
    assert.equal(outcome.status, "allowed");
    const record = await waiting;
    assert.equal(record.status, "allowed");
    assert.deepEqual(record.signed_verdict, outcome.signed_verdict);
    await agent.verifyVerdict(record.signed_verdict, action);
    await assert.rejects(approver.approve(answer.action_id, "cfo", cfo), (e) => e instanceof ConflictError && e.code === "action_not_pending");
  });

  test("an EIP-1193 wallet rejects; a stranger and a bad signature are refused", async () => {
    const answer = await agent.propose(agentId, invoice("7900.00"));
    await assert.rejects(approver.approve(answer.action_id, "cfo", stranger), (e) => e instanceof ForbiddenError && e.code === "not_an_approver");
    await assert.rejects(approver.approve(answer.action_id, "cfo", "0x1234"), (e) => e instanceof InvalidRequestError && e.code === "invalid_signature");
    await assert.rejects(approver.approve(answer.action_id, "ceo", cfo), (e) => isProblem(e, "role_not_required"));
    const outcome = await approver.reject(answer.action_id, "cfo", walletProvider(cfo), { note: "not ours" });
    assert.equal(outcome.status, "rejected");
    const record = await agent.waitForApproval(answer.action_id, { timeoutMs: 10_000 });
    assert.equal(record.status, "rejected");
    await assert.rejects(agent.verdict(answer.action_id), (e) => isProblem(e, "verdict_not_available"));
  });

  test("requireApproval turns an ALLOW into a review; cancel ends it; waiting times out", async () => {
    const answer = await agent.propose(agentId, invoice("120.00"), { requireApproval: true });
    assert.equal(answer.decision, "ESCALATE");
    assert.equal(answer.reason, "approval_requested_by_agent");
    const request = await approver.approvalRequest(answer.action_id, "cfo");
    assert.match(request.message.summary, /^Review requested by agent /);
    await assert.rejects(agent.waitForApproval(answer.action_id, { timeoutMs: 300 }), (e) => e instanceof WaitTimeout);
    const cancelled = await agent.cancel(answer.action_id);
    assert.equal(cancelled.status, "cancelled");
    assert.equal((await agent.waitForApproval(answer.action_id)).status, "cancelled");
    await assert.rejects(agent.cancel(answer.action_id), (e) => e instanceof ConflictError && e.code === "action_not_pending");
    const page = await agent.list({ status: "cancelled", limit: 10 });
    assert.ok(page.actions.some((a) => a.action_id === answer.action_id && a.require_approval === true));
  });

  test("refusals are typed by their problem code", async () => {
    await assert.rejects(agent.propose(agentId, { type: "pay_invoice", amount: 12 }), (e) => e instanceof InvalidRequestError && e.code === "amount_not_string" && e.status === 422);
    await assert.rejects(agent.get("act_0000000000000000000000000n"), (e) => e instanceof NotFoundError && e.code === "action_not_found" && typeof e.requestId === "string");
    const nobody = new VerdictClient(url ?? "", { token: "vk_not_a_real_token" });
    await assert.rejects(nobody.list(), (e) => e instanceof UnauthenticatedError && e.status === 401);
    const denied = await agent.propose(agentId, invoice("120.00", { vendor: "evil-corp" }), { requireApproval: true });
    assert.equal(denied.decision, "DENY");
    await assert.rejects(agent.execute(denied.action_id), (e) => isProblem(e, "action_not_allowed"));
    await assert.rejects(admin.rollbackAction(denied.action_id, "nothing ran"), (e) => isProblem(e, "not_executed"));
  });
});
