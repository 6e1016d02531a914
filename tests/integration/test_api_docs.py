"""The API documentation pages work offline: every script and style comes from the gateway itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from gateway.api_docs import ASSETS, STATIC_DIR

DOC_PAGES = ["/schema", "/schema/swagger"]
EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css"}


class _Resources(HTMLParser):
    """Every URL a page makes the browser load: scripts, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.urls.append(("script", values["src"] or ""))
        if tag == "link" and values.get("href"):
            self.urls.append((values.get("rel") or "link", values["href"] or ""))


def resources_of(page: str) -> list[tuple[str, str]]:
    parser = _Resources()
    parser.feed(page)
    return parser.urls


@pytest.mark.parametrize("page", DOC_PAGES)
async def test_api_docs_page_loads_every_script_and_style_from_the_gateway(client, page):
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert not re.search(r"https?://", html), "a third-party host in the page"
    urls = resources_of(html)
    kinds = {kind for kind, _ in urls}
    assert {"script", "stylesheet"} <= kinds
    for kind, url in urls:
        if url.startswith("data:"):
            continue
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url  # same origin
        asset = await client.get(url)
        assert asset.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        assert asset.headers["content-type"] == f"{EXPECTED_TYPES[suffix]}; charset=utf-8", url
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert asset.content, url
        if kind == "script":
            assert b"<html" not in asset.content[:200].lower()


async def test_api_docs_page_allows_scripts_only_from_its_own_origin(client):
    html = (await client.get("/schema")).text
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert policy is not None
    directives = dict(item.strip().split(" ", 1) for item in policy.group(1).split(";"))
    assert directives["script-src"] == "'self'"
    assert "<script>" not in html  # no inline script to allow


async def test_api_docs_assets_serve_only_listed_files(client):
    assert (await client.get("/schema/assets/LICENSE")).status_code == 200
    for name in ("package.json", "update.sh", "nope.js", "..%2F..%2Fapp.py"):
        response = await client.get(f"/schema/assets/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"] == "application/problem+json"


def test_pinned_swagger_ui_ships_with_its_licence_and_no_source_maps():
    for name in ASSETS:
        assert (STATIC_DIR / name).is_file(), name
    assert "Apache License" in (STATIC_DIR / "LICENSE").read_text()
    version = (STATIC_DIR / "VERSION").read_text().split()[-1]
    assert f'"swagger-ui-dist": "{version}"' in (STATIC_DIR / "package.json").read_text()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert b"sourceMappingURL" not in (STATIC_DIR / name).read_bytes()
