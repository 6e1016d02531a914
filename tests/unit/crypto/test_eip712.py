"""EIP-712: our fast encoders and signer against eth-account (and eth-keys' pure-Python ECDSA)."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
from eth_account import Account
from eth_account._utils.encode_typed_data.encoding_and_hashing import encode_type
from eth_account.messages import encode_typed_data
from eth_keys import KeyAPI
from eth_keys.backends import NativeECCBackend
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import (
    APPROVAL_ITEM_TYPE,
    APPROVAL_TYPE,
    BULK_APPROVAL_TYPE,
    DECISION_ALLOW,
    MAX_BULK_APPROVAL_ITEMS,
    VERDICT_TYPE,
    ApprovalItem,
    ApprovalMessage,
    BulkApprovalMessage,
    Domain,
    InvalidKeyError,
    LocalSigner,
    SignatureError,
    SignatureMismatchError,
    TypedDataError,
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
    recover_digest_signer,
    sign_approval,
    sign_bulk_approval,
    sign_verdict,
    verdict_typed_data,
    verify_approval_signature,
    verify_bulk_approval_signature,
    verify_verdict_signature,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
PURE_PYTHON_ECDSA = KeyAPI(NativeECCBackend)
KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
DOMAIN = Domain(chain_id=8453, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
VERDICT = VerdictMessage(
    action_id="act_1",
    action_hash=b"\x11" * 32,
    tenant="acme",
    agent="agent-7",
    action_type="http.post",
    decision=DECISION_ALLOW,
    policy_version=3,
    policy_hash=b"\x22" * 32,
    issued_at=1_700_000_000,
    expires_at=1_700_000_060,
)
APPROVAL = ApprovalMessage(
    action_id="act_1",
    action_hash=b"\x11" * 32,
    tenant="acme",
    role="treasury",
    approve=True,
    expires_at=1_700_003_600,
    summary="Pay invoice #42",
)
BULK_APPROVAL = BulkApprovalMessage(
    tenant="acme",
    role="treasury",
    approve=True,
    deadline=1_700_003_600,
    items=(ApprovalItem("act_1", b"\x11" * 32), ApprovalItem("act_2", b"\x22" * 32)),
)

private_keys = st.integers(1, SECP256K1_N - 1).map(lambda n: n.to_bytes(32, "big"))
domains = st.builds(
    Domain,
    chain_id=st.one_of(st.sampled_from([1, 8453, 2**256 - 1]), st.integers(1, 2**256 - 1)),
    verifying_contract=st.binary(min_size=20, max_size=20).map(to_checksum_address),
)
strings = st.text(max_size=40)  # Hypothesis' default alphabet: every code point but surrogates
hashes = st.binary(min_size=32, max_size=32)
uint64s = st.one_of(st.sampled_from([0, 2**64 - 1]), st.integers(0, 2**64 - 1))
verdicts = st.builds(
    VerdictMessage,
    action_id=strings,
    action_hash=hashes,
    tenant=strings,
    agent=strings,
    action_type=strings,
    decision=st.integers(0, 255),
    policy_version=uint64s,
    policy_hash=hashes,
    issued_at=uint64s,
    expires_at=uint64s,
)
approvals = st.builds(
    ApprovalMessage,
    action_id=strings,
    action_hash=hashes,
    tenant=strings,
    role=strings,
    approve=st.booleans(),
    expires_at=uint64s,
    summary=strings,
)

bulk_approvals = st.builds(
    BulkApprovalMessage,
    tenant=strings,
    role=strings,
    approve=st.booleans(),
    deadline=uint64s,
    items=st.lists(
        st.builds(ApprovalItem, action_id=strings, action_hash=hashes),
        min_size=1,
        max_size=8,
        unique_by=lambda item: item.action_id,
    ).map(tuple),
)


def eth_account_digest(typed_data: dict) -> bytes:
    signable = encode_typed_data(full_message=typed_data)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def pure_python_signature(private_key: bytes, digest: bytes) -> bytes:
    signature = PURE_PYTHON_ECDSA.ecdsa_sign(digest, PURE_PYTHON_ECDSA.PrivateKey(private_key))
    return signature.r.to_bytes(32, "big") + signature.s.to_bytes(32, "big") + bytes((27 + signature.v,))


@settings(max_examples=250, deadline=None)
@given(private_keys, domains, verdicts)
def test_sign_verdict_is_byte_identical_to_eth_account(
    private_key: bytes, domain: Domain, msg: VerdictMessage
):
    signer = LocalSigner(private_key)
    signed = sign_verdict(signer, domain, msg)
    reference = Account.sign_typed_data(private_key, full_message=verdict_typed_data(domain, msg))

    assert signed.digest == hash_verdict(domain, msg) == bytes(reference.message_hash)
    assert signed.digest == eth_account_digest(signed.typed_data)
    assert signed.signature == "0x" + bytes(reference.signature).hex()
    assert bytes.fromhex(signed.signature[2:]) == pure_python_signature(private_key, signed.digest)
    assert signed.signer == signer.address == Account.from_key(private_key).address
    assert recover_digest_signer(signed.digest, signed.signature) == signer.address
    verify_verdict_signature(signed.typed_data, signed.signature, signer.address)
    assert parse_verdict_typed_data(signed.typed_data) == (domain, msg)


@settings(max_examples=250, deadline=None)
@given(private_keys, domains, approvals)
def test_sign_approval_is_byte_identical_to_eth_account(
    private_key: bytes, domain: Domain, msg: ApprovalMessage
):
    signer = LocalSigner(private_key)
    signed = sign_approval(signer, domain, msg)
    reference = Account.sign_typed_data(private_key, full_message=approval_typed_data(domain, msg))

    assert signed.digest == hash_approval(domain, msg) == bytes(reference.message_hash)
    assert signed.signature == "0x" + bytes(reference.signature).hex()
    assert bytes.fromhex(signed.signature[2:]) == pure_python_signature(private_key, signed.digest)
    verify_approval_signature(signed.typed_data, signed.signature, signer.address.lower())
    assert parse_approval_typed_data(signed.typed_data) == (domain, msg)


@settings(max_examples=150, deadline=None)
@given(private_keys, domains, bulk_approvals)
def test_sign_bulk_approval_is_byte_identical_to_eth_account(
    private_key: bytes, domain: Domain, msg: BulkApprovalMessage
):
    signer = LocalSigner(private_key)
    signed = sign_bulk_approval(signer, domain, msg)
    reference = Account.sign_typed_data(private_key, full_message=bulk_approval_typed_data(domain, msg))

    assert signed.digest == hash_bulk_approval(domain, msg) == bytes(reference.message_hash)
    assert signed.digest == eth_account_digest(signed.typed_data)
    assert signed.signature == "0x" + bytes(reference.signature).hex()
    assert bytes.fromhex(signed.signature[2:]) == pure_python_signature(private_key, signed.digest)
    verify_bulk_approval_signature(signed.typed_data, signed.signature, signer.address)
    assert parse_bulk_approval_typed_data(signed.typed_data) == (domain, msg)


def test_bulk_approval_type_is_eip712_encode_type() -> None:
    # EIP-712 §encodeType: the primary struct, then each referenced struct (sorted by name).
    types = bulk_approval_typed_data(DOMAIN, BULK_APPROVAL)["types"]
    assert list(types) == ["EIP712Domain", "BulkApproval", "ApprovalItem"]
    assert encode_type("BulkApproval", types) == BULK_APPROVAL_TYPE
    assert encode_type("ApprovalItem", types) == APPROVAL_ITEM_TYPE
    assert BULK_APPROVAL_TYPE.endswith(")" + APPROVAL_ITEM_TYPE)


def test_bulk_approval_digest_binds_items_and_their_order() -> None:
    first, second = BULK_APPROVAL.items
    digests = {
        hash_bulk_approval(DOMAIN, msg)
        for msg in (
            BULK_APPROVAL,
            dataclasses.replace(BULK_APPROVAL, items=(second, first)),
            dataclasses.replace(BULK_APPROVAL, items=(first,)),
            dataclasses.replace(BULK_APPROVAL, items=(first, ApprovalItem("act_2", b"\x23" * 32))),
            dataclasses.replace(BULK_APPROVAL, items=(first, ApprovalItem("act_3", b"\x22" * 32))),
            dataclasses.replace(BULK_APPROVAL, approve=False),
        )
    }
    assert len(digests) == 6


def test_typed_data_document_shape() -> None:
    assert verdict_typed_data(DOMAIN, VERDICT) == {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Verdict": [
                {"name": name, "type": solidity_type}
                for solidity_type, name in re.findall(r"(\w+) (\w+)[,)]", VERDICT_TYPE)
            ],
        },
        "primaryType": "Verdict",
        "domain": {
            "name": "Verdict Gateway",
            "version": "1",
            "chainId": 8453,
            "verifyingContract": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        },
        "message": {
            "actionId": "act_1",
            "actionHash": "0x" + "11" * 32,
            "tenant": "acme",
            "agent": "agent-7",
            "actionType": "http.post",
            "decision": 1,
            "policyVersion": 3,
            "policyHash": "0x" + "22" * 32,
            "issuedAt": 1_700_000_000,
            "expiresAt": 1_700_000_060,
        },
    }
    assert approval_typed_data(DOMAIN, APPROVAL)["message"]["approve"] is True
    assert bulk_approval_typed_data(DOMAIN, BULK_APPROVAL)["message"] == {
        "tenant": "acme",
        "role": "treasury",
        "approve": True,
        "deadline": 1_700_003_600,
        "items": [
            {"actionId": "act_1", "actionHash": "0x" + "11" * 32},
            {"actionId": "act_2", "actionHash": "0x" + "22" * 32},
        ],
    }


@pytest.mark.parametrize(
    ("type_string", "struct"),
    [
        (VERDICT_TYPE, VerdictMessage),
        (APPROVAL_TYPE, ApprovalMessage),
        (BULK_APPROVAL_TYPE.removesuffix(APPROVAL_ITEM_TYPE), BulkApprovalMessage),
        (APPROVAL_ITEM_TYPE, ApprovalItem),
    ],
)
def test_dataclass_fields_follow_type_string(type_string: str, struct: type) -> None:
    json_names = re.findall(r" (\w+)[,)]", type_string)
    snake_names = [re.sub("([A-Z])", r"_\1", name).lower() for name in json_names]
    assert snake_names == [field.name for field in dataclasses.fields(struct)]


def test_typed_data_is_a_fresh_document_each_call() -> None:
    first = verdict_typed_data(DOMAIN, VERDICT)
    first["types"]["Verdict"][0]["type"] = "uint256"
    first["types"]["EIP712Domain"].pop()
    assert verdict_typed_data(DOMAIN, VERDICT)["types"]["Verdict"][0]["type"] == "string"
    assert len(verdict_typed_data(DOMAIN, VERDICT)["types"]["EIP712Domain"]) == 4


def test_domain_separator_is_cached_per_domain() -> None:
    same = Domain(chain_id=8453, verifying_contract=DOMAIN.verifying_contract)
    assert domain_separator(DOMAIN) is domain_separator(same)
    assert domain_separator(DOMAIN) != domain_separator(Domain(1, DOMAIN.verifying_contract))


# ---- Bad inputs


@pytest.mark.parametrize(
    ("chain_id", "contract"),
    [
        (0, DOMAIN.verifying_contract),
        (-1, DOMAIN.verifying_contract),
        (2**256, DOMAIN.verifying_contract),
        (True, DOMAIN.verifying_contract),
        ("1", DOMAIN.verifying_contract),
        (1, DOMAIN.verifying_contract.lower()),  # not EIP-55
        (1, "0x5FbDB2315678afecb367f032d93F642f64180aA3"),  # one letter's case flipped
        (1, DOMAIN.verifying_contract[2:]),
        (1, DOMAIN.verifying_contract[:-2]),
        (1, "0x" + "g" * 40),
        (1, bytes(20)),
    ],
)
def test_bad_domain_raises_typed_data_error(chain_id: object, contract: object) -> None:
    with pytest.raises(TypedDataError):
        Domain(chain_id=chain_id, verifying_contract=contract)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("action_id", None),
        ("action_id", b"bytes"),
        ("tenant", "lone \ud800 surrogate"),
        ("action_hash", b"\x11" * 31),
        ("action_hash", b"\x11" * 33),
        ("action_hash", "0x" + "11" * 32),
        ("policy_hash", bytearray(32)),
        ("decision", 256),
        ("decision", -1),
        ("decision", True),
        ("policy_version", 2**64),
        ("issued_at", -1),
        ("expires_at", 1.0),
        ("expires_at", "1700000000"),
    ],
)
def test_bad_verdict_field_raises_typed_data_error(field: str, value: object) -> None:
    with pytest.raises(TypedDataError, match=field):
        dataclasses.replace(VERDICT, **{field: value})


@pytest.mark.parametrize(
    ("field", "value"), [("approve", 1), ("approve", None), ("summary", 5), ("expires_at", 2**64)]
)
def test_bad_approval_field_raises_typed_data_error(field: str, value: object) -> None:
    with pytest.raises(TypedDataError, match=field):
        dataclasses.replace(APPROVAL, **{field: value})


ITEM = ApprovalItem("act_1", b"\x11" * 32)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("items", ()),
        ("items", [ITEM]),
        ("items", (ITEM, "act_2")),
        ("items", (APPROVAL,)),
        ("items", tuple(ApprovalItem(f"act_{n}", b"\x11" * 32) for n in range(MAX_BULK_APPROVAL_ITEMS + 1))),
        ("items", (ITEM, ApprovalItem("act_1", b"\x22" * 32))),
        ("approve", 1),
        ("deadline", 2**64),
        ("deadline", -1),
        ("role", None),
    ],
)
def test_bad_bulk_approval_field_raises_typed_data_error(field: str, value: object) -> None:
    with pytest.raises(TypedDataError, match=field):
        dataclasses.replace(BULK_APPROVAL, **{field: value})


@pytest.mark.parametrize(
    ("field", "value"), [("action_id", None), ("action_id", "\udfff"), ("action_hash", b"\x11" * 31)]
)
def test_bad_approval_item_field_raises_typed_data_error(field: str, value: object) -> None:
    with pytest.raises(TypedDataError, match=field):
        dataclasses.replace(ITEM, **{field: value})


def test_bulk_approval_accepts_the_maximum_number_of_items() -> None:
    items = tuple(ApprovalItem(f"act_{n}", bytes([n]) * 32) for n in range(MAX_BULK_APPROVAL_ITEMS))
    msg = dataclasses.replace(BULK_APPROVAL, items=items)
    assert parse_bulk_approval_typed_data(bulk_approval_typed_data(DOMAIN, msg)) == (DOMAIN, msg)


def _mutated(path: tuple, value: object, build=lambda: verdict_typed_data(DOMAIN, VERDICT)) -> dict:
    document = copy.deepcopy(build())
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    "document",
    [
        pytest.param([], id="not-a-dict"),
        pytest.param(_mutated(("extra",), 1), id="extra-top-level-key"),
        pytest.param(_mutated(("primaryType",), "Approval"), id="wrong-primary-type"),
        pytest.param(_mutated(("types", "Verdict", 5, "type"), "uint256"), id="widened-field-type"),
        pytest.param(_mutated(("types", "Extra"), []), id="extra-type"),
        pytest.param(_mutated(("domain", "salt"), "0x" + "00" * 32), id="domain-salt"),
        pytest.param(_mutated(("domain", "version"), "2"), id="domain-version"),
        pytest.param(_mutated(("domain", "chainId"), "8453"), id="chain-id-as-string"),
        pytest.param(
            _mutated(("domain", "verifyingContract"), DOMAIN.verifying_contract.lower()), id="lowercase"
        ),
        pytest.param(_mutated(("message", "tenant"), KeyError), id="missing-field"),
        pytest.param(_mutated(("message", "decision"), "1"), id="uint-as-string"),
        pytest.param(_mutated(("message", "issuedAt"), 1.0), id="uint-as-float"),
        pytest.param(_mutated(("message", "actionHash"), "0x1234"), id="short-bytes32"),
        pytest.param(_mutated(("message", "actionHash"), "11" * 32), id="bytes32-without-0x"),
        pytest.param(_mutated(("message", "agent"), 7), id="string-as-int"),
    ],
)
def test_parse_verdict_typed_data_is_strict(document: object) -> None:
    with pytest.raises(TypedDataError):
        parse_verdict_typed_data(document)
    signature = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT).signature
    with pytest.raises(TypedDataError):
        verify_verdict_signature(document, signature, LocalSigner(KEY).address)  # type: ignore[arg-type]


def _bulk_mutated(path: tuple, value: object) -> dict:
    return _mutated(path, value, lambda: bulk_approval_typed_data(DOMAIN, BULK_APPROVAL))


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(_bulk_mutated(("primaryType",), "Approval"), id="wrong-primary-type"),
        pytest.param(_bulk_mutated(("types", "ApprovalItem"), KeyError), id="missing-item-type"),
        pytest.param(_bulk_mutated(("types", "ApprovalItem", 1, "type"), "bytes"), id="widened-item-type"),
        pytest.param(
            _bulk_mutated(("types", "BulkApproval", 4, "type"), "ApprovalItem[2]"), id="fixed-array"
        ),
        pytest.param(_bulk_mutated(("message", "items"), []), id="no-items"),
        pytest.param(_bulk_mutated(("message", "items"), {"0": {}}), id="items-as-object"),
        pytest.param(
            _bulk_mutated(("message", "items"), [{"actionId": "act_1", "actionHash": "0x" + "11" * 32}] * 2),
            id="duplicated-item",
        ),
        pytest.param(_bulk_mutated(("message", "items", 0, "summary"), "x"), id="item-extra-field"),
        pytest.param(_bulk_mutated(("message", "items", 0, "actionHash"), KeyError), id="item-missing-field"),
        pytest.param(_bulk_mutated(("message", "items", 1, "actionHash"), "0x1234"), id="item-short-bytes32"),
        pytest.param(_bulk_mutated(("message", "items", 1, "actionId"), 2), id="item-id-as-int"),
        pytest.param(_bulk_mutated(("message", "items", 1), "act_2"), id="item-as-string"),
        pytest.param(_bulk_mutated(("message", "deadline"), "1700003600"), id="uint-as-string"),
        pytest.param(_bulk_mutated(("message", "approve"), 1), id="bool-as-int"),
    ],
)
def test_parse_bulk_approval_typed_data_is_strict(document: object) -> None:
    with pytest.raises(TypedDataError):
        parse_bulk_approval_typed_data(document)
    signature = sign_bulk_approval(LocalSigner(KEY), DOMAIN, BULK_APPROVAL).signature
    with pytest.raises(TypedDataError):
        verify_bulk_approval_signature(document, signature, LocalSigner(KEY).address)  # type: ignore[arg-type]


def test_verdict_signature_does_not_verify_as_approval() -> None:
    signed = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT)
    with pytest.raises(TypedDataError):
        verify_approval_signature(signed.typed_data, signed.signature, signed.signer)


def test_bulk_approval_and_approval_do_not_verify_as_each_other() -> None:
    bulk = sign_bulk_approval(LocalSigner(KEY), DOMAIN, BULK_APPROVAL)
    single = sign_approval(LocalSigner(KEY), DOMAIN, APPROVAL)
    with pytest.raises(TypedDataError):
        verify_approval_signature(bulk.typed_data, bulk.signature, bulk.signer)
    with pytest.raises(TypedDataError):
        verify_bulk_approval_signature(single.typed_data, single.signature, single.signer)


@pytest.mark.parametrize(
    "private_key",
    [b"", b"\x01" * 31, bytes(32), SECP256K1_N.to_bytes(32, "big"), "0x" + "11" * 32, bytearray(32)],
)
def test_bad_private_key_raises_invalid_key_error(private_key: object) -> None:
    with pytest.raises(InvalidKeyError):
        LocalSigner(private_key)  # type: ignore[arg-type]


def test_local_signer_repr_hides_the_key() -> None:
    assert KEY.hex() not in repr(LocalSigner(KEY))
    assert "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" in repr(LocalSigner(KEY))


@pytest.mark.parametrize("digest", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32])
def test_digest_must_be_32_bytes(digest: object) -> None:
    signature = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT).signature
    with pytest.raises(SignatureError):
        LocalSigner(KEY).sign_digest(digest)  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        recover_digest_signer(digest, signature)  # type: ignore[arg-type]


def _high_s_twin(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((55 - signature[64],))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda sig: sig[:64], id="64-bytes"),
        pytest.param(lambda sig: sig + b"\x00", id="66-bytes"),
        pytest.param(lambda sig: sig[:64] + b"\x1d", id="v-29"),
        pytest.param(lambda sig: sig[:64] + b"\x02", id="v-2"),
        pytest.param(lambda sig: bytes(32) + sig[32:], id="r-zero"),
        pytest.param(lambda sig: sig[:32] + bytes(32) + sig[64:], id="s-zero"),
        pytest.param(lambda sig: SECP256K1_N.to_bytes(32, "big") + sig[32:], id="r-equals-n"),
        pytest.param(_high_s_twin, id="high-s-twin"),
        pytest.param(lambda sig: sig.hex(), id="hex-without-0x"),
        pytest.param(lambda sig: "0x" + sig.hex()[:-2], id="hex-too-short"),
        pytest.param(lambda sig: "0x" + sig.hex()[:-1] + "g", id="hex-non-hex-digit"),
        pytest.param(lambda sig: list(sig), id="list-of-ints"),
    ],
)
def test_malformed_signatures_raise_signature_error(mutate) -> None:
    signed = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT)
    signature = bytes.fromhex(signed.signature[2:])
    with pytest.raises(SignatureError) as raised:
        recover_digest_signer(signed.digest, mutate(signature))
    assert not isinstance(raised.value, SignatureMismatchError)


def test_high_s_twin_is_otherwise_valid_ecdsa() -> None:
    # What EIP-2 guards against: the twin recovers to the same key in a library that allows high s.
    signed = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT)
    twin = _high_s_twin(bytes.fromhex(signed.signature[2:]))
    recovered = PURE_PYTHON_ECDSA.Signature(
        vrs=(twin[64] - 27, int.from_bytes(twin[:32]), int.from_bytes(twin[32:64]))
    )
    assert recovered.recover_public_key_from_msg_hash(signed.digest).to_checksum_address() == signed.signer


@pytest.mark.parametrize("v_offset", [0, 27])
def test_recover_accepts_v_as_recovery_id_or_27_28(v_offset: int) -> None:
    signed = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT)
    signature = bytearray.fromhex(signed.signature[2:])
    signature[64] = signature[64] - 27 + v_offset
    assert recover_digest_signer(signed.digest, bytes(signature)) == signed.signer
    assert recover_digest_signer(signed.digest, signature) == signed.signer


def test_wrong_signer_raises_mismatch_with_evidence() -> None:
    signed = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT)
    other = LocalSigner(b"\x01" * 32).address
    with pytest.raises(SignatureMismatchError) as raised:
        verify_verdict_signature(signed.typed_data, signed.signature, other)
    assert (raised.value.expected, raised.value.recovered) == (other, signed.signer)
    assert other in str(raised.value) and signed.signer in str(raised.value)


@pytest.mark.parametrize(
    "expected", ["", "0x1234", "0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266"[:-1] + "7", None]
)
def test_bad_expected_signer_raises_signature_error(expected: object) -> None:
    signed = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT)
    with pytest.raises(SignatureError):
        verify_verdict_signature(signed.typed_data, signed.signature, expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expected",
    [
        "0xF39fd6e51aad88f6f4ce6ab8827279cfffb92266",  # one letter's case flipped
        "0xf39FD6E51AAD88F6F4CE6AB8827279CFFFB92266",
        "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266",  # no 0x
        b"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    ],
)
def test_expected_signer_failing_eip55_is_refused_not_normalized(expected: object) -> None:
    # eth-utils 6's is_address accepts any mixed case; a case typo must not pass as the signer.
    signed = sign_verdict(LocalSigner(KEY), DOMAIN, VERDICT)
    with pytest.raises(SignatureError) as raised:
        verify_verdict_signature(signed.typed_data, signed.signature, expected)  # type: ignore[arg-type]
    assert not isinstance(raised.value, SignatureMismatchError)
    for accepted in (signed.signer, signed.signer.lower(), "0x" + signed.signer[2:].upper()):
        verify_verdict_signature(signed.typed_data, signed.signature, accepted)


class RemoteSigner:
    """A stand-in for a KMS signer whose output can be corrupted."""

    def __init__(self, address: str, sign) -> None:
        self.address = address
        self._sign = sign

    def sign_digest(self, digest: bytes) -> bytes:
        return self._sign(digest)


def test_remote_signer_output_is_checked() -> None:
    local = LocalSigner(KEY)
    honest = RemoteSigner(local.address, local.sign_digest)
    assert sign_verdict(honest, DOMAIN, VERDICT) == sign_verdict(local, DOMAIN, VERDICT)
    impostor = RemoteSigner(local.address, LocalSigner(b"\x01" * 32).sign_digest)
    with pytest.raises(SignatureMismatchError):
        sign_verdict(impostor, DOMAIN, VERDICT)
    malleable = RemoteSigner(local.address, lambda digest: _high_s_twin(local.sign_digest(digest)))
    with pytest.raises(SignatureError):
        sign_approval(malleable, DOMAIN, APPROVAL)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=20, max_size=20), case=st.lists(st.booleans(), min_size=40, max_size=40))
def test_our_eip55_is_eth_utils(raw: bytes, case: list[bool]) -> None:
    from crypto.eip712 import to_checksum_address as ours

    expected = to_checksum_address(raw)  # eth-utils
    assert ours(raw) == expected
    mixed = "0x" + "".join(c.upper() if up else c for c, up in zip(raw.hex(), case, strict=True))
    assert ours(mixed) == expected
    assert ours(expected.lower()) == ours(expected.upper()[:2].lower() + expected.upper()[2:]) == expected


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00" * 19,
        b"\x00" * 21,
        "0x" + "0" * 39,
        "0X" + "0" * 40,
        "0x" + "g" * 40,
        " 0x" + "0" * 40,
        None,
        7,
    ],
)
def test_our_eip55_refuses_what_is_not_an_address(bad: object) -> None:
    from crypto.eip712 import to_checksum_address as ours

    with pytest.raises(ValueError):
        ours(bad)  # type: ignore[arg-type]
