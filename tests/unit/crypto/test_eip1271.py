"""EIP-1271 against a real EVM: OwnerWallet on eth-tester's py-evm chain, served over HTTP (tests/chain.py).

No mocks: every answer comes from a contract on the chain or from a real HTTP endpoint that
misbehaves the way nodes and proxies do (refused connections, silence, HTTP 500, garbage).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto import ContractSignerUnavailable, LocalSigner, SignatureError
from crypto.eip1271 import EIP1271_MAGIC_VALUE, check_contract_signature
from tests.chain import ContractChain, canned_rpc, owner_wallet_chain, silent_rpc, unused_rpc_url

ROOT = Path(__file__).parents[3]
CONTRACTS = ROOT / "tests" / "contracts"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DIGEST = bytes.fromhex("5c" * 32)
# Three owners in ascending address order (OwnerWallet wants signatures sorted by signer), and a stranger.
OWNERS = sorted((LocalSigner(bytes([n]) * 32) for n in (1, 2, 3)), key=lambda s: int(s.address, 16))
STRANGER = LocalSigner(b"\x09" * 32)
MAGIC_WORD = EIP1271_MAGIC_VALUE + bytes(28)


def signatures(digest: bytes, *signers: LocalSigner) -> bytes:
    return b"".join(signer.sign_digest(digest) for signer in signers)


def high_s_twin(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - signature[64],))


def returning(word: bytes, length: int) -> bytes:
    """EVM code that returns the first ``length`` bytes of memory after storing ``word`` at 0."""
    assert len(word) == 32 and length < 256
    return b"\x7f" + word + bytes.fromhex("600052") + bytes((0x60, length)) + bytes.fromhex("6000f3")


@pytest.fixture(scope="module")
def one_of_one(contract_chain: ContractChain) -> str:
    return contract_chain.deploy_owner_wallet([OWNERS[0].address], 1)


@pytest.fixture(scope="module")
def two_of_three(contract_chain: ContractChain) -> str:
    return contract_chain.deploy_owner_wallet([owner.address for owner in OWNERS], 2)


def test_owner_wallet_artifact_matches_its_source() -> None:
    artifact = json.loads((CONTRACTS / "OwnerWallet.json").read_text(encoding="utf-8"))
    source = (CONTRACTS / "OwnerWallet.sol").read_bytes()
    assert artifact["source_sha256"] == hashlib.sha256(source).hexdigest(), "run tests/contracts/compile.mjs"
    pinned = json.loads((CONTRACTS / "package.json").read_text(encoding="utf-8"))["dependencies"]["solc"]
    assert artifact["solc_version"].startswith(pinned + "+commit.")
    assert f"pragma solidity {pinned};".encode() in source
    assert artifact["bytecode"].startswith("0x60") and {"isValidSignature", "getOwners"} <= {
        entry.get("name") for entry in artifact["abi"]
    }


# ---- What the wallet accepts


async def test_one_of_one_owner_signature_is_valid(contract_chain: ContractChain, one_of_one: str) -> None:
    signature = signatures(DIGEST, OWNERS[0])
    assert await check_contract_signature(contract_chain.rpc_url, one_of_one, DIGEST, signature) is True


@pytest.mark.parametrize("pair", [(0, 1), (0, 2), (1, 2)])
async def test_two_of_three_owner_signatures_are_valid(
    contract_chain: ContractChain, two_of_three: str, pair: tuple[int, int]
) -> None:
    signature = signatures(DIGEST, *(OWNERS[n] for n in pair))
    assert await check_contract_signature(contract_chain.rpc_url, two_of_three, DIGEST, signature) is True


async def test_concurrent_checks_against_one_chain(contract_chain: ContractChain, two_of_three: str) -> None:
    digests = [bytes([n]) * 32 for n in range(24)]
    answers = await asyncio.gather(
        *(
            check_contract_signature(
                contract_chain.rpc_url, two_of_three, digest, signatures(digest, OWNERS[0], OWNERS[2])
            )
            for digest in digests
        ),
        check_contract_signature(
            contract_chain.rpc_url, two_of_three, DIGEST, signatures(b"\x5d" * 32, OWNERS[0], OWNERS[1])
        ),
    )
    assert answers == [True] * len(digests) + [False]


async def test_owner_wallet_chain_serves_until_it_stops() -> None:
    signature = signatures(DIGEST, OWNERS[0], OWNERS[1])
    with owner_wallet_chain([owner.address for owner in OWNERS], 2) as (rpc_url, wallet):
        assert await check_contract_signature(rpc_url, wallet, DIGEST, signature) is True
    with pytest.raises(ContractSignerUnavailable):
        await check_contract_signature(rpc_url, wallet, DIGEST, signature)


# ---- What it refuses: False, never an exception


@pytest.mark.parametrize(
    ("wallet", "digest", "signature"),
    [
        pytest.param("one_of_one", DIGEST, signatures(DIGEST, STRANGER), id="1-of-1-wrong-key"),
        pytest.param("one_of_one", DIGEST, signatures(b"\x5d" * 32, OWNERS[0]), id="1-of-1-wrong-digest"),
        pytest.param(
            "one_of_one", DIGEST, high_s_twin(signatures(DIGEST, OWNERS[0])), id="1-of-1-high-s-twin"
        ),
        pytest.param(
            "one_of_one", DIGEST, signatures(DIGEST, OWNERS[0])[:64] + b"\x00", id="1-of-1-v-as-recovery-id"
        ),
        pytest.param("one_of_one", DIGEST, signatures(DIGEST, OWNERS[0])[:64], id="1-of-1-truncated"),
        pytest.param("one_of_one", DIGEST, b"", id="1-of-1-empty"),
        pytest.param(
            "two_of_three", DIGEST, signatures(DIGEST, OWNERS[0], STRANGER), id="2-of-3-one-stranger"
        ),
        pytest.param(
            "two_of_three", DIGEST, signatures(b"\x5d" * 32, OWNERS[0], OWNERS[1]), id="2-of-3-wrong-digest"
        ),
        pytest.param("two_of_three", DIGEST, signatures(DIGEST, OWNERS[1]), id="2-of-3-too-few"),
        pytest.param(
            "two_of_three", DIGEST, signatures(DIGEST, OWNERS[0], OWNERS[1], OWNERS[2]), id="2-of-3-too-many"
        ),
        pytest.param(
            "two_of_three", DIGEST, signatures(DIGEST, OWNERS[1], OWNERS[1]), id="2-of-3-duplicated"
        ),
        pytest.param(
            "two_of_three", DIGEST, signatures(DIGEST, OWNERS[2], OWNERS[0]), id="2-of-3-descending"
        ),
        pytest.param(
            "two_of_three",
            DIGEST,
            signatures(DIGEST, OWNERS[0]) + high_s_twin(signatures(DIGEST, OWNERS[1])),
            id="2-of-3-high-s-twin",
        ),
    ],
)
async def test_invalid_signatures_are_refused(
    request: pytest.FixtureRequest,
    contract_chain: ContractChain,
    wallet: str,
    digest: bytes,
    signature: bytes,
) -> None:
    address = request.getfixturevalue(wallet)
    assert await check_contract_signature(contract_chain.rpc_url, address, digest, signature) is False


async def test_address_without_code_is_refused(contract_chain: ContractChain) -> None:
    signature = signatures(DIGEST, OWNERS[0])
    # EOAs, with and without ether, and the zero address: eth_call answers empty data.
    for address in (contract_chain.funded_account, OWNERS[0].address, "0x" + "00" * 20):
        assert await check_contract_signature(contract_chain.rpc_url, address, DIGEST, signature) is False


@pytest.mark.parametrize(
    "runtime",
    [
        pytest.param(bytes.fromhex("5f5ffd"), id="revert-without-data"),  # geth: -32000 "execution reverted"
        pytest.param(bytes.fromhex("602a60005260206000fd"), id="revert-with-data"),  # geth: code 3 + data
        pytest.param(bytes.fromhex("fe"), id="invalid-opcode"),  # py-evm reports it as a revert
        pytest.param(returning(MAGIC_WORD, 4), id="magic-value-unpadded"),
        pytest.param(returning(bytes(28) + EIP1271_MAGIC_VALUE, 32), id="magic-value-right-aligned"),
        pytest.param(returning(MAGIC_WORD, 64), id="magic-value-and-another-word"),
        pytest.param(returning(b"\xff" * 4 + bytes(28), 32), id="invalid-value"),
        pytest.param(
            returning(EIP1271_MAGIC_VALUE + b"\x01" + bytes(27), 32), id="magic-value-dirty-padding"
        ),
        pytest.param(bytes.fromhex("00"), id="stop-returns-nothing"),
    ],
)
async def test_contracts_that_do_not_return_exactly_the_magic_word_are_refused(
    contract_chain: ContractChain, runtime: bytes
) -> None:
    address = contract_chain.deploy_runtime_code(runtime)
    signature = signatures(DIGEST, OWNERS[0])
    assert await check_contract_signature(contract_chain.rpc_url, address, DIGEST, signature) is False


async def test_the_magic_word_is_what_makes_it_valid(contract_chain: ContractChain) -> None:
    # The control for the test above: the same hand-written code returning exactly the word.
    address = contract_chain.deploy_runtime_code(returning(MAGIC_WORD, 32))
    assert await check_contract_signature(contract_chain.rpc_url, address, DIGEST, b"") is True


# ---- The node's answer cannot be obtained: ContractSignerUnavailable, never True or False

SECRET = "k3y-6f1c9d"  # as in https://mainnet.example/v3/<api key>


def assert_unavailable_without_secrets(raised: pytest.ExceptionInfo[ContractSignerUnavailable]) -> None:
    assert SECRET not in str(raised.value) and SECRET not in raised.value.reason
    assert "127.0.0.1" not in str(raised.value)
    # The cause (an aiohttp error) would name the URL in a logged traceback: it is not chained.
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__


async def test_unreachable_rpc_is_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(ContractSignerUnavailable) as raised:
        await check_contract_signature(f"{unused_rpc_url()}/v3/{SECRET}", OWNERS[0].address, DIGEST, b"")
    assert time.monotonic() - started < 4  # refused at once: no retries with backoff
    assert_unavailable_without_secrets(raised)


async def test_silent_rpc_is_unavailable_within_the_timeout() -> None:
    with silent_rpc() as url:
        started = time.monotonic()
        with pytest.raises(ContractSignerUnavailable, match="did not answer") as raised:
            await check_contract_signature(f"{url}/v3/{SECRET}", OWNERS[0].address, DIGEST, b"", timeout=0.5)
        assert time.monotonic() - started < 10
    assert_unavailable_without_secrets(raised)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(500, b'{"jsonrpc":"2.0","id":0,"result":"0x"}', id="http-500"),
        pytest.param(502, b"<html>Bad Gateway</html>", id="http-502-html"),
        pytest.param(429, b'{"error":"rate limited"}', id="http-429"),
        pytest.param(401, b"unauthorized", id="http-401"),
        pytest.param(200, b"<html>captive portal</html>", id="garbage"),
        pytest.param(200, b"", id="empty-body"),
        pytest.param(200, b"\xff\xfe\x00", id="not-utf-8"),
        pytest.param(200, b"[]", id="json-array"),
        pytest.param(200, b'"0x1626ba7e"', id="json-string"),
        pytest.param(200, b'{"jsonrpc":"2.0","id":0}', id="neither-result-nor-error"),
        pytest.param(
            200,
            b'{"jsonrpc":"2.0","id":0,"result":"0x","error":{"code":3,"message":"execution reverted"}}',
            id="both-result-and-error",
        ),
        pytest.param(200, b'{"jsonrpc":"2.0","id":0,"result":null}', id="null-result"),
        pytest.param(200, b'{"jsonrpc":"2.0","id":0,"result":5}', id="number-result"),
        pytest.param(200, b'{"jsonrpc":"2.0","id":0,"result":"0xzz"}', id="non-hex-result"),
        pytest.param(200, b'{"jsonrpc":"2.0","id":0,"result":"0x1626ba7e0"}', id="odd-length-result"),
        pytest.param(200, b'{"jsonrpc":"2.0","id":0,"result":"1626ba7e"}', id="result-without-0x"),
        pytest.param(
            200,
            b'{"jsonrpc":"2.0","id":0,"error":{"code":-32601,"message":"method not found"}}',
            id="rpc-32601",
        ),
        pytest.param(
            200,
            b'{"jsonrpc":"2.0","id":0,"error":{"code":-32005,"message":"rate limit exceeded","data":null}}',
            id="rpc-rate-limited",
        ),
        pytest.param(
            200,
            b'{"jsonrpc":"2.0","id":0,"error":{"code":-32000,"message":"header not found"}}',
            id="rpc-32000",
        ),
        pytest.param(200, b'{"jsonrpc":"2.0","id":0,"error":"execution reverted"}', id="rpc-error-as-string"),
    ],
)
async def test_misbehaving_rpc_is_unavailable(status: int, body: bytes) -> None:
    with canned_rpc(status, body) as url:
        with pytest.raises(ContractSignerUnavailable) as raised:
            await check_contract_signature(f"{url}/v3/{SECRET}", OWNERS[0].address, DIGEST, b"")
    assert_unavailable_without_secrets(raised)


@pytest.mark.parametrize(
    "error",
    [
        {"code": 3, "message": "execution reverted", "data": "0x"},  # geth, anvil, reth
        {"code": -32000, "message": "execution reverted"},  # geth without revert data
        {"code": -32000, "message": "Execution reverted", "data": "0x08c379a0"},  # Besu
        {"code": -32015, "message": "Reverted"},  # Nethermind
    ],
)
async def test_node_reports_of_a_revert_are_a_refusal(error: dict) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 0, "error": error}).encode()
    with canned_rpc(200, body) as url:
        assert await check_contract_signature(url, OWNERS[0].address, DIGEST, b"") is False


async def test_magic_word_from_any_endpoint_is_valid() -> None:
    # The control for the canned answers above: the same server, a well-formed magic answer.
    body = json.dumps({"jsonrpc": "2.0", "id": 0, "result": "0x" + MAGIC_WORD.hex()}).encode()
    with canned_rpc(200, body) as url:
        assert await check_contract_signature(url, OWNERS[0].address, DIGEST, b"") is True


async def test_redirects_are_not_followed(contract_chain: ContractChain) -> None:
    # The chain behind the redirect would say "valid"; the answer must come from the URL itself.
    magic = contract_chain.deploy_runtime_code(returning(MAGIC_WORD, 32))
    with canned_rpc(307, b"", {"Location": contract_chain.rpc_url}) as url:
        with pytest.raises(ContractSignerUnavailable):
            await check_contract_signature(url, magic, DIGEST, b"")


@pytest.mark.parametrize(
    "rpc_url",
    ["", "127.0.0.1:8545", "ftp://127.0.0.1/", "http://", "file:///etc/passwd", "ws://127.0.0.1:8546"],
)
async def test_non_http_rpc_url_is_unavailable(rpc_url: str) -> None:
    with pytest.raises(ContractSignerUnavailable, match="not an http"):
        await check_contract_signature(rpc_url, OWNERS[0].address, DIGEST, b"")


@pytest.mark.parametrize(
    ("wallet", "digest", "signature"),
    [
        (OWNERS[0].address, DIGEST[:31], b""),
        (OWNERS[0].address, DIGEST.hex(), b""),
        (OWNERS[0].address, bytearray(DIGEST), b""),
        (OWNERS[0].address, DIGEST, "0x" + "00" * 65),
        (OWNERS[0].address[:-1], DIGEST, b""),
        (OWNERS[0].address[2:], DIGEST, b""),  # no 0x
        (OWNERS[0].address.swapcase().replace("0X", "0x"), DIGEST, b""),  # fails EIP-55
        (None, DIGEST, b""),
    ],
)
async def test_bad_arguments_raise_signature_error(wallet: object, digest: object, signature: object) -> None:
    with pytest.raises(SignatureError):
        await check_contract_signature("http://127.0.0.1:1", wallet, digest, signature)  # type: ignore[arg-type]


def test_crypto_does_not_import_web3() -> None:
    # The auditor's environment has no web3: importing crypto (even crypto.eip1271) must not need it.
    code = "import sys, crypto, crypto.eip1271; print(sorted({'web3', 'aiohttp'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert run.stdout.strip() == "[]"
