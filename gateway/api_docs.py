"""The API documentation pages (`/schema`, `/schema/swagger`), served without the internet.

Litestar's render plugins load their scripts from a CDN by default, so the pages stay blank on a
machine that cannot reach it, and every reader's browser tells that CDN who reads our docs. This
plugin renders Swagger UI from a pinned copy committed under `gateway/static/openapi/`
(`update.sh` there reproduces it from `package-lock.json`), served by the gateway itself under
`/schema/assets/`. The page has no inline script and says so in its Content-Security-Policy.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath

from gateway.errors import NotFound

__all__ = ["ASSETS", "ASSETS_PATH", "LocalSwaggerRenderPlugin"]

STATIC_DIR = Path(__file__).parent / "static" / "openapi"
ASSETS_PATH = "/assets"  # under the OpenAPI controller's path: /schema/assets/{name}
# The only files served, with their media types: nothing else in the directory is reachable.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "init.js": "text/javascript",
    "LICENSE": "text/plain",
    "NOTICE": "text/plain",
    "VERSION": "text/plain",
}
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'"
)


@functools.cache
def read_asset(name: str) -> bytes:
    """The bytes of a listed asset (read once per process). Raises KeyError for any other name."""
    if name not in ASSETS:  # only listed names reach the file system
        raise KeyError(name)
    return (STATIC_DIR / name).read_bytes()


@get(f"{ASSETS_PATH}/{{name:str}}", include_in_schema=False, sync_to_thread=False)
def openapi_asset(name: FromPath[str]) -> Response[bytes]:
    """One file of the pinned Swagger UI. Raises NotFound for a name that is not listed."""
    if name not in ASSETS:
        raise NotFound(f"no documentation asset {name!r}")
    return Response(
        read_asset(name),
        media_type=ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


class LocalSwaggerRenderPlugin(SwaggerRenderPlugin):
    """Swagger UI from the gateway's own copy: no third-party host in the page."""

    def __init__(self, path: str | list[str] = "/swagger") -> None:
        super().__init__(path=path, favicon="<link rel='icon' href='data:,'>")

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        openapi_json = self.get_openapi_json_route(request)
        assets = openapi_json.rsplit("/", 1)[0] + ASSETS_PATH
        title = html.escape(str(openapi_schema["info"]["title"]))
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">
<title>{title}</title>
{self.favicon}
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/init.js" data-openapi="{html.escape(openapi_json)}"></script>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)  # the OAuth2 redirect page Swagger UI expects
        if not any(route.path.endswith(f"{ASSETS_PATH}/{{name:str}}") for route in router.routes):
            router.register(openapi_asset)
