"""The MCP gateway: an MCP server that puts Verdict in front of another MCP server's tools.

The agent's MCP host connects to this proxy (stdio or streamable HTTP) and sees the upstream
server's tools unchanged, plus `verdict_status`. Every `tools/call` becomes a proposal of an
action `{"type": "mcp_tool_call", "server", "tool", "arguments", "annotations"}` (the action hash
binds a decision to these exact arguments):

- ALLOW: the signed verdict is checked (published signer, this action's hash, unexpired), the
  call is forwarded once, and the verdict goes into the result's `_meta["verdict"]`.
- DENY: a tool error naming the reason; nothing is forwarded.
- ESCALATE: a tool error saying that approval is pending, with the action id and the console
  link. The same call with the same arguments, made after an approver signed, is forwarded
  exactly once; while approval is pending it answers "pending" again; other arguments are a new
  action. The pending calls are held in this process's memory: after a restart a retry is a new
  proposal (asked anew, never run twice).
- The gateway unreachable or failing, a verdict that does not verify, arguments the gateway
  refuses at intake (floats: amounts are never floats): a tool error; nothing is forwarded
  (fail closed).
- A pending call, to a host that takes URL-mode elicitation: the host is also asked to show the
  approvers' console page (`with_console_link`).

Only `gateway/cli_mcp.py` imports this module: the gateway server never loads the `mcp` SDK.
"""

from __future__ import annotations

import hmac
import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import anyio
import httpx
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from crypto.canonical import action_hash
from crypto.errors import CryptoError
from gateway.client import PENDING, GatewayError, VerdictInvalid
from gateway.client_async import AsyncVerdictClient

__all__ = [
    "ACTION_TYPE",
    "STATUS_TOOL",
    "ToolGate",
    "build_server",
    "open_upstream",
    "serve_proxy",
    "tool_action",
]

ACTION_TYPE = "mcp_tool_call"
STATUS_TOOL = "verdict_status"
MAX_PENDING = 10_000  # calls awaiting approval remembered; the oldest is forgotten beyond this
ELICITATION_SECONDS = 10.0  # how long a pending answer may wait for the host to take the console link
PROPOSE_ATTEMPTS = 3  # a dropped propose is retried with the same Idempotency-Key
RESERVED_META = "io.modelcontextprotocol/"

STATUS_TOOL_DEFINITION = types.Tool(
    name=STATUS_TOOL,
    description=(
        "The state of a tool call that Verdict escalated for human approval. Pass the action id"
        " from the pending message. Once it is allowed, repeat the original call with the same"
        " arguments to run it."
    ),
    input_schema={
        "type": "object",
        "properties": {"action_id": {"type": "string", "description": "The pending action's id."}},
        "required": ["action_id"],
    },
    annotations=types.ToolAnnotations(read_only_hint=True),
)


def tool_action(server: str, tool: str, arguments: Mapping[str, Any], tool_info: types.Tool | None) -> dict:
    """The Verdict action for one tool call. `annotations` carry the upstream's hints with the
    MCP defaults filled in (readOnly false, destructive true, idempotent false, openWorld true),
    so a policy can match `action.annotations.readOnlyHint: {eq: true}` whatever the server sent."""
    hints = tool_info.annotations if tool_info is not None and tool_info.annotations else None
    read_only = bool(hints and hints.read_only_hint)
    annotations = {
        "readOnlyHint": read_only,
        "destructiveHint": (not read_only) if hints is None or hints.destructive_hint is None
        else bool(hints.destructive_hint),
        "idempotentHint": bool(hints and hints.idempotent_hint),
        "openWorldHint": True if hints is None or hints.open_world_hint is None else bool(hints.open_world_hint),
    }  # fmt: skip
    return {
        "type": ACTION_TYPE,
        "server": server,
        "tool": tool,
        "arguments": dict(arguments),
        "annotations": annotations,
    }


def refusal(text: str, **meta: Any) -> types.CallToolResult:
    """A tool error the model can read; nothing was forwarded."""
    return types.CallToolResult(
        content=[types.TextContent(text=text)], is_error=True, _meta={"verdict": meta} if meta else None
    )


@dataclass
class ToolGate:
    """Decides each tool call with Verdict and forwards the allowed ones to `upstream`.

    Safe for concurrent calls from the tasks of one event loop: a pending call is claimed (removed
    from `pending`) with no await between the check and the removal, so two retries of one
    approved call forward it once."""

    verdict: AsyncVerdictClient
    agent_id: str
    server_name: str
    upstream: Client
    gateway_url: str
    pending: dict[str, str]  # action hash (hex) -> action id awaiting approval
    tools: dict[str, types.Tool]
    shown: set[str] = field(default_factory=set)  # pending actions whose console link the host was sent

    async def list_tools(self) -> list[types.Tool]:
        """Every upstream tool (all pages), remembered for their annotations, plus `verdict_status`."""
        listed: list[types.Tool] = []
        cursor: str | None = None
        while True:
            page = await self.upstream.list_tools(cursor=cursor, cache_mode="refresh")
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        self.tools = {tool.name: tool for tool in listed}
        return [*listed, STATUS_TOOL_DEFINITION]

    async def call(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Decide and maybe forward one call. Never raises for a decision or an outside failure:
        those are tool errors (the model reads them)."""
        if name == STATUS_TOOL:
            return await self.status(str(arguments.get("action_id", "")))
        if name not in self.tools:
            await self.list_tools()  # the upstream may have added it since the host listed
        action = tool_action(self.server_name, name, arguments, self.tools.get(name))
        try:
            key = action_hash(action).hex()
        except CryptoError as exc:
            return refusal(f"Verdict cannot sign these arguments ({exc}); the call was not made.")
        try:
            waiting = self.pending.get(key)
            if waiting is not None:
                resumed = await self.resume(key, waiting, action)
                if resumed is not None:
                    return resumed
            return await self.propose(key, action)
        except (httpx.HTTPError, GatewayError) as exc:
            return refusal(unavailable(exc))

    async def propose(self, key: str, action: dict[str, Any]) -> types.CallToolResult:
        """Propose the call; forward it on ALLOW. Raises httpx.HTTPError, GatewayError."""
        answer = await propose_with_retries(self.verdict, self.agent_id, action)
        action_id = answer["action_id"]
        if answer["decision"] == "ALLOW":
            return await self.forward(action, action_id, answer["signed_verdict"])
        if answer["decision"] == "DENY":
            return refusal(
                f"Verdict denied this call ({answer['reason']}); it was not made. Action {action_id}.",
                action_id=action_id, decision="DENY", reason=answer["reason"],
            )  # fmt: skip
        self.pending[key] = action_id
        while len(self.pending) > MAX_PENDING:
            del self.pending[next(iter(self.pending))]
        return self.pending_result(action_id, answer["reason"], answer.get("approvals_required"))

    async def resume(self, key: str, action_id: str, action: dict[str, Any]) -> types.CallToolResult | None:
        """A repeat of an escalated call: pending → say so again; allowed → forward once;
        otherwise the outcome. None when another task claimed it meanwhile (propose anew).
        Raises httpx.HTTPError, GatewayError."""
        record = await self.verdict.get(action_id)
        if record["status"] == PENDING:
            return self.pending_result(action_id, record["reason"], record.get("approvals_required"))
        if self.pending.get(key) != action_id:
            return None
        del self.pending[key]  # claimed: no await since the check above
        if record["status"] == "allowed" and record.get("signed_verdict"):
            return await self.forward(action, action_id, record["signed_verdict"])
        return refusal(
            f"Approval of action {action_id} ended as {record['status']} ({record['reason']});"
            " the call was not made. Calling again asks anew.",
            action_id=action_id, status=record["status"],
        )  # fmt: skip

    async def forward(
        self, action: dict[str, Any], action_id: str, signed: dict[str, Any]
    ) -> types.CallToolResult:
        """Check the verdict, then make the call upstream once. Raises httpx.HTTPError, GatewayError."""
        try:
            await self.verdict.verify_verdict(signed, action)
        except VerdictInvalid as exc:
            return refusal(
                f"The verdict for action {action_id} does not hold ({exc}); the call was not made."
                " Calling again asks anew.",
                action_id=action_id,
            )  # fmt: skip
        result = await self.upstream.call_tool(action["tool"], action["arguments"])
        meta = {k: v for k, v in (result.meta or {}).items() if not k.startswith(RESERVED_META)}
        meta["verdict"] = {
            "action_id": action_id,
            "decision": "ALLOW",
            "signer": signed["signer"],
            "signature": signed["signature"],
        }
        return result.model_copy(update={"meta": meta})

    def pending_result(
        self, action_id: str, reason: str, required: list[dict[str, Any]] | None
    ) -> types.CallToolResult:
        roles = sorted({role for item in required or [] for role in approver_roles(item)})
        who = f" by {', '.join(roles)}" if roles else ""
        console = f"{self.gateway_url.rstrip('/')}/console/actions/{action_id}"
        return refusal(
            f"Not run yet: this call needs human approval{who} ({reason}). Verdict action {action_id}"
            f" is pending; approvers can answer at {console}. The call has NOT been made. Once it is"
            f" approved, repeat exactly the same call with the same arguments to run it (once), or"
            f" ask {STATUS_TOOL} with this action id for its state.",
            action_id=action_id, status=PENDING, reason=reason, console=console,
        )  # fmt: skip

    async def status(self, action_id: str) -> types.CallToolResult:
        """`verdict_status`: the action's state, for the model."""
        if not action_id:
            return refusal("verdict_status needs an action_id.")
        try:
            record = await self.verdict.get(action_id)
        except GatewayError as exc:
            if exc.status == 404:
                return refusal(f"No action {action_id} is visible to this agent.")
            return refusal(unavailable(exc))
        except httpx.HTTPError as exc:
            return refusal(unavailable(exc))
        hint = {
            PENDING: "Still waiting for approval; nothing has run.",
            "allowed": "Approved: repeat the original call with the same arguments to run it once.",
        }.get(record["status"], "It will not run; calling again asks anew.")
        text = f"Action {action_id}: {record['status']} ({record['reason']}). {hint}"
        state = {"action_id": action_id, "status": record["status"], "reason": record["reason"]}
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=state)


def approver_roles(requirement: Mapping[str, Any]) -> list[str]:
    """The roles an approval requirement names (`roles`, or `all_of[].role`)."""
    if requirement.get("roles"):
        return [str(role) for role in requirement["roles"]]
    return [str(item.get("role")) for item in requirement.get("all_of") or [] if item.get("role")]


def unavailable(exc: Exception) -> str:
    if isinstance(exc, GatewayError) and exc.status < 500 and exc.status not in (408, 429):
        return f"Verdict refused this call ({exc.code}: {exc.detail}); it was not made."
    return (
        f"The Verdict gateway is unavailable ({type(exc).__name__}); the call was not made. Try again later."
    )


async def propose_with_retries(
    verdict: AsyncVerdictClient, agent_id: str, action: dict[str, Any]
) -> dict[str, Any]:
    """Propose once; a dropped connection is retried with the same Idempotency-Key, so the gateway
    answers the retry with the first answer. Raises httpx.HTTPError, GatewayError."""
    key = f"mcp-{uuid.uuid4().hex}"
    for attempt in range(PROPOSE_ATTEMPTS):
        try:
            return await verdict.propose(agent_id, action, idempotency_key=key)
        except httpx.TransportError:
            if attempt == PROPOSE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def with_console_link(
    gate: ToolGate,
    ctx: ServerRequestContext[Any],
    params: types.CallToolRequestParams,
    result: types.CallToolResult,
) -> types.CallToolResult | types.InputRequiredResult:
    """A newly pending call, to a host that takes URL-mode elicitation: ask it to show the
    approvers' console page to its user (MCP elicitation, URL mode), once per action. On the
    2026-07-28 protocol that is an InputRequiredResult (the host shows the page and repeats the
    call, which answers "pending"); before it, a request on the back channel, best effort and
    bounded. The tool result says the same in words, for every other host."""
    verdict = (result.meta or {}).get("verdict") or {}
    capabilities = ctx.session.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if verdict.get("status") != PENDING or elicitation is None or elicitation.url is None:
        return result
    if params.input_responses is not None or verdict["action_id"] in gate.shown:
        return result
    if len(gate.shown) >= MAX_PENDING:
        gate.shown.clear()
    gate.shown.add(verdict["action_id"])
    request = types.ElicitRequestURLParams(
        message=f"Verdict holds this tool call ({verdict['reason']}) until an approver signs.",
        url=verdict["console"],
        elicitation_id=verdict["action_id"],
    )
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return types.InputRequiredResult(
            input_requests={"verdict_console": types.ElicitRequest(params=request)}
        )
    with anyio.move_on_after(ELICITATION_SECONDS):
        try:
            await ctx.session.elicit_url(
                request.message, request.url, request.elicitation_id, related_request_id=ctx.request_id
            )
        except MCPError:  # the host refused or cannot: the words suffice
            pass
    return result


def build_server(gate: ToolGate) -> Server[Any]:
    """The MCP server the agent's host talks to."""

    async def on_list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await gate.list_tools())

    async def on_call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        result = await gate.call(params.name, dict(params.arguments or {}))
        return await with_console_link(gate, ctx, params, result)

    return Server(
        "verdict-mcp-proxy",
        instructions=(
            "Tool calls pass through Verdict, a policy gateway. A call may be denied, or held for"
            " human approval: then repeat the same call later, or ask verdict_status."
        ),
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


class BearerOnly:
    """ASGI: HTTP requests without `Authorization: Bearer <token>` get 401 and go no further."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            sent = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"www-authenticate", b"Bearer"), (b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "http.response.body", "body": b"a bearer token is required\n"})
                return
        await self.app(scope, receive, send)  # fmt: skip


def default_server_name(spec: str) -> str:
    """`action.server` when none is given: the URL's host, or the command's script or program name."""
    if spec.startswith(("http://", "https://")):
        return httpx.URL(spec).host or "upstream"
    argv = shlex.split(spec) or ["upstream"]
    script = next((word for word in argv[1:] if not word.startswith("-")), argv[0])
    return PurePath(script).stem or "upstream"


def open_upstream(spec: str, env: Mapping[str, str] | None = None) -> Client:
    """An MCP client for the upstream: an http(s) URL (streamable HTTP) or a command line (stdio)."""
    if spec.startswith(("http://", "https://")):
        return Client(spec)
    argv = shlex.split(spec)
    if not argv:
        raise ValueError("the upstream command is empty")
    return Client(StdioServerParameters(command=argv[0], args=argv[1:], env=dict(env) if env else None))


async def serve_proxy(
    *,
    upstream: str,
    gateway_url: str,
    agent_id: str,
    token: str,
    server_name: str,
    http: tuple[str, int] | None = None,
    http_token: str | None = None,
    upstream_env: Mapping[str, str] | None = None,
) -> None:
    """Run the proxy until its host disconnects (stdio) or it is interrupted (`http`: host, port;
    with `http_token`, every HTTP request must carry it as a bearer token). Raises what opening
    the upstream raises (it is listed once at start, so a broken upstream fails here, not at the
    first call)."""
    async with (
        open_upstream(upstream, upstream_env) as client,
        AsyncVerdictClient(gateway_url, token) as verdict,
    ):
        gate = ToolGate(verdict, agent_id, server_name, client, gateway_url, {}, {})
        await gate.list_tools()
        server = build_server(gate)
        if http is None:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())
            return
        import uvicorn

        host, port = http
        app = server.streamable_http_app(host=host)
        if http_token is not None:
            app = BearerOnly(app, http_token)
        await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()
