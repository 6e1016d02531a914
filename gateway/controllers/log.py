"""A tenant's log as c2sp.org/tlog-tiles: `checkpoint`, `tile/<L>/<N>[.p/<W>]` and
`tile/entries/<N>[.p/<W>]` under `/v1/tenants/{tenant_id}/log/` (gateway.services.tiles).

Caching follows the spec: the checkpoint changes, so it may be cached for a few seconds only;
a tile never changes once served at a width, so it is cached for a year and marked immutable.
Both are `private`: a tenant's log is readable by its tenant admins and auditors only.
"""

from __future__ import annotations

import gzip

from litestar import Controller, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

CHECKPOINT_CACHE = "private, max-age=2"
TILE_CACHE = "private, max-age=31536000, immutable"


class LogController(Controller):
    path = "/v1/tenants/{tenant_id:str}/log"
    tags = ["audit"]

    @get("/checkpoint", media_type=MediaType.TEXT)
    async def log_checkpoint(self, state: State, tenant_id: FromPath[str]) -> Response[str]:
        """The latest published checkpoint (C2SP tlog-checkpoint, with the witnesses' cosignatures
        when the tenant's log is witnessed)."""
        note = await state.audit.published_note(tenant_id)
        return Response(note, media_type=MediaType.TEXT, headers={"Cache-Control": CHECKPOINT_CACHE})

    @get("/tile/{tile_path:path}", media_type="application/octet-stream")
    async def log_tile(
        self, state: State, request: Request, tenant_id: FromPath[str], tile_path: FromPath[str]
    ) -> Response[bytes]:
        """A hash tile `<L>/<N>[.p/<W>]` or an entry bundle `entries/<N>[.p/<W>]` (C2SP tlog-tiles).
        Entry bundles are gzip-compressed for clients that accept it (§Log entries)."""
        path = "tile/" + tile_path.lstrip("/")
        tile = await state.tiles.tile(tenant_id, path)
        headers = {"Cache-Control": TILE_CACHE}
        data = tile.data
        if path.startswith("tile/entries/"):
            headers["Vary"] = "Accept-Encoding"
            if "gzip" in request.headers.get("accept-encoding", "").lower():
                data = gzip.compress(data, compresslevel=6, mtime=0)
                headers["Content-Encoding"] = "gzip"
        return Response(data, media_type="application/octet-stream", headers=headers)
