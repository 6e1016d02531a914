"""Executions: execute an allowed action on a rail, follow it, roll it back (gateway.services.executions)."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from gateway import execution_schemas as wire
from gateway import telemetry
from gateway.authz import principal_of


class ExecutionController(Controller):
    tags = ["executions"]

    @post(
        "/v1/actions/{action_id:str}/execute",
        status_code=202,
        description=(
            "Execute an allowed action whose verdict has not expired, once, on a configured rail"
            " (`rail` may be left out when exactly one fits). 202: the execution runs in the background;"
            " follow it with GET /v1/executions/{execution_id}. 409 `verdict_expired`, `approval_pending`,"
            " `action_not_allowed`, `already_executing` / `already_executed` (with `execution_id`);"
            " 422 `rail_not_allowed`, `rail_not_configured`, `rail_required`, `payment_unmappable`."
            " An `Idempotency-Key` replays the first answer (`Idempotent-Replayed: true`)."
        ),
    )
    async def execute(
        self,
        state: State,
        request: Request,
        action_id: FromPath[str],
        data: JSONBody[wire.ExecuteRequest | None] = None,
    ) -> Response[wire.ExecutionAccepted]:
        with telemetry.span("execute", action_id=action_id):
            accepted, replayed = await state.executions.execute(
                principal_of(request),
                action_id,
                data or wire.ExecuteRequest(),
                request.headers.get("idempotency-key"),
            )
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(accepted, status_code=202, headers=headers)

    @get("/v1/executions/{execution_id:str}")
    async def get_execution(
        self, state: State, request: Request, execution_id: FromPath[str]
    ) -> wire.ExecutionView:
        """pending → submitted → succeeded | failed (with `code`), later rolled_back."""
        return await state.executions.get(principal_of(request), execution_id)

    @get("/v1/executions/{execution_id:str}/result")
    async def get_execution_result(
        self, state: State, request: Request, execution_id: FromPath[str]
    ) -> wire.ExecutionResult:
        """What the rail answered for the agent (an x402 resource's body, base64, size-limited by
        the rail's `max_body_bytes`). 409 `result_not_stored` when there is none (yet)."""
        return await state.executions.result(principal_of(request), execution_id)

    @post("/v1/executions/{execution_id:str}/rollback", status_code=202)
    async def rollback(
        self,
        state: State,
        request: Request,
        execution_id: FromPath[str],
        data: JSONBody[wire.RollbackRequest],
    ) -> wire.ExecutionView:
        """Compensate a succeeded execution (bank_api: a reversal); it becomes rolled_back, or
        `rollback.status` failed with a `code`. 422 `not_reversible` for rails that cannot."""
        return await state.executions.rollback(principal_of(request), execution_id, data)

    @post("/v1/actions/{action_id:str}/rollback", status_code=202)
    async def rollback_action(
        self,
        state: State,
        request: Request,
        action_id: FromPath[str],
        data: JSONBody[wire.RollbackRequest],
    ) -> wire.ExecutionView:
        """Compensate the action's succeeded execution: the rules and answers of
        POST /v1/executions/{execution_id}/rollback; 409 `not_executed` when the action has no
        execution (none, or only failed ones)."""
        return await state.executions.rollback_action(principal_of(request), action_id, data)
