"""`verdict-audit verify` (also `python -m audit verify` and `verdict audit verify`): check a proof
bundle (`verdict-proof/v1` JSON or c2sp.org/tlog-proof text) offline, trusting only the log's
verifier key and, with `--policy`, a quorum of witnesses. Needs neither the gateway nor a database.

Exit status: 0 when every check holds, 1 when one fails (the message names the step and the entry),
2 for unusable arguments (a missing file, a keys file that is not the gateway's keys JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audit.bundle import verify_bundle
from audit.errors import AuditError, BundleError
from audit.tlog_proof import TLOG_PROOF_HEADER, parse_tlog_proofs
from audit.witness_policy import parse_policy


def verify(
    bundle_path: str, vkey: str | list[str], keys_path: str | None = None, policy_path: str | None = None
) -> int:
    """Verify the bundle at `bundle_path` (`-` reads standard input) and print the outcome.
    `vkey`: one or several keys of the log (each a vkey or @FILE). The bundle is `verdict-proof/v1`
    JSON or c2sp.org/tlog-proof text. `policy_path`: a c2sp.org/tlog-policy file whose witness
    quorum the checkpoint must meet."""
    try:
        vkey = [_vkey(v) for v in ([vkey] if isinstance(vkey, str) else vkey)]
        signers = _verdict_signers(keys_path) if keys_path else None
        policy = parse_policy(Path(policy_path).read_text()) if policy_path else None
        data = sys.stdin.buffer.read() if bundle_path == "-" else Path(bundle_path).read_bytes()
    except (OSError, ValueError, AuditError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if data.startswith(TLOG_PROOF_HEADER.encode()):
            data = parse_tlog_proofs(data.decode("utf-8", errors="replace"))
        verified = verify_bundle(data, vkey, verdict_signers=signers, witness_policy=policy)
    except BundleError as error:
        print(f"FAILED {error}", file=sys.stderr)
        return 1
    checkpoint = verified.checkpoint
    indexes = [entry.seq for entry in verified.entries]
    meaning = ", ".join(f"{n} {kind}" for kind, n in sorted(verified.meaning_checked.items())) or "none"
    print(f"OK  {len(indexes)} entries ({_ranges(indexes)}) of {checkpoint.origin}")
    print(f"    checkpoint: size {checkpoint.size}, root {checkpoint.root_hash.hex()}, signature verified")
    if policy is not None:
        print(f"    witnesses: cosignatures meet the policy's quorum ({policy.quorum})")
    print("    inclusion proofs verified; chain links verified between consecutive entries")
    print(
        f"    meaning verified: {meaning}" + ("" if signers is None else " (verdict signers from keys file)")
    )
    return 0


def _vkey(value: str) -> str:
    """A vkey, or `@path` / a path to a file holding one."""
    path = Path(value[1:] if value.startswith("@") else value)
    if value.startswith("@") or ("+" not in value and path.exists()):
        return path.read_text().strip()
    return value.strip()


def _verdict_signers(path: str) -> list[str]:
    """The addresses of `verdict_signers` in a keys JSON (`GET /v1/tenants/{t}/keys` or `/v1/keys`)."""
    try:
        keys = json.loads(Path(path).read_text())
        return [signer["address"] for signer in keys["verdict_signers"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} is not a keys JSON with verdict_signers[].address ({error})") from None


def _ranges(indexes: list[int]) -> str:
    parts, start = [], None
    for i, index in enumerate(indexes):
        if start is None:
            start = index
        if i + 1 == len(indexes) or indexes[i + 1] != index + 1:
            parts.append(str(start) if start == index else f"{start}-{index}")
            start = None
    return "indexes " + ", ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verdict-audit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="verify a proof bundle offline")
    check.add_argument("bundle", help="the bundle file (verdict-proof/v1 JSON), or - for standard input")
    check.add_argument(
        "--vkey",
        required=True,
        action="append",
        help="the log's verifier key, or @FILE holding it; repeat for retired keys after a rotation",
    )
    check.add_argument("--keys", help="keys JSON naming the gateway's verdict signers (optional)")
    check.add_argument("--policy", help="c2sp.org/tlog-policy file: the witness quorum to require (optional)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return verify(args.bundle, args.vkey, args.keys, args.policy)


if __name__ == "__main__":
    sys.exit(main())
