"""Transparency-log checkpoints (`audit.checkpoint`).

1. the checkpoint notes of the Go vectors (tests/vectors/signed_note) sign and verify byte for byte;
2. `parse_checkpoint` is strict (a table of near misses) and the inverse of `format_checkpoint`;
3. `verify_checkpoint` never parses a text whose signature did not verify;
4. errors carry their evidence.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import audit.checkpoint
import audit.errors
from audit import (
    EMPTY_ROOT,
    AuditError,
    Checkpoint,
    CheckpointError,
    CheckpointOriginError,
    InvalidSignatureError,
    MalformedCheckpointError,
    MalformedNoteError,
    NoteSigner,
    UnverifiedNoteError,
    format_checkpoint,
    new_signer,
    new_verifier,
    parse_checkpoint,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)
from audit.checkpoint import MAX_TREE_SIZE

VECTORS_PATH = Path(__file__).parents[2] / "vectors" / "signed_note" / "signed_note_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
LOG = "localhost/verdict/acme"
ROOT = bytes.fromhex("11e221bd1b7fc99544f3f765b0c39dd2786e636c3422d6bec026d1ed03884cac")  # SHA-256("verdict")
ROOT_B64 = "EeIhvRt/yZVE8/dlsMOd0nhuY2w0Ita+wCbR7QOITKw="
BODY = f"{LOG}\n42\n{ROOT_B64}\n"
LOG_VKEY = "localhost/verdict/acme+8869ec6d+AeSX7Ez7NZbe2cGgVKXr0yVosA5g72Z7vaXL4rHMX3tq"


def signer(name: str = LOG, seed: int = 1) -> NoteSigner:
    return new_signer(name, Ed25519PrivateKey.from_private_bytes(seed.to_bytes(32, "big")))


def verifier(of: NoteSigner):
    return new_verifier(of.name, of.private_key.public_key())


# The Go vectors whose text is a checkpoint of the log localhost/verdict/acme.
CHECKPOINT_SIGNS = [
    vector
    for vector in VECTORS
    if vector["input"]["op"] in ("sign", "sign_many")
    and vector["input"]["text"].startswith(LOG + "\n")
    and "want_err" not in vector
]
# The Go vectors that open a checkpoint with the log's key alone.
CHECKPOINT_OPENS = [
    vector
    for vector in VECTORS
    if vector["input"]["op"] == "open"
    and vector["input"]["vkeys"] == [LOG_VKEY]
    and "checkpoint" in vector["desc"]
]


# ---- 1. vectors


def test_vectors_hold_checkpoints() -> None:
    assert len(CHECKPOINT_SIGNS) >= 6
    assert len(CHECKPOINT_OPENS) >= 40
    assert ROOT == hashlib.sha256(b"verdict").digest()
    assert base64.b64encode(ROOT).decode() == ROOT_B64


@pytest.mark.parametrize("vector", CHECKPOINT_SIGNS, ids=lambda vector: vector["desc"])
def test_checkpoint_vector_signs_and_verifies(vector: dict) -> None:
    given_, want = vector["input"], vector["want"]
    keys = given_.get("signers", [given_])
    signers = [
        new_signer(k["name"], Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed_hex"])))
        for k in keys
    ]
    log_signer = next(s for s in signers if s.name == LOG)
    checkpoint = parse_checkpoint(given_["text"])
    assert format_checkpoint(checkpoint) == given_["text"]
    if len(signers) == 1:
        assert sign_checkpoint(checkpoint, log_signer) == want["signed_note"]
    assert verify_checkpoint(want["signed_note"], verifier(log_signer), expected_origin=LOG) == checkpoint


@pytest.mark.parametrize("vector", CHECKPOINT_OPENS, ids=lambda vector: vector["desc"])
def test_checkpoint_open_vector(vector: dict) -> None:
    given_ = vector["input"]
    signed = given_["signed_note"] if "signed_note" in given_ else bytes.fromhex(given_["signed_note_hex"])
    if "want_err" in vector:
        with pytest.raises(getattr(audit.errors, vector["want_err"])):
            verify_checkpoint(signed, parse_vkey(LOG_VKEY))
        return
    checkpoint = verify_checkpoint(signed, parse_vkey(LOG_VKEY))
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (LOG, 42, ROOT)


# ---- 2. parsing and formatting


def test_parse_checkpoint() -> None:
    assert parse_checkpoint(BODY) == Checkpoint(LOG, 42, ROOT)
    assert parse_checkpoint(BODY.encode()) == Checkpoint(LOG, 42, ROOT)
    empty = f"{LOG}\n0\n{base64.b64encode(EMPTY_ROOT).decode()}\n"
    assert parse_checkpoint(empty) == Checkpoint(LOG, 0, EMPTY_ROOT)
    assert parse_checkpoint(BODY + "ext one\n— two\n").extensions == ("ext one", "— two")
    assert parse_checkpoint(BODY.replace("42", str(MAX_TREE_SIZE))).size == 2**64 - 1
    assert parse_checkpoint(BODY.replace(LOG, "журнал 日志 +")).origin == "журнал 日志 +"


def with_root(root_text: str) -> str:
    return f"{LOG}\n42\n{root_text}\n"


NEAR_MISSES = {
    "leading zero": BODY.replace("\n42\n", "\n042\n"),
    "zero with leading zero": BODY.replace("\n42\n", "\n00\n"),
    "negative size": BODY.replace("\n42\n", "\n-42\n"),
    "plus sign": BODY.replace("\n42\n", "\n+42\n"),
    "space before size": BODY.replace("\n42\n", "\n 42\n"),
    "space after size": BODY.replace("\n42\n", "\n42 \n"),
    "underscore in size": BODY.replace("\n42\n", "\n4_2\n"),
    "hex size": BODY.replace("\n42\n", "\n0x2a\n"),
    "arabic-indic digits": BODY.replace("\n42\n", "\n\u0664\u0662\n"),
    "fullwidth digits": BODY.replace("\n42\n", "\n\uff14\uff12\n"),
    "size above 2**64 - 1": BODY.replace("\n42\n", f"\n{2**64}\n"),
    "size of 5000 digits (int() would raise ValueError)": BODY.replace("\n42\n", "\n" + "9" * 5000 + "\n"),
    "empty size": BODY.replace("\n42\n", "\n\n"),
    "31-byte root": with_root(base64.b64encode(ROOT[:31]).decode()),
    "33-byte root": with_root(base64.b64encode(ROOT + b"\0").decode()),
    "hex root": with_root(ROOT.hex()),
    "unpadded root": with_root(ROOT_B64.rstrip("=")),
    "url-safe root": with_root(base64.urlsafe_b64encode(ROOT).decode()),
    "non-canonical root (padding bits set)": with_root(ROOT_B64[:-2] + "x="),
    "root with inner space": with_root(ROOT_B64[:20] + " " + ROOT_B64[20:]),
    "root with non-ASCII": with_root(ROOT_B64[:-2] + "é="),
    "missing final newline": BODY[:-1],
    "only two lines": f"{LOG}\n42\n",
    "empty body": "",
    "single newline": "\n",
    "empty origin": BODY.replace(LOG, ""),
    "extra blank line at the end": BODY + "\n",
    "blank line before the size": BODY.replace("\n42\n", "\n\n42\n"),
    "empty extension line": BODY + "ext\n\next\n",
    "crlf line endings": BODY.replace("\n", "\r\n"),
    "tab in origin": BODY.replace(LOG, "localhost/\tverdict"),
    "nul in extension": BODY + "ext\x00\n",
    "lone surrogate in origin": BODY.replace(LOG, "log\ud800"),
}


@pytest.mark.parametrize("body", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_parse_checkpoint_is_strict(body: str) -> None:
    with pytest.raises(MalformedCheckpointError) as caught:
        parse_checkpoint(body)
    assert caught.value.expected is not None
    assert "expected" in str(caught.value)


@pytest.mark.parametrize(
    "body", [b"\xff\n42\n" + ROOT_B64.encode() + b"\n", b"log\n4\xc22\n", b"\xed\xa0\x80\n0\nx\n"], ids=repr
)
def test_parse_checkpoint_refuses_bytes_that_are_not_utf8(body: bytes) -> None:
    with pytest.raises(MalformedCheckpointError) as caught:
        parse_checkpoint(body)
    assert caught.value.expected == "UTF-8"


lines = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(lines, st.integers(0, MAX_TREE_SIZE), st.binary(min_size=32, max_size=32), st.lists(lines, max_size=3))
def test_parse_is_the_inverse_of_format(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    body = format_checkpoint(checkpoint)
    assert parse_checkpoint(body) == checkpoint
    assert parse_checkpoint(body.encode()) == checkpoint


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120) | st.binary(max_size=120))
def test_parse_checkpoint_raises_only_its_error(junk: str | bytes) -> None:
    try:
        checkpoint = parse_checkpoint(junk)
    except MalformedCheckpointError:
        return
    assert format_checkpoint(checkpoint) == (junk if isinstance(junk, str) else junk.decode())


@pytest.mark.parametrize(
    "fields",
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (LOG, -1, ROOT, ()),
        (LOG, 2**64, ROOT, ()),
        (LOG, True, ROOT, ()),
        (LOG, 1.0, ROOT, ()),
        (LOG, 1, ROOT[:31], ()),
        (LOG, 1, ROOT_B64, ()),
        (LOG, 1, ROOT, ("",)),
        (LOG, 1, ROOT, ("a\nb",)),
        (LOG, 1, ROOT, "ext"),
    ],
    ids=repr,
)
def test_checkpoint_fields_must_format_to_a_parseable_body(fields: tuple) -> None:
    with pytest.raises(MalformedCheckpointError):
        Checkpoint(*fields)


def test_extensions_are_kept_as_a_tuple() -> None:
    checkpoint = Checkpoint(LOG, 1, ROOT, ["a", "b"])  # type: ignore[arg-type]
    assert checkpoint.extensions == ("a", "b")
    assert format_checkpoint(checkpoint) == f"{LOG}\n1\n{ROOT_B64}\na\nb\n"


# ---- 3. verification: open the note first, parse after


def test_sign_and_verify_round_trip() -> None:
    log = signer()
    checkpoint = Checkpoint(LOG, 7, ROOT, ("extension",))
    signed = sign_checkpoint(checkpoint, log)
    assert signed.startswith(format_checkpoint(checkpoint) + "\n— " + LOG + " ")
    assert verify_checkpoint(signed, verifier(log)) == checkpoint
    assert verify_checkpoint(signed.encode(), verifier(log), expected_origin=LOG) == checkpoint


def test_a_body_that_would_parse_is_not_parsed_when_its_signature_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = signer()
    signed = sign_checkpoint(Checkpoint(LOG, 42, ROOT), log).replace("\n42\n", "\n43\n")
    parse_checkpoint(signed.split("\n\n")[0] + "\n")  # the tampered body is a fine checkpoint...

    def parse_spy(body: str) -> Checkpoint:
        raise AssertionError(f"parsed an unverified body: {body!r}")

    monkeypatch.setattr(audit.checkpoint, "parse_checkpoint", parse_spy)
    with pytest.raises(InvalidSignatureError):  # ...but the signature fails first
        verify_checkpoint(signed, verifier(log))
    with pytest.raises(UnverifiedNoteError):
        verify_checkpoint(sign_checkpoint(Checkpoint("w", 42, ROOT), signer("w", 2)), verifier(log))


def test_a_malformed_body_reports_its_bad_signature_not_its_shape() -> None:
    log = signer()
    body = f"{LOG}\n042\nnot base64\n"
    # Signed by another key, relabelled with the log's key name and hash.
    signature = signer(LOG, 2).private_key.sign(body.encode())
    line = f"— {LOG} {base64.b64encode(log.key_hash.to_bytes(4, 'big') + signature).decode()}\n"
    with pytest.raises(InvalidSignatureError):
        verify_checkpoint(body + "\n" + line, verifier(log))
    with pytest.raises(MalformedCheckpointError) as caught:  # signed by the log: now it is parsed
        verify_checkpoint(sign_note(body, log), verifier(log))
    assert caught.value.found == "042"


def test_origin_must_be_the_key_name_and_the_expected_log() -> None:
    log = signer()
    with pytest.raises(CheckpointOriginError) as caught:
        sign_checkpoint(Checkpoint("localhost/verdict/globex", 1, ROOT), log)
    assert (caught.value.expected, caught.value.found) == (LOG, "localhost/verdict/globex")
    other_origin = sign_note(format_checkpoint(Checkpoint("localhost/verdict/globex", 1, ROOT)), log)
    with pytest.raises(CheckpointOriginError) as caught:
        verify_checkpoint(other_origin, verifier(log))
    assert (caught.value.expected, caught.value.found) == (LOG, "localhost/verdict/globex")
    signed = sign_checkpoint(Checkpoint(LOG, 1, ROOT), log)
    with pytest.raises(CheckpointOriginError) as caught:
        verify_checkpoint(signed, verifier(log), expected_origin="localhost/verdict/initech")
    assert (caught.value.expected, caught.value.found) == ("localhost/verdict/initech", LOG)


def test_a_witness_key_does_not_make_a_checkpoint_the_witnesss() -> None:
    log, witness = signer(), signer("witness.example", 3)
    cosigned = sign_note(format_checkpoint(Checkpoint(LOG, 1, ROOT)), log, witness)
    assert verify_checkpoint(cosigned, verifier(log)).origin == LOG
    with pytest.raises(CheckpointOriginError):
        verify_checkpoint(cosigned, verifier(witness))


def test_note_errors_pass_through_unchanged() -> None:
    with pytest.raises(MalformedNoteError):
        verify_checkpoint(BODY, verifier(signer()))


# ---- 4. errors


def test_errors_form_one_tree() -> None:
    assert issubclass(MalformedCheckpointError, CheckpointError)
    assert issubclass(CheckpointOriginError, CheckpointError)
    assert issubclass(CheckpointError, AuditError)


def test_malformed_checkpoint_error_carries_expected_and_found() -> None:
    with pytest.raises(MalformedCheckpointError) as caught:
        parse_checkpoint(BODY.replace("\n42\n", "\n042\n"))
    assert caught.value.found == "042"
    assert "without sign or leading zeros" in caught.value.expected
    assert str(caught.value).startswith("checkpoint line 2 is not a tree size: expected decimal")
