// Compiles OwnerWallet.sol with solc-js (version pinned in package.json and package-lock.json)
// into OwnerWallet.json: ABI, creation bytecode, runtime bytecode, compiler version and settings,
// and the SHA-256 of the source (a unit test checks it against the .sol file, so the committed
// JSON cannot silently drift from the source).
//
//   cd tests/contracts && npm install && node compile.mjs
//
// The EVM version is pinned to the fork eth-tester's py-evm chain runs (Prague), not left to
// the compiler's default, which may be a fork py-evm does not implement yet.

import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const here = dirname(fileURLToPath(import.meta.url));
const SOURCE_NAME = "OwnerWallet.sol";
const CONTRACT = "OwnerWallet";
const SETTINGS = {
  evmVersion: "prague",
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { [SOURCE_NAME]: { [CONTRACT]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

const source = readFileSync(join(here, SOURCE_NAME));
const input = { language: "Solidity", sources: { [SOURCE_NAME]: { content: source.toString("utf8") } }, settings: SETTINGS };
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = output.errors ?? [];
for (const problem of problems) process.stderr.write(problem.formattedMessage + "\n");
if (problems.length > 0) {
  process.stderr.write("compile.mjs: solc reported errors or warnings; OwnerWallet.json not written\n");
  process.exit(1);
}

const contract = output.contracts[SOURCE_NAME][CONTRACT];
const { outputSelection: _, ...recordedSettings } = SETTINGS;
const artifact = {
  contract: CONTRACT,
  source: SOURCE_NAME,
  source_sha256: createHash("sha256").update(source).digest("hex"),
  solc_version: solc.version(),
  settings: recordedSettings,
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployed_bytecode: "0x" + contract.evm.deployedBytecode.object,
};
writeFileSync(join(here, "OwnerWallet.json"), JSON.stringify(artifact, null, 2) + "\n");
process.stdout.write(`OwnerWallet.json: solc ${artifact.solc_version}, source sha256 ${artifact.source_sha256}\n`);
