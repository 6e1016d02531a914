// Generates EIP-712 test vectors for Verdict's `Verdict`, `Approval` and `BulkApproval` structs.
//
//   cd tests/vectors/eip712 && npm install && node gen_vectors.mjs > verdict_vectors.json
//
// Every digest and signature is computed by viem (hashTypedData, privateKeyToAccount
// .signTypedData) and recomputed by ethers (TypedDataEncoder.hash, Wallet.signTypedData);
// the script exits non-zero if the two disagree on anything. Mutation cases (want_err)
// are derived from the valid ones: wrong signer, flipped bits, the high-s twin (EIP-2), etc.
// BulkApproval mutations also reorder, drop and edit items; each one that yields another
// digest is checked to recover to someone else in both viem and ethers.
// New vectors are appended after the existing ones, so those stay byte for byte the same.
//
// Output: [{desc, input: {private_key, typed_data}, want: {digest, signature, signer}}
//          | {desc, input: {typed_data, signature, expected_signer}, want: {signer} | want_err}]
// Integers that JavaScript cannot hold exactly are written as bare JSON integers.

import { TypedDataEncoder, Wallet, verifyTypedData } from "ethers";
import { hashTypedData, recoverTypedDataAddress } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const MAX_UINT64 = 2n ** 64n - 1n;

const DOMAIN_FIELDS = [
  { name: "name", type: "string" },
  { name: "version", type: "string" },
  { name: "chainId", type: "uint256" },
  { name: "verifyingContract", type: "address" },
];
const VERDICT_FIELDS = [
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
const APPROVAL_FIELDS = [
  { name: "actionId", type: "string" },
  { name: "actionHash", type: "bytes32" },
  { name: "tenant", type: "string" },
  { name: "role", type: "string" },
  { name: "approve", type: "bool" },
  { name: "expiresAt", type: "uint64" },
  { name: "summary", type: "string" },
];
const APPROVAL_ITEM_FIELDS = [
  { name: "actionId", type: "string" },
  { name: "actionHash", type: "bytes32" },
];
const BULK_APPROVAL_FIELDS = [
  { name: "tenant", type: "string" },
  { name: "role", type: "string" },
  { name: "approve", type: "bool" },
  { name: "deadline", type: "uint64" },
  { name: "items", type: "ApprovalItem[]" },
];

const KEYS = {
  hardhat0: "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  hardhat1: "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  one: "0x0000000000000000000000000000000000000000000000000000000000000001",
  orderMinusOne: "0x" + (SECP256K1_N - 1n).toString(16),
};
const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";
const CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const hex32 = (byte) => "0x" + byte.repeat(32);

function domain(chainId, verifyingContract = CONTRACT) {
  return { name: "Verdict Gateway", version: "1", chainId: BigInt(chainId), verifyingContract };
}

function verdict(overrides = {}) {
  return {
    actionId: "act_01J9Z3K8M4",
    actionHash: hex32("11"),
    tenant: "acme",
    agent: "agent-7",
    actionType: "http.post",
    decision: 1n,
    policyVersion: 3n,
    policyHash: hex32("22"),
    issuedAt: 1700000000n,
    expiresAt: 1700000060n,
    ...overrides,
  };
}

function approval(overrides = {}) {
  return {
    actionId: "act_01J9Z3K8M4",
    actionHash: hex32("11"),
    tenant: "acme",
    role: "treasury-approver",
    approve: true,
    expiresAt: 1700003600n,
    summary: "Pay invoice #42: 1,250.00 USD to Globex",
    ...overrides,
  };
}

function bulkApproval(overrides = {}) {
  return {
    tenant: "acme",
    role: "treasury-approver",
    approve: true,
    deadline: 1700003600n,
    items: [
      { actionId: "act_01J9Z3K8M4", actionHash: hex32("11") },
      { actionId: "act_01J9Z3K8M5", actionHash: hex32("22") },
      { actionId: "act_01J9Z3K8M6", actionHash: "0x9c22ff5f21f0b81b113e63f7db6da94fedef11b2119b4088b89664fb9a3cb658" },
    ],
    ...overrides,
  };
}

const verdictData = (dom, message) => ({
  types: { EIP712Domain: DOMAIN_FIELDS, Verdict: VERDICT_FIELDS },
  primaryType: "Verdict",
  domain: dom,
  message,
});
const approvalData = (dom, message) => ({
  types: { EIP712Domain: DOMAIN_FIELDS, Approval: APPROVAL_FIELDS },
  primaryType: "Approval",
  domain: dom,
  message,
});

const bulkApprovalData = (dom, message) => ({
  types: { EIP712Domain: DOMAIN_FIELDS, BulkApproval: BULK_APPROVAL_FIELDS, ApprovalItem: APPROVAL_ITEM_FIELDS },
  primaryType: "BulkApproval",
  domain: dom,
  message,
});

// [desc, private key, typed data]
const CASES = [
  ["verdict/chain-1-zero-address", KEYS.hardhat0, verdictData(domain(1, ZERO_ADDRESS), verdict())],
  ["verdict/chain-8453-checksummed-address", KEYS.hardhat0, verdictData(domain(8453), verdict())],
  ["verdict/chain-11155111-other-key", KEYS.hardhat1, verdictData(domain(11155111), verdict())],
  ["verdict/chain-id-above-2**53", KEYS.hardhat0, verdictData(domain(2n ** 53n + 7n), verdict())],
  ["verdict/chain-id-2**256-1", KEYS.hardhat0, verdictData(domain(2n ** 256n - 1n), verdict())],
  [
    "verdict/max-uint64-and-uint8",
    KEYS.hardhat0,
    verdictData(
      domain(8453),
      verdict({ decision: 255n, policyVersion: MAX_UINT64, issuedAt: MAX_UINT64, expiresAt: MAX_UINT64 }),
    ),
  ],
  [
    "verdict/all-zero",
    KEYS.hardhat0,
    verdictData(
      domain(1, ZERO_ADDRESS),
      verdict({ actionHash: hex32("00"), decision: 0n, policyVersion: 0n, policyHash: hex32("00"), issuedAt: 0n, expiresAt: 0n }),
    ),
  ],
  [
    "verdict/empty-strings",
    KEYS.hardhat0,
    verdictData(domain(8453), verdict({ actionId: "", tenant: "", agent: "", actionType: "" })),
  ],
  [
    "verdict/unicode-latin-cjk-rtl",
    KEYS.hardhat0,
    verdictData(domain(8453), verdict({ tenant: "Zürich AG", agent: "東京-エージェント", actionType: "مرحبا.send" })),
  ],
  [
    "verdict/unicode-astral-and-zwj",
    KEYS.hardhat0,
    verdictData(domain(8453), verdict({ actionId: "🚀-launch", agent: "👩‍👩‍👧‍👦", actionType: "𝔘𝔫𝔦𝔠𝔬𝔡𝔢" })),
  ],
  [
    "verdict/unicode-combining-bom-line-separator",
    KEYS.hardhat0,
    verdictData(domain(8453), verdict({ tenant: "e\u0301cole", agent: "\ufeffbom", actionType: "a\u2028b\u2029c" })),
  ],
  [
    "verdict/control-chars-quotes-backslashes",
    KEYS.hardhat0,
    verdictData(domain(8453), verdict({ actionId: "a\u0000b\tc\nd", tenant: '"quoted"', agent: "back\\slash", actionType: "\u007f/" })),
  ],
  [
    "verdict/hex-and-number-looking-strings",
    KEYS.hardhat0,
    verdictData(domain(8453), verdict({ actionId: "0x1234", tenant: "0x", agent: "123", actionType: "1e3" })),
  ],
  ["verdict/long-string", KEYS.hardhat0, verdictData(domain(8453), verdict({ actionType: "x".repeat(1000) }))],
  [
    "verdict/hashes-all-ff",
    KEYS.hardhat0,
    verdictData(domain(8453), verdict({ actionHash: hex32("ff"), policyHash: hex32("ff") })),
  ],
  ["verdict/private-key-1", KEYS.one, verdictData(domain(1), verdict())],
  ["verdict/private-key-n-minus-1", KEYS.orderMinusOne, verdictData(domain(1), verdict())],
  ["verdict/decision-0-deny", KEYS.hardhat1, verdictData(domain(8453), verdict({ decision: 0n }))],
  [
    "verdict/realistic-base-mainnet",
    KEYS.hardhat1,
    verdictData(
      domain(8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
      verdict({
        actionId: "01JAB7Q9W3N4XK2V5R8T6Y1M0P",
        actionHash: "0x9c22ff5f21f0b81b113e63f7db6da94fedef11b2119b4088b89664fb9a3cb658",
        tenant: "tenant_42",
        agent: "procurement-bot@acme",
        actionType: "erc20.transfer",
        policyVersion: 17n,
        policyHash: "0x4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15",
        issuedAt: 1731000000n,
        expiresAt: 1731000300n,
      }),
    ),
  ],
  ["verdict/uppercase-ascii-in-address", KEYS.hardhat0, verdictData(domain(10, "0xDeaDbeefdEAdbeefdEadbEEFdeadbeEFdEaDbeeF"), verdict())],
  ["approval/approve", KEYS.hardhat1, approvalData(domain(8453), approval())],
  ["approval/reject-empty-summary", KEYS.hardhat1, approvalData(domain(8453), approval({ approve: false, summary: "" }))],
  [
    "approval/unicode-multiline-summary-max-expiry",
    KEYS.hardhat0,
    approvalData(
      domain(1, ZERO_ADDRESS),
      approval({ role: "approbateur·trésorerie", expiresAt: MAX_UINT64, summary: "Zahlung 💶\n- Betrag: 1.250,00 €\n- \"Globex\"" }),
    ),
  ],
  ["approval/chain-id-above-2**53", KEYS.hardhat0, approvalData(domain(2n ** 53n + 7n), approval({ approve: false }))],
];

function fail(message) {
  process.stderr.write(`gen_vectors: ${message}\n`);
  process.exit(1);
}

function withoutDomainType(types) {
  const { EIP712Domain: _, ...rest } = types;
  return rest;
}

const vectors = [];
async function signingVector(desc, privateKey, typedData) {
  const account = privateKeyToAccount(privateKey);
  const wallet = new Wallet(privateKey);
  const digest = hashTypedData(typedData);
  const signature = await account.signTypedData(typedData);
  const ethersTypes = withoutDomainType(typedData.types);
  const ethersDigest = TypedDataEncoder.hash(typedData.domain, ethersTypes, typedData.message);
  const ethersSignature = await wallet.signTypedData(typedData.domain, ethersTypes, typedData.message);
  if (digest !== ethersDigest) fail(`${desc}: viem digest ${digest} != ethers digest ${ethersDigest}`);
  if (signature !== ethersSignature) fail(`${desc}: viem signature ${signature} != ethers ${ethersSignature}`);
  if (account.address !== wallet.address) fail(`${desc}: viem address ${account.address} != ethers ${wallet.address}`);
  const viemRecovered = await recoverTypedDataAddress({ ...typedData, signature });
  const ethersRecovered = verifyTypedData(typedData.domain, ethersTypes, typedData.message, signature);
  if (viemRecovered !== account.address || ethersRecovered !== account.address) {
    fail(`${desc}: recovered ${viemRecovered} (viem) / ${ethersRecovered} (ethers), signed by ${account.address}`);
  }
  return {
    desc,
    input: { private_key: privateKey, typed_data: typedData },
    want: { digest, signature, signer: account.address },
  };
}
for (const [desc, privateKey, typedData] of CASES) {
  vectors.push(await signingVector(desc, privateKey, typedData));
}

// ---- Mutations of the first verdict and the first approval: what verification must refuse.
const hexToBytes = (hex) => Uint8Array.from(Buffer.from(hex.slice(2), "hex"));
const bytesToHex = (bytes) => "0x" + Buffer.from(bytes).toString("hex");
const toWord = (n) => n.toString(16).padStart(64, "0");

function flipBit(signature, byteIndex, bit) {
  const bytes = hexToBytes(signature);
  bytes[byteIndex] ^= 1 << bit;
  return bytesToHex(bytes);
}

function withV(signature, v) {
  const bytes = hexToBytes(signature);
  bytes[64] = v;
  return bytesToHex(bytes);
}

// EIP-2: (r, n - s) with the opposite parity is an equally valid ECDSA signature of the same digest.
function highSTwin(signature) {
  const s = BigInt("0x" + signature.slice(66, 130));
  const v = parseInt(signature.slice(130, 132), 16);
  return signature.slice(0, 66) + toWord(SECP256K1_N - s) + (v === 27 ? "1c" : "1b");
}

const clone = (typedData) => structuredClone(typedData);

for (const base of [vectors[1], vectors.find((vector) => vector.desc.startsWith("approval/"))]) {
  const { typed_data: typedData } = base.input;
  const { signature, signer } = base.want;
  const other = privateKeyToAccount(signer === privateKeyToAccount(KEYS.hardhat1).address ? KEYS.hardhat0 : KEYS.hardhat1);
  const twin = highSTwin(signature);
  // The twin really is valid ECDSA: libraries that do not enforce EIP-2 accept it.
  if ((await recoverTypedDataAddress({ ...typedData, signature: twin })) !== signer) {
    fail(`${base.desc}: viem did not recover the high-s twin to ${signer}`);
  }
  const tenantChanged = clone(typedData);
  tenantChanged.message.tenant = "evil-corp";
  const chainChanged = clone(typedData);
  chainChanged.domain.chainId = 1n;
  const contractChanged = clone(typedData);
  contractChanged.domain.verifyingContract = ZERO_ADDRESS;
  const expiryAsString = clone(typedData);
  expiryAsString.message.expiresAt = String(typedData.message.expiresAt);
  const shortHash = clone(typedData);
  shortHash.message.actionHash = typedData.message.actionHash.slice(0, 10);
  const foreignDomain = clone(typedData);
  foreignDomain.domain.name = "Some Other Gateway";

  const mutations = [
    ["v-as-recovery-id", typedData, withV(signature, parseInt(signature.slice(130), 16) - 27), signer, null],
    ["wrong-signer", typedData, signature, other.address, "SignatureMismatchError"],
    ["modified-signature-r-bit-0", typedData, flipBit(signature, 31, 0), signer, "SignatureError"],
    ["modified-signature-s-bit-3", typedData, flipBit(signature, 40, 3), signer, "SignatureError"],
    ["flipped-v", typedData, withV(signature, signature.endsWith("1b") ? 28 : 27), signer, "SignatureMismatchError"],
    ["v-29", typedData, withV(signature, 29), signer, "SignatureError"],
    ["high-s-twin", typedData, twin, signer, "SignatureError"],
    ["truncated-signature", typedData, signature.slice(0, 130), signer, "SignatureError"],
    ["zero-r", typedData, "0x" + "00".repeat(32) + signature.slice(66), signer, "SignatureError"],
    ["modified-message-tenant", tenantChanged, signature, signer, "SignatureMismatchError"],
    ["modified-domain-chain-id", chainChanged, signature, signer, "SignatureMismatchError"],
    ["modified-domain-contract", contractChanged, signature, signer, "SignatureMismatchError"],
    ["foreign-domain-name", foreignDomain, signature, signer, "TypedDataError"],
    ["uint-as-string", expiryAsString, signature, signer, "TypedDataError"],
    ["short-bytes32", shortHash, signature, signer, "TypedDataError"],
  ];
  for (const [name, mutated, mutatedSignature, expectedSigner, wantErr] of mutations) {
    const vector = {
      desc: `${base.desc}/${name}`,
      input: { typed_data: mutated, signature: mutatedSignature, expected_signer: expectedSigner },
    };
    if (wantErr === null) vector.want = { signer };
    else vector.want_err = wantErr;
    vectors.push(vector);
  }
}

// ---- BulkApproval: signing vectors, then mutations of the one with three items.
const BULK_CASES = [
  [
    "bulk-approval/one-item",
    KEYS.hardhat1,
    bulkApprovalData(domain(8453), bulkApproval({ items: [{ actionId: "act_01J9Z3K8M4", actionHash: hex32("11") }] })),
  ],
  ["bulk-approval/three-items", KEYS.hardhat1, bulkApprovalData(domain(8453), bulkApproval())],
  [
    "bulk-approval/unicode-strings",
    KEYS.hardhat0,
    bulkApprovalData(
      domain(8453),
      bulkApproval({
        tenant: "Zürich AG",
        role: "approbateur·trésorerie",
        items: [
          { actionId: "東京-エージェント-1", actionHash: hex32("33") },
          { actionId: "🚀-launch👩‍👩‍👧‍👦", actionHash: hex32("44") },
          { actionId: "e\u0301cole\u2028مرحبا", actionHash: hex32("55") },
        ],
      }),
    ),
  ],
  ["bulk-approval/reject", KEYS.hardhat0, bulkApprovalData(domain(1, ZERO_ADDRESS), bulkApproval({ approve: false }))],
  [
    "bulk-approval/max-uint64-deadline",
    KEYS.hardhat1,
    bulkApprovalData(domain(2n ** 256n - 1n), bulkApproval({ deadline: MAX_UINT64 })),
  ],
  [
    "bulk-approval/empty-strings-zero-deadline",
    KEYS.one,
    bulkApprovalData(
      domain(2n ** 53n + 7n),
      bulkApproval({ tenant: "", role: "", deadline: 0n, items: [{ actionId: "", actionHash: hex32("00") }] }),
    ),
  ],
  [
    "bulk-approval/hundred-items",
    KEYS.hardhat0,
    bulkApprovalData(
      domain(8453),
      bulkApproval({
        items: Array.from({ length: 100 }, (_, n) => ({
          actionId: `act_${String(n).padStart(3, "0")}`,
          actionHash: hex32(n.toString(16).padStart(2, "0")),
        })),
      }),
    ),
  ],
];
for (const [desc, privateKey, typedData] of BULK_CASES) {
  vectors.push(await signingVector(desc, privateKey, typedData));
}

async function recoveredByBoth(typedData, signature) {
  const viemRecovered = await recoverTypedDataAddress({ ...typedData, signature });
  const ethersTypes = withoutDomainType(typedData.types);
  const ethersRecovered = verifyTypedData(typedData.domain, ethersTypes, typedData.message, signature);
  if (viemRecovered !== ethersRecovered) fail(`viem recovered ${viemRecovered}, ethers ${ethersRecovered}`);
  return viemRecovered;
}

{
  const base = vectors.find((vector) => vector.desc === "bulk-approval/three-items");
  const { typed_data: typedData } = base.input;
  const { signature, signer } = base.want;
  const other = privateKeyToAccount(KEYS.hardhat0);
  const mutate = (edit) => {
    const mutated = clone(typedData);
    edit(mutated.message);
    return mutated;
  };
  const [first, second, third] = typedData.message.items;
  const itemsReordered = mutate((message) => (message.items = [second, first, third]));
  const itemDropped = mutate((message) => message.items.pop());
  const itemAppended = mutate((message) => message.items.push({ actionId: "act_01J9Z3K8M7", actionHash: hex32("77") }));
  const itemHashEdited = mutate((message) => (message.items[1].actionHash = flipBit(second.actionHash, 31, 0)));
  const itemIdEdited = mutate((message) => (message.items[0].actionId = "act_01J9Z3K8M9"));
  const tenantChanged = mutate((message) => (message.tenant = "evil-corp"));
  const approveFlipped = mutate((message) => (message.approve = false));
  const chainChanged = clone(typedData);
  chainChanged.domain.chainId = 1n;
  const noItems = mutate((message) => (message.items = []));
  const itemDuplicated = mutate((message) => (message.items = [first, second, first]));
  const itemExtraField = mutate((message) => (message.items[2].summary = "not in ApprovalItem"));
  const deadlineAsString = mutate((message) => (message.deadline = String(typedData.message.deadline)));
  const itemShortHash = mutate((message) => (message.items[1].actionHash = second.actionHash.slice(0, 10)));
  const asSingleApproval = clone(typedData);
  delete asSingleApproval.types.ApprovalItem;
  const otherSignerMutations = [
    ["items-reordered", itemsReordered],
    ["item-dropped", itemDropped],
    ["item-appended", itemAppended],
    ["modified-items[1]-actionHash-bit-0", itemHashEdited],
    ["modified-items[0]-actionId", itemIdEdited],
    ["modified-message-tenant", tenantChanged],
    ["modified-message-approve", approveFlipped],
    ["modified-domain-chain-id", chainChanged],
  ];
  // viem and ethers agree that each of these documents is signed by someone else.
  for (const [name, mutated] of otherSignerMutations) {
    if ((await recoveredByBoth(mutated, signature)) === signer) fail(`${base.desc}/${name}: digest did not change`);
  }
  const mutations = [
    ["v-as-recovery-id", typedData, withV(signature, parseInt(signature.slice(130), 16) - 27), signer, null],
    ["wrong-signer", typedData, signature, other.address, "SignatureMismatchError"],
    ["flipped-v", typedData, withV(signature, signature.endsWith("1b") ? 28 : 27), signer, "SignatureMismatchError"],
    ["high-s-twin", typedData, highSTwin(signature), signer, "SignatureError"],
    ...otherSignerMutations.map(([name, mutated]) => [name, mutated, signature, signer, "SignatureMismatchError"]),
    ["no-items", noItems, signature, signer, "TypedDataError"],
    ["item-duplicated", itemDuplicated, signature, signer, "TypedDataError"],
    ["item-extra-field", itemExtraField, signature, signer, "TypedDataError"],
    ["uint-as-string", deadlineAsString, signature, signer, "TypedDataError"],
    ["item-short-bytes32", itemShortHash, signature, signer, "TypedDataError"],
    ["types-missing-ApprovalItem", asSingleApproval, signature, signer, "TypedDataError"],
  ];
  for (const [name, mutated, mutatedSignature, expectedSigner, wantErr] of mutations) {
    const vector = {
      desc: `${base.desc}/${name}`,
      input: { typed_data: mutated, signature: mutatedSignature, expected_signer: expectedSigner },
    };
    if (wantErr === null) vector.want = { signer };
    else vector.want_err = wantErr;
    vectors.push(vector);
  }
}

// ---- Approvals presented with v as the recovery id (0/1) instead of 27/28: wallets and
// libraries emit both, and both must verify (viem and ethers recover either form).
{
  const seen = new Set();
  for (const base of vectors.filter((vector) => vector.desc.startsWith("approval/") && "private_key" in vector.input)) {
    const { typed_data: typedData } = base.input;
    const { signature, signer } = base.want;
    const recoveryId = parseInt(signature.slice(130), 16) - 27;
    const presented = withV(signature, recoveryId);
    if ((await recoveredByBoth(typedData, presented)) !== signer) fail(`${base.desc}: v=${recoveryId} not recovered`);
    seen.add(recoveryId);
    vectors.push({
      desc: `${base.desc}/v-${recoveryId}`,
      input: { typed_data: typedData, signature: presented, expected_signer: signer },
      want: { signer },
    });
  }
  if (!seen.has(0) || !seen.has(1)) fail(`approval signatures cover recovery ids ${[...seen]} only, want 0 and 1`);
}

// JSON.stringify cannot write BigInt; write every integer as a bare JSON integer.
const json = JSON.stringify(vectors, (_, value) => (typeof value === "bigint" ? `__bigint__${value}` : value), 2);
process.stdout.write(json.replace(/"__bigint__(\d+)"/g, "$1") + "\n");
