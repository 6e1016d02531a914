"""Verdict's cryptography: RFC 8785 canonical JSON, EIP-712 verdicts and approvals, key files.

The EIP-1271 contract-wallet check lives in :mod:`crypto.eip1271` and is not re-exported
here: it needs web3, which an auditor's environment does not have.

Depends only on the standard library and audited cryptography packages (eth-account,
coincurve, cryptography, rfc8785, msgspec); never on the gateway or policy engine,
so an auditor can verify verdicts with this package alone.
"""

import sys as _sys

# py_ecc (imported by eth-account) raises the interpreter's recursion limit to 100000 at
# import time. With that limit, C-recursive parsers (json, msgspec, cel) overflow the C
# stack on deeply nested input and the process dies with SIGSEGV instead of raising
# RecursionError. Keep the limit the interpreter had.
_recursion_limit = _sys.getrecursionlimit()
import eth_account  # noqa: F401  (imported here so the limit is restored right after)

_sys.setrecursionlimit(_recursion_limit)

from crypto.canonical import action_hash, canonicalize, keccak256, sha256
from crypto.eip712 import (
    APPROVAL_ITEM_TYPE,
    APPROVAL_TYPE,
    BULK_APPROVAL_TYPE,
    DECISION_ALLOW,
    DOMAIN_NAME,
    DOMAIN_TYPE,
    DOMAIN_VERSION,
    MAX_BULK_APPROVAL_ITEMS,
    VERDICT_TYPE,
    ApprovalItem,
    ApprovalMessage,
    BulkApprovalMessage,
    Domain,
    VerdictMessage,
    approval_typed_data,
    bulk_approval_typed_data,
    domain_separator,
    hash_approval,
    hash_bulk_approval,
    hash_verdict,
    parse_approval_typed_data,
    parse_bulk_approval_typed_data,
    parse_verdict_typed_data,
    verdict_typed_data,
)
from crypto.errors import (
    CanonicalizationError,
    ContractSignerUnavailable,
    CryptoError,
    InvalidKeyError,
    KeyFileError,
    SignatureError,
    SignatureMismatchError,
    TypedDataError,
)
from crypto.keys import (
    generate_ed25519_key_file,
    generate_secp256k1_key_file,
    load_ed25519_key,
    load_secp256k1_key,
    read_secret_file,
    write_secret_file,
)
from crypto.signing import (
    DigestSigner,
    LocalSigner,
    SignedTypedData,
    recover_digest_signer,
    sign_approval,
    sign_bulk_approval,
    sign_verdict,
    verify_approval_signature,
    verify_bulk_approval_signature,
    verify_verdict_signature,
)

__all__ = [
    "APPROVAL_ITEM_TYPE",
    "APPROVAL_TYPE",
    "BULK_APPROVAL_TYPE",
    "DECISION_ALLOW",
    "DOMAIN_NAME",
    "DOMAIN_TYPE",
    "DOMAIN_VERSION",
    "MAX_BULK_APPROVAL_ITEMS",
    "VERDICT_TYPE",
    "ApprovalItem",
    "ApprovalMessage",
    "BulkApprovalMessage",
    "CanonicalizationError",
    "ContractSignerUnavailable",
    "CryptoError",
    "DigestSigner",
    "Domain",
    "InvalidKeyError",
    "KeyFileError",
    "LocalSigner",
    "SignatureError",
    "SignatureMismatchError",
    "SignedTypedData",
    "TypedDataError",
    "VerdictMessage",
    "action_hash",
    "approval_typed_data",
    "bulk_approval_typed_data",
    "canonicalize",
    "domain_separator",
    "generate_ed25519_key_file",
    "generate_secp256k1_key_file",
    "hash_approval",
    "hash_bulk_approval",
    "hash_verdict",
    "keccak256",
    "load_ed25519_key",
    "load_secp256k1_key",
    "parse_approval_typed_data",
    "parse_bulk_approval_typed_data",
    "parse_verdict_typed_data",
    "read_secret_file",
    "recover_digest_signer",
    "sha256",
    "sign_approval",
    "sign_bulk_approval",
    "sign_verdict",
    "verdict_typed_data",
    "verify_approval_signature",
    "verify_bulk_approval_signature",
    "verify_verdict_signature",
    "write_secret_file",
]
