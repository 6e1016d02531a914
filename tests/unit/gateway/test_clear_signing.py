"""The console's ERC-7730 clear-signing descriptors: valid against the ERC-7730 schema (v2, from the
registry, tests/vectors/erc7730/SOURCE.md) and bound to exactly the typed data the gateway issues."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from crypto.eip712 import (
    APPROVAL_TYPE,
    BULK_APPROVAL_TYPE,
    DOMAIN_NAME,
    DOMAIN_VERSION,
    ApprovalItem,
    ApprovalMessage,
    BulkApprovalMessage,
    Domain,
    approval_typed_data,
    bulk_approval_typed_data,
)

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "tests/vectors/erc7730/erc7730-v2.schema.json").read_text())
DESCRIPTORS = ROOT / "gateway/console/clear-signing"
DOMAIN = Domain(8453, "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB")
APPROVAL = approval_typed_data(
    DOMAIN,
    ApprovalMessage(
        "act_x", b"\x01" * 32, "acme", "cfo", True, 1_900_000_000, "pay invoice of 7,800.00 USDC"
    ),
)
BULK = bulk_approval_typed_data(
    DOMAIN, BulkApprovalMessage("acme", "cfo", True, 1_900_000_000, (ApprovalItem("act_x", b"\x01" * 32),))
)
CASES = [
    ("eip712-verdict-approval.json", APPROVAL_TYPE, APPROVAL),
    ("eip712-verdict-bulk-approval.json", BULK_APPROVAL_TYPE, BULK),
]


def load(name: str) -> dict:
    return json.loads((DESCRIPTORS / name).read_text())


def errors(descriptor: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [error.message for error in validator.iter_errors(descriptor)]


def message_paths(typed: dict, type_name: str, prefix: str = "") -> set[str]:
    """Every leaf path of a typed-data struct in ERC-7730 notation (`items.[].actionId`)."""
    paths = set()
    for member in typed["types"][type_name]:
        name, solidity = member["name"], member["type"]
        if solidity.endswith("[]") and solidity[:-2] in typed["types"]:
            paths |= message_paths(typed, solidity[:-2], f"{prefix}{name}.[].")
        else:
            paths.add(prefix + name)
    return paths


@pytest.mark.parametrize(("name", "encode_type", "typed"), CASES)
def test_descriptor_is_valid_erc7730_and_bound_to_the_gateways_typed_data(name, encode_type, typed):
    descriptor = load(name)
    assert errors(descriptor) == []
    assert descriptor["context"]["eip712"]["domain"] == {"name": DOMAIN_NAME, "version": DOMAIN_VERSION}
    assert typed["domain"]["name"] == DOMAIN_NAME and typed["domain"]["version"] == DOMAIN_VERSION
    (key, display), *rest = descriptor["display"]["formats"].items()
    assert rest == [] and key == encode_type
    assert key.startswith(typed["primaryType"] + "(")
    fields = {field["path"] for field in display["fields"]}
    assert fields == message_paths(typed, typed["primaryType"])  # every member shown or hidden on purpose
    for placeholder in re.findall(r"\{([^}]+)\}", display["interpolatedIntent"]):
        assert placeholder in fields


def test_a_broken_descriptor_is_refused_by_the_schema():
    descriptor = copy.deepcopy(load("eip712-verdict-approval.json"))
    descriptor["display"]["formats"][APPROVAL_TYPE]["fields"][0]["format"] = "not-a-format"
    assert errors(descriptor)
    descriptor = copy.deepcopy(load("eip712-verdict-approval.json"))
    descriptor["metadata"]["info"] = {}  # url is required
    assert errors(descriptor)
