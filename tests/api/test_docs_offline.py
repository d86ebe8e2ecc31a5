"""/docs works offline: Swagger UI's page names no other host and its assets come from the package."""

from __future__ import annotations

import re
from pathlib import Path

import vnstitch.api

STATIC = Path(vnstitch.api.__file__).parent / "static"
ASSET = re.compile(r'(?:src|href)="([^"]+)"')
OTHER_HOST = re.compile(r"""(?:https?:)?//[a-z0-9.-]+""", re.IGNORECASE)


def test_docs_page_names_no_other_host_and_its_assets_are_served(api):
    page = api.call("anyone", "GET", "/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert not re.findall(r"https?://", page.text), "the page loads nothing from another host"
    assert '"validatorUrl": null' in page.text, "no validator badge from validator.swagger.io"
    assets = ASSET.findall(page.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/") and not OTHER_HOST.match(asset), asset
        served = api.call("anyone", "GET", asset)
        assert served.status_code == 200, asset
        minimum = 100_000 if asset.endswith((".js", ".css")) else 100
        assert len(served.content) > minimum, (asset, len(served.content))
    bundle = api.call("anyone", "GET", next(a for a in assets if a.endswith(".js")))
    assert "SwaggerUIBundle" in bundle.text and "javascript" in bundle.headers["content-type"]


def test_the_page_loads_the_schema_from_this_server(api):
    page = api.call("anyone", "GET", "/docs").text
    assert "url: '/openapi.json'" in page
    assert api.call("anyone", "GET", "/openapi.json").status_code == 200
    assert api.call("anyone", "GET", "/docs/oauth2-redirect").status_code == 200


def test_the_vendored_release_is_documented_with_its_licence():
    readme = (STATIC / "README.md").read_text()
    assert re.search(r"swagger-ui-dist\W+5\.\d+\.\d+", readme), "README names the pinned release"
    assert "Apache License" in (STATIC / "swagger-ui" / "LICENSE").read_text()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert name in readme and (STATIC / "swagger-ui" / name).stat().st_size > 100
