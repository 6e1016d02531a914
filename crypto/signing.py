"""Signing EIP-712 verdicts and (bulk) approvals with secp256k1, and recovering who signed.

Signatures are Ethereum's 65-byte ``r ‖ s ‖ v`` with ``v`` in {27, 28} and
low ``s`` (EIP-2), so any wallet, viem, ethers or ``ecrecover`` accepts them.
Verification rebuilds the digest with eth-account's own EIP-712 encoder, an
implementation independent of :mod:`crypto.eip712`'s fast path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import coincurve

from crypto.canonical import keccak256 as _keccak
from crypto.eip712 import (
    ApprovalMessage,
    BulkApprovalMessage,
    Domain,
    VerdictMessage,
    approval_typed_data,
    bulk_approval_typed_data,
    hash_approval,
    hash_bulk_approval,
    hash_verdict,
    parse_approval_typed_data,
    parse_bulk_approval_typed_data,
    parse_verdict_typed_data,
    to_checksum_address,
    verdict_typed_data,
)
from crypto.errors import InvalidKeyError, SignatureError, SignatureMismatchError

__all__ = [
    "DigestSigner",
    "LocalSigner",
    "SignedTypedData",
    "recover_digest_signer",
    "sign_approval",
    "sign_bulk_approval",
    "sign_verdict",
    "verify_approval_signature",
    "verify_bulk_approval_signature",
    "verify_verdict_signature",
]

# SEC 2 §2.4.1: order n of the secp256k1 group.
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = _SECP256K1_ORDER // 2
_SIGNATURE_HEX = re.compile(r"0x[0-9a-fA-F]{130}")
_ADDRESS_HEX = re.compile(r"0x[0-9a-fA-F]{40}")


class DigestSigner(Protocol):
    """Something that signs 32-byte EIP-712 digests for one secp256k1 address.

    Implementations (local key, KMS, HSM) must be safe to call from several threads
    at once. ``sign_digest`` may block (a remote signer does network I/O); async
    callers run non-local signers in a worker thread. A signer keeps no state
    between calls, so nothing about durability applies.
    """

    address: str
    """The EIP-55 checksummed address whose key signs."""

    def sign_digest(self, digest: bytes) -> bytes:
        """Return the 65-byte signature ``r ‖ s ‖ v`` of ``digest``, ``v`` in {27, 28}, low ``s``."""
        ...


class LocalSigner:
    """A :class:`DigestSigner` holding a secp256k1 private key in process memory.

    Thread-safe: libsecp256k1 only reads its context while signing, and the key is
    never mutated. Signing takes ~30 µs, short enough to call on the event loop.
    Nonces are deterministic (RFC 6979), so equal digests give equal signatures.
    """

    __slots__ = ("_private_key", "address")

    def __init__(self, private_key: bytes) -> None:
        """Raises: InvalidKeyError: ``private_key`` is not 32 bytes in [1, n-1]."""
        if type(private_key) is not bytes or len(private_key) != 32:
            raise InvalidKeyError("a secp256k1 private key must be 32 bytes")
        if not 0 < int.from_bytes(private_key, "big") < _SECP256K1_ORDER:
            raise InvalidKeyError("secp256k1 private key is out of range [1, n-1]")
        self._private_key = coincurve.PrivateKey(private_key)
        self.address = _address_of(self._private_key.public_key)

    def __repr__(self) -> str:
        return f"LocalSigner(address={self.address!r})"

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest as it is (no further hashing).

        Raises:
            SignatureError: ``digest`` is not 32 bytes.
        """
        _require_digest(digest)
        signature = self._private_key.sign_recoverable(digest, hasher=None)
        recovery_id = signature[64]
        # libsecp256k1 always normalizes to low s (EIP-2); recovery ids 2 and 3 (r >= n) have
        # probability ~2**-127 and cannot be expressed in Ethereum's v.
        if int.from_bytes(signature[32:64], "big") > _HALF_ORDER or recovery_id > 1:
            raise SignatureError("libsecp256k1 returned a signature Ethereum cannot use")
        return signature[:64] + bytes((27 + recovery_id,))


@dataclass(frozen=True)
class SignedTypedData:
    """A typed-data document, its signature (``0x`` + 130 hex), signer address and digest."""

    typed_data: dict[str, Any]
    signature: str
    signer: str
    digest: bytes


def sign_verdict(signer: DigestSigner, domain: Domain, msg: VerdictMessage) -> SignedTypedData:
    """Sign a ``Verdict`` and return it with its typed-data document.

    Raises:
        SignatureError: a signer other than :class:`LocalSigner` returned a signature
            that does not recover to its address, or is malformed or high-s.
    """
    return _sign(signer, hash_verdict(domain, msg), verdict_typed_data(domain, msg))


def sign_approval(signer: DigestSigner, domain: Domain, msg: ApprovalMessage) -> SignedTypedData:
    """Sign an ``Approval``; see :func:`sign_verdict`.

    Raises:
        SignatureError: as for :func:`sign_verdict`.
    """
    return _sign(signer, hash_approval(domain, msg), approval_typed_data(domain, msg))


def sign_bulk_approval(signer: DigestSigner, domain: Domain, msg: BulkApprovalMessage) -> SignedTypedData:
    """Sign a ``BulkApproval``; see :func:`sign_verdict`.

    Raises:
        SignatureError: as for :func:`sign_verdict`.
    """
    return _sign(signer, hash_bulk_approval(domain, msg), bulk_approval_typed_data(domain, msg))


def _sign(signer: DigestSigner, digest: bytes, typed_data: dict[str, Any]) -> SignedTypedData:
    signature = signer.sign_digest(digest)
    if not isinstance(signer, LocalSigner):
        # A remote signer's output is checked before it leaves the gateway (a LocalSigner, or a
        # subclass such as gateway.keyring.PublishedSigner, signs with its own in-process key).
        recovered = recover_digest_signer(digest, signature)
        if recovered != signer.address:
            raise SignatureMismatchError(expected=signer.address, recovered=recovered)
    return SignedTypedData(typed_data, "0x" + signature.hex(), signer.address, digest)


def recover_digest_signer(digest: bytes, signature: bytes | str) -> str:
    """Return the EIP-55 address whose key made ``signature`` over the 32-byte ``digest``.

    ``signature`` is 65 bytes ``r ‖ s ‖ v`` (or ``0x`` + 130 hex), ``v`` in {27, 28, 0, 1}.

    Raises:
        SignatureError: ``digest`` is not 32 bytes; the signature has the wrong length
            or encoding, ``v`` is not in {27, 28, 0, 1}, ``r`` or ``s`` is 0 or not
            below n, ``s`` is above n/2 (EIP-2 forbids the malleable high-s twin), or
            no public key can be recovered.
    """
    _require_digest(digest)
    if isinstance(signature, str):
        if not _SIGNATURE_HEX.fullmatch(signature):
            raise SignatureError("signature must be 0x followed by 130 hex digits")
        signature = bytes.fromhex(signature[2:])
    elif not isinstance(signature, (bytes, bytearray)) or len(signature) != 65:
        raise SignatureError("signature must be 65 bytes r ‖ s ‖ v")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (0, 1, 27, 28):
        raise SignatureError(f"signature v must be 27, 28, 0 or 1, got {v}")
    if not 0 < r < _SECP256K1_ORDER or not 0 < s < _SECP256K1_ORDER:
        raise SignatureError("signature r and s must be in [1, n-1]")
    if s > _HALF_ORDER:
        raise SignatureError("signature s is in the upper half of the curve order (EIP-2 forbids high-s)")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            bytes(signature[:64]) + bytes((v % 27,)), digest, hasher=None
        )
    except ValueError as error:
        raise SignatureError("no public key can be recovered from this signature") from error
    return _address_of(public_key)


def verify_verdict_signature(typed_data: dict[str, Any], signature: str, expected_signer: str) -> None:
    """Verify that ``expected_signer`` signed the ``Verdict`` document ``typed_data``.

    (1) Parse the document strictly, so it reads exactly one way. (2) Rebuild the
    digest with eth-account's encoder. (3) Recover the signer. (4) Compare.

    Raises:
        TypedDataError: ``typed_data`` is not exactly this gateway's Verdict document.
        SignatureError: ``expected_signer`` is not an address, or the signature is
            malformed (see :func:`recover_digest_signer`).
        SignatureMismatchError: the signature was made by another key (carries
            ``expected`` and ``recovered``).
    """
    parse_verdict_typed_data(typed_data)  # (1)
    _verify(typed_data, signature, expected_signer)  # (2)-(4)


def verify_approval_signature(typed_data: dict[str, Any], signature: str, expected_signer: str) -> None:
    """Verify that ``expected_signer`` signed the ``Approval`` document ``typed_data``.

    Raises:
        TypedDataError, SignatureError, SignatureMismatchError: as for
            :func:`verify_verdict_signature`.
    """
    parse_approval_typed_data(typed_data)  # (1)
    _verify(typed_data, signature, expected_signer)  # (2)-(4)


def verify_bulk_approval_signature(typed_data: dict[str, Any], signature: str, expected_signer: str) -> None:
    """Verify that ``expected_signer`` signed the ``BulkApproval`` document ``typed_data``.

    Raises:
        TypedDataError, SignatureError, SignatureMismatchError: as for
            :func:`verify_verdict_signature`.
    """
    parse_bulk_approval_typed_data(typed_data)  # (1)
    _verify(typed_data, signature, expected_signer)  # (2)-(4)


def _verify(typed_data: dict[str, Any], signature: str, expected_signer: str) -> None:
    if type(expected_signer) is not str or not _is_address(expected_signer):
        raise SignatureError(f"expected signer {expected_signer!r} is not an address (or fails EIP-55)")
    expected = to_checksum_address(expected_signer)
    # (2) EIP-712 / EIP-191 version 0x01: keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ hashStruct(message)).
    from crypto.ethaccount import encode_typed_data  # imported on first use (crypto.ethaccount)

    signable = encode_typed_data(full_message=typed_data)
    digest = _keccak(b"\x19" + signable.version + signable.header + signable.body)
    recovered = recover_digest_signer(digest, signature)  # (3)
    if recovered != expected:  # (4)
        raise SignatureMismatchError(expected=expected, recovered=recovered)


def _is_address(value: str) -> bool:
    """``0x`` + 40 hex digits, all lower case, all upper case, or EIP-55 checksummed.

    eth-utils' ``is_address`` (6.x) accepts mixed case that fails the EIP-55 checksum.
    Package-internal: :mod:`crypto.eip1271` checks wallet addresses with it too.
    """
    if not _ADDRESS_HEX.fullmatch(value):
        return False
    digits = value[2:]
    return digits in (digits.lower(), digits.upper()) or to_checksum_address(value) == value


def _require_digest(digest: bytes) -> None:
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise SignatureError("digest must be 32 bytes")


def _address_of(public_key: coincurve.PublicKey) -> str:
    # Yellow Paper §7 / Appendix F: address = last 20 bytes of keccak256(uncompressed X ‖ Y).
    return to_checksum_address(_keccak(public_key.format(compressed=False)[1:])[-20:])
