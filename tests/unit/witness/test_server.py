"""The witness's add-checkpoint answers (c2sp.org/tlog-witness), in process, over a real SQLite state."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.cosignature import parse_cosigner_vkey, verify_cosignatures
from audit.note import new_signer, open_note, vkey
from audit.proof import consistency_proof
from audit.rfc6962 import hash_leaf, root_hash
from witness.server import Witness
from witness.state import WitnessState

ORIGIN = "example.test/log"


@pytest.fixture
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def witness(tmp_path: Path, log_key) -> Witness:
    logs = tmp_path / "logs"
    logs.write_text(f"# watched\nlog {vkey(ORIGIN, log_key.public_key())}\n")
    return Witness("witness.test/w", Ed25519PrivateKey.generate(), logs, WitnessState(tmp_path / "state.db"))


LEAVES = [hash_leaf(b"entry %d" % i) for i in range(20)]


def note(key: Ed25519PrivateKey, size: int, leaves=LEAVES, origin: str = ORIGIN) -> str:
    return sign_checkpoint(Checkpoint(origin, size, root_hash(leaves[:size])), new_signer(origin, key))


def body(old: int, proof: list[bytes], signed: str) -> bytes:
    return (
        f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof) + "\n" + signed
    ).encode()


def test_cosigns_a_first_checkpoint_then_a_consistent_one(witness, log_key) -> None:
    first = note(log_key, 5)
    answer = witness.add_checkpoint(body(0, [], first))
    assert answer.status == 200 and answer.body.startswith("— witness.test/w ")
    opened = open_note(first + answer.body, [_log_verifier(log_key)])
    assert "witness.test/w" in verify_cosignatures(opened, [parse_cosigner_vkey(witness.vkey)])
    second = note(log_key, 12)
    assert witness.add_checkpoint(body(5, consistency_proof(LEAVES, 5, 12), second)).status == 200
    assert witness.state.latest(ORIGIN)[0] == 12
    assert witness.add_checkpoint(body(12, [], second)).status == 200  # the same again: cosigned again


def _log_verifier(key: Ed25519PrivateKey):
    from audit.note import parse_vkey

    return parse_vkey(vkey(ORIGIN, key.public_key()))


def test_answers_each_refusal_with_the_specs_status(witness, log_key, tmp_path) -> None:
    assert witness.add_checkpoint(body(0, [], note(log_key, 5))).status == 200
    # 400: malformed bodies, old size above the checkpoint's
    for bad in (
        b"",
        b"old 05\n\n" + note(log_key, 6).encode(),
        b"old 5\nnot-a-hash\n\n" + note(log_key, 6).encode(),
    ):
        assert witness.add_checkpoint(bad).status == 400
    assert witness.add_checkpoint(body(7, [], note(log_key, 6))).status == 400
    # 404: an origin it does not watch
    other = Ed25519PrivateKey.generate()
    assert witness.add_checkpoint(body(0, [], note(other, 3, origin="elsewhere.test/log"))).status == 404
    # 403: the watched origin, signed by another key
    assert witness.add_checkpoint(body(5, [], note(other, 6))).status == 403
    # 409: an old size that is not the one it cosigned, with its size as text/x.tlog.size
    answer = witness.add_checkpoint(body(3, consistency_proof(LEAVES, 3, 8), note(log_key, 8)))
    assert (answer.status, answer.content_type, answer.body) == (409, "text/x.tlog.size", "5\n")
    # 409: its size again, with another root (a fork at the same size)
    forked = [hash_leaf(b"forged")] * 20
    assert witness.add_checkpoint(body(5, [], note(log_key, 5, forked))).status == 409
    # 422: a proof that does not lead from its tree to this one
    answer = witness.add_checkpoint(body(5, consistency_proof(forked, 5, 9), note(log_key, 9, forked)))
    assert answer.status == 422
    # nothing refused changed its state
    assert witness.state.latest(ORIGIN) == (5, root_hash(LEAVES[:5]))


def test_keeps_its_state_across_restarts(tmp_path, log_key) -> None:
    logs = tmp_path / "logs"
    logs.write_text(f"log {vkey(ORIGIN, log_key.public_key())}\n")
    key = Ed25519PrivateKey.generate()
    first = Witness("witness.test/w", key, logs, WitnessState(tmp_path / "state.db"))
    assert first.add_checkpoint(body(0, [], note(log_key, 7))).status == 200
    first.state.close()
    again = Witness("witness.test/w", key, logs, WitnessState(tmp_path / "state.db"))
    answer = again.add_checkpoint(body(0, [], note(log_key, 9)))
    assert (answer.status, answer.body) == (409, "7\n")


def test_answers_with_nagle_off_so_no_answer_waits_for_a_delayed_ack(witness) -> None:
    """The handler writes headers and body separately: with Nagle's algorithm on, the body waited
    for the client's delayed ACK (40 ms on Linux) and every cosignature took 40 ms longer."""
    import socket
    import threading

    import httpx

    from witness.server import make_server

    server = make_server(witness, "127.0.0.1", 0)
    seen: list[int] = []

    class Recording(server.RequestHandlerClass):
        def setup(self) -> None:
            super().setup()
            seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server.RequestHandlerClass = Recording
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        r = httpx.get(f"http://127.0.0.1:{server.server_address[1]}/vkey", timeout=10)
        assert r.status_code == 200 and r.text.strip() == witness.vkey
    finally:
        server.shutdown()
        server.server_close()
    assert seen and all(seen)
