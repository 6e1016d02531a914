// The Verdict console's wallet module: EIP-6963 discovery (window.ethereum as fallback),
// Sign-In with Ethereum (personal_sign of the server's message), and approvals signed with
// eth_signTypedData_v4 over exactly the typed data the gateway returns. The page never builds
// typed data itself. Served by the gateway; no third-party code.

const REFUSALS = {
  already_answered: "You have already answered this action.",
  approval_window_expired: "The approval window of this action has expired.",
  action_not_pending: "This action is no longer pending: it was decided, cancelled or expired.",
  role_not_required: "That role does not count for this action.",
  role_not_held: "Your address does not hold that role in this tenant.",
  not_an_approver: "This wallet's address is not an approver of this tenant.",
  signature_mismatch: "The wallet signed something other than this approval request (another account or chain?).",
  invalid_signature: "The wallet returned a malformed signature.",
  signer_unavailable: "The contract wallet could not be checked right now; try again in a moment.",
  action_not_found: "This action does not exist in your tenant.",
  rate_limited: "Too many requests; wait a few seconds and try again.",
  invalid_sign_in: "The sign-in message was not accepted; start again.",
  sign_in_refused: "This address is not an approver of any tenant.",
  invalid_token: "Unknown or revoked API token.",
  token_expired: "This API token has expired.",
  csrf_token_invalid: "Your session changed; reload the page.",
  bulk_deadline_passed: "The bulk request's deadline has passed; select again.",
};

const wallets = new Map();
window.addEventListener("eip6963:announceProvider", (event) => {
  const { info, provider } = event.detail || {};
  if (info && provider && !wallets.has(info.uuid)) {
    wallets.set(info.uuid, { info, provider });
    listWallets();
  }
});
window.dispatchEvent(new Event("eip6963:requestProvider"));

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.getAttribute("content") : "";
}

function say(text, where = "status", kind = "info") {
  const el = document.getElementById(where) || document.getElementById("status");
  el.textContent = text;
  el.dataset.kind = kind;
}

function explain(problem) {
  const code = problem && problem.code;
  const known = code && REFUSALS[code];
  const detail = problem && problem.detail ? ` (${problem.detail})` : "";
  return `${known || "Refused"}${code ? ` [${code}]` : ""}${known ? "" : detail}`;
}

function provider() {
  const chosen = document.querySelector('input[name="wallet"]:checked');
  if (chosen && wallets.has(chosen.value)) return wallets.get(chosen.value).provider;
  if (wallets.size) return wallets.values().next().value.provider;
  if (window.ethereum) return window.ethereum;
  throw new Error("No browser wallet found. Install or unlock one (see docs/console.md).");
}

function listWallets() {
  const box = document.getElementById("wallets");
  if (!box) return;
  box.replaceChildren();
  let first = true;
  for (const [uuid, { info }] of wallets) {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "wallet";
    radio.value = uuid;
    radio.checked = first;
    first = false;
    label.append(radio, ` ${info.name}`);
    box.append(label);
  }
}

async function post(url, body, headers = {}) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  return { ok: response.ok, status: response.status, payload };
}

function csrf() {
  return { "X-CSRF-Token": meta("csrf-token") };
}

async function account(wallet) {
  const accounts = await wallet.request({ method: "eth_requestAccounts" });
  if (!accounts || !accounts.length) throw new Error("The wallet shared no account.");
  return accounts[0];
}

async function signIn() {
  try {
    const wallet = provider();
    const address = await account(wallet);
    const chainId = parseInt(await wallet.request({ method: "eth_chainId" }), 16);
    say("Preparing the sign-in message…");
    const challenge = await post("/console/sign-in/challenge", { address, chain_id: chainId });
    if (!challenge.ok) return say(explain(challenge.payload), "status", "error");
    say("Sign the message in your wallet…");
    const signature = await wallet.request({
      method: "personal_sign",
      params: [challenge.payload.message, address],
    });
    const verified = await post("/console/sign-in/verify", { nonce: challenge.payload.nonce, signature });
    if (!verified.ok) return say(explain(verified.payload), "status", "error");
    window.location.assign(verified.payload.next);
  } catch (error) {
    say(error.message || String(error), "status", "error");
  }
}

async function tokenSignIn(event) {
  event.preventDefault();
  const field = document.getElementById("api-token");
  const result = await post("/console/sign-in/token", { token: field.value });
  field.value = "";
  if (!result.ok) return say(explain(result.payload), "status", "error");
  window.location.assign(result.payload.next);
}

async function chooseTenant(event) {
  const result = await post("/console/tenant", { tenant_id: event.currentTarget.dataset.tenant }, csrf());
  if (!result.ok) return say(explain(result.payload), "status", "error");
  window.location.assign(result.payload.next);
}

async function signOut() {
  await post("/console/sign-out", {}, csrf());
  window.location.assign("/console/");
}

async function checkChain(wallet) {
  const want = Number(meta("console-chain-id"));
  if (!want) return;
  const have = parseInt(await wallet.request({ method: "eth_chainId" }), 16);
  if (have === want) return;
  try {
    await wallet.request({ method: "wallet_switchEthereumChain", params: [{ chainId: `0x${want.toString(16)}` }] });
  } catch {
    throw new Error(`Switch your wallet to chain ${want} (it is on ${have}) and try again.`);
  }
}

let busy = false;
let held = false; // a result or an error the user is reading: live updates do not reload over it

async function answer(approve) {
  if (busy) return;
  busy = true;
  const button = document.getElementById(approve ? "approve" : "reject");
  const actionId = button.dataset.action;
  const role = document.getElementById("answer-role").value;
  const text = document.getElementById("answer-text").value.trim();
  try {
    if (!approve && !text) throw new Error("Give a reason to reject.");
    const wallet = provider();
    const address = await account(wallet);
    await checkChain(wallet);
    const query = new URLSearchParams({ role, approve: String(approve) });
    const requested = await fetch(`/v1/actions/${encodeURIComponent(actionId)}/approval-request?${query}`);
    const typed = await requested.json();
    if (!requested.ok) throw new Error(explain(typed));
    say("Confirm in your wallet…", "answer-result");
    const signature = await wallet.request({
      method: "eth_signTypedData_v4",
      params: [address, JSON.stringify(typed)],
    });
    const body = { approver_role: role, signature, signer: address };
    if (text) body[approve ? "comment" : "reason"] = text;
    const result = await post(`/v1/actions/${encodeURIComponent(actionId)}/${approve ? "approve" : "reject"}`, body);
    if (!result.ok) throw new Error(explain(result.payload));
    say(`Done: the action is now ${result.payload.status}.`, "answer-result", "ok");
    held = true; // this page reloads itself (once), not also on the live update of this answer
    setTimeout(() => window.location.reload(), 1200);
  } catch (error) {
    say(error.message || String(error), "answer-result", "error");
    held = true;
  } finally {
    busy = false;
  }
}

async function bulk(approve) {
  if (busy) return;
  busy = true;
  const results = document.getElementById("bulk-results");
  results.replaceChildren();
  try {
    const role = document.getElementById("bulk-role").value;
    const text = document.getElementById("bulk-comment").value.trim();
    const ids = [...document.querySelectorAll("input.select:checked")]
      .filter((box) => box.dataset.roles.split(" ").includes(role))
      .map((box) => box.value);
    if (!ids.length) throw new Error(`Select actions that need the role ${role}.`);
    const tenant = document.getElementById("bulk-approve").dataset.tenant;
    const wallet = provider();
    const address = await account(wallet);
    await checkChain(wallet);
    const base = `/v1/tenants/${encodeURIComponent(tenant)}/approvals`;
    const requested = await post(`${base}/bulk-request`, { approver_role: role, approve, action_ids: ids });
    if (!requested.ok) throw new Error(explain(requested.payload));
    const typed = requested.payload;
    say(`Confirm ${ids.length} ${approve ? "approvals" : "rejections"} in your wallet…`);
    const signature = await wallet.request({
      method: "eth_signTypedData_v4",
      params: [address, JSON.stringify(typed)],
    });
    const items = typed.message.items.map((item) => ({ action_id: item.actionId, action_hash: item.actionHash }));
    const body = { approver_role: role, approve, deadline: typed.message.deadline, items, signature, signer: address };
    if (text) body.comment = text;
    const result = await post(`${base}/bulk`, body);
    if (!result.ok) throw new Error(explain(result.payload));
    for (const item of result.payload.results) {
      const li = document.createElement("li");
      li.className = item.ok ? "ok" : "error";
      li.textContent = item.ok ? `${item.action_id}: ${item.status}` : `${item.action_id}: ${explain(item)}`;
      results.append(li);
    }
    say("Bulk answer recorded; see each item's result below.");
    held = true;
  } catch (error) {
    say(error.message || String(error), "status", "error");
    held = true;
  } finally {
    busy = false;
  }
}

// Live updates: the server's event stream says when an action changed (proposed, approved,
// decided, expired, executed: on an action's page, that action) after what this page shows
// (/console/live, Server-Sent Events). The page then reloads, unless the user is busy, typing,
// has selected something or is reading a result; then it says so instead.
function watch() {
  const size = Number(meta("console-live")); // the log's size when the server rendered this page
  const query = new URLSearchParams({ after: String(size - 1) });
  if (meta("console-action")) query.set("action_id", meta("console-action"));
  const source = new EventSource(`/console/live?${query}`);
  let pending = false;
  source.addEventListener("changed", () => {
    if (pending) return;
    const typing = [...document.querySelectorAll("textarea, input:not([type=checkbox]):not([type=radio])")].some(
      (el) => el.value && el.type !== "hidden",
    );
    const selected = document.querySelector("input.select:checked");
    if (busy || held || typing || selected) {
      say("New activity: reload to see it.");
      return;
    }
    pending = true; // several entries land together: reload once, a moment after the first
    setTimeout(() => window.location.reload(), 500);
  });
  source.addEventListener("signed-out", () => {
    source.close();
    window.location.assign("/console/");
  });
}

function on(id, event, handler) {
  const el = document.getElementById(id);
  if (el) el.addEventListener(event, handler);
}

function start() {
  on("connect", "click", signIn);
  on("token-form", "submit", tokenSignIn);
  on("sign-out", "click", signOut);
  on("approve", "click", () => answer(true));
  on("reject", "click", () => answer(false));
  on("bulk-approve", "click", () => bulk(true));
  on("bulk-reject", "click", () => bulk(false));
  for (const button of document.querySelectorAll(".choose-tenant")) button.addEventListener("click", chooseTenant);
  listWallets();
  if (meta("console-live")) watch();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
