"""Watching and mirroring a tenant's log from the outside, as an auditor's cron job would
(`verdict audit watch`, `verdict audit mirror`). Standard library only (urllib), like the rest of
`audit`.

`watch_once` fetches the latest checkpoint, verifies its signature (and, with a policy, its witness
quorum), and compares it with the last one it kept in a small state file: a smaller size is a
rollback, the same size with another root or a consistency proof that fails is a fork. Only a
checkpoint that passes replaces the kept one.

`mirror_once` copies the checkpoint and every tile (c2sp.org/tlog-tiles) of its size into a
directory, fetching only what it lacks (tiles never change), and checks before it writes the new
checkpoint that: each entry hashes to its leaf in the level-0 tiles, each higher tile holds the
roots of the full tiles below it, the leaves fold to the checkpoint's root, and the first `old size`
leaves still fold to the previous checkpoint's root (consistency).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from audit.checkpoint import Checkpoint, verify_checkpoint_with_any
from audit.errors import AuditError, ConsistencyProofError, TileError
from audit.note import NoteVerifier
from audit.proof import verify_consistency
from audit.rfc6962 import hash_leaf, root_hash
from audit.tiles import TILE_WIDTH, parse_entry_bundle, split_tile, tiles_for_size
from audit.witness_policy import WitnessPolicy, verify_witnessed

__all__ = ["Fetcher", "LogProblem", "mirror_once", "watch_once"]

TIMEOUT_SECONDS = 30.0


class LogProblem(AuditError):
    """What a watcher alerts on: `kind` is `signature`, `witnesses`, `rollback`, `fork` or `fetch`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class Fetcher:
    """GETs under a tenant's base URL (`…/v1/tenants/{tenant}`) with a bearer token."""

    base_url: str
    token: str | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise LogProblem("fetch", f"not an http(s) URL: {self.base_url[:100]!r}")

    def get(self, path: str) -> bytes:
        """Raises `LogProblem("fetch")` for a network failure or a status other than 200."""
        url = self.base_url.rstrip("/") + "/" + path.lstrip("/")
        request = urllib.request.Request(url)  # noqa: S310 (http(s) only: __post_init__)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                return response.read()
        except (urllib.error.URLError, OSError) as error:
            raise LogProblem("fetch", f"GET {path}: {error}") from None


def verified_checkpoint(note: str, verifiers: list[NoteVerifier], policy: WitnessPolicy | None) -> Checkpoint:
    """The checkpoint, once a log key's signature (and the policy's quorum) verified.
    Raises `LogProblem` (`signature` or `witnesses`)."""
    try:
        checkpoint = verify_checkpoint_with_any(note, verifiers)
    except AuditError as error:
        raise LogProblem("signature", str(error)) from None
    if policy is not None:
        try:
            verify_witnessed(note, policy, verifiers)
        except AuditError as error:
            raise LogProblem("witnesses", str(error)) from None
    return checkpoint


def watch_once(
    fetcher: Fetcher, verifiers: list[NoteVerifier], state_file: Path, policy: WitnessPolicy | None = None
) -> Checkpoint:
    """Check the log's latest checkpoint against the kept one, and keep it if it passes.
    Raises `LogProblem` naming what is wrong; the kept checkpoint is then unchanged."""
    note = fetcher.get("log/checkpoint").decode("utf-8", errors="replace")
    new = verified_checkpoint(note, verifiers, policy)
    old = _read_state(state_file, verifiers)
    if old is not None:
        if new.size < old.size:
            raise LogProblem("rollback", f"the log shows size {new.size}, after size {old.size} was seen")
        if new.size > old.size or new.root_hash != old.root_hash:
            proof = []
            if 0 < old.size < new.size:
                answer = fetcher.get(f"audit/proof/consistency?from={old.size}&to={new.size}")
                try:
                    proof = [base64.b64decode(h, validate=True) for h in json.loads(answer)["proof"]]
                except (ValueError, KeyError, TypeError) as error:
                    raise LogProblem("fetch", f"the consistency proof is unreadable: {error}") from None
            try:
                verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
            except ConsistencyProofError as error:
                raise LogProblem(
                    "fork", f"size {new.size} is not consistent with size {old.size}: {error}"
                ) from None
    _write(state_file, json.dumps({"checkpoint": note}).encode())
    return new


def mirror_once(
    fetcher: Fetcher, verifiers: list[NoteVerifier], directory: Path, policy: WitnessPolicy | None = None
) -> tuple[Checkpoint, int]:
    """Bring the mirror in `directory` up to the log's latest checkpoint; returns it and how many
    tiles were fetched. Raises `LogProblem` (`fork` for tiles that do not check out or a tree that
    does not extend the mirrored one); nothing is half-written: the checkpoint is written last."""
    note = fetcher.get("log/checkpoint").decode("utf-8", errors="replace")
    new = verified_checkpoint(note, verifiers, policy)
    old_path = directory / "checkpoint"
    old = verified_checkpoint(old_path.read_text(), verifiers, None) if old_path.exists() else None
    if old is not None and new.size < old.size:
        raise LogProblem("rollback", f"the log shows size {new.size}, after size {old.size} was mirrored")
    fetched = 0
    data: dict[str, bytes] = {}
    for tile in tiles_for_size(new.size):
        target = directory / tile.path()
        if not target.exists():
            data[tile.path()] = fetcher.get(f"log/{tile.path()}")
            fetched += 1
        else:
            data[tile.path()] = target.read_bytes()
    leaves = _check_tiles(new.size, data)
    if root_hash(leaves) != new.root_hash:
        raise LogProblem("fork", f"the tiles do not fold to the root of size {new.size}")
    if old is not None and root_hash(leaves[: old.size]) != old.root_hash:
        raise LogProblem("fork", f"size {new.size} does not extend the mirrored size {old.size}")
    for path, content in data.items():
        target = directory / path
        if not target.exists():
            _write(target, content)
    _write(old_path, note.encode())
    return new, fetched


def _check_tiles(size: int, data: dict[str, bytes]) -> list[bytes]:
    """The leaf hashes of a tree of `size`, after checking entry bundles against level-0 tiles and each
    higher tile against the full tiles below it. Raises `LogProblem("fork")`."""
    try:
        levels: dict[int, list[bytes]] = {}
        entries: list[bytes] = []
        for tile in tiles_for_size(size):
            content = data[tile.path()]
            if tile.level is None:
                entries.extend(hash_leaf(entry) for entry in parse_entry_bundle(content))
            else:
                levels.setdefault(tile.level, []).extend(split_tile(content))
    except TileError as error:
        raise LogProblem("fork", f"a tile is malformed: {error}") from None
    leaves = levels.get(0, [])
    if entries != leaves or len(leaves) != size:
        raise LogProblem("fork", "the entry bundles do not hash to the level-0 tiles")
    for level in sorted(levels)[1:]:
        below = levels[level - 1]
        expected = [
            root_hash(below[at : at + TILE_WIDTH]) for at in range(0, len(below) - TILE_WIDTH + 1, TILE_WIDTH)
        ]
        if levels[level] != expected:
            raise LogProblem("fork", f"the tiles of level {level} are not the roots of level {level - 1}'s")
    return leaves


def _read_state(path: Path, verifiers: list[NoteVerifier]) -> Checkpoint | None:
    if not path.exists():
        return None
    note = json.loads(path.read_text())["checkpoint"]
    return verified_checkpoint(note, verifiers, None)


def _write(path: Path, content: bytes) -> None:
    """Write atomically: a temporary file renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)
