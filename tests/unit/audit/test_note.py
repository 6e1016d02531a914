"""C2SP signed notes (`audit.note`).

Three independent checks:

1. vectors made by golang.org/x/mod/sumdb/note (tests/vectors/signed_note/gen_vectors.go): our notes must
   be byte for byte Go's, and `open_note` / `parse_vkey` must accept and reject what Go does, except the
   two `go_accepts` vectors where Verdict is stricter on purpose (README there);
2. properties: sign-then-open round trips, any change to a signed text breaks it, and arbitrary input only
   ever raises the library's errors (never ValueError or binascii.Error);
3. errors carry their evidence: what was expected, what was found.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

import audit.errors
from audit import (
    AuditError,
    InvalidSignatureError,
    MalformedNoteError,
    NoteError,
    NoteKeyError,
    NoteSigner,
    NoteVerifier,
    UnverifiedNoteError,
    new_signer,
    new_verifier,
    open_note,
    parse_vkey,
    sign_note,
    vkey,
)

VECTORS_PATH = Path(__file__).parents[2] / "vectors" / "signed_note" / "signed_note_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
LOG = "localhost/verdict/acme"
BODY = "localhost/verdict/acme\n42\nEeIhvRt/yZVE8/dlsMOd0nhuY2w0Ita+wCbR7QOITKw=\n"


def vectors(op: str) -> list[dict]:
    return [vector for vector in VECTORS if vector["input"]["op"] == op]


def signer_from(name: str, seed_hex: str) -> NoteSigner:
    return new_signer(name, Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex)))


def seeded_signer(name: str, seed: int) -> NoteSigner:
    return new_signer(name, Ed25519PrivateKey.from_private_bytes(seed.to_bytes(32, "big")))


def verifier_of(signer: NoteSigner) -> NoteVerifier:
    return new_verifier(signer.name, signer.private_key.public_key())


def labels(signatures: tuple) -> list[str]:
    return [f"{signature.name}+{signature.key_hash:08x}" for signature in signatures]


def signed_note_of(given_: dict) -> str | bytes:
    return given_["signed_note"] if "signed_note" in given_ else bytes.fromhex(given_["signed_note_hex"])


# ---- 1. vectors from Go's sumdb/note


def test_vector_file_covers_what_it_promises() -> None:
    descriptions = [vector["desc"] for vector in VECTORS]
    assert len(set(descriptions)) == len(descriptions)
    assert {vector["input"]["op"] for vector in VECTORS} == {"sign", "sign_many", "open", "parse_vkey"}
    assert {vector["want_err"] for vector in VECTORS if "want_err" in vector} == {
        "MalformedNoteError",
        "UnverifiedNoteError",
        "InvalidSignatureError",
        "NoteKeyError",
    }
    mutations = {
        vector["desc"].split(": ")[-1].split(" (")[0] for vector in VECTORS if ": " in vector["desc"]
    }
    assert {
        "unknown-key-only",
        "wrong-key-same-name",
        "modified-body",
        "modified-signature-bit-100",
        "truncated-signature",
        "missing-blank-line",
        "text-without-final-newline",
        "duplicated-signature-line",
        "non-utf8-text",
        "101-signature-lines",
        "wrong-hash",
        "unknown-algorithm-2",
    } <= mutations
    stricter = [vector["desc"] for vector in VECTORS if vector.get("go_accepts")]
    assert len(stricter) == 2, stricter
    assert BODY in [vector["input"]["text"] for vector in vectors("sign")]  # a tlog-checkpoint body


@pytest.mark.parametrize("vector", vectors("sign"), ids=lambda vector: vector["desc"])
def test_sign_vector(vector: dict) -> None:
    given_ = vector["input"]
    signer = signer_from(given_["name"], given_["seed_hex"])
    if "want_err" in vector:
        with pytest.raises(getattr(audit.errors, vector["want_err"])):
            sign_note(given_["text"], signer)
        return
    want = vector["want"]
    assert sign_note(given_["text"], signer) == want["signed_note"]
    assert vkey(signer.name, signer.private_key.public_key()) == want["vkey"]
    # Go's NewSigner accepted this signer key only with the key hash it re-derived: ours must be the same.
    seed = bytes.fromhex(given_["seed_hex"])
    encoded = base64.b64encode(b"\x01" + seed).decode()
    assert want["skey"] == f"PRIVATE+KEY+{signer.name}+{signer.key_hash:08x}+{encoded}"
    note = open_note(want["signed_note"], [parse_vkey(want["vkey"])])
    assert note.text == given_["text"]
    assert labels(note.signatures) == [f"{signer.name}+{signer.key_hash:08x}"]


@pytest.mark.parametrize("vector", vectors("sign_many"), ids=lambda vector: vector["desc"])
def test_sign_many_vector(vector: dict) -> None:
    given_, want = vector["input"], vector["want"]
    signers = [signer_from(key["name"], key["seed_hex"]) for key in given_["signers"]]
    assert sign_note(given_["text"], *signers) == want["signed_note"]
    assert [vkey(signer.name, signer.private_key.public_key()) for signer in signers] == want["vkeys"]
    note = open_note(want["signed_note"], [parse_vkey(key) for key in want["vkeys"]])
    assert labels(note.signatures) == [f"{signer.name}+{signer.key_hash:08x}" for signer in signers]


@pytest.mark.parametrize("vector", vectors("open"), ids=lambda vector: vector["desc"])
def test_open_vector(vector: dict) -> None:
    given_ = vector["input"]
    verifiers = [parse_vkey(key) for key in given_["vkeys"]]
    if "want_err" in vector:
        with pytest.raises(getattr(audit.errors, vector["want_err"])):
            open_note(signed_note_of(given_), verifiers)
        return
    note = open_note(signed_note_of(given_), verifiers)
    assert note.text == vector["want"]["text"]
    assert labels(note.signatures) == vector["want"]["verified"]
    assert labels(note.unverified_signatures) == vector["want"]["unverified"]


@pytest.mark.parametrize("vector", vectors("parse_vkey"), ids=lambda vector: vector["desc"])
def test_parse_vkey_vector(vector: dict) -> None:
    if "want_err" in vector:
        with pytest.raises(NoteKeyError):
            parse_vkey(vector["input"]["key"])
        return
    verifier = parse_vkey(vector["input"]["key"])
    want = vector["want"]
    assert (verifier.name, verifier.key_hash, verifier.public_key.hex()) == (
        want["name"],
        int(want["key_hash"], 16),
        want["public_key_hex"],
    )


# ---- 2. properties

# Key names: no Unicode spaces, no '+', no control characters (c2sp.org/signed-note §Format).
names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="+"),
    min_size=1,
    max_size=30,
).filter(lambda name: not any(character.isspace() for character in name))
# Note texts: any Unicode but control characters (newline allowed), ending in a newline.
texts = st.text(st.characters(blacklist_categories=("Cc", "Cs")) | st.just("\n"), max_size=200).map(
    lambda text: text + "\n"
)


@settings(max_examples=150, deadline=None)
@given(names, texts, st.integers(1, 2**200))
def test_sign_then_open_round_trips(name: str, text: str, seed: int) -> None:
    signer = seeded_signer(name, seed % 2**256)
    signed = sign_note(text, signer)
    note = open_note(signed, [parse_vkey(vkey(name, signer.private_key.public_key()))])
    assert note.text == text
    assert note.signatures[0].name == name
    assert open_note(signed.encode(), [verifier_of(signer)]) == note


@settings(max_examples=150, deadline=None)
@given(texts, st.data())
def test_any_change_to_the_text_breaks_the_note(text: str, data: st.DataObject) -> None:
    signer = seeded_signer(LOG, 7)
    signed = sign_note(text, signer)
    position = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from(["a", "\n", "é", "—", ""]).filter(lambda c: c != text[position]))
    tampered = signed[:position] + replacement + signed[position + 1 :]
    with pytest.raises((InvalidSignatureError, MalformedNoteError, UnverifiedNoteError)):
        open_note(tampered, [verifier_of(signer)])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120) | st.binary(max_size=120).map(lambda raw: raw.decode("latin-1")))
def test_parse_vkey_raises_only_note_key_error(text: str) -> None:
    try:
        parse_vkey(text)
    except NoteKeyError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200), st.booleans())
def test_open_note_raises_only_note_errors(junk: bytes | str, after_a_valid_line: bool) -> None:
    signer = seeded_signer(LOG, 7)
    if after_a_valid_line:  # reach the signature-line parser with arbitrary lines
        junk = sign_note(BODY, signer) + (junk if isinstance(junk, str) else junk.decode("latin-1"))
    try:
        open_note(junk, [verifier_of(signer)])
    except NoteError:
        pass


# ---- 3. keys, names and evidence


def test_errors_form_one_tree() -> None:
    for error in (MalformedNoteError, NoteKeyError, UnverifiedNoteError, InvalidSignatureError):
        assert issubclass(error, NoteError)
    assert issubclass(NoteError, AuditError)


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a+b", "a\tb", "a\nb", "a\x00b", "a\u00a0b", "a\u2003b", "a\u3000b", "a\u2028b", "\ud800"],
    ids=repr,
)
def test_invalid_key_names_are_refused(name: str) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    with pytest.raises(NoteKeyError) as caught:
        new_signer(name, key)
    assert caught.value.found == name
    with pytest.raises(NoteKeyError):
        vkey(name, key.public_key())


@pytest.mark.parametrize("name", ["café.example/журнал", "a\u200bb", "example.com/log42", "—"], ids=repr)
def test_unicode_key_names_are_accepted(name: str) -> None:
    signer = seeded_signer(name, 1)
    assert open_note(sign_note("x\n", signer), [verifier_of(signer)]).signatures[0].name == name


def test_verifier_and_signer_check_their_key_hash() -> None:
    signer = seeded_signer(LOG, 1)
    public = verifier_of(signer).public_key
    with pytest.raises(NoteKeyError) as caught:
        NoteVerifier(LOG, signer.key_hash ^ 1, public)
    assert caught.value.expected == f"{signer.key_hash:08x}"
    assert caught.value.found == f"{signer.key_hash ^ 1:08x}"
    with pytest.raises(NoteKeyError):
        NoteSigner(LOG, signer.key_hash ^ 1, signer.private_key)
    with pytest.raises(NoteKeyError):
        NoteVerifier(LOG, signer.key_hash, public[:31])
    assert NoteVerifier(LOG, signer.key_hash, public) == verifier_of(signer)


def test_signer_repr_hides_the_private_key() -> None:
    assert "private_key" not in repr(seeded_signer(LOG, 1))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("no final newline", MalformedNoteError),
        ("", MalformedNoteError),
        ("tab\there\n", MalformedNoteError),
        ("carriage return\r\n", MalformedNoteError),
        ("lone surrogate \ud800\n", MalformedNoteError),
    ],
    ids=repr,
)
def test_sign_note_refuses_what_open_note_would_refuse(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        sign_note(text, seeded_signer(LOG, 1))


def test_sign_note_needs_distinct_signers() -> None:
    signer = seeded_signer(LOG, 1)
    with pytest.raises(NoteKeyError):
        sign_note(BODY)
    witness = seeded_signer("witness.example", 2)
    with pytest.raises(NoteKeyError) as caught:
        sign_note(BODY, signer, witness, signer)
    label = f"{LOG}+{signer.key_hash:08x}"
    assert caught.value.found == [label, f"witness.example+{witness.key_hash:08x}", label]


def test_two_different_keys_under_one_name_and_hash_are_refused() -> None:
    signer = seeded_signer(LOG, 1)
    verifier = verifier_of(signer)
    impostor = object.__new__(NoteVerifier)  # a hash collision, built past the constructor's check
    for field, value in (("name", LOG), ("key_hash", signer.key_hash), ("public_key", bytes(32))):
        object.__setattr__(impostor, field, value)
    with pytest.raises(NoteKeyError):
        open_note(sign_note(BODY, signer), [verifier, impostor])
    assert open_note(sign_note(BODY, signer), [verifier, verifier_of(signer)]).text == BODY


def test_every_signature_of_a_known_key_is_verified_not_only_the_first() -> None:
    # c2sp.org/signed-note §Signatures: "If the key name and ID match a known key, verifiers MUST verify
    # the signature." Go's note.Open skips repeats of a key it already verified (the go_accepts vector).
    signer, other = seeded_signer(LOG, 1), seeded_signer(LOG, 2)
    signature = other.private_key.sign(BODY.encode())  # a real signature, by another key
    line = f"— {LOG} {base64.b64encode(signer.key_hash.to_bytes(4, 'big') + signature).decode()}\n"
    with pytest.raises(InvalidSignatureError) as caught:
        open_note(sign_note(BODY, signer) + line, [verifier_of(signer)])
    assert caught.value.expected == f"{LOG}+{signer.key_hash:08x}"
    assert caught.value.found == signature


def test_unverified_note_error_names_known_keys_and_signers_but_not_the_text() -> None:
    signer, stranger = seeded_signer(LOG, 1), seeded_signer("stranger.example", 2)
    with pytest.raises(UnverifiedNoteError) as caught:
        open_note(sign_note(BODY, stranger), [verifier_of(signer)])
    assert caught.value.expected == (f"{LOG}+{signer.key_hash:08x}",)
    assert caught.value.found == (f"stranger.example+{stranger.key_hash:08x}",)
    assert "42" not in str(caught.value)
    assert not hasattr(caught.value, "note")


def test_unknown_signatures_are_ignored_and_listed_once() -> None:
    signer, witness = seeded_signer(LOG, 1), seeded_signer("witness.example", 2)
    cosigned = sign_note(BODY, witness, signer)
    witness_line = cosigned.split("\n\n")[1].splitlines(keepends=True)[0]
    note = open_note(cosigned + witness_line, [verifier_of(signer)])
    assert labels(note.signatures) == [f"{LOG}+{signer.key_hash:08x}"]
    assert labels(note.unverified_signatures) == [f"witness.example+{witness.key_hash:08x}"]


@pytest.mark.parametrize(
    ("signed", "expected"),
    [
        (BODY + "— x\n", "'\\n\\n— <key name> <signature>\\n'"),
        (BODY + "\n— x AAAA\n", "'— <key name> <base64 of 4-byte key hash and signature>'"),
        (BODY + "\n— x AAAAAAé=\n", "'— <key name> <base64 of 4-byte key hash and signature>'"),
        (BODY.replace("42", "4\x0b2") + "\n— x AAAAAAA=\n", "none but '\\n'"),
        (b"\xff\n\n", "UTF-8"),
    ],
    ids=repr,
)
def test_malformed_note_error_says_what_was_expected_and_found(signed: str | bytes, expected: str) -> None:
    with pytest.raises(MalformedNoteError) as caught:
        open_note(signed, [verifier_of(seeded_signer(LOG, 1))])
    assert caught.value.expected == expected
    assert caught.value.found is not None
    assert f"expected {expected}, found" in str(caught.value)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "+",
        "++",
        "a+0000000g+AQ==",
        "a+00000000+é",
        "a+00000000+AQ==\n",
        "a+ 0000000+AQ==",
        "a+0x000000+AQ==",
    ],
    ids=repr,
)
def test_parse_vkey_turns_decoding_errors_into_note_key_error(key: str) -> None:
    with pytest.raises(NoteKeyError):
        parse_vkey(key)


def test_open_note_accepts_a_cosigned_note_with_any_known_key() -> None:
    signer, witness = seeded_signer(LOG, 1), seeded_signer("witness.example", 2)
    cosigned = sign_note(BODY, signer, witness)
    assert cosigned.startswith(BODY + "\n— " + LOG + " ")
    for verifiers in (
        [verifier_of(signer)],
        [verifier_of(witness)],
        [verifier_of(witness), verifier_of(signer)],
    ):
        assert open_note(cosigned, verifiers).text == BODY
