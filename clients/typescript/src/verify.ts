/**
 * Checking a signed verdict before acting on it, offline but for the gateway's published keys:
 *
 * (1) the typed data is exactly a `Verdict` of this gateway (no other fields, types or domain);
 * (2) its EIP-712 signature recovers (viem) to the signer it names;
 * (3) that signer is a published verdict signer (`GET /v1/keys`) not retired before issuance;
 * (4) the decision is ALLOW;
 * (5) `actionHash` is keccak-256 of the action's RFC 8785 canonical JSON (`canonicalize`);
 * (6) it has not expired, and is not issued in the future (beyond the clock skew).
 *
 * The steps are those of the Python client's `check_signed_verdict`; both run the shared vectors
 * in tests/vectors/signed_verdict.
 */

import canonicalize from "canonicalize";
import { type Hex, isAddressEqual, keccak256, recoverTypedDataAddress, stringToBytes } from "viem";

import { VerdictInvalid } from "./errors.js";

export const DECISION_ALLOW = 1;
export const CLOCK_SKEW_SECONDS = 30;

const DOMAIN_MEMBERS = [
  { name: "name", type: "string" },
  { name: "version", type: "string" },
  { name: "chainId", type: "uint256" },
  { name: "verifyingContract", type: "address" },
];
const VERDICT_MEMBERS = [
  { name: "actionId", type: "string" },
  { name: "actionHash", type: "bytes32" },
  { name: "tenant", type: "string" },
  { name: "agent", type: "string" },
  { name: "actionType", type: "string" },
  { name: "decision", type: "uint8" },
  { name: "policyVersion", type: "uint64" },
  { name: "policyHash", type: "bytes32" },
  { name: "issuedAt", type: "uint64" },
  { name: "expiresAt", type: "uint64" },
];
const BYTES32 = /^0x[0-9a-fA-F]{64}$/;

/** What the gateway answers a proposal or `GET …/verdict` with once an action is allowed. */
export interface SignedVerdict {
  typed_data: Record<string, unknown>;
  signature: string;
  signer: string;
  expires_at: string;
}

/** One verdict signer of `GET /v1/keys`. */
export interface VerdictSignerInfo {
  address: string;
  status: string;
  not_before: string;
  not_after?: string | null;
}

/** The `Verdict` message, checked. */
export interface VerdictMessage {
  actionId: string;
  actionHash: Hex;
  tenant: string;
  agent: string;
  actionType: string;
  decision: number;
  policyVersion: number;
  policyHash: Hex;
  issuedAt: number;
  expiresAt: number;
  chainId: number;
  verifyingContract: Hex;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function sameKeys(value: Record<string, unknown>, keys: string[]): boolean {
  const have = Object.keys(value).sort();
  const want = [...keys].sort();
  return have.length === want.length && have.every((key, index) => key === want[index]);
}

function sameJSON(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** (1) Parse the typed data strictly. Throws VerdictInvalid("typed_data"). */
export function parseVerdictTypedData(typedData: unknown): VerdictMessage {
  const fail = (why: string): never => {
    throw new VerdictInvalid("typed_data", `not a Verdict of this gateway: ${why}`);
  };
  if (!isObject(typedData) || !sameKeys(typedData, ["types", "primaryType", "domain", "message"])) {
    return fail("the document must hold exactly types, primaryType, domain, message");
  }
  const { types, primaryType, domain, message } = typedData;
  if (primaryType !== "Verdict") fail(`primaryType is ${JSON.stringify(primaryType)}`);
  if (!sameJSON(types, { EIP712Domain: DOMAIN_MEMBERS, Verdict: VERDICT_MEMBERS })) fail("unexpected types");
  if (!isObject(domain) || !sameKeys(domain, ["name", "version", "chainId", "verifyingContract"])) {
    return fail("the domain must hold exactly name, version, chainId, verifyingContract");
  }
  if (domain.name !== "Verdict Gateway" || domain.version !== "1") fail("another domain name or version");
  if (!Number.isSafeInteger(domain.chainId) || typeof domain.verifyingContract !== "string") fail("bad domain values");
  if (!isObject(message) || !sameKeys(message, VERDICT_MEMBERS.map((m) => m.name))) {
    return fail("the message fields are not exactly those of Verdict");
  }
  for (const { name, type } of VERDICT_MEMBERS) {
    const value = message[name];
    const ok =
      type === "string"
        ? typeof value === "string"
        : type === "bytes32"
          ? typeof value === "string" && BYTES32.test(value)
          : Number.isSafeInteger(value) && (value as number) >= 0;
    if (!ok) fail(`${name} is not a ${type}`);
  }
  return {
    ...(message as unknown as Omit<VerdictMessage, "chainId" | "verifyingContract">),
    chainId: domain.chainId as number,
    verifyingContract: domain.verifyingContract as Hex,
  };
}

/** keccak-256 of the action's RFC 8785 canonical JSON: the verdict's `actionHash`. */
export function actionHash(action: unknown): Hex {
  const canonical = canonicalize(action);
  if (canonical === undefined) throw new VerdictInvalid("action_hash", "the action cannot be canonicalized");
  return keccak256(stringToBytes(canonical));
}

function unixSeconds(text: string): number {
  return Math.floor(Date.parse(text) / 1000);
}

/**
 * Check `signed` for `action` against the published verdict signers; returns the verdict's
 * message. Throws VerdictInvalid (its `reason` names the failed step, see the module comment).
 * `now`: Unix seconds (default: the clock).
 */
export async function checkSignedVerdict(
  signed: SignedVerdict,
  action: Record<string, unknown>,
  published: readonly VerdictSignerInfo[],
  now: number = Date.now() / 1000,
): Promise<VerdictMessage> {
  const message = parseVerdictTypedData(signed.typed_data); // (1)
  const typed = signed.typed_data as { domain: Record<string, unknown>; message: Record<string, unknown> };
  let recovered: string;
  try {
    recovered = await recoverTypedDataAddress({
      domain: typed.domain,
      types: { Verdict: VERDICT_MEMBERS },
      primaryType: "Verdict",
      message: typed.message,
      signature: signed.signature as Hex,
    }); // (2)
  } catch (error) {
    throw new VerdictInvalid("signature", `the signature cannot be recovered: ${(error as Error).message}`);
  }
  if (typeof signed.signer !== "string" || !isAddressEqual(recovered as Hex, signed.signer as Hex)) {
    throw new VerdictInvalid("signature", `the signature is by ${recovered}, not by ${signed.signer}`);
  }
  const key = published.find((item) => isAddressEqual(item.address as Hex, recovered as Hex)); // (3)
  if (key === undefined) throw new VerdictInvalid("unknown_signer", `${recovered} is not one of the gateway's verdict signers`);
  if (key.not_after && message.issuedAt > unixSeconds(key.not_after)) {
    throw new VerdictInvalid("retired_signer", `${recovered} was retired before this verdict was issued`);
  }
  if (message.decision !== DECISION_ALLOW) {
    throw new VerdictInvalid("not_allow", `the verdict's decision is ${message.decision}, not ALLOW`); // (4)
  }
  if (actionHash(action).toLowerCase() !== message.actionHash.toLowerCase()) {
    throw new VerdictInvalid("action_hash", "the verdict is for another action (action hash differs)"); // (5)
  }
  if (now >= message.expiresAt) {
    throw new VerdictInvalid("expired", `the verdict expired at ${message.expiresAt} (Unix time)`); // (6)
  }
  if (message.issuedAt > now + CLOCK_SKEW_SECONDS) {
    throw new VerdictInvalid("not_yet_valid", "the verdict is issued in the future; check the clocks");
  }
  return message;
}
