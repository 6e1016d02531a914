"""Batch proposals: up to 100 actions of one agent decided in one request and one group commit
(`ActionService.propose_many`); each answered exactly as if proposed alone."""

from __future__ import annotations

from http import HTTPStatus

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody

from gateway import batch_schemas as wire
from gateway import schemas
from gateway.authz import principal_of
from gateway.clock import utc_now
from gateway.errors import AppError, InvalidRequest
from gateway.services.actions import Proposed
from gateway.tracing import request_id_of


def check_batch(body: wire.ProposeBatch, request: Request) -> None:
    """Raises InvalidRequest (`invalid_batch`) for no action or more than MAX_BATCH_ACTIONS,
    and (`idempotency_key_per_action`) for an `Idempotency-Key` header: each action has its own."""
    if not 1 <= len(body.actions) <= wire.MAX_BATCH_ACTIONS:
        raise InvalidRequest(
            f"a batch holds 1 to {wire.MAX_BATCH_ACTIONS} actions, not {len(body.actions)}",
            code="invalid_batch",
        )
    if "idempotency-key" in request.headers:
        raise InvalidRequest(
            "a batch takes no Idempotency-Key header; give each action its own `idempotency_key`",
            code="idempotency_key_per_action",
        )


def result_of(outcome: Proposed | AppError, request_id: str | None) -> wire.BatchResult:
    """The single route's answer for one action, as a batch result."""
    if isinstance(outcome, Proposed):
        return wire.BatchResult(201, result=outcome.response, replayed=outcome.replayed)
    problem = {
        "type": f"urn:verdict:problem:{outcome.code}",
        "title": outcome.title or HTTPStatus(outcome.status).phrase,
        "status": outcome.status,
        "detail": outcome.detail,
        "code": outcome.code,
        "request_id": request_id,
        **outcome.extra,
    }
    return wire.BatchResult(outcome.status, problem=problem, retry_after=outcome.retry_after_seconds)


class ProposalController(Controller):
    tags = ["actions"]

    @post(
        "/v1/agents/{agent_id:str}/propose/batch",
        status_code=200,
        description=(
            "Up to 100 proposals of this agent in one request: each action is decided exactly as if"
            " proposed alone (its own action id, decision, verdict and audit entries; rate limits and"
            " limits counted per action; its own `idempotency_key`), and all are committed in one group"
            " commit. `results[i]` is what POST /v1/agents/{agent_id}/propose would have answered for"
            " `actions[i]`: `status` 201 with `result`, or the refusal's `status` and `problem`."
            " 503 `overloaded` (nothing decided) when the gateway has too much waiting."
        ),
    )
    async def propose_batch(
        self,
        state: State,
        request: Request,
        agent_id: FromPath[str],
        data: JSONBody[wire.ProposeBatch],
        explain: FromQuery[bool] = True,
    ) -> wire.BatchAnswer:
        check_batch(data, request)
        bodies = [
            (schemas.ProposeRequest(item.action, None, item.rationale, item.metadata), item.idempotency_key)
            for item in data.actions
        ]
        async with state.batch_gate.admitted():
            outcomes = await state.actions.propose_many(
                principal_of(request), agent_id, bodies, utc_now(), explain=explain
            )
        request_id = request_id_of(request)
        return wire.BatchAnswer([result_of(outcome, request_id) for outcome in outcomes])
