"""Which 503 answers the clients resend (`gateway.client.retry_delay`): a 503 `overloaded` did
nothing, and reads or requests with an `Idempotency-Key` are safe to repeat; any other write
might have committed, so it is not resent."""

from __future__ import annotations

import httpx
import pytest

from gateway.client import MAX_RETRY_WAIT_SECONDS, GatewayError, VerdictClient, batch_items, retry_delay

OVERLOADED = {"status": 503, "code": "overloaded"}
DATABASE_DOWN = {"status": 503, "code": "database_unavailable"}


def answer(status: int, method: str = "POST", problem: dict | None = None, **headers: str) -> httpx.Response:
    request = httpx.Request(method, "http://gateway/v1/agents/bot/propose", headers=headers)
    return httpx.Response(status, json=problem or {}, headers={"Retry-After": "1"}, request=request)


def test_which_answers_are_resent():
    assert 1.0 <= retry_delay(answer(503, problem=OVERLOADED), 0) <= 1.5
    assert retry_delay(answer(503, problem=DATABASE_DOWN), 0) is None  # it may have committed
    assert retry_delay(answer(503, problem=DATABASE_DOWN, **{"Idempotency-Key": "k"}), 0) is not None
    assert retry_delay(answer(503, "GET", DATABASE_DOWN), 0) is not None
    assert retry_delay(answer(429, problem={"code": "rate_limited"}), 0) is None
    assert retry_delay(answer(500, "GET"), 0) is None


def test_the_wait_follows_retry_after_within_bounds():
    request = httpx.Request("GET", "http://gateway/health")
    long = httpx.Response(503, json=OVERLOADED, headers={"Retry-After": "3600"}, request=request)
    assert retry_delay(long, 0) <= MAX_RETRY_WAIT_SECONDS * 1.5
    bare = httpx.Response(503, json=OVERLOADED, request=request)  # no Retry-After: growing backoff
    assert retry_delay(bare, 0) < retry_delay(bare, 4)


def test_the_sync_client_resends_an_overloaded_proposal_and_gives_up_after_its_retries(monkeypatch):
    monkeypatch.setattr("gateway.client.time.sleep", lambda seconds: None)
    sent: list[httpx.Request] = []
    replies = [503, 503, 201]

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        status = replies.pop(0) if replies else 503
        body = {"action_id": "act_1", "decision": "ALLOW"} if status == 201 else OVERLOADED
        return httpx.Response(status, json=body, headers={"Retry-After": "1"})

    with VerdictClient("http://gateway", "token", transport=httpx.MockTransport(handler)) as verdict:
        assert verdict.propose("bot", {"type": "pay_invoice"})["action_id"] == "act_1"
        assert len(sent) == 3
        with pytest.raises(GatewayError) as refused:
            verdict.propose("bot", {"type": "pay_invoice"})
        assert refused.value.code == "overloaded" and len(sent) == 3 + 1 + verdict.retries
    with VerdictClient("http://gateway", transport=httpx.MockTransport(handler), retries=0) as verdict:
        with pytest.raises(GatewayError):
            verdict.propose("bot", {"type": "pay_invoice"})
        assert len(sent) == 3 + 1 + 3 + 1


def test_proposals_go_in_batches_of_100():
    batches = batch_items([{"type": "pay_invoice", "n": i} for i in range(250)] + [{"action": {"type": "x"}}])
    assert [len(b) for b in batches] == [100, 100, 51]
    assert batches[0][0] == {"action": {"type": "pay_invoice", "n": 0}}
    assert batches[2][-1] == {"action": {"type": "x"}}
