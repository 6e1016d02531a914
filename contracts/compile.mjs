// Compiles the contracts in this folder with solc-js (version pinned in package.json and
// package-lock.json) into artifacts/<Contract>.json: ABI, creation bytecode, runtime bytecode,
// compiler version and settings, and the SHA-256 of the source (tests/unit/contracts checks it
// against the .sol file, so a committed artifact cannot silently drift from its source).
//
//   cd contracts && npm ci && node compile.mjs
//
// The EVM version is pinned to Prague (what eth-tester's py-evm chain runs, and mainnet since
// May 2025), not left to the compiler's default.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const here = dirname(fileURLToPath(import.meta.url));
const CONTRACTS = ["VerdictAccount", "TestToken"];
const SETTINGS = { evmVersion: "prague", optimizer: { enabled: true, runs: 200 } };

mkdirSync(join(here, "artifacts"), { recursive: true });
for (const name of CONTRACTS) {
  const sourceName = `${name}.sol`;
  const source = readFileSync(join(here, sourceName));
  const input = {
    language: "Solidity",
    sources: { [sourceName]: { content: source.toString("utf8") } },
    settings: {
      ...SETTINGS,
      outputSelection: { [sourceName]: { [name]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors ?? [];
  for (const problem of problems) process.stderr.write(problem.formattedMessage + "\n");
  if (problems.length > 0) {
    process.stderr.write(`compile.mjs: solc reported errors or warnings for ${sourceName}; nothing written\n`);
    process.exit(1);
  }
  const contract = output.contracts[sourceName][name];
  const artifact = {
    contract: name,
    source: sourceName,
    source_sha256: createHash("sha256").update(source).digest("hex"),
    solc_version: solc.version(),
    settings: SETTINGS,
    abi: contract.abi,
    bytecode: "0x" + contract.evm.bytecode.object,
    deployed_bytecode: "0x" + contract.evm.deployedBytecode.object,
  };
  writeFileSync(join(here, "artifacts", `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
  process.stdout.write(`artifacts/${name}.json: solc ${artifact.solc_version}, source sha256 ${artifact.source_sha256}\n`);
}
