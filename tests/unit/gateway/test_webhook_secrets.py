"""Webhook signatures against `standardwebhooks` (an implementation nobody here wrote), and
secrets sealed at rest: bound to their row, opened only with the deployment's key."""

from __future__ import annotations

import base64
import os
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.events.webhook_secrets import (
    SecretUnreadable,
    new_secret,
    seal,
    sign,
    signature_header,
    unseal,
)


def headers(message_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_a_signature_verifies_with_the_standard_library_and_only_for_its_message():
    secret, now = new_secret(), int(time.time())
    body = b'{"id":"acme:7","seq":7,"data":{"amount":"12.50","note":"caf\xc3\xa9"}}'
    signature = sign(secret, "acme:7", now, body)
    assert signature.startswith("v1,")
    assert Webhook(secret).verify(body, headers("acme:7", now, signature)) is not None
    for tampered in (
        (body + b" ", "acme:7", now),
        (body, "acme:8", now),
        (body, "acme:7", now + 1),
    ):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(tampered[0], headers(tampered[1], tampered[2], signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers("acme:7", now, signature))


def test_during_a_rotation_the_header_verifies_with_either_secret():
    old, new, now, body = new_secret(), new_secret(), int(time.time()), b"{}"
    header = signature_header([new, old], "acme:1", now, body)
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers("acme:1", now, header))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers("acme:1", now, header))


def test_secrets_are_whsec_base64_of_32_random_bytes():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert new_secret() != secret


def test_a_sealed_secret_opens_only_with_its_key_and_for_its_row():
    key, secret = os.urandom(32), new_secret()
    stored = seal(key, secret, "wh_1")
    assert secret not in stored and stored.startswith("v1:")
    assert unseal(key, stored, "wh_1") == secret
    with pytest.raises(SecretUnreadable):
        unseal(key, stored, "wh_2")  # copied onto another webhook's row
    with pytest.raises(SecretUnreadable):
        unseal(os.urandom(32), stored, "wh_1")  # another deployment's key
    with pytest.raises(SecretUnreadable):
        unseal(key, stored[:-4] + "AAA=", "wh_1")
    with pytest.raises(SecretUnreadable):
        unseal(key, "whsec_plain", "wh_1")
