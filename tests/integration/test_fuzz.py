"""Schemathesis against the OpenAPI schema: no 5xx, and every answer is one the schema documents.

Bounded on purpose (a dozen cases per operation, a few hundred in all, SQLite only): it runs in
the normal suite. The requests carry a valid credential of a seeded tenant, the one role the
access table lets call each route, and path parameters naming that tenant's real objects half
of the time, so that generated bodies and queries reach the handlers, not only the access check.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar.testing import TestClient
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import create_app
from gateway.auth import ADMIN, AGENT, AUDITOR, TENANT_ADMIN
from gateway.authz import access_for
from gateway.settings import Settings
from tests.integration.helpers import EXAMPLE_POLICY, bearer, pay

# more for a deeper run by hand: VERDICT_FUZZ_CASES=200 pytest tests/integration/test_fuzz.py
CASES_PER_OPERATION = int(os.environ.get("VERDICT_FUZZ_CASES", "12"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
ROLE_PREFERENCE = (ADMIN, TENANT_ADMIN, AGENT, AUDITOR)

schema = schemathesis.openapi.from_dict(
    create_app(Settings(data_dir=Path("unused"), access_log=False)).openapi_schema.to_schema()
)


class Seeded:
    def __init__(self, client: TestClient) -> None:
        admin = client.app.state.keyring.admin_token
        post = client.post
        assert (
            post("/v1/tenants", json={"id": "acme", "name": "Acme"}, headers=bearer(admin)).status_code == 201
        )
        tenant_admin = post("/v1/tenants/acme/api-keys", json={"role": "tenant_admin"}, headers=bearer(admin))
        self.tokens = {ADMIN: admin, TENANT_ADMIN: tenant_admin.json()["token"]}
        auditor = post("/v1/tenants/acme/api-keys", json={"role": "auditor"}, headers=bearer(admin))
        self.tokens[AUDITOR] = auditor.json()["token"]
        agent = post(
            "/v1/tenants/acme/agents", json={"id": "ap-bot"}, headers=bearer(self.tokens[TENANT_ADMIN])
        )
        self.tokens[AGENT] = agent.json()["token"]
        # a spare agent for the token rotation, so that rotating does not revoke ap-bot's token
        spare = post(
            "/v1/tenants/acme/agents", json={"id": "spare"}, headers=bearer(self.tokens[TENANT_ADMIN])
        )
        assert spare.status_code == 201
        r = post(
            "/v1/tenants/acme/policies",
            content=EXAMPLE_POLICY.encode(),
            headers={**bearer(self.tokens[TENANT_ADMIN]), "Content-Type": "application/yaml"},
        )
        assert r.status_code == 201, r.text
        r = post("/v1/agents/ap-bot/propose", json=pay(), headers=bearer(self.tokens[AGENT]))
        assert r.status_code == 201, r.text
        self.path_values = {"tenant_id": "acme", "action_id": r.json()["action_id"], "version": 1}

    def token_for(self, method: str, path: str) -> str | None:
        access = access_for(method, path)
        roles = access.roles if access is not None else frozenset()
        return next((self.tokens[role] for role in ROLE_PREFERENCE if role in roles), None)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Seeded]]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "verdict"
    app = create_app(Settings(data_dir=data_dir, checkpoint_interval=0, access_log=False))
    with TestClient(app=app, base_url="http://testserver.local") as client:
        yield client, Seeded(client)


@schema.parametrize()
@settings(
    max_examples=CASES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_only_what_its_schema_documents(case, seeded):
    client, world = seeded
    operation = case.operation
    method, path = operation.method.upper(), operation.path
    # half of the cases (decided by the generated data itself) name the seeded objects
    if case.path_parameters and zlib.crc32(repr(case.path_parameters).encode()) % 2 == 0:
        for name in case.path_parameters:
            if name in world.path_values:
                case.path_parameters[name] = world.path_values[name]
            elif name == "agent_id":
                case.path_parameters[name] = "spare" if path.endswith("/token") else "ap-bot"
    headers = {}
    token = world.token_for(method, path)
    if token is not None:
        headers = bearer(token)
    if path.endswith("/events/stream"):  # endless once it starts: fuzz everything up to its start
        headers["Last-Event-ID"] = "not-a-seq"
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 0.05:
        case.query["wait"] = 0.05  # a long poll on a quiet log waits it out: keep it short
    kwargs = case.as_transport_kwargs(base_url="http://testserver.local", headers=headers)
    body = kwargs.pop("data", None)
    if body is not None:
        kwargs["content"] = body if isinstance(body, bytes | str) else None
    kwargs.pop("cookies", None)
    response = client.request(**kwargs)
    case.validate_response(response, checks=CHECKS)
