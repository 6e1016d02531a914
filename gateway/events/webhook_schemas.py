"""Wire types of the webhook routes (msgspec Structs; unknown request fields are refused)."""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.schemas import Request


class CreateWebhook(Request):
    """`types`: the event types to deliver (`action.proposed`, or `action.*` for a family);
    absent or null: all. `action_id`: only that action's events."""

    url: str
    types: list[str] | None = None
    action_id: str | None = None


class UpdateWebhook(Request):
    """An absent field stays. `enabled: true` on a disabled endpoint resumes delivery at the
    event it stopped at; `types: null` delivers every type."""

    url: str | msgspec.UnsetType = msgspec.UNSET
    types: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class ReplayWebhook(Request):
    """Deliver again every event after log position `after` (-1: from the log's start)."""

    after: int


class Webhook(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    kind: Literal["endpoint", "callback"]
    url: str
    types: list[str] | None
    action_id: str | None
    enabled: bool
    disabled_reason: str | None
    # The log position delivery has passed: events up to it are delivered (or not for this webhook).
    delivered_through: int
    # Failed attempts at the next event, and when the next attempt is due (RFC 3339).
    failed_attempts: int
    next_attempt_at: str | None
    failing_since: str | None
    # Until when the secret before the last rotation still signs too.
    previous_secret_until: str | None
    created_at: str
    updated_at: str


class CreatedWebhook(Webhook, frozen=True):
    """`secret` (`whsec_…`) is shown this once; receivers verify signatures with it."""

    secret: str


class RotatedSecret(msgspec.Struct, frozen=True):
    """The new secret, shown this once; the one before it also signs until `previous_secret_until`."""

    id: str
    secret: str
    previous_secret_until: str | None


class TenantSecret(msgspec.Struct, frozen=True):
    """The tenant's default secret, which signs callbacks (`callback_url` of a proposal); shown
    once, when it is first revealed or rotated."""

    secret: str
    created_at: str
    previous_secret_until: str | None


class Delivery(msgspec.Struct, frozen=True):
    """One attempt to deliver one event: the receiver's status code, or the error before one."""

    id: str
    event_id: str
    seq: int
    attempt: int
    status_code: int | None
    latency_ms: int
    error: str | None
    attempted_at: str


class DeliveryPage(msgspec.Struct, frozen=True):
    """Newest first; `next` is the `before` of the next (older) page, null at the end."""

    deliveries: list[Delivery]
    next: str | None


class WebhookPage(msgspec.Struct, frozen=True):
    webhooks: list[Webhook]
    next: str | None
