"""/ui/: the operator dashboard, static files shipped in the package (api/static/ui/), over the public API.

The files hold no data and need no token; the page asks for one and reads only the API with it. Every answer
carries a Content-Security-Policy that allows scripts, styles and requests from this origin only (no inline
script, no eval, no other origin), so a name rendered by mistake as markup could not run."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from vnstitch.errors import NotFound

router = APIRouter(include_in_schema=False)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain; charset=utf-8",
         ".md": "text/plain; charset=utf-8"}


def _asset(path: str) -> tuple[bytes, str]:
    """The bytes and media type of `static/ui/<path>`; 404 for anything else (no '..', no other folder)."""
    parts = [p for p in path.split("/") if p]
    suffix = "." + parts[-1].rsplit(".", 1)[-1] if parts and "." in parts[-1] else ""
    if not parts or any(p.startswith(".") for p in parts) or suffix not in TYPES:
        raise NotFound(f"no dashboard file '{path}'")
    node = resources.files("vnstitch.api").joinpath("static", "ui", *parts)
    if not node.is_file():
        raise NotFound(f"no dashboard file '{path}'")
    return node.read_bytes(), TYPES[suffix]


@router.get("/ui")
def ui_root() -> Response:
    return RedirectResponse("ui/", status_code=308, headers=HEADERS)


@router.get("/ui/")
def ui_index() -> Response:
    body, media_type = _asset("index.html")
    return Response(body, media_type=media_type, headers=HEADERS)


@router.get("/ui/{path:path}")
def ui_file(path: str) -> Response:
    body, media_type = _asset(path)
    return Response(body, media_type=media_type, headers=HEADERS)
