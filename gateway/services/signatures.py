"""Who signed an approval: EOA signatures recovered, contract wallets asked (EIP-1271).

Steps 3-5 of `gateway.services.approvals`: the signature is well formed, it is over the digest
the server rebuilt, its signer is an active approver of the tenant, and holds the role. Each
refusal has its own code; nothing here writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crypto.eip1271 import check_contract_signature
from crypto.errors import ContractSignerUnavailable, SignatureError
from crypto.signing import recover_digest_signer
from gateway.errors import Forbidden, Unavailable, Unprocessable
from gateway.services.validation import checksum_address
from gateway.storage import Database

MAX_SIGNATURE_BYTES = 4096  # a contract wallet's signature (e.g. a Safe's, several owners') fits
RPC_TIMEOUT_SECONDS = 5.0
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})+")


class SignatureMismatch(Unprocessable):
    code = "signature_mismatch"


class InvalidSignature(Unprocessable):
    code = "invalid_signature"


class NotAnApprover(Forbidden):
    code = "not_an_approver"


class RoleNotHeld(Forbidden):
    code = "role_not_held"


class SignerUnavailable(Unavailable):
    code = "signer_unavailable"
    retry_after_seconds = 5


# (label, digest) of what else a signature might have been made over, to explain a mismatch
Variants = Callable[[], list[tuple[str, bytes]]]


@dataclass(frozen=True, slots=True)
class Signed:
    """A checked signature: who signed, how, over which digest and typed data."""

    signer: str
    kind: str
    signature: str
    digest: bytes
    typed_data: dict[str, Any]


def check_approver(signer: str, approver: dict[str, Any] | None, role: str) -> None:
    """Step 5: `signer` (its `approvers` row, or None) is a current approver holding `role`.
    Raises NotAnApprover, RoleNotHeld."""
    if approver is None:
        raise NotAnApprover(f"{signer} is not an approver of this tenant")
    if approver["removed_at"] is not None:
        raise NotAnApprover(f"{signer} was removed as an approver on {approver['removed_at']}")
    if role not in json.loads(approver["roles"]):
        raise RoleNotHeld(f"{signer} does not hold the role {role!r}")


class SignatureChecker:
    def __init__(self, db: Database, *, rpc_timeout: float = RPC_TIMEOUT_SECONDS) -> None:
        self.db = db
        self.rpc_timeout = rpc_timeout

    async def verify(
        self,
        tenant_id: str,
        rpc_url: str | None,
        signature_text: str,
        claimed: str | None,
        digest: bytes,
        typed_data: dict[str, Any],
        role: str,
        variants: Variants,
    ) -> Signed:
        """Steps 3-5: who made this signature over `digest`, and may they answer in `role`."""
        if not isinstance(signature_text, str) or not _HEX.fullmatch(signature_text):
            raise InvalidSignature("signature must be 0x followed by hex digits")
        signature = bytes.fromhex(signature_text[2:])
        if len(signature) > MAX_SIGNATURE_BYTES:
            raise InvalidSignature(f"signature is longer than {MAX_SIGNATURE_BYTES} bytes")
        signer = checksum_address(claimed, "signer") if claimed is not None else None
        approver = await self._approver(tenant_id, signer) if signer is not None else None
        if approver is not None and approver["kind"] == "contract":
            if rpc_url is None:
                raise SignerUnavailable(
                    f"{signer} is a contract wallet and this tenant has no rpc_url to check it (EIP-1271)"
                )
            try:
                valid = await check_contract_signature(
                    rpc_url, signer, digest, signature, timeout=self.rpc_timeout
                )
            except ContractSignerUnavailable as exc:
                raise SignerUnavailable(f"the contract wallet {signer} could not be asked: {exc}") from None
            if not valid:
                raise SignatureMismatch(
                    f"contract wallet {signer} does not accept this signature for this approval request"
                )
            kind = "contract"
        else:
            if len(signature) != 65:
                hint = "" if claimed else "; for a contract wallet, also send `signer`"
                raise InvalidSignature(f"an EOA signature is 65 bytes r ‖ s ‖ v, got {len(signature)}{hint}")
            try:
                recovered = recover_digest_signer(digest, signature)
            except SignatureError as exc:
                raise InvalidSignature(str(exc)) from None
            if signer is not None and recovered != signer:
                if approver is None:
                    raise NotAnApprover(f"{signer} is not an approver of this tenant")
                raise SignatureMismatch(self._mismatch(signature, signer, variants))
            if approver is None:
                approver = await self._approver(tenant_id, recovered)
                if approver is None or approver["removed_at"] is not None:
                    for label, other in variants():
                        if await self._is_active_approver(tenant_id, _recover_or_none(other, signature)):
                            raise SignatureMismatch(
                                f"this signature is over the approval request for {label}, not the one sent"
                            )
                    raise NotAnApprover(
                        f"the signature recovers to {recovered}, which is not an approver of this tenant;"
                        " check that you signed this action's approval request for this role and answer"
                    )
            signer, kind = recovered, "eoa"
        check_approver(signer, approver, role)
        return Signed(signer, kind, "0x" + signature.hex(), digest, typed_data)

    @staticmethod
    def _mismatch(signature: bytes, signer: str, variants: Variants) -> str:
        for label, other in variants():
            if _recover_or_none(other, signature) == signer:
                return f"{signer} signed the approval request for {label}, not the one sent"
        return (
            f"the signature is not {signer}'s over this approval request (another action, tenant, domain,"
            " role or answer?)"
        )

    async def _approver(self, tenant_id: str, address: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            return await conn.fetchrow(
                "SELECT address, roles, kind, removed_at FROM approvers WHERE tenant_id = ? AND address = ?",
                tenant_id,
                address,
            )

    async def _is_active_approver(self, tenant_id: str, address: str | None) -> bool:
        if address is None:
            return False
        approver = await self._approver(tenant_id, address)
        return approver is not None and approver["removed_at"] is None


def _recover_or_none(digest: bytes, signature: bytes) -> str | None:
    try:
        return recover_digest_signer(digest, signature)
    except SignatureError:
        return None
