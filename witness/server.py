"""`POST /add-checkpoint` (c2sp.org/tlog-witness): verify a log's checkpoint and a consistency proof
from the last checkpoint this witness cosigned for that log, record it, return a cosignature.

Request body: `old <size>\\n`, up to 63 base64 proof lines, an empty line, then the signed checkpoint.
Answers, as the spec orders them: 400 a malformed body or old size above the checkpoint's; 404 an
unknown origin; 403 no signature by a trusted key of that log verifies; 409 (`text/x.tlog.size`, the
stored size) the old size is not the one this witness last cosigned, or equal sizes with different
roots; 422 the consistency proof does not verify; 200 one `cosignature/v1` line.

The logs it watches are `log <vkey>` lines in a file, read again whenever it changes, so an auditor
can add a log (or a rotated log key) without a restart.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import parse_checkpoint
from audit.cosignature import cosign, cosigner_vkey
from audit.errors import AuditError, InvalidSignatureError, NoteError, UnverifiedNoteError
from audit.note import NoteVerifier, open_note, parse_vkey
from audit.proof import verify_consistency
from witness.state import WitnessState

log = logging.getLogger("verdict.witness")

MAX_BODY = 64 * 1024
MAX_PROOF_LINES = 63
SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


class Refused(Exception):
    def __init__(self, status: int, message: str, content_type: str = "text/plain; charset=utf-8") -> None:
        super().__init__(message)
        self.answer = Answer(status, message if message.endswith("\n") else message + "\n", content_type)


class Witness:
    """One witness: its name and key, the logs it watches, its state. Thread-safe."""

    def __init__(self, name: str, key: Ed25519PrivateKey, logs_file: Path, state: WitnessState) -> None:
        self.name, self.key, self.logs_file, self.state = name, key, logs_file, state
        self.vkey = cosigner_vkey(name, key.public_key())
        self._logs: dict[str, list[NoteVerifier]] = {}
        self._logs_mtime: float | None = None

    def logs(self) -> dict[str, list[NoteVerifier]]:
        """origin -> its trusted keys, from `logs_file` (re-read when its mtime changes).

        Raises `AuditError` for a line that is not `log <vkey>`."""
        mtime = os.stat(self.logs_file).st_mtime_ns
        if mtime != self._logs_mtime:
            logs: dict[str, list[NoteVerifier]] = {}
            for line in self.logs_file.read_text().splitlines():
                words = line.split()
                if not words or words[0].startswith("#"):
                    continue
                if words[0] != "log" or len(words) not in (2, 3):
                    raise AuditError(f"{self.logs_file}: not a 'log <vkey> [url]' line: {line[:80]!r}")
                verifier = parse_vkey(words[1])
                logs.setdefault(verifier.name, []).append(verifier)
            self._logs, self._logs_mtime = logs, mtime
        return self._logs

    def add_checkpoint(self, body: bytes) -> Answer:
        """Handle one add-checkpoint request; never raises for bad input (the answer says why)."""
        try:
            return self._add(body)
        except Refused as refused:
            return refused.answer

    def _add(self, body: bytes) -> Answer:
        old, proof, signed = _parse_request(body)
        origin = signed.split("\n", 1)[0]
        verifiers = self.logs().get(origin)
        if verifiers is None:
            raise Refused(404, f"unknown log {origin[:100]!r}")
        try:
            note = open_note(signed, verifiers)
        except (UnverifiedNoteError, InvalidSignatureError) as error:
            raise Refused(403, f"no trusted signature verifies: {error}") from None
        except NoteError as error:
            raise Refused(400, f"malformed checkpoint: {error}") from None
        try:
            checkpoint = parse_checkpoint(note.text)
        except AuditError as error:
            raise Refused(400, f"malformed checkpoint: {error}") from None
        if checkpoint.origin != origin:
            raise Refused(400, "the checkpoint's origin is not its first line")
        if old > checkpoint.size:
            raise Refused(400, f"old size {old} is above the checkpoint's size {checkpoint.size}")

        def check(stored_size: int, stored_root: bytes) -> None:
            if old != stored_size:
                raise Refused(409, f"{stored_size}\n", SIZE_TYPE)
            if old == checkpoint.size and checkpoint.root_hash != stored_root:
                raise Refused(409, f"{stored_size}\n", SIZE_TYPE)  # same size, another root: a fork
            if old == 0 and proof:
                raise Refused(422, "the proof from size 0 must be empty")
            try:
                verify_consistency(old, checkpoint.size, stored_root, checkpoint.root_hash, proof)
            except AuditError as error:
                log.warning("log %s: refused size %d: %s", origin, checkpoint.size, error)
                raise Refused(422, f"the consistency proof does not verify: {error}") from None

        now = int(time.time())
        self.state.advance(origin, check, checkpoint.size, checkpoint.root_hash, note.text, now)
        return Answer(200, cosign(note.text, self.name, self.key, now))


def _parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """(old size, proof hashes, signed checkpoint). Raises `Refused(400)` for a malformed body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8") from None
    head, separator, signed = text.partition("\n\n")
    lines = head.split("\n")
    if not separator or not lines[0].startswith("old "):
        raise Refused(400, "the body is not 'old <size>', proof lines, an empty line and a checkpoint")
    size_text = lines[0][4:]
    if not (
        size_text == "0" or (size_text[:1] in "123456789" and size_text.isdigit() and len(size_text) < 21)
    ):
        raise Refused(400, f"old size {size_text[:30]!r} is not a decimal without leading zeros")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refused(400, f"more than {MAX_PROOF_LINES} proof lines")
    proof = []
    for line in lines[1:]:
        try:
            digest = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 32:
            raise Refused(400, f"proof line {line[:60]!r} is not a base64 SHA-256 hash")
        proof.append(digest)
    return int(size_text), proof, signed


class _Handler(BaseHTTPRequestHandler):
    witness: Witness
    protocol_version = "HTTP/1.1"  # keep-alive, as the spec asks clients and witnesses to support
    # TCP_NODELAY: the answer goes out as two writes (headers, body); with Nagle's algorithm the
    # body waits for the client's delayed ACK of the headers, 40 ms on Linux, on every request.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        if self.path.rstrip("/").rsplit("/", 1)[-1] != "add-checkpoint":
            return self._send(Answer(404, "not found\n"))
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._send(Answer(411, "a Content-Length is required\n"))
        if not 0 <= length <= MAX_BODY:
            return self._send(Answer(413, "the body is too large\n"))
        self._send(self.witness.add_checkpoint(self.rfile.read(length)))

    def do_GET(self) -> None:
        self._send(
            Answer(200, self.witness.vkey + "\n") if self.path == "/vkey" else Answer(404, "not found\n")
        )

    def _send(self, answer: Answer) -> None:
        data = answer.body.encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug(format, *args)


def make_server(witness: Witness, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering for `witness` on host:port (0: an ephemeral port)."""
    handler = type("WitnessHandler", (_Handler,), {"witness": witness})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
