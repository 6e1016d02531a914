"""Webhook routes (Standard Webhooks v1): a tenant admin's endpoints, their secrets, replays and
delivery attempts, and the tenant's default secret that signs proposals' callbacks.
Thin: `gateway.events.webhooks.WebhookService` does the work; `gateway.authz` admits callers."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from gateway.authz import principal_of
from gateway.events import webhook_schemas as wire
from gateway.problems import PROBLEM_RESPONSES

MAX_PAGE = 100


class WebhookController(Controller):
    path = "/v1/tenants/{tenant_id:str}"
    tags = ["webhooks"]
    security = [{"bearer": []}]

    @post("/webhooks", status_code=201, responses=PROBLEM_RESPONSES)
    async def create_webhook(
        self, state: State, request: Request, tenant_id: FromPath[str], data: JSONBody[wire.CreateWebhook]
    ) -> wire.CreatedWebhook:
        """Deliver the tenant's events (all, some `types`, or one action's) to `url`, from the next
        one on. The `secret` that signs them is in this answer only."""
        return await state.webhooks.create(principal_of(request), tenant_id, data)

    @get("/webhooks", responses=PROBLEM_RESPONSES)
    async def list_webhooks(
        self,
        state: State,
        tenant_id: FromPath[str],
        kind: FromQuery[Literal["endpoint", "callback"]] = "endpoint",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
        after: FromQuery[str | None] = None,
    ) -> wire.WebhookPage:
        """The tenant's endpoints (or, with `kind=callback`, proposals' callbacks), by id."""
        return await state.webhooks.list(tenant_id, kind, limit, after)

    @get("/webhooks/{webhook_id:str}", responses=PROBLEM_RESPONSES)
    async def get_webhook(
        self, state: State, tenant_id: FromPath[str], webhook_id: FromPath[str]
    ) -> wire.Webhook:
        return await state.webhooks.get(tenant_id, webhook_id)

    @patch("/webhooks/{webhook_id:str}", responses=PROBLEM_RESPONSES)
    async def update_webhook(
        self,
        state: State,
        request: Request,
        tenant_id: FromPath[str],
        webhook_id: FromPath[str],
        data: JSONBody[wire.UpdateWebhook],
    ) -> wire.Webhook:
        """Change `url`, `types` or `enabled`; enabling resumes at the event delivery stopped at."""
        return await state.webhooks.update(principal_of(request), tenant_id, webhook_id, data)

    @delete("/webhooks/{webhook_id:str}", status_code=204, responses=PROBLEM_RESPONSES)
    async def delete_webhook(
        self, state: State, request: Request, tenant_id: FromPath[str], webhook_id: FromPath[str]
    ) -> None:
        await state.webhooks.delete(principal_of(request), tenant_id, webhook_id)

    @post("/webhooks/{webhook_id:str}/rotate-secret", status_code=200, responses=PROBLEM_RESPONSES)
    async def rotate_webhook_secret(
        self, state: State, request: Request, tenant_id: FromPath[str], webhook_id: FromPath[str]
    ) -> wire.RotatedSecret:
        """A new secret (in this answer only); until `previous_secret_until` deliveries carry a
        signature by each secret, so receivers can switch at any moment in between."""
        return await state.webhooks.rotate_secret(principal_of(request), tenant_id, webhook_id)

    @post("/webhooks/{webhook_id:str}/replay", status_code=200, responses=PROBLEM_RESPONSES)
    async def replay_webhook(
        self,
        state: State,
        request: Request,
        tenant_id: FromPath[str],
        webhook_id: FromPath[str],
        data: JSONBody[wire.ReplayWebhook],
    ) -> wire.Webhook:
        """Deliver again, in order, every event after log position `after`."""
        return await state.webhooks.replay(principal_of(request), tenant_id, webhook_id, data)

    @get("/webhooks/{webhook_id:str}/deliveries", responses=PROBLEM_RESPONSES)
    async def list_deliveries(
        self,
        state: State,
        tenant_id: FromPath[str],
        webhook_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
        before: FromQuery[str | None] = None,
    ) -> wire.DeliveryPage:
        """Delivery attempts, newest first: status code or error, and latency."""
        return await state.webhooks.deliveries(tenant_id, webhook_id, limit, before)

    @post("/webhook-secret", status_code=200, responses=PROBLEM_RESPONSES)
    async def reveal_tenant_secret(
        self, state: State, request: Request, tenant_id: FromPath[str]
    ) -> wire.TenantSecret:
        """The secret that signs proposals' callbacks, created if needed; readable once
        (409 `tenant_secret_revealed` after), rotate it for a new one."""
        return await state.webhooks.reveal_tenant_secret(principal_of(request), tenant_id)

    @post("/webhook-secret/rotate", status_code=200, responses=PROBLEM_RESPONSES)
    async def rotate_tenant_secret(
        self, state: State, request: Request, tenant_id: FromPath[str]
    ) -> wire.TenantSecret:
        """A new callback secret (in this answer only); the one before keeps signing for a day."""
        return await state.webhooks.rotate_tenant_secret(principal_of(request), tenant_id)
