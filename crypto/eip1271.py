"""EIP-1271: asking a contract wallet (a Safe, a smart account) whether it signed a digest.

A contract wallet has no private key; it answers ``isValidSignature(bytes32 hash, bytes
signature)`` with the magic value ``0x1626ba7e`` when it accepts the signature. This module
asks through an Ethereum JSON-RPC node (an ``eth_call`` at ``latest``) and fails closed: the
only path to ``True`` is the exact magic value, ABI-encoded as one 32-byte word.

web3 (and its aiohttp) is imported inside :func:`check_contract_signature`, and this module is
not re-exported by :mod:`crypto`, so an auditor's environment without web3 can import
``crypto`` (DESIGN: web3 is for EIP-1271 only).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

from eth_abi import encode as _abi_encode

import crypto.ethaccount  # noqa: F401  (web3 imports eth-account: keep the recursion limit)
from crypto.eip712 import to_checksum_address
from crypto.errors import ContractSignerUnavailable, SignatureError
from crypto.signing import _is_address

__all__ = ["EIP1271_MAGIC_VALUE", "check_contract_signature"]

# EIP-1271: bytes4(keccak256("isValidSignature(bytes32,bytes)")), which is also the function's selector.
EIP1271_MAGIC_VALUE = bytes.fromhex("1626ba7e")
# The answer is a bytes4 ABI-encoded in one word: left-aligned, zero-padded to 32 bytes.
_MAGIC_WORD = EIP1271_MAGIC_VALUE + bytes(28)
_HEX_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
# JSON-RPC error code geth, reth, erigon and anvil use for "execution reverted" with revert data.
_REVERT_ERROR_CODE = 3


async def check_contract_signature(
    rpc_url: str, wallet: str, digest: bytes, signature: bytes, *, timeout: float = 5.0
) -> bool:
    """Return whether the contract at ``wallet`` accepts ``signature`` over the 32-byte ``digest``.

    (1) Check the arguments. (2) ``eth_call`` ``isValidSignature(digest, signature)`` on
    ``wallet`` at the ``latest`` block through ``rpc_url``, within ``timeout`` seconds overall
    (no retries; no EIP-3668 off-chain lookups, which would fetch URLs a contract chooses).
    (3) Read the answer: ``True`` only for exactly the magic value word; ``False`` for any other
    return data, for empty data (no code at ``wallet``, e.g. an EOA) and for an execution
    revert (the wallet saying no).

    Raises:
        SignatureError: ``digest`` is not 32 bytes, ``signature`` is not bytes, or ``wallet``
            is not an address (or fails EIP-55).
        ContractSignerUnavailable: the RPC URL is not http(s); the endpoint cannot be reached,
            does not answer within ``timeout``, answers an HTTP error, a JSON-RPC error other
            than an execution revert, or anything that is not a JSON-RPC answer. The message
            never holds the URL (it often embeds an API key), and the cause is not chained.
    """
    # (1)
    if type(digest) is not bytes or len(digest) != 32:
        raise SignatureError("digest must be 32 bytes")
    if not isinstance(signature, (bytes, bytearray)):
        raise SignatureError("signature must be bytes")
    if type(wallet) is not str or not _is_address(wallet):
        raise SignatureError(f"wallet {wallet!r} is not an address (or fails EIP-55)")
    url = urlsplit(rpc_url) if isinstance(rpc_url, str) else None
    if url is None or url.scheme not in ("http", "https") or not url.hostname:
        raise ContractSignerUnavailable("the RPC URL is not an http(s) URL")
    calldata = EIP1271_MAGIC_VALUE + _abi_encode(["bytes32", "bytes"], [digest, bytes(signature)])
    call = {"to": to_checksum_address(wallet), "data": "0x" + calldata.hex()}
    # (2)
    response = await _eth_call(rpc_url, call, timeout)
    # (3)
    return _read_answer(response)


async def _eth_call(rpc_url: str, call: dict[str, str], timeout: float) -> Any:
    import aiohttp
    from web3 import AsyncHTTPProvider

    # The provider alone, not AsyncWeb3(...).eth.call: web3's error formatter takes any eth_call
    # error whose data is null for a revert, and its CCIP-read would follow OffchainLookup reverts
    # to URLs the contract chooses. Our own session: provider.disconnect() logs the URL at INFO.
    provider = AsyncHTTPProvider(
        rpc_url,
        request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout), "allow_redirects": False},
        exception_retry_configuration=None,  # a retry would outlive the caller's timeout
    )
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, raise_for_status=True) as session:
        await provider.cache_async_session(session)
        try:
            return await asyncio.wait_for(provider.make_request("eth_call", [call, "latest"]), timeout)
        except TimeoutError:  # also aiohttp's ServerTimeoutError
            raise ContractSignerUnavailable(f"the RPC endpoint did not answer within {timeout:g} s") from None
        except aiohttp.ClientResponseError as error:
            raise ContractSignerUnavailable(f"the RPC endpoint answered HTTP {error.status}") from None
        except (aiohttp.ClientError, OSError) as error:
            reason = f"the RPC endpoint cannot be reached ({type(error).__name__})"
            raise ContractSignerUnavailable(reason) from None
        except ValueError:  # JSONDecodeError, UnicodeDecodeError: the body is not JSON
            raise ContractSignerUnavailable("the RPC endpoint answered something that is not JSON") from None


def _read_answer(response: Any) -> bool:
    if not isinstance(response, dict) or ("result" in response) == ("error" in response):
        raise ContractSignerUnavailable("the RPC endpoint's answer is not a JSON-RPC response")
    if "error" in response:
        if _is_execution_revert(response["error"]):
            return False  # EIP-1271: a wallet may revert instead of returning a non-magic value
        error = response["error"]
        code = error.get("code") if isinstance(error, dict) else None
        raise ContractSignerUnavailable(
            f"the RPC endpoint answered JSON-RPC error {code if type(code) is int else '?'}"
        )
    result = response["result"]
    if type(result) is not str or not _HEX_DATA.fullmatch(result):
        raise ContractSignerUnavailable("the eth_call result is not hex data")
    return bytes.fromhex(result[2:]) == _MAGIC_WORD


def _is_execution_revert(error: object) -> bool:
    """A node's "execution reverted": code 3 (geth and most), or -32000 and others with the words."""
    if not isinstance(error, dict):
        return False
    code, message = error.get("code"), error.get("message")
    if type(code) is not int or type(message) is not str:
        return False
    # geth/anvil: 3 "execution reverted"; geth without data and Besu: -32000 "execution reverted";
    # Nethermind: "Reverted"; Hardhat: "... reverted with reason string ...".
    return code == _REVERT_ERROR_CODE or "revert" in message.lower()
