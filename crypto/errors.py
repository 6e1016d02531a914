"""Errors raised by the ``crypto`` package.

Every failure in this package is a :class:`CryptoError`; callers that only need
to know "the cryptography said no" catch the root, callers that map failures to
stable codes (only ``gateway/`` does) catch the subclasses. Verification errors
carry what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "CanonicalizationError",
    "ContractSignerUnavailable",
    "CryptoError",
    "InvalidKeyError",
    "KeyFileError",
    "SignatureError",
    "SignatureMismatchError",
    "TypedDataError",
]


class CryptoError(Exception):
    """Root of every error raised by ``crypto``."""


class CanonicalizationError(CryptoError):
    """A value cannot be serialized as RFC 8785 (JCS) JSON.

    Raised for floats that are NaN or infinite, integers outside the IEEE 754
    safe range (|n| >= 2**53), non-string object keys, lone surrogates,
    unsupported types and values nested too deeply (or cyclically) to walk.
    """


class KeyFileError(CryptoError):
    """A key or secret file is missing, unreadable, too permissive or malformed.

    The message names the path (and the mode, for permission failures) but
    never any key material.
    """


class InvalidKeyError(CryptoError):
    """Raw key material (not a file) is malformed or out of range."""


class TypedDataError(CryptoError):
    """An EIP-712 message, domain or typed-data document is malformed.

    Raised for out-of-range integers, hashes that are not 32 bytes, addresses
    that are not EIP-55 checksummed, and typed data that is not the Verdict,
    Approval or BulkApproval schema this package signs.
    """


class SignatureError(CryptoError):
    """A signature is malformed or cannot be verified.

    Raised for a bad length, a bad recovery id, ``r``/``s`` out of range, a
    high-``s`` signature (EIP-2), a digest that is not 32 bytes, or a public key
    that cannot be recovered.
    """


class SignatureMismatchError(SignatureError):
    """A well-formed signature recovered to a different signer than expected."""

    def __init__(self, expected: str, recovered: str) -> None:
        super().__init__(f"signature was made by {recovered}, expected {expected}")
        self.expected = expected
        self.recovered = recovered


class ContractSignerUnavailable(CryptoError):
    """A contract wallet's EIP-1271 answer could not be obtained, so no answer is known.

    Raised when the RPC endpoint cannot be reached, times out, answers an HTTP error,
    a JSON-RPC error other than an execution revert, or something that is not JSON-RPC.
    Never means "the signature is invalid" (that is a ``False`` from the check), and
    never means valid: callers refuse and may retry later. The message and ``reason``
    name the kind of failure but never the RPC URL, which often embeds an API key.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"contract wallet signature check unavailable: {reason}")
        self.reason = reason
