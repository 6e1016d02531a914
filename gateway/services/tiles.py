"""Serving each tenant's log as c2sp.org/tlog-tiles: the published checkpoint, hash tiles and entry
bundles, each read in one query from what integration stored (`gateway.services.audit`).

A hash tile of level L is a range of the stored complete-subtree hashes of tree level 8*L
(`audit.tiles`), so tiles need no storage of their own: the tree keeps about 2 rows per entry and a
tile is one indexed range read (measured in bench/bench_witness.py). Tiles are served up to the
integrated tree's size, so every hash served is covered by a signed checkpoint; a full tile never
changes, and neither does a partial one of a given width.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.errors import TileError
from audit.tiles import TILE_WIDTH, TilePath, encode_entry_bundle, parse_tile_path, tile_width
from gateway.errors import InvalidRequest, NotFound, Unprocessable
from gateway.services.audit import AuditService

__all__ = ["Tile", "TileService"]


@dataclass(frozen=True, slots=True)
class Tile:
    data: bytes
    full: bool


class TileService:
    """Reads tiles; holds no state of its own. Safe for concurrent use."""

    def __init__(self, audit: AuditService) -> None:
        self.audit = audit
        self.db = audit.db

    async def tile(self, tenant: str, path: str) -> Tile:
        """The tile (or entry bundle) at `path`, e.g. `tile/0/x001/234.p/7`.

        Raises InvalidRequest (`invalid_tile_path`) for a path that is not one of the spec's,
        NotFound (`tenant_not_found`, `tile_not_found`) for an unknown tenant or a tile the
        integrated tree does not hold at that width, Unprocessable (`entry_too_large_for_bundle`)
        for a bundle with an entry over 65,535 bytes, `LogIntegrityError` for a broken log.
        """
        try:
            tile = parse_tile_path(path)
        except TileError as error:
            raise InvalidRequest(str(error), code="invalid_tile_path") from None
        self.audit.require_intact(tenant)
        async with self.db.read() as conn:
            head = await conn.fetchrow("SELECT size FROM audit_tree_heads WHERE tenant_id = ?", tenant)
            if head is None:
                await self._require_tenant(conn, tenant)
            size = int(head["size"]) if head else 0
            available = tile_width(tile, size)
            if available < tile.width or (not tile.partial and available < TILE_WIDTH):
                raise NotFound(f"the log of size {size} has no tile {path}", code="tile_not_found")
            read = self._entries if tile.level is None else self._hashes
            data = await read(conn, tenant, tile)
        return Tile(data, not tile.partial)

    async def _hashes(self, conn, tenant: str, tile: TilePath) -> bytes:
        rows = await conn.fetch(
            "SELECT idx, hash FROM audit_tree WHERE tenant_id = ? AND level = ? AND idx >= ? AND idx < ?"
            " ORDER BY idx",
            tenant,
            tile.tree_level(),
            tile.first(),
            tile.first() + tile.width,
        )
        self._require_all(tenant, tile, [int(row["idx"]) for row in rows])
        return b"".join(bytes(row["hash"]) for row in rows)

    async def _entries(self, conn, tenant: str, tile: TilePath) -> bytes:
        rows = await conn.fetch(
            "SELECT seq, entry FROM audit_entries WHERE tenant_id = ? AND seq >= ? AND seq < ? ORDER BY seq",
            tenant,
            tile.first(),
            tile.first() + tile.width,
        )
        self._require_all(tenant, tile, [int(row["seq"]) for row in rows])
        try:
            return encode_entry_bundle([bytes(row["entry"]) for row in rows])
        except TileError as error:  # an entry over 65,535 bytes: its length has no uint16
            raise Unprocessable(str(error), code="entry_too_large_for_bundle") from None

    def _require_all(self, tenant: str, tile: TilePath, indexes: list[int]) -> None:
        """Raises `LogIntegrityError` (recorded) if a stored row the tree head covers is missing."""
        if indexes != list(range(tile.first(), tile.first() + tile.width)):
            message = f"stored rows of tile {tile} are missing though the tree head covers them"
            raise self.audit.integrity.record(tenant, message)

    @staticmethod
    async def _require_tenant(conn, tenant: str) -> None:
        if await conn.fetchrow("SELECT 1 AS one FROM tenants WHERE id = ?", tenant) is None:
            raise NotFound(f"tenant {tenant!r} not found", code="tenant_not_found")
