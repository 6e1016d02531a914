// An agent's round trip against `make demo` (run from clients/typescript after `npm ci && npm run build`):
//   VERDICT_TOKEN=$(cut -d' ' -f2 ../../.verdict/demo-agent.token) CFO_KEY=$(cat ../../.verdict/demo-cfo.key) node examples/agent.mjs
import { privateKeyToAccount } from "viem/accounts";

import { VerdictClient, isProblem } from "../dist/index.js";

const url = process.env.VERDICT_URL ?? "http://127.0.0.1:8000";
const verdict = new VerdictClient(url, { token: process.env.VERDICT_TOKEN });
const action = { type: "pay_invoice", invoice_id: "inv_8231", amount: "7800.00", asset: "USDC", vendor: "acme-supplies" };

const answer = await verdict.propose("demo-agent", action);
console.log("decision:", answer.decision, answer.reason);
if (answer.decision === "ESCALATE" && process.env.CFO_KEY) {
  // the approver's side (usually another program, a wallet or the console): no token, a signature
  const approver = new VerdictClient(url);
  await approver.approve(answer.action_id, "cfo", privateKeyToAccount(process.env.CFO_KEY), { note: "PO matches" });
}
const record = answer.decision === "ESCALATE" ? await verdict.waitForApproval(answer.action_id, { timeoutMs: 600_000 }) : answer;
if (record.signed_verdict) {
  await verdict.verifyVerdict(record.signed_verdict, action); // throws VerdictInvalid
  const { execution_id } = await verdict.execute(answer.action_id);
  console.log("execution:", (await verdict.waitForExecution(execution_id)).status);
} else {
  console.log("not allowed:", record.status);
}
try {
  await verdict.execute(answer.action_id);
} catch (error) {
  if (!isProblem(error, "already_executed") && !isProblem(error, "action_not_allowed")) throw error;
  console.log("again:", error.code);
}
