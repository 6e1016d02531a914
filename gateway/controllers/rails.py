"""A tenant's rails: where its allowed actions are executed (gateway.services.rails)."""

from __future__ import annotations

from litestar import Controller, Request, delete, get, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from gateway import execution_schemas as wire
from gateway.authz import principal_of


class RailController(Controller):
    path = "/v1/tenants/{tenant_id:str}/rails"
    tags = ["rails"]

    @get("/")
    async def list_rails(self, state: State, tenant_id: FromPath[str]) -> wire.RailList:
        await state.tenants.get_tenant(tenant_id)
        return await state.rails.list(tenant_id)

    @get("/{name:str}")
    async def get_rail(self, state: State, tenant_id: FromPath[str], name: FromPath[str]) -> wire.RailView:
        return await state.rails.get(tenant_id, name)

    @put("/{name:str}")
    async def configure_rail(
        self, state: State, request: Request, tenant_id: FromPath[str], name: FromPath[str],
        data: JSONBody[wire.ConfigureRail],
    ) -> wire.RailView:  # fmt: skip
        """Create or replace a rail: `{"kind": "bank_api", "config": {"base_url", "api_key", …}}`.
        Secrets (`api_key`) are write-only: answers and the audit log show only their SHA-256."""
        return await state.rails.configure(principal_of(request), tenant_id, name, data)

    @delete("/{name:str}", status_code=204)
    async def remove_rail(
        self, state: State, request: Request, tenant_id: FromPath[str], name: FromPath[str]
    ) -> None:
        """409 `rail_in_use` while an execution on it is in flight."""
        await state.rails.remove(principal_of(request), tenant_id, name)
