"""VerdictAccount on the in-process py-evm chain: the valid call moves funds; every attack reverts
with its named error; the contract's action hash is Verdict's for random calls."""

from __future__ import annotations

import hashlib
import json

import pytest
from eth_abi import encode
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.evm_call import evm_call
from gateway.rails.verdict_account import (
    ERRORS,
    EXECUTE,
    EXECUTED_EVENT,
    EXECUTED_TOPIC,
    action_id_topic,
    selector,
)
from tests.chain import TEST_TOKEN_ARTIFACT, VERDICT_ACCOUNT_ARTIFACT, ContractChain
from tests.unit.contracts.onchain import (
    ACCOUNT_ABI,
    OTHER_SIGNER,
    SIGNER,
    VERIFYING_CONTRACT,
    Setup,
    balance,
    execute_data,
    high_s_twin,
    latest_timestamp,
    rpc,
    send,
    simulate,
    verdict_for,
)

RECIPIENT = to_checksum_address("0x" + "5e" * 20)


@pytest.fixture(scope="module")
def chain():
    with ContractChain() as running:
        yield running


def deploy_account(chain: ContractChain, chain_id: int | None = None, signers=(SIGNER.address,)) -> Setup:
    accounts = rpc(chain, "eth_accounts")["result"]
    owner, relayer = to_checksum_address(accounts[0]), to_checksum_address(accounts[1])
    address = chain.deploy(
        VERDICT_ACCOUNT_ARTIFACT, owner, chain_id or chain.chain_id, VERIFYING_CONTRACT, list(signers)
    )
    setup = Setup(chain, address, owner, relayer)
    send(setup, "0x", sender=owner, to=address, value=10**18)  # fund it with 1 ether
    return setup


@pytest.fixture
def setup(chain):
    return deploy_account(chain)


def expiry(chain: ContractChain) -> int:
    return latest_timestamp(chain) + 3600


def test_a_valid_verdict_moves_ether_once(setup):
    call = setup.call(RECIPIENT, 12345)
    message, signature = verdict_for(call, expiry(setup.chain))
    data = execute_data(call, message, signature)
    before = balance(setup.chain, RECIPIENT)
    receipt = send(setup, data)
    assert receipt["status"] == "0x1"
    assert balance(setup.chain, RECIPIENT) == before + 12345
    executed = [log for log in receipt["logs"] if log["topics"][0] == EXECUTED_TOPIC]
    assert len(executed) == 1 and executed[0]["topics"][1] == action_id_topic("act_1")
    # the same verdict again: refused, nothing moves
    assert simulate(setup, data) == ("VerdictReplayed", ["act_1"])
    assert send(setup, data)["status"] == "0x0"
    assert balance(setup.chain, RECIPIENT) == before + 12345


def test_a_valid_verdict_moves_tokens(setup):
    token = setup.chain.deploy(TEST_TOKEN_ARTIFACT, "Test USD", "TUSD", 6)
    mint = "0x40c10f19" + setup.account[2:].lower().rjust(64, "0") + hex(5_000_000)[2:].rjust(64, "0")
    assert send(setup, mint, to=token)["status"] == "0x1"
    transfer = bytes.fromhex(
        "a9059cbb" + RECIPIENT[2:].lower().rjust(64, "0") + hex(1_250_000)[2:].rjust(64, "0")
    )
    call = setup.call(token, 0, transfer)
    message, signature = verdict_for(call, expiry(setup.chain))
    assert send(setup, execute_data(call, message, signature))["status"] == "0x1"
    balance_of = "0x70a08231" + RECIPIENT[2:].lower().rjust(64, "0")
    answer = rpc(setup.chain, "eth_call", {"to": token, "data": balance_of}, "latest")["result"]
    assert int(answer, 16) == 1_250_000


@pytest.mark.parametrize("tamper", ["to", "value", "data"])
def test_a_tampered_call_reverts_with_action_hash_mismatch(setup, tamper):
    call = setup.call(RECIPIENT, 100, b"\x01\x02")
    message, signature = verdict_for(call, expiry(setup.chain))
    changed = {
        "to": setup.call(to_checksum_address("0x" + "77" * 20), 100, b"\x01\x02"),
        "value": setup.call(RECIPIENT, 101, b"\x01\x02"),
        "data": setup.call(RECIPIENT, 100, b"\x01\x03"),
    }[tamper]
    error = simulate(setup, execute_data(changed, message, signature))
    assert error is not None and error[0] == "ActionHashMismatch"
    assert error[1] == ["0x" + call.action_hash().hex(), "0x" + changed.action_hash().hex()]


def test_a_verdict_for_another_chain_id_reverts(setup):
    other = setup.call(RECIPIENT, 100, chain_id=1)
    message, signature = verdict_for(other, expiry(setup.chain), chain_id=setup.chain.chain_id)
    error = simulate(setup, execute_data(other, message, signature))
    assert error is not None and error[0] == "ActionHashMismatch"


def test_an_account_set_up_for_another_chain_reverts(chain):
    setup = deploy_account(chain, chain_id=1)
    call = setup.call(RECIPIENT, 100)
    message, signature = verdict_for(call, expiry(chain), chain_id=1)
    assert simulate(setup, execute_data(call, message, signature)) == ("WrongChain", [1, chain.chain_id])


def test_a_verdict_for_another_account_of_the_same_tenant_reverts(chain, setup):
    sibling = deploy_account(chain)
    call = sibling.call(RECIPIENT, 100)
    message, signature = verdict_for(call, expiry(chain))
    assert simulate(sibling, execute_data(call, message, signature)) is None  # valid where it was meant
    error = simulate(setup, execute_data(call, message, signature))
    assert error is not None and error[0] == "ActionHashMismatch"


def test_another_tenants_domain_recovers_another_signer(setup):
    call = setup.call(RECIPIENT, 100)
    other_domain = to_checksum_address("0x" + "cd" * 20)
    message, signature = verdict_for(call, expiry(setup.chain), verifying_contract=other_domain)
    error = simulate(setup, execute_data(call, message, signature))
    assert error is not None and error[0] == "UnauthorisedSigner" and error[1] != [SIGNER.address]


def test_an_expired_verdict_reverts(chain):
    setup = deploy_account(chain)
    call = setup.call(RECIPIENT, 100)
    expires = latest_timestamp(chain) + 30
    message, signature = verdict_for(call, expires)
    data = execute_data(call, message, signature)
    chain.time_travel(expires + 1)
    receipt = send(setup, data)
    assert receipt["status"] == "0x0"
    error = simulate(setup, data)
    assert error is not None and error[0] == "VerdictExpired" and error[1][0] == expires


@pytest.mark.parametrize("decision", [0, 2, 3])
def test_deny_and_escalate_decisions_revert(setup, decision):
    call = setup.call(RECIPIENT, 100)
    message, signature = verdict_for(call, expiry(setup.chain), decision=decision)
    assert simulate(setup, execute_data(call, message, signature)) == ("NotAllowed", [decision])


def test_an_unauthorised_signer_reverts(setup):
    call = setup.call(RECIPIENT, 100)
    message, signature = verdict_for(call, expiry(setup.chain), signer=OTHER_SIGNER)
    error = simulate(setup, execute_data(call, message, signature))
    assert error == ("UnauthorisedSigner", [OTHER_SIGNER.address.lower()])


def test_the_high_s_twin_of_a_valid_signature_reverts(setup):
    call = setup.call(RECIPIENT, 100)
    message, signature = verdict_for(call, expiry(setup.chain))
    error = simulate(setup, execute_data(call, message, high_s_twin(signature)))
    assert error is not None and error[0] == "SignatureMalleable"
    assert simulate(setup, execute_data(call, message, signature)) is None


def test_a_malformed_signature_reverts(setup):
    call = setup.call(RECIPIENT, 100)
    message, signature = verdict_for(call, expiry(setup.chain))
    for bad in (signature[:64], signature[:64] + b"\x1d", b"\x00" * 65):
        assert simulate(setup, execute_data(call, message, bad)) == ("InvalidSignature", [])


def test_a_rotated_out_signer_reverts_and_the_new_one_works(setup):
    call = setup.call(RECIPIENT, 100)
    message, signature = verdict_for(call, expiry(setup.chain), action_id="act_old")

    def owner_call(signature_text: str, address: str) -> dict:
        data = "0x" + selector(signature_text).hex() + address[2:].lower().rjust(64, "0")
        return send(setup, data, sender=setup.owner)

    # only the owner rotates signers
    stranger = send(
        setup, "0x" + selector("addSigner(address)").hex() + OTHER_SIGNER.address[2:].lower().rjust(64, "0")
    )
    assert stranger["status"] == "0x0"
    assert owner_call("addSigner(address)", OTHER_SIGNER.address)["status"] == "0x1"
    assert owner_call("removeSigner(address)", SIGNER.address)["status"] == "0x1"
    error = simulate(setup, execute_data(call, message, signature))
    assert error == ("UnauthorisedSigner", [SIGNER.address.lower()])
    message, signature = verdict_for(call, expiry(setup.chain), action_id="act_new", signer=OTHER_SIGNER)
    assert send(setup, execute_data(call, message, signature))["status"] == "0x1"


def test_a_failing_target_reverts_and_leaves_the_verdict_unused(setup):
    call = setup.call(RECIPIENT, 10**30)  # more than the account holds
    message, signature = verdict_for(call, expiry(setup.chain))
    error = simulate(setup, execute_data(call, message, signature))
    assert error == ("CallFailed", ["0x"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    to=st.binary(min_size=20, max_size=20),
    value=st.integers(min_value=0, max_value=2**256 - 1),
    data=st.binary(max_size=300),
)
def test_the_contract_hash_equals_verdicts_action_hash(chain, to, value, data):
    setup = _shared_account(chain)
    call = evm_call(setup.account, chain.chain_id, "0x" + to.hex(), value, data)
    calldata = selector("actionHashOf(address,uint256,bytes)") + encode(
        ["address", "uint256", "bytes"], [call.to, value, data]
    )
    answer = rpc(chain, "eth_call", {"to": setup.account, "data": "0x" + calldata.hex()}, "latest")
    assert answer["result"] == "0x" + call.action_hash().hex()


_ACCOUNTS: dict[int, Setup] = {}


def _shared_account(chain: ContractChain) -> Setup:
    if id(chain) not in _ACCOUNTS:
        _ACCOUNTS[id(chain)] = deploy_account(chain)
    return _ACCOUNTS[id(chain)]


def test_the_python_interface_matches_the_compiled_abi():
    names = {item["name"]: item for item in ACCOUNT_ABI if item["type"] == "error"}
    assert set(names) == set(ERRORS)
    for name, types in ERRORS.items():
        assert tuple(i["type"] for i in names[name]["inputs"]) == types
    execute = next(i for i in ACCOUNT_ABI if i.get("name") == "execute")
    tuple_types = ",".join(c["type"] for c in execute["inputs"][3]["components"])
    assert EXECUTE == f"execute(address,uint256,bytes,({tuple_types}),bytes)"
    event = next(i for i in ACCOUNT_ABI if i.get("name") == "Executed")
    assert EXECUTED_EVENT == f"Executed({','.join(i['type'] for i in event['inputs'])})"


@pytest.mark.parametrize("artifact", [VERDICT_ACCOUNT_ARTIFACT, TEST_TOKEN_ARTIFACT])
def test_each_artifact_was_compiled_from_its_committed_source(artifact):
    compiled = json.loads(artifact.read_text(encoding="utf-8"))
    source = (artifact.parent.parent / compiled["source"]).read_bytes()
    assert compiled["source_sha256"] == hashlib.sha256(source).hexdigest(), (
        "run: cd contracts && node compile.mjs"
    )


def verification_gas(setup: Setup, data: bytes) -> tuple[int, int]:
    """(gas of `execute` for a call with `data` to a plain address, gas of the same call sent directly)."""
    target = to_checksum_address("0x" + "9a" * 20)
    call = setup.call(target, 0, data)
    message, signature = verdict_for(call, expiry(setup.chain), action_id=f"act_gas_{len(data)}")
    through_account = send(setup, execute_data(call, message, signature))
    direct = send(setup, "0x" + data.hex(), to=target)
    assert through_account["status"] == direct["status"] == "0x1"
    return int(through_account["gasUsed"], 16), int(direct["gasUsed"], 16)


def test_verification_gas_for_a_selector_and_100_bytes(setup):
    data = bytes.fromhex("a9059cbb") + bytes(range(100))
    used, direct = verification_gas(setup, data)
    overhead = used - direct
    print(f"execute: {used} gas; the call alone: {direct} gas; verification adds {overhead}")
    assert 0 < overhead < 80_000  # a regression guard; the figure itself is in the bench and docs
