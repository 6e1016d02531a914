"""Sign-In with Ethereum (EIP-4361) messages for the console: issued by the server, checked by it.

The server writes the whole message (domain, address, statement, URI, version 1, chain id, a
single-use nonce, issued-at, expiration) and keeps its exact text under the nonce. The wallet
signs that text with `personal_sign` (EIP-191 version 0x45); the page sends back only the nonce
and the signature. Verification therefore never parses text a client wrote: it hashes the text
the server stored and asks who signed it, an EOA (ecrecover) or a contract wallet (EIP-1271
`isValidSignature` over the same EIP-191 hash, as approvals ask contract wallets).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from eth_hash.auto import keccak

from crypto.errors import SignatureError
from crypto.signing import recover_digest_signer
from gateway.clock import rfc3339
from gateway.errors import Unprocessable

STATEMENT = "Sign in to the Verdict approver console. This signature moves no funds and approves nothing."
MESSAGE_TTL = timedelta(minutes=5)
MAX_SIGNATURE_BYTES = 4096
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})+")
_NONCE = re.compile(r"[0-9a-f]{32}")
MAX_CHAIN_ID = 2**53 - 1  # what a wallet's JavaScript number holds exactly


class InvalidSignIn(Unprocessable):
    code = "invalid_sign_in"


@dataclass(frozen=True, slots=True)
class SignInMessage:
    nonce: str
    address: str
    text: str
    issued_at: datetime
    expires_at: datetime


def new_nonce() -> str:
    """128 random bits, lowercase hex (EIP-4361 wants at least 8 alphanumeric characters)."""
    return secrets.token_hex(16)


def check_nonce(nonce: object) -> str:
    """Raises InvalidSignIn unless `nonce` has the form `new_nonce` gives."""
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise InvalidSignIn("nonce is not one this console issued")
    return nonce


def check_chain_id(chain_id: object) -> int:
    """Raises InvalidSignIn for anything but a positive integer a wallet can report."""
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 1 <= chain_id <= MAX_CHAIN_ID:
        raise InvalidSignIn(f"chain_id must be an integer from 1 to {MAX_CHAIN_ID}")
    return chain_id


def sign_in_message(domain: str, uri: str, address: str, chain_id: int, now: datetime) -> SignInMessage:
    """The EIP-4361 message for `address` (already checksummed, EIP-55), valid MESSAGE_TTL."""
    nonce = new_nonce()
    expires = now + MESSAGE_TTL
    text = (
        f"{domain} wants you to sign in with your Ethereum account:\n"
        f"{address}\n"
        "\n"
        f"{STATEMENT}\n"
        "\n"
        f"URI: {uri}\n"
        "Version: 1\n"
        f"Chain ID: {chain_id}\n"
        f"Nonce: {nonce}\n"
        f"Issued At: {rfc3339(now)}\n"
        f"Expiration Time: {rfc3339(expires)}"
    )
    return SignInMessage(nonce, address, text, now, expires)


def personal_message_digest(text: str) -> bytes:
    """EIP-191 version 0x45, what `personal_sign` signs: keccak256("\\x19Ethereum Signed
    Message:\\n" + len(message) + message), the length in bytes of the UTF-8 text."""
    body = text.encode("utf-8")
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(body)).encode() + body)


def parse_signature(signature_text: object) -> bytes:
    """Raises InvalidSignIn unless the text is 0x-hex of at most MAX_SIGNATURE_BYTES."""
    if not isinstance(signature_text, str) or not _HEX.fullmatch(signature_text):
        raise InvalidSignIn("signature must be 0x followed by hex digits")
    signature = bytes.fromhex(signature_text[2:])
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise InvalidSignIn(f"signature is longer than {MAX_SIGNATURE_BYTES} bytes")
    return signature


def recover_or_none(digest: bytes, signature: bytes) -> str | None:
    """The EOA that made a 65-byte signature over `digest`, or None (not 65 bytes, high s, bad v)."""
    if len(signature) != 65:
        return None
    try:
        return recover_digest_signer(digest, signature)
    except SignatureError:
        return None
